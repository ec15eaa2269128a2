//! Subcommands of the `nrls` binary.

pub mod serve;
pub mod token;
