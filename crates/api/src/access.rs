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
    /// Where audited pointer writes keep their records with the write (a
    /// store with an audit outbox); `audit` then reads through it.
    pub audit_outbox: Option<Arc<audit::outbox::AuditOutbox>>,
    /// Names this node in AuditEvents (`source.observer`).
    pub node: String,
}

impl AccessServices {
    /// Keeps audited pointer writes' records in `store`'s audit outbox,
    /// moves any a previous run left there into the audit log, and reads
    /// the log through the outbox from now on. For a store that keeps an
    /// audit outbox (SQLite) and an audit log that takes moved records.
    pub async fn keep_audit_with_writes(
        &mut self,
        store: &store::SharedStore,
    ) -> Result<(), audit::AuditError> {
        let outbox = audit::outbox::AuditOutbox::new(store, Arc::clone(&self.audit));
        outbox.drain().await?;
        outbox.spawn();
        self.audit = Arc::new(audit::outbox::OutboxedLog::new(Arc::clone(&outbox)));
        self.audit_outbox = Some(outbox);
        Ok(())
    }

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
            audit_outbox: None,
            node: "nrls".to_owned(),
        }
    }
}
