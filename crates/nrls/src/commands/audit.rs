//! `nrls audit`: check and search the audit trail from the command line.
//!
//! `nrls audit verify` walks the whole hash chain and every signed
//! checkpoint and exits non-zero naming the first bad record if anything
//! was modified, deleted, inserted or reordered. It opens `audit.db`
//! read-only, so it can run beside a live server.

use std::path::PathBuf;

use audit::sqlite::{FILE_NAME, KEY_FILE_NAME, search_file, verify_file};
use audit::{
    Anchor, AuditOutcome, AuditQuery, CheckpointKey, CheckpointSigner, VerifyError, VerifyOptions,
};
use domain::NhsNumber;

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

/// Arguments of `nrls audit verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Folder holding `audit.db` and `audit-signing-key`.
    #[arg(long, env = "NRLS_DATA_DIR", default_value = "nrls-data")]
    pub data_dir: PathBuf,
    /// Trusted checkpoint public key (64 hex digits), repeatable. Default:
    /// the public half of `<data-dir>/audit-signing-key`. Pass the key from
    /// a copy you trust when the data directory itself may be compromised.
    #[arg(long = "public-key")]
    pub public_keys: Vec<String>,
    /// A checkpoint kept outside the data directory, `seq:hash` as the
    /// server logs it ("audit checkpoint signed anchor=..."): detects a
    /// truncated tail that took its checkpoints with it.
    #[arg(long)]
    pub anchor: Option<String>,
}

/// Arguments of `nrls audit search`.
#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    #[arg(long, env = "NRLS_DATA_DIR", default_value = "nrls-data")]
    pub data_dir: PathBuf,
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
        AuditCommand::Verify(args) => tokio::task::spawn_blocking(move || verify(&args))
            .await
            .map_err(|e| e.to_string())?,
        AuditCommand::Search(args) => tokio::task::spawn_blocking(move || search(&args))
            .await
            .map_err(|e| e.to_string())?,
    }
}

fn verify(args: &VerifyArgs) -> Result<(), String> {
    let keys = if args.public_keys.is_empty() {
        let signer = CheckpointSigner::load(&args.data_dir.join(KEY_FILE_NAME))
            .map_err(|e| format!("{e} (or pass --public-key)"))?;
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
    let options = VerifyOptions {
        keys,
        anchor,
        max_unsigned: None,
    };
    let path = args.data_dir.join(FILE_NAME);
    match verify_file(&path, &options) {
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
        Err(VerifyError::Tampered(t)) => Err(format!(
            "audit trail TAMPERED: first bad record is seq {} ({:?})",
            t.first_bad_seq, t.kind
        )),
        Err(VerifyError::Storage(e)) => Err(format!("{}: {e}", path.display())),
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

fn search(args: &SearchArgs) -> Result<(), String> {
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
    let path = args.data_dir.join(FILE_NAME);
    let page = search_file(&path, &query).map_err(|e| format!("{}: {e}", path.display()))?;
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
        let verify_args = VerifyArgs {
            data_dir: data_dir.clone(),
            public_keys: vec![],
            anchor: None,
        };
        assert!(verify(&verify_args).is_ok());
        let wrong_key = VerifyArgs {
            public_keys: vec![CheckpointSigner::from_seed([3; 32]).public().to_hex()],
            ..verify_args
        };
        assert!(verify(&wrong_key).unwrap_err().contains("TAMPERED"));

        let search_args = SearchArgs {
            data_dir,
            patient: None,
            agent: Some("app-1".into()),
            since: Some("2026-03-02".into()),
            until: None,
            outcome: Some("0".into()),
            count: 10,
            before_seq: None,
        };
        assert!(search(&search_args).is_ok());
        assert!(instant_ms("yesterday").is_err());
        assert_eq!(instant_ms("1970-01-02").unwrap(), 86_400_000);
    }
}
