//! The admin API: recorded relationships, patient objections,
//! privacy-officer alerts, and FHIR search over the audit trail.
//!
//! Callers authenticate with an access token like any app and must be an
//! admin app (see [`AdminState::new`]). Every admin call that touches a
//! patient, or the audit trail itself, writes its own `AuditEvent` before
//! it answers; if that write fails the answer is 503.
//!
//! | method | path (under the admin base) | does |
//! |---|---|---|
//! | GET | `/relationships?patient=N` | a patient's relationships |
//! | POST | `/relationships` `{patient, ods, kind}` | record one (201) |
//! | DELETE | `/relationships/{id}` | remove one |
//! | GET/PUT/DELETE | `/patients/{nhs}/objection` (`PUT {note}`) | read / record / withdraw |
//! | GET | `/alerts?status=open\|all&_count=N&before=SEQ` | alerts, newest first |
//! | POST | `/alerts/{seq}/acknowledge` `{note}` | acknowledge one |
//! | GET | `/FHIR/R4/AuditEvent?patient=&agent=&date=&outcome=&_count=&_cursor=` | searchset Bundle |

use std::collections::HashSet;
use std::sync::Arc;

use audit::{
    Acknowledgement, AlertQuery, AuditCursor, AuditError, AuditFacts, AuditOutcome, AuditQuery,
    AuditUser, Interaction, SharedAuditLog, now_rfc3339,
};
use auth::Authenticator;
use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use domain::issue::{ErrorCode, Issue, IssueType};
use domain::{NhsNumber, OdsCode};
use serde::Deserialize;
use serde_json::{Value, json};
use store::access::{
    AccessStore, AccessStoreError, NewRelationship, Objection, Relationship, RelationshipKind,
};

use crate::error::{ApiError, fhir_response};
use crate::extract::RequestIds;
use crate::routes::table::Doc;

/// Largest `_count` for audit searches and alert lists.
const MAX_COUNT: usize = 100;

struct Inner {
    auth: Arc<Authenticator>,
    access: Arc<dyn AccessStore>,
    audit: SharedAuditLog,
    admin_clients: HashSet<String>,
    public_url: String,
    node: String,
}

/// What the admin handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AdminState(Arc<Inner>);

impl AdminState {
    /// `admin_clients`: the client ids allowed to call the admin API (until
    /// app configuration grows an `admin` role). `public_url` is the base
    /// the admin router is reachable at, for paging links, e.g.
    /// `https://nrls.example/admin`; `node` names this node in AuditEvents.
    pub fn new(
        auth: Arc<Authenticator>,
        access: Arc<dyn AccessStore>,
        audit: SharedAuditLog,
        admin_clients: impl IntoIterator<Item = String>,
        public_url: impl Into<String>,
        node: impl Into<String>,
    ) -> AdminState {
        AdminState(Arc::new(Inner {
            auth,
            access,
            audit,
            admin_clients: admin_clients.into_iter().collect(),
            public_url: public_url.into(),
            node: node.into(),
        }))
    }
}

