//! `/consumer/FHIR/R4/Subscription` and the topics (`/Basic`): handlers that
//! call `operations::subscriptions` and shape Backport IG resources.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use domain::Role;
use domain::issue::{ErrorCode, Issue, IssueType};
use domain::subscription::notification::{self, Event, Kind, Status};
use domain::subscription::{PayloadContent, Topic, resource};
use serde_json::{Value, json};
use store::NotificationEvent;

use super::{CONSUMER_BASE, PRODUCER_BASE};
use crate::error::{ApiError, fhir_response};
use crate::extract::{JsonBody, PathParam, Subscriber};
use crate::operations::subscriptions::{self as ops, SubscriptionView};
use crate::state::AppState;
use crate::table::{Doc, Routes, media};

const TAG: &str = "subscriptions";
const FHIR_BODY: &[&str] = &[media::FHIR_JSON, media::JSON];

/// The API base a subscription made in `role` lives under (and whose
/// DocumentReference URLs its notifications name).
pub fn base_for(role: Role) -> &'static str {
    match role {
        Role::Producer => PRODUCER_BASE,
        Role::Consumer => CONSUMER_BASE,
    }
}

/// Absolute URL of a subscription.
pub fn subscription_url(public_url: &str, role: Role, id: &str) -> String {
    format!("{public_url}{}/Subscription/{id}", base_for(role))
}

/// A stored event as a notification carries it (`resource` is filled in
/// by the caller for `full-resource` payloads).
pub fn notification_event(public_url: &str, role: Role, e: &NotificationEvent) -> Event {
    let pointer = |id: &str| format!("{public_url}{}/DocumentReference/{id}", base_for(role));
    Event {
        number: e.number,
        timestamp: e.event.recorded_at.clone(),
        focus_url: pointer(e.event.focus.as_str()),
        context_urls: e
            .event
            .additional_context
            .iter()
            .map(|id| pointer(id.as_str()))
            .collect(),
        deleted: e.event.change == store::PointerChange::Deleted,
        resource: None,
    }
}

/// OpenAPI operation ids of [`routes`], per API.
const CONSUMER_IDS: [&str; 9] = [
    "subscriptionCreate",
    "subscriptionSearch",
    "subscriptionRead",
    "subscriptionReactivate",
    "subscriptionDelete",
    "subscriptionStatus",
    "subscriptionEvents",
    "topicSearch",
    "topicRead",
];
const PRODUCER_IDS: [&str; 9] = [
    "producerSubscriptionCreate",
    "producerSubscriptionSearch",
    "producerSubscriptionRead",
    "producerSubscriptionReactivate",
    "producerSubscriptionDelete",
    "producerSubscriptionStatus",
    "producerSubscriptionEvents",
    "producerTopicSearch",
    "producerTopicRead",
];

/// Subscription and topic routes, relative to the API base of `role`:
/// consumers subscribe to what they may read, producers to their own
/// pointers (the access policy limits a producer to its own).
pub fn routes(role: Role) -> Routes {
    match role {
        Role::Consumer => build::<false>(CONSUMER_IDS),
        Role::Producer => build::<true>(PRODUCER_IDS),
    }
}

