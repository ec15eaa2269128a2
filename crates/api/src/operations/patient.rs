//! Operations for patients themselves (signed in with NHS login, proved to
//! P9): their own pointers, filtered to what a patient is shown. The caller
//! is never another patient: the NHS number comes from the patient's
//! verified identity, not from the request.
//!
//! Each call records one AuditEvent with purpose of use `PATRQT` (patient
//! requested), the client `nrls-patient` and the patient as the subject: the
//! shape of IHE BALP's patient-access events.

use audit::Interaction;
use domain::access::{AccessBasis, PurposeOfUse};
use domain::{NhsNumber, PointerRecord};
use store::access::Objection;

use super::Context;
use crate::audit_trail::{AuditDraft, audited};
use crate::caller::{Actor, RequestAccess};
use crate::error::ApiError;

/// The client id patient requests are audited under.
pub const PATIENT_CLIENT_ID: &str = "nrls-patient";

/// `PATRQT`: the HL7 v3 ActReason a patient's own request carries.
pub const PATIENT_REQUESTED: &str = "PATRQT";

/// The security label a producer puts on a pointer the patient must not
/// be shown (HL7 v3 ActCode `NOPAT`, "no disclosure to patient"), in
/// `meta.security` with system `http://terminology.hl7.org/CodeSystem/v3-ActCode`.
pub const NOT_FOR_PATIENT_VIEW: &str = domain::systems::NOT_FOR_PATIENT_VIEW;

/// Security labels that hide a pointer from its patient: restricted (`R`),
/// very restricted (`V`) and not-for-patient-view (`NOPAT`).
pub const HIDDEN_FROM_PATIENTS: &[&str] = &["R", "V", NOT_FOR_PATIENT_VIEW];

/// A patient acting for themselves.
#[derive(Debug, Clone)]
pub struct PatientCaller {
    pub nhs_number: NhsNumber,
    request_id: String,
    access: RequestAccess,
}

impl PatientCaller {
    /// The patient `nhs_number`, as verified by NHS login.
    pub fn new(nhs_number: NhsNumber) -> PatientCaller {
        PatientCaller {
            nhs_number,
            request_id: uuid::Uuid::new_v4().to_string(),
            access: RequestAccess {
                user: None,
                purpose: Some(PurposeOfUse::Other(PATIENT_REQUESTED.to_owned())),
                basis: AccessBasis::Recorded,
            },
        }
    }

    /// This request's id (the correlation id sent to record sources).
    pub(crate) fn request_id(&self) -> &str {
        &self.request_id
    }

    pub(crate) fn actor(&self) -> Actor<'_> {
        Actor {
            client_id: PATIENT_CLIENT_ID,
            organisation: None,
            request_id: &self.request_id,
            access: Some(&self.access),
        }
    }
}

/// The patient's pointers they are shown.
#[derive(Debug)]
pub struct MyPointers {
    /// Counts only what is shown.
    pub total: u64,
    /// Newest first.
    pub entries: Vec<PointerRecord>,
}

/// True when a patient is shown `record`: current, of a patient-visible
/// type (`visible_types`: SNOMED CT codes) and not labelled R, V or NOPAT.
pub fn patient_visible(record: &PointerRecord, visible_types: &[String]) -> bool {
    let code = record
        .type_key
        .rsplit_once('|')
        .map_or(record.type_key.as_str(), |(_, code)| code);
    let current = serde_json::from_str::<serde_json::Value>(&record.json)
        .is_ok_and(|json| json["status"] == "current");
    current
        && visible_types.iter().any(|t| t == code)
        && !record
            .security_labels
            .iter()
            .any(|l| HIDDEN_FROM_PATIENTS.contains(&l.as_str()))
}

/// The patient's own pointers, as a patient sees them; audited.
pub async fn my_pointers(
    ctx: &Context<'_>,
    caller: &PatientCaller,
    visible_types: &[String],
) -> Result<MyPointers, ApiError> {
    let mut draft = AuditDraft::new(Interaction::Search);
    draft.patient = Some(caller.nhs_number);
    draft.query = Some(format!("patient={}", caller.nhs_number));
    let result = async {
        let rows = ctx
            .consumer_store
            .patient_pointers(caller.nhs_number)
            .await?;
        let entries: Vec<PointerRecord> = rows
            .into_iter()
            .map(|s| s.record)
            .filter(|r| patient_visible(r, visible_types))
            .collect();
        Ok(MyPointers {
            total: entries.len() as u64,
            entries,
        })
    }
    .await;
    if let Ok(found) = &result {
        draft
            .resources
            .extend(found.entries.iter().map(|r| r.id.to_string()));
    }
    audited(ctx, caller.actor(), draft, result).await
}

/// One of the patient's own pointers, if they are shown it (else 404);
/// audited as a read.
pub async fn my_pointer(
    ctx: &Context<'_>,
    caller: &PatientCaller,
    id: &str,
    visible_types: &[String],
) -> Result<PointerRecord, ApiError> {
    let mut draft = AuditDraft::new(Interaction::Read);
    draft.patient = Some(caller.nhs_number);
    let result = async {
        let rows = ctx
            .consumer_store
            .patient_pointers(caller.nhs_number)
            .await?;
        rows.into_iter()
            .map(|s| s.record)
            .find(|r| r.id.as_str() == id && patient_visible(r, visible_types))
            // The same answer whether the pointer is hidden, another
            // patient's or absent: none of them is the patient's to know.
            .ok_or_else(|| {
                ApiError::not_found(format!("DocumentReference/{id} is not one of your records"))
            })
    }
    .await;
    if let Ok(record) = &result {
        draft.resources.push(record.id.to_string());
    }
    audited(ctx, caller.actor(), draft, result).await
}

