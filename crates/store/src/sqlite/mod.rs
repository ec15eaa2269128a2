//! Embedded SQLite backend (to be written).
