//! `reseller orders migrate`: a SQLite order database copied into an empty PostgreSQL one, in
//! one transaction — orders with their history and upstream calls, operations, the events
//! outbox (delivered or not, with its IDs, so a webhook receiver's deduplication still holds),
//! upstream's prices and the last balance read.
//!
//! The SQLite file is first brought to this host's schema (as any command on it would), then
//! read in one snapshot while its placer lock is held, so that no host places from it during
//! the copy. A `placing` order or an open operation is copied without a claim: the first sweep
//! on PostgreSQL settles it exactly as a restart would (in doubt if its request may have left).

use std::net::IpAddr;
use std::path::Path;

use deadpool_postgres::Transaction;
use rusqlite::{Connection, OpenFlags, Row};
use serde::Serialize;

use super::{PgStore, db};
use crate::orders::SqliteStore;
use crate::orders::placer::Placer;
use crate::orders::store::StoreError;

/// What a migration copied, table by table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Copied {
    /// Orders.
    pub orders: u64,
    /// Their state transitions.
    pub transitions: u64,
    /// Their recorded upstream calls.
    pub upstream_calls: u64,
    /// Operations on placed modules.
    pub operations: u64,
    /// Events of the outbox.
    pub events: u64,
    /// Upstream's costs.
    pub upstream_costs: u64,
    /// Upstream's tariffs.
    pub upstream_tariffs: u64,
    /// Whether a balance reading was copied.
    pub balance: bool,
}

impl PgStore {
    /// Copies the SQLite order database at `from` into this database, which must hold no
    /// orders, events or prices yet; all or nothing. Refused while a host places from the file
    /// (its placer lock is held).
    pub fn import_sqlite(&self, from: &Path) -> Result<Copied, StoreError> {
        let shown = from.display();
        if !from.is_file() {
            return Err(StoreError::Invalid(format!(
                "{shown} is not a file: nothing to migrate"
            )));
        }
        let placer = Placer::for_database(from);
        placer.take().map_err(|e| {
            StoreError::Invalid(format!(
                "{shown}: {e}; stop the hosts using it before migrating"
            ))
        })?;
        // Brings an older file to this host's schema; refuses a newer one.
        drop(SqliteStore::open(from)?);
        let mut conn = Connection::open_with_flags(
            from,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(source(&shown))?;
        let snapshot = conn.transaction().map_err(source(&shown))?;
        let rows = Rows::read(&snapshot).map_err(|e| match e {
            StoreError::Database(m) => StoreError::Database(format!("{shown}: {m}")),
            e => e,
        })?;
        drop(snapshot);
        let copied = self.write(async |tx| rows.write(tx).await)?;
        drop(placer);
        Ok(copied)
    }
}

/// A reading error of the SQLite file.
fn source(shown: &impl std::fmt::Display) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| StoreError::Database(format!("{shown}: {e}"))
}

fn sql(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

/// A stored JSON text, parsed; `what` says where it was found.
fn json(text: &str, what: impl std::fmt::Display) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Invalid(format!("{what}: not JSON: {e}")))
}

/// An SQLite integer that must fit a PostgreSQL INTEGER.
fn int(value: i64, what: impl std::fmt::Display) -> Result<i32, StoreError> {
    i32::try_from(value).map_err(|_| StoreError::Invalid(format!("{what}: {value} is too large")))
}

struct OrderRow {
    id: String,
    licence_id: String,
    licence_ip: Option<IpAddr>,
    tariff_id: i64,
    service_name: String,
    price_e4: i64,
    currency: String,
    period_months: i32,
    autoprolong: bool,
    upstream_service_id: Option<String>,
    state: String,
    attempts: i32,
    last_error: Option<String>,
    created_ms: i64,
    updated_ms: i64,
    events: i64,
    module: Option<String>,
    fields: serde_json::Value,
    expires_on: Option<time::Date>,
    upstream_status: Option<String>,
    waiting: Option<String>,
    sending: bool,
}

struct TransitionRow {
    order_id: String,
    event: i64,
    from_state: Option<String>,
    to_state: String,
    at_ms: i64,
    actor: String,
    note: Option<String>,
    error: Option<String>,
    service_id: Option<String>,
}

