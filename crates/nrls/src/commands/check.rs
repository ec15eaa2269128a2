//! `nrls check`: reads every stored pointer and reports each one a producer
//! could not store today, by FHIR R4 validity and the NRL rules, exactly as
//! `nrls import` applies them (the pointer's custodian acting for itself, every
//! type permitted). For pointers stored by an older nrls, before a rule
//! existed: one of them can hide a patient's other pointers from a strict FHIR
//! client. It changes nothing; fix the pointers at their producer (or delete
//! them), then run it again.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use domain::catalogue::Catalogue;
use domain::permissions::TypeSet;
use domain::validation::{Submission, ValidationContext, validate_submission};
use domain::{Issue, OdsCode, PointerRecord};
use serde::Serialize;
use store::{PointerStore, StoreError};

use super::store_args::{PointerScan, StoreArgs};

/// Pointers read per store call, as `nrls export` reads them.
const PAGE: usize = 2_000;

/// Arguments of `nrls check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Only this custodian's pointers (ODS code).
    #[arg(long)]
    pub custodian: Option<String>,
    /// Where to write the report (one JSON line per failing pointer), or `-`.
    #[arg(long, short, default_value = "-")]
    pub output: PathBuf,
}

/// A stored pointer that fails the current rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub id: String,
    pub issues: Vec<FindingIssue>,
}

/// One reason, as the API would have answered it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FindingIssue {
    /// FHIRPath of the element at fault, rooted at `DocumentReference`.
    pub expression: String,
    /// The Spine error code.
    pub code: String,
    pub reason: String,
}

/// How many pointers were read, and how many failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CheckSummary {
    pub checked: u64,
    pub failed: u64,
}

/// Why a check could not finish.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("writing the report: {0}")]
    Write(#[from] std::io::Error),
}

pub async fn run(args: CheckArgs) -> Result<(), String> {
    let scan = PointerScan::open(&args.store, args.custodian.as_deref(), &args.output)?;
    let summary = check(scan.store.as_ref(), scan.custodian.as_ref(), scan.out)
        .await
        .map_err(|e| e.to_string())?;
    eprintln!(
        "checked {} pointers: {} fail the current rules",
        summary.checked, summary.failed
    );
    if summary.failed > 0 {
        return Err(format!(
            "{} stored pointers fail the current rules (listed above)",
            summary.failed
        ));
    }
    Ok(())
}

/// Checks every pointer (of `custodian`, if given), oldest first, writing one
/// JSON line per failing pointer to `out`. Reads only.
pub async fn check(
    store: &dyn PointerStore,
    custodian: Option<&OdsCode>,
    out: impl Write,
) -> Result<CheckSummary, CheckError> {
    let mut out = BufWriter::new(out);
    let mut summary = CheckSummary::default();
    let mut after = 0i64;
    loop {
        let page = store.pointers_after(after, PAGE, custodian).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for stored in &page {
            summary.checked += 1;
            if let Some(finding) = finding(&stored.record) {
                summary.failed += 1;
                serde_json::to_writer(&mut out, &finding).map_err(std::io::Error::from)?;
                out.write_all(b"\n")?;
            }
        }
    }
    out.flush()?;
    Ok(summary)
}

/// What is wrong with one stored pointer, if anything.
pub fn finding(record: &PointerRecord) -> Option<Finding> {
    let catalogue = Catalogue::nrl_v3();
    let ctx = ValidationContext {
        catalogue,
        caller: &record.custodian,
        permitted_types: TypeSet::all(catalogue),
    };
    let issues = match Submission::parse(record.json.as_bytes()) {
        Err(issues) => issues,
        Ok(submission) => validate_submission(&submission, &ctx).err()?,
    };
    Some(Finding {
        id: record.id.to_string(),
        issues: issues.into_iter().map(finding_issue).collect(),
    })
}

fn finding_issue(issue: Issue) -> FindingIssue {
    FindingIssue {
        expression: issue
            .expression
            .unwrap_or_else(|| "DocumentReference".to_owned()),
        code: issue.code.as_str().to_owned(),
        reason: issue.diagnostics,
    }
}
