//! `nrls audit`: check and search the audit trail from the command line.
//!
//! `nrls audit verify` walks the whole hash chain and every signed
//! checkpoint and exits non-zero naming the first bad record if anything
//! was modified, deleted, inserted or reordered. It reads the trail where
//! the service keeps it: `audit.db` in the data directory (opened read-only,
//! so it can run beside a live server) or, with `--database`, the shared
//! PostgreSQL database of a deployment (in one consistent snapshot).
//!
//! Verify holds the trail to the deployment's checkpoint interval
//! (`[audit] checkpoint_records` and `checkpoint_seconds`, read from
//! `--config` or given as flags): a run of unsigned records longer than it,
//! or a record left unsigned for longer, means checkpoints were removed.

use std::path::PathBuf;

use audit::sqlite::{FILE_NAME, search_file, verify_file};
use audit::{
    Anchor, AuditError, AuditOutcome, AuditPage, AuditQuery, CheckpointKey, CheckpointSigner,
    DEFAULT_TOLERANCE_SECONDS, VerifyError, VerifyOptions, VerifyReport,
};
use domain::NhsNumber;
use store::postgres::{Database, PostgresOptions, PostgresStore};

use crate::config::{Backend, Config};

/// Arguments of `nrls audit`.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

/// The `nrls audit` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Verify the hash chain and signed checkpoints of the audit trail.
    Verify(VerifyArgs),
    /// Search the audit trail (newest first) and print AuditEvents as JSON lines.
    Search(SearchArgs),
}

/// Where the trail is.
#[derive(Debug, Clone, clap::Args)]
pub struct Location {
    /// Folder holding `audit.db` and `audit-signing-key` [default: the
    /// configuration's `store.data_dir`, else `nrls-data`].
    #[arg(long, env = "NRLS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The PostgreSQL database of a deployment that keeps its trail there
    /// (the URL `nrls serve --database` was given). Unset: `audit.db`.
    #[arg(long, env = "NRLS_DATABASE_URL")]
    pub database: Option<String>,
}

impl Location {
    fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("nrls-data"))
    }

    /// This location, with what the flags left open taken from `config`.
    fn or_config(&self, config: &Config) -> Location {
        let database = match config.store.backend {
            Backend::Postgres => config.store.database_url.clone(),
            _ => None,
        };
        Location {
            data_dir: self
                .data_dir
                .clone()
                .or_else(|| Some(config.store.data_dir.clone())),
            database: self.database.clone().or(database),
        }
    }

    fn describe(&self) -> String {
        match &self.database {
            Some(_) => "the audit trail in PostgreSQL".to_owned(),
            None => self.data_dir().join(FILE_NAME).display().to_string(),
        }
    }

    async fn database(&self) -> Result<Option<Database>, String> {
        match &self.database {
            // A reading tool: checks the schema, never migrates.
            Some(url) => PostgresStore::open(PostgresOptions {
                migrate: false,
                ..PostgresOptions::new(url.clone())
            })
            .await
            .map(|store| Some(store.database()))
            .map_err(|e| e.to_string()),
            None => Ok(None),
        }
    }

    async fn verify(&self, options: VerifyOptions) -> Result<VerifyReport, VerifyError> {
        match self.database().await.map_err(AuditError::Unavailable)? {
            Some(db) => audit::postgres::verify_database(&db, &options).await,
            None => {
                let path = self.data_dir().join(FILE_NAME);
                tokio::task::spawn_blocking(move || verify_file(&path, &options))
                    .await
                    .map_err(|e| AuditError::Internal(e.to_string()))?
            }
        }
    }

    async fn search(&self, query: AuditQuery) -> Result<AuditPage, AuditError> {
        match self.database().await.map_err(AuditError::Unavailable)? {
            Some(db) => audit::postgres::search_database(&db, &query).await,
            None => {
                let path = self.data_dir().join(FILE_NAME);
                tokio::task::spawn_blocking(move || search_file(&path, &query))
                    .await
                    .map_err(|e| AuditError::Internal(e.to_string()))?
            }
        }
    }
}

