//! The versioned schema and the migration runner.
//!
//! `schema_migrations` records each applied [`Migration`]. Migrations are
//! append-only: once released, a step's SQL never changes. Every step must be
//! safe to apply while older nodes keep serving (expand/contract, see
//! docs/scale-out.md); [`Migration::compatible_from`] records which older
//! nodes still can.

use tokio_postgres::{Client, NoTls};

use crate::StoreError;

use super::error::store_error;

/// One schema step.
pub(crate) struct Migration {
    /// 1, 2, 3...: the order steps are applied in.
    pub(crate) version: i32,
    pub(crate) name: &'static str,
    /// The oldest schema version a node may know and still run against a
    /// database that has this step: `version - 1` for an expand step (older
    /// nodes ignore what it adds), `version` when older nodes would break.
    pub(crate) compatible_from: i32,
    pub(crate) sql: &'static str,
}

pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "pointers, pointer ids and master identifiers",
        compatible_from: 1,
        sql: POINTERS_V1,
    },
    Migration {
        version: 2,
        name: "access facts: relationships and objections",
        compatible_from: 1,
        sql: ACCESS_V2,
    },
    Migration {
        version: 3,
        name: "audit trail: records, agents, checkpoints, acknowledgements",
        compatible_from: 2,
        sql: AUDIT_V3,
    },
    Migration {
        version: 4,
        name: "web sessions",
        compatible_from: 3,
        sql: WEB_SESSIONS_V4,
    },
    Migration {
        version: 5,
        name: "subscription outbox: pointer events",
        compatible_from: 4,
        sql: POINTER_EVENTS_V5,
    },
    Migration {
        version: 6,
        name: "subscriptions and their notification events",
        compatible_from: 5,
        sql: SUBSCRIPTIONS_V6,
    },
    Migration {
        version: 7,
        name: "compact audit records: binary bodies, agent ids, appended_ms",
        compatible_from: 7,
        sql: COMPACT_AUDIT_V7,
    },
    Migration {
        version: 8,
        name: "audit outbox: audited writes' records, kept with the write",
        compatible_from: 7,
        sql: AUDIT_OUTBOX_V8,
    },
    Migration {
        version: 9,
        name: "compressed pointer JSON: zstd frames and their dictionaries",
        compatible_from: 9,
        sql: COMPRESSED_POINTERS_V9,
    },
];

/// Step 9: pointer JSON at rest as a zstd frame made with a dictionary
/// trained on pointers (`crate::compression`, issue 16), as the embedded
/// store keeps it since its step 3. A 1.8 KB row (below PostgreSQL's 2 KB
/// TOAST threshold, so never compressed by the server) becomes ~110 B of
/// frame: the heap, the WAL and a bulk load's COPY carry a sixth of the
/// bytes. Every dictionary a row was made with stays in `json_dictionaries`,
/// so a later nrls with another dictionary still reads it. Rows written
/// before this step keep their `json` text (`json_zstd` and
/// `json_dictionary` NULL) and read as before. Not compatible with older
/// nodes: they would read a new row's NULL `json`.
const COMPRESSED_POINTERS_V9: &str = r#"
CREATE TABLE json_dictionaries (
    id bigint PRIMARY KEY,
    dictionary bytea NOT NULL
);
ALTER TABLE pointers
    ALTER COLUMN json DROP NOT NULL,
    ADD COLUMN json_zstd bytea,
    ADD COLUMN json_dictionary bigint;
"#;

/// Step 8: the audit outbox (`crate::audit_outbox`, issue 16): an audited
/// write's audit record, inserted in the write's own transaction; the audit
/// log's writer deletes each row in the transaction that chains it. Only
/// waiting rows stay, so the table stays small. Expand-only: older nodes
/// never write to it (they append their records directly).
const AUDIT_OUTBOX_V8: &str = r#"
CREATE TABLE audit_outbox (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entry bytea NOT NULL
);
"#;

