//! nrls as a library: configuration, wiring and demo data, so tests can start
//! the real service in-process on port 0.

pub mod app;
pub mod commands;
pub mod config;
pub mod dataset;
pub mod demo;
pub mod lifecycle;
pub mod logging;
pub mod otlp;
pub mod reload;
pub mod server;
pub mod subscriptions;
