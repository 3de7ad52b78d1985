//! The PostgreSQL backend of [`OrderStore`], [`OperationStore`], [`EventStore`] and
//! [`CostStore`]: several hosts on one database, each placing any paid order.
//!
//! Every compare-and-set is one conditional `UPDATE … WHERE state = $from RETURNING`, or one
//! transaction that holds the rows it reads (`FOR UPDATE`), so two hosts racing for an order get
//! exactly one winner. Claims are not guarded by a lock outside the database: a `placing` order
//! and an open operation record which store instance owns them (`claimed_by`) and until when
//! (`lease_until_ms`, on the database's clock). The owner renews its leases while it works (a
//! thread of the store does, every third of the lease); an upstream write is marked about to
//! leave only under a live lease held by its owner. Any host settles the claims whose lease ran
//! out ([`PgStore::recover_expired`]) exactly as a restarted host settles its own: a placement
//! marked about to send becomes `in_doubt` and is never re-sent, one not marked goes back to
//! `paid`; a `sending` operation becomes `in_doubt`, a `pending` one is dropped.
//!
//! The store traits are blocking. The store owns a small tokio runtime that drives the
//! connections of its pool; a call blocks its own thread on the query (never a runtime
//! thread), so it may be made from anywhere, as the traits require.
//!
//! Money is stored as BIGINT ten-thousandths plus the currency as TEXT; timestamps as BIGINT
//! UNIX milliseconds; dates as DATE; IPs as INET; JSON as JSONB; states by their
//! [`OrderState::as_str`] names.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::mpsc::{RecvTimeoutError, Sender};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Transaction};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::FromSql;
use tokio_postgres::{NoTls, Row};

mod events;
mod import;
mod operations;

pub use import::Copied;

use super::events::EventKind;
use super::store::now_ms;
use super::store::{
    Amendment, CallOutcome, Change, CostStore, Created, HistoryEntry, Interrupted, ListFilter,
    MAX_LIST_LIMIT, OrderStore, SendMarker, StoreError, TransitionRecord, UpstreamCall,
    UpstreamCallRecord, check_costs, checked_change,
};
use super::{NewOrder, Order, OrderFields, OrderId, OrderState};
use crate::catalogue::{UpstreamPrices, UpstreamTariff};
use crate::money::{Money, Months, UpstreamCost};

/// The schema, one step per version: step `i` takes the database from version `i` to `i + 1`.
/// A shipped step is never edited; a change is a new step.
const MIGRATIONS: &[&str] = &[
    // 1: what SQLite's four steps build: orders, their transitions and upstream calls,
    // operations on placed modules, the events outbox, upstream's prices and the balance.
    "CREATE TABLE orders (
        seq                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id                  TEXT NOT NULL UNIQUE,
        licence_id          TEXT NOT NULL,
        licence_ip          INET,
        tariff_id           BIGINT NOT NULL CHECK (tariff_id >= 0),
        service_name        TEXT NOT NULL,
        price_e4            BIGINT NOT NULL CHECK (price_e4 >= 0),
        currency            TEXT NOT NULL CHECK (length(currency) = 3),
        period_months       INTEGER NOT NULL CHECK (period_months > 0),
        autoprolong         BOOLEAN NOT NULL,
        upstream_service_id TEXT,
        state               TEXT NOT NULL CHECK (state IN ('new', 'paid', 'placing', 'placed',
                                'suspended', 'failed', 'in_doubt', 'cancelled', 'removed')),
        attempts            INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
        last_error          TEXT,
        created_ms          BIGINT NOT NULL,
        updated_ms          BIGINT NOT NULL,
        events              BIGINT NOT NULL DEFAULT 0,
        module              TEXT,
        fields              JSONB NOT NULL DEFAULT '{}',
        expires_on          DATE,
        upstream_status     TEXT,
        waiting             TEXT,
        sending             BOOLEAN NOT NULL DEFAULT FALSE
    );
    CREATE UNIQUE INDEX orders_one_new_per_buy
        ON orders (licence_id, tariff_id, COALESCE(host(licence_ip), ''), period_months)
        WHERE state = 'new';
    CREATE INDEX orders_by_state ON orders (state, seq);
    CREATE INDEX orders_by_licence ON orders (licence_id, seq);
    CREATE INDEX orders_by_service ON orders (upstream_service_id);
    CREATE INDEX orders_by_expiry ON orders (expires_on) WHERE expires_on IS NOT NULL;
    CREATE INDEX orders_by_creation ON orders (created_ms, seq);
    CREATE TABLE order_transitions (
        order_id    TEXT NOT NULL REFERENCES orders (id),
        event       BIGINT NOT NULL,
        from_state  TEXT,
        to_state    TEXT NOT NULL,
        at_ms       BIGINT NOT NULL,
        actor       TEXT NOT NULL,
        note        TEXT,
        error       TEXT,
        service_id  TEXT,
        PRIMARY KEY (order_id, event)
    );
    CREATE TABLE upstream_calls (
        order_id     TEXT NOT NULL REFERENCES orders (id),
        event        BIGINT NOT NULL,
        at_ms        BIGINT NOT NULL,
        func         TEXT NOT NULL,
        params       JSONB NOT NULL,
        http_status  INTEGER,
        duration_ms  BIGINT NOT NULL,
        outcome      TEXT NOT NULL CHECK (outcome IN ('succeeded', 'refused', 'not_sent',
                         'unknown')),
        detail       TEXT NOT NULL,
        PRIMARY KEY (order_id, event)
    );
    CREATE TABLE upstream_costs (
        tariff_id      BIGINT NOT NULL CHECK (tariff_id >= 0),
        period_months  INTEGER NOT NULL CHECK (period_months > 0),
        amount_e4      BIGINT NOT NULL CHECK (amount_e4 >= 0),
        currency       TEXT NOT NULL CHECK (length(currency) = 3),
        PRIMARY KEY (tariff_id, period_months, currency)
    );
    CREATE TABLE upstream_costs_fetch (
        id          INTEGER PRIMARY KEY CHECK (id = 1),
        fetched_ms  BIGINT NOT NULL
    );
    CREATE TABLE upstream_tariffs (
        position         BIGINT NOT NULL PRIMARY KEY,
        tariff_id        BIGINT NOT NULL UNIQUE CHECK (tariff_id >= 0),
        intname          TEXT NOT NULL,
        additionintname  TEXT NOT NULL,
        name             TEXT NOT NULL,
        trial            BOOLEAN NOT NULL
    );
    CREATE TABLE operations (
        id             BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        order_id       TEXT NOT NULL REFERENCES orders (id),
        kind           TEXT NOT NULL CHECK (kind IN ('renew', 'suspend', 'resume', 'remove',
                           'rebind')),
        idem_key       TEXT,
        request        JSONB NOT NULL,
        state          TEXT NOT NULL CHECK (state IN ('pending', 'sending', 'done', 'failed',
                           'in_doubt')),
        result         JSONB,
        error          TEXT,
        actor          TEXT NOT NULL,
        settled_by     TEXT,
        created_ms     BIGINT NOT NULL,
        updated_ms     BIGINT NOT NULL
    );
    CREATE UNIQUE INDEX operations_by_key ON operations (order_id, idem_key)
        WHERE idem_key IS NOT NULL;
    CREATE UNIQUE INDEX operations_one_open ON operations (order_id)
        WHERE state IN ('pending', 'sending', 'in_doubt');
    CREATE INDEX operations_by_state ON operations (state, id);
    CREATE TABLE events (
        id              BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        kind            TEXT NOT NULL,
        at_ms           BIGINT NOT NULL,
        order_id        TEXT,
        data            JSONB NOT NULL,
        dedupe          TEXT UNIQUE,
        delivered_ms    BIGINT,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_ms BIGINT NOT NULL DEFAULT 0,
        last_error      TEXT
    );
    CREATE INDEX events_undelivered ON events (next_attempt_ms, id) WHERE delivered_ms IS NULL;
    CREATE TABLE upstream_balance (
        id          INTEGER PRIMARY KEY CHECK (id = 1),
        amount_e4   BIGINT NOT NULL,
        currency    TEXT NOT NULL CHECK (length(currency) = 3),
        read_ms     BIGINT NOT NULL
    );",
    // 2: claims with leases, so that several hosts place from one database: who holds a
    // `placing` order or an open operation, and until when (the database's clock).
    "ALTER TABLE orders ADD COLUMN claimed_by TEXT, ADD COLUMN lease_until_ms BIGINT;
    ALTER TABLE operations ADD COLUMN claimed_by TEXT, ADD COLUMN lease_until_ms BIGINT;
    CREATE INDEX orders_claims ON orders (lease_until_ms) WHERE state = 'placing';
    CREATE INDEX operations_claims ON operations (lease_until_ms)
        WHERE state IN ('pending', 'sending');",
    // 3: scheduled tasks claimed per round, so that one host of several runs each round.
    "CREATE TABLE scheduled_runs (
        name     TEXT PRIMARY KEY,
        next_ms  BIGINT NOT NULL
    );",
];

