//! Convergence: resources from several regional sources that describe the
//! same clinical fact become one entry that names all its sources.
//!
//! Pure and deterministic: the same resources, in any order, give the same
//! entries in the same order. The rules (docs/federation.md has the table):
//!
//! - **AllergyIntolerance**: same fact when the substance `code`s share a
//!   coding. Merged: the highest criticality, the union of reactions.
//! - **Condition**: same `code` and onsets within [`Rules::condition_onset_window_days`]
//!   of the group's earliest onset.
//! - **MedicationStatement / MedicationRequest** (each type on its own): same
//!   `medicationCodeableConcept` and overlapping periods.
//! - **Immunization**: same `vaccineCode` given on the same day.
//! - Everything else (Encounter, ...) and any resource with no usable code or
//!   no date its rule needs passes through unmerged.
//! - `entered-in-error` resources are dropped.
//!
//! A merged entry keeps one source's copy (the most recently updated) and
//! changes only what a rule says; where sources disagree on a compared
//! element (e.g. `clinicalStatus` active vs resolved) the entry carries a
//! conflict extension naming every value and source, and is tagged
//! `conflict`. Nothing is silently resolved.

mod codes;
pub mod dates;
pub mod ext;
pub mod query;
mod rules;

#[cfg(test)]
mod tests;

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::OdsCode;
use dates::{clinical_span, occurrence_day, parse_range};
use rules::{Grouping, TypeRule, rank, rule_for};

pub use query::{DateBounds, Section, SharedRecordQuery};

/// One resource as a source returned it.
#[derive(Debug, Clone, PartialEq)]
pub struct SourcedResource {
    /// The custodian whose source returned it.
    pub source: OdsCode,
    pub resource: Value,
}

/// One source resource that went into an entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Member {
    pub source: OdsCode,
    pub resource_type: String,
    /// The id the source gave it, if any.
    pub id: Option<String>,
}

/// Sources disagreeing on one element of one fact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The element, e.g. `clinicalStatus`.
    pub element: String,
    /// What each source reported, sorted by source then value.
    pub reported: Vec<(OdsCode, String)>,
    /// The rule that chose the value shown, if one did.
    pub resolution: Option<String>,
}

/// One fact of the converged record.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvergedEntry {
    /// Deterministic id (a UUID-shaped digest of the members); also `resource.id`.
    pub id: String,
    /// The resource as served, with the sources (and any conflict) extensions.
    pub resource: Value,
    /// Every source resource merged into it, sorted.
    pub members: Vec<Member>,
    /// The distinct sources, sorted.
    pub sources: Vec<OdsCode>,
    pub conflicts: Vec<Conflict>,
}

/// Tunable convergence parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Two conditions with the same code are one when their onsets are at most
    /// this many days apart. Default 30: the same diagnosis recorded by a GP and
    /// a hospital a few weeks apart is one problem; a recurrence a season later
    /// is another.
    pub condition_onset_window_days: u32,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            condition_onset_window_days: 30,
        }
    }
}

/// The result of convergence.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Convergence {
    /// Entries in output order.
    pub entries: Vec<ConvergedEntry>,
    /// Resources dropped because their source marked them `entered-in-error`.
    pub entered_in_error: usize,
    /// Items that were not FHIR resources (no `resourceType`), dropped.
    pub unusable: usize,
}

struct Item {
    source: OdsCode,
    resource: Value,
    resource_type: String,
    id: Option<String>,
    json: String,
}

impl Item {
    fn order(&self, other: &Item) -> Ordering {
        rank(&self.resource_type)
            .cmp(&rank(&other.resource_type))
            .then_with(|| self.resource_type.cmp(&other.resource_type))
            .then_with(|| self.source.cmp(&other.source))
            .then_with(|| self.id.cmp(&other.id))
            .then_with(|| self.json.cmp(&other.json))
    }

    fn last_updated(&self) -> i64 {
        self.resource
            .get("meta")
            .and_then(|m| m.get("lastUpdated"))
            .and_then(Value::as_str)
            .and_then(parse_range)
            .map_or(i64::MIN, |r| r.0)
    }
}

