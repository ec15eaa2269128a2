//! Subscriptions on SQLite (see [`crate::subscriptions`]). They have their
//! own connection, opened on first use, so fan-out and delivery bookkeeping
//! never queue inside the group-commit writer's batches; SQLite's write lock
//! (`BEGIN IMMEDIATE`, with the busy timeout) orders them against it. Each
//! call is a short transaction on a blocking thread.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use domain::{NhsNumber, OdsCode, PointerId};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::outbox::{join_ids, split_ids};
use crate::subscriptions::{
    Claim, DeliveryState, Matcher, NotificationEvent, Subscription, SubscriptionRecord,
    SubscriptionStatus,
};
use crate::{PointerChange, PointerEvent, StoreError};

use super::row::{corrupt, decode_labels, encode_labels, nhs_to_sql, sqlite_error};
use super::schema;

const SUBSCRIPTION_COLUMNS: &str = "id, owner_app, nhs_number, heartbeat_ms, spec, created,
    status, error, events_total, delivered_through, attempts, next_attempt_ms, last_sent_ms";
const EVENT_COLUMNS: &str = "number, seq, change, focus, additional_context, nhs_number,
    custodian, type_key, security_labels, recorded_at";

/// The subscriptions connection, opened on first use.
pub(super) struct Lane {
    path: PathBuf,
    conn: Arc<Mutex<Option<Connection>>>,
}

impl Lane {
    pub(super) fn new(path: PathBuf) -> Lane {
        Lane {
            path,
            conn: Arc::new(Mutex::new(None)),
        }
    }