/// The schema version this host writes: the number of migration steps.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The database's clock, UNIX milliseconds: leases are set and compared on it alone, so that
/// the hosts' clocks need not agree.
const DB_NOW: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// Serialises the inserts of events until their transactions end, so that events become
/// visible in the order of their IDs (a reader of `events_after` never skips one).
const EVENTS_LOCK: &str = "SELECT pg_advisory_xact_lock(7340140001)";

/// Serialises migrations of hosts starting at once.
const MIGRATION_LOCK: &str = "SELECT pg_advisory_xact_lock(7340140002)";

const ORDER_COLUMNS: &str = "id, licence_id, licence_ip, tariff_id, service_name, price_e4, \
     currency, period_months, autoprolong, upstream_service_id, state, attempts, last_error, \
     created_ms, updated_ms, module, fields, expires_on, upstream_status, waiting";

/// The column after [`ORDER_COLUMNS`] in queries that add one.
const NEXT_COLUMN: usize = 20;

/// The default lease of a claim.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// How to reach the database and how this host holds its claims.
#[derive(Clone)]
pub struct PgOptions {
    /// The `postgres://` URL.
    pub url: String,
    /// The password, when not in the URL (from `orders.database_password_env`).
    pub password: Option<String>,
    /// Connections at most in the pool.
    pub connections: usize,
    /// How long a claim lasts without being renewed.
    pub lease: Duration,
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("url", &redacted(&self.url))
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("connections", &self.connections)
            .field("lease", &self.lease)
            .finish()
    }
}

impl PgOptions {
    /// Options for `url` with the defaults: 8 connections, [`DEFAULT_LEASE`].
    pub fn new(url: impl Into<String>) -> PgOptions {
        PgOptions {
            url: url.into(),
            password: None,
            connections: 8,
            lease: DEFAULT_LEASE,
        }
    }
}

pub use crate::config::{is_postgres_url as is_url, redacted_url as redacted};

/// Orders in a PostgreSQL database; see the [module documentation](self).
pub struct PgStore {
    pool: Pool,
    runtime: Option<tokio::runtime::Runtime>,
    /// Whose claims this store makes: unique per process and store.
    instance: String,
    lease_ms: i64,
    /// Dropping it stops the lease renewals.
    _renewals: Sender<()>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("instance", &self.instance)
            .field("lease_ms", &self.lease_ms)
            .finish_non_exhaustive()
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Not waiting for the connections: a store may be dropped on a runtime's thread, where
        // blocking is not allowed.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Runs `future` to its end on this thread, within `handle`'s runtime (whose threads drive
/// the connections). Never blocks a runtime's own task: it is a thread's own wait.
fn block_on<T>(handle: &tokio::runtime::Handle, future: impl Future<Output = T>) -> T {
    let _entered = handle.enter();
    futures_executor::block_on(future)
}

impl PgStore {
    /// Connects to the database, and migrates it to [`SCHEMA_VERSION`] (hosts starting at once
    /// migrate one after another). A database from a newer host is refused with
    /// [`StoreError::SchemaTooNew`]. Error messages never show the password.
    pub fn open(options: &PgOptions) -> Result<PgStore, StoreError> {
        let shown = redacted(&options.url);
        if !is_url(&options.url) {
            return Err(StoreError::Invalid(format!(
                "{shown} is not a postgres:// URL"
            )));
        }
        let mut config: tokio_postgres::Config = options.url.parse().map_err(|e| {
            StoreError::Invalid(format!("the database URL {shown} cannot be used: {e}"))
        })?;
        if let Some(password) = &options.password {
            config.password(password.as_bytes());
        }
        if config.get_application_name().is_none() {
            config.application_name("reseller");
        }
        config.connect_timeout(Duration::from_secs(10));
        let lease_ms = i64::try_from(options.lease.as_millis()).unwrap_or(i64::MAX);
        if !(1_000..=3_600_000).contains(&lease_ms) {
            return Err(StoreError::Invalid(
                "the claim lease must be 1 s to 1 hour".to_owned(),
            ));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("postgres")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Database(format!("cannot start the database runtime: {e}")))?;
        let pool = pool_of(config.clone(), options.connections)?;
        // The renewals have a connection of their own: a busy pool must not let leases lapse.
        let renewals = pool_of(config, 1)?;
        let handle = runtime.handle().clone();
        block_on(&handle, migrate(&pool, MIGRATIONS)).map_err(|e| match e {
            StoreError::Database(m) => StoreError::Database(format!("{shown}: {m}")),
            e => e,
        })?;
        let instance = instance_name(&handle, &pool)?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        {
            let pool = renewals;
            let instance = instance.clone();
            let every = Duration::from_millis(u64::try_from(lease_ms / 3).unwrap_or(1_000));
            std::thread::Builder::new()
                .name("postgres-leases".to_owned())
                .spawn(move || {
                    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                        if let Err(e) = block_on(&handle, renew_leases(&pool, &instance, lease_ms))
                        {
                            tracing::warn!("renewing this host's claims failed: {e}");
                        }
                    }
                })
                .map_err(|e| StoreError::Database(format!("cannot start the lease thread: {e}")))?;
        }
        Ok(PgStore {
            pool,
            runtime: Some(runtime),
            instance,
            lease_ms,
            _renewals: stop,
        })
    }

