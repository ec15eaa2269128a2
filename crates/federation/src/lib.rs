//! nrls federation: the read-only national shared care record.
//!
//! A request for a patient's record is answered by asking the regional
//! sources (shared care records, GP facades, trust FHIR servers) that hold
//! part of it, and converging what they return:
//!
//! 1. [`plan`]: a custodian holds part of the record when the caller may see
//!    its current Clinical summary pointer for the patient; its source is
//!    asked if one is registered ([`registry`]). Pointer URLs are never
//!    fetched: nrls calls registered base URLs only.
//! 2. [`Federator::retrieve`]: the sources are called in parallel, each
//!    within its own time-out and all within an overall deadline, through one
//!    connection pool, behind per-source circuit breakers ([`breaker`]).
//! 3. `domain::convergence` merges what describes the same fact.
//! 4. The answer is a FHIR `collection` Bundle with an OperationOutcome that
//!    reports every source (ok, timed-out, error, refused, not-asked, and the
//!    age of its data), the converged resources and one Provenance per
//!    contributing source; a partial record is always marked partial.
//!
//! Nothing clinical is kept after a request: no cache, no store.

mod assemble;
pub mod breaker;
pub mod client;
mod fanout;
pub mod plan;
pub mod registry;
pub mod report;
mod spans;
mod token;

pub use assemble::{COMPLETENESS_EXT, SOURCE_REPORT_EXT, SOURCE_STATUS_SYSTEM};
pub use breaker::BreakerSettings;
pub use client::{FetchError, FetchLimits};
pub use fanout::{FederatedRecord, FederationConfig, FederationError, Federator, Retrieval};
pub use plan::{CLINICAL_SUMMARY, plan};
pub use registry::{RegistryError, Source, SourceAuthConfig, SourceConfig, SourceRegistry};
pub use report::{AgeBasis, DataAge, SourceReport, SourceStatus};