    /// Runs `work` in one `BEGIN IMMEDIATE` transaction on a blocking thread;
    /// an error rolls it back whole.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let slot = Arc::clone(&self.conn);
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = slot.lock().unwrap_or_else(|p| {
                let mut g = p.into_inner();
                *g = None;
                g
            });
            if guard.is_none() {
                let conn = Connection::open(&path).map_err(sqlite_error)?;
                schema::configure_writer(&conn)?;
                *guard = Some(conn);
            }
            let Some(conn) = guard.as_ref() else {
                return Err(StoreError::Internal(
                    "subscription connection missing".into(),
                ));
            };
            conn.execute_batch("BEGIN IMMEDIATE")
                .map_err(sqlite_error)?;
            match work(conn) {
                Ok(value) => {
                    if let Err(e) = conn.execute_batch("COMMIT") {
                        let _ = conn.execute_batch("ROLLBACK");
                        return Err(sqlite_error(e));
                    }
                    Ok(value)
                }
                Err(e) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    Err(sqlite_error(e))
                }
            }
        })
        .await
        .map_err(|e| StoreError::Internal(format!("subscription task failed: {e}")))?
    }

    pub(super) async fn create(&self, record: SubscriptionRecord) -> Result<(), StoreError> {
        let id = record.id.clone();
        let inserted = self
            .run(move |conn| {
                let state = DeliveryState::requested();
                conn.prepare_cached(
                    "INSERT INTO subscriptions (id, owner_app, nhs_number, heartbeat_ms, spec,
                        created, status, error, events_total, delivered_through, attempts,
                        next_attempt_ms, last_sent_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, 0, 0, 0, 0, 0)
                     ON CONFLICT DO NOTHING",
                )?
                .execute(params![
                    record.id,
                    record.owner_app,
                    nhs_to_sql(record.nhs_number),
                    record.heartbeat_ms,
                    record.spec,
                    record.created,
                    state.status.as_str(),
                ])
            })
            .await?;
        if inserted == 0 {
            return Err(StoreError::Internal(format!(
                "subscription id {id} is taken"
            )));
        }
        Ok(())
    }

    pub(super) async fn get(&self, id: &str) -> Result<Option<Subscription>, StoreError> {
        let id = id.to_owned();
        self.run(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = ?1"
            ))?
            .query_row([id], decode_subscription)
            .optional()
        })
        .await
    }

    pub(super) async fn of_owner(&self, owner: &str) -> Result<Vec<Subscription>, StoreError> {
        let owner = owner.to_owned();
        self.run(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE owner_app = ?1
                 ORDER BY rowid"
            ))?
            .query_map([owner], decode_subscription)?
            .collect()
        })
        .await
    }

    pub(super) async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.run(move |conn| {
            conn.prepare_cached("DELETE FROM subscription_events WHERE subscription = ?1")?
                .execute([&id])?;
            let n = conn
                .prepare_cached("DELETE FROM subscriptions WHERE id = ?1")?
                .execute([&id])?;
            Ok(n > 0)
        })
        .await
    }

    pub(super) async fn reactivate(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.run(move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE subscriptions SET status = 'requested', error = NULL, attempts = 0,
                        next_attempt_ms = 0, lease_owner = NULL, lease_until_ms = NULL
                     WHERE id = ?1",
                )?
                .execute([id])?;
            Ok(n > 0)
        })
        .await
    }

    pub(super) async fn fan_out(
        &self,
        limit: usize,
        matcher: Matcher,
    ) -> Result<usize, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(move |conn| {
            let events: Vec<PointerEvent> = conn
                .prepare_cached(
                    "SELECT seq, change, focus, additional_context, nhs_number, custodian,
                        type_key, security_labels, recorded_at
                     FROM pointer_events ORDER BY seq LIMIT ?1",
                )?
                .query_map([limit], decode_outbox_event)?
                .collect::<rusqlite::Result<_>>()?;
            for event in &events {
                let candidates: Vec<Subscription> = conn
                    .prepare_cached(&format!(
                        "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE nhs_number = ?1
                         ORDER BY rowid"
                    ))?
                    .query_map([nhs_to_sql(event.nhs_number)], decode_subscription)?
                    .collect::<rusqlite::Result<_>>()?;
                for sub in candidates.iter().filter(|s| matcher(s, event)) {
                    let number: i64 = conn
                        .prepare_cached(
                            "UPDATE subscriptions SET events_total = events_total + 1
                             WHERE id = ?1 RETURNING events_total",
                        )?
                        .query_row([&sub.record.id], |row| row.get(0))?;
                    insert_event(conn, &sub.record.id, number, event)?;
                }
                conn.prepare_cached("DELETE FROM pointer_events WHERE seq = ?1")?
                    .execute([event.seq])?;
            }
            Ok(events.len())
        })
        .await
    }

    pub(super) async fn claim_due(
        &self,
        node: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<Claim>, StoreError> {
        let node = node.to_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(move |conn| {
            let claimed: Vec<Subscription> = conn
                .prepare_cached(&format!(
                    "UPDATE subscriptions SET lease_owner = ?1, lease_until_ms = ?2 + ?3
                     WHERE id IN (
                        SELECT id FROM subscriptions
                        WHERE (lease_until_ms IS NULL OR lease_until_ms < ?2)
                          AND next_attempt_ms <= ?2
                          AND (status = 'requested'
                               OR (status = 'active' AND (events_total > delivered_through
                                   OR (heartbeat_ms > 0 AND last_sent_ms + heartbeat_ms <= ?2))))
                        ORDER BY next_attempt_ms LIMIT ?4)
                     RETURNING {SUBSCRIPTION_COLUMNS}"
                ))?
                .query_map(params![node, now_ms, lease_ms, limit], decode_subscription)?
                .collect::<rusqlite::Result<_>>()?;
            let mut claims = Vec::with_capacity(claimed.len());
            for subscription in claimed {
                let next_event = conn
                    .prepare_cached(&format!(
                        "SELECT {EVENT_COLUMNS} FROM subscription_events
                         WHERE subscription = ?1 AND number = ?2"
                    ))?
                    .query_row(
                        params![
                            subscription.record.id,
                            subscription.state.delivered_through + 1
                        ],
                        decode_event,
                    )
                    .optional()?;
                claims.push(Claim {
                    subscription,
                    next_event,
                });
            }
            Ok(claims)
        })
        .await
    }

    pub(super) async fn finish_attempt(
        &self,
        id: &str,
        node: &str,
        state: &DeliveryState,
    ) -> Result<bool, StoreError> {
        let (id, node, state) = (id.to_owned(), node.to_owned(), state.clone());
        self.run(move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE subscriptions SET status = ?3, error = ?4, delivered_through = ?5,
                        attempts = ?6, next_attempt_ms = ?7, last_sent_ms = ?8,
                        lease_owner = NULL, lease_until_ms = NULL
                     WHERE id = ?1 AND lease_owner = ?2",
                )?
                .execute(params![
                    id,
                    node,
                    state.status.as_str(),
                    state.error,
                    state.delivered_through,
                    state.attempts,
                    state.next_attempt_ms,
                    state.last_sent_ms,
                ])?;
            Ok(n > 0)
        })
        .await
    }

    pub(super) async fn events(
        &self,
        id: &str,
        since: Option<i64>,
        until: Option<i64>,
        limit: usize,
    ) -> Result<Vec<NotificationEvent>, StoreError> {
        let id = id.to_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM subscription_events
                 WHERE subscription = ?1 AND number >= ?2 AND number <= ?3
                 ORDER BY number LIMIT ?4"
            ))?
            .query_map(
                params![
                    id,
                    since.unwrap_or(i64::MIN),
                    until.unwrap_or(i64::MAX),
                    limit
                ],
                decode_event,
            )?
            .collect()
        })
        .await
    }

    pub(super) async fn purge(&self, before: &str) -> Result<u64, StoreError> {
        let before = before.to_owned();
        self.run(move |conn| {
            let n = conn
                .prepare_cached(
                    "DELETE FROM subscription_events WHERE recorded_at < ?1
                     AND number <= (SELECT delivered_through FROM subscriptions s
                                    WHERE s.id = subscription_events.subscription)",
                )?
                .execute([before])?;
            Ok(n as u64)
        })
        .await
    }
}

