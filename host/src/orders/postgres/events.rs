//! [`EventStore`] on PostgreSQL: the outbox table, written in the transactions of the changes
//! it announces; a delivery claim is a conditional update of the next attempt's time (a lease)
//! on rows no other deliverer holds (`FOR UPDATE SKIP LOCKED`).

use deadpool_postgres::Transaction;
use tokio_postgres::Row;

use super::{EVENTS_LOCK, PgStore, db, get, unreadable};
use crate::orders::OrderId;
use crate::orders::events::{Event, EventKind};
use crate::orders::store::now_ms;
use crate::orders::store::{EventStore, MAX_TEXT_LEN, StoreError, cut};

const COLUMNS: &str = "id, kind, at_ms, order_id, data";

fn from_row(row: &Row) -> Result<Event, StoreError> {
    let kind: String = get(row, 1)?;
    let order: Option<String> = get(row, 3)?;
    Ok(Event {
        id: get(row, 0)?,
        kind: kind
            .parse()
            .map_err(|_| unreadable(format!("unknown event `{kind}`")))?,
        at_ms: get(row, 2)?,
        order_id: order
            .map(|o| OrderId::parse(&o).map_err(unreadable))
            .transpose()?,
        data: get(row, 4)?,
    })
}

/// Records an event inside the caller's transaction; with a `dedupe` key already used, does
/// nothing and returns `None`.
pub(super) async fn insert(
    tx: &Transaction<'_>,
    kind: EventKind,
    order: Option<&OrderId>,
    data: &serde_json::Value,
    dedupe: Option<&str>,
    now: i64,
) -> Result<Option<i64>, StoreError> {
    tx.batch_execute(EVENTS_LOCK).await.map_err(db)?;
    let row = tx
        .query_opt(
            "INSERT INTO events (kind, at_ms, order_id, data, dedupe, next_attempt_ms)
             VALUES ($1, $2, $3, $4, $5, $2)
             ON CONFLICT (dedupe) DO NOTHING RETURNING id",
            &[
                &kind.as_str(),
                &now,
                &order.map(OrderId::as_str),
                data,
                &dedupe,
            ],
        )
        .await
        .map_err(db)?;
    row.map(|r| get(&r, 0)).transpose()
}

impl EventStore for PgStore {
    fn emit(
        &self,
        kind: EventKind,
        order: Option<&OrderId>,
        data: serde_json::Value,
        dedupe: Option<&str>,
    ) -> Result<Option<i64>, StoreError> {
        self.write(async |tx| insert(tx, kind, order, &data, dedupe, now_ms()).await)
    }

    fn events_after(&self, after: i64, limit: u32) -> Result<Vec<Event>, StoreError> {
        self.read(async |tx| {
            let rows = tx
                .query(
                    &format!("SELECT {COLUMNS} FROM events WHERE id > $1 ORDER BY id LIMIT $2"),
                    &[&after, &i64::from(limit.min(1000))],
                )
                .await
                .map_err(db)?;
            rows.iter().map(from_row).collect()
        })
    }

    fn claim_deliveries(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        self.write(async |tx| {
            let rows = tx
                .query(
                    &format!(
                        "UPDATE events SET next_attempt_ms = $2
                         WHERE id IN (SELECT id FROM events
                                      WHERE delivered_ms IS NULL AND next_attempt_ms <= $1
                                      ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
                         RETURNING {COLUMNS}"
                    ),
                    &[&now_ms, &now_ms.saturating_add(lease_ms), &i64::from(limit)],
                )
                .await
                .map_err(db)?;
            let mut events = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
            events.sort_by_key(|e| e.id);
            Ok(events)
        })
    }

    fn delivered(&self, id: i64) -> Result<(), StoreError> {
        self.write(async |tx| {
            tx.execute(
                "UPDATE events SET delivered_ms = $2, attempts = attempts + 1, last_error = NULL
                 WHERE id = $1",
                &[&id, &now_ms()],
            )
            .await
            .map_err(db)
            .map(drop)
        })
    }

    fn delivery_attempts(&self, id: i64) -> Result<u32, StoreError> {
        self.read(async |tx| {
            let row = tx
                .query_one("SELECT attempts FROM events WHERE id = $1", &[&id])
                .await
                .map_err(db)?;
            let n: i32 = get(&row, 0)?;
            Ok(u32::try_from(n).unwrap_or(0))
        })
    }

    fn delivery_failed(&self, id: i64, next_ms: i64, error: &str) -> Result<(), StoreError> {
        let error = cut(error.to_owned(), MAX_TEXT_LEN);
        self.write(async |tx| {
            tx.execute(
                "UPDATE events SET next_attempt_ms = $2, attempts = attempts + 1, last_error = $3
                 WHERE id = $1 AND delivered_ms IS NULL",
                &[&id, &next_ms, &error],
            )
            .await
            .map_err(db)
            .map(drop)
        })
    }

    fn undelivered(&self) -> Result<(u64, Option<i64>), StoreError> {
        self.read(async |tx| {
            let row = tx
                .query_one(
                    "SELECT COUNT(*), MIN(at_ms) FROM events WHERE delivered_ms IS NULL",
                    &[],
                )
                .await
                .map_err(db)?;
            let n: i64 = get(&row, 0)?;
            Ok((u64::try_from(n).unwrap_or(0), get(&row, 1)?))
        })
    }

    fn purge_events(&self, before_ms: i64, undelivered_too: bool) -> Result<u64, StoreError> {
        self.write(async |tx| {
            let n = tx
                .execute(
                    "DELETE FROM events WHERE at_ms < $1 AND ($2 OR delivered_ms IS NOT NULL)",
                    &[&before_ms, &undelivered_too],
                )
                .await
                .map_err(db)?;
            Ok(n)
        })
    }
}
