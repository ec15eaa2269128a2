//! One delivery attempt: re-check access, build the notification, POST it,
//! and record the outcome (under the lease: a node whose lease was taken
//! over records nothing).

use std::time::Duration;

use api::audit_trail::{AuditDraft, audited};
use api::caller::Actor;
use api::operations::subscriptions::recheck;
use api::routes::subscriptions::{notification_event, subscription_url};
use audit::Interaction;
use domain::OdsCode;
use domain::access::Visibility;
use domain::catalogue::Catalogue;
use domain::subscription::notification::{self, Kind, Status};
use domain::subscription::retry::is_permanent;
use domain::subscription::{PayloadContent, Spec};
use store::{Claim, DeliveryState, SubscriptionStatus};

use super::{Worker, now_ms};

/// What an attempt came to.
enum Outcome {
    Delivered,
    /// Not sent: the access re-check stopped it (reason for the subscriber).
    Refused(String),
    /// Not sent: this event may not be told to this subscriber (skipped,
    /// e.g. it became sensitive for them).
    Skipped,
    /// Sent and failed, or could not be sent; `permanent` for the status
    /// codes never retried.
    Failed {
        why: String,
        permanent: bool,
    },
    /// A dependency (access facts, store) is away: try again soon, no
    /// attempt counted.
    Later,
}

fn kind_of(claim: &Claim) -> Kind {
    if claim.subscription.state.status == SubscriptionStatus::Requested {
        Kind::Handshake
    } else if claim.next_event.is_some() {
        Kind::EventNotification
    } else {
        Kind::Heartbeat
    }
}

/// Most events one notification carries: a backlog (after an outage, or
/// a burst of changes) drains in a few round trips, not one per event.
const MAX_BATCH: usize = 100;

pub(super) async fn deliver(worker: &Worker, claim: Claim) {
    let kind = kind_of(&claim);
    let id = claim.subscription.record.id.clone();
    let (outcome, through) = attempt(worker, &claim, kind).await;
    let now = now_ms();
    let next = next_state(worker, &claim, kind, &outcome, through, now);
    let label = match &outcome {
        Outcome::Delivered => "delivered",
        Outcome::Refused(_) => "refused",
        Outcome::Skipped => "skipped",
        Outcome::Failed { .. } if next.status == SubscriptionStatus::Error => "failed",
        Outcome::Failed { .. } => "retry",
        Outcome::Later => "deferred",
    };
    tracing::info!(
        subscription = %id,
        kind = kind.as_str(),
        outcome = label,
        through,
        status = next.status.as_str(),
        error = next.error.as_deref(),
        "subscription delivery attempt"
    );
    let Some(state) = worker.state.upgrade() else {
        return;
    };
    state
        .ops()
        .metrics()
        .subscriptions()
        .attempt(kind.as_str(), label);
    let Some(subs) = state.store().subscriptions() else {
        return;
    };
    match subs.finish_attempt(&id, &worker.settings.node, &next).await {
        // More events may be waiting: look again now, not after the poll.
        Ok(true) if matches!(outcome, Outcome::Delivered | Outcome::Skipped) => {
            worker.wake.notify_one();
        }
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(subscription = %id, "lease lost before the attempt was recorded; another node took over")
        }
        Err(error) => {
            tracing::warn!(subscription = %id, %error, "could not record a delivery attempt; it will be repeated")
        }
    }
}

