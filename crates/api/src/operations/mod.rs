//! The operations callers ask for, independent of HTTP: search, read,
//! create, update and delete pointers, and assemble the shared care record.
//! Each takes a [`Context`] (the services it may use), a checked
//! [`Caller`](crate::Caller) and domain input; it applies the type
//! permissions and the access policy, calls the store, records the one
//! AuditEvent of the request (`audit_trail::audited`) and returns a typed
//! result. Building URLs and responses is left to the caller: the HTTP
//! routes (`routes/`), or a server-rendered front end with a caller of its
//! own making, which then searches, reads and audits exactly as the API does.

mod params;
pub mod patient;
pub mod patient_audit;
pub mod patient_session;
mod policy;
mod read;
mod search;
pub mod shared_care_record;
pub mod subscriptions;
mod write;

pub use params::SearchParams;
pub use policy::{decide, patient_access};
pub use read::{read_for_consumer, read_for_producer};
pub use search::{SearchPage, search};
pub use shared_care_record::{
    SharedCareRecord, SharedCareRecordQuery, my_shared_care_record, shared_care_record,
};
pub use write::{Written, create, delete, update};

use domain::catalogue::Catalogue;
use domain::search::SearchLimits;
use store::SharedStore;
use telemetry::{Metrics, Tracer};

use crate::access::AccessServices;

/// What an operation may use: the stores, the access services (policy,
/// access facts, audit trail), metrics and settings. Borrowed from
/// [`AppState::context`](crate::AppState::context); cheap to make.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    /// The primary: writes, and producers' reads (they must see their writes).
    pub store: &'a SharedStore,
    /// Where consumer searches and reads go (the primary or a read replica).
    pub consumer_store: &'a SharedStore,
    pub access: &'a AccessServices,
    pub metrics: &'a Metrics,
    /// Where source-call spans of the shared care record go.
    pub tracer: &'a Tracer,
    pub catalogue: &'static Catalogue,
    pub search_limits: SearchLimits,
    /// The federator, when sources are configured.
    pub shared_care_record: Option<&'a SharedCareRecord>,
    /// Signalled after a pointer write or a new or reactivated subscription
    /// commits: wakes subscription delivery.
    pub delivery_due: &'a tokio::sync::Notify,
}