/// Converges resources from every source into one deterministic list.
pub fn converge(input: Vec<SourcedResource>, rules: &Rules) -> Convergence {
    let mut out = Convergence::default();
    let mut items = Vec::with_capacity(input.len());
    for SourcedResource { source, resource } in input {
        let Some(resource_type) = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            out.unusable += 1;
            continue;
        };
        if codes::is_entered_in_error(&resource) {
            out.entered_in_error += 1;
            continue;
        }
        let id = resource
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let json = resource.to_string();
        items.push(Item {
            source,
            resource,
            resource_type,
            id,
            json,
        });
    }
    items.sort_by(Item::order);
    // The same resource returned twice (e.g. on two pages) counts once.
    items.dedup_by(|b, a| {
        a.source == b.source
            && a.resource_type == b.resource_type
            && match (&a.id, &b.id) {
                (Some(x), Some(y)) => x == y,
                (None, None) => a.json == b.json,
                _ => false,
            }
    });

    let mut clusters: Vec<Vec<usize>> = Vec::new();
    let mut start = 0;
    while start < items.len() {
        let resource_type = &items[start].resource_type;
        let end = start
            + items[start..]
                .iter()
                .take_while(|i| &i.resource_type == resource_type)
                .count();
        match rule_for(resource_type) {
            None => clusters.extend((start..end).map(|i| vec![i])),
            Some(rule) => clusters.extend(cluster_type(&items, start..end, rule, rules)),
        }
        start = end;
    }

    out.entries = clusters
        .iter()
        .map(|cluster| build_entry(&items, cluster))
        .collect();
    out.entries.sort_by(entry_order);
    out
}

/// Splits the items of one type into facts: items sharing any code token form
/// a code group (union-find), then each group is split by the time rule.
fn cluster_type(
    items: &[Item],
    range: std::ops::Range<usize>,
    rule: &TypeRule,
    rules: &Rules,
) -> Vec<Vec<usize>> {
    let base = range.start;
    let tokens: Vec<Vec<String>> = range
        .clone()
        .map(|i| codes::tokens(items[i].resource.get(rule.code_element)))
        .collect();
    let mut parent: Vec<usize> = (0..tokens.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let mut first_with: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, item_tokens) in tokens.iter().enumerate() {
        for token in item_tokens {
            if let Some(&j) = first_with.get(token.as_str()) {
                let (a, b) = (root(&mut parent, i), root(&mut parent, j));
                parent[a.max(b)] = a.min(b);
            } else {
                first_with.insert(token, i);
            }
        }
    }
    let mut clusters = Vec::new();
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, item_tokens) in tokens.iter().enumerate() {
        if item_tokens.is_empty() {
            // No usable code: passes through unmerged.
            clusters.push(vec![base + i]);
        } else {
            let r = root(&mut parent, i);
            groups.entry(r).or_default().push(base + i);
        }
    }
    for group in groups.into_values() {
        clusters.extend(split_in_time(items, group, rule.grouping, rules));
    }
    clusters
}

/// Splits one code group by the type's time rule.
fn split_in_time(
    items: &[Item],
    group: Vec<usize>,
    grouping: Grouping,
    rules: &Rules,
) -> Vec<Vec<usize>> {
    match grouping {
        Grouping::Code => vec![group],
        Grouping::SameDay => {
            let mut by_day: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
            let mut out = Vec::new();
            for i in group {
                match occurrence_day(&items[i].resource) {
                    Some(day) => by_day.entry(day).or_default().push(i),
                    None => out.push(vec![i]),
                }
            }
            out.extend(by_day.into_values());
            out
        }
        Grouping::OnsetWindow | Grouping::OverlappingPeriod => {
            let mut out = Vec::new();
            let mut dated = Vec::new();
            for i in group {
                match clinical_span(&items[i].resource) {
                    Some(span) => dated.push((span, i)),
                    None => out.push(vec![i]),
                }
            }
            dated.sort_by_key(|(span, i)| (span.start, *i));
            let window = i64::from(rules.condition_onset_window_days) * 86_400;
            // (anchor start, furthest end, members)
            let mut current: Option<(i64, Option<i64>, Vec<usize>)> = None;
            for (span, i) in dated {
                let joins = current.as_ref().is_some_and(|(anchor, end, _)| {
                    if grouping == Grouping::OnsetWindow {
                        span.start.saturating_sub(*anchor) <= window
                    } else {
                        end.is_none_or(|e| span.start <= e)
                    }
                });
                match (&mut current, joins) {
                    (Some((_, end, members)), true) => {
                        members.push(i);
                        *end = match (*end, span.end) {
                            (Some(a), Some(b)) => Some(a.max(b)),
                            _ => None,
                        };
                    }
                    _ => {
                        if let Some((_, _, members)) = current.take() {
                            out.push(members);
                        }
                        current = Some((span.start, span.end, vec![i]));
                    }
                }
            }
            if let Some((_, _, members)) = current {
                out.push(members);
            }
            for cluster in &mut out {
                cluster.sort_unstable();
            }
            out
        }
    }
}

