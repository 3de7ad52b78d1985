//! The SQLite backend of [`OrderStore`] and [`CostStore`]: one database file, WAL journal,
//! schema migrations tracked in `PRAGMA user_version`.
//!
//! One connection behind a mutex serves a host; several processes may open the same file, and
//! every write runs in a `BEGIN IMMEDIATE` transaction (the write lock is taken up front, waiting
//! up to [`BUSY_TIMEOUT`]), so a compare-and-set is never split by another writer. Commits are
//! `synchronous = FULL`: a transition reported done survives a power cut, not just a crash.
//!
//! Money is stored as INTEGER ten-thousandths plus the currency as TEXT; timestamps as INTEGER
//! UNIX milliseconds; states by their [`OrderState::as_str`] names.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, Type, ValueRef};
use rusqlite::{
    Connection, ErrorCode, OptionalExtension, Row, ToSql, Transaction, TransactionBehavior,
};

mod events;
mod operations;

use std::collections::BTreeMap;

use super::events::EventKind;
use super::store::{
    Amendment, CallOutcome, Change, CostStore, Created, HistoryEntry, Interrupted, ListFilter,
    MAX_LIST_LIMIT, OrderStore, SendMarker, StoreError, TransitionRecord, UpstreamCall,
    UpstreamCallRecord, check_costs, checked_change,
};
use super::{NewOrder, Order, OrderFields, OrderId, OrderState};
use crate::catalogue::{UpstreamPrices, UpstreamTariff};
use crate::money::{Money, Months, UpstreamCost};

/// How long a write waits for another connection's write lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The schema, one step per version: step `i` takes the database from version `i` to `i + 1`.
/// A shipped step is never edited; a change is a new step.
const MIGRATIONS: &[&str] = &[
    // 1: orders, their transitions and their upstream calls.
    "CREATE TABLE orders (
        seq                 INTEGER PRIMARY KEY,
        id                  TEXT NOT NULL UNIQUE,
        licence_id          TEXT NOT NULL,
        licence_ip          TEXT,
        tariff_id           INTEGER NOT NULL CHECK (tariff_id >= 0),
        service_name        TEXT NOT NULL,
        price_e4            INTEGER NOT NULL CHECK (price_e4 >= 0),
        currency            TEXT NOT NULL CHECK (length(currency) = 3),
        period_months       INTEGER NOT NULL CHECK (period_months > 0),
        autoprolong         INTEGER NOT NULL CHECK (autoprolong IN (0, 1)),
        upstream_service_id TEXT,
        state               TEXT NOT NULL CHECK (state IN ('new', 'paid', 'placing', 'placed',
                                'failed', 'in_doubt', 'cancelled', 'removed')),
        attempts            INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
        last_error          TEXT,
        created_ms          INTEGER NOT NULL,
        updated_ms          INTEGER NOT NULL,
        events              INTEGER NOT NULL DEFAULT 0
    );
    CREATE UNIQUE INDEX orders_one_new_per_licence_tariff
        ON orders (licence_id, tariff_id) WHERE state = 'new';
    CREATE INDEX orders_by_state ON orders (state, seq);
    CREATE INDEX orders_by_licence ON orders (licence_id, seq);
    CREATE TABLE order_transitions (
        order_id    TEXT NOT NULL REFERENCES orders (id),
        event       INTEGER NOT NULL,
        from_state  TEXT,
        to_state    TEXT NOT NULL,
        at_ms       INTEGER NOT NULL,
        actor       TEXT NOT NULL,
        note        TEXT,
        error       TEXT,
        service_id  TEXT,
        PRIMARY KEY (order_id, event)
    );
    CREATE TABLE upstream_calls (
        order_id     TEXT NOT NULL REFERENCES orders (id),
        event        INTEGER NOT NULL,
        at_ms        INTEGER NOT NULL,
        func         TEXT NOT NULL,
        params       TEXT NOT NULL,
        http_status  INTEGER,
        duration_ms  INTEGER NOT NULL,
        outcome      TEXT NOT NULL CHECK (outcome IN ('succeeded', 'refused', 'not_sent',
                         'unknown')),
        detail       TEXT NOT NULL,
        PRIMARY KEY (order_id, event)
    );",
    // 2: the upstream costs last fetched, and when (one row, once fetched).
    "CREATE TABLE upstream_costs (
        tariff_id      INTEGER NOT NULL CHECK (tariff_id >= 0),
        period_months  INTEGER NOT NULL CHECK (period_months > 0),
        amount_e4      INTEGER NOT NULL CHECK (amount_e4 >= 0),
        currency       TEXT NOT NULL CHECK (length(currency) = 3),
        PRIMARY KEY (tariff_id, period_months)
    );
    CREATE TABLE upstream_costs_fetch (
        id          INTEGER PRIMARY KEY CHECK (id = 1),
        fetched_ms  INTEGER NOT NULL
    );",
    // 3: upstream prices in every currency upstream lists, and its tariffs (names, trial).
    "CREATE TABLE upstream_costs_v3 (
        tariff_id      INTEGER NOT NULL CHECK (tariff_id >= 0),
        period_months  INTEGER NOT NULL CHECK (period_months > 0),
        amount_e4      INTEGER NOT NULL CHECK (amount_e4 >= 0),
        currency       TEXT NOT NULL CHECK (length(currency) = 3),
        PRIMARY KEY (tariff_id, period_months, currency)
    );
    INSERT INTO upstream_costs_v3 SELECT tariff_id, period_months, amount_e4, currency
        FROM upstream_costs;
    DROP TABLE upstream_costs;
    ALTER TABLE upstream_costs_v3 RENAME TO upstream_costs;
    CREATE TABLE upstream_tariffs (
        position         INTEGER NOT NULL PRIMARY KEY,
        tariff_id        INTEGER NOT NULL UNIQUE CHECK (tariff_id >= 0),
        intname          TEXT NOT NULL,
        additionintname  TEXT NOT NULL,
        name             TEXT NOT NULL,
        trial            INTEGER NOT NULL CHECK (trial IN (0, 1))
    );",
    // 4: the module's life after the sale: the Buy's raw `module`, order fields, the expiry
    // date, the upstream status, why a paid order waits, the "about to send" mark, the
    // `suspended` state; operations on placed modules, the events outbox, the balance. A new
    // unpaid order is shared only by identical Buys (licence, IP, tariff, period).
    "CREATE TABLE orders_v4 (
        seq                 INTEGER PRIMARY KEY,
        id                  TEXT NOT NULL UNIQUE,
        licence_id          TEXT NOT NULL,
        licence_ip          TEXT,
        tariff_id           INTEGER NOT NULL CHECK (tariff_id >= 0),
        service_name        TEXT NOT NULL,
        price_e4            INTEGER NOT NULL CHECK (price_e4 >= 0),
        currency            TEXT NOT NULL CHECK (length(currency) = 3),
        period_months       INTEGER NOT NULL CHECK (period_months > 0),
        autoprolong         INTEGER NOT NULL CHECK (autoprolong IN (0, 1)),
        upstream_service_id TEXT,
        state               TEXT NOT NULL CHECK (state IN ('new', 'paid', 'placing', 'placed',
                                'suspended', 'failed', 'in_doubt', 'cancelled', 'removed')),
        attempts            INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
        last_error          TEXT,
        created_ms          INTEGER NOT NULL,
        updated_ms          INTEGER NOT NULL,
        events              INTEGER NOT NULL DEFAULT 0,
        module              TEXT,
        fields              TEXT NOT NULL DEFAULT '{}',
        expires_on          TEXT,
        upstream_status     TEXT,
        waiting             TEXT,
        sending             INTEGER NOT NULL DEFAULT 0 CHECK (sending IN (0, 1))
    );
    INSERT INTO orders_v4 (seq, id, licence_id, licence_ip, tariff_id, service_name, price_e4,
            currency, period_months, autoprolong, upstream_service_id, state, attempts,
            last_error, created_ms, updated_ms, events)
        SELECT seq, id, licence_id, licence_ip, tariff_id, service_name, price_e4, currency,
            period_months, autoprolong, upstream_service_id, state, attempts, last_error,
            created_ms, updated_ms, events
        FROM orders;
    DROP TABLE orders;
    ALTER TABLE orders_v4 RENAME TO orders;
    CREATE UNIQUE INDEX orders_one_new_per_buy
        ON orders (licence_id, tariff_id, COALESCE(licence_ip, ''), period_months)
        WHERE state = 'new';
    CREATE INDEX orders_by_state ON orders (state, seq);
    CREATE INDEX orders_by_licence ON orders (licence_id, seq);
    CREATE INDEX orders_by_service ON orders (upstream_service_id);
    CREATE INDEX orders_by_expiry ON orders (expires_on) WHERE expires_on IS NOT NULL;
    CREATE TABLE operations (
        id             INTEGER PRIMARY KEY,
        order_id       TEXT NOT NULL REFERENCES orders (id),
        kind           TEXT NOT NULL CHECK (kind IN ('renew', 'suspend', 'resume', 'remove',
                           'rebind')),
        idem_key       TEXT,
        request        TEXT NOT NULL,
        state          TEXT NOT NULL CHECK (state IN ('pending', 'sending', 'done', 'failed',
                           'in_doubt')),
        result         TEXT,
        error          TEXT,
        actor          TEXT NOT NULL,
        settled_by     TEXT,
        created_ms     INTEGER NOT NULL,
        updated_ms     INTEGER NOT NULL
    );
    CREATE UNIQUE INDEX operations_by_key ON operations (order_id, idem_key)
        WHERE idem_key IS NOT NULL;
    CREATE UNIQUE INDEX operations_one_open ON operations (order_id)
        WHERE state IN ('pending', 'sending', 'in_doubt');
    CREATE INDEX operations_by_state ON operations (state, id);
    CREATE TABLE events (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        kind            TEXT NOT NULL,
        at_ms           INTEGER NOT NULL,
        order_id        TEXT,
        data            TEXT NOT NULL,
        dedupe          TEXT UNIQUE,
        delivered_ms    INTEGER,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_ms INTEGER NOT NULL DEFAULT 0,
        last_error      TEXT
    );
    CREATE INDEX events_undelivered ON events (next_attempt_ms, id) WHERE delivered_ms IS NULL;
    CREATE TABLE upstream_balance (
        id          INTEGER PRIMARY KEY CHECK (id = 1),
        amount_e4   INTEGER NOT NULL,
        currency    TEXT NOT NULL CHECK (length(currency) = 3),
        read_ms     INTEGER NOT NULL
    );",
];

