//! What every handler shares: the store, the authenticator and the settings.

use std::sync::Arc;
use std::time::Instant;

use auth::Authenticator;
use domain::catalogue::Catalogue;
use domain::search::SearchLimits;
use store::SharedStore;

use crate::access::AccessServices;
use crate::operations::{Context, SharedCareRecord};
use crate::ops::Ops;
use crate::patient_access::PatientAccess;
use crate::rate_limit::RateLimiter;

/// HTTP-level settings.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Base URL clients reach this server at, e.g. `https://nrls.example.nhs.uk`;
    /// used in `Location`, `fullUrl` and paging links.
    pub public_url: String,
    pub search_limits: SearchLimits,
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    /// Trust `NHSD-Connection-Metadata` from an API gateway in front (off by default).
    pub gateway_mode: bool,
    /// Longest a request may run before it is answered 503.
    pub request_timeout: std::time::Duration,
    /// Client ids allowed to call the admin API.
    pub admin_clients: Vec<String>,
    /// Rules for subscription requests (`[subscriptions]`).
    pub subscriptions: crate::operations::subscriptions::SubscriptionSettings,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            public_url: "http://127.0.0.1:8080".to_owned(),
            search_limits: SearchLimits::default(),
            body_limit: 1024 * 1024,
            gateway_mode: false,
            request_timeout: std::time::Duration::from_secs(30),
            admin_clients: Vec::new(),
            subscriptions: Default::default(),
        }
    }
}

struct Inner {
    store: SharedStore,
    /// Where consumer searches and reads go: the store itself, or a read
    /// replica of it (see [`AppState::with_consumer_store`]).
    consumer_store: SharedStore,
    auth: Arc<Authenticator>,
    settings: ApiSettings,
    rate_limiter: RateLimiter,
    ops: Ops,
    access: AccessServices,
    /// The federator, when regional sources are configured.
    shared_care_record: Option<SharedCareRecord>,
    patient: PatientAccess,
    started: Instant,
    /// Signalled when this node commits something subscription delivery
    /// acts on (a pointer write's outbox event, a new or reactivated
    /// subscription's handshake), so that it runs at once rather than at
    /// its next poll.
    delivery_due: Arc<tokio::sync::Notify>,
}

/// Cheap to clone: one `Arc`.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// A handle on an [`AppState`] that does not keep it (nor its store) alive:
/// for background tasks that must stop when the service closes.
#[derive(Clone)]
pub struct WeakAppState(std::sync::Weak<Inner>);

impl WeakAppState {
    /// The state, while the service still holds it.
    pub fn upgrade(&self) -> Option<AppState> {
        self.0.upgrade().map(AppState)
    }
}

impl AppState {
    pub fn new(store: SharedStore, auth: Arc<Authenticator>, settings: ApiSettings) -> Self {
        AppState::with_ops(
            store,
            auth,
            settings,
            Ops::default(),
            AccessServices::in_memory(),
        )
    }

    /// As [`AppState::new`], with the service's metrics, lifecycle and
    /// reloader. The metrics read the store's own counters at each scrape
    /// through a weak handle, so they never keep the store open.
    pub fn with_ops(
        store: SharedStore,
        auth: Arc<Authenticator>,
        settings: ApiSettings,
        ops: Ops,
        access: AccessServices,
    ) -> Self {
        let weak = Arc::downgrade(&store);
        let outbox = access.audit_outbox.as_ref().map(Arc::downgrade);
        ops.metrics().watch_store(move || {
            let mut snapshot = weak
                .upgrade()
                .map(|store| crate::ops::store_snapshot(store.as_ref()))
                .unwrap_or_default();
            snapshot.audit_outbox = outbox
                .as_ref()
                .and_then(std::sync::Weak::upgrade)
                .map(|outbox| outbox.waiting());
            snapshot
        });
        AppState(Arc::new(Inner {
            consumer_store: Arc::clone(&store),
            store,
            auth,
            settings,
            rate_limiter: RateLimiter::default(),
            ops,
            access,
            shared_care_record: None,
            patient: PatientAccess::default(),
            started: Instant::now(),
            delivery_due: Arc::new(tokio::sync::Notify::new()),
        }))
    }

