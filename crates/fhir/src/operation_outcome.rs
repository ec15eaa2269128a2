use serde::Serialize;

use crate::datatypes::{CodeableConcept, Coding};

/// FHIR R4 `OperationOutcome`, as nrls writes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationOutcome {
    pub resource_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub issue: Vec<OutcomeIssue>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutcomeIssue {
    pub severity: &'static str,
    pub code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<CodeableConcept>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expression: Vec<String>,
}

impl OperationOutcome {
    pub fn new(id: Option<String>, issue: Vec<OutcomeIssue>) -> Self {
        OperationOutcome {
            resource_type: "OperationOutcome",
            id,
            issue,
        }
    }
}

impl OutcomeIssue {
    /// An issue whose `details` carries one coding from `system`.
    pub fn coded(
        severity: &'static str,
        code: &'static str,
        detail: Coding,
        diagnostics: impl Into<String>,
        expression: Vec<String>,
    ) -> Self {
        OutcomeIssue {
            severity,
            code,
            details: Some(CodeableConcept {
                coding: Some(vec![detail]),
                ..Default::default()
            }),
            diagnostics: Some(diagnostics.into()),
            expression,
        }
    }
}