/// The schema version this host writes: the number of migration steps.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

const ORDER_COLUMNS: &str = "id, licence_id, licence_ip, tariff_id, service_name, price_e4, \
     currency, period_months, autoprolong, upstream_service_id, state, attempts, last_error, \
     created_ms, updated_ms, module, fields, expires_on, upstream_status, waiting";

/// The column after [`ORDER_COLUMNS`] in queries that add one.
const NEXT_COLUMN: usize = 20;

/// Orders in a SQLite database.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating it and its parent directory if needed) the database at `path`, and
    /// migrates it to [`SCHEMA_VERSION`]. A database from a newer host is refused with
    /// [`StoreError::SchemaTooNew`].
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Database(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let conn = Connection::open(path)
            .map_err(|e| StoreError::Database(format!("cannot open {}: {e}", path.display())))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(db)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(db)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Database(format!(
                "{} cannot use the WAL journal (got `{mode}`)",
                path.display()
            )));
        }
        SqliteStore::prepare(conn)
    }

    /// A private database in memory, for tests and trials. Lost when dropped.
    pub fn open_in_memory() -> Result<SqliteStore, StoreError> {
        SqliteStore::prepare(Connection::open_in_memory().map_err(db)?)
    }

    fn prepare(mut conn: Connection) -> Result<SqliteStore, StoreError> {
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db)?;
        // Migrations rebuild tables that others reference, which SQLite allows only with the
        // foreign keys off; they are checked before the migration commits.
        conn.pragma_update(None, "foreign_keys", false)
            .map_err(db)?;
        migrate(&mut conn)?;
        conn.pragma_update(None, "foreign_keys", true).map_err(db)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
        })
    }

    /// The database's schema version.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        user_version(&self.lock())
    }

    /// The connection. A panic while it was held cannot leave a transaction open (a dropped
    /// rusqlite `Transaction` rolls back), so a poisoned lock is safe to take over.
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction, committed if `f` succeeds.
    fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.in_tx(TransactionBehavior::Immediate, f)
    }

    /// Runs `f` in a read transaction: one consistent snapshot.
    fn read<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.in_tx(TransactionBehavior::Deferred, f)
    }

    fn in_tx<T>(
        &self,
        behavior: TransactionBehavior,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(behavior).map_err(db)?;
        let value = f(&tx)?;
        tx.commit().map_err(db)?;
        Ok(value)
    }
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

fn user_version(conn: &Connection) -> Result<i64, StoreError> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(db)
}

/// Applies the missing migration steps in one transaction.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    migrate_with(conn, MIGRATIONS)
}

/// Applies the missing steps of `steps` (a prefix of [`MIGRATIONS`] in tests, which build
/// databases of older versions this way) in one transaction.
fn migrate_with(conn: &mut Connection, steps: &[&str]) -> Result<(), StoreError> {
    let supported = steps.len() as i64;
    // Checked before taking the write lock too, so a read-only look at a newer database fails
    // with the clear error rather than a lock timeout.
    let found = user_version(conn)?;
    if found > supported {
        return Err(StoreError::SchemaTooNew { found, supported });
    }
    if found == supported {
        return Ok(());
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db)?;
    // Another process may have migrated between the look and the lock.
    let found = user_version(&tx)?;
    if found > supported {
        return Err(StoreError::SchemaTooNew { found, supported });
    }
    if found < 0 {
        return Err(StoreError::Database(format!(
            "the order database has an impossible schema version {found}"
        )));
    }
    for (i, step) in steps.iter().enumerate().skip(found as usize) {
        tx.execute_batch(step)
            .map_err(|e| StoreError::Database(format!("migration {}: {e}", i + 1)))?;
        tx.pragma_update(None, "user_version", i as i64 + 1)
            .map_err(db)?;
    }
    let broken: Option<String> = tx
        .query_row("PRAGMA foreign_key_check", [], |r| r.get(0))
        .optional()
        .map_err(db)?;
    if let Some(table) = broken {
        return Err(StoreError::Database(format!(
            "the migration would leave rows of {table} without their order; nothing was changed"
        )));
    }
    tx.commit().map_err(db)
}