    /// The name this store's claims carry.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The database's schema version.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.read(async |tx| schema_version(tx).await)
    }

    fn handle(&self) -> Result<&tokio::runtime::Handle, StoreError> {
        self.runtime
            .as_ref()
            .map(tokio::runtime::Runtime::handle)
            .ok_or_else(|| StoreError::Database("the store is closed".to_owned()))
    }

    /// Runs `f` in a transaction, committed if `f` succeeds, rolled back if not.
    fn write<T>(
        &self,
        f: impl AsyncFnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pool = &self.pool;
        block_on(self.handle()?, async move {
            let mut client = pool.get().await.map_err(pool_error)?;
            let tx = client.transaction().await.map_err(db)?;
            let value = f(&tx).await?;
            tx.commit().await.map_err(db)?;
            Ok(value)
        })
    }

    /// Runs `f` in a read-only transaction with one snapshot.
    fn read<T>(
        &self,
        f: impl AsyncFnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pool = &self.pool;
        block_on(self.handle()?, async move {
            let mut client = pool.get().await.map_err(pool_error)?;
            let tx = client
                .build_transaction()
                .read_only(true)
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .start()
                .await
                .map_err(db)?;
            let value = f(&tx).await?;
            tx.commit().await.map_err(db)?;
            Ok(value)
        })
    }

    /// Settles the claims whose lease ran out — their owner stopped, or lost the database —
    /// as [`OrderStore::recover_interrupted`] settles a stopped placer's: marked about to send
    /// → in doubt, never re-sent; not marked → back to be tried again. Any host may run it at
    /// any time: a live owner renews its leases.
    pub fn recover_expired(&self) -> Result<Interrupted, StoreError> {
        self.recover(false, "recovery")
    }

    fn recover(&self, own_too: bool, actor: &str) -> Result<Interrupted, StoreError> {
        let (doubt, requeue) = if own_too {
            (
                "the host stopped while placing this order; it may or may not exist upstream",
                "the host stopped before sending this order; nothing reached upstream",
            )
        } else {
            (
                "the host placing this order stopped (its claim expired) after its request \
                 may have left; it may or may not exist upstream",
                "the host placing this order stopped (its claim expired) before sending it; \
                 nothing reached upstream",
            )
        };
        let doubt = Change::by(actor)
            .with_error(doubt)
            .checked(OrderState::Placing, OrderState::InDoubt)?;
        let requeue = Change::by(actor)
            .with_error(requeue)
            .with_note("queued again")
            .checked(OrderState::Placing, OrderState::Paid)?;
        let instance = self.instance.clone();
        let lease = self.lease_ms;
        self.write(async |tx| {
            let placing = tx
                .query(
                    &format!(
                        "SELECT id, sending FROM orders WHERE state = 'placing'
                             AND (($1 AND claimed_by = $2)
                                  OR COALESCE(lease_until_ms, 0) < {DB_NOW})
                         ORDER BY seq FOR UPDATE SKIP LOCKED"
                    ),
                    &[&own_too, &instance],
                )
                .await
                .map_err(db)?;
            let now = now_ms();
            let mut found = Interrupted::default();
            let none = Amendment::default();
            let claims = Claims {
                instance: &instance,
                lease_ms: lease,
                check: ClaimCheck::Held,
            };
            for row in placing {
                let id = order_id(&row, 0)?;
                let sent: bool = get(&row, 1)?;
                let (to, change) = if sent {
                    (OrderState::InDoubt, &doubt)
                } else {
                    (OrderState::Paid, &requeue)
                };
                let order = apply_change(
                    tx,
                    &claims,
                    &id,
                    OrderState::Placing,
                    Some(to),
                    &none,
                    change,
                    now,
                )
                .await?;
                if sent {
                    found.in_doubt.push(order);
                } else {
                    found.requeued.push(order);
                }
            }
            let (in_doubt, dropped) = operations::recover(tx, own_too, &instance, now).await?;
            found.operations_in_doubt = in_doubt;
            found.operations_dropped = dropped;
            Ok(found)
        })
    }
}

/// A pool of at most `size` connections to the database of `config`.
fn pool_of(config: tokio_postgres::Config, size: usize) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size.clamp(1, 256))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(30)))
        .create_timeout(Some(Duration::from_secs(10)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .build()
        .map_err(|e| StoreError::Database(format!("cannot build the connection pool: {e}")))
}

/// A name for this store's claims: the database's view of this connection's client address,
/// this process and a random part, so that no two stores share one.
fn instance_name(handle: &tokio::runtime::Handle, pool: &Pool) -> Result<String, StoreError> {
    let random: String = block_on(handle, async {
        let client = pool.get().await.map_err(pool_error)?;
        let row = client
            .query_one("SELECT substr(md5(gen_random_uuid()::text), 1, 8)", &[])
            .await
            .map_err(db)?;
        get::<String>(&row, 0)
    })?;
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty() && h.len() <= 64)
        .unwrap_or_else(|| "host".to_owned());
    Ok(format!("{host}:{}:{random}", std::process::id()))
}

