//! [`OrderDesk`]: every order operation, for the HTTP API, the CLI and billing systems that
//! embed the host. Each operation is one method; they block (database, plugin, upstream), so
//! async callers run them on a blocking thread. The background work of a server (the placement
//! worker, scheduled price refreshes) is in [`super::worker`].
//!
//! The desk keeps no order state of its own: the store's compare-and-set transitions decide
//! every race, so several desks — the server's worker, an API request and a CLI run against the
//! same database — never place one order twice.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::buy::BuyRequest;
use super::placement::{self, Attempt};
use super::placer::Placer;
use super::postgres::PgOptions;
use super::prices::{self, PriceRefresh};
use super::store::{Backend, Interrupted};
use super::{
    Change, Created, DeskError, HistoryEntry, ListFilter, Order, OrderId, OrderState, PgStore,
    SqliteStore, StoreError,
};
use crate::config::{Config, OrderMode};
use crate::reseller::Reseller;
use crate::runtime::Runtime;

/// The result of marking an order paid.
#[derive(Clone, Debug, Serialize)]
pub struct Marked {
    /// The order as it is now.
    pub order: Order,
    /// `false` when it was already paid (or further along): nothing changed.
    pub changed: bool,
}

/// Every order operation; see the [module documentation](self).
pub struct OrderDesk {
    reseller: Arc<Reseller>,
    orders: Arc<dyn Backend>,
    wake: tokio::sync::Notify,
    placer: Placer,
    buys: super::buy::BuyStats,
    /// When the stored upstream prices this desk last looked at were fetched.
    prices_seen: std::sync::Mutex<Option<i64>>,
}

impl OrderDesk {
    /// Opens the configured SQLite database and loads the host on `config`, with the upstream
    /// costs stored in the database applied (once: the plugin is loaded and checked one time).
    /// Stored costs that no longer price the catalogue are ignored, with a warning; a later
    /// refresh replaces them.
    ///
    /// A `postgres://` database is shared with other hosts: every host places (see
    /// [`super::postgres`]); a SQLite file has one placer at a time (a file lock).
    pub fn open(runtime: Runtime, config: Config) -> Result<Arc<OrderDesk>, DeskError> {
        let path = config.order_database();
        let (store, placer): (Arc<dyn Backend>, Placer) = match config.order_database_url() {
            Some(url) => {
                let orders = &config.orders;
                let mut options = PgOptions::new(url);
                if let Some(var) = &orders.database_password_env {
                    options.password = Some(std::env::var(var).map_err(|_| {
                        DeskError::Unavailable(format!(
                            "orders.database_password_env: the environment variable {var} is \
                             not set"
                        ))
                    })?);
                }
                options.connections = usize::try_from(orders.database_connections).unwrap_or(8);
                options.lease = Duration::from_millis(orders.claim_lease_ms);
                (Arc::new(PgStore::open(&options)?), Placer::shared())
            }
            None => (
                Arc::new(SqliteStore::open(&path)?),
                Placer::for_database(&path),
            ),
        };
        let stored = store.upstream()?.map(|(prices, _)| prices);
        let reseller = match stored {
            Some(prices) if !prices.costs.is_empty() => {
                Reseller::with_upstream(runtime.clone(), config.clone(), prices).or_else(|e| {
                    tracing::warn!("the stored upstream prices cannot be applied: {e}");
                    Reseller::new(runtime, config)
                })?
            }
            _ => Reseller::new(runtime, config)?,
        };
        Ok(OrderDesk::build(Arc::new(reseller), store, placer))
    }

