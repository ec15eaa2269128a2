//! The black-box suites of nrls, as ONE test binary: each binary links the
//! whole service, so one binary instead of fifteen saves minutes of linking
//! on a two-core CI machine. Each module is one former suite; `support` is
//! the harness they share. Run one suite with `cargo test -p nrls --test api
//! <module>::`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod access_audit;
mod audit_integrity;
mod clinical_safety;
mod configuration;
mod consumer_api;
mod crash;
mod federation;
mod fhir_validity;
mod import_export;
mod multinode;
mod nrlf_defects;
mod operability;
mod packaging;
mod patient_api;
mod process;
mod producer_api;
mod protocol;
mod server_hardening;
mod subscriptions;
mod tracing_export;