/// Step 7: compact audit records in their own columns (issue 16), as the
/// embedded `audit.db` keeps them since its step 2. A format-2 record's
/// facts go in `body` (`bytea`; `event` is then `''`), not as base64 text in
/// `event`; its agents are `audit_names` ids in three columns, each with a
/// partial index (B-tree deduplication makes an entry for a frequent client
/// or organisation a few bytes), instead of text rows of `audit_agents`
/// (kept for JSON records, and for an agent with no role column such as a
/// patient's NHS login account). Rows written from now on keep `appended_at`
/// as Unix ms in `appended_ms` (the hashed text renders back from it exactly;
/// `appended_at` is then `''`). Rows written before stay as they are and
/// verify as before. Not compatible with older nodes: they would read a
/// compact record's empty `event` as a modified record.
const COMPACT_AUDIT_V7: &str = r#"
CREATE TABLE audit_names (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text COLLATE "C" NOT NULL UNIQUE
);
ALTER TABLE audit_records
    ADD COLUMN body bytea,
    ADD COLUMN appended_ms bigint,
    ADD COLUMN client integer,
    ADD COLUMN org integer,
    ADD COLUMN person integer;
CREATE INDEX audit_by_client ON audit_records (client) WHERE client IS NOT NULL;
CREATE INDEX audit_by_org ON audit_records (org) WHERE org IS NOT NULL;
CREATE INDEX audit_by_person ON audit_records (person) WHERE person IS NOT NULL;
"#;

/// Step 6: subscriptions (`store::subscriptions`). Expand-only: older nodes
/// never read these tables (but they still mark outbox events dispatched
/// without fanning them out, so finish a rolling upgrade before relying on
/// subscriptions). Fan-out looks subscriptions up by patient; claims scan the
/// due ones (`subscriptions_due`, partial: idle subscriptions cost nothing in
/// it). Events are keyed by (subscription, number), their delivery order.
const SUBSCRIPTIONS_V6: &str = r#"
CREATE TABLE subscriptions (
    id text COLLATE "C" PRIMARY KEY,
    owner_app text COLLATE "C" NOT NULL,
    nhs_number bigint NOT NULL,
    heartbeat_ms bigint NOT NULL,
    spec text NOT NULL,
    created text NOT NULL,
    status text COLLATE "C" NOT NULL,
    error text,
    events_total bigint NOT NULL,
    delivered_through bigint NOT NULL,
    attempts integer NOT NULL,
    next_attempt_ms bigint NOT NULL,
    last_sent_ms bigint NOT NULL,
    lease_owner text COLLATE "C",
    lease_until_ms bigint
);
CREATE INDEX subscriptions_by_patient ON subscriptions (nhs_number);
CREATE INDEX subscriptions_by_owner ON subscriptions (owner_app);
CREATE INDEX subscriptions_due ON subscriptions (next_attempt_ms)
    WHERE status <> 'error';

CREATE TABLE subscription_events (
    subscription text COLLATE "C" NOT NULL,
    number bigint NOT NULL,
    seq bigint NOT NULL,
    nhs_number bigint NOT NULL,
    change text COLLATE "C" NOT NULL,
    focus text COLLATE "C" NOT NULL,
    additional_context text[] NOT NULL,
    custodian text COLLATE "C" NOT NULL,
    type_key text COLLATE "C" NOT NULL,
    security_labels text[] NOT NULL,
    recorded_at text NOT NULL,
    PRIMARY KEY (subscription, number)
);
"#;

/// Step 5: the subscription outbox (`store::outbox`). An expand step: nodes at
/// step 4 keep serving but their writes add no event, so during a rolling
/// upgrade subscribers may miss changes made through older nodes.
///
/// Each pointer write inserts its row in its own transaction; dispatch deletes
/// rows, so the table holds only pending events and stays small. Not
/// partitioned: dispatch reads it in `seq` order across every patient.
const POINTER_EVENTS_V5: &str = r#"
CREATE TABLE pointer_events (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    nhs_number bigint NOT NULL,
    change text COLLATE "C" NOT NULL,
    focus text COLLATE "C" NOT NULL,
    additional_context text[] NOT NULL,
    custodian text COLLATE "C" NOT NULL,
    type_key text COLLATE "C" NOT NULL,
    security_labels text[] NOT NULL,
    recorded_at text NOT NULL
);
"#;

