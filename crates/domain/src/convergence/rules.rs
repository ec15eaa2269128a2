//! The per-type convergence rules: which element holds the code, how entries
//! with a shared code are told apart in time, which elements must agree, and
//! the merges the rules make explicitly (allergy criticality and reactions).

use serde_json::Value;

use super::codes::{status_value, tokens};

/// How entries that share a code are split into separate facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grouping {
    /// One fact per code: an allergy to a substance is one allergy.
    Code,
    /// Same fact when onsets lie within the window of the group's first onset.
    OnsetWindow,
    /// Same fact when periods overlap (an open period never ends).
    OverlappingPeriod,
    /// Same fact when given on the same calendar day.
    SameDay,
}

/// The rule for one resource type.
#[derive(Debug)]
pub struct TypeRule {
    pub resource_type: &'static str,
    /// The CodeableConcept that identifies the fact.
    pub code_element: &'static str,
    pub grouping: Grouping,
    /// Elements every source must agree on; a difference is flagged.
    pub compared: &'static [&'static str],
}

/// Types that converge, in output order. Anything else passes through.
pub const RULES: &[TypeRule] = &[
    TypeRule {
        resource_type: "AllergyIntolerance",
        code_element: "code",
        grouping: Grouping::Code,
        compared: &[
            "clinicalStatus",
            "verificationStatus",
            "type",
            "criticality",
        ],
    },
    TypeRule {
        resource_type: "Condition",
        code_element: "code",
        grouping: Grouping::OnsetWindow,
        compared: &["clinicalStatus", "verificationStatus", "severity"],
    },
    TypeRule {
        resource_type: "MedicationStatement",
        code_element: "medicationCodeableConcept",
        grouping: Grouping::OverlappingPeriod,
        compared: &["status"],
    },
    TypeRule {
        resource_type: "MedicationRequest",
        code_element: "medicationCodeableConcept",
        grouping: Grouping::OverlappingPeriod,
        compared: &["status", "intent"],
    },
    TypeRule {
        resource_type: "Immunization",
        code_element: "vaccineCode",
        grouping: Grouping::SameDay,
        compared: &["status"],
    },
];

/// Output rank of a resource type: converging types first in [`RULES`] order,
/// then Encounter, then anything else.
pub fn rank(resource_type: &str) -> usize {
    RULES
        .iter()
        .position(|r| r.resource_type == resource_type)
        .unwrap_or(if resource_type == "Encounter" {
            RULES.len()
        } else {
            RULES.len() + 1
        })
}

pub fn rule_for(resource_type: &str) -> Option<&'static TypeRule> {
    RULES.iter().find(|r| r.resource_type == resource_type)
}

/// How a rule resolves a compared element, if it does (the disagreement is
/// still flagged, with this resolution).
pub fn resolution(resource_type: &str, element: &str) -> Option<&'static str> {
    match (resource_type, element) {
        ("AllergyIntolerance", "criticality") => {
            Some("highest criticality kept (high > unable-to-assess > low)")
        }
        _ => None,
    }
}

fn criticality_rank(value: Option<&str>) -> u8 {
    match value {
        Some("high") => 3,
        Some("unable-to-assess") => 2,
        Some("low") => 1,
        _ => 0,
    }
}

fn severity_rank(reaction: &Value) -> u8 {
    match reaction.get("severity").and_then(Value::as_str) {
        Some("severe") => 3,
        Some("moderate") => 2,
        Some("mild") => 1,
        _ => 0,
    }
}

/// What makes two reactions the same: their manifestation codes (and
/// substance codes, if given); without codes, the whole reaction.
fn reaction_key(reaction: &Value) -> String {
    let manifestations: Vec<String> = reaction
        .get("manifestation")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|m| tokens(Some(m)))
        .collect();
    if manifestations.is_empty() {
        return reaction.to_string();
    }
    let mut key = manifestations;
    key.sort();
    key.dedup();
    let substance = tokens(reaction.get("substance")).join(",");
    format!("{}#{substance}", key.join(","))
}

/// Merges allergy members into `merged` (a copy of the representative, which
/// comes first in `members`): the highest criticality, and the union of
/// reactions (one per manifestation, the most severe kept).
pub fn merge_allergy(merged: &mut Value, members: &[&Value]) {
    let criticality = members
        .iter()
        .filter_map(|m| m.get("criticality").and_then(Value::as_str))
        .max_by_key(|c| criticality_rank(Some(c)));
    if let (Some(c), Some(object)) = (criticality, merged.as_object_mut()) {
        object.insert("criticality".to_owned(), Value::String(c.to_owned()));
    }
    let mut reactions: Vec<(String, Value)> = Vec::new();
    let all = members
        .iter()
        .filter_map(|m| m.get("reaction").and_then(Value::as_array))
        .flatten();
    for reaction in all {
        let key = reaction_key(reaction);
        match reactions.iter_mut().find(|(k, _)| *k == key) {
            Some((_, kept)) if severity_rank(reaction) > severity_rank(kept) => {
                *kept = reaction.clone()
            }
            Some(_) => {}
            None => reactions.push((key, reaction.clone())),
        }
    }
    if !reactions.is_empty()
        && let Some(object) = merged.as_object_mut()
    {
        object.insert(
            "reaction".to_owned(),
            Value::Array(reactions.into_iter().map(|(_, r)| r).collect()),
        );
    }
}

/// Every distinct value members report for `element`, as (member index, value).
pub fn reported_values(members: &[&Value], element: &str) -> Vec<(usize, String)> {
    members
        .iter()
        .enumerate()
        .filter_map(|(i, m)| status_value(m.get(element)).map(|v| (i, v)))
        .collect()
}
