//! Subscriptions on PostgreSQL (see [`crate::subscriptions`]), shared by
//! every node:
//!
//! - Fan-out runs under a transaction-scoped advisory lock taken with
//!   `pg_try_advisory_xact_lock`: one node at a time numbers events (so
//!   numbers are gap-free and follow outbox order); the others skip the
//!   round instead of waiting.
//! - Claims lease due rows with `FOR UPDATE SKIP LOCKED`: two nodes claiming
//!   at once get disjoint subscriptions, and a lease that expired (its node
//!   died) is claimable again.

use async_trait::async_trait;
use deadpool_postgres::Object;
use domain::NhsNumber;
use tokio_postgres::Row;

use crate::subscriptions::{
    Claim, DeliveryState, Matcher, NotificationEvent, Subscription, SubscriptionRecord,
    SubscriptionStatus, SubscriptionStore,
};
use crate::{PointerEvent, StoreError};

use super::PostgresStore;
use super::error::OpError;
use super::reads::decode_event;
use super::row::{column, nhs_to_sql};

/// The advisory lock of fan-out ("nrlsfan!").
const FAN_OUT_LOCK: i64 = 0x6e72_6c73_6661_6e21;

const SUBSCRIPTION_COLUMNS: &str = "id, owner_app, nhs_number, heartbeat_ms, spec, created,
    status, error, events_total, delivered_through, attempts, next_attempt_ms, last_sent_ms";
/// As `pointer_events` is read (`reads::decode_event`), then the number.
const EVENT_COLUMNS: &str = "seq, nhs_number, change, focus, additional_context, custodian,
    type_key, security_labels, recorded_at, number";

fn decode_subscription(row: &Row) -> Result<Subscription, StoreError> {
    let nhs: i64 = column(row, 2)?;
    let status: &str = column(row, 6)?;
    let attempts: i32 = column(row, 10)?;
    let corrupt =
        |name: &str| StoreError::Internal(format!("stored subscription {name} is not valid"));
    Ok(Subscription {
        record: SubscriptionRecord {
            id: column(row, 0)?,
            owner_app: column(row, 1)?,
            nhs_number: u64::try_from(nhs)
                .ok()
                .and_then(|n| NhsNumber::from_u64(n).ok())
                .ok_or_else(|| corrupt("nhs_number"))?,
            heartbeat_ms: column(row, 3)?,
            spec: column(row, 4)?,
            created: column(row, 5)?,
        },
        state: DeliveryState {
            status: SubscriptionStatus::parse(status).ok_or_else(|| corrupt("status"))?,
            error: column(row, 7)?,
            events_total: column(row, 8)?,
            delivered_through: column(row, 9)?,
            attempts: u32::try_from(attempts).map_err(|_| corrupt("attempts"))?,
            next_attempt_ms: column(row, 11)?,
            last_sent_ms: column(row, 12)?,
        },
    })
}

fn decode_notification(row: &Row) -> Result<NotificationEvent, StoreError> {
    Ok(NotificationEvent {
        number: column(row, 9)?,
        event: decode_event(row)?,
    })
}

fn decode_all<T>(
    rows: &[Row],
    decode: impl Fn(&Row) -> Result<T, StoreError>,
) -> Result<Vec<T>, OpError> {
    Ok(rows.iter().map(decode).collect::<Result<_, _>>()?)
}