/// Step 1.
///
/// - `pointers` is hash-partitioned on `nhs_number` into 16 partitions (fixed
///   here: changing it means rewriting the table; sized for 500M pointers in
///   docs/scale-out.md), the column every search
///   filters on, and is the Citus distribution column. Its primary key
///   `(nhs_number, seq)` serves both a patient's search (newest first, read
///   backwards from the index: no sort) and reads of one pointer once its
///   `(nhs_number, seq)` is known. Fixed-width columns come first so rows
///   carry no alignment padding.
/// - `seq` comes from `pointer_seq`: never handed out twice, even after a
///   delete or a rolled-back insert, so search cursors ("below seq N") hold.
///   `pointers_by_seq` serves export paging (`pointers_after`) only.
/// - `pointer_ids` maps an id to `(nhs_number, seq)`: reads by id touch one
///   partition, and its primary key makes ids unique across partitions (a
///   unique index on a partitioned table must include the partition key).
///   Every write locks the `pointer_ids` rows it touches first: that lock is
///   what serialises writers of one pointer.
/// - `master_identifiers` makes `(custodian, masterIdentifier)` unique across
///   partitions; most pointers without one cost nothing there.
/// - Keys are `COLLATE "C"`: byte order, cheaper to compare than a locale's,
///   and immune to an operating system upgrade reordering the index.
/// - `json` is the DocumentReference as served, as text.
const POINTERS_V1: &str = r#"
CREATE SEQUENCE pointer_seq AS bigint;

CREATE TABLE pointers (
    nhs_number bigint NOT NULL,
    seq bigint NOT NULL,
    version integer NOT NULL,
    id text COLLATE "C" NOT NULL,
    custodian text COLLATE "C" NOT NULL,
    type_key text COLLATE "C" NOT NULL,
    master_identifier text COLLATE "C",
    security_labels text[] NOT NULL,
    last_updated text NOT NULL,
    json text NOT NULL,
    PRIMARY KEY (nhs_number, seq)
) PARTITION BY HASH (nhs_number);

CREATE INDEX pointers_by_seq ON pointers (seq);

DO $$
BEGIN
    FOR i IN 0..15 LOOP
        EXECUTE format(
            'CREATE TABLE pointers_p%s PARTITION OF pointers FOR VALUES WITH (MODULUS 16, REMAINDER %s)',
            lpad(i::text, 2, '0'), i);
    END LOOP;
END
$$;

CREATE TABLE pointer_ids (
    id text COLLATE "C" PRIMARY KEY,
    nhs_number bigint NOT NULL,
    seq bigint NOT NULL
);

CREATE TABLE master_identifiers (
    custodian text COLLATE "C" NOT NULL,
    master_identifier text COLLATE "C" NOT NULL,
    id text COLLATE "C" NOT NULL,
    PRIMARY KEY (custodian, master_identifier)
);
"#;

/// Step 2: the access facts (`store::access::postgres`), shared by every node.
///
/// Both tables lead with `nhs_number`, the key of the one read per consumer
/// request, so they distribute with Citus on the same column as `pointers`
/// (the `UNIQUE` constraint includes it, as Citus requires). Removing a
/// relationship by id is an admin action and may touch every shard.
const ACCESS_V2: &str = r#"
CREATE TABLE relationships (
    nhs_number bigint NOT NULL,
    id bigint GENERATED ALWAYS AS IDENTITY,
    ods text COLLATE "C" NOT NULL,
    kind text COLLATE "C" NOT NULL,
    recorded_by text NOT NULL,
    recorded_at text NOT NULL,
    PRIMARY KEY (nhs_number, id),
    UNIQUE (nhs_number, ods, kind)
);

CREATE INDEX relationships_by_id ON relationships (id);

CREATE TABLE objections (
    nhs_number bigint PRIMARY KEY,
    recorded_by text NOT NULL,
    recorded_at text NOT NULL,
    note text
);
"#;

/// Step 3: the audit trail (`audit::postgres`), one hash chain for every node.
///
/// - `audit_head` is one row: the chain's last seq and hash. Each node's
///   group-commit batch locks it first (`FOR UPDATE`), so batches from all
///   nodes extend the chain one after another and no seq is handed out twice;
///   PostgreSQL's own group commit shares the WAL flush between them.
/// - The other tables mirror the embedded `audit.db` (see the audit crate's
///   `sqlite/schema.rs`): `event` is the JSON exactly as hashed, the other
///   record columns are search indexes that `verify` re-derives.
/// - Not sharded: the chain is one sequence. At national volume the records
///   table is range-partitioned by `seq` for retention (docs/scale-out.md).
const AUDIT_V3: &str = r#"
CREATE TABLE audit_head (
    id smallint PRIMARY KEY CHECK (id = 1),
    seq bigint NOT NULL,
    hash bytea NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));

CREATE TABLE audit_records (
    seq bigint PRIMARY KEY,
    appended_at text NOT NULL,
    event text NOT NULL,
    prev_hash bytea NOT NULL,
    hash bytea NOT NULL,
    patient bigint,
    outcome text COLLATE "C" NOT NULL,
    recorded_ms bigint NOT NULL,
    alert text COLLATE "C"
);
CREATE INDEX audit_by_patient ON audit_records (patient, seq) WHERE patient IS NOT NULL;
CREATE INDEX audit_alerts ON audit_records (seq) WHERE alert IS NOT NULL;