/// The subscription's state after the attempt.
fn next_state(
    worker: &Worker,
    claim: &Claim,
    kind: Kind,
    outcome: &Outcome,
    through: i64,
    now: i64,
) -> DeliveryState {
    let current = &claim.subscription.state;
    let mut next = current.clone();
    match outcome {
        Outcome::Delivered => {
            next.attempts = 0;
            next.next_attempt_ms = 0;
            next.last_sent_ms = now;
            next.error = None;
            match kind {
                Kind::Handshake => next.status = SubscriptionStatus::Active,
                Kind::EventNotification => next.delivered_through = through,
                _ => {}
            }
        }
        Outcome::Skipped => next.delivered_through = through,
        Outcome::Refused(why) => {
            next.status = SubscriptionStatus::Error;
            next.error = Some(why.clone());
        }
        Outcome::Later => next.next_attempt_ms = now + 5_000,
        Outcome::Failed { why, permanent } => {
            if kind == Kind::Handshake {
                next.status = SubscriptionStatus::Error;
                next.error = Some(format!("handshake failed: {why}"));
            } else if *permanent {
                next.status = SubscriptionStatus::Error;
                next.error = Some(format!("{why}; not retried"));
            } else {
                next.attempts = current.attempts + 1;
                let jitter = f64::from(getrandom::u32().unwrap_or(0)) / f64::from(u32::MAX);
                match worker.settings.retry.next_delay(next.attempts, jitter) {
                    Some(delay) => {
                        let delay = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
                        next.next_attempt_ms = now.saturating_add(delay);
                        next.error = Some(format!("retrying: {why}"));
                    }
                    None => {
                        next.status = SubscriptionStatus::Error;
                        next.error = Some(format!(
                            "gave up after {} attempts over the retry window: {why}",
                            next.attempts
                        ));
                    }
                }
            }
        }
    }
    next
}

/// One attempt, and the highest event number it covered (sent or skipped).
async fn attempt(worker: &Worker, claim: &Claim, kind: Kind) -> (Outcome, i64) {
    let through = claim.subscription.state.delivered_through;
    match try_attempt(worker, claim, kind).await {
        Ok((outcome, covered)) => (outcome, covered.max(through)),
        Err(outcome) => (outcome, through),
    }
}

async fn try_attempt(
    worker: &Worker,
    claim: &Claim,
    kind: Kind,
) -> Result<(Outcome, i64), Outcome> {
    let Some(state) = worker.state.upgrade() else {
        return Err(Outcome::Later);
    };
    let sub = &claim.subscription;
    let Some(spec) = Spec::from_json(&sub.record.spec) else {
        return Err(Outcome::Refused(
            "the stored subscription cannot be read".into(),
        ));
    };
    let Some(organisation) = OdsCode::parse(&spec.organisation) else {
        return Err(Outcome::Refused(
            "the stored subscription cannot be read".into(),
        ));
    };
    let patient = match state
        .access()
        .facts
        .patient_access(sub.record.nhs_number)
        .await
    {
        Ok(p) => p,
        Err(error) => {
            tracing::warn!(%error, "access facts unavailable; delivery deferred");
            return Err(Outcome::Later);
        }
    };
    let catalogue = Catalogue::nrl_v3();
    let registry = state.auth().registry();
    let policy = &state.access().policy;
    let (types, grant) = match recheck(
        policy,
        &registry,
        catalogue,
        &sub.record.owner_app,
        &spec,
        &organisation,
        &patient,
    ) {
        Ok(decision) => decision,
        Err(why) => return Err(Outcome::Refused(why)),
    };
    let public_url = state.settings().public_url.clone();
    let url = subscription_url(&public_url, spec.role, &sub.record.id);
    let mut events = Vec::new();
    let mut sent = Vec::new();
    let mut covered = claim.subscription.state.delivered_through;
    if claim.next_event.is_some() {
        let subs = state.store().subscriptions().ok_or(Outcome::Later)?;
        let waiting = subs
            .events(&sub.record.id, Some(covered + 1), None, MAX_BATCH)
            .await
            .map_err(|_| Outcome::Later)?;
        for stored in waiting {
            covered = stored.number;
            let e = &stored.event;
            let visible = catalogue
                .find_key(&e.type_key)
                .is_some_and(|t| types.contains(t.index))
                && grant.filter.check(&e.custodian, &e.security_labels) == Visibility::Visible;
            if !visible {
                continue;
            }
            let mut event = notification_event(&public_url, spec.role, &stored);
            if spec.payload == PayloadContent::FullResource && !event.deleted {
                match state.store().get(&e.focus).await {
                    Ok(Some(record)) => event.resource = serde_json::from_str(&record.json).ok(),
                    // Changed or deleted since: the focus URL still says which.
                    Ok(None) => {}
                    Err(error) => {
                        tracing::warn!(%error, "pointer store unavailable; delivery deferred");
                        return Err(Outcome::Later);
                    }
                }
            }
            events.push(event);
            sent.push(stored);
        }
        if sent.is_empty() {
            return Ok((Outcome::Skipped, covered));
        }
    }
    let status = Status {
        subscription_url: &url,
        topic: spec.topic,
        status: if kind == Kind::Handshake {
            "requested"
        } else {
            "active"
        },
        kind,
        // Events numbered after the claim was read may be in this bundle
        // (a fan-out can run meanwhile); the count is at least the newest.
        events_since_start: sub.state.events_total.max(covered),
        error: None,
    };
    let bundle = notification::bundle(
        &uuid::Uuid::new_v4().to_string(),
        &domain::clock::now_instant(),
        &status,
        &events,
        spec.payload,
    );
    drop(state);
    // The subscriber's own time-out (bounded at creation), else the server's.
    let timeout = spec.timeout_secs.map_or(worker.settings.timeout, |s| {
        Duration::from_secs(u64::from(s))
    });
    let outcome = post(worker, &spec, bundle.to_string(), timeout).await;
    if matches!(outcome, Outcome::Delivered) && kind == Kind::EventNotification {
        audit_delivery(worker, claim, &sent, &organisation).await;
    }
    Ok((outcome, covered))
}

