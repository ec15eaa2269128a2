use domain::search::{self, Audience, paginate, require_permitted};
use fhir::{BundleEntry, SearchsetBuilder};

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
) -> Result<SearchOutcome, ApiError> {
    let catalogue = state.catalogue();
    let query = search::parse(
        params.pairs(),
        audience,
        state.settings().search_limits,
        catalogue,
    )
    .map_err(ApiError::Rejected)?;
    require_permitted(&query, caller.types, catalogue).map_err(ApiError::one)?;

    let rows = state.store().patient_pointers(query.subject).await?;
    let visible = |r: &domain::PointerRecord| {
        let type_ok = catalogue
            .find_key(&r.type_key)
            .is_some_and(|t| caller.types.contains(t.index));
        type_ok && (audience == Audience::Consumer || r.custodian == caller.ods)
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
    }
    Ok(SearchOutcome {
        bundle: bundle.finish(),
    })
}