/// A patient request naming another patient's NHS number (`asked`): 404,
/// audited as a failure in the caller's own trail. The other number is kept
/// only in the event's query entity, which "who looked" never shows, so the
/// other patient is not told about a request that showed nothing.
pub async fn refuse_other_patient(
    ctx: &Context<'_>,
    caller: &PatientCaller,
    interaction: Interaction,
    asked: &str,
) -> ApiError {
    let mut draft = AuditDraft::always(interaction);
    draft.patient = Some(caller.nhs_number);
    draft.query = Some(format!("other-patient={asked}"));
    let refused: Result<(), ApiError> = Err(ApiError::not_found(
        "no such patient: you can only see your own records",
    ));
    match audited(ctx, caller.actor(), draft, refused).await {
        Err(e) => e,
        Ok(()) => ApiError::Internal("a refusal was answered as a success".into()),
    }
}

/// A pointer as a patient is given it: no retrieval details. Attachment
/// URLs (`ssp://` and any other) and every reference naming an ASID
/// (`author`, `context.related`) are removed, as is the producer's
/// `masterIdentifier`; the patient contacts the organisation instead.
pub fn patient_view(json: &str) -> serde_json::Value {
    let mut pointer: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    if let Some(content) = pointer.get_mut("content").and_then(|c| c.as_array_mut()) {
        for item in content {
            if let Some(attachment) = item.get_mut("attachment").and_then(|a| a.as_object_mut()) {
                attachment.remove("url");
            }
        }
    }
    if let Some(object) = pointer.as_object_mut() {
        object.remove("masterIdentifier");
    }
    without_asids(&mut pointer);
    pointer
}

/// Drops, at any depth, array items that are references to an ASID, and
/// arrays left empty by it.
fn without_asids(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Array(items) => {
            items.retain(|item| !names_asid(item));
            items.iter_mut().for_each(without_asids);
        }
        serde_json::Value::Object(fields) => {
            fields.values_mut().for_each(without_asids);
            fields.retain(|_, v| !v.as_array().is_some_and(Vec::is_empty));
        }
        _ => {}
    }
}

fn names_asid(reference: &serde_json::Value) -> bool {
    reference
        .pointer("/identifier/system")
        .and_then(serde_json::Value::as_str)
        == Some(domain::systems::SPINE_ASID)
}

/// The patient's objection to sharing through nrls, if recorded; audited.
/// The same fact the admin objection API reads and writes
/// (`store::access`), so the two always agree.
pub async fn my_objection(
    ctx: &Context<'_>,
    caller: &PatientCaller,
) -> Result<Option<Objection>, ApiError> {
    let mut draft = AuditDraft::always(Interaction::Read);
    draft.patient = Some(caller.nhs_number);
    let result = ctx
        .access
        .facts
        .objection(caller.nhs_number)
        .await
        .map_err(ApiError::from);
    audited(ctx, caller.actor(), draft, result).await
}

/// Records the patient's objection: consumers stop seeing their pointers at
/// once (break-glass stays possible, and audited); audited as an update.
pub async fn record_my_objection(
    ctx: &Context<'_>,
    caller: &PatientCaller,
) -> Result<Objection, ApiError> {
    let mut draft = AuditDraft::always(Interaction::Update);
    draft.patient = Some(caller.nhs_number);
    let objection = Objection {
        nhs_number: caller.nhs_number,
        recorded_by: PATIENT_CLIENT_ID.to_owned(),
        recorded_at: audit::now_rfc3339(),
        note: Some("Recorded by the patient, signed in with NHS login".to_owned()),
    };
    let result = ctx
        .access
        .facts
        .record_objection(objection.clone())
        .await
        .map(|()| objection)
        .map_err(ApiError::from);
    audited(ctx, caller.actor(), draft, result).await
}

/// Withdraws the patient's objection; `false` when none was recorded.
/// Audited as a delete.
pub async fn withdraw_my_objection(
    ctx: &Context<'_>,
    caller: &PatientCaller,
) -> Result<bool, ApiError> {
    let mut draft = AuditDraft::always(Interaction::Delete);
    draft.patient = Some(caller.nhs_number);
    let result = ctx
        .access
        .facts
        .withdraw_objection(caller.nhs_number)
        .await
        .map_err(ApiError::from);
    audited(ctx, caller.actor(), draft, result).await
}

#[cfg(test)]
mod tests {
    use super::patient_view;

    #[test]
    fn the_patient_view_has_no_retrieval_details() {
        let asid = domain::systems::SPINE_ASID;
        let pointer = serde_json::json!({
            "resourceType": "DocumentReference",
            "masterIdentifier": {"value": "producer-1"},
            "author": [{"identifier": {"system": asid, "value": "200000000610"}},
                       {"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "RR8"}}],
            "context": {"related": [{"identifier": {"system": asid, "value": "200000000611"}}]},
            "content": [{"attachment": {"contentType": "application/pdf", "url": "ssp://example/doc.pdf"}}],
        });
        let shown = patient_view(&pointer.to_string());
        let text = shown.to_string();
        for hidden in ["ssp://", "200000000610", "200000000611", "producer-1", asid] {
            assert!(!text.contains(hidden), "{hidden} in {text}");
        }
        assert_eq!(shown["author"][0]["identifier"]["value"], "RR8");
        assert_eq!(
            shown["content"][0]["attachment"]["contentType"],
            "application/pdf"
        );
        assert!(shown["context"].get("related").is_none());
    }
}