/// Arguments of `nrls audit verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub location: Location,
    /// Trusted checkpoint public key (64 hex digits), repeatable: with
    /// several nodes on one database, each node's key. Default: the public
    /// half of `<data-dir>/audit-signing-key`. Pass keys from a copy you
    /// trust when the data directory itself may be compromised.
    #[arg(long = "public-key")]
    pub public_keys: Vec<String>,
    /// A checkpoint kept outside the data directory, `seq:hash` as the
    /// server logs it ("audit checkpoint signed anchor=..."): detects a
    /// truncated tail that took its checkpoints with it.
    #[arg(long)]
    pub anchor: Option<String>,
    /// The deployment's configuration file: its `[audit]` checkpoint
    /// interval and signing key file, and its `[store]` location, unless
    /// flags say otherwise.
    #[arg(long, env = "NRLS_CONFIG")]
    pub config: Option<PathBuf>,
    /// The most records the deployment leaves unsigned before a checkpoint
    /// [default: the configuration's `audit.checkpoint_records`, 1000].
    #[arg(long)]
    pub checkpoint_records: Option<u64>,
    /// The longest the deployment leaves a record unsigned, in seconds
    /// [default: the configuration's `audit.checkpoint_seconds`, 60].
    #[arg(long)]
    pub checkpoint_seconds: Option<u64>,
    /// Slack on the time rules: clock differences between nodes, a batch in
    /// flight when a checkpoint fell due.
    #[arg(long, default_value_t = DEFAULT_TOLERANCE_SECONDS)]
    pub tolerance_seconds: u64,
}

/// Arguments of `nrls audit search`.
#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    #[command(flatten)]
    pub location: Location,
    /// NHS number of the patient.
    #[arg(long)]
    pub patient: Option<String>,
    /// Client id, person id or ODS code of any agent.
    #[arg(long)]
    pub agent: Option<String>,
    /// Recorded at or after: `YYYY-MM-DD` or an RFC 3339 instant.
    #[arg(long)]
    pub since: Option<String>,
    /// Recorded before: `YYYY-MM-DD` or an RFC 3339 instant.
    #[arg(long)]
    pub until: Option<String>,
    /// `0` success, `4` refused or invalid, `8` server failure.
    #[arg(long)]
    pub outcome: Option<String>,
    /// Records to print.
    #[arg(long, default_value_t = 20)]
    pub count: usize,
    /// Only records with a lower seq (to continue after a previous run).
    #[arg(long)]
    pub before_seq: Option<u64>,
}

/// Runs `nrls audit ...`. Tampering is an error, so the exit code is non-zero.
pub async fn run(args: AuditArgs) -> Result<(), String> {
    match args.command {
        AuditCommand::Verify(args) => verify(&args).await,
        AuditCommand::Search(args) => search(&args).await,
    }
}