fn insert_event(
    conn: &Connection,
    subscription: &str,
    number: i64,
    event: &PointerEvent,
) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "INSERT INTO subscription_events (subscription, number, seq, change, focus,
            additional_context, nhs_number, custodian, type_key, security_labels, recorded_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        subscription,
        number,
        event.seq,
        event.change.as_str(),
        event.focus.as_str(),
        join_ids(&event.additional_context),
        nhs_to_sql(event.nhs_number),
        event.custodian.as_str(),
        event.type_key,
        encode_labels(&event.security_labels),
        event.recorded_at,
    ])
}

fn nhs_from(column: usize, value: i64) -> rusqlite::Result<NhsNumber> {
    u64::try_from(value)
        .ok()
        .and_then(|n| NhsNumber::from_u64(n).ok())
        .ok_or_else(|| corrupt(column, "nhs_number"))
}

fn decode_subscription(row: &Row<'_>) -> rusqlite::Result<Subscription> {
    let status: String = row.get(6)?;
    let attempts: i64 = row.get(10)?;
    Ok(Subscription {
        record: SubscriptionRecord {
            id: row.get(0)?,
            owner_app: row.get(1)?,
            nhs_number: nhs_from(2, row.get(2)?)?,
            heartbeat_ms: row.get(3)?,
            spec: row.get(4)?,
            created: row.get(5)?,
        },
        state: DeliveryState {
            status: SubscriptionStatus::parse(&status).ok_or_else(|| corrupt(6, "status"))?,
            error: row.get(7)?,
            events_total: row.get(8)?,
            delivered_through: row.get(9)?,
            attempts: u32::try_from(attempts).map_err(|_| corrupt(10, "attempts"))?,
            next_attempt_ms: row.get(11)?,
            last_sent_ms: row.get(12)?,
        },
    })
}

/// A `pointer_events` row (the outbox), columns as `fan_out` selects them.
fn decode_outbox_event(row: &Row<'_>) -> rusqlite::Result<PointerEvent> {
    pointer_event(row, 0, 1)
}

/// A `subscription_events` row, as [`EVENT_COLUMNS`].
fn decode_event(row: &Row<'_>) -> rusqlite::Result<NotificationEvent> {
    Ok(NotificationEvent {
        number: row.get(0)?,
        event: pointer_event(row, 1, 2)?,
    })
}

/// The event columns from `seq` at `seq_at` and `change` onwards at `first`
/// (seq, change, focus, additional_context, nhs_number, custodian, type_key,
/// security_labels, recorded_at).
fn pointer_event(row: &Row<'_>, seq_at: usize, first: usize) -> rusqlite::Result<PointerEvent> {
    let change: String = row.get(first)?;
    let focus: String = row.get(first + 1)?;
    let context: String = row.get(first + 2)?;
    let custodian: String = row.get(first + 4)?;
    let labels: String = row.get(first + 6)?;
    Ok(PointerEvent {
        seq: row.get(seq_at)?,
        change: PointerChange::parse(&change).ok_or_else(|| corrupt(first, "change"))?,
        focus: PointerId::parse(&focus).ok_or_else(|| corrupt(first + 1, "focus"))?,
        additional_context: split_ids(&context).ok_or_else(|| corrupt(first + 2, "context"))?,
        nhs_number: nhs_from(first + 3, row.get(first + 3)?)?,
        custodian: OdsCode::parse(&custodian).ok_or_else(|| corrupt(first + 4, "custodian"))?,
        type_key: row.get(first + 5)?,
        security_labels: decode_labels(&labels),
        recorded_at: row.get(first + 7)?,
    })
}