async fn fan_out(conn: &mut Object, limit: i64, matcher: &Matcher) -> Result<usize, OpError> {
    let tx = conn.transaction().await?;
    let locked: bool = tx
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&FAN_OUT_LOCK])
        .await?
        .get(0);
    if !locked {
        return Ok(0);
    }
    let rows = tx
        .query(
            "SELECT seq, nhs_number, change, focus, additional_context, custodian,
                type_key, security_labels, recorded_at
             FROM pointer_events ORDER BY seq LIMIT $1",
            &[&limit],
        )
        .await?;
    let events: Vec<PointerEvent> = decode_all(&rows, decode_event)?;
    let candidates_of = tx
        .prepare_cached(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE nhs_number = $1
             ORDER BY created, id"
        ))
        .await?;
    let bump = tx
        .prepare_cached(
            "UPDATE subscriptions SET events_total = events_total + 1 WHERE id = $1
             RETURNING events_total",
        )
        .await?;
    let insert = tx
        .prepare_cached(
            "INSERT INTO subscription_events (subscription, number, seq, nhs_number, change,
                focus, additional_context, custodian, type_key, security_labels, recorded_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .await?;
    for event in &events {
        let nhs = nhs_to_sql(event.nhs_number);
        let rows = tx.query(&candidates_of, &[&nhs]).await?;
        let candidates = decode_all(&rows, decode_subscription)?;
        for sub in candidates.iter().filter(|s| matcher(s, event)) {
            let number: i64 = tx.query_one(&bump, &[&sub.record.id]).await?.get(0);
            let context: Vec<&str> = event
                .additional_context
                .iter()
                .map(|i| i.as_str())
                .collect();
            tx.execute(
                &insert,
                &[
                    &sub.record.id,
                    &number,
                    &event.seq,
                    &nhs,
                    &event.change.as_str(),
                    &event.focus.as_str(),
                    &context,
                    &event.custodian.as_str(),
                    &event.type_key,
                    &event.security_labels,
                    &event.recorded_at,
                ],
            )
            .await?;
        }
    }
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    tx.execute("DELETE FROM pointer_events WHERE seq = ANY($1)", &[&seqs])
        .await?;
    tx.commit().await?;
    Ok(events.len())
}

async fn claim_due(
    conn: &mut Object,
    node: &str,
    now_ms: i64,
    lease_ms: i64,
    limit: i64,
) -> Result<Vec<Claim>, OpError> {
    let tx = conn.transaction().await?;
    let rows = tx
        .query(
            &format!(
                "UPDATE subscriptions SET lease_owner = $1, lease_until_ms = $2 + $3
                 WHERE id IN (
                    SELECT id FROM subscriptions
                    WHERE (lease_until_ms IS NULL OR lease_until_ms < $2)
                      AND next_attempt_ms <= $2
                      AND (status = 'requested'
                           OR (status = 'active' AND (events_total > delivered_through
                               OR (heartbeat_ms > 0 AND last_sent_ms + heartbeat_ms <= $2))))
                    ORDER BY next_attempt_ms LIMIT $4
                    FOR UPDATE SKIP LOCKED)
                 RETURNING {SUBSCRIPTION_COLUMNS}"
            ),
            &[&node, &now_ms, &lease_ms, &limit],
        )
        .await?;
    let claimed = decode_all(&rows, decode_subscription)?;
    let next = tx
        .prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM subscription_events WHERE subscription = $1 AND number = $2"
        ))
        .await?;
    let mut claims = Vec::with_capacity(claimed.len());
    for subscription in claimed {
        let number = subscription.state.delivered_through + 1;
        let row = tx
            .query_opt(&next, &[&subscription.record.id, &number])
            .await?;
        let next_event = row.map(|r| decode_notification(&r)).transpose()?;
        claims.push(Claim {
            subscription,
            next_event,
        });
    }
    tx.commit().await?;
    Ok(claims)
}