async fn verify(args: &VerifyArgs) -> Result<(), String> {
    let config = match &args.config {
        Some(path) => Config::load(path).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    let location = match &args.config {
        Some(_) => args.location.or_config(&config),
        None => args.location.clone(),
    };
    let keys = if args.public_keys.is_empty() {
        let key_file = config.audit.key_file(&location.data_dir());
        let signer =
            CheckpointSigner::load(&key_file).map_err(|e| format!("{e} (or pass --public-key)"))?;
        vec![signer.public()]
    } else {
        args.public_keys
            .iter()
            .map(|k| CheckpointKey::from_hex(k).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?
    };
    let anchor = match &args.anchor {
        Some(text) => Some(
            Anchor::parse(text).ok_or_else(|| format!("--anchor {text:?} is not seq:hexhash"))?,
        ),
        None => None,
    };
    let mut interval = config.audit.clone();
    if let Some(records) = args.checkpoint_records {
        interval.checkpoint_records = records;
    }
    if let Some(seconds) = args.checkpoint_seconds {
        interval.checkpoint_seconds = seconds;
    }
    let options = VerifyOptions {
        keys,
        anchor,
        policy: interval.policy(),
        tolerance_seconds: args.tolerance_seconds.max(1),
        now_ms: None,
    };
    match location.verify(options).await {
        Ok(report) => {
            println!(
                "audit trail OK: {} records, {} signed checkpoints (last at seq {}), {} records after it; head {}:{}",
                report.records,
                report.checkpoints,
                report
                    .last_checkpoint_seq
                    .map_or("-".to_owned(), |s| s.to_string()),
                report.unsigned_tail,
                report.last_seq,
                report.last_hash_hex(),
            );
            Ok(())
        }
        Err(VerifyError::Tampered(t)) => {
            let hint = match t.kind {
                audit::TamperKind::CheckpointOverdue { .. } => {
                    "; if a node stopped without its final checkpoint (a crash), start it once: it signs its unsigned tail at start"
                }
                _ => "",
            };
            Err(format!(
                "audit trail TAMPERED: first bad record is seq {} ({:?}){hint}",
                t.first_bad_seq, t.kind
            ))
        }
        Err(VerifyError::Storage(e)) => Err(format!("{}: {e}", location.describe())),
    }
}

/// `YYYY-MM-DD` (midnight UTC) or an RFC 3339 instant, in Unix ms.
fn instant_ms(text: &str) -> Result<i64, String> {
    let full = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.to_owned()
    };
    audit::fields::parse_instant_ms(&full)
        .ok_or_else(|| format!("{text:?} is not a date (YYYY-MM-DD) or an RFC 3339 instant"))
}

async fn search(args: &SearchArgs) -> Result<(), String> {
    let query = AuditQuery {
        patient: args
            .patient
            .as_deref()
            .map(|p| NhsNumber::parse(p).map_err(|e| format!("--patient: {e}")))
            .transpose()?,
        agent: args.agent.clone(),
        since_ms: args.since.as_deref().map(instant_ms).transpose()?,
        until_ms: args.until.as_deref().map(instant_ms).transpose()?,
        outcome: args
            .outcome
            .as_deref()
            .map(|o| AuditOutcome::parse(o).ok_or_else(|| format!("--outcome {o}: use 0, 4 or 8")))
            .transpose()?,
        count: args.count,
        before_seq: args.before_seq,
    };
    let page = args
        .location
        .search(query)
        .await
        .map_err(|e| format!("{}: {e}", args.location.describe()))?;
    for record in &page.records {
        println!("{}", record.event_json);
    }
    if let Some(next) = page.next_before_seq {
        eprintln!("more: --before-seq {next}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use audit::sqlite::{SqliteAuditLog, SqliteAuditOptions};
    use audit::{AuditFacts, AuditLog, AuditOutcome, Interaction};

    fn facts(n: u32) -> AuditFacts {
        AuditFacts {
            interaction: Interaction::Read,
            outcome: AuditOutcome::Success,
            outcome_desc: None,
            recorded: format!("2026-03-0{}T10:00:00Z", 1 + n % 5),
            request_id: None,
            client_id: format!("app-{}", n % 2),
            organisation: None,
            user: None,
            purpose_of_use: None,
            patient: NhsNumber::from_stem(999_000_001),
            resources: vec![],
            query: None,
            access: None,
            session: None,
            login_subject: None,
        }
    }

    #[tokio::test]
    async fn verify_and_search_a_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let log = SqliteAuditLog::open_in(dir.path(), SqliteAuditOptions::default()).unwrap();
        log.append((0..6).map(|n| facts(n).to_event("test")).collect())
            .await
            .unwrap();
        log.checkpoint().await.unwrap();
        drop(log);
        let data_dir = dir.path().to_owned();
        let location = Location {
            data_dir: Some(data_dir),
            database: None,
        };
        let verify_args = VerifyArgs {
            location: location.clone(),
            public_keys: vec![],
            anchor: None,
            config: None,
            checkpoint_records: None,
            checkpoint_seconds: None,
            tolerance_seconds: DEFAULT_TOLERANCE_SECONDS,
        };
        assert!(verify(&verify_args).await.is_ok());
        let wrong_key = VerifyArgs {
            public_keys: vec![CheckpointSigner::from_seed([3; 32]).public().to_hex()],
            location: location.clone(),
            config: None,
            checkpoint_records: None,
            checkpoint_seconds: None,
            tolerance_seconds: DEFAULT_TOLERANCE_SECONDS,
            anchor: None,
        };
        assert!(verify(&wrong_key).await.unwrap_err().contains("TAMPERED"));

        // Checkpoints removed: 6 unsigned records pass a verifier that
        // allows 1,000, not one given the deployment's 5 (file or flag).
        let db = rusqlite::Connection::open(dir.path().join(FILE_NAME)).unwrap();
        db.execute("DELETE FROM audit_checkpoints", []).unwrap();
        drop(db);
        assert!(verify(&verify_args).await.is_ok());
        let config = dir.path().join("nrls.toml");
        std::fs::write(
            &config,
            format!(
                "[store]\ndata_dir = {:?}\n[audit]\ncheckpoint_records = 5\n",
                dir.path()
            ),
        )
        .unwrap();
        let from_config = VerifyArgs {
            location: Location {
                data_dir: None,
                database: None,
            },
            config: Some(config),
            ..verify_args
        };
        let refused = verify(&from_config).await.unwrap_err();
        assert!(refused.contains("CheckpointMissing"), "{refused}");
        let from_flag = VerifyArgs {
            config: None,
            location: location.clone(),
            checkpoint_records: Some(5),
            ..from_config
        };
        assert!(verify(&from_flag).await.is_err());

        let search_args = SearchArgs {
            location,
            patient: None,
            agent: Some("app-1".into()),
            since: Some("2026-03-02".into()),
            until: None,
            outcome: Some("0".into()),
            count: 10,
            before_seq: None,
        };
        assert!(search(&search_args).await.is_ok());
        assert!(instant_ms("yesterday").is_err());
        assert_eq!(instant_ms("1970-01-02").unwrap(), 86_400_000);
    }
}
