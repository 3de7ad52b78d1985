//! [`OperationStore`] on SQLite: one row per operation; two partial unique indexes decide every
//! race (one open operation per order, one operation per idempotency key).

use rusqlite::{ErrorCode, OptionalExtension, Row, Transaction};

use super::{SqliteStore, apply_change, db, events, get_order, now_ms, unreadable};
use crate::orders::OrderId;
use crate::orders::events::EventKind;
use crate::orders::operation::{Began, NewOperation, Operation, OperationState, check_key};
use crate::orders::store::{
    MAX_TEXT_LEN, OperationEnd, OperationStore, OrderEffect, StoreError, checked_change, cut,
};

const COLUMNS: &str = "id, order_id, kind, idem_key, request, state, result, error, actor, \
     settled_by, created_ms, updated_ms";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Operation> {
    let text = |idx: usize| -> rusqlite::Result<String> { row.get(idx) };
    let json = |idx: usize, what: &str| -> rusqlite::Result<Option<serde_json::Value>> {
        match row.get::<_, Option<String>>(idx)? {
            None => Ok(None),
            Some(t) => serde_json::from_str(&t)
                .map(Some)
                .map_err(|e| unreadable(idx, format!("{what}: {e}"))),
        }
    };
    let kind = text(2)?;
    let state = text(5)?;
    Ok(Operation {
        id: row.get(0)?,
        order_id: row.get(1)?,
        kind: kind
            .parse()
            .map_err(|_| unreadable(2, format!("unknown operation `{kind}`")))?,
        key: row.get(3)?,
        request: json(4, "request")?.unwrap_or(serde_json::Value::Null),
        state: state
            .parse()
            .map_err(|_| unreadable(5, format!("unknown operation state `{state}`")))?,
        result: json(6, "result")?,
        error: row.get(7)?,
        actor: row.get(8)?,
        settled_by: row.get(9)?,
        created_ms: row.get(10)?,
        updated_ms: row.get(11)?,
    })
}

fn get(tx: &Transaction<'_>, id: i64) -> Result<Operation, StoreError> {
    tx.query_row(
        &format!("SELECT {COLUMNS} FROM operations WHERE id = ?1"),
        [id],
        from_row,
    )
    .optional()
    .map_err(db)?
    .ok_or(StoreError::NoOperation)
}

fn select(tx: &Transaction<'_>, filter: &str, param: &str) -> Result<Vec<Operation>, StoreError> {
    let mut stmt = tx
        .prepare(&format!(
            "SELECT {COLUMNS} FROM operations WHERE {filter} ORDER BY id"
        ))
        .map_err(db)?;
    let rows = stmt.query_map([param], from_row).map_err(db)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db)
}

/// At start: `sending` operations become `in_doubt`, `pending` ones are dropped. Returns both.
pub(super) fn recover(
    tx: &Transaction<'_>,
    now: i64,
) -> Result<(Vec<Operation>, Vec<Operation>), StoreError> {
    let sending = select(tx, "state = ?1", "sending")?;
    let pending = select(tx, "state = ?1", "pending")?;
    let why = "the host stopped while sending it; it may or may not have happened upstream";
    let mut in_doubt = Vec::with_capacity(sending.len());
    for op in sending {
        tx.execute(
            "UPDATE operations SET state = 'in_doubt', error = ?2, updated_ms = ?3 WHERE id = ?1",
            rusqlite::params![op.id, why, now],
        )
        .map_err(db)?;
        let op = get(tx, op.id)?;
        announce(tx, EventKind::OperationInDoubt, &op, now)?;
        in_doubt.push(op);
    }
    for op in &pending {
        tx.execute("DELETE FROM operations WHERE id = ?1", [op.id])
            .map_err(db)?;
    }
    Ok((in_doubt, pending))
}

fn announce(
    tx: &Transaction<'_>,
    kind: EventKind,
    op: &Operation,
    now: i64,
) -> Result<(), StoreError> {
    let data = serde_json::json!({ "operation": op });
    events::insert(tx, kind, Some(&op.order_id), &data, None, now).map(drop)
}

