//! Subcommands of the `nrls` binary.

pub mod audit;
pub mod bench;
pub mod check;
pub mod demo_source;
pub mod demo_subscriber;
pub mod export;
pub mod generate;
pub mod import;
pub mod probe;
pub mod serve;
pub mod store_args;
pub mod token;
