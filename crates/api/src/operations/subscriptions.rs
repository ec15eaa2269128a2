//! Subscriptions (issue 15): create, read, list, delete, reactivate, and
//! replay (`$events`), each audited; and [`recheck`], the access decision a
//! subscription must pass at creation, at fan-out and at every delivery, so
//! there is one subscription policy, built on `domain::access`.

use audit::Interaction;
use auth::AppRegistry;
use domain::access::{AccessBasis, AccessPolicy, AccessRequest, CallerApp, Grant, PatientAccess};
use domain::catalogue::Catalogue;
use domain::issue::{ErrorCode, Issue, IssueType};
use domain::permissions::TypeSet;
use domain::subscription::Spec;
use domain::subscription::request::{self, Rules};
use domain::{NhsNumber, OdsCode, Role};
use serde_json::Value;
use store::{NotificationEvent, Subscription, SubscriptionRecord, SubscriptionStore};

use super::Context;
use super::policy::{decide, patient_access};
use crate::audit_trail::{AuditDraft, audited};
use crate::caller::Caller;
use crate::error::ApiError;

/// Operator rules for subscription requests (`[subscriptions]`).
#[derive(Debug, Clone)]
pub struct SubscriptionSettings {
    /// Hosts an `http` endpoint may name (tests, local demos).
    pub http_allowed_hosts: Vec<String>,
    /// Longest per-notification time-out a subscriber may ask for.
    pub max_timeout_secs: u32,
}

impl Default for SubscriptionSettings {
    fn default() -> Self {
        SubscriptionSettings {
            http_allowed_hosts: Vec::new(),
            max_timeout_secs: 60,
        }
    }
}

/// A stored subscription with its spec read.
#[derive(Debug, Clone)]
pub struct SubscriptionView {
    pub stored: Subscription,
    pub spec: Spec,
}

/// Most events one `$events` call returns.
pub const MAX_EVENTS: usize = 1000;

fn subscriptions<'a>(ctx: &Context<'a>) -> Result<&'a dyn SubscriptionStore, ApiError> {
    ctx.store.subscriptions().ok_or_else(|| {
        ApiError::Internal(format!(
            "the {} backend keeps no subscriptions",
            ctx.store.backend()
        ))
    })
}

fn view(stored: Subscription) -> Result<SubscriptionView, ApiError> {
    let spec = Spec::from_json(&stored.record.spec).ok_or_else(|| {
        ApiError::Internal(format!(
            "stored subscription {} is unreadable",
            stored.record.id
        ))
    })?;
    Ok(SubscriptionView { stored, spec })
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Producer => "producer",
        Role::Consumer => "consumer",
    }
}

/// Whether the app that owns a subscription may still be told of changes to
/// its patient, as an app-only caller (delivery has no end user) in the role
/// and for the organisation it subscribed with. `Ok` gives the pointer types
/// it may hear of and the policy's grant (whose filter decides each pointer:
/// sensitive labels, custodian-only scope); `Err` says why not, in words
/// the subscriber sees as the subscription's error.
pub fn recheck<'a>(
    policy: &'a AccessPolicy,
    registry: &AppRegistry,
    catalogue: &Catalogue,
    owner_app: &str,
    spec: &Spec,
    organisation: &'a OdsCode,
    patient: &'a PatientAccess,
) -> Result<(TypeSet, Grant<'a>), String> {
    let app = registry
        .app(owner_app)
        .ok_or_else(|| format!("app {owner_app} is no longer onboarded"))?;
    let role = spec.role;
    let grant = app
        .grant(organisation)
        .filter(|g| g.has_role(role))
        .ok_or_else(|| {
            format!(
                "app {owner_app} may no longer act as a {} for {organisation}",
                role_name(role)
            )
        })?;
    let types = grant.types(role);
    if types.is_empty() {
        return Err(format!(
            "app {owner_app} may no longer use any pointer type"
        ));
    }
    for key in &spec.types {
        let permitted = catalogue
            .find_key(key)
            .is_some_and(|t| types.contains(t.index));
        if !permitted {
            return Err(format!(
                "app {owner_app} may no longer use pointer type {key}"
            ));
        }
    }
    if role == Role::Consumer && patient.objection {
        return Err("the patient has objected to sharing their records".to_owned());
    }
    static RECORDED: AccessBasis = AccessBasis::Recorded;
    let request = AccessRequest {
        app: CallerApp {
            role,
            ods: organisation,
            // The end user was checked when the subscription was made.
            requires_user: false,
        },
        user: None,
        purpose_of_use: None,
        basis: &RECORDED,
        patient,
    };
    let grant = policy
        .decide(&request)
        .map_err(|denial| denial.to_string())?;
    Ok((types, grant))
}