struct CallRow {
    order_id: String,
    event: i64,
    at_ms: i64,
    func: String,
    params: serde_json::Value,
    http_status: Option<i32>,
    duration_ms: i64,
    outcome: String,
    detail: String,
}

struct OperationRow {
    id: i64,
    order_id: String,
    kind: String,
    idem_key: Option<String>,
    request: serde_json::Value,
    state: String,
    result: Option<serde_json::Value>,
    error: Option<String>,
    actor: String,
    settled_by: Option<String>,
    created_ms: i64,
    updated_ms: i64,
}

struct EventRow {
    id: i64,
    kind: String,
    at_ms: i64,
    order_id: Option<String>,
    data: serde_json::Value,
    dedupe: Option<String>,
    delivered_ms: Option<i64>,
    attempts: i32,
    next_attempt_ms: i64,
    last_error: Option<String>,
}

/// The whole SQLite database, read in one snapshot.
#[derive(Default)]
struct Rows {
    orders: Vec<OrderRow>,
    transitions: Vec<TransitionRow>,
    calls: Vec<CallRow>,
    operations: Vec<OperationRow>,
    events: Vec<EventRow>,
    /// Tariff, period, amount, currency.
    costs: Vec<(i64, i32, i64, String)>,
    fetched_ms: Option<i64>,
    /// Position, tariff, intname, additionintname, name, trial.
    tariffs: Vec<(i64, i64, String, String, String, bool)>,
    /// Amount, currency, read at.
    balance: Option<(i64, String, i64)>,
}