pub(crate) use super::store::now_ms;

fn bad_value(e: impl std::error::Error + Send + Sync + 'static) -> FromSqlError {
    FromSqlError::Other(Box::new(e))
}

impl ToSql for OrderState {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for OrderState {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value.as_str()?.parse().map_err(bad_value)
    }
}

impl ToSql for OrderId {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for OrderId {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        OrderId::parse(value.as_str()?).map_err(bad_value)
    }
}

/// A stored value this host cannot read back.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Unreadable(String);

fn unreadable(idx: usize, what: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(Unreadable(what)))
}

fn order_from_row(row: &Row<'_>) -> rusqlite::Result<Order> {
    let licence_ip = match row.get::<_, Option<String>>(2)? {
        None => None,
        Some(ip) => Some(
            ip.parse()
                .map_err(|_| unreadable(2, format!("`{ip}` is not an IP address")))?,
        ),
    };
    let tariff: i64 = row.get(3)?;
    let fields: String = row.get(16)?;
    Ok(Order {
        id: row.get(0)?,
        licence_id: row.get(1)?,
        licence_ip,
        tariff_id: u64::try_from(tariff)
            .map_err(|_| unreadable(3, format!("negative tariff ID {tariff}")))?,
        service_name: row.get(4)?,
        price: money(row, 5, 6)?,
        period: months(row, 7)?,
        autoprolong: row.get(8)?,
        upstream_service_id: row.get(9)?,
        state: row.get(10)?,
        attempts: row.get(11)?,
        last_error: row.get(12)?,
        created_ms: row.get(13)?,
        updated_ms: row.get(14)?,
        module: row.get(15)?,
        fields: serde_json::from_str(&fields)
            .map_err(|e| unreadable(16, format!("order fields: {e}")))?,
        expires_on: date(row, 17)?,
        upstream_status: row.get(18)?,
        waiting: row.get(19)?,
    })
}

/// Money from an amount column and a currency column.
pub(super) fn money(row: &Row<'_>, amount: usize, currency: usize) -> rusqlite::Result<Money> {
    let units: i64 = row.get(amount)?;
    let code: String = row.get(currency)?;
    Money::from_units(units, &code).map_err(|e| unreadable(amount, e.to_string()))
}

/// A period from a months column.
fn months(row: &Row<'_>, idx: usize) -> rusqlite::Result<Months> {
    Months::new(row.get(idx)?).map_err(|e| unreadable(idx, e.to_string()))
}