CREATE TABLE audit_agents (
    agent text COLLATE "C" NOT NULL,
    seq bigint NOT NULL,
    PRIMARY KEY (agent, seq)
);
CREATE INDEX audit_agents_by_seq ON audit_agents (seq);

CREATE TABLE audit_checkpoints (
    seq bigint PRIMARY KEY,
    hash bytea NOT NULL,
    "interval" bigint NOT NULL,
    created_at text NOT NULL,
    key_id text NOT NULL,
    signature bytea NOT NULL
);

CREATE TABLE alert_acks (
    seq bigint PRIMARY KEY,
    acknowledged_by text NOT NULL,
    acknowledged_at text NOT NULL,
    note text
);
"#;

/// Step 4: server-side sessions of the web pages (`web::session::store`),
/// shared by every node so a user signed in through one is signed in on all.
/// Expand-only: older nodes never read it. `key` is the SHA-256 of the
/// session id (a copy of the table hands out no live cookies); the expiry
/// index serves the purge.
const WEB_SESSIONS_V4: &str = r#"
CREATE TABLE web_sessions (
    key bytea PRIMARY KEY,
    data text NOT NULL,
    created_at bigint NOT NULL,
    expires_at bigint NOT NULL
);
CREATE INDEX web_sessions_by_expiry ON web_sessions (expires_at);
"#;

/// Key of the session advisory lock held while migrating ("nrlsmigr").
pub const MIGRATION_LOCK: i64 = 0x6e72_6c73_6d69_6772;

/// Changes whenever a migration does: test templates (crate `testkit`) are
/// keyed by it, so a checkout with other migrations builds its own.
pub fn migrations_fingerprint() -> u64 {
    // FNV-1a: stable across builds and Rust versions, unlike `DefaultHasher`.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for step in MIGRATIONS {
        let text = format!("{}|{}|{}", step.version, step.compatible_from, step.sql);
        for byte in text.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

/// Server settings that matter to durability, read while migrating.
pub(super) struct ServerSettings {
    pub(super) synchronous_commit: bool,
    /// A hot standby (read replica): nothing was migrated, writes fail.
    pub(super) standby: bool,
}

/// Applies the steps this database lacks, on a session of its own.
///
/// The session holds an advisory lock throughout, so nodes starting together
/// migrate one at a time: the first applies the steps, the others find them
/// done. Closing the session releases the lock even if this node dies
/// midway; each step is one transaction, so a half-applied step is rolled
/// back. Refuses a database that has a step incompatible with this build.
pub(super) async fn migrate(
    base: &tokio_postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
) -> Result<ServerSettings, StoreError> {
    connect_and(base, tls, Mode::Migrate).await
}

/// Checks the schema is complete and compatible, changing nothing: for
/// tools that only read (`nrls audit verify`).
pub(super) async fn check(
    base: &tokio_postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
) -> Result<ServerSettings, StoreError> {
    connect_and(base, tls, Mode::Check).await
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Migrate,
    Check,
}

async fn connect_and(
    base: &tokio_postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    mode: Mode,
) -> Result<ServerSettings, StoreError> {
    let mut config = base.clone();
    // Waiting for another node's migration may take a while; 10 minutes is
    // the bound. Each DDL statement waits at most 5 s for its table lock, so
    // a migration stuck behind long queries fails instead of queueing every
    // request behind it.
    let mut settings = config.get_options().unwrap_or_default().to_owned();
    settings.push_str(" -c statement_timeout=600000");
    config.options(settings.trim());
    let (mut client, task) = match tls {
        Some(tls) => {
            let (client, connection) = config.connect(tls).await.map_err(store_error)?;
            (client, tokio::spawn(connection))
        }
        None => {
            let (client, connection) = config.connect(NoTls).await.map_err(store_error)?;
            (client, tokio::spawn(connection))
        }
    };
    let result = match mode {
        Mode::Migrate => apply(&mut client).await,
        Mode::Check => check_only(&client, "run an nrls node on this database first").await,
    };
    drop(client);
    task.abort();
    result
}

async fn apply(client: &mut Client) -> Result<ServerSettings, StoreError> {
    let standby: bool = client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .map_err(store_error)?
        .try_get(0)
        .map_err(store_error)?;
    if standby {
        let mut settings = check_only(client, "start a node on the primary first").await?;
        settings.standby = true;
        tracing::info!("the database is a read replica: serving reads only");
        return Ok(settings);
    }
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(store_error)?;
    client
        .batch_execute(
            "SET lock_timeout = '5s';
             CREATE TABLE IF NOT EXISTS schema_migrations (
                 version integer PRIMARY KEY,
                 name text NOT NULL,
                 compatible_from integer NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             );",
        )
        .await
        .map_err(store_error)?;
    let applied = applied(client).await?;
    check_compatible(&applied)?;
    for step in MIGRATIONS {
        if applied.iter().any(|(v, _)| *v == step.version) {
            continue;
        }
        let tx = client.transaction().await.map_err(store_error)?;
        tx.batch_execute(step.sql).await.map_err(store_error)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, compatible_from) VALUES ($1, $2, $3)",
            &[&step.version, &step.name, &step.compatible_from],
        )
        .await
        .map_err(store_error)?;
        tx.commit().await.map_err(store_error)?;
        tracing::info!(
            version = step.version,
            name = step.name,
            "applied pointer store schema step"
        );
    }
    let settings = server_settings(client).await?;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(store_error)?;
    Ok(settings)
}

