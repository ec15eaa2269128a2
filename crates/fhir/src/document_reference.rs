use serde::Serialize;

use crate::datatypes::{
    Attachment, CodeableConcept, Coding, Extension, Extra, Identifier, Meta, Reference,
};
use crate::elements::elements;

/// FHIR R4 `DocumentReference`: the pointer resource.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DocumentReference {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_identifier: Option<Identifier>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub doc_status: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<CodeableConcept>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<Vec<CodeableConcept>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<Reference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<Vec<Reference>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custodian: Option<Reference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relates_to: Option<Vec<RelatesTo>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_label: Option<Vec<CodeableConcept>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<Vec<Content>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<Context>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RelatesTo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<Reference>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Content {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachment: Option<Attachment>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<Coding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extension: Option<Vec<Extension>>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Context {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub practice_setting: Option<CodeableConcept>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub related: Option<Vec<Reference>>,
    #[serde(flatten)]
    pub extra: Extra,
}

elements!(DocumentReference {
    resource_type: "resourceType",
    id: "id",
    meta: "meta",
    master_identifier: "masterIdentifier",
    status: "status",
    doc_status: "docStatus",
    kind: "type",
    category: "category",
    subject: "subject",
    date: "date",
    author: "author",
    custodian: "custodian",
    relates_to: "relatesTo",
    security_label: "securityLabel",
    content: "content",
    context: "context",
});
elements!(RelatesTo {
    code: "code",
    target: "target"
});
elements!(Content {
    attachment: "attachment",
    format: "format",
    extension: "extension"
});
elements!(Context {
    practice_setting: "practiceSetting",
    related: "related"
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_unmodelled_elements() {
        let text = r#"{"resourceType":"DocumentReference","status":"current",
            "identifier":[{"system":"urn:x","value":"1"}],
            "context":{"practiceSetting":{"coding":[{"system":"s","code":"c"}]},"period":{"start":"2024"}},
            "content":[{"attachment":{"url":"https://x","title":"t"},"format":{"system":"f","code":"c","userSelected":true}}]}"#;
        let doc: DocumentReference = serde_json::from_str(text).unwrap();
        let back: serde_json::Value = serde_json::to_value(&doc).unwrap();
        let original: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(back, original);
    }
}
