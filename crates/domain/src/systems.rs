//! Identifier systems, code systems and extension URLs of the NRL v3 profile.

pub const NHS_NUMBER: &str = "https://fhir.nhs.uk/Id/nhs-number";
pub const ODS_CODE: &str = "https://fhir.nhs.uk/Id/ods-organization-code";
pub const SPINE_ASID: &str = "https://fhir.nhs.uk/Id/nhsSpineASID";
pub const SNOMED: &str = "http://snomed.info/sct";
pub const FORMAT_CODE: &str = "https://fhir.nhs.uk/England/CodeSystem/England-NRLFormatCode";
pub const CONTENT_STABILITY_EXT: &str =
    "https://fhir.nhs.uk/England/StructureDefinition/Extension-England-ContentStability";
pub const CONTENT_STABILITY: &str =
    "https://fhir.nhs.uk/England/CodeSystem/England-NRLContentStability";
pub const RETRIEVAL_MECHANISM_EXT: &str =
    "https://fhir.nhs.uk/England/StructureDefinition/Extension-England-NRLRetrievalMechanism";
pub const RETRIEVAL_MECHANISM: &str =
    "https://fhir.nhs.uk/England/CodeSystem/England-NRLRetrievalMechanism";
pub const SPINE_ERROR_CODES: &str = "https://fhir.nhs.uk/CodeSystem/Spine-ErrorOrWarningCode";
pub const NRLF_SUCCESS_CODES: &str = "https://fhir.nhs.uk/CodeSystem/NRLF-SuccessCode";
pub const CONFIDENTIALITY: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";
/// HL7 v3 ActCode: its `NOPAT` ("no disclosure to patient") is the label a
/// producer puts in `meta.security` to keep a pointer from its patient's view.
pub const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
/// The not-for-patient-view security label code (in [`ACT_CODE`]).
pub const NOT_FOR_PATIENT_VIEW: &str = "NOPAT";

/// `content[].format` codes and their display text.
pub const FORMAT_CODES: &[(&str, &str)] = &[
    ("urn:nhs-ic:unstructured", "Unstructured Document"),
    (
        "urn:nhs-ic:record-contact",
        "Contact details (HTTP Unsecured)",
    ),
    ("urn:nhs-ic:structured", "Structured Document"),
];
/// Content stability codes.
pub const STABILITY_CODES: &[&str] = &["static", "dynamic"];
/// Retrieval mechanism codes.
pub const RETRIEVAL_CODES: &[&str] = &["SSP", "Direct", "LDR", "InContext"];
/// `docStatus` values NRL accepts.
pub const DOC_STATUS: &[&str] = &["entered-in-error", "amended", "preliminary", "final"];
