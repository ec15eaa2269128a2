//! Pointer operations, independent of HTTP: each takes a checked caller and
//! domain input, calls the domain rules and the store, and returns a typed result.

mod access_check;
mod read;
mod search;
mod write;

pub(crate) use access_check::{decide, patient_access};
pub use read::{read_for_consumer, read_for_producer};
pub use search::{SearchOutcome, search};
pub use write::{Created, create, delete, update};