/// Extends the leases this instance holds and that have not run out.
async fn renew_leases(pool: &Pool, instance: &str, lease_ms: i64) -> Result<(), StoreError> {
    let client = pool.get().await.map_err(pool_error)?;
    for table in ["orders", "operations"] {
        let state = if table == "orders" {
            "state = 'placing'"
        } else {
            "state IN ('pending', 'sending')"
        };
        client
            .execute(
                &format!(
                    "UPDATE {table} SET lease_until_ms = {DB_NOW} + $2
                     WHERE {state} AND claimed_by = $1 AND lease_until_ms >= {DB_NOW}"
                ),
                &[&instance, &lease_ms],
            )
            .await
            .map_err(db)?;
    }
    Ok(())
}

/// A database error as a [`StoreError`], with the server's message and code (never a
/// password: the driver does not put it in errors).
pub(crate) fn db(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(d) => StoreError::Database(format!("{} ({})", d.message(), d.code().code())),
        None => {
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                message.push_str(": ");
                message.push_str(&s.to_string());
                source = s.source();
            }
            StoreError::Database(message)
        }
    }
}

fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => db(e),
        e => StoreError::Database(format!("no database connection: {e}")),
    }
}

/// Whether `e` is a unique constraint refusing a row.
pub(crate) fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// A column's value; a value of the wrong type is [`StoreError::Database`].
pub(crate) fn get<'a, T: FromSql<'a>>(row: &'a Row, idx: usize) -> Result<T, StoreError> {
    row.try_get(idx)
        .map_err(|e| StoreError::Database(format!("column {idx}: {}", db(e))))
}

/// A stored value this host cannot read back.
pub(crate) fn unreadable(what: impl std::fmt::Display) -> StoreError {
    StoreError::Database(format!("a stored value cannot be read: {what}"))
}

fn order_id(row: &Row, idx: usize) -> Result<OrderId, StoreError> {
    let text: String = get(row, idx)?;
    OrderId::parse(&text).map_err(unreadable)
}

fn state(row: &Row, idx: usize) -> Result<OrderState, StoreError> {
    let text: String = get(row, idx)?;
    text.parse().map_err(unreadable)
}

fn opt_state(row: &Row, idx: usize) -> Result<Option<OrderState>, StoreError> {
    get::<Option<String>>(row, idx)?
        .map(|t| t.parse().map_err(unreadable))
        .transpose()
}

fn tariff(row: &Row, idx: usize) -> Result<u64, StoreError> {
    let id: i64 = get(row, idx)?;
    u64::try_from(id).map_err(|_| unreadable(format!("negative tariff ID {id}")))
}

fn months(row: &Row, idx: usize) -> Result<Months, StoreError> {
    Months::new(i64::from(get::<i32>(row, idx)?)).map_err(unreadable)
}

pub(crate) fn money(row: &Row, amount: usize, currency: usize) -> Result<Money, StoreError> {
    let units: i64 = get(row, amount)?;
    let code: String = get(row, currency)?;
    Money::from_units(units, &code).map_err(unreadable)
}

fn event_number(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| unreadable(format!("negative event number {value}")))
}

fn order_from_row(row: &Row) -> Result<Order, StoreError> {
    let fields: serde_json::Value = get(row, 16)?;
    let attempts: i32 = get(row, 11)?;
    Ok(Order {
        id: order_id(row, 0)?,
        licence_id: get(row, 1)?,
        licence_ip: get(row, 2)?,
        tariff_id: tariff(row, 3)?,
        service_name: get(row, 4)?,
        price: money(row, 5, 6)?,
        period: months(row, 7)?,
        autoprolong: get(row, 8)?,
        upstream_service_id: get(row, 9)?,
        state: state(row, 10)?,
        attempts: u32::try_from(attempts)
            .map_err(|_| unreadable(format!("negative attempts {attempts}")))?,
        last_error: get(row, 12)?,
        created_ms: get(row, 13)?,
        updated_ms: get(row, 14)?,
        module: get(row, 15)?,
        fields: serde_json::from_value(fields)
            .map_err(|e| unreadable(format!("order fields: {e}")))?,
        expires_on: get(row, 17)?,
        upstream_status: get(row, 18)?,
        waiting: get(row, 19)?,
    })
}

fn fields_json(fields: &OrderFields) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(fields)
        .map_err(|e| StoreError::Database(format!("cannot encode order fields: {e}")))
}

pub(crate) async fn get_order(tx: &Transaction<'_>, id: &OrderId) -> Result<Order, StoreError> {
    let row = tx
        .query_opt(
            &format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1"),
            &[&id.as_str()],
        )
        .await
        .map_err(db)?
        .ok_or(StoreError::NotFound)?;
    order_from_row(&row)
}

async fn schema_version(tx: &Transaction<'_>) -> Result<i64, StoreError> {
    let row = tx
        .query_opt("SELECT version FROM reseller_schema WHERE id = 1", &[])
        .await
        .map_err(db)?;
    Ok(match row {
        Some(row) => i64::from(get::<i32>(&row, 0)?),
        None => 0,
    })
}

/// Applies the missing steps of `steps` (a prefix of [`MIGRATIONS`] in tests) in one
/// transaction, one host at a time.
async fn migrate(pool: &Pool, steps: &[&str]) -> Result<(), StoreError> {
    let supported = steps.len() as i64;
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await.map_err(db)?;
    tx.batch_execute(MIGRATION_LOCK).await.map_err(db)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS reseller_schema (
             id       INTEGER PRIMARY KEY CHECK (id = 1),
             version  INTEGER NOT NULL CHECK (version >= 0)
         );
         INSERT INTO reseller_schema (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;",
    )
    .await
    .map_err(db)?;
    let found = schema_version(&tx).await?;
    if found > supported {
        return Err(StoreError::SchemaTooNew { found, supported });
    }
    for (i, step) in steps
        .iter()
        .enumerate()
        .skip(usize::try_from(found).unwrap_or(0))
    {
        tx.batch_execute(step).await.map_err(|e| match db(e) {
            StoreError::Database(m) => StoreError::Database(format!("migration {}: {m}", i + 1)),
            e => e,
        })?;
        let version = i32::try_from(i + 1).unwrap_or(i32::MAX);
        tx.execute(
            "UPDATE reseller_schema SET version = $1 WHERE id = 1",
            &[&version],
        )
        .await
        .map_err(db)?;
    }
    tx.commit().await.map_err(db)
}