#[async_trait]
impl SubscriptionStore for PostgresStore {
    async fn create_subscription(&self, record: SubscriptionRecord) -> Result<(), StoreError> {
        let inserted = self
            .database()
            .run(async |conn| {
                let nhs = nhs_to_sql(record.nhs_number);
                Ok(conn
                    .execute(
                        "INSERT INTO subscriptions (id, owner_app, nhs_number, heartbeat_ms, spec,
                            created, status, error, events_total, delivered_through, attempts,
                            next_attempt_ms, last_sent_ms)
                         VALUES ($1, $2, $3, $4, $5, $6, 'requested', NULL, 0, 0, 0, 0, 0)
                         ON CONFLICT DO NOTHING",
                        &[
                            &record.id,
                            &record.owner_app,
                            &nhs,
                            &record.heartbeat_ms,
                            &record.spec,
                            &record.created,
                        ],
                    )
                    .await?)
            })
            .await?;
        if inserted == 0 {
            return Err(StoreError::Internal(format!(
                "subscription id {} is taken",
                record.id
            )));
        }
        Ok(())
    }

    async fn subscription(&self, id: &str) -> Result<Option<Subscription>, StoreError> {
        self.database()
            .run(async |conn| {
                let row = conn
                    .query_opt(
                        &format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = $1"),
                        &[&id],
                    )
                    .await?;
                Ok(row.map(|r| decode_subscription(&r)).transpose()?)
            })
            .await
    }

    async fn subscriptions_of(&self, owner_app: &str) -> Result<Vec<Subscription>, StoreError> {
        self.database()
            .run(async |conn| {
                let rows = conn
                    .query(
                        &format!(
                            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE owner_app = $1
                             ORDER BY created, id"
                        ),
                        &[&owner_app],
                    )
                    .await?;
                decode_all(&rows, decode_subscription)
            })
            .await
    }

    async fn delete_subscription(&self, id: &str) -> Result<bool, StoreError> {
        self.database()
            .run(async |conn| {
                let tx = conn.transaction().await?;
                tx.execute(
                    "DELETE FROM subscription_events WHERE subscription = $1",
                    &[&id],
                )
                .await?;
                let n = tx
                    .execute("DELETE FROM subscriptions WHERE id = $1", &[&id])
                    .await?;
                tx.commit().await?;
                Ok(n > 0)
            })
            .await
    }

    async fn reactivate(&self, id: &str) -> Result<bool, StoreError> {
        self.database()
            .run(async |conn| {
                let n = conn
                    .execute(
                        "UPDATE subscriptions SET status = 'requested', error = NULL, attempts = 0,
                            next_attempt_ms = 0, lease_owner = NULL, lease_until_ms = NULL
                         WHERE id = $1",
                        &[&id],
                    )
                    .await?;
                Ok(n > 0)
            })
            .await
    }

    async fn fan_out(&self, limit: usize, matcher: Matcher) -> Result<usize, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.database()
            .run(async |conn| fan_out(conn, limit, &matcher).await)
            .await
    }

    async fn claim_due(
        &self,
        node: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<Claim>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.database()
            .run(async |conn| claim_due(conn, node, now_ms, lease_ms, limit).await)
            .await
    }

    async fn finish_attempt(
        &self,
        id: &str,
        node: &str,
        state: &DeliveryState,
    ) -> Result<bool, StoreError> {
        let attempts = i32::try_from(state.attempts).unwrap_or(i32::MAX);
        self.database()
            .run(async |conn| {
                let n = conn
                    .execute(
                        "UPDATE subscriptions SET status = $3, error = $4, delivered_through = $5,
                            attempts = $6, next_attempt_ms = $7, last_sent_ms = $8,
                            lease_owner = NULL, lease_until_ms = NULL
                         WHERE id = $1 AND lease_owner = $2",
                        &[
                            &id,
                            &node,
                            &state.status.as_str(),
                            &state.error,
                            &state.delivered_through,
                            &attempts,
                            &state.next_attempt_ms,
                            &state.last_sent_ms,
                        ],
                    )
                    .await?;
                Ok(n > 0)
            })
            .await
    }

    async fn events(
        &self,
        id: &str,
        since: Option<i64>,
        until: Option<i64>,
        limit: usize,
    ) -> Result<Vec<NotificationEvent>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let since = since.unwrap_or(i64::MIN);
        let until = until.unwrap_or(i64::MAX);
        self.database()
            .run(async |conn| {
                let rows = conn
                    .query(
                        &format!(
                            "SELECT {EVENT_COLUMNS} FROM subscription_events
                             WHERE subscription = $1 AND number >= $2 AND number <= $3
                             ORDER BY number LIMIT $4"
                        ),
                        &[&id, &since, &until, &limit],
                    )
                    .await?;
                decode_all(&rows, decode_notification)
            })
            .await
    }

    async fn purge_events(&self, before: &str) -> Result<u64, StoreError> {
        self.database()
            .run(async |conn| {
                Ok(conn
                    .execute(
                        "DELETE FROM subscription_events e USING subscriptions s
                         WHERE s.id = e.subscription AND e.recorded_at < $1
                           AND e.number <= s.delivered_through",
                        &[&before],
                    )
                    .await?)
            })
            .await
    }
}