async fn applied(client: &Client) -> Result<Vec<(i32, i32)>, StoreError> {
    client
        .query(
            "SELECT version, compatible_from FROM schema_migrations",
            &[],
        )
        .await
        .map_err(store_error)?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(store_error)
}

/// Checks that every step this build knows is applied and none needs a newer
/// nrls, without changing anything: what a node on a read replica (which
/// cannot be migrated) and a read-only tool do. `advice` says how to fix a
/// missing step.
async fn check_only(client: &Client, advice: &str) -> Result<ServerSettings, StoreError> {
    let applied = applied(client).await.map_err(|e| {
        StoreError::Internal(format!("the database has no nrls schema ({e}); {advice}"))
    })?;
    check_compatible(&applied)?;
    if let Some(step) = MIGRATIONS
        .iter()
        .find(|step| !applied.iter().any(|(v, _)| *v == step.version))
    {
        return Err(StoreError::Unavailable(format!(
            "the database lacks schema step {}; {advice}",
            step.version
        )));
    }
    server_settings(client).await
}

/// The newest step this build knows.
pub(crate) fn known_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// A database may be ahead of this build (a newer node applied expand
/// steps), but not past a step that needs a newer node.
fn check_compatible(applied: &[(i32, i32)]) -> Result<(), StoreError> {
    let known = known_version();
    let needed = applied.iter().map(|(_, from)| *from).max().unwrap_or(0);
    if needed > known {
        return Err(StoreError::Internal(format!(
            "the database schema needs nrls with schema version {needed} or newer; \
             this nrls knows up to {known}: upgrade nrls"
        )));
    }
    let newest = applied.iter().map(|(v, _)| *v).max().unwrap_or(0);
    if newest > known {
        tracing::info!(
            database = newest,
            known,
            "the database schema is ahead of this nrls, and compatible with it"
        );
    }
    Ok(())
}

async fn server_settings(client: &Client) -> Result<ServerSettings, StoreError> {
    let show = async |name: &str| -> Result<String, StoreError> {
        let rows = client
            .simple_query(&format!("SHOW {name}"))
            .await
            .map_err(store_error)?;
        Ok(rows
            .iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
                _ => None,
            })
            .unwrap_or_default())
    };
    if show("fsync").await? == "off" {
        tracing::warn!("the database runs with fsync off: acknowledged writes may be lost");
    }
    Ok(ServerSettings {
        synchronous_commit: show("synchronous_commit").await? != "off",
        standby: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_numbered_in_order() {
        for (i, step) in MIGRATIONS.iter().enumerate() {
            assert_eq!(step.version, i32::try_from(i + 1).unwrap());
            assert!(step.compatible_from <= step.version);
        }
        assert!(POINTERS_V1.contains("MODULUS 16"));
        assert!(POINTERS_V1.contains("0..15"));
    }

    #[test]
    fn newer_compatible_schema_is_accepted_and_incompatible_refused() {
        let known = known_version();
        assert!(check_compatible(&[(1, 1), (known + 1, known)]).is_ok());
        let err = check_compatible(&[(1, 1), (known + 1, known + 1)]).unwrap_err();
        assert!(matches!(err, StoreError::Internal(m) if m.contains("upgrade nrls")));
    }
}