/// Which claim a change out of `placing` must hold.
#[derive(Clone, Copy)]
enum ClaimCheck {
    /// This instance's own claim.
    Mine,
    /// The caller holds the row (`FOR UPDATE`) and has checked the claim.
    Held,
}

/// This store's claims, for [`apply_change`].
struct Claims<'a> {
    instance: &'a str,
    lease_ms: i64,
    check: ClaimCheck,
}

impl PgStore {
    fn claims(&self) -> Claims<'_> {
        Claims {
            instance: &self.instance,
            lease_ms: self.lease_ms,
            check: ClaimCheck::Mine,
        }
    }
}

/// The compare-and-set itself — state change, amendment, claim, audit record and announced
/// event — inside the caller's transaction. `change` has been checked ([`checked_change`]).
#[expect(
    clippy::too_many_arguments,
    reason = "the arguments of one change, as SQLite's"
)]
async fn apply_change(
    tx: &Transaction<'_>,
    claims: &Claims<'_>,
    id: &OrderId,
    from: OrderState,
    to: Option<OrderState>,
    amendment: &Amendment,
    change: &Change,
    now: i64,
) -> Result<Order, StoreError> {
    let state = to.unwrap_or(from);
    let attempts = i32::from(to.is_some_and(|to| Change::counts_attempt(from, to)));
    // A new claim starts without the "about to send" mark, owned by this instance.
    let claim = to == Some(OrderState::Placing);
    let leaves_placing = from == OrderState::Placing && state != OrderState::Placing;
    let must_own = from == OrderState::Placing && matches!(claims.check, ClaimCheck::Mine);
    let (set_ip, ip) = match amendment.licence_ip {
        None => (false, None),
        Some(ip) => (true, ip),
    };
    let fields = amendment.fields.as_ref().map(fields_json).transpose()?;
    let (set_expiry, expiry) = match amendment.expires_on {
        None => (false, None),
        Some(d) => (true, d),
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
    let period = amendment.period.map(|m| i32::from(m.get()));
    let price_units = price.map(|p| p.amount.units());
    let currency = price.map(|p| p.currency.as_str());
    let row = tx
        .query_opt(
            &format!(
                "UPDATE orders SET state = $3, attempts = attempts + $4,
                     last_error = COALESCE($5, last_error),
                     upstream_service_id = COALESCE($6, upstream_service_id),
                     licence_id = COALESCE($7, licence_id),
                     licence_ip = CASE WHEN $8 THEN $9 ELSE licence_ip END,
                     fields = COALESCE($10, fields),
                     period_months = COALESCE($11, period_months),
                     price_e4 = COALESCE($12, price_e4),
                     currency = COALESCE($13, currency),
                     expires_on = CASE WHEN $14 THEN $15 ELSE expires_on END,
                     upstream_status = CASE WHEN $16 THEN $17 ELSE upstream_status END,
                     waiting = CASE WHEN $18 THEN $19 ELSE waiting END,
                     sending = CASE WHEN $20 THEN FALSE ELSE sending END,
                     claimed_by = CASE WHEN $20 THEN $22 ELSE claimed_by END,
                     lease_until_ms = CASE WHEN $20 THEN {DB_NOW} + $23
                                           WHEN $21 THEN NULL ELSE lease_until_ms END,
                     updated_ms = $25, events = events + 1
                 WHERE id = $1 AND state = $2 AND (NOT $24 OR claimed_by = $22)
                 RETURNING {ORDER_COLUMNS}, events"
            ),
            &[
                &id.as_str(),
                &from.as_str(),
                &state.as_str(),
                &attempts,
                &change.error,
                &change.service_id,
                &amendment.licence_id,
                &set_ip,
                &ip,
                &fields,
                &period,
                &price_units,
                &currency,
                &set_expiry,
                &expiry,
                &set_status,
                &status,
                &set_waiting,
                &waiting,
                &claim,
                &leaves_placing,
                &claims.instance,
                &claims.lease_ms,
                &must_own,
                &now,
            ],
        )
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                // The only constraint a change can break: one `New` order per identical Buy.
                StoreError::Invalid(
                    "this licence already has the same unpaid order for this module".to_owned(),
                )
            } else {
                db(e)
            }
        })?;
    let Some(row) = row else {
        return Err(not_updated(tx, id, from, must_own).await?);
    };
    let order = order_from_row(&row)?;
    let event = event_number(get(&row, NEXT_COLUMN)?)?;
    insert_transition(tx, id, event, Some(from), state, change, now).await?;
    let announced = match to {
        Some(to) => change.event.or(EventKind::of_transition(from, to)),
        None => change.event,
    };
    if let Some(kind) = announced {
        let mut data = serde_json::json!({ "order": order });
        if let Some(extra) = &change.event_data {
            data["change"] = extra.clone();
        }
        events::insert(tx, kind, Some(id), &data, None, now).await?;
    }
    Ok(order)
}

/// Why a conditional update of the order `id` matched no row: it is absent
/// ([`StoreError::NotFound`]), in another state, or in `placing` under another host's claim
/// ([`StoreError::Conflict`]).
async fn not_updated(
    tx: &Transaction<'_>,
    id: &OrderId,
    from: OrderState,
    must_own: bool,
) -> Result<StoreError, StoreError> {
    let row = tx
        .query_opt("SELECT state FROM orders WHERE id = $1", &[&id.as_str()])
        .await
        .map_err(db)?;
    Ok(match row {
        None => StoreError::NotFound,
        Some(row) => {
            let current = state(&row, 0)?;
            if current == from && must_own {
                tracing::warn!(order = %id, "another host holds this order's claim now");
            }
            StoreError::Conflict { current }
        }
    })
}

async fn insert_transition(
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
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &id.as_str(),
            &event,
            &from.map(OrderState::as_str),
            &to.as_str(),
            &now,
            &change.actor,
            &change.note,
            &change.error,
            &change.service_id,
        ],
    )
    .await
    .map_err(db)?;
    Ok(())
}

/// A new order ID: the time now and ten random bytes from the database (a random UUID's bytes
/// that carry no version or variant bits).
async fn new_id(tx: &Transaction<'_>, now: i64) -> Result<OrderId, StoreError> {
    let row = tx
        .query_one("SELECT uuid_send(gen_random_uuid())", &[])
        .await
        .map_err(db)?;
    let uuid: Vec<u8> = get(&row, 0)?;
    let mut entropy = [0u8; 10];
    match (uuid.get(..6), uuid.get(10..14)) {
        (Some(head), Some(tail)) => {
            entropy[..6].copy_from_slice(head);
            entropy[6..].copy_from_slice(tail);
        }
        _ => {
            return Err(StoreError::Database(
                "a random UUID of the wrong length".into(),
            ));
        }
    }
    Ok(OrderId::from_parts(
        u64::try_from(now).unwrap_or(0),
        entropy,
    ))
}