    /// Consumer searches and reads go to `replica` (a hot standby of the
    /// store); writes, producers' reads (which must see their own writes),
    /// the audit trail and access facts stay on the primary.
    ///
    /// # Errors
    /// Gives the state back unchanged if it is already shared (a clone
    /// exists): call it while building, before the state is handed out.
    pub fn with_consumer_store(self, replica: SharedStore) -> Result<AppState, AppState> {
        self.building(|inner| inner.consumer_store = replica)
    }

    /// Serves `$shared-care-record` through `federation` (without it the
    /// operation answers 503: no sources are configured).
    ///
    /// # Errors
    /// As [`AppState::with_consumer_store`].
    pub fn with_shared_care_record(
        self,
        federation: SharedCareRecord,
    ) -> Result<AppState, AppState> {
        self.building(|inner| inner.shared_care_record = Some(federation))
    }

    /// Serves the patient API (`/patient/FHIR/R4`) with these settings and,
    /// when given, the web pages' sessions.
    ///
    /// # Errors
    /// As [`AppState::with_consumer_store`].
    pub fn with_patient_access(self, patient: PatientAccess) -> Result<AppState, AppState> {
        self.building(|inner| inner.patient = patient)
    }

    fn building(self, change: impl FnOnce(&mut Inner)) -> Result<AppState, AppState> {
        match Arc::try_unwrap(self.0) {
            Ok(mut inner) => {
                change(&mut inner);
                Ok(AppState(Arc::new(inner)))
            }
            Err(shared) => Err(AppState(shared)),
        }
    }

    /// A handle that does not keep the state alive.
    pub fn downgrade(&self) -> WeakAppState {
        WeakAppState(Arc::downgrade(&self.0))
    }

    /// What the operations (`crate::operations`) may use, borrowed from this
    /// state.
    pub fn context(&self) -> Context<'_> {
        let inner = &*self.0;
        Context {
            store: &inner.store,
            consumer_store: &inner.consumer_store,
            access: &inner.access,
            metrics: inner.ops.metrics(),
            tracer: inner.ops.tracer(),
            catalogue: Catalogue::nrl_v3(),
            search_limits: inner.settings.search_limits,
            shared_care_record: inner.shared_care_record.as_ref(),
            delivery_due: &inner.delivery_due,
        }
    }

    /// Signalled when this node commits work for subscription delivery (see
    /// `Context::delivery_due`); a task not waiting when it was signalled
    /// still wakes once.
    pub fn delivery_due(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.0.delivery_due)
    }

    /// The primary store: writes and producers' reads.
    pub fn store(&self) -> &SharedStore {
        &self.0.store
    }

    /// Where consumer searches and reads go (the primary unless a read
    /// replica is configured). Consumers tolerate the replica's lag.
    pub fn consumer_store(&self) -> &SharedStore {
        &self.0.consumer_store
    }

    pub fn auth(&self) -> &Authenticator {
        &self.0.auth
    }

    /// A shared handle on the authenticator.
    pub fn auth_handle(&self) -> Arc<Authenticator> {
        Arc::clone(&self.0.auth)
    }

    /// The patient API's settings and sessions.
    pub fn patient_access(&self) -> &PatientAccess {
        &self.0.patient
    }

    pub fn settings(&self) -> &ApiSettings {
        &self.0.settings
    }

    pub fn rate_limiter(&self) -> &RateLimiter {
        &self.0.rate_limiter
    }

    /// Access policy, identities, relationships and the audit trail.
    pub fn access(&self) -> &AccessServices {
        &self.0.access
    }

    /// Metrics, lifecycle and reload handles.
    pub fn ops(&self) -> &Ops {
        &self.0.ops
    }

    pub fn catalogue(&self) -> &'static Catalogue {
        Catalogue::nrl_v3()
    }

    pub fn uptime_seconds(&self) -> u64 {
        self.0.started.elapsed().as_secs()
    }
}