/// Reads every row of `query` with `f`.
fn all<T>(
    conn: &Connection,
    query: &str,
    f: impl Fn(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut statement = conn.prepare(query).map_err(sql)?;
    let mut rows = statement.query([]).map_err(sql)?;
    let mut found = Vec::new();
    while let Some(row) = rows.next().map_err(sql)? {
        found.push(f(row)?);
    }
    Ok(found)
}

impl Rows {
    fn read(conn: &Connection) -> Result<Rows, StoreError> {
        let mut rows = Rows {
            orders: all(
                conn,
                "SELECT id, licence_id, licence_ip, tariff_id, service_name, price_e4, currency,
                     period_months, autoprolong, upstream_service_id, state, attempts,
                     last_error, created_ms, updated_ms, events, module, fields, expires_on,
                     upstream_status, waiting, sending
                 FROM orders ORDER BY seq",
                |r| {
                    let id: String = r.get(0).map_err(sql)?;
                    let what = |column: &str| format!("order {id}: {column}");
                    let ip: Option<String> = r.get(2).map_err(sql)?;
                    let expires: Option<String> = r.get(18).map_err(sql)?;
                    let fields: String = r.get(17).map_err(sql)?;
                    Ok(OrderRow {
                        licence_id: r.get(1).map_err(sql)?,
                        licence_ip: ip
                            .map(|ip| {
                                ip.parse().map_err(|_| {
                                    StoreError::Invalid(format!(
                                        "{}: `{ip}` is not an IP address",
                                        what("licence_ip")
                                    ))
                                })
                            })
                            .transpose()?,
                        tariff_id: r.get(3).map_err(sql)?,
                        service_name: r.get(4).map_err(sql)?,
                        price_e4: r.get(5).map_err(sql)?,
                        currency: r.get(6).map_err(sql)?,
                        period_months: int(r.get(7).map_err(sql)?, what("period_months"))?,
                        autoprolong: r.get::<_, i64>(8).map_err(sql)? != 0,
                        upstream_service_id: r.get(9).map_err(sql)?,
                        state: r.get(10).map_err(sql)?,
                        attempts: int(r.get(11).map_err(sql)?, what("attempts"))?,
                        last_error: r.get(12).map_err(sql)?,
                        created_ms: r.get(13).map_err(sql)?,
                        updated_ms: r.get(14).map_err(sql)?,
                        events: r.get(15).map_err(sql)?,
                        module: r.get(16).map_err(sql)?,
                        fields: json(&fields, what("fields"))?,
                        expires_on: expires
                            .map(|d| {
                                time::Date::parse(&d, DATE).map_err(|_| {
                                    StoreError::Invalid(format!(
                                        "{}: `{d}` is not a date",
                                        what("expires_on")
                                    ))
                                })
                            })
                            .transpose()?,
                        upstream_status: r.get(19).map_err(sql)?,
                        waiting: r.get(20).map_err(sql)?,
                        sending: r.get::<_, i64>(21).map_err(sql)? != 0,
                        id,
                    })
                },
            )?,
            transitions: all(
                conn,
                "SELECT order_id, event, from_state, to_state, at_ms, actor, note, error,
                     service_id
                 FROM order_transitions ORDER BY order_id, event",
                |r| {
                    Ok(TransitionRow {
                        order_id: r.get(0).map_err(sql)?,
                        event: r.get(1).map_err(sql)?,
                        from_state: r.get(2).map_err(sql)?,
                        to_state: r.get(3).map_err(sql)?,
                        at_ms: r.get(4).map_err(sql)?,
                        actor: r.get(5).map_err(sql)?,
                        note: r.get(6).map_err(sql)?,
                        error: r.get(7).map_err(sql)?,
                        service_id: r.get(8).map_err(sql)?,
                    })
                },
            )?,
            calls: all(
                conn,
                "SELECT order_id, event, at_ms, func, params, http_status, duration_ms, outcome,
                     detail
                 FROM upstream_calls ORDER BY order_id, event",
                |r| {
                    let order_id: String = r.get(0).map_err(sql)?;
                    let event: i64 = r.get(1).map_err(sql)?;
                    let what = format!("order {order_id}, upstream call {event}");
                    let params: String = r.get(4).map_err(sql)?;
                    let status: Option<i64> = r.get(5).map_err(sql)?;
                    Ok(CallRow {
                        at_ms: r.get(2).map_err(sql)?,
                        func: r.get(3).map_err(sql)?,
                        params: json(&params, &what)?,
                        http_status: status.map(|s| int(s, &what)).transpose()?,
                        duration_ms: r.get(6).map_err(sql)?,
                        outcome: r.get(7).map_err(sql)?,
                        detail: r.get(8).map_err(sql)?,
                        order_id,
                        event,
                    })
                },
            )?,
            operations: all(
                conn,
                "SELECT id, order_id, kind, idem_key, request, state, result, error, actor,
                     settled_by, created_ms, updated_ms
                 FROM operations ORDER BY id",
                |r| {
                    let id: i64 = r.get(0).map_err(sql)?;
                    let what = format!("operation {id}");
                    let request: String = r.get(4).map_err(sql)?;
                    let result: Option<String> = r.get(6).map_err(sql)?;
                    Ok(OperationRow {
                        id,
                        order_id: r.get(1).map_err(sql)?,
                        kind: r.get(2).map_err(sql)?,
                        idem_key: r.get(3).map_err(sql)?,
                        request: json(&request, &what)?,
                        state: r.get(5).map_err(sql)?,
                        result: result.map(|t| json(&t, &what)).transpose()?,
                        error: r.get(7).map_err(sql)?,
                        actor: r.get(8).map_err(sql)?,
                        settled_by: r.get(9).map_err(sql)?,
                        created_ms: r.get(10).map_err(sql)?,
                        updated_ms: r.get(11).map_err(sql)?,
                    })
                },
            )?,
            events: all(
                conn,
                "SELECT id, kind, at_ms, order_id, data, dedupe, delivered_ms, attempts,
                     next_attempt_ms, last_error
                 FROM events ORDER BY id",
                |r| {
                    let id: i64 = r.get(0).map_err(sql)?;
                    let what = format!("event {id}");
                    let data: String = r.get(4).map_err(sql)?;
                    Ok(EventRow {
                        id,
                        kind: r.get(1).map_err(sql)?,
                        at_ms: r.get(2).map_err(sql)?,
                        order_id: r.get(3).map_err(sql)?,
                        data: json(&data, &what)?,
                        dedupe: r.get(5).map_err(sql)?,
                        delivered_ms: r.get(6).map_err(sql)?,
                        attempts: int(r.get(7).map_err(sql)?, &what)?,
                        next_attempt_ms: r.get(8).map_err(sql)?,
                        last_error: r.get(9).map_err(sql)?,
                    })
                },
            )?,
            costs: all(
                conn,
                "SELECT tariff_id, period_months, amount_e4, currency FROM upstream_costs",
                |r| {
                    Ok((
                        r.get(0).map_err(sql)?,
                        int(r.get(1).map_err(sql)?, "an upstream cost's period")?,
                        r.get(2).map_err(sql)?,
                        r.get(3).map_err(sql)?,
                    ))
                },
            )?,
            tariffs: all(
                conn,
                "SELECT position, tariff_id, intname, additionintname, name, trial
                 FROM upstream_tariffs ORDER BY position",
                |r| {
                    Ok((
                        r.get(0).map_err(sql)?,
                        r.get(1).map_err(sql)?,
                        r.get(2).map_err(sql)?,
                        r.get(3).map_err(sql)?,
                        r.get(4).map_err(sql)?,
                        r.get::<_, i64>(5).map_err(sql)? != 0,
                    ))
                },
            )?,
            ..Rows::default()
        };
        rows.fetched_ms = all(
            conn,
            "SELECT fetched_ms FROM upstream_costs_fetch WHERE id = 1",
            |r| r.get(0).map_err(sql),
        )?
        .pop();
        rows.balance = all(
            conn,
            "SELECT amount_e4, currency, read_ms FROM upstream_balance WHERE id = 1",
            |r| {
                Ok((
                    r.get(0).map_err(sql)?,
                    r.get(1).map_err(sql)?,
                    r.get(2).map_err(sql)?,
                ))
            },
        )?
        .pop();
        Ok(rows)
    }

    /// Inserts everything into the (empty) PostgreSQL database, in the caller's transaction.
    async fn write(&self, tx: &Transaction<'_>) -> Result<Copied, StoreError> {
        // No host writes while the copy runs; then the target must be empty.
        tx.batch_execute(
            "LOCK TABLE orders, events, upstream_costs_fetch, upstream_balance
             IN EXCLUSIVE MODE",
        )
        .await
        .map_err(db)?;
        let used = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM orders) OR EXISTS (SELECT 1 FROM events)
                     OR EXISTS (SELECT 1 FROM upstream_costs_fetch)
                     OR EXISTS (SELECT 1 FROM upstream_balance)",
                &[],
            )
            .await
            .map_err(db)?;
        if super::get::<bool>(&used, 0)? {
            return Err(StoreError::Invalid(
                "the PostgreSQL database already holds orders, events or prices: migrate into \
                 an empty one"
                    .to_owned(),
            ));
        }
        let insert = tx
            .prepare(
                "INSERT INTO orders (id, licence_id, licence_ip, tariff_id, service_name,
                     price_e4, currency, period_months, autoprolong, upstream_service_id, state,
                     attempts, last_error, created_ms, updated_ms, events, module, fields,
                     expires_on, upstream_status, waiting, sending)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                     $17, $18, $19, $20, $21, $22)",
            )
            .await
            .map_err(db)?;
        for o in &self.orders {
            tx.execute(
                &insert,
                &[
                    &o.id,
                    &o.licence_id,
                    &o.licence_ip,
                    &o.tariff_id,
                    &o.service_name,
                    &o.price_e4,
                    &o.currency,
                    &o.period_months,
                    &o.autoprolong,
                    &o.upstream_service_id,
                    &o.state,
                    &o.attempts,
                    &o.last_error,
                    &o.created_ms,
                    &o.updated_ms,
                    &o.events,
                    &o.module,
                    &o.fields,
                    &o.expires_on,
                    &o.upstream_status,
                    &o.waiting,
                    &o.sending,
                ],
            )
            .await
            .map_err(|e| context(e, &format!("order {}", o.id)))?;
        }
        let insert = tx
            .prepare(
                "INSERT INTO order_transitions (order_id, event, from_state, to_state, at_ms,
                     actor, note, error, service_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .await
            .map_err(db)?;
        for t in &self.transitions {
            tx.execute(
                &insert,
                &[
                    &t.order_id,
                    &t.event,
                    &t.from_state,
                    &t.to_state,
                    &t.at_ms,
                    &t.actor,
                    &t.note,
                    &t.error,
                    &t.service_id,
                ],
            )
            .await
            .map_err(|e| context(e, &format!("order {}, event {}", t.order_id, t.event)))?;
        }
        let insert = tx
            .prepare(
                "INSERT INTO upstream_calls (order_id, event, at_ms, func, params, http_status,
                     duration_ms, outcome, detail)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .await
            .map_err(db)?;
        for c in &self.calls {
            tx.execute(
                &insert,
                &[
                    &c.order_id,
                    &c.event,
                    &c.at_ms,
                    &c.func,
                    &c.params,
                    &c.http_status,
                    &c.duration_ms,
                    &c.outcome,
                    &c.detail,
                ],
            )
            .await
            .map_err(|e| context(e, &format!("order {}, call {}", c.order_id, c.event)))?;
        }
        let insert = tx
            .prepare(
                "INSERT INTO operations (id, order_id, kind, idem_key, request, state, result,
                     error, actor, settled_by, created_ms, updated_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .await
            .map_err(db)?;
        for op in &self.operations {
            tx.execute(
                &insert,
                &[
                    &op.id,
                    &op.order_id,
                    &op.kind,
                    &op.idem_key,
                    &op.request,
                    &op.state,
                    &op.result,
                    &op.error,
                    &op.actor,
                    &op.settled_by,
                    &op.created_ms,
                    &op.updated_ms,
                ],
            )
            .await
            .map_err(|e| context(e, &format!("operation {}", op.id)))?;
        }
        let insert = tx
            .prepare(
                "INSERT INTO events (id, kind, at_ms, order_id, data, dedupe, delivered_ms,
                     attempts, next_attempt_ms, last_error)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .await
            .map_err(db)?;
        for ev in &self.events {
            tx.execute(
                &insert,
                &[
                    &ev.id,
                    &ev.kind,
                    &ev.at_ms,
                    &ev.order_id,
                    &ev.data,
                    &ev.dedupe,
                    &ev.delivered_ms,
                    &ev.attempts,
                    &ev.next_attempt_ms,
                    &ev.last_error,
                ],
            )
            .await
            .map_err(|e| context(e, &format!("event {}", ev.id)))?;
        }
        // New operations and events continue after the copied IDs.
        for table in ["operations", "events"] {
            tx.execute(
                &format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', 'id'),
                         COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
                ),
                &[],
            )
            .await
            .map_err(db)?;
        }
        for (tariff, period, amount, currency) in &self.costs {
            tx.execute(
                "INSERT INTO upstream_costs (tariff_id, period_months, amount_e4, currency)
                 VALUES ($1, $2, $3, $4)",
                &[tariff, period, amount, currency],
            )
            .await
            .map_err(|e| context(e, &format!("the upstream cost of tariff {tariff}")))?;
        }
        for (position, tariff, intname, addition, name, trial) in &self.tariffs {
            tx.execute(
                "INSERT INTO upstream_tariffs
                     (position, tariff_id, intname, additionintname, name, trial)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[position, tariff, intname, addition, name, trial],
            )
            .await
            .map_err(|e| context(e, &format!("upstream tariff {tariff}")))?;
        }
        if let Some(fetched) = self.fetched_ms {
            tx.execute(
                "INSERT INTO upstream_costs_fetch (id, fetched_ms) VALUES (1, $1)",
                &[&fetched],
            )
            .await
            .map_err(db)?;
        }
        if let Some((amount, currency, read)) = &self.balance {
            tx.execute(
                "INSERT INTO upstream_balance (id, amount_e4, currency, read_ms)
                 VALUES (1, $1, $2, $3)",
                &[amount, currency, read],
            )
            .await
            .map_err(db)?;
        }
        let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        Ok(Copied {
            orders: count(self.orders.len()),
            transitions: count(self.transitions.len()),
            upstream_calls: count(self.calls.len()),
            operations: count(self.operations.len()),
            events: count(self.events.len()),
            upstream_costs: count(self.costs.len()),
            upstream_tariffs: count(self.tariffs.len()),
            balance: self.balance.is_some(),
        })
    }
}

/// A refused insert, naming the row.
fn context(e: tokio_postgres::Error, row: &str) -> StoreError {
    match db(e) {
        StoreError::Database(m) => StoreError::Database(format!("{row}: {m}")),
        e => e,
    }
}

/// How SQLite stores dates.
const DATE: &[time::format_description::BorrowedFormatItem<'_>] =
    time::macros::format_description!("[year]-[month]-[day]");