/// The admin routes, with their state applied: nest them, e.g.
/// `.nest("/admin", routes::admin::router(admin_state))`.
/// The admin operations, for the OpenAPI document (paths under `/admin`).
pub const OPERATIONS: [(Method, &str, Doc); 9] = [
    (
        Method::GET,
        "/relationships",
        Doc::new(
            "adminListRelationships",
            "List recorded relationships of a patient or organisation",
            "admin",
        )
        .authenticated(),
    ),
    (
        Method::POST,
        "/relationships",
        Doc::new(
            "adminAddRelationship",
            "Record a relationship between an organisation and a patient",
            "admin",
        )
        .authenticated(),
    ),
    (
        Method::DELETE,
        "/relationships/{id}",
        Doc::new(
            "adminRemoveRelationship",
            "Remove a recorded relationship",
            "admin",
        )
        .authenticated(),
    ),
    (
        Method::GET,
        "/patients/{nhs}/objection",
        Doc::new(
            "adminGetObjection",
            "Whether a patient objects to sharing",
            "admin",
        )
        .authenticated(),
    ),
    (
        Method::PUT,
        "/patients/{nhs}/objection",
        Doc::new(
            "adminRecordObjection",
            "Record a patient's objection to sharing",
            "admin",
        )
        .authenticated(),
    ),
    (
        Method::DELETE,
        "/patients/{nhs}/objection",
        Doc::new(
            "adminWithdrawObjection",
            "Withdraw a patient's objection",
            "admin",
        )
        .authenticated(),
    ),
    (
        Method::GET,
        "/alerts",
        Doc::new(
            "adminListAlerts",
            "Self-claimed and break-glass accesses for a privacy officer",
            "admin",
        )
        .authenticated(),
    ),
    (
        Method::POST,
        "/alerts/{seq}/acknowledge",
        Doc::new("adminAcknowledgeAlert", "Acknowledge an alert", "admin").authenticated(),
    ),
    (
        Method::GET,
        "/FHIR/R4/AuditEvent",
        Doc::new(
            "adminSearchAuditEvents",
            "Search the audit trail by patient, agent, date and outcome",
            "admin",
        )
        .authenticated(),
    ),
];

pub fn router<S: Clone + Send + Sync + 'static>(state: AdminState) -> Router<S> {
    Router::new()
        .route(
            "/relationships",
            get(list_relationships).post(add_relationship),
        )
        .route(
            "/relationships/{id}",
            axum::routing::delete(remove_relationship),
        )
        .route(
            "/patients/{nhs}/objection",
            get(get_objection)
                .put(record_objection)
                .delete(withdraw_objection),
        )
        .route("/alerts", get(list_alerts))
        .route("/alerts/{seq}/acknowledge", post(acknowledge_alert))
        .route("/FHIR/R4/AuditEvent", get(search_audit))
        .with_state(state)
}

/// An authenticated admin caller.
pub struct Admin {
    client_id: String,
    ids: RequestIds,
}

impl FromRequestParts<AdminState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AdminState) -> Result<Self, ApiError> {
        let authorization = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let principal = state
            .0
            .auth
            .authenticate_header(authorization)
            .map_err(|e| ApiError::Unauthenticated(e.to_string()))?;
        let ids = RequestIds::from_headers(&parts.headers)?;
        if !state.0.admin_clients.contains(principal.client_id()) {
            return Err(ApiError::forbidden(
                ErrorCode::AccessDeniedLevel,
                format!("app {} is not an admin app", principal.client_id()),
            ));
        }
        Ok(Admin {
            client_id: principal.client_id().to_owned(),
            ids,
        })
    }
}

/// What an admin call did, for its AuditEvent.
struct Audited {
    interaction: Interaction,
    patient: Option<NhsNumber>,
    resources: Vec<String>,
    query: Option<String>,
}

impl Audited {
    fn new(interaction: Interaction, patient: Option<NhsNumber>) -> Audited {
        Audited {
            interaction,
            patient,
            resources: Vec::new(),
            query: None,
        }
    }
}