/// Inserts an order in `state` with its first history record.
async fn insert_order(
    tx: &Transaction<'_>,
    new: &NewOrder,
    state: OrderState,
    extra: (Option<&str>, Option<time::Date>),
    change: &Change,
    now: i64,
) -> Result<Option<Order>, StoreError> {
    let tariff = i64::try_from(new.tariff_id)
        .map_err(|_| StoreError::Invalid("tariff ID too large".to_owned()))?;
    let id = new_id(tx, now).await?;
    let (service_id, expires_on) = extra;
    // A `New` order that an identical Buy inserted meanwhile wins: nothing is inserted.
    let row = tx
        .query_opt(
            &format!(
                "INSERT INTO orders (id, licence_id, licence_ip, tariff_id, service_name,
                     price_e4, currency, period_months, autoprolong, state, attempts,
                     created_ms, updated_ms, events, module, fields, upstream_service_id,
                     expires_on)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, $11, $11, 1, $12, $13, $14,
                     $15)
                 ON CONFLICT (licence_id, tariff_id, COALESCE(host(licence_ip), ''),
                     period_months) WHERE state = 'new' DO NOTHING
                 RETURNING {ORDER_COLUMNS}"
            ),
            &[
                &id.as_str(),
                &new.licence_id,
                &new.licence_ip,
                &tariff,
                &new.service_name,
                &new.price.amount.units(),
                &new.price.currency.as_str(),
                &i32::from(new.period.get()),
                &new.autoprolong,
                &state.as_str(),
                &now,
                &new.module,
                &fields_json(&new.fields)?,
                &service_id,
                &expires_on,
            ],
        )
        .await
        .map_err(db)?;
    let Some(row) = row else {
        return Ok(None);
    };
    insert_transition(tx, &id, 1, None, state, change, now).await?;
    order_from_row(&row).map(Some)
}

async fn find_new(tx: &Transaction<'_>, new: &NewOrder) -> Result<Option<Order>, StoreError> {
    let tariff = i64::try_from(new.tariff_id)
        .map_err(|_| StoreError::Invalid("tariff ID too large".to_owned()))?;
    let ip = new.licence_ip.map(|ip| ip.to_string()).unwrap_or_default();
    let row = tx
        .query_opt(
            &format!(
                "SELECT {ORDER_COLUMNS} FROM orders
                 WHERE licence_id = $1 AND tariff_id = $2
                     AND COALESCE(host(licence_ip), '') = $3 AND period_months = $4
                     AND state = 'new'"
            ),
            &[&new.licence_id, &tariff, &ip, &i32::from(new.period.get())],
        )
        .await
        .map_err(db)?;
    row.as_ref().map(order_from_row).transpose()
}

fn collect_orders(rows: &[Row]) -> Result<Vec<Order>, StoreError> {
    rows.iter().map(order_from_row).collect()
}

impl OrderStore for PgStore {
    fn create_or_reuse_new(&self, new: &NewOrder) -> Result<Created, StoreError> {
        new.validate()
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        // An identical Buy racing this one may insert first; then its order is found.
        for _ in 0..3 {
            let created = self.write(async |tx| {
                if let Some(order) = find_new(tx, new).await? {
                    return Ok(Some(Created {
                        order,
                        reused: true,
                    }));
                }
                let inserted = insert_order(
                    tx,
                    new,
                    OrderState::New,
                    (None, None),
                    &Change::by("create"),
                    now_ms(),
                )
                .await?;
                Ok(inserted.map(|order| Created {
                    order,
                    reused: false,
                }))
            })?;
            if let Some(created) = created {
                return Ok(created);
            }
        }
        Err(StoreError::Database(
            "the order could neither be created nor found; try again".to_owned(),
        ))
    }

    fn get(&self, id: &OrderId) -> Result<Order, StoreError> {
        self.read(async |tx| get_order(tx, id).await)
    }

