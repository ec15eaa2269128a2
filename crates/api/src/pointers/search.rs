use domain::access::PatientAccess;
use domain::search::{self, Audience, paginate, require_permitted};
use fhir::{BundleEntry, SearchsetBuilder};

use super::access_check::{decide, patient_access};
use crate::audit_trail::AuditDraft;
use crate::error::ApiError;
use crate::extract::{Caller, SearchParams};
use crate::state::AppState;

/// A search-set bundle, serialised.
pub struct SearchOutcome {
    pub bundle: String,
}

/// Searches one patient's pointers for a consumer (any custodian) or a producer
/// (its own only). GET and POST `_search` both land here.
pub async fn search(
    state: &AppState,
    caller: &Caller,
    audience: Audience,
    params: &SearchParams,
    base_path: &str,
    draft: &mut AuditDraft,
) -> Result<SearchOutcome, ApiError> {
    let catalogue = state.catalogue();
    let query = search::parse(
        params.pairs(),
        audience,
        state.settings().search_limits,
        catalogue,
    )
    .map_err(ApiError::Rejected)?;
    draft.patient = Some(query.subject);
    draft.query = Some(canonical_query(params));
    require_permitted(&query, caller.types, catalogue).map_err(ApiError::one)?;
    let patient = match audience {
        Audience::Consumer => patient_access(state, query.subject).await?,
        Audience::Producer => PatientAccess::default(),
    };
    let grant = decide(state, caller, &patient, draft)?;

    // Producers must see their own writes at once: the primary. Consumers
    // tolerate a replica's lag.
    let store = match audience {
        Audience::Consumer => state.consumer_store(),
        Audience::Producer => state.store(),
    };
    let rows = store.patient_pointers(query.subject).await?;
    let visible = |r: &domain::PointerRecord| {
        let type_ok = catalogue
            .find_key(&r.type_key)
            .is_some_and(|t| caller.types.contains(t.index));
        // The grant's filter scopes producers to their own pointers, and
        // hides sensitive pointers and objecting patients' records.
        type_ok && grant.filter.visible(r)
    };
    let page = paginate(
        &query,
        catalogue,
        rows.iter().map(|s| (s.seq, &s.record)),
        visible,
    );

    let public_url = &state.settings().public_url;
    let link = |cursor: Option<String>| {
        let mut url = String::with_capacity(256);
        url.push_str(public_url);
        url.push_str(base_path);
        url.push('?');
        let mut form = form_urlencoded::Serializer::new(String::new());
        for (k, v) in params.pairs().filter(|(k, _)| *k != "_cursor") {
            form.append_pair(k, v);
        }
        if let Some(c) = cursor {
            form.append_pair("_cursor", &c);
        }
        url.push_str(&form.finish());
        url
    };
    let self_url = link(query.cursor.map(|c| c.encode()));
    let next_url = page.next.map(|c| link(Some(c.encode())));
    let size: usize = page.entries.iter().map(|r| r.json.len() + 160).sum();
    let mut bundle = SearchsetBuilder::new(page.total, &self_url, next_url.as_deref(), size);
    let mut full_url = String::with_capacity(public_url.len() + base_path.len() + 72);
    for record in &page.entries {
        full_url.clear();
        full_url.push_str(public_url);
        full_url.push_str(base_path);
        full_url.push('/');
        full_url.push_str(record.id.as_str());
        bundle.push(BundleEntry {
            full_url: &full_url,
            resource_json: &record.json,
        });
        draft.resources.push(record.id.to_string());
    }
    Ok(SearchOutcome {
        bundle: bundle.finish(),
    })
}

/// The search parameters as received (cursor aside), for the audit trail.
fn canonical_query(params: &SearchParams) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params.pairs().filter(|(k, _)| *k != "_cursor") {
        form.append_pair(k, v);
    }
    form.finish()
}
