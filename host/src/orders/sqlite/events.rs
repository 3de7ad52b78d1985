//! [`EventStore`] on SQLite: the outbox table, written in the transactions of the changes it
//! announces; a delivery claim is a conditional update of the next attempt's time (a lease).

use rusqlite::{OptionalExtension, Row, Transaction};

use super::{SqliteStore, db, now_ms, unreadable};
use crate::orders::OrderId;
use crate::orders::events::{Event, EventKind};
use crate::orders::store::{EventStore, MAX_TEXT_LEN, StoreError, cut};

const COLUMNS: &str = "id, kind, at_ms, order_id, data";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Event> {
    let kind: String = row.get(1)?;
    let data: String = row.get(4)?;
    Ok(Event {
        id: row.get(0)?,
        kind: kind
            .parse()
            .map_err(|_| unreadable(1, format!("unknown event `{kind}`")))?,
        at_ms: row.get(2)?,
        order_id: row.get(3)?,
        data: serde_json::from_str(&data).map_err(|e| unreadable(4, format!("data: {e}")))?,
    })
}

/// Records an event inside the caller's transaction; with a `dedupe` key already used, does
/// nothing and returns `None`.
pub(super) fn insert(
    tx: &Transaction<'_>,
    kind: EventKind,
    order: Option<&OrderId>,
    data: &serde_json::Value,
    dedupe: Option<&str>,
    now: i64,
) -> Result<Option<i64>, StoreError> {
    let data = serde_json::to_string(data)
        .map_err(|e| StoreError::Invalid(format!("the event cannot be kept: {e}")))?;
    tx.query_row(
        "INSERT INTO events (kind, at_ms, order_id, data, dedupe, next_attempt_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?2)
         ON CONFLICT (dedupe) DO NOTHING RETURNING id",
        rusqlite::params![kind.as_str(), now, order, data, dedupe],
        |r| r.get(0),
    )
    .optional()
    .map_err(db)
}

impl EventStore for SqliteStore {
    fn emit(
        &self,
        kind: EventKind,
        order: Option<&OrderId>,
        data: serde_json::Value,
        dedupe: Option<&str>,
    ) -> Result<Option<i64>, StoreError> {
        self.write(|tx| insert(tx, kind, order, &data, dedupe, now_ms()))
    }

    fn events_after(&self, after: i64, limit: u32) -> Result<Vec<Event>, StoreError> {
        self.read(|tx| {
            let mut stmt = tx
                .prepare(&format!(
                    "SELECT {COLUMNS} FROM events WHERE id > ?1 ORDER BY id LIMIT ?2"
                ))
                .map_err(db)?;
            let rows = stmt
                .query_map(
                    rusqlite::params![after, i64::from(limit.min(1000))],
                    from_row,
                )
                .map_err(db)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db)
        })
    }

    fn claim_deliveries(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        self.write(|tx| {
            let mut stmt = tx
                .prepare(&format!(
                    "UPDATE events SET next_attempt_ms = ?2
                     WHERE id IN (SELECT id FROM events
                                  WHERE delivered_ms IS NULL AND next_attempt_ms <= ?1
                                  ORDER BY id LIMIT ?3)
                     RETURNING {COLUMNS}"
                ))
                .map_err(db)?;
            let rows = stmt
                .query_map(
                    rusqlite::params![now_ms, now_ms.saturating_add(lease_ms), i64::from(limit)],
                    from_row,
                )
                .map_err(db)?;
            let mut events = rows.collect::<Result<Vec<_>, _>>().map_err(db)?;
            events.sort_by_key(|e| e.id);
            Ok(events)
        })
    }

    fn delivered(&self, id: i64) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE events SET delivered_ms = ?2, attempts = attempts + 1, last_error = NULL
                 WHERE id = ?1",
                rusqlite::params![id, now_ms()],
            )
            .map_err(db)
            .map(drop)
        })
    }

    fn delivery_attempts(&self, id: i64) -> Result<u32, StoreError> {
        self.read(|tx| {
            let n: i64 = tx
                .query_row("SELECT attempts FROM events WHERE id = ?1", [id], |r| {
                    r.get(0)
                })
                .map_err(db)?;
            Ok(u32::try_from(n).unwrap_or(u32::MAX))
        })
    }

    fn delivery_failed(&self, id: i64, next_ms: i64, error: &str) -> Result<(), StoreError> {
        let error = cut(error.to_owned(), MAX_TEXT_LEN);
        self.write(|tx| {
            tx.execute(
                "UPDATE events SET next_attempt_ms = ?2, attempts = attempts + 1, last_error = ?3
                 WHERE id = ?1 AND delivered_ms IS NULL",
                rusqlite::params![id, next_ms, error],
            )
            .map_err(db)
            .map(drop)
        })
    }

    fn undelivered(&self) -> Result<(u64, Option<i64>), StoreError> {
        self.read(|tx| {
            tx.query_row(
                "SELECT COUNT(*), MIN(at_ms) FROM events WHERE delivered_ms IS NULL",
                [],
                |r| Ok((u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0), r.get(1)?)),
            )
            .map_err(db)
        })
    }

    fn purge_events(&self, before_ms: i64, undelivered_too: bool) -> Result<u64, StoreError> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "DELETE FROM events WHERE at_ms < ?1 AND (?2 OR delivered_ms IS NOT NULL)",
                    rusqlite::params![before_ms, undelivered_too],
                )
                .map_err(db)?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }
}
