//! The services the API is built on, besides the pointer store: access
//! facts and the audit trail (kept where the pointers are), and the shared
//! care record's federator.

use std::sync::Arc;
use std::time::Duration;

use store::postgres::Database;

use super::StartError;
use crate::config::{Backend, Config};

/// The access policy, end-user identity, relationship store and audit trail.
/// They are kept where the pointers are: in the shared PostgreSQL database
/// (so every node sees one set of relationships and objections and extends
/// one audit chain), in `access.db` and `audit.db` beside the embedded store,
/// or in memory.
pub(super) async fn access_services(
    config: &Config,
    node: &str,
    database: Option<Database>,
    store_metrics: ::telemetry::StoreMetrics,
) -> Result<api::access::AccessServices, StartError> {
    let fail = |e: &dyn std::fmt::Display| StartError::Access(e.to_string());
    let users = if config.trusted_issuers.is_empty() {
        None
    } else {
        Some(
            auth::UserIdentityVerifier::new(
                &config.trusted_issuers,
                &auth::UserIdentityOptions {
                    max_token_lifetime: Duration::from_secs(
                        config.auth.max_identity_token_lifetime_seconds,
                    ),
                    max_token_age: Duration::from_secs(config.auth.max_identity_token_age_seconds),
                    tls: config.outbound_tls().map_err(|e| fail(&e))?,
                    ..auth::UserIdentityOptions::default()
                },
            )
            .map_err(|e| fail(&e))?,
        )
    };
    let mut services = api::access::AccessServices::in_memory();
    let checkpoints = config.audit.policy();
    let dir = &config.store.data_dir;
    let key_file = config.audit.key_file(dir);
    if let Some(database) = database {
        let signer = audit::CheckpointSigner::load_or_create(&key_file).map_err(|e| fail(&e))?;
        let options = audit::postgres::PostgresAuditOptions {
            checkpoints,
            ..Default::default()
        };
        services.audit = Arc::new(
            audit::postgres::PostgresAuditLog::open(database.clone(), signer, options)
                .await
                .map_err(|e| fail(&e))?,
        );
        // Its combined read of the facts and a patient's pointers is a store
        // call too: timed with the others.
        services.facts = Arc::new(
            store::access::postgres::PostgresAccessStore::new(database).with_metrics(store_metrics),
        );
    } else if config.store.backend == Backend::Sqlite {
        std::fs::create_dir_all(dir).map_err(|e| fail(&e))?;
        let signer = audit::CheckpointSigner::load_or_create(&key_file).map_err(|e| fail(&e))?;
        let options = audit::sqlite::SqliteAuditOptions {
            checkpoints,
            page_size: config.audit.sqlite_page_size,
            ..Default::default()
        };
        services.audit = Arc::new(
            audit::sqlite::SqliteAuditLog::open(
                &dir.join(audit::sqlite::FILE_NAME),
                signer,
                options,
            )
            .map_err(|e| fail(&e))?,
        );
        services.facts = Arc::new(
            store::access::sqlite::SqliteAccessStore::open(
                &dir.join(store::access::sqlite::FILE_NAME),
            )
            .map_err(|e| fail(&e))?,
        );
    }
    services.policy = config.access.clone();
    services.users = users;
    services.node = node.to_owned();
    Ok(services)
}

/// The shared care record: the configured sources, plus (with `--demo` and no
/// sources configured) three in-process demo regional sources whose Clinical
/// summary pointers are seeded, so a newcomer sees a converged record.
pub(super) async fn shared_care_record(
    config: &Config,
    demo_mode: bool,
    store: &dyn store::PointerStore,
) -> Result<Option<api::operations::SharedCareRecord>, StartError> {
    use crate::demo::source as demo_source;
    let fail = |e: &dyn std::fmt::Display| StartError::Federation(e.to_string());
    let mut sources = config.sources.clone();
    if demo_mode && sources.is_empty() {
        let demo = demo_source::start_demo_sources()
            .await
            .map_err(|e| fail(&e))?;
        let bases: Vec<_> = demo
            .iter()
            .map(|(r, _)| (r.state.region, r.base_url.clone()))
            .collect();
        demo_source::seed_pointers(store, &bases)
            .await
            .map_err(StartError::Demo)?;
        // The source tasks keep running for the life of the process.
        sources.extend(demo.into_iter().map(|(_, c)| c));
        sources.push(
            demo_source::unreachable_source(store)
                .await
                .map_err(StartError::Demo)?,
        );
    }
    if sources.is_empty() {
        return Ok(None);
    }
    let registry = federation::SourceRegistry::from_configs(&sources).map_err(|e| fail(&e))?;
    let tls = config.outbound_tls().map_err(|e| fail(&e))?;
    let federator = federation::Federator::with_tls(registry, &config.federation, &tls)
        .map_err(|e| fail(&e))?;
    Ok(Some(api::operations::SharedCareRecord::new(Arc::new(
        federator,
    ))))
}