async fn post(worker: &Worker, spec: &Spec, body: String, timeout: Duration) -> Outcome {
    let mut request = worker
        .client
        .post(&spec.endpoint)
        .timeout(timeout)
        .header("content-type", "application/fhir+json")
        .body(body);
    for line in &spec.headers {
        if let Some((name, value)) = line.split_once(':') {
            request = request.header(name.trim(), value.trim());
        }
    }
    match request.send().await {
        Ok(response) if response.status().is_success() => Outcome::Delivered,
        Ok(response) => {
            let code = response.status().as_u16();
            Outcome::Failed {
                why: format!("the endpoint answered {code}"),
                permanent: is_permanent(code),
            }
        }
        Err(error) if error.is_timeout() => Outcome::Failed {
            why: format!(
                "the endpoint did not answer within {} s",
                timeout.as_secs_f64()
            ),
            permanent: false,
        },
        Err(error) => Outcome::Failed {
            why: format!("the endpoint could not be reached: {}", without_url(&error)),
            permanent: false,
        },
    }
}

/// The error's description without the URL (which may carry secrets).
fn without_url(error: &reqwest::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(error);
    let mut text = String::from("connection failed");
    while let Some(s) = source {
        text = s.to_string();
        source = s.source();
    }
    text
}

/// Delivered events told the subscriber about the patient's pointers:
/// recorded in the audit trail as one read by the subscriber's app.
async fn audit_delivery(
    worker: &Worker,
    claim: &Claim,
    sent: &[store::NotificationEvent],
    organisation: &OdsCode,
) {
    let Some(state) = worker.state.upgrade() else {
        return;
    };
    let (Some(first), Some(last)) = (sent.first(), sent.last()) else {
        return;
    };
    let sub = &claim.subscription.record;
    let mut draft = AuditDraft::new(Interaction::Read);
    draft.patient = Some(sub.nhs_number);
    for event in sent {
        draft.resources.push(event.event.focus.to_string());
        draft.resources.extend(
            event
                .event
                .additional_context
                .iter()
                .map(ToString::to_string),
        );
    }
    draft.query = Some(format!(
        "Subscription/{}/notification/{}-{}",
        sub.id, first.number, last.number
    ));
    let request_id = format!("subscription-{}-{}", sub.id, last.number);
    let actor = Actor {
        client_id: &sub.owner_app,
        organisation: Some(organisation),
        request_id: &request_id,
        access: None,
    };
    if let Err(error) = audited(&state.context(), actor, draft, Ok(())).await {
        tracing::error!(%error, subscription = %sub.id, "audit of a delivered notification failed");
    }
}