/// Creates a subscription for the caller. Every problem with the body is a
/// 400 listing all of them; a patient or pointer type the caller may not
/// see is a 403.
pub async fn create_subscription(
    ctx: &Context<'_>,
    caller: &Caller,
    registry: &AppRegistry,
    settings: &SubscriptionSettings,
    body: &Value,
) -> Result<SubscriptionView, ApiError> {
    let mut draft = AuditDraft::new(Interaction::Create);
    let result = create(ctx, caller, registry, settings, body, &mut draft).await;
    audited(ctx, caller.actor(), draft, result).await
}

async fn create(
    ctx: &Context<'_>,
    caller: &Caller,
    registry: &AppRegistry,
    settings: &SubscriptionSettings,
    body: &Value,
    draft: &mut AuditDraft,
) -> Result<SubscriptionView, ApiError> {
    let rules = Rules {
        http_hosts: &settings.http_allowed_hosts,
        max_timeout_secs: settings.max_timeout_secs,
    };
    let parsed = request::parse(body, ctx.catalogue, &rules).map_err(ApiError::Rejected)?;
    let spec = parsed.into_spec(caller.role, &caller.ods);
    let nhs_number = NhsNumber::parse(&spec.patient)
        .map_err(|e| ApiError::Internal(format!("parsed NHS number unreadable: {e}")))?;
    draft.patient = Some(nhs_number);
    for key in &spec.types {
        let permitted = ctx
            .catalogue
            .find_key(key)
            .is_some_and(|t| caller.types.contains(t.index));
        if !permitted {
            return Err(ApiError::one(Issue::new(
                ErrorCode::AccessDeniedLevel,
                IssueType::Forbidden,
                "Subscription.criteria.extension",
                format!("your organisation may not access pointers of type {key}"),
            )));
        }
    }
    let patient = patient_access(ctx, nhs_number).await?;
    decide(ctx, caller, &patient, draft)?;
    recheck(
        &ctx.access.policy,
        registry,
        ctx.catalogue,
        &caller.client_id,
        &spec,
        &caller.ods,
        &patient,
    )
    .map_err(|why| ApiError::forbidden(ErrorCode::AccessDenied, why))?;
    let record = SubscriptionRecord {
        id: uuid::Uuid::new_v4().to_string(),
        owner_app: caller.client_id.to_string(),
        nhs_number,
        heartbeat_ms: i64::from(spec.heartbeat_secs) * 1000,
        spec: spec.to_json(),
        created: domain::clock::now_instant(),
    };
    draft.resources.push(format!("Subscription/{}", record.id));
    let store = subscriptions(ctx)?;
    store.create_subscription(record.clone()).await?;
    ctx.delivery_due.notify_one();
    let stored = store
        .subscription(&record.id)
        .await?
        .ok_or_else(|| ApiError::Internal("a created subscription is missing".into()))?;
    view(stored)
}

/// The caller's own subscription `id`; anybody else's is not found.
async fn own(
    ctx: &Context<'_>,
    caller: &Caller,
    id: &str,
    draft: &mut AuditDraft,
) -> Result<SubscriptionView, ApiError> {
    let missing = || ApiError::not_found(format!("subscription {id} does not exist"));
    let stored = subscriptions(ctx)?
        .subscription(id)
        .await?
        .ok_or_else(missing)?;
    if stored.record.owner_app != *caller.client_id {
        return Err(missing());
    }
    draft.patient = Some(stored.record.nhs_number);
    draft.resources.push(format!("Subscription/{id}"));
    view(stored)
}

