//! Test support for nrls, used only as a dev-dependency so nothing here is
//! compiled into the service: PostgreSQL scratch databases ([`postgres`]).

pub mod postgres;
