//! [`OperationStore`] on PostgreSQL: one row per operation; two partial unique indexes decide
//! every race (one open operation per order, one operation per idempotency key). An open
//! operation carries its owner's claim and lease, as a `placing` order does.

use deadpool_postgres::Transaction;
use tokio_postgres::Row;

use super::{
    ClaimCheck, Claims, DB_NOW, PgStore, apply_change, db, events, get, get_order,
    is_unique_violation, unreadable,
};
use crate::orders::OrderId;
use crate::orders::events::EventKind;
use crate::orders::operation::{Began, NewOperation, Operation, OperationState, check_key};
use crate::orders::store::now_ms;
use crate::orders::store::{
    MAX_TEXT_LEN, OperationEnd, OperationStore, OrderEffect, StoreError, checked_change, cut,
};

const COLUMNS: &str = "id, order_id, kind, idem_key, request, state, result, error, actor, \
     settled_by, created_ms, updated_ms";

fn from_row(row: &Row) -> Result<Operation, StoreError> {
    let kind: String = get(row, 2)?;
    let state: String = get(row, 5)?;
    let order: String = get(row, 1)?;
    Ok(Operation {
        id: get(row, 0)?,
        order_id: OrderId::parse(&order).map_err(unreadable)?,
        kind: kind
            .parse()
            .map_err(|_| unreadable(format!("unknown operation `{kind}`")))?,
        key: get(row, 3)?,
        request: get(row, 4)?,
        state: state
            .parse()
            .map_err(|_| unreadable(format!("unknown operation state `{state}`")))?,
        result: get(row, 6)?,
        error: get(row, 7)?,
        actor: get(row, 8)?,
        settled_by: get(row, 9)?,
        created_ms: get(row, 10)?,
        updated_ms: get(row, 11)?,
    })
}

async fn get_op(tx: &Transaction<'_>, id: i64, lock: bool) -> Result<Operation, StoreError> {
    let row = tx
        .query_opt(
            &format!(
                "SELECT {COLUMNS} FROM operations WHERE id = $1{}",
                if lock { " FOR UPDATE" } else { "" }
            ),
            &[&id],
        )
        .await
        .map_err(db)?
        .ok_or(StoreError::NoOperation)?;
    from_row(&row)
}

async fn select(
    tx: &Transaction<'_>,
    filter: &str,
    param: &str,
) -> Result<Vec<Operation>, StoreError> {
    let rows = tx
        .query(
            &format!("SELECT {COLUMNS} FROM operations WHERE {filter} ORDER BY id"),
            &[&param],
        )
        .await
        .map_err(db)?;
    rows.iter().map(from_row).collect()
}

/// Settles the operations this instance holds (with `own_too`) or whose lease ran out:
/// `sending` ones become `in_doubt`, `pending` ones are dropped. Returns both.
pub(super) async fn recover(
    tx: &Transaction<'_>,
    own_too: bool,
    instance: &str,
    now: i64,
) -> Result<(Vec<Operation>, Vec<Operation>), StoreError> {
    let rows = tx
        .query(
            &format!(
                "SELECT {COLUMNS} FROM operations WHERE state IN ('pending', 'sending')
                     AND (($1 AND claimed_by = $2) OR COALESCE(lease_until_ms, 0) < {DB_NOW})
                 ORDER BY id FOR UPDATE SKIP LOCKED"
            ),
            &[&own_too, &instance],
        )
        .await
        .map_err(db)?;
    let open = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    let why = "the host stopped while sending it; it may or may not have happened upstream";
    let mut in_doubt = Vec::new();
    let mut dropped = Vec::new();
    for op in open {
        if op.state == OperationState::Sending {
            tx.execute(
                "UPDATE operations SET state = 'in_doubt', error = $2, updated_ms = $3,
                     lease_until_ms = NULL
                 WHERE id = $1",
                &[&op.id, &why, &now],
            )
            .await
            .map_err(db)?;
            let op = get_op(tx, op.id, false).await?;
            announce(tx, EventKind::OperationInDoubt, &op, now).await?;
            in_doubt.push(op);
        } else {
            tx.execute("DELETE FROM operations WHERE id = $1", &[&op.id])
                .await
                .map_err(db)?;
            dropped.push(op);
        }
    }
    Ok((in_doubt, dropped))
}

async fn announce(
    tx: &Transaction<'_>,
    kind: EventKind,
    op: &Operation,
    now: i64,
) -> Result<(), StoreError> {
    let data = serde_json::json!({ "operation": op });
    events::insert(tx, kind, Some(&op.order_id), &data, None, now)
        .await
        .map(drop)
}

/// The operation an idempotency key names, if any.
async fn keyed(
    tx: &Transaction<'_>,
    order: &OrderId,
    key: &str,
) -> Result<Option<Operation>, StoreError> {
    let row = tx
        .query_opt(
            &format!("SELECT {COLUMNS} FROM operations WHERE order_id = $1 AND idem_key = $2"),
            &[&order.as_str(), &key],
        )
        .await
        .map_err(db)?;
    row.as_ref().map(from_row).transpose()
}