impl OperationStore for SqliteStore {
    fn begin_operation(&self, new: &NewOperation) -> Result<Began, StoreError> {
        if let Some(key) = &new.key {
            check_key(key).map_err(|e| StoreError::Invalid(e.to_string()))?;
        }
        let request = serde_json::to_string(&new.request)
            .map_err(|e| StoreError::Invalid(format!("the request cannot be kept: {e}")))?;
        let actor = cut(new.actor.clone(), 128);
        self.write(|tx| {
            get_order(tx, &new.order_id)?;
            if let Some(key) = &new.key {
                let existing = tx
                    .query_row(
                        &format!(
                            "SELECT {COLUMNS} FROM operations WHERE order_id = ?1 AND idem_key = ?2"
                        ),
                        rusqlite::params![new.order_id, key],
                        from_row,
                    )
                    .optional()
                    .map_err(db)?;
                if let Some(op) = existing {
                    if op.kind != new.kind {
                        return Err(StoreError::Invalid(format!(
                            "the idempotency key already names operation {} ({}) of this order",
                            op.id, op.kind
                        )));
                    }
                    return Ok(Began::Existing(op));
                }
            }
            let open = tx
                .query_row(
                    &format!(
                        "SELECT {COLUMNS} FROM operations WHERE order_id = ?1
                         AND state IN ('pending', 'sending', 'in_doubt')"
                    ),
                    [&new.order_id],
                    from_row,
                )
                .optional()
                .map_err(db)?;
            if let Some(op) = open {
                return Err(StoreError::OperationOpen {
                    id: op.id,
                    kind: op.kind,
                    state: op.state,
                });
            }
            let now = now_ms();
            let id: i64 = tx
                .query_row(
                    "INSERT INTO operations (order_id, kind, idem_key, request, state, actor,
                         created_ms, updated_ms)
                     VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6, ?6) RETURNING id",
                    rusqlite::params![
                        new.order_id,
                        new.kind.as_str(),
                        new.key,
                        request,
                        actor,
                        now
                    ],
                    |r| r.get(0),
                )
                .map_err(|e| match e.sqlite_error_code() {
                    Some(ErrorCode::ConstraintViolation) => StoreError::Invalid(
                        "another operation of this order began at the same moment".to_owned(),
                    ),
                    _ => db(e),
                })?;
            Ok(Began::New(get(tx, id)?))
        })
    }

    fn operation(&self, id: i64) -> Result<Operation, StoreError> {
        self.read(|tx| get(tx, id))
    }

    fn operations(&self, order: &OrderId) -> Result<Vec<Operation>, StoreError> {
        self.read(|tx| select(tx, "order_id = ?1", order.as_str()))
    }

    fn operations_in(&self, state: OperationState) -> Result<Vec<Operation>, StoreError> {
        self.read(|tx| select(tx, "state = ?1", state.as_str()))
    }

    fn settle_operation(
        &self,
        id: i64,
        from: &[OperationState],
        end: OperationEnd,
        effect: Option<OrderEffect>,
    ) -> Result<Operation, StoreError> {
        if end.state.is_open() && end.state != OperationState::InDoubt {
            return Err(StoreError::Invalid(format!(
                "an operation is settled as done, failed or in doubt, not {}",
                end.state
            )));
        }
        let effect = effect
            .map(|e| {
                let change = checked_change(e.from, e.to, &e.amendment, e.change.clone())?;
                Ok::<_, StoreError>(OrderEffect { change, ..e })
            })
            .transpose()?;
        let result = end
            .result
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Invalid(format!("the result cannot be kept: {e}")))?;
        let error = end.error.map(|e| cut(e, MAX_TEXT_LEN));
        let settled_by = end.settled_by.map(|a| cut(a, 128));
        self.write(|tx| {
            let op = get(tx, id)?;
            if !from.contains(&op.state) {
                return Err(StoreError::Invalid(format!(
                    "operation {id} is {}, so it cannot be settled as {}",
                    op.state, end.state
                )));
            }
            let now = now_ms();
            if let Some(e) = &effect {
                apply_change(tx, &op.order_id, e.from, e.to, &e.amendment, &e.change, now)?;
            }
            tx.execute(
                "UPDATE operations SET state = ?2, result = COALESCE(?3, result),
                     error = ?4, settled_by = COALESCE(?5, settled_by), updated_ms = ?6
                 WHERE id = ?1",
                rusqlite::params![id, end.state.as_str(), result, error, settled_by, now],
            )
            .map_err(db)?;
            let op = get(tx, id)?;
            match op.state {
                OperationState::InDoubt => announce(tx, EventKind::OperationInDoubt, &op, now)?,
                OperationState::Failed => announce(tx, EventKind::OperationFailed, &op, now)?,
                _ => {}
            }
            Ok(op)
        })
    }

    fn drop_operation(&self, id: i64) -> Result<(), StoreError> {
        self.write(|tx| {
            let deleted = tx
                .execute(
                    "DELETE FROM operations WHERE id = ?1 AND state = 'pending'",
                    [id],
                )
                .map_err(db)?;
            if deleted == 1 {
                Ok(())
            } else {
                let op = get(tx, id)?;
                Err(StoreError::Invalid(format!(
                    "operation {id} is {}: only a pending one is dropped",
                    op.state
                )))
            }
        })
    }
}