/// A date from a `YYYY-MM-DD` column.
fn date(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<time::Date>> {
    let Some(text) = row.get::<_, Option<String>>(idx)? else {
        return Ok(None);
    };
    time::Date::parse(&text, DATE)
        .map(Some)
        .map_err(|_| unreadable(idx, format!("`{text}` is not a date")))
}

/// How dates are stored.
const DATE: &[time::format_description::BorrowedFormatItem<'_>] =
    time::macros::format_description!("[year]-[month]-[day]");

/// A date as stored.
fn date_text(d: time::Date) -> String {
    crate::dates::text(d)
}

fn event_number(idx: usize, value: i64) -> rusqlite::Result<u64> {
    u64::try_from(value).map_err(|_| unreadable(idx, format!("negative event number {value}")))
}

pub(super) fn get_order(tx: &Transaction<'_>, id: &OrderId) -> Result<Order, StoreError> {
    tx.query_row(
        &format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = ?1"),
        [id],
        order_from_row,
    )
    .optional()
    .map_err(db)?
    .ok_or(StoreError::NotFound)
}

fn fields_text(fields: &OrderFields) -> Result<String, StoreError> {
    serde_json::to_string(fields)
        .map_err(|e| StoreError::Database(format!("cannot encode order fields: {e}")))
}

/// The compare-and-set itself — state change, amendment, audit record and announced event —
/// inside the caller's write transaction. `change` has been checked ([`checked_change`]).
pub(super) fn apply_change(
    tx: &Transaction<'_>,
    id: &OrderId,
    from: OrderState,
    to: Option<OrderState>,
    amendment: &Amendment,
    change: &Change,
    now: i64,
) -> Result<Order, StoreError> {
    let state = to.unwrap_or(from);
    let attempts = i64::from(to.is_some_and(|to| Change::counts_attempt(from, to)));
    // A new claim starts without the "about to send" mark.
    let claim = to == Some(OrderState::Placing);
    let (set_ip, ip) = match amendment.licence_ip {
        None => (false, None),
        Some(ip) => (true, ip.map(|ip| ip.to_string())),
    };
    let fields = amendment.fields.as_ref().map(fields_text).transpose()?;
    let (set_expiry, expiry) = match amendment.expires_on {
        None => (false, None),
        Some(d) => (true, d.map(date_text)),
    };
    let (set_status, status) = match &amendment.upstream_status {
        None => (false, None),
        Some(s) => (true, s.clone()),
    };
    let (set_waiting, waiting) = match &amendment.waiting {
        None => (false, None),
        Some(w) => (true, w.clone()),
    };
    let price = amendment.price.as_ref();
    let updated = tx
        .query_row(
            &format!(
                "UPDATE orders SET state = :to, attempts = attempts + :attempts,
                     last_error = COALESCE(:error, last_error),
                     upstream_service_id = COALESCE(:service, upstream_service_id),
                     licence_id = COALESCE(:licence, licence_id),
                     licence_ip = CASE WHEN :set_ip THEN :ip ELSE licence_ip END,
                     fields = COALESCE(:fields, fields),
                     period_months = COALESCE(:period, period_months),
                     price_e4 = COALESCE(:price, price_e4),
                     currency = COALESCE(:currency, currency),
                     expires_on = CASE WHEN :set_expiry THEN :expiry ELSE expires_on END,
                     upstream_status = CASE WHEN :set_status THEN :status ELSE upstream_status END,
                     waiting = CASE WHEN :set_waiting THEN :waiting ELSE waiting END,
                     sending = CASE WHEN :claim THEN 0 ELSE sending END,
                     updated_ms = :now, events = events + 1
                 WHERE id = :id AND state = :from
                 RETURNING {ORDER_COLUMNS}, events"
            ),
            rusqlite::named_params! {
                ":id": id,
                ":from": from,
                ":to": state,
                ":attempts": attempts,
                ":error": change.error,
                ":service": change.service_id,
                ":licence": amendment.licence_id,
                ":set_ip": set_ip,
                ":ip": ip,
                ":fields": fields,
                ":period": amendment.period.map(Months::get),
                ":price": price.map(|p| p.amount.units()),
                ":currency": price.map(|p| p.currency.as_str()),
                ":set_expiry": set_expiry,
                ":expiry": expiry,
                ":set_status": set_status,
                ":status": status,
                ":set_waiting": set_waiting,
                ":waiting": waiting,
                ":claim": claim,
                ":now": now,
            },
            |row| {
                Ok((
                    order_from_row(row)?,
                    event_number(NEXT_COLUMN, row.get(NEXT_COLUMN)?)?,
                ))
            },
        )
        .optional()
        .map_err(|e| match e.sqlite_error_code() {
            // The only constraint a change can break: one `New` order per identical Buy.
            Some(ErrorCode::ConstraintViolation) => StoreError::Invalid(
                "this licence already has the same unpaid order for this module".to_owned(),
            ),
            _ => db(e),
        })?;
    let Some((order, event)) = updated else {
        return Err(not_updated(tx, id)?);
    };
    insert_transition(tx, id, event, Some(from), state, change, now)?;
    let announced = match to {
        Some(to) => change.event.or(EventKind::of_transition(from, to)),
        None => change.event,
    };
    if let Some(kind) = announced {
        let mut data = serde_json::json!({ "order": order });
        if let Some(extra) = &change.event_data {
            data["change"] = extra.clone();
        }
        events::insert(tx, kind, Some(id), &data, None, now)?;
    }
    Ok(order)
}

/// Why a conditional update of the order `id` matched no row: it is absent
/// ([`StoreError::NotFound`]) or in another state ([`StoreError::Conflict`]).
fn not_updated(tx: &Transaction<'_>, id: &OrderId) -> Result<StoreError, StoreError> {
    let current: Option<OrderState> = tx
        .query_row("SELECT state FROM orders WHERE id = ?1", [id], |r| r.get(0))
        .optional()
        .map_err(db)?;
    Ok(match current {
        None => StoreError::NotFound,
        Some(current) => StoreError::Conflict { current },
    })
}

fn insert_transition(
    tx: &Transaction<'_>,
    id: &OrderId,
    event: u64,
    from: Option<OrderState>,
    to: OrderState,
    change: &Change,
    now: i64,
) -> Result<(), StoreError> {
    let event = i64::try_from(event).map_err(|_| StoreError::Database("event overflow".into()))?;
    tx.execute(
        "INSERT INTO order_transitions
             (order_id, event, from_state, to_state, at_ms, actor, note, error, service_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        rusqlite::params![
            id,
            event,
            from,
            to,
            now,
            change.actor,
            change.note,
            change.error,
            change.service_id
        ],
    )
    .map_err(db)?;
    Ok(())
}

/// A new order ID: the time now and ten random bytes from SQLite.
fn new_id(tx: &Transaction<'_>, now: i64) -> Result<OrderId, StoreError> {
    let random: Vec<u8> = tx
        .query_row("SELECT randomblob(10)", [], |r| r.get(0))
        .map_err(db)?;
    let entropy: [u8; 10] = random
        .try_into()
        .map_err(|_| StoreError::Database("randomblob gave the wrong length".into()))?;
    Ok(OrderId::from_parts(
        u64::try_from(now).unwrap_or(0),
        entropy,
    ))
}

/// Inserts an order in `state` with its first history record.
fn insert_order(
    tx: &Transaction<'_>,
    new: &NewOrder,
    state: OrderState,
    extra: (Option<&str>, Option<time::Date>),
    change: &Change,
    now: i64,
) -> Result<OrderId, StoreError> {
    let tariff = i64::try_from(new.tariff_id)
        .map_err(|_| StoreError::Invalid("tariff ID too large".to_owned()))?;
    let id = new_id(tx, now)?;
    let (service_id, expires_on) = extra;
    tx.execute(
        "INSERT INTO orders (id, licence_id, licence_ip, tariff_id, service_name,
             price_e4, currency, period_months, autoprolong, state, attempts,
             created_ms, updated_ms, events, module, fields, upstream_service_id, expires_on)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 0, ?11, ?11, 1, ?12, ?13, ?14, ?15)",
        rusqlite::params![
            id,
            new.licence_id,
            new.licence_ip.map(|ip| ip.to_string()),
            tariff,
            new.service_name,
            new.price.amount.units(),
            new.price.currency.as_str(),
            new.period.get(),
            new.autoprolong,
            state,
            now,
            new.module,
            fields_text(&new.fields)?,
            service_id,
            expires_on.map(date_text),
        ],
    )
    .map_err(db)?;
    insert_transition(tx, &id, 1, None, state, change, now)?;
    Ok(id)
}

impl OrderStore for SqliteStore {
    fn create_or_reuse_new(&self, new: &NewOrder) -> Result<Created, StoreError> {
        new.validate()
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        let tariff = i64::try_from(new.tariff_id)
            .map_err(|_| StoreError::Invalid("tariff ID too large".to_owned()))?;
        self.write(|tx| {
            let existing = tx
                .query_row(
                    &format!(
                        "SELECT {ORDER_COLUMNS} FROM orders
                         WHERE licence_id = ?1 AND tariff_id = ?2
                             AND COALESCE(licence_ip, '') = ?3 AND period_months = ?4
                             AND state = 'new'"
                    ),
                    rusqlite::params![
                        new.licence_id,
                        tariff,
                        new.licence_ip.map(|ip| ip.to_string()).unwrap_or_default(),
                        new.period.get()
                    ],
                    order_from_row,
                )
                .optional()
                .map_err(db)?;
            if let Some(order) = existing {
                return Ok(Created {
                    order,
                    reused: true,
                });
            }
            let now = now_ms();
            let id = insert_order(
                tx,
                new,
                OrderState::New,
                (None, None),
                &Change::by("create"),
                now,
            )?;
            Ok(Created {
                order: get_order(tx, &id)?,
                reused: false,
            })
        })
    }

    fn get(&self, id: &OrderId) -> Result<Order, StoreError> {
        self.read(|tx| get_order(tx, id))
    }

    fn list(&self, filter: &ListFilter) -> Result<Vec<Order>, StoreError> {
        let limit = i64::from(filter.limit.min(MAX_LIST_LIMIT));
        let tariff = filter
            .tariff_id
            .map(|t| i64::try_from(t).unwrap_or(i64::MAX));
        self.read(|tx| {
            let mut stmt = tx
                .prepare(&format!(
                    "SELECT {ORDER_COLUMNS} FROM orders
                     WHERE (:state IS NULL OR state = :state)
                         AND (:licence IS NULL OR licence_id = :licence)
                         AND (:tariff IS NULL OR tariff_id = :tariff)
                         AND (:expires IS NULL OR expires_on <= :expires)
                         AND (:from IS NULL OR created_ms >= :from)
                         AND (:to IS NULL OR created_ms < :to)
                     ORDER BY created_ms DESC, seq DESC LIMIT :limit OFFSET :offset"
                ))
                .map_err(db)?;
            let rows = stmt
                .query_map(
                    rusqlite::named_params! {
                        ":state": filter.state,
                        ":licence": filter.licence_id,
                        ":tariff": tariff,
                        ":expires": filter.expires_by.map(date_text),
                        ":from": filter.created_from_ms,
                        ":to": filter.created_to_ms,
                        ":limit": limit,
                        ":offset": i64::from(filter.offset),
                    },
                    order_from_row,
                )
                .map_err(db)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db)
        })
    }

    fn change(
        &self,
        id: &OrderId,
        from: OrderState,
        to: Option<OrderState>,
        amendment: &Amendment,
        change: Change,
    ) -> Result<Order, StoreError> {
        let change = checked_change(from, to, amendment, change)?;
        self.write(|tx| apply_change(tx, id, from, to, amendment, &change, now_ms()))
    }

    fn import_placed(
        &self,
        new: &NewOrder,
        service_id: &str,
        expires_on: Option<time::Date>,
        actor: &str,
    ) -> Result<Order, StoreError> {
        new.validate()
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        let change = Change::by(actor)
            .with_service_id(service_id)
            .with_note("imported: it exists upstream, sold before this host kept it")
            .checked(OrderState::Paid, OrderState::Placed)?;
        self.write(|tx| {
            let taken: Option<OrderId> = tx
                .query_row(
                    "SELECT id FROM orders WHERE upstream_service_id = ?1 AND state != 'removed'",
                    [service_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db)?;
            if let Some(other) = taken {
                return Err(StoreError::Invalid(format!(
                    "service {service_id} is already order {other}"
                )));
            }
            let now = now_ms();
            let id = insert_order(
                tx,
                new,
                OrderState::Placed,
                (Some(service_id), expires_on),
                &change,
                now,
            )?;
            get_order(tx, &id)
        })
    }

    fn counts(&self) -> Result<BTreeMap<OrderState, u64>, StoreError> {
        self.read(|tx| {
            let mut stmt = tx
                .prepare("SELECT state, COUNT(*) FROM orders GROUP BY state")
                .map_err(db)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((r.get::<_, OrderState>(0)?, r.get::<_, i64>(1)?))
                })
                .map_err(db)?;
            rows.map(|r| r.map(|(s, n)| (s, u64::try_from(n).unwrap_or(0))))
                .collect::<Result<_, _>>()
                .map_err(db)
        })
    }

    /// The database file is still where it was opened, and a write transaction can begin now
    /// (within the busy time-out).
    fn check_writable(&self) -> Result<(), StoreError> {
        let file = self.lock().path().map(str::to_owned).unwrap_or_default();
        if !file.is_empty() && !Path::new(&file).exists() {
            return Err(StoreError::Database(format!("{file} is gone")));
        }
        self.write(|_| Ok(()))
    }

    fn mark_sending(&self, marker: &SendMarker) -> Result<(), StoreError> {
        self.write(|tx| {
            let now = now_ms();
            let changed = match marker {
                SendMarker::Placement(id) => tx
                    .execute(
                        "UPDATE orders SET sending = 1, updated_ms = ?2
                         WHERE id = ?1 AND state = 'placing'",
                        rusqlite::params![id, now],
                    )
                    .map_err(db)?,
                SendMarker::Operation(id) => tx
                    .execute(
                        "UPDATE operations SET state = 'sending', updated_ms = ?2
                         WHERE id = ?1 AND state IN ('pending', 'sending')",
                        rusqlite::params![id, now],
                    )
                    .map_err(db)?,
            };
            if changed == 1 {
                Ok(())
            } else {
                Err(StoreError::Invalid(
                    "the claim on this order or operation was lost".to_owned(),
                ))
            }
        })
    }

    fn record_upstream_call(
        &self,
        order_id: &OrderId,
        call: UpstreamCall,
    ) -> Result<(), StoreError> {
        let call = call.sanitized();
        let params = serde_json::to_string(&call.params)
            .map_err(|e| StoreError::Database(format!("cannot encode parameters: {e}")))?;
        let duration = i64::try_from(call.duration_ms).unwrap_or(i64::MAX);
        self.write(|tx| {
            let event: Option<i64> = tx
                .query_row(
                    "UPDATE orders SET events = events + 1 WHERE id = ?1 RETURNING events",
                    [order_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db)?;
            let event = event.ok_or(StoreError::NotFound)?;
            tx.execute(
                "INSERT INTO upstream_calls (order_id, event, at_ms, func, params, http_status,
                     duration_ms, outcome, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                rusqlite::params![
                    order_id,
                    event,
                    now_ms(),
                    call.func,
                    params,
                    call.http_status,
                    duration,
                    call.outcome.as_str(),
                    call.detail
                ],
            )
            .map_err(db)?;
            Ok(())
        })
    }

    fn history(&self, id: &OrderId) -> Result<Vec<HistoryEntry>, StoreError> {
        self.read(|tx| {
            get_order(tx, id)?;
            let mut entries = Vec::new();
            let mut stmt = tx
                .prepare(
                    "SELECT event, from_state, to_state, at_ms, actor, note, error, service_id
                     FROM order_transitions WHERE order_id = ?1",
                )
                .map_err(db)?;
            let transitions = stmt
                .query_map([id], |r| {
                    Ok(HistoryEntry::Transition(TransitionRecord {
                        event: event_number(0, r.get(0)?)?,
                        from: r.get(1)?,
                        to: r.get(2)?,
                        at_ms: r.get(3)?,
                        actor: r.get(4)?,
                        note: r.get(5)?,
                        error: r.get(6)?,
                        service_id: r.get(7)?,
                    }))
                })
                .map_err(db)?;
            for t in transitions {
                entries.push(t.map_err(db)?);
            }
            let mut stmt = tx
                .prepare(
                    "SELECT event, at_ms, func, params, http_status, duration_ms, outcome, detail
                     FROM upstream_calls WHERE order_id = ?1",
                )
                .map_err(db)?;
            let calls = stmt
                .query_map([id], |r| {
                    let params: String = r.get(3)?;
                    let params: Vec<(String, String)> = serde_json::from_str(&params)
                        .map_err(|e| unreadable(3, format!("parameters: {e}")))?;
                    let outcome: String = r.get(6)?;
                    let outcome = CallOutcome::from_name(&outcome)
                        .ok_or_else(|| unreadable(6, format!("unknown outcome `{outcome}`")))?;
                    let duration: i64 = r.get(5)?;
                    Ok(HistoryEntry::UpstreamCall(UpstreamCallRecord {
                        event: event_number(0, r.get(0)?)?,
                        at_ms: r.get(1)?,
                        call: UpstreamCall {
                            func: r.get(2)?,
                            params,
                            http_status: r.get(4)?,
                            duration_ms: u64::try_from(duration).unwrap_or(0),
                            outcome,
                            detail: r.get(7)?,
                        },
                    }))
                })
                .map_err(db)?;
            for c in calls {
                entries.push(c.map_err(db)?);
            }
            entries.sort_by_key(HistoryEntry::event);
            Ok(entries)
        })
    }

    fn orders_to_resume(&self) -> Result<Vec<Order>, StoreError> {
        self.read(|tx| {
            let mut stmt = tx
                .prepare(&format!(
                    "SELECT {ORDER_COLUMNS} FROM orders
                     WHERE state IN ('paid', 'placing') ORDER BY seq"
                ))
                .map_err(db)?;
            let rows = stmt.query_map([], order_from_row).map_err(db)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db)
        })
    }

    fn recover_interrupted(&self) -> Result<Interrupted, StoreError> {
        let doubt = Change::by("startup")
            .with_error(
                "the host stopped while placing this order; it may or may not exist upstream",
            )
            .checked(OrderState::Placing, OrderState::InDoubt)?;
        let requeue = Change::by("startup")
            .with_error("the host stopped before sending this order; nothing reached upstream")
            .with_note("queued again")
            .checked(OrderState::Placing, OrderState::Paid)?;
        self.write(|tx| {
            let placing = {
                let mut stmt = tx
                    .prepare("SELECT id, sending FROM orders WHERE state = 'placing' ORDER BY seq")
                    .map_err(db)?;
                let rows = stmt
                    .query_map([], |r| Ok((r.get::<_, OrderId>(0)?, r.get::<_, bool>(1)?)))
                    .map_err(db)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(db)?
            };
            let now = now_ms();
            let mut found = Interrupted::default();
            let none = Amendment::default();
            for (id, sent) in placing {
                if sent {
                    let order = apply_change(
                        tx,
                        &id,
                        OrderState::Placing,
                        Some(OrderState::InDoubt),
                        &none,
                        &doubt,
                        now,
                    )?;
                    found.in_doubt.push(order);
                } else {
                    let order = apply_change(
                        tx,
                        &id,
                        OrderState::Placing,
                        Some(OrderState::Paid),
                        &none,
                        &requeue,
                        now,
                    )?;
                    found.requeued.push(order);
                }
            }
            let (in_doubt, dropped) = operations::recover(tx, now)?;
            found.operations_in_doubt = in_doubt;
            found.operations_dropped = dropped;
            Ok(found)
        })
    }

    fn purge_abandoned(&self, before_ms: i64) -> Result<u64, StoreError> {
        self.write(|tx| {
            let ids = {
                let mut stmt = tx
                    .prepare(
                        "SELECT id FROM orders o WHERE state = 'cancelled' AND updated_ms < ?1
                         AND NOT EXISTS (SELECT 1 FROM order_transitions t
                                         WHERE t.order_id = o.id AND t.to_state = 'paid')",
                    )
                    .map_err(db)?;
                let rows = stmt
                    .query_map([before_ms], |r| r.get::<_, OrderId>(0))
                    .map_err(db)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(db)?
            };
            for id in &ids {
                for table in ["upstream_calls", "order_transitions", "operations"] {
                    tx.execute(&format!("DELETE FROM {table} WHERE order_id = ?1"), [id])
                        .map_err(db)?;
                }
                tx.execute("DELETE FROM orders WHERE id = ?1", [id])
                    .map_err(db)?;
            }
            Ok(u64::try_from(ids.len()).unwrap_or(0))
        })
    }
}