fn build<const P: bool>(ids: [&'static str; 9]) -> Routes {
    let doc = |id, summary| Doc::new(id, summary, TAG).authenticated();
    Routes::new()
        .add(
            Method::POST,
            "/Subscription",
            doc(
                ids[0],
                "Subscribe to a patient's pointer changes (Backport IG rest-hook)",
            )
            .body(FHIR_BODY)
            .success(201),
            create::<P>,
        )
        .add(
            Method::GET,
            "/Subscription",
            doc(ids[1], "Your app's subscriptions"),
            search::<P>,
        )
        .add(
            Method::GET,
            "/Subscription/{id}",
            doc(ids[2], "Read one of your subscriptions"),
            read::<P>,
        )
        .add(
            Method::PUT,
            "/Subscription/{id}",
            doc(
                ids[3],
                "Reactivate a subscription (status requested: a new handshake)",
            )
            .body(FHIR_BODY),
            reactivate::<P>,
        )
        .add(
            Method::DELETE,
            "/Subscription/{id}",
            doc(ids[4], "Delete a subscription and its events"),
            delete::<P>,
        )
        .add(
            Method::GET,
            "/Subscription/{id}/$status",
            doc(ids[5], "A subscription's status (Backport $status)"),
            status::<P>,
        )
        .add(
            Method::GET,
            "/Subscription/{id}/$events",
            doc(
                ids[6],
                "Replay a subscription's stored events (Backport $events)",
            )
            .query(&["eventsSinceNumber", "eventsUntilNumber"]),
            events::<P>,
        )
        .add(
            Method::GET,
            "/Basic",
            Doc::new(
                ids[7],
                "The subscription topics (SubscriptionTopic as Basic)",
                TAG,
            ),
            topics,
        )
        .add(
            Method::GET,
            "/Basic/{id}",
            Doc::new(
                ids[8],
                "One subscription topic (SubscriptionTopic as Basic)",
                TAG,
            ),
            topic,
        )
}

/// The CapabilityStatement entries for subscriptions: the Backport server
/// capability's resources and operations, and the topics.
pub fn capability_resources() -> Vec<Value> {
    let topics: Vec<Value> = Topic::ALL
        .iter()
        .map(|t| {
            json!({"url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/capabilitystatement-subscriptiontopic-canonical",
                "valueCanonical": t.canonical()})
        })
        .collect();
    let interactions: Vec<Value> = ["create", "read", "update", "delete", "search-type"]
        .iter()
        .map(|c| json!({"code": c}))
        .collect();
    vec![
        json!({
            "type": "Subscription",
            "extension": topics,
            "supportedProfile": [resource::SUBSCRIPTION_PROFILE],
            "interaction": interactions,
            "operation": [
                {"name": "status", "definition": "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status"},
                {"name": "events", "definition": "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-events"},
            ],
        }),
        json!({
            "type": "Basic",
            "documentation": "Subscription topics, as the Backport IG's R4 form of SubscriptionTopic",
            "interaction": [{"code": "read"}, {"code": "search-type"}],
        }),
    ]
}

fn with_location(mut response: Response, url: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(url) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

fn subscription_json(found: &SubscriptionView) -> Value {
    let state = &found.stored.state;
    resource::subscription(
        &found.stored.record.id,
        &found.spec,
        state.status.as_str(),
        state.error.as_deref(),
    )
}

/// Only FHIR's general parameters; anything else is refused.
fn no_params(raw: Option<&str>) -> Result<(), ApiError> {
    params(raw, &[]).map(drop)
}

fn params(raw: Option<&str>, allowed: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    let mut issues = Vec::new();
    let mut found = Vec::new();
    for (k, v) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        if matches!(k.as_ref(), "_format" | "_pretty") {
            continue;
        }
        if allowed.contains(&k.as_ref()) {
            found.push((k.into_owned(), v.into_owned()));
        } else {
            issues.push(Issue::new(
                ErrorCode::InvalidParameter,
                IssueType::NotSupported,
                k.as_ref(),
                format!("unsupported parameter {k:?}"),
            ));
        }
    }
    if issues.is_empty() {
        Ok(found)
    } else {
        Err(ApiError::Rejected(issues))
    }
}

async fn create<const P: bool>(
    State(state): State<AppState>,
    Subscriber(caller): Subscriber<P>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let registry = state.auth().registry();
    let created = ops::create_subscription(
        &state.context(),
        &caller,
        &registry,
        &state.settings().subscriptions,
        &body,
    )
    .await?;
    let url = subscription_url(
        &state.settings().public_url,
        caller.role,
        &created.stored.record.id,
    );
    let response = fhir_response(StatusCode::CREATED, subscription_json(&created).to_string());
    Ok(with_location(response, &url))
}

async fn search<const P: bool>(
    State(state): State<AppState>,
    Subscriber(caller): Subscriber<P>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    no_params(raw.as_deref())?;
    let found = ops::search_subscriptions(&state.context(), &caller).await?;
    let public_url = &state.settings().public_url;
    let entries: Vec<Value> = found
        .iter()
        .map(|f| {
            json!({
                "fullUrl": subscription_url(public_url, caller.role, &f.stored.record.id),
                "resource": subscription_json(f),
                "search": {"mode": "match"},
            })
        })
        .collect();
    let bundle = json!({"resourceType": "Bundle", "type": "searchset", "total": entries.len(), "entry": entries});
    Ok(fhir_response(StatusCode::OK, bundle.to_string()))
}

async fn read<const P: bool>(
    State(state): State<AppState>,
    Subscriber(caller): Subscriber<P>,
    PathParam(id): PathParam<String>,
) -> Result<Response, ApiError> {
    let found = ops::read_subscription(&state.context(), &caller, &id).await?;
    Ok(fhir_response(
        StatusCode::OK,
        subscription_json(&found).to_string(),
    ))
}

async fn reactivate<const P: bool>(
    State(state): State<AppState>,
    Subscriber(caller): Subscriber<P>,
    PathParam(id): PathParam<String>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let found = ops::reactivate_subscription(&state.context(), &caller, &id, &body).await?;
    Ok(fhir_response(
        StatusCode::OK,
        subscription_json(&found).to_string(),
    ))
}

async fn delete<const P: bool>(
    State(state): State<AppState>,
    Subscriber(caller): Subscriber<P>,
    PathParam(id): PathParam<String>,
) -> Result<Response, ApiError> {
    ops::delete_subscription(&state.context(), &caller, &id).await?;
    Ok(super::success(
        StatusCode::OK,
        "RESOURCE_DELETED",
        "Resource deleted",
    ))
}

fn status_of<'a>(found: &'a SubscriptionView, url: &'a str, kind: Kind) -> Status<'a> {
    let state = &found.stored.state;
    Status {
        subscription_url: url,
        topic: found.spec.topic,
        status: state.status.as_str(),
        kind,
        events_since_start: state.events_total,
        error: state.error.as_deref(),
    }
}

async fn status<const P: bool>(
    State(state): State<AppState>,
    Subscriber(caller): Subscriber<P>,
    PathParam(id): PathParam<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    no_params(raw.as_deref())?;
    let found = ops::read_subscription(&state.context(), &caller, &id).await?;
    let url = subscription_url(&state.settings().public_url, caller.role, &id);
    let parameters = notification::status_parameters(
        &status_of(&found, &url, Kind::QueryStatus),
        &[],
        PayloadContent::Empty,
    );
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": 1,
        "entry": [{"fullUrl": format!("{url}/$status"), "resource": parameters, "search": {"mode": "match"}}],
    });
    Ok(fhir_response(StatusCode::OK, bundle.to_string()))
}