/// Reads one of the caller's subscriptions (also what `$status` shows).
pub async fn read_subscription(
    ctx: &Context<'_>,
    caller: &Caller,
    id: &str,
) -> Result<SubscriptionView, ApiError> {
    let mut draft = AuditDraft::new(Interaction::Read);
    let result = own(ctx, caller, id, &mut draft).await;
    audited(ctx, caller.actor(), draft, result).await
}

/// The caller's subscriptions, oldest first. Not audited per patient: it
/// lists the app's own requests, no pointer.
pub async fn search_subscriptions(
    ctx: &Context<'_>,
    caller: &Caller,
) -> Result<Vec<SubscriptionView>, ApiError> {
    subscriptions(ctx)?
        .subscriptions_of(&caller.client_id)
        .await?
        .into_iter()
        .map(view)
        .collect()
}

/// Deletes one of the caller's subscriptions and its events.
pub async fn delete_subscription(
    ctx: &Context<'_>,
    caller: &Caller,
    id: &str,
) -> Result<(), ApiError> {
    let mut draft = AuditDraft::new(Interaction::Delete);
    let result = async {
        own(ctx, caller, id, &mut draft).await?;
        subscriptions(ctx)?.delete_subscription(id).await?;
        Ok(())
    }
    .await;
    audited(ctx, caller.actor(), draft, result).await
}

/// Reactivation: `PUT` of the subscription with status `requested` asks for
/// a new handshake; delivery then resumes after the last acknowledged event.
/// Nothing else of a subscription can be changed (create a new one).
pub async fn reactivate_subscription(
    ctx: &Context<'_>,
    caller: &Caller,
    id: &str,
    body: &Value,
) -> Result<SubscriptionView, ApiError> {
    let mut draft = AuditDraft::new(Interaction::Update);
    let result = async {
        if body.get("status").and_then(Value::as_str) != Some("requested") {
            return Err(ApiError::one(Issue::new(
                ErrorCode::InvalidResource,
                IssueType::NotSupported,
                "Subscription.status",
                "only reactivation is supported: PUT the subscription with status requested",
            )));
        }
        own(ctx, caller, id, &mut draft).await?;
        let store = subscriptions(ctx)?;
        store.reactivate(id).await?;
        ctx.delivery_due.notify_one();
        let stored = store
            .subscription(id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("subscription {id} does not exist")))?;
        view(stored)
    }
    .await;
    audited(ctx, caller.actor(), draft, result).await
}

/// `$events`: the stored events numbered `since..=until` (at most
/// [`MAX_EVENTS`]), audited as a read of the patient's pointers. Access is
/// decided as for a delivery: a subscription that could not be delivered to
/// now cannot replay either.
pub async fn subscription_events(
    ctx: &Context<'_>,
    caller: &Caller,
    registry: &AppRegistry,
    id: &str,
    since: Option<i64>,
    until: Option<i64>,
) -> Result<(SubscriptionView, Vec<NotificationEvent>), ApiError> {
    let mut draft = AuditDraft::new(Interaction::Search);
    let result = async {
        let found = own(ctx, caller, id, &mut draft).await?;
        let patient = patient_access(ctx, found.stored.record.nhs_number).await?;
        let organisation = OdsCode::parse(&found.spec.organisation)
            .ok_or_else(|| ApiError::Internal("stored organisation unreadable".into()))?;
        let (types, grant) = recheck(
            &ctx.access.policy,
            registry,
            ctx.catalogue,
            &caller.client_id,
            &found.spec,
            &organisation,
            &patient,
        )
        .map_err(|why| ApiError::forbidden(ErrorCode::AccessDenied, why))?;
        let events: Vec<NotificationEvent> = subscriptions(ctx)?
            .events(id, since, until, MAX_EVENTS)
            .await?
            .into_iter()
            .filter(|e| {
                let e = &e.event;
                grant.filter.check(&e.custodian, &e.security_labels)
                    == domain::access::Visibility::Visible
                    && ctx
                        .catalogue
                        .find_key(&e.type_key)
                        .is_some_and(|t| types.contains(t.index))
            })
            .collect();
        draft
            .resources
            .extend(events.iter().map(|e| e.event.focus.to_string()));
        Ok((found, events))
    }
    .await;
    audited(ctx, caller.actor(), draft, result).await
}