impl CostStore for SqliteStore {
    fn replace_upstream(&self, prices: &UpstreamPrices) -> Result<(), StoreError> {
        check_costs(&prices.costs)?;
        let tariff_id = |id: u64| {
            i64::try_from(id).map_err(|_| StoreError::Invalid("tariff ID too large".to_owned()))
        };
        self.write(|tx| {
            // The fetch row first: in a database with row locks it serialises replacements.
            tx.execute(
                "INSERT INTO upstream_costs_fetch (id, fetched_ms) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET fetched_ms = excluded.fetched_ms",
                [now_ms()],
            )
            .map_err(db)?;
            tx.execute_batch("DELETE FROM upstream_costs; DELETE FROM upstream_tariffs;")
                .map_err(db)?;
            let mut insert = tx
                .prepare(
                    "INSERT INTO upstream_costs (tariff_id, period_months, amount_e4, currency)
                     VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(db)?;
            for cost in &prices.costs {
                insert
                    .execute(rusqlite::params![
                        tariff_id(cost.tariff_id)?,
                        cost.period.get(),
                        cost.cost.amount.units(),
                        cost.cost.currency.as_str()
                    ])
                    .map_err(db)?;
            }
            let mut insert = tx
                .prepare(
                    "INSERT INTO upstream_tariffs
                         (position, tariff_id, intname, additionintname, name, trial)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (tariff_id) DO NOTHING",
                )
                .map_err(db)?;
            for (position, t) in prices.tariffs.iter().enumerate() {
                insert
                    .execute(rusqlite::params![
                        i64::try_from(position).unwrap_or(i64::MAX),
                        tariff_id(t.tariff_id)?,
                        t.intname,
                        t.additionintname,
                        t.name,
                        t.trial
                    ])
                    .map_err(db)?;
            }
            Ok(())
        })
    }

    fn upstream(&self) -> Result<Option<(UpstreamPrices, i64)>, StoreError> {
        self.read(|tx| {
            let fetched: Option<i64> = tx
                .query_row(
                    "SELECT fetched_ms FROM upstream_costs_fetch WHERE id = 1",
                    [],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db)?;
            let Some(fetched) = fetched else {
                return Ok(None);
            };
            let tariff = |r: &Row<'_>, idx: usize| -> rusqlite::Result<u64> {
                let id: i64 = r.get(idx)?;
                u64::try_from(id).map_err(|_| unreadable(idx, format!("negative tariff ID {id}")))
            };
            let mut stmt = tx
                .prepare(
                    "SELECT tariff_id, period_months, amount_e4, currency FROM upstream_costs
                     ORDER BY tariff_id, period_months, currency",
                )
                .map_err(db)?;
            let costs = stmt
                .query_map([], |r| {
                    Ok(UpstreamCost {
                        tariff_id: tariff(r, 0)?,
                        period: months(r, 1)?,
                        cost: money(r, 2, 3)?,
                    })
                })
                .map_err(db)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db)?;
            let mut stmt = tx
                .prepare(
                    "SELECT tariff_id, intname, additionintname, name, trial FROM upstream_tariffs
                     ORDER BY position",
                )
                .map_err(db)?;
            let tariffs = stmt
                .query_map([], |r| {
                    Ok(UpstreamTariff {
                        tariff_id: tariff(r, 0)?,
                        intname: r.get(1)?,
                        additionintname: r.get(2)?,
                        name: r.get(3)?,
                        trial: r.get(4)?,
                    })
                })
                .map_err(db)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db)?;
            Ok(Some((UpstreamPrices { tariffs, costs }, fetched)))
        })
    }

    fn record_balance(&self, balance: &Money) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO upstream_balance (id, amount_e4, currency, read_ms)
                 VALUES (1, ?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET amount_e4 = excluded.amount_e4,
                     currency = excluded.currency, read_ms = excluded.read_ms",
                rusqlite::params![balance.amount.units(), balance.currency.as_str(), now_ms()],
            )
            .map_err(db)
            .map(drop)
        })
    }

    fn balance(&self) -> Result<Option<(Money, i64)>, StoreError> {
        self.read(|tx| {
            tx.query_row(
                "SELECT amount_e4, currency, read_ms FROM upstream_balance WHERE id = 1",
                [],
                |r| Ok((money(r, 0, 1)?, r.get(2)?)),
            )
            .optional()
            .map_err(db)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};
    use std::thread;

    use super::*;
    use crate::orders::store::EventStore;
    use crate::orders::store::conformance::{self, prices_of, stored_costs};
    use OrderState::*;

    fn memory() -> SqliteStore {
        SqliteStore::open_in_memory().expect("in-memory store")
    }

    fn file(dir: &tempfile::TempDir) -> SqliteStore {
        SqliteStore::open(&dir.path().join("orders.db")).expect("file store")
    }

    #[test]
    fn conformance_in_memory() {
        conformance::create_and_reuse(&memory());
        conformance::invalid_input_is_refused(&memory());
        conformance::transitions_are_checked(&memory());
        conformance::automatic_life_is_recorded(&memory());
        conformance::retries_and_doubt_are_recorded(&memory());
        conformance::listing_and_resuming(&memory());
        conformance::long_texts_are_cut(&memory());
        conformance::amend_rebinds_a_placed_order(&memory());
        conformance::amend_records_a_renewal(&memory());
        conformance::amend_is_a_compare_and_set(&memory());
        conformance::amend_input_is_checked(&memory());
        conformance::operations_are_exclusive_and_keyed(&memory());
        conformance::operations_are_recovered(&memory());
        conformance::events_go_with_their_changes(&memory());
        conformance::lists_counts_imports_and_purges(&memory());
    }

    #[test]
    fn cost_conformance_in_memory() {
        conformance::costs_are_replaced(&memory());
        conformance::invalid_costs_change_nothing(&memory());
    }

    #[test]
    fn conformance_on_a_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        conformance::automatic_life_is_recorded(&file(&dir));
        let dir = tempfile::tempdir().expect("tempdir");
        conformance::listing_and_resuming(&file(&dir));
        let dir = tempfile::tempdir().expect("tempdir");
        conformance::amend_rebinds_a_placed_order(&file(&dir));
        let dir = tempfile::tempdir().expect("tempdir");
        conformance::costs_are_replaced(&file(&dir));
        let dir = tempfile::tempdir().expect("tempdir");
        let reopen = || -> Box<dyn CostStore> { Box::new(file(&dir)) };
        conformance::costs_survive_reopening(&reopen);
    }

    #[test]
    fn usable_as_a_trait_object() {
        let store: Arc<dyn OrderStore> = Arc::new(memory());
        conformance::create_and_reuse(store.as_ref());
    }

    #[test]
    fn racing_claims_have_exactly_one_winner() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("orders.db");
        // Two connections, as two host processes would have: the race is decided by SQLite,
        // not by our mutex.
        let stores = [
            Arc::new(SqliteStore::open(&path).expect("open 1")),
            Arc::new(SqliteStore::open(&path).expect("open 2")),
        ];
        for round in 0..20 {
            let order = conformance::paid(stores[0].as_ref(), &format!("L{round}"), 1);
            let barrier = Arc::new(Barrier::new(4));
            let handles: Vec<_> = (0..4)
                .map(|i| {
                    let store = Arc::clone(&stores[i % 2]);
                    let barrier = Arc::clone(&barrier);
                    let id = order.id.clone();
                    thread::spawn(move || {
                        barrier.wait();
                        store.claim_for_placing(&id)
                    })
                })
                .collect();
            let results: Vec<_> = handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect();
            let winners = results.iter().filter(|r| r.is_ok()).count();
            assert_eq!(winners, 1, "round {round}: {results:?}");
            for r in &results {
                if let Err(e) = r {
                    assert_eq!(*e, StoreError::Conflict { current: Placing });
                }
            }
            let stored = stores[1].get(&order.id).expect("get");
            assert_eq!((stored.state, stored.attempts), (Placing, 1));
            let claims = stores[1]
                .history(&order.id)
                .expect("history")
                .iter()
                .filter(|e| matches!(e, HistoryEntry::Transition(t) if t.to == Placing))
                .count();
            assert_eq!(claims, 1);
        }
    }

    #[test]
    fn racing_redirects_create_one_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("orders.db");
        let stores = [
            Arc::new(SqliteStore::open(&path).expect("open 1")),
            Arc::new(SqliteStore::open(&path).expect("open 2")),
        ];
        let barrier = Arc::new(Barrier::new(6));
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let store = Arc::clone(&stores[i % 2]);
                let barrier = Arc::clone(&barrier);
                thread::spawn(move || {
                    barrier.wait();
                    store.create_or_reuse_new(&conformance::new_order("L1", 7))
                })
            })
            .collect();
        let results: Vec<Created> = handles
            .into_iter()
            .map(|h| h.join().expect("thread").expect("create"))
            .collect();
        assert_eq!(results.iter().filter(|c| !c.reused).count(), 1);
        assert!(results.iter().all(|c| c.order.id == results[0].order.id));
        assert_eq!(
            stores[0].list(&ListFilter::default()).expect("list").len(),
            1
        );
    }

    #[test]
    fn reopening_keeps_everything_and_migrations_are_idempotent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested").join("deeper").join("orders.db");
        let (placed, queued, history) = {
            let store = SqliteStore::open(&path).expect("open");
            assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
            let o = conformance::paid(&store, "L1", 1);
            store.claim_for_placing(&o.id).expect("claim");
            let placed = store
                .transition(
                    &o.id,
                    Placing,
                    Placed,
                    Change::by("worker").with_service_id("42"),
                )
                .expect("place");
            let queued = conformance::paid(&store, "L2", 1);
            (placed, queued, store.history(&o.id).expect("history"))
        };
        for _ in 0..2 {
            let store = SqliteStore::open(&path).expect("reopen");
            assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
            assert_eq!(store.get(&placed.id).expect("get"), placed);
            assert_eq!(store.history(&placed.id).expect("history"), history);
            let resume = store.orders_to_resume().expect("resume");
            assert_eq!(resume, std::slice::from_ref(&queued));
            assert_eq!(store.list(&ListFilter::default()).expect("list").len(), 2);
        }
    }

    #[test]
    fn a_database_of_the_previous_version_is_upgraded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("orders.db");
        let previous = &MIGRATIONS[..MIGRATIONS.len() - 1];
        {
            // A store at the previous version (every step but the last), with rows as the
            // previous version wrote them: a placed order with its history and upstream call,
            // a queued one, and the upstream costs.
            let mut conn = Connection::open(&path).expect("raw open");
            migrate_with(&mut conn, previous).expect("old schema");
            assert_eq!(user_version(&conn).expect("version"), SCHEMA_VERSION - 1);
            conn.execute_batch(
                "INSERT INTO orders (id, licence_id, licence_ip, tariff_id, service_name,
                     price_e4, currency, period_months, autoprolong, upstream_service_id, state,
                     attempts, last_error, created_ms, updated_ms, events)
                 VALUES ('01JQ3V6K8Z9X4N2B7C5D0E1F2G', 'L1', '192.0.2.10', 55361, 'drweb',
                         36000, 'EUR', 1, 1, '42', 'placed', 1, NULL, 10, 20, 3),
                        ('01JQ3V6K8Z9X4N2B7C5D0E1F2H', 'L2', NULL, 55362, 'drweb-pro',
                         72000, 'EUR', 12, 0, NULL, 'paid', 0, NULL, 11, 11, 1);
                 INSERT INTO order_transitions (order_id, event, from_state, to_state, at_ms,
                     actor, note, error, service_id)
                 VALUES ('01JQ3V6K8Z9X4N2B7C5D0E1F2G', 1, NULL, 'new', 10, 'create', NULL, NULL, NULL),
                        ('01JQ3V6K8Z9X4N2B7C5D0E1F2G', 3, 'placing', 'placed', 20, 'worker',
                         'placed upstream', NULL, '42'),
                        ('01JQ3V6K8Z9X4N2B7C5D0E1F2H', 1, NULL, 'new', 11, 'create', NULL, NULL, NULL);
                 INSERT INTO upstream_calls (order_id, event, at_ms, func, params, http_status,
                     duration_ms, outcome, detail)
                 VALUES ('01JQ3V6K8Z9X4N2B7C5D0E1F2G', 2, 15, 'addition.order.param',
                         '[[\"item\",\"L1\"]]', 200, 5, 'succeeded', 'ok');
                 INSERT INTO upstream_costs (tariff_id, period_months, amount_e4, currency)
                     VALUES (7, 1, 35000, 'EUR');
                 INSERT INTO upstream_costs_fetch (id, fetched_ms) VALUES (1, 1);",
            )
            .expect("rows of the previous version");
        }
        for _ in 0..2 {
            let store = SqliteStore::open(&path).expect("open");
            assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
            let orders = store.list(&ListFilter::default()).expect("list");
            assert_eq!(orders.len(), 2);
            let placed = orders.iter().find(|o| o.state == Placed).expect("placed");
            assert_eq!(
                (
                    placed.licence_id.as_str(),
                    placed.upstream_service_id.as_deref()
                ),
                ("L1", Some("42"))
            );
            assert_eq!(placed.price.to_string(), "3.6000 EUR");
            assert_eq!(
                (&placed.module, placed.fields.is_empty(), placed.expires_on),
                (&None, true, None)
            );
            let history = store.history(&placed.id).expect("history");
            assert_eq!(history.len(), 3, "{history:?}");
            assert!(
                matches!(&history[1], HistoryEntry::UpstreamCall(c) if c.call.func == "addition.order.param")
            );
        }
        // The costs kept before are still there; the new tables work, and the old orders can
        // be changed.
        let store = SqliteStore::open(&path).expect("open");
        assert_eq!(
            stored_costs(&store).expect("costs"),
            Some((conformance::costs(&[(7, 1, 35_000)]), 1))
        );
        let placed = OrderId::parse("01JQ3V6K8Z9X4N2B7C5D0E1F2G").expect("id");
        let day = time::macros::date!(2027 - 01 - 31);
        let renewed = store
            .amend(
                &placed,
                Placed,
                &Amendment {
                    expires_on: Some(Some(day)),
                    ..Amendment::default()
                },
                Change::by("billing").with_note("renewed"),
            )
            .expect("renew");
        assert_eq!(
            (renewed.licence_id.as_str(), renewed.expires_on),
            ("L1", Some(day))
        );
        let suspended = store
            .transition(&placed, Placed, Suspended, Change::by("billing"))
            .expect("suspend");
        assert_eq!(suspended.state, Suspended);
        let events = store.events_after(0, 10).expect("events");
        assert_eq!(events.last().map(|e| e.kind), Some(EventKind::Suspended));
        conformance::create_and_reuse(&store);
    }

    #[test]
    fn files_use_wal_and_foreign_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = file(&dir);
        let conn = store.lock();
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .expect("journal_mode");
        assert_eq!(mode, "wal");
        let fk: i64 = conn
            .pragma_query_value(None, "foreign_keys", |r| r.get(0))
            .expect("foreign_keys");
        assert_eq!(fk, 1);
        // An audit row for a missing order is refused by the database itself.
        let orphan = conn.execute(
            "INSERT INTO order_transitions (order_id, event, to_state, at_ms, actor)
             VALUES ('00000000000000000000000000', 1, 'new', 0, 't')",
            [],
        );
        assert!(orphan.is_err());
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("orders.db");
        drop(SqliteStore::open(&path).expect("open"));
        {
            let conn = Connection::open(&path).expect("raw open");
            conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .expect("bump");
        }
        let err = SqliteStore::open(&path).expect_err("newer schema accepted");
        assert_eq!(
            err,
            StoreError::SchemaTooNew {
                found: SCHEMA_VERSION + 1,
                supported: SCHEMA_VERSION
            }
        );
        assert!(err.to_string().contains("newer"), "{err}");
    }

    #[test]
    fn an_unopenable_path_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"not a directory").expect("write");
        let err = SqliteStore::open(&blocker.join("orders.db")).expect_err("opened");
        assert!(matches!(err, StoreError::Database(_)), "{err:?}");
        // A file that is not a database.
        let err = SqliteStore::open(&blocker).expect_err("opened");
        assert!(matches!(err, StoreError::Database(_)), "{err:?}");
    }

    #[test]
    fn unreadable_rows_are_errors_not_panics() {
        let store = memory();
        let o = conformance::paid(&store, "L1", 1);
        store
            .lock()
            .execute(
                "UPDATE orders SET licence_ip = 'not an ip' WHERE id = ?1",
                [&o.id],
            )
            .expect("corrupt");
        assert!(matches!(store.get(&o.id), Err(StoreError::Database(_))));
        assert!(matches!(
            store.list(&ListFilter::default()),
            Err(StoreError::Database(_))
        ));
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let store = memory();
        let o = conformance::paid(&store, "L1", 1);
        // Make the audit insert fail after the state update succeeded in the same transaction.
        store
            .lock()
            .execute_batch(
                "CREATE TRIGGER no_audit BEFORE INSERT ON order_transitions
                 BEGIN SELECT RAISE(ABORT, 'audit refused'); END;",
            )
            .expect("trigger");
        let err = store.claim_for_placing(&o.id).expect_err("claimed");
        assert!(matches!(err, StoreError::Database(_)), "{err:?}");
        let stored = store.get(&o.id).expect("get");
        assert_eq!((stored.state, stored.attempts), (Paid, 0));
        // The same for an amendment: the licence stays.
        let err = store
            .amend(
                &o.id,
                Paid,
                &Amendment {
                    licence_id: Some("L2".to_owned()),
                    licence_ip: Some(None),
                    ..Amendment::default()
                },
                Change::by("op").with_note("rebound from licence L1 to L2"),
            )
            .expect_err("amended");
        assert!(matches!(err, StoreError::Database(_)), "{err:?}");
        assert_eq!(store.get(&o.id).expect("get"), stored);
    }

    #[test]
    fn a_failed_cost_replacement_leaves_the_previous_costs() {
        let store = memory();
        let first = conformance::costs(&[(1, 1, 10), (2, 1, 20)]);
        store.replace_upstream(&prices_of(&first)).expect("replace");
        let before = stored_costs(&store).expect("read");
        // The second insert fails after the fetch time and the first row were written.
        store
            .lock()
            .execute_batch(
                "CREATE TRIGGER one_cost_only BEFORE INSERT ON upstream_costs
                 WHEN (SELECT count(*) FROM upstream_costs) > 0
                 BEGIN SELECT RAISE(ABORT, 'refused'); END;",
            )
            .expect("trigger");
        let err = store
            .replace_upstream(&prices_of(&conformance::costs(&[(3, 1, 30), (4, 1, 40)])))
            .expect_err("replaced");
        assert!(matches!(err, StoreError::Database(_)), "{err:?}");
        assert_eq!(stored_costs(&store).expect("read"), before);
    }

    #[test]
    fn unreadable_costs_are_errors_not_panics() {
        let store = memory();
        store
            .replace_upstream(&prices_of(&conformance::costs(&[(1, 1, 10)])))
            .expect("replace");
        store
            .lock()
            .execute("UPDATE upstream_costs SET period_months = 1 << 40", [])
            .expect("corrupt");
        assert!(matches!(stored_costs(&store), Err(StoreError::Database(_))));
    }
}