    /// A desk over any backend; applies the upstream costs stored in it.
    ///
    /// A backend whose claims expire ([`claims_expire`]) is shared: every desk on it places.
    /// Others are taken to belong to this process alone.
    ///
    /// [`claims_expire`]: super::OrderStore::claims_expire
    pub fn new(
        reseller: Arc<Reseller>,
        backend: Arc<dyn Backend>,
    ) -> Result<Arc<OrderDesk>, DeskError> {
        if let Some((stored, _)) = backend.upstream()?
            && !stored.costs.is_empty()
            && let Err(e) = reseller.set_upstream(stored)
        {
            // The configured costs keep serving; a later refresh replaces the stored ones.
            tracing::warn!(
                "the stored upstream prices cannot be applied, so they are ignored: {e}"
            );
        }
        let placer = if backend.claims_expire().is_some() {
            Placer::shared()
        } else {
            Placer::in_process()
        };
        Ok(OrderDesk::build(reseller, backend, placer))
    }

    fn build(reseller: Arc<Reseller>, orders: Arc<dyn Backend>, placer: Placer) -> Arc<OrderDesk> {
        super::buy::warn_if_no_price_for_the_period(&reseller.active());
        Arc::new(OrderDesk {
            reseller,
            orders,
            wake: tokio::sync::Notify::new(),
            placer,
            buys: super::buy::BuyStats::default(),
            prices_seen: std::sync::Mutex::new(None),
        })
    }