/// Writes the call's AuditEvent, then answers: the audit record is durable
/// before any response leaves, and a failed audit write turns it into 503.
async fn answer(
    state: &AdminState,
    admin: &Admin,
    audited: Audited,
    result: Result<Response, ApiError>,
) -> Response {
    let response = match result {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    let status = response.status();
    let facts = AuditFacts {
        interaction: audited.interaction,
        outcome: AuditOutcome::of_status(status.as_u16()),
        outcome_desc: (!status.is_success()).then(|| status.as_str().to_owned()),
        recorded: now_rfc3339(),
        request_id: Some(admin.ids.request_id.clone()),
        client_id: admin.client_id.clone(),
        organisation: None,
        user: None::<AuditUser>,
        purpose_of_use: None,
        patient: audited.patient,
        resources: audited.resources,
        query: audited.query,
        access: None,
    };
    match state
        .0
        .audit
        .append(vec![facts.to_event(&state.0.node)])
        .await
    {
        Ok(_) => response,
        Err(e) => audit_error(e).into_response(),
    }
}

fn audit_error(e: AuditError) -> ApiError {
    match e {
        AuditError::AlertNotFound(seq) => {
            ApiError::not_found(format!("alert {seq} does not exist"))
        }
        AuditError::AlreadyAcknowledged(seq) => ApiError::one(Issue::general(
            ErrorCode::Conflict,
            IssueType::Conflict,
            format!("alert {seq} is already acknowledged"),
        )),
        AuditError::Unavailable(_) => unavailable("the audit trail"),
        other => ApiError::Internal(other.to_string()),
    }
}

fn access_error(e: AccessStoreError) -> ApiError {
    match e {
        AccessStoreError::RelationshipNotFound(id) => {
            ApiError::not_found(format!("relationship {id} does not exist"))
        }
        AccessStoreError::DuplicateRelationship(id) => ApiError::one(Issue::general(
            ErrorCode::DuplicateRejected,
            IssueType::Duplicate,
            format!("this relationship is already recorded as {id}"),
        )),
        AccessStoreError::Unavailable(_) => unavailable("the access store"),
        AccessStoreError::Internal(why) => ApiError::Internal(why),
    }
}

fn unavailable(what: &str) -> ApiError {
    ApiError::one(Issue::general(
        ErrorCode::ServiceUnavailable,
        IssueType::Transient,
        format!("{what} is unavailable; retry shortly"),
    ))
}

fn invalid(parameter: &str, diagnostics: impl Into<String>) -> ApiError {
    ApiError::one(Issue::new(
        ErrorCode::InvalidParameter,
        IssueType::Invalid,
        parameter,
        diagnostics,
    ))
}

/// A bare NHS number or `https://fhir.nhs.uk/Id/nhs-number|N`.
fn nhs_number(parameter: &str, text: &str) -> Result<NhsNumber, ApiError> {
    let value = text
        .strip_prefix(domain::systems::NHS_NUMBER)
        .and_then(|rest| rest.strip_prefix('|'))
        .unwrap_or(text);
    NhsNumber::parse(value).map_err(|e| invalid(parameter, format!("{parameter}: {e}")))
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

fn relationship_json(r: &Relationship) -> Value {
    json!({
        "id": r.id,
        "patient": format!("{:010}", r.nhs_number.as_u64()),
        "ods": r.ods.as_str(),
        "kind": r.kind.as_str(),
        "recordedBy": r.recorded_by,
        "recordedAt": r.recorded_at,
    })
}

/// The query's parameters; any name outside `allowed` is a 400.
fn query_params(raw: Option<&str>, allowed: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .map(|(k, v)| {
            if allowed.contains(&k.as_ref()) {
                Ok((k.into_owned(), v.into_owned()))
            } else {
                Err(invalid(&k, format!("unsupported parameter {k:?}")))
            }
        })
        .collect()
}

fn param<'p>(params: &'p [(String, String)], name: &str) -> Option<&'p str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

async fn list_relationships(
    State(state): State<AdminState>,
    admin: Admin,
    RawQuery(raw): RawQuery,
) -> Response {
    let patient = query_params(raw.as_deref(), &["patient"]).and_then(|params| {
        let value =
            param(&params, "patient").ok_or_else(|| invalid("patient", "patient is required"))?;
        nhs_number("patient", value)
    });
    let audited = Audited::new(Interaction::Search, patient.as_ref().ok().copied());
    let result = async {
        let relationships = state
            .0
            .access
            .relationships(patient?)
            .await
            .map_err(access_error)?;
        let list: Vec<Value> = relationships.iter().map(relationship_json).collect();
        Ok(json_response(
            StatusCode::OK,
            json!({ "relationships": list }),
        ))
    }
    .await;
    answer(&state, &admin, audited, result).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RelationshipBody {
    patient: String,
    ods: String,
    kind: String,
}

async fn add_relationship(
    State(state): State<AdminState>,
    admin: Admin,
    Json(body): Json<RelationshipBody>,
) -> Response {
    let patient = nhs_number("patient", &body.patient);
    let mut audited = Audited::new(Interaction::Create, patient.as_ref().ok().copied());
    let result = async {
        let ods =
            OdsCode::parse(&body.ods).ok_or_else(|| invalid("ods", "ods is not an ODS code"))?;
        let kind = RelationshipKind::parse(&body.kind).ok_or_else(|| {
            invalid(
                "kind",
                "kind must be registered-practice, referral or encounter",
            )
        })?;
        let new = NewRelationship {
            nhs_number: patient?,
            ods,
            kind,
            recorded_by: admin.client_id.clone(),
            recorded_at: now_rfc3339(),
        };
        let created = state
            .0
            .access
            .add_relationship(new)
            .await
            .map_err(access_error)?;
        Ok(json_response(
            StatusCode::CREATED,
            relationship_json(&created),
        ))
    }
    .await;
    audited.resources.push("Relationship".to_owned());
    answer(&state, &admin, audited, result).await
}

async fn remove_relationship(
    State(state): State<AdminState>,
    admin: Admin,
    Path(id): Path<u64>,
) -> Response {
    let removed = state.0.access.remove_relationship(id).await;
    let patient = removed.as_ref().ok().map(|r| r.nhs_number);
    let mut audited = Audited::new(Interaction::Delete, patient);
    audited.resources.push(format!("Relationship/{id}"));
    let result = removed
        .map(|r| json_response(StatusCode::OK, relationship_json(&r)))
        .map_err(access_error);
    answer(&state, &admin, audited, result).await
}

fn objection_json(o: &Objection) -> Value {
    json!({
        "patient": format!("{:010}", o.nhs_number.as_u64()),
        "recordedBy": o.recorded_by,
        "recordedAt": o.recorded_at,
        "note": o.note,
    })
}

async fn get_objection(
    State(state): State<AdminState>,
    admin: Admin,
    Path(nhs): Path<String>,
) -> Response {
    let patient = nhs_number("nhs", &nhs);
    let audited = Audited::new(Interaction::Read, patient.as_ref().ok().copied());
    let result = async {
        match state
            .0
            .access
            .objection(patient?)
            .await
            .map_err(access_error)?
        {
            Some(o) => Ok(json_response(StatusCode::OK, objection_json(&o))),
            None => Err(ApiError::not_found(
                "no objection is recorded for this patient",
            )),
        }
    }
    .await;
    answer(&state, &admin, audited, result).await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NoteBody {
    #[serde(default)]
    note: Option<String>,
}

async fn record_objection(
    State(state): State<AdminState>,
    admin: Admin,
    Path(nhs): Path<String>,
    body: Option<Json<NoteBody>>,
) -> Response {
    let patient = nhs_number("nhs", &nhs);
    let audited = Audited::new(Interaction::Update, patient.as_ref().ok().copied());
    let result = async {
        let objection = Objection {
            nhs_number: patient?,
            recorded_by: admin.client_id.clone(),
            recorded_at: now_rfc3339(),
            note: body.and_then(|Json(b)| b.note),
        };
        state
            .0
            .access
            .record_objection(objection.clone())
            .await
            .map_err(access_error)?;
        Ok(json_response(StatusCode::OK, objection_json(&objection)))
    }
    .await;
    answer(&state, &admin, audited, result).await
}

async fn withdraw_objection(
    State(state): State<AdminState>,
    admin: Admin,
    Path(nhs): Path<String>,
) -> Response {
    let patient = nhs_number("nhs", &nhs);
    let audited = Audited::new(Interaction::Delete, patient.as_ref().ok().copied());
    let result = async {
        if state
            .0
            .access
            .withdraw_objection(patient?)
            .await
            .map_err(access_error)?
        {
            Ok(json_response(StatusCode::OK, json!({ "withdrawn": true })))
        } else {
            Err(ApiError::not_found(
                "no objection is recorded for this patient",
            ))
        }
    }
    .await;
    answer(&state, &admin, audited, result).await
}

async fn list_alerts(
    State(state): State<AdminState>,
    admin: Admin,
    RawQuery(raw): RawQuery,
) -> Response {
    let audited = Audited::new(Interaction::Search, None);
    let result = async {
        let params = query_params(raw.as_deref(), &["status", "_count", "before"])?;
        let unacknowledged_only = match param(&params, "status") {
            None | Some("open") => true,
            Some("all") => false,
            Some(_) => return Err(invalid("status", "status must be open or all")),
        };
        let number = |name: &str| -> Result<Option<u64>, ApiError> {
            param(&params, name)
                .map(|v| v.parse().map_err(|_| invalid(name, format!("{name} must be a positive integer"))))
                .transpose()
        };
        let count = number("_count")?.map_or(20, |c| usize::try_from(c).unwrap_or(MAX_COUNT));
        let query = AlertQuery {
            unacknowledged_only,
            count: count.clamp(1, MAX_COUNT),
            before_seq: number("before")?,
        };
        let alerts = state.0.audit.alerts(&query).await.map_err(audit_error)?;
        let list: Vec<Value> = alerts
            .iter()
            .map(|a| {
                json!({
                    "seq": a.record.seq,
                    "kind": a.kind,
                    "acknowledgement": a.acknowledgement.as_ref().map(|k| json!({ "by": k.by, "at": k.at, "note": k.note })),
                    "event": serde_json::from_str::<Value>(&a.record.event_json).unwrap_or(Value::Null),
                })
            })
            .collect();
        Ok(json_response(StatusCode::OK, json!({ "alerts": list })))
    }
    .await;
    answer(&state, &admin, audited, result).await
}

async fn acknowledge_alert(
    State(state): State<AdminState>,
    admin: Admin,
    Path(seq): Path<u64>,
    body: Option<Json<NoteBody>>,
) -> Response {
    let mut audited = Audited::new(Interaction::Update, None);
    audited.resources.push(format!("AuditEvent/{seq}"));
    let ack = Acknowledgement {
        by: admin.client_id.clone(),
        at: now_rfc3339(),
        note: body.and_then(|Json(b)| b.note),
    };
    let result = state
        .0
        .audit
        .acknowledge(seq, ack)
        .await
        .map(|()| json_response(StatusCode::OK, json!({ "acknowledged": seq })))
        .map_err(audit_error);
    answer(&state, &admin, audited, result).await
}

mod audit_search;

async fn search_audit(
    State(state): State<AdminState>,
    admin: Admin,
    RawQuery(raw): RawQuery,
) -> Response {
    let raw = raw.unwrap_or_default();
    let parsed = audit_search::parse(&raw);
    let mut audited = Audited::new(
        Interaction::Search,
        parsed.as_ref().ok().and_then(|q| q.patient),
    );
    audited.query = Some(raw.clone());
    let result = async {
        let query: AuditQuery = parsed?;
        let page = state.0.audit.search(&query).await.map_err(audit_error)?;
        let base = format!("{}/FHIR/R4/AuditEvent", state.0.public_url);
        Ok(fhir_response(
            StatusCode::OK,
            audit_search::bundle(&base, &raw, &query, &page),
        ))
    }
    .await;
    answer(&state, &admin, audited, result).await
}

/// The cursor of the page after `query`.
fn next_cursor(query: &AuditQuery, before_seq: u64) -> String {
    AuditCursor {
        before_seq,
        fingerprint: query.fingerprint(),
    }
    .encode()
}

#[cfg(test)]
mod tests;