fn number(params: &[(String, String)], name: &str) -> Result<Option<i64>, ApiError> {
    match params.iter().find(|(k, _)| k == name) {
        None => Ok(None),
        Some((_, v)) => v
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 1)
            .map(Some)
            .ok_or_else(|| {
                ApiError::one(Issue::new(
                    ErrorCode::InvalidParameter,
                    IssueType::Invalid,
                    name,
                    format!("{name} must be a positive whole number"),
                ))
            }),
    }
}

async fn events<const P: bool>(
    State(state): State<AppState>,
    Subscriber(caller): Subscriber<P>,
    PathParam(id): PathParam<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = params(raw.as_deref(), &["eventsSinceNumber", "eventsUntilNumber"])?;
    let since = number(&params, "eventsSinceNumber")?;
    let until = number(&params, "eventsUntilNumber")?;
    let registry = state.auth().registry();
    let (found, stored) =
        ops::subscription_events(&state.context(), &caller, &registry, &id, since, until).await?;
    let public_url = &state.settings().public_url;
    let url = subscription_url(public_url, caller.role, &id);
    let events: Vec<Event> = stored
        .iter()
        .map(|e| notification_event(public_url, caller.role, e))
        .collect();
    // Replays name the pointers; their content is a read away.
    let payload = match found.spec.payload {
        PayloadContent::Empty => PayloadContent::Empty,
        _ => PayloadContent::IdOnly,
    };
    let bundle = notification::bundle(
        &uuid::Uuid::new_v4().to_string(),
        &domain::clock::now_instant(),
        &status_of(&found, &url, Kind::QueryEvent),
        &events,
        payload,
    );
    Ok(fhir_response(StatusCode::OK, bundle.to_string()))
}

async fn topics(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    no_params(raw.as_deref())?;
    let base = format!("{}{CONSUMER_BASE}/Basic", state.settings().public_url);
    let entries: Vec<Value> = Topic::ALL
        .iter()
        .map(|t| json!({"fullUrl": format!("{base}/{}", t.id()), "resource": resource::topic(*t), "search": {"mode": "match"}}))
        .collect();
    let bundle = json!({"resourceType": "Bundle", "type": "searchset", "total": entries.len(), "entry": entries});
    Ok(fhir_response(StatusCode::OK, bundle.to_string()))
}

async fn topic(PathParam(id): PathParam<String>) -> Result<Response, ApiError> {
    let found = Topic::ALL
        .into_iter()
        .find(|t| t.id() == id)
        .ok_or_else(|| ApiError::not_found(format!("topic {id} does not exist")))?;
    Ok(fhir_response(
        StatusCode::OK,
        resource::topic(found).to_string(),
    ))
}
