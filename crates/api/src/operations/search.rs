use audit::Interaction;
use domain::PointerRecord;
use domain::access::PatientAccess;
use domain::search::{self, Audience, paginate, require_permitted};

use super::policy::{consumer_reads, decide};
use super::{Context, SearchParams};
use crate::audit_trail::{AuditDraft, audited};
use crate::caller::Caller;
use crate::error::ApiError;

/// One page of a search: what the caller may see, newest first.
#[derive(Debug)]
pub struct SearchPage {
    /// Every match the caller may see, on all pages.
    pub total: u64,
    pub entries: Vec<PointerRecord>,
    /// The cursor the request carried (this page), and the next page's.
    pub cursor: Option<String>,
    pub next_cursor: Option<String>,
}

/// Searches one patient's pointers for a consumer (any custodian) or a
/// producer (its own only), audited. GET and POST `_search` both land here.
pub async fn search(
    ctx: &Context<'_>,
    caller: &Caller,
    audience: Audience,
    params: &SearchParams,
) -> Result<SearchPage, ApiError> {
    let mut draft = AuditDraft::new(Interaction::Search);
    let result = find(ctx, caller, audience, params, &mut draft).await;
    audited(ctx, caller.actor(), draft, result).await
}

async fn find(
    ctx: &Context<'_>,
    caller: &Caller,
    audience: Audience,
    params: &SearchParams,
    draft: &mut AuditDraft,
) -> Result<SearchPage, ApiError> {
    let catalogue = ctx.catalogue;
    let query = search::parse(params.pairs(), audience, ctx.search_limits, catalogue)
        .map_err(ApiError::Rejected)?;
    draft.patient = Some(query.subject);
    draft.query = Some(params.canonical());
    require_permitted(&query, caller.types, catalogue).map_err(ApiError::one)?;
    let (patient, read_with_facts) = match audience {
        Audience::Consumer => consumer_reads(ctx, query.subject).await?,
        Audience::Producer => (PatientAccess::default(), None),
    };
    let grant = decide(ctx, caller, &patient, draft)?;

    // Producers must see their own writes at once: the primary. Consumers
    // tolerate a replica's lag.
    let store = match audience {
        Audience::Consumer => ctx.consumer_store,
        Audience::Producer => ctx.store,
    };
    let rows = match read_with_facts {
        Some(rows) => rows,
        None => store.patient_pointers(query.subject).await?,
    };
    // The grant's filter scopes producers to their own pointers, and hides
    // sensitive pointers and objecting patients' records.
    let visible = |r: &PointerRecord| caller.may_see(catalogue, r) && grant.filter.visible(r);
    let page = paginate(
        &query,
        catalogue,
        rows.iter().map(|s| (s.seq, &s.record)),
        visible,
    );
    draft
        .resources
        .extend(page.entries.iter().map(|r| r.id.to_string()));
    Ok(SearchPage {
        total: page.total,
        // One page (at most `_count` pointers) is copied out of the rows.
        entries: page.entries.into_iter().cloned().collect(),
        cursor: query.cursor.map(|c| c.encode()),
        next_cursor: page.next.map(|c| c.encode()),
    })
}