impl PgStore {
    /// One try of [`OperationStore::begin_operation`]; `None` when a racing request with the
    /// same key inserted first (then the next try finds its operation).
    fn try_begin(
        &self,
        new: &NewOperation,
        request: &serde_json::Value,
        actor: &str,
    ) -> Result<Option<Began>, StoreError> {
        let instance = self.instance.clone();
        let lease = self.lease_ms;
        self.write(async |tx| {
            get_order(tx, &new.order_id).await?;
            if let Some(key) = &new.key
                && let Some(op) = keyed(tx, &new.order_id, key).await?
            {
                if op.kind != new.kind {
                    return Err(StoreError::Invalid(format!(
                        "the idempotency key already names operation {} ({}) of this order",
                        op.id, op.kind
                    )));
                }
                return Ok(Some(Began::Existing(op)));
            }
            let open = tx
                .query_opt(
                    &format!(
                        "SELECT {COLUMNS} FROM operations WHERE order_id = $1
                         AND state IN ('pending', 'sending', 'in_doubt')"
                    ),
                    &[&new.order_id.as_str()],
                )
                .await
                .map_err(db)?;
            if let Some(row) = open {
                let op = from_row(&row)?;
                return Err(StoreError::OperationOpen {
                    id: op.id,
                    kind: op.kind,
                    state: op.state,
                });
            }
            let now = now_ms();
            let inserted = tx
                .query_one(
                    &format!(
                        "INSERT INTO operations (order_id, kind, idem_key, request, state, actor,
                             created_ms, updated_ms, claimed_by, lease_until_ms)
                         VALUES ($1, $2, $3, $4, 'pending', $5, $6, $6, $7, {DB_NOW} + $8)
                         RETURNING id"
                    ),
                    &[
                        &new.order_id.as_str(),
                        &new.kind.as_str(),
                        &new.key,
                        request,
                        &actor,
                        &now,
                        &instance,
                        &lease,
                    ],
                )
                .await;
            match inserted {
                Ok(row) => {
                    let id: i64 = get(&row, 0)?;
                    Ok(Some(Began::New(get_op(tx, id, false).await?)))
                }
                Err(e) if is_unique_violation(&e) && new.key.is_some() => Ok(None),
                Err(e) if is_unique_violation(&e) => Err(StoreError::Invalid(
                    "another operation of this order began at the same moment".to_owned(),
                )),
                Err(e) => Err(db(e)),
            }
        })
    }
}

impl OperationStore for PgStore {
    fn begin_operation(&self, new: &NewOperation) -> Result<Began, StoreError> {
        if let Some(key) = &new.key {
            check_key(key).map_err(|e| StoreError::Invalid(e.to_string()))?;
        }
        let request = serde_json::to_value(&new.request)
            .map_err(|e| StoreError::Invalid(format!("the request cannot be kept: {e}")))?;
        let actor = cut(new.actor.clone(), 128);
        match self.try_begin(new, &request, &actor)? {
            Some(began) => Ok(began),
            // The racing request's operation is committed now: its key finds it, or its
            // order's open operation refuses this one.
            None => self.try_begin(new, &request, &actor)?.ok_or_else(|| {
                StoreError::Invalid(
                    "another operation of this order began at the same moment".to_owned(),
                )
            }),
        }
    }

    fn operation(&self, id: i64) -> Result<Operation, StoreError> {
        self.read(async |tx| get_op(tx, id, false).await)
    }

    fn operations(&self, order: &OrderId) -> Result<Vec<Operation>, StoreError> {
        self.read(async |tx| select(tx, "order_id = $1", order.as_str()).await)
    }

    fn operations_in(&self, state: OperationState) -> Result<Vec<Operation>, StoreError> {
        self.read(async |tx| select(tx, "state = $1", state.as_str()).await)
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
        let error = end.error.map(|e| cut(e, MAX_TEXT_LEN));
        let settled_by = end.settled_by.map(|a| cut(a, 128));
        let claims = Claims {
            instance: &self.instance,
            lease_ms: self.lease_ms,
            check: ClaimCheck::Mine,
        };
        self.write(async |tx| {
            let op = get_op(tx, id, true).await?;
            if !from.contains(&op.state) {
                return Err(StoreError::Invalid(format!(
                    "operation {id} is {}, so it cannot be settled as {}",
                    op.state, end.state
                )));
            }
            let now = now_ms();
            if let Some(e) = &effect {
                apply_change(
                    tx,
                    &claims,
                    &op.order_id,
                    e.from,
                    e.to,
                    &e.amendment,
                    &e.change,
                    now,
                )
                .await?;
            }
            tx.execute(
                "UPDATE operations SET state = $2, result = COALESCE($3, result),
                     error = $4, settled_by = COALESCE($5, settled_by), updated_ms = $6,
                     lease_until_ms = NULL
                 WHERE id = $1",
                &[
                    &id,
                    &end.state.as_str(),
                    &end.result,
                    &error,
                    &settled_by,
                    &now,
                ],
            )
            .await
            .map_err(db)?;
            let op = get_op(tx, id, false).await?;
            match op.state {
                OperationState::InDoubt => {
                    announce(tx, EventKind::OperationInDoubt, &op, now).await?;
                }
                OperationState::Failed => {
                    announce(tx, EventKind::OperationFailed, &op, now).await?
                }
                _ => {}
            }
            Ok(op)
        })
    }

    fn drop_operation(&self, id: i64) -> Result<(), StoreError> {
        self.write(async |tx| {
            let deleted = tx
                .execute(
                    "DELETE FROM operations WHERE id = $1 AND state = 'pending'",
                    &[&id],
                )
                .await
                .map_err(db)?;
            if deleted == 1 {
                Ok(())
            } else {
                let op = get_op(tx, id, false).await?;
                Err(StoreError::Invalid(format!(
                    "operation {id} is {}: only a pending one is dropped",
                    op.state
                )))
            }
        })
    }
}