fn build_entry(items: &[Item], cluster: &[usize]) -> ConvergedEntry {
    // The representative: the most recently updated copy; ties go to the
    // first in sort order, so the choice never depends on arrival order.
    let representative = cluster
        .iter()
        .copied()
        .max_by(|a, b| {
            items[*a]
                .last_updated()
                .cmp(&items[*b].last_updated())
                .then_with(|| b.cmp(a))
        })
        .unwrap_or(cluster[0]);
    let ordered: Vec<&Item> = std::iter::once(representative)
        .chain(cluster.iter().copied().filter(|i| *i != representative))
        .map(|i| &items[i])
        .collect();
    let resources: Vec<&Value> = ordered.iter().map(|i| &i.resource).collect();
    let resource_type = ordered[0].resource_type.as_str();
    let mut resource = ordered[0].resource.clone();

    let mut conflicts = Vec::new();
    if let Some(rule) = rule_for(resource_type).filter(|_| cluster.len() > 1) {
        if resource_type == "AllergyIntolerance" {
            rules::merge_allergy(&mut resource, &resources);
        }
        for element in rule.compared {
            let mut reported: Vec<(OdsCode, String)> = rules::reported_values(&resources, element)
                .into_iter()
                .map(|(i, v)| (ordered[i].source.clone(), v))
                .collect();
            reported.sort();
            reported.dedup();
            let distinct = {
                let mut values: Vec<&String> = reported.iter().map(|(_, v)| v).collect();
                values.sort();
                values.dedup();
                values.len()
            };
            if distinct > 1 {
                conflicts.push(Conflict {
                    element: (*element).to_owned(),
                    reported,
                    resolution: rules::resolution(resource_type, element).map(str::to_owned),
                });
            }
        }
    }

    let mut members: Vec<Member> = ordered
        .iter()
        .map(|i| Member {
            source: i.source.clone(),
            resource_type: i.resource_type.clone(),
            id: i.id.clone(),
        })
        .collect();
    members.sort();
    let mut sources: Vec<OdsCode> = members.iter().map(|m| m.source.clone()).collect();
    sources.dedup();

    let id = entry_id(cluster.iter().map(|i| &items[*i]));
    if let Some(object) = resource.as_object_mut() {
        object.insert("id".to_owned(), Value::String(id.clone()));
    }
    ext::push_extension(&mut resource, ext::sources_extension(&sources));
    for conflict in &conflicts {
        ext::push_extension(&mut resource, ext::conflict_extension(conflict));
    }
    if !conflicts.is_empty() {
        ext::push_tag(&mut resource, "conflict", "Sources disagree");
    }
    ConvergedEntry {
        id,
        resource,
        members,
        sources,
        conflicts,
    }
}

/// A UUID-shaped (version 8) digest of the members, so an entry keeps its id
/// for as long as the same source resources make it up.
fn entry_id<'a>(members: impl Iterator<Item = &'a Item>) -> String {
    let mut lines: Vec<String> = members
        .map(|m| {
            let local = m.id.clone().unwrap_or_else(|| {
                let digest = Sha256::digest(m.json.as_bytes());
                digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
            });
            format!("{}\u{0}{}\u{0}{local}", m.source, m.resource_type)
        })
        .collect();
    lines.sort();
    stable_uuid(&lines.join("\n"))
}

/// A UUID (version 8, RFC 9562) derived from `text` by SHA-256: the same text
/// always gives the same id, so `urn:uuid:` references are reproducible.
pub fn stable_uuid(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let mut hex: Vec<u8> = digest
        .iter()
        .take(16)
        .flat_map(|b| format!("{b:02x}").into_bytes())
        .collect();
    hex[12] = b'8';
    hex[16] = b"89ab"[usize::from(hex[16] % 4)];
    let hex = String::from_utf8(hex).unwrap_or_default();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Output order: by type ([`rules::RULES`] order, then Encounter, then the
/// rest by name), newest clinical date first (undated last), then code, then
/// sources, then id.
fn entry_order(a: &ConvergedEntry, b: &ConvergedEntry) -> Ordering {
    let kind = |e: &ConvergedEntry| {
        e.members
            .first()
            .map(|m| m.resource_type.clone())
            .unwrap_or_default()
    };
    let (ka, kb) = (kind(a), kind(b));
    let date = |e: &ConvergedEntry| clinical_span(&e.resource).map(|s| s.start);
    let code = |e: &ConvergedEntry, kind: &str| {
        let element = rule_for(kind).map_or("code", |r| r.code_element);
        codes::first_token(&e.resource, element)
    };
    rank(&ka)
        .cmp(&rank(&kb))
        .then_with(|| ka.cmp(&kb))
        .then_with(|| match (date(a), date(b)) {
            (Some(x), Some(y)) => y.cmp(&x),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        })
        .then_with(|| code(a, &ka).cmp(&code(b, &kb)))
        .then_with(|| a.sources.cmp(&b.sources))
        .then_with(|| a.id.cmp(&b.id))
}