    fn list(&self, filter: &ListFilter) -> Result<Vec<Order>, StoreError> {
        let limit = i64::from(filter.limit.min(MAX_LIST_LIMIT));
        let tariff = filter
            .tariff_id
            .map(|t| i64::try_from(t).unwrap_or(i64::MAX));
        let state = filter.state.map(OrderState::as_str);
        self.read(async |tx| {
            let rows = tx
                .query(
                    &format!(
                        "SELECT {ORDER_COLUMNS} FROM orders
                         WHERE ($1::text IS NULL OR state = $1)
                             AND ($2::text IS NULL OR licence_id = $2)
                             AND ($3::bigint IS NULL OR tariff_id = $3)
                             AND ($4::date IS NULL OR expires_on <= $4)
                             AND ($5::bigint IS NULL OR created_ms >= $5)
                             AND ($6::bigint IS NULL OR created_ms < $6)
                         ORDER BY created_ms DESC, seq DESC LIMIT $7 OFFSET $8"
                    ),
                    &[
                        &state,
                        &filter.licence_id,
                        &tariff,
                        &filter.expires_by,
                        &filter.created_from_ms,
                        &filter.created_to_ms,
                        &limit,
                        &i64::from(filter.offset),
                    ],
                )
                .await
                .map_err(db)?;
            collect_orders(&rows)
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
        let claims = self.claims();
        self.write(async |tx| {
            apply_change(tx, &claims, id, from, to, amendment, &change, now_ms()).await
        })
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
        self.write(async |tx| {
            // Two imports of one service racing: the lock makes the second see the first.
            tx.execute(
                "SELECT pg_advisory_xact_lock(734014, hashtext($1))",
                &[&service_id],
            )
            .await
            .map_err(db)?;
            let taken = tx
                .query_opt(
                    "SELECT id FROM orders WHERE upstream_service_id = $1 AND state != 'removed'",
                    &[&service_id],
                )
                .await
                .map_err(db)?;
            if let Some(row) = taken {
                let other: String = get(&row, 0)?;
                return Err(StoreError::Invalid(format!(
                    "service {service_id} is already order {other}"
                )));
            }
            insert_order(
                tx,
                new,
                OrderState::Placed,
                (Some(service_id), expires_on),
                &change,
                now_ms(),
            )
            .await?
            .ok_or_else(|| StoreError::Database("the imported order was not inserted".into()))
        })
    }

    fn counts(&self) -> Result<BTreeMap<OrderState, u64>, StoreError> {
        self.read(async |tx| {
            let rows = tx
                .query("SELECT state, COUNT(*) FROM orders GROUP BY state", &[])
                .await
                .map_err(db)?;
            rows.iter()
                .map(|r| {
                    let n: i64 = get(r, 1)?;
                    Ok((state(r, 0)?, u64::try_from(n).unwrap_or(0)))
                })
                .collect()
        })
    }

    fn mark_sending(&self, marker: &SendMarker) -> Result<(), StoreError> {
        let instance = self.instance.clone();
        self.write(async |tx| {
            let now = now_ms();
            // Only under this instance's live claim: an expired one may be being settled by
            // another host.
            let changed = match marker {
                SendMarker::Placement(id) => tx
                    .execute(
                        &format!(
                            "UPDATE orders SET sending = TRUE, updated_ms = $2
                             WHERE id = $1 AND state = 'placing' AND claimed_by = $3
                                 AND lease_until_ms >= {DB_NOW}"
                        ),
                        &[&id.as_str(), &now, &instance],
                    )
                    .await
                    .map_err(db)?,
                SendMarker::Operation(id) => tx
                    .execute(
                        &format!(
                            "UPDATE operations SET state = 'sending', updated_ms = $2
                             WHERE id = $1 AND state IN ('pending', 'sending')
                                 AND claimed_by = $3 AND lease_until_ms >= {DB_NOW}"
                        ),
                        &[id, &now, &instance],
                    )
                    .await
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
        let params = serde_json::to_value(&call.params)
            .map_err(|e| StoreError::Database(format!("cannot encode parameters: {e}")))?;
        let duration = i64::try_from(call.duration_ms).unwrap_or(i64::MAX);
        let status = call.http_status.map(i32::from);
        self.write(async |tx| {
            let row = tx
                .query_opt(
                    "UPDATE orders SET events = events + 1 WHERE id = $1 RETURNING events",
                    &[&order_id.as_str()],
                )
                .await
                .map_err(db)?
                .ok_or(StoreError::NotFound)?;
            let event: i64 = get(&row, 0)?;
            tx.execute(
                "INSERT INTO upstream_calls (order_id, event, at_ms, func, params, http_status,
                     duration_ms, outcome, detail)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    &order_id.as_str(),
                    &event,
                    &now_ms(),
                    &call.func,
                    &params,
                    &status,
                    &duration,
                    &call.outcome.as_str(),
                    &call.detail,
                ],
            )
            .await
            .map_err(db)?;
            Ok(())
        })
    }

    fn history(&self, id: &OrderId) -> Result<Vec<HistoryEntry>, StoreError> {
        self.read(async |tx| {
            get_order(tx, id).await?;
            let mut entries = Vec::new();
            let rows = tx
                .query(
                    "SELECT event, from_state, to_state, at_ms, actor, note, error, service_id
                     FROM order_transitions WHERE order_id = $1",
                    &[&id.as_str()],
                )
                .await
                .map_err(db)?;
            for r in &rows {
                entries.push(HistoryEntry::Transition(TransitionRecord {
                    event: event_number(get(r, 0)?)?,
                    from: opt_state(r, 1)?,
                    to: state(r, 2)?,
                    at_ms: get(r, 3)?,
                    actor: get(r, 4)?,
                    note: get(r, 5)?,
                    error: get(r, 6)?,
                    service_id: get(r, 7)?,
                }));
            }
            let rows = tx
                .query(
                    "SELECT event, at_ms, func, params, http_status, duration_ms, outcome, detail
                     FROM upstream_calls WHERE order_id = $1",
                    &[&id.as_str()],
                )
                .await
                .map_err(db)?;
            for r in &rows {
                let params: serde_json::Value = get(r, 3)?;
                let params: Vec<(String, String)> = serde_json::from_value(params)
                    .map_err(|e| unreadable(format!("parameters: {e}")))?;
                let outcome: String = get(r, 6)?;
                let outcome = CallOutcome::from_name(&outcome)
                    .ok_or_else(|| unreadable(format!("unknown outcome `{outcome}`")))?;
                let duration: i64 = get(r, 5)?;
                let status: Option<i32> = get(r, 4)?;
                entries.push(HistoryEntry::UpstreamCall(UpstreamCallRecord {
                    event: event_number(get(r, 0)?)?,
                    at_ms: get(r, 1)?,
                    call: UpstreamCall {
                        func: get(r, 2)?,
                        params,
                        http_status: status.and_then(|s| u16::try_from(s).ok()),
                        duration_ms: u64::try_from(duration).unwrap_or(0),
                        outcome,
                        detail: get(r, 7)?,
                    },
                }));
            }
            entries.sort_by_key(HistoryEntry::event);
            Ok(entries)
        })
    }

    fn orders_to_resume(&self) -> Result<Vec<Order>, StoreError> {
        self.read(async |tx| {
            let rows = tx
                .query(
                    &format!(
                        "SELECT {ORDER_COLUMNS} FROM orders
                         WHERE state IN ('paid', 'placing') ORDER BY seq"
                    ),
                    &[],
                )
                .await
                .map_err(db)?;
            collect_orders(&rows)
        })
    }

    /// Settles this store's own claims and every claim whose lease ran out; claims of other
    /// hosts that are alive (renewing their leases) are left alone.
    fn recover_interrupted(&self) -> Result<Interrupted, StoreError> {
        self.recover(true, "startup")
    }

    fn recover_expired(&self) -> Result<Interrupted, StoreError> {
        PgStore::recover_expired(self)
    }

    fn claims_expire(&self) -> Option<Duration> {
        Some(Duration::from_millis(
            u64::try_from(self.lease_ms).unwrap_or(u64::MAX),
        ))
    }

    /// One conditional upsert: the round is this host's if the task's next run is due (on the
    /// database's clock) or it never ran. The next run is due a tenth early, so that hosts
    /// pacing the task at `every` do not skip a round for a few milliseconds.
    fn claim_scheduled(&self, name: &str, every: Duration) -> Result<bool, StoreError> {
        let every_ms = i64::try_from(every.as_millis() / 10 * 9).unwrap_or(i64::MAX);
        self.write(async |tx| {
            let row = tx
                .query_opt(
                    &format!(
                        "INSERT INTO scheduled_runs (name, next_ms) VALUES ($1, {DB_NOW} + $2)
                         ON CONFLICT (name) DO UPDATE SET next_ms = excluded.next_ms
                         WHERE scheduled_runs.next_ms <= {DB_NOW}
                         RETURNING name"
                    ),
                    &[&name, &every_ms],
                )
                .await
                .map_err(db)?;
            Ok(row.is_some())
        })
    }

    fn purge_abandoned(&self, before_ms: i64) -> Result<u64, StoreError> {
        self.write(async |tx| {
            let rows = tx
                .query(
                    "SELECT id FROM orders o WHERE state = 'cancelled' AND updated_ms < $1
                     AND NOT EXISTS (SELECT 1 FROM order_transitions t
                                     WHERE t.order_id = o.id AND t.to_state = 'paid')
                     FOR UPDATE SKIP LOCKED",
                    &[&before_ms],
                )
                .await
                .map_err(db)?;
            let ids: Vec<String> = rows.iter().map(|r| get(r, 0)).collect::<Result<_, _>>()?;
            for table in [
                "upstream_calls",
                "order_transitions",
                "operations",
                "orders",
            ] {
                let column = if table == "orders" { "id" } else { "order_id" };
                tx.execute(
                    &format!("DELETE FROM {table} WHERE {column} = ANY($1)"),
                    &[&ids],
                )
                .await
                .map_err(db)?;
            }
            Ok(u64::try_from(ids.len()).unwrap_or(0))
        })
    }
}

impl CostStore for PgStore {
    fn replace_upstream(&self, prices: &UpstreamPrices) -> Result<(), StoreError> {
        check_costs(&prices.costs)?;
        let tariff_id = |id: u64| {
            i64::try_from(id).map_err(|_| StoreError::Invalid("tariff ID too large".to_owned()))
        };
        let costs = prices
            .costs
            .iter()
            .map(|c| {
                Ok((
                    tariff_id(c.tariff_id)?,
                    i32::from(c.period.get()),
                    c.cost.amount.units(),
                    c.cost.currency.as_str().to_owned(),
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let tariffs = prices
            .tariffs
            .iter()
            .map(|t| Ok((tariff_id(t.tariff_id)?, t)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.write(async |tx| {
            // The fetch row first: its row lock serialises replacements.
            tx.execute(
                "INSERT INTO upstream_costs_fetch (id, fetched_ms) VALUES (1, $1)
                 ON CONFLICT (id) DO UPDATE SET fetched_ms = excluded.fetched_ms",
                &[&now_ms()],
            )
            .await
            .map_err(db)?;
            tx.batch_execute("DELETE FROM upstream_costs; DELETE FROM upstream_tariffs;")
                .await
                .map_err(db)?;
            let insert = tx
                .prepare(
                    "INSERT INTO upstream_costs (tariff_id, period_months, amount_e4, currency)
                     VALUES ($1, $2, $3, $4)",
                )
                .await
                .map_err(db)?;
            for (tariff, period, amount, currency) in &costs {
                tx.execute(&insert, &[tariff, period, amount, currency])
                    .await
                    .map_err(db)?;
            }
            let insert = tx
                .prepare(
                    "INSERT INTO upstream_tariffs
                         (position, tariff_id, intname, additionintname, name, trial)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (tariff_id) DO NOTHING",
                )
                .await
                .map_err(db)?;
            for (position, (tariff, t)) in tariffs.iter().enumerate() {
                let position = i64::try_from(position).unwrap_or(i64::MAX);
                tx.execute(
                    &insert,
                    &[
                        &position,
                        tariff,
                        &t.intname,
                        &t.additionintname,
                        &t.name,
                        &t.trial,
                    ],
                )
                .await
                .map_err(db)?;
            }
            Ok(())
        })
    }

    fn upstream(&self) -> Result<Option<(UpstreamPrices, i64)>, StoreError> {
        self.read(async |tx| {
            let Some(fetched) = tx
                .query_opt(
                    "SELECT fetched_ms FROM upstream_costs_fetch WHERE id = 1",
                    &[],
                )
                .await
                .map_err(db)?
            else {
                return Ok(None);
            };
            let fetched: i64 = get(&fetched, 0)?;
            let rows = tx
                .query(
                    "SELECT tariff_id, period_months, amount_e4, currency FROM upstream_costs
                     ORDER BY tariff_id, period_months, currency COLLATE \"C\"",
                    &[],
                )
                .await
                .map_err(db)?;
            let costs = rows
                .iter()
                .map(|r| {
                    Ok(UpstreamCost {
                        tariff_id: tariff(r, 0)?,
                        period: months(r, 1)?,
                        cost: money(r, 2, 3)?,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            let rows = tx
                .query(
                    "SELECT tariff_id, intname, additionintname, name, trial FROM upstream_tariffs
                     ORDER BY position",
                    &[],
                )
                .await
                .map_err(db)?;
            let tariffs = rows
                .iter()
                .map(|r| {
                    Ok(UpstreamTariff {
                        tariff_id: tariff(r, 0)?,
                        intname: get(r, 1)?,
                        additionintname: get(r, 2)?,
                        name: get(r, 3)?,
                        trial: get(r, 4)?,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok(Some((UpstreamPrices { tariffs, costs }, fetched)))
        })
    }

    fn record_balance(&self, balance: &Money) -> Result<(), StoreError> {
        self.write(async |tx| {
            tx.execute(
                "INSERT INTO upstream_balance (id, amount_e4, currency, read_ms)
                 VALUES (1, $1, $2, $3)
                 ON CONFLICT (id) DO UPDATE SET amount_e4 = excluded.amount_e4,
                     currency = excluded.currency, read_ms = excluded.read_ms",
                &[
                    &balance.amount.units(),
                    &balance.currency.as_str(),
                    &now_ms(),
                ],
            )
            .await
            .map_err(db)
            .map(drop)
        })
    }

    fn balance(&self) -> Result<Option<(Money, i64)>, StoreError> {
        self.read(async |tx| {
            let row = tx
                .query_opt(
                    "SELECT amount_e4, currency, read_ms FROM upstream_balance WHERE id = 1",
                    &[],
                )
                .await
                .map_err(db)?;
            row.map(|r| Ok((money(&r, 0, 1)?, get(&r, 2)?))).transpose()
        })
    }
}

#[cfg(test)]
mod tests;