    /// Everything the desk keeps: orders, operations, events, upstream's prices and balance.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.orders
    }

    /// What became of the Buy redirects since the start: accepted, refused (by reason), and
    /// accepted with a `module` that did not name the module.
    pub fn buy_stats(&self) -> super::buy::BuyCounts {
        self.buys.counts()
    }

    /// Makes this desk the one that places orders from its database, if no other process
    /// (a server, a CLI run) is; then settles what a stopped placer left: a placement or an
    /// operation whose write was marked about to leave is in doubt (never re-sent), one that
    /// sent nothing goes back to be tried again. Placing — [`place`], [`worker::run`] — needs
    /// this first.
    ///
    /// [`place`]: Self::place
    /// [`worker::run`]: super::worker::run
    pub fn become_placer(&self) -> Result<Interrupted, DeskError> {
        self.placer.take()?;
        let interrupted = self.orders.recover_interrupted()?;
        report_interrupted(&interrupted);
        Ok(interrupted)
    }

    /// Settles the claims of hosts that stopped (their lease ran out), as [`become_placer`]
    /// settles what a stopped placer left; nothing with a backend of one placer.
    ///
    /// [`become_placer`]: Self::become_placer
    pub fn settle_expired_claims(&self) -> Result<Interrupted, DeskError> {
        let interrupted = self.orders.recover_expired()?;
        report_interrupted(&interrupted);
        Ok(interrupted)
    }

    /// Whether other hosts place orders from the same database at the same time.
    pub fn shares_placement(&self) -> bool {
        self.placer.is_shared()
    }

    /// Whether this desk places the orders of its database.
    pub fn is_placer(&self) -> bool {
        self.placer.is_held()
    }

    /// The host this desk works for.
    pub fn reseller(&self) -> &Arc<Reseller> {
        &self.reseller
    }

    /// How paid orders are placed now.
    pub fn mode(&self) -> OrderMode {
        self.reseller.active().config().order_mode()
    }

    /// Records the order of a Buy redirect — or returns the unpaid one already recorded for
    /// the same licence and module (see [`super::buy::record`]).
    pub fn buy(&self, request: &BuyRequest) -> Result<Created, DeskError> {
        match super::buy::record(&self.reseller.active(), &*self.orders, request) {
            Ok((created, matched)) => {
                self.buys.accepted(matched.mismatch, matched.other_region);
                Ok(created)
            }
            Err(e) => {
                let mut raw = vec![
                    ("license".to_owned(), request.licence_id.clone()),
                    ("module_id".to_owned(), request.tariff_id.to_string()),
                ];
                raw.extend(request.module.clone().map(|m| ("module".to_owned(), m)));
                self.buys
                    .refused(super::buy::refusal_reason(&e), &e.to_string(), &raw);
                Err(e)
            }
        }
    }

    /// Counts and logs a Buy refused before it reached the desk (a bad parameter, a rate
    /// limit), with its raw parameters.
    pub fn refused_buy(&self, reason: &str, detail: &str, params: &[(String, String)]) {
        self.buys.refused(reason, detail, params);
    }

    /// The order with this ID.
    pub fn get(&self, id: &OrderId) -> Result<Order, DeskError> {
        Ok(self.orders.get(id)?)
    }

    /// The order's history: its transitions and upstream calls, oldest first.
    pub fn history(&self, id: &OrderId) -> Result<Vec<HistoryEntry>, DeskError> {
        Ok(self.orders.history(id)?)
    }

    /// Orders matching `filter`, newest first.
    pub fn list(&self, filter: &ListFilter) -> Result<Vec<Order>, DeskError> {
        Ok(self.orders.list(filter)?)
    }

    /// The billing system says the order is paid. Idempotent: an order already paid (or
    /// further along) is returned unchanged. In automatic mode the placement worker is woken.
    pub fn mark_paid(&self, id: &OrderId, actor: &str) -> Result<Marked, DeskError> {
        let change = Change::by(actor).with_note("paid");
        match self
            .orders
            .transition(id, OrderState::New, OrderState::Paid, change)
        {
            Ok(order) => {
                self.wake_worker();
                Ok(Marked {
                    order,
                    changed: true,
                })
            }
            Err(StoreError::Conflict {
                current: OrderState::Cancelled,
            }) => Err(DeskError::Conflict {
                state: OrderState::Cancelled,
                message: "the order was cancelled; it cannot be paid".to_owned(),
            }),
            Err(StoreError::Conflict { .. }) => Ok(Marked {
                order: self.orders.get(id)?,
                changed: false,
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// An operator placed the order by hand (manual mode) or found it upstream (in doubt), and
    /// gives its service ID. Idempotent for the same service ID.
    pub fn mark_placed(
        &self,
        id: &OrderId,
        service_id: &str,
        actor: &str,
    ) -> Result<Order, DeskError> {
        let service_id = service_id.trim();
        let order = self.orders.get(id)?;
        match order.state {
            OrderState::Paid | OrderState::InDoubt => {}
            OrderState::Placed if order.upstream_service_id.as_deref() == Some(service_id) => {
                return Ok(order);
            }
            state => {
                return Err(DeskError::Conflict {
                    state,
                    message: format!(
                        "only a paid or in-doubt order can be marked placed; this one is {state}"
                    ),
                });
            }
        }
        let change = Change::by(actor)
            .with_service_id(service_id)
            .with_note("placed by an operator");
        let order = self
            .orders
            .transition(id, order.state, OrderState::Placed, change)?;
        // Upstream knows when it expires.
        Ok(match self.mode() {
            OrderMode::Automatic => self.read_expiry(&order),
            OrderMode::Manual => order,
        })
    }

    /// Cancels an order that is not placed: unpaid, paid and waiting, or failed. Idempotent.
    pub fn cancel(&self, id: &OrderId, actor: &str) -> Result<Order, DeskError> {
        let order = self.orders.get(id)?;
        match order.state {
            OrderState::Cancelled => Ok(order),
            OrderState::New | OrderState::Paid | OrderState::Failed => Ok(self.orders.transition(
                id,
                order.state,
                OrderState::Cancelled,
                Change::by(actor).with_note("cancelled"),
            )?),
            state => Err(DeskError::Conflict {
                state,
                message: format!(
                    "an order that is {state} cannot be cancelled{}",
                    match state {
                        OrderState::InDoubt =>
                            ": find out whether upstream has it, then mark it placed or retry",
                        OrderState::Placed => ": remove it instead",
                        _ => "",
                    }
                ),
            }),
        }
    }

    /// Queues a failed order for placement again, or an in-doubt one once an operator has
    /// established that upstream does not have it (`absent_upstream`).
    pub fn retry(
        &self,
        id: &OrderId,
        absent_upstream: bool,
        actor: &str,
    ) -> Result<Order, DeskError> {
        let order = self.orders.get(id)?;
        let note = match order.state {
            OrderState::Failed => "retry after a failure",
            OrderState::InDoubt if absent_upstream => {
                "retry: an operator established the module is absent upstream"
            }
            OrderState::InDoubt => {
                return Err(DeskError::Invalid(
                    "the order is in doubt: it may exist upstream. Retry only after checking \
                     that it does not, and say so with absent_upstream = true; if it exists, \
                     mark it placed instead"
                        .to_owned(),
                ));
            }
            state => {
                return Err(DeskError::Conflict {
                    state,
                    message: format!(
                        "only a failed or in-doubt order can be retried; this one is {state}"
                    ),
                });
            }
        };
        let order = self.orders.transition(
            id,
            order.state,
            OrderState::Paid,
            Change::by(actor).with_note(note),
        )?;
        self.wake_worker();
        Ok(order)
    }

    /// One placement attempt for a paid order, now (automatic mode only, and only by the
    /// placer: see [`become_placer`](Self::become_placer)).
    pub fn place(&self, id: &OrderId, actor: &str) -> Result<Attempt, DeskError> {
        self.attempt(id, actor, false)
    }

    /// Fetches what upstream charges now (the plugin's `upstream-costs` hook, `pricelist.export`
    /// upstream), keeps it in the database and makes the catalogue's costs follow it.
    pub fn refresh_prices(&self) -> Result<PriceRefresh, DeskError> {
        Ok(prices::refresh(&self.reseller, &self.orders)?)
    }

    /// Takes up the upstream prices stored in the database since this desk last looked (another
    /// host fetched them), so that hosts sharing a database price alike. Returns whether what
    /// serves changed.
    pub fn adopt_stored_prices(&self) -> Result<bool, DeskError> {
        let Some((prices, fetched)) = self.orders.upstream()? else {
            return Ok(false);
        };
        let mut seen = self
            .prices_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *seen == Some(fetched) {
            return Ok(false);
        }
        *seen = Some(fetched);
        if prices.costs.is_empty() || prices == self.reseller.upstream() {
            return Ok(false);
        }
        self.reseller.set_upstream(prices)?;
        Ok(true)
    }

    /// The paid orders waiting for placement, oldest first.
    pub(crate) fn paid_orders(&self) -> Result<Vec<Order>, DeskError> {
        let mut orders = self.orders.orders_to_resume()?;
        orders.retain(|o| o.state == OrderState::Paid);
        Ok(orders)
    }

    /// Waits until an order may be waiting: the worker is woken, or `poll` has passed.
    pub(crate) async fn wait_for_work(&self, poll: Duration) {
        tokio::select! {
            () = self.wake.notified() => {}
            () = tokio::time::sleep(poll) => {}
        }
    }

    pub(super) fn wake_worker(&self) {
        if self.mode() == OrderMode::Automatic {
            self.wake.notify_one();
        }
    }

    pub(super) fn manual_note(&self) -> &'static str {
        match self.mode() {
            OrderMode::Manual => " by an operator (manual mode: nothing sent upstream)",
            OrderMode::Automatic => "",
        }
    }

    /// One placement attempt, by the placer; `last_chance` marks the order failed rather than
    /// queue it again when nothing was sent.
    pub(crate) fn attempt(
        &self,
        id: &OrderId,
        actor: &str,
        last_chance: bool,
    ) -> Result<Attempt, DeskError> {
        if self.mode() != OrderMode::Automatic {
            return Err(DeskError::Unavailable(
                "orders are placed by hand in manual mode: mark the order placed".to_owned(),
            ));
        }
        if !self.is_placer() {
            return Err(DeskError::Unavailable(
                "this desk is not the placer of its database (become_placer)".to_owned(),
            ));
        }
        let order = self.orders.get(id)?;
        if order.state == OrderState::Paid
            && let Some(why) = self.hold(&order)
        {
            let order = if order.waiting.as_deref() == Some(why.as_str()) {
                order
            } else {
                tracing::info!(order = %id, "waits: {why}");
                let amendment = super::Amendment {
                    waiting: Some(Some(why)),
                    ..super::Amendment::default()
                };
                self.orders.amend(
                    id,
                    OrderState::Paid,
                    &amendment,
                    Change::by(actor).with_note("waits"),
                )?
            };
            return Ok(Attempt::Waiting(order));
        }
        let attempt = placement::attempt(
            &self.reseller.active(),
            &self.orders,
            id,
            actor,
            last_chance,
        )?;
        if let Attempt::Settled { order, retry } = &attempt
            && order.state == OrderState::Placed
            && order.expires_on.is_none()
        {
            return Ok(Attempt::Settled {
                order: self.read_expiry(order),
                retry: *retry,
            });
        }
        Ok(attempt)
    }

    /// A placed order whose answer gave no expiry date: reads its service upstream (read-only)
    /// for the date. On any failure the order stays as it is; the status sync reads it later.
    fn read_expiry(&self, order: &Order) -> Order {
        let Some(service_id) = order.upstream_service_id.as_deref() else {
            return order.clone();
        };
        let active = self.reseller.active();
        let (answer, _) =
            placement::journaled(&active, &self.orders, Some(&order.id), None, |p, g| match p
                .service(g, service_id)
            {
                Some((r, usage)) => (r.map(Some), usage),
                None => (Ok(None), Default::default()),
            });
        let Ok(Some(Ok(service))) = answer else {
            return order.clone();
        };
        let expires = service.expires.as_ref().and_then(crate::convert::date);
        if expires.is_none() {
            return order.clone();
        }
        let amendment = super::Amendment {
            expires_on: Some(expires),
            ..super::Amendment::default()
        };
        let change = Change::by("worker").with_note("expiry read from upstream");
        self.orders
            .amend(&order.id, OrderState::Placed, &amendment, change)
            .unwrap_or_else(|e| {
                tracing::warn!(order = %order.id, "recording the expiry: {e}");
                order.clone()
            })
    }

    /// Why a paid order should wait rather than be sent now: a required order field is
    /// missing, or the upstream balance (read at most `upstream.balance_max_age_s` ago) cannot
    /// cover it.
    fn hold(&self, order: &Order) -> Option<String> {
        let active = self.reseller.active();
        let config = active.config();
        if let Some(module) = config.module(order.tariff_id) {
            let missing = super::buy::missing_fields(module, &order.fields);
            if !missing.is_empty() {
                return Some(format!(
                    "waiting for the order fields {}: the billing system or the buyer gives them",
                    missing.join(", ")
                ));
            }
        }
        if !config.orders.check_balance || config.upstream.url.is_none() {
            return None;
        }
        let now = super::store::now_ms();
        let max_age = i64::try_from(config.upstream.balance_max_age_s.saturating_mul(1000))
            .unwrap_or(i64::MAX);
        let stored = self.stored_balance().ok().flatten();
        let balance = match stored {
            Some(b) if now.saturating_sub(b.read_ms) <= max_age => b.balance,
            _ => match self.read_balance() {
                Ok(b) => b.balance,
                Err(e) => {
                    // An unknown balance does not hold an order: upstream refuses it if short.
                    tracing::debug!("the balance could not be read before placing: {e}");
                    return None;
                }
            },
        };
        self.short_of(order, &balance)
    }
}

/// Logs what a settlement of interrupted claims found.
fn report_interrupted(interrupted: &Interrupted) {
    for order in &interrupted.in_doubt {
        tracing::warn!(
            order = %order.id,
            licence = order.licence_id,
            tariff = order.tariff_id,
            "a placement was interrupted after its request left: the order is in doubt \
             until an operator or the reconciliation checks upstream"
        );
    }
    for order in &interrupted.requeued {
        tracing::info!(order = %order.id, "a placement was interrupted before sending: queued again");
    }
    for op in &interrupted.operations_in_doubt {
        tracing::warn!(order = %op.order_id, operation = op.id, "{} was interrupted after its request left: in doubt", op.kind);
    }
}
