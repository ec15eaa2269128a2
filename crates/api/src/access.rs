//! The access and audit services every patient-data request goes through:
//! the direct-care policy, end-user identity, relationships and objections,
//! and the tamper-evident audit trail.

use std::sync::Arc;

use audit::SharedAuditLog;
use auth::UserIdentityVerifier;
use domain::access::AccessPolicy;
use store::access::AccessStore;

/// Access decisions and their record, shared by all requests.
pub struct AccessServices {
    pub policy: AccessPolicy,
    /// Verifies `NHSD-User-Identity`; `None` when no issuer is trusted.
    pub users: Option<UserIdentityVerifier>,
    pub facts: Arc<dyn AccessStore>,
    pub audit: SharedAuditLog,
    /// Names this node in AuditEvents (`source.observer`).
    pub node: String,
}

impl AccessServices {
    /// In-memory services with the default policy and no trusted issuers:
    /// for tests and tools that need no durable audit.
    pub fn in_memory() -> AccessServices {
        let signer = audit::CheckpointSigner::from_seed([7; 32]);
        AccessServices {
            policy: AccessPolicy::default(),
            users: None,
            facts: Arc::new(store::access::memory::MemoryAccessStore::new()),
            audit: Arc::new(audit::memory::MemoryAuditLog::new(
                signer,
                Default::default(),
            )),
            node: "nrls".to_owned(),
        }
    }
}
