//! [`OrderDesk`]: every order operation, for the HTTP API, the CLI and billing systems that
//! embed the host. Each operation is one method; they block (database, plugin, upstream), so
//! async callers run them on a blocking thread.
//!
//! The desk keeps no order state of its own: the store's compare-and-set transitions decide
//! every race, so several desks — the server's worker, an API request and a CLI run against the
//! same database — never place one order twice.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::buy::{BuyRequest, LICENCE_RULE, is_licence_id, price_in_list};
use super::journal::{Journal, Seen};
use super::settle::{Settlement, settle_place};
use super::{
    Amendment, Change, CostStore, Created, HistoryEntry, ListFilter, NewOrder, Order, OrderId,
    OrderState, OrderStore, SqliteStore, StoreError, UpstreamCost,
};
use crate::bindings::{orders as hooks, pricing, types};
use crate::capabilities::Grants;
use crate::config::{Config, ConfigError, OrderMode};
use crate::runtime::{Fault, HookCall, HookResult, Runtime};
use crate::service::{Reseller, order_error_message};

/// How an upstream operation went wrong, for callers that branch on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamFailure {
    /// Upstream refused (an error document): nothing changed upstream.
    Refused,
    /// The request never left: nothing changed upstream; it may be tried again.
    NotSent,
    /// The request may have reached upstream; its outcome is unknown.
    InDoubt,
}

/// Why an order operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum DeskError {
    /// No order has this ID.
    #[error("no such order")]
    NotFound,
    /// The request is wrong; the message says which part.
    #[error("{0}")]
    Invalid(String),
    /// The order is not in a state that allows the operation.
    #[error("{message}")]
    Conflict {
        /// The order's state now.
        state: OrderState,
        /// What is wrong, for the operator.
        message: String,
    },
    /// The operation cannot be done with this configuration (manual mode, no price, …).
    #[error("{0}")]
    Unavailable(String),
    /// Upstream, or the plugin talking to it, did not do it.
    #[error("{message}")]
    Upstream {
        /// How it failed.
        failure: UpstreamFailure,
        /// What happened, for the operator.
        message: String,
    },
    /// The configuration cannot be loaded.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database or the host failed.
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for DeskError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => DeskError::NotFound,
            StoreError::Conflict { current } => DeskError::Conflict {
                state: current,
                message: format!("the order is {current} now: someone else changed it first"),
            },
            StoreError::Forbidden { from, to } => DeskError::Conflict {
                state: from,
                message: format!("an order that is {from} cannot become {to}"),
            },
            StoreError::Invalid(m) => DeskError::Invalid(m),
            e @ (StoreError::SchemaTooNew { .. } | StoreError::Database(_)) => {
                DeskError::Internal(e.to_string())
            }
        }
    }
}

/// The result of marking an order paid.
#[derive(Clone, Debug, Serialize)]
pub struct Marked {
    /// The order as it is now.
    pub order: Order,
    /// `false` when it was already paid (or further along): nothing changed.
    pub changed: bool,
}

/// The result of fetching upstream's prices.
#[derive(Clone, Debug, Serialize)]
pub struct PriceRefresh {
    /// The upstream costs stored (one per module and period).
    pub costs: usize,
    /// The catalogue's modules whose costs changed to upstream's.
    pub modules_updated: usize,
    /// Modules upstream priced that the catalogue does not have.
    pub unknown_tariffs: Vec<u64>,
}

/// One placement attempt's end.
#[derive(Clone, Debug)]
pub enum Attempt {
    /// The attempt ran; the order is in its new state. `retry` when nothing was sent and the
    /// order is back in `paid`.
    Settled {
        /// The order now.
        order: Order,
        /// Whether the worker should try again later.
        retry: bool,
    },
    /// Someone else holds or settled the order; it is as given.
    NotClaimed(Order),
}

/// Every order operation; see the [module documentation](self).
pub struct OrderDesk {
    reseller: Arc<Reseller>,
    orders: Arc<dyn OrderStore>,
    costs: Arc<dyn CostStore>,
    wake: tokio::sync::Notify,
    /// The file whose lock makes this desk the database's one placer, if the store has a file.
    lock_path: Option<PathBuf>,
    /// Held while this desk is the placer.
    placer: Mutex<Option<PlacerLock>>,
}

/// The lock that makes one desk the only one placing orders from a database: only the placer
/// claims orders, so a `placing` order found when the lock is taken was left by a placer that
/// stopped, and can be marked in doubt without racing a live request.
#[derive(Debug)]
enum PlacerLock {
    /// An exclusive lock on a file beside the database, released when the process ends.
    File {
        /// Held open for the lock.
        _file: std::fs::File,
    },
    /// A store without a file: only this process uses it.
    InProcess,
}

impl OrderDesk {
    /// Opens the configured SQLite database and loads the host on `config`, with the upstream
    /// costs stored in the database applied (once: the plugin is loaded and checked one time).
    /// Stored costs that no longer price the catalogue are ignored, with a warning; a later
    /// refresh replaces them.
    pub fn open(runtime: Runtime, config: Config) -> Result<Arc<OrderDesk>, DeskError> {
        let path = config.order_database();
        let store = Arc::new(open_store(&path)?);
        let stored = store.upstream_costs()?.map(|(costs, _)| costs);
        let reseller = match stored {
            Some(costs) if !costs.is_empty() => {
                Reseller::with_upstream_costs(runtime.clone(), config.clone(), costs).or_else(
                    |e| {
                        tracing::warn!("the stored upstream costs cannot be applied: {e}");
                        Reseller::new(runtime, config)
                    },
                )?
            }
            _ => Reseller::new(runtime, config)?,
        };
        let mut lock = path.into_os_string();
        lock.push(".placer-lock");
        Ok(OrderDesk::build(
            Arc::new(reseller),
            store.clone(),
            store,
            Some(PathBuf::from(lock)),
        ))
    }

    /// A desk over any stores; applies the upstream costs stored in `costs`.
    ///
    /// Stores without a file are taken to belong to this process alone: a multi-instance store
    /// must come with its own way of electing the placer.
    pub fn new(
        reseller: Arc<Reseller>,
        orders: Arc<dyn OrderStore>,
        costs: Arc<dyn CostStore>,
    ) -> Result<Arc<OrderDesk>, DeskError> {
        if let Some((stored, _)) = costs.upstream_costs()?
            && !stored.is_empty()
            && let Err(e) = reseller.set_upstream_costs(stored)
        {
            // The configured costs keep serving; a later refresh replaces the stored ones.
            tracing::warn!("the stored upstream costs cannot be applied, so they are ignored: {e}");
        }
        Ok(OrderDesk::build(reseller, orders, costs, None))
    }

    fn build(
        reseller: Arc<Reseller>,
        orders: Arc<dyn OrderStore>,
        costs: Arc<dyn CostStore>,
        lock_path: Option<PathBuf>,
    ) -> Arc<OrderDesk> {
        warn_if_no_price_for_the_period(&reseller);
        Arc::new(OrderDesk {
            reseller,
            orders,
            costs,
            wake: tokio::sync::Notify::new(),
            lock_path,
            placer: Mutex::new(None),
        })
    }

    /// Makes this desk the one that places orders from its database, if no other process
    /// (a server, a CLI run) is; then marks orders a stopped placer left `placing` as in doubt
    /// (their request may have reached upstream) and returns them. Placing — [`place`],
    /// [`run`] — needs this first.
    ///
    /// [`place`]: Self::place
    /// [`run`]: Self::run
    pub fn become_placer(&self) -> Result<Vec<Order>, DeskError> {
        let mut placer = self.placer.lock().unwrap_or_else(PoisonError::into_inner);
        if placer.is_none() {
            *placer = Some(match &self.lock_path {
                None => PlacerLock::InProcess,
                Some(path) => PlacerLock::File {
                    _file: lock_file(path)?,
                },
            });
        }
        drop(placer);
        self.recover()
    }

    fn is_placer(&self) -> bool {
        self.placer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
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
    /// the same licence and module. The price is the one the partner's price list shows for the
    /// configured period.
    pub fn buy(&self, request: &BuyRequest) -> Result<Created, DeskError> {
        let active = self.reseller.active();
        let config = active.config();
        let module = config
            .catalogue
            .modules
            .iter()
            .find(|m| config.tariff_id(m) == request.tariff_id)
            .ok_or_else(|| {
                DeskError::Invalid(format!("module_id: {} is not sold here", request.tariff_id))
            })?;
        let named = [&module.intname, &module.additionintname]
            .iter()
            .any(|n| n.eq_ignore_ascii_case(&request.module));
        if !named {
            return Err(DeskError::Invalid(format!(
                "module: `{}` is not the name of module {}",
                request.module, request.tariff_id
            )));
        }
        if !module.orderable {
            return Err(DeskError::Unavailable(format!(
                "{} cannot be ordered now",
                module.name
            )));
        }
        let months = config.orders.period_months;
        let doc = active
            .export_prices(&panel_query(Some(request.tariff_id)))
            .map_err(|e| {
                tracing::error!("pricing a Buy redirect: {e}");
                DeskError::Unavailable("the price of this module cannot be computed now".to_owned())
            })?;
        let price = price_in_list(&doc.body, request.tariff_id, months).ok_or_else(|| {
            DeskError::Unavailable(format!(
                "{} has no price for {months} month(s) in the price list",
                module.name
            ))
        })?;
        let new = NewOrder {
            licence_id: request.licence_id.clone(),
            licence_ip: request.licence_ip,
            tariff_id: request.tariff_id,
            service_name: module.intname.clone(),
            price,
            period_months: u32::from(months),
            autoprolong: config.orders.autoprolong,
        };
        Ok(self.orders.create_or_reuse_new(&new)?)
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
        Ok(self
            .orders
            .transition(id, order.state, OrderState::Placed, change)?)
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

    /// Binds a placed module to another licence (`addition.edit`). In manual mode the operator
    /// did it by hand and this records it.
    pub fn rebind(
        &self,
        id: &OrderId,
        licence_id: &str,
        licence_ip: Option<IpAddr>,
        actor: &str,
    ) -> Result<Order, DeskError> {
        let licence_id = licence_id.trim();
        if !is_licence_id(licence_id) {
            return Err(DeskError::Invalid(format!("licence: {LICENCE_RULE}")));
        }
        let (order, service_id) = self.placed(id)?;
        let note = format!(
            "rebound from licence {} to {licence_id}{}",
            order.licence_id,
            self.manual_note()
        );
        if self.mode() == OrderMode::Automatic {
            self.operate(
                id,
                &HookCall::Rebind {
                    service_id,
                    licence_id: licence_id.to_owned(),
                },
            )?;
        }
        let amendment = Amendment {
            licence_id: Some(licence_id.to_owned()),
            licence_ip: Some(licence_ip),
        };
        Ok(self.orders.amend(
            id,
            OrderState::Placed,
            &amendment,
            Change::by(actor).with_note(note),
        )?)
    }

    /// Renews a placed module for `months` (`service.prolong`).
    pub fn renew(&self, id: &OrderId, months: u16, actor: &str) -> Result<Order, DeskError> {
        if months == 0 || u32::from(months) > super::MAX_PERIOD_MONTHS {
            return Err(DeskError::Invalid(format!(
                "period: expected 1 to {} months",
                super::MAX_PERIOD_MONTHS
            )));
        }
        let (_, service_id) = self.placed(id)?;
        if self.mode() == OrderMode::Automatic {
            self.operate(
                id,
                &HookCall::Renew {
                    service_id,
                    period: months,
                },
            )?;
        }
        let note = format!("renewed for {months} month(s){}", self.manual_note());
        Ok(self.orders.amend(
            id,
            OrderState::Placed,
            &Amendment::default(),
            Change::by(actor).with_note(note),
        )?)
    }

    /// Removes a placed module upstream (`addition.delete`).
    pub fn remove(&self, id: &OrderId, actor: &str) -> Result<Order, DeskError> {
        let order = self.orders.get(id)?;
        if order.state == OrderState::Removed {
            return Ok(order);
        }
        let (_, service_id) = self.placed(id)?;
        if self.mode() == OrderMode::Automatic {
            self.operate(id, &HookCall::Remove { service_id })?;
        }
        let note = format!("removed{}", self.manual_note());
        Ok(self.orders.transition(
            id,
            OrderState::Placed,
            OrderState::Removed,
            Change::by(actor).with_note(note),
        )?)
    }

    /// One placement attempt for a paid order, now (automatic mode only, and only by the
    /// placer: see [`become_placer`](Self::become_placer)).
    pub fn place(&self, id: &OrderId, actor: &str) -> Result<Attempt, DeskError> {
        self.attempt(id, actor, false)
    }

    fn recover(&self) -> Result<Vec<Order>, DeskError> {
        let interrupted = self.orders.mark_interrupted_in_doubt()?;
        for order in &interrupted {
            tracing::warn!(
                order = %order.id,
                licence = order.licence_id,
                tariff = order.tariff_id,
                "a placement was interrupted: the order is in doubt until an operator checks upstream"
            );
        }
        Ok(interrupted)
    }

    /// Fetches what upstream charges now (the plugin's `upstream-costs` hook, `pricelist.export`
    /// upstream), keeps it in the database and makes the catalogue's costs follow it.
    pub fn refresh_prices(&self) -> Result<PriceRefresh, DeskError> {
        let (result, _) = self.invoke(&HookCall::UpstreamCosts, None);
        let offers = match result {
            Ok(HookResult::Costs(Ok(offers))) => offers,
            Ok(HookResult::Costs(Err(e))) => {
                return Err(DeskError::Upstream {
                    failure: match e {
                        types::OrderError::NotSent(_) => UpstreamFailure::NotSent,
                        _ => UpstreamFailure::Refused,
                    },
                    message: order_error_message(&e),
                });
            }
            Ok(_) => {
                return Err(DeskError::Internal(
                    "the plugin answered another hook".into(),
                ));
            }
            Err(fault) => return Err(plugin_failure(&fault)),
        };
        let costs: Vec<UpstreamCost> = offers
            .iter()
            .flat_map(|offer| {
                offer.costs.iter().map(|pc| UpstreamCost {
                    tariff_id: offer.tariff_id,
                    period_months: u32::from(pc.months),
                    amount_e4: pc.cost.units,
                    currency: pc.cost.currency.clone(),
                })
            })
            .collect();
        if let Err(e) = UpstreamCost::validate_all(&costs) {
            return Err(DeskError::Upstream {
                failure: UpstreamFailure::Refused,
                message: format!("the plugin's upstream costs are not usable: {e}"),
            });
        }
        let active = self.reseller.active();
        let mut unknown_tariffs: Vec<u64> = offers
            .iter()
            .map(|o| o.tariff_id)
            .filter(|t| {
                !active
                    .config()
                    .catalogue
                    .modules
                    .iter()
                    .any(|m| active.config().tariff_id(m) == *t)
            })
            .collect();
        drop(active);
        unknown_tariffs.sort_unstable();
        unknown_tariffs.dedup();
        // Applied (and so checked by a price export) first, kept only if that worked: costs
        // that cannot price are never stored.
        let modules_updated = self
            .reseller
            .set_upstream_costs(costs.clone())
            .map_err(|e| DeskError::Upstream {
                failure: UpstreamFailure::Refused,
                message: format!(
                    "upstream's costs cannot price the catalogue, so they are not used: {e}"
                ),
            })?;
        self.costs.replace_upstream_costs(&costs)?;
        tracing::info!(
            costs = costs.len(),
            modules_updated,
            "upstream prices refreshed"
        );
        Ok(PriceRefresh {
            costs: costs.len(),
            modules_updated,
            unknown_tariffs,
        })
    }

    /// Places paid orders as they come, until the process ends: woken by [`mark_paid`] and
    /// [`retry`], and every `orders.poll_ms` for orders paid elsewhere (another process on the
    /// same database, an order whose retry is due). Orders whose request never left are tried
    /// again after `retry_initial_ms`, doubling up to `retry_max_ms`, and marked failed after
    /// `max_attempts`. Does nothing in manual mode.
    ///
    /// Call [`become_placer`](Self::become_placer) first; without it this returns at once.
    ///
    /// [`mark_paid`]: Self::mark_paid
    /// [`retry`]: Self::retry
    pub async fn run(self: Arc<Self>) {
        if !self.is_placer() {
            tracing::error!("the placement worker needs the placer lock; no order is placed");
            return;
        }
        // Order → (not before, attempts whose request never left, in a row).
        let mut waiting: HashMap<OrderId, (Instant, u32)> = HashMap::new();
        loop {
            let active = self.reseller.active();
            let settings = active.config().orders.clone();
            let automatic = active.config().order_mode() == OrderMode::Automatic;
            drop(active);
            if automatic {
                let desk = self.clone();
                // Oldest first.
                let paid =
                    tokio::task::spawn_blocking(move || desk.orders.orders_to_resume()).await;
                let paid: Vec<Order> = match paid {
                    Ok(Ok(orders)) => orders
                        .into_iter()
                        .filter(|o| o.state == OrderState::Paid)
                        .collect(),
                    Ok(Err(e)) => {
                        tracing::error!("cannot list paid orders: {e}");
                        Vec::new()
                    }
                    Err(e) => {
                        tracing::error!("the order listing task failed: {e}");
                        Vec::new()
                    }
                };
                if !paid.is_empty() {
                    waiting.retain(|id, _| paid.iter().any(|o| &o.id == id));
                }
                for order in paid {
                    let (not_before, tries) = waiting
                        .get(&order.id)
                        .copied()
                        .unwrap_or((Instant::now(), 0));
                    if not_before > Instant::now() {
                        continue;
                    }
                    let tries = tries.saturating_add(1);
                    let last_chance = tries >= settings.max_attempts;
                    let desk = self.clone();
                    let id = order.id.clone();
                    let attempt = tokio::task::spawn_blocking(move || {
                        desk.attempt(&id, "worker", last_chance)
                    })
                    .await;
                    match attempt {
                        Ok(Ok(Attempt::Settled { retry: true, .. })) => {
                            let delay = backoff(&settings, tries);
                            tracing::info!(order = %order.id, attempt = tries, ?delay, "not sent; will retry");
                            waiting.insert(order.id, (later(delay), tries));
                        }
                        Ok(Ok(Attempt::Settled { order, .. })) => {
                            tracing::info!(order = %order.id, state = %order.state, "placement settled");
                            waiting.remove(&order.id);
                        }
                        Ok(Ok(Attempt::NotClaimed(_))) => {
                            waiting.remove(&order.id);
                        }
                        Ok(Err(e)) => {
                            tracing::error!(order = %order.id, "placement: {e}");
                            let delay = backoff(&settings, tries);
                            waiting.insert(order.id, (later(delay), tries));
                        }
                        Err(e) => {
                            tracing::error!(order = %order.id, "the placement task failed: {e}")
                        }
                    }
                }
            }
            let poll = Duration::from_millis(settings.poll_ms);
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// Fetches upstream's prices every `upstream.prices_refresh_minutes` (read at each round),
    /// until the process ends; does nothing while it is 0.
    pub async fn run_price_refresh(self: Arc<Self>) {
        loop {
            let minutes = self
                .reseller
                .active()
                .config()
                .upstream
                .prices_refresh_minutes;
            if minutes == 0 {
                tokio::time::sleep(Duration::from_secs(60)).await;
                continue;
            }
            tokio::time::sleep(Duration::from_secs(minutes.saturating_mul(60))).await;
            let desk = self.clone();
            match tokio::task::spawn_blocking(move || desk.refresh_prices()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!("scheduled upstream price refresh: {e}"),
                Err(e) => tracing::error!("the price refresh task failed: {e}"),
            }
        }
    }

    fn wake_worker(&self) {
        if self.mode() == OrderMode::Automatic {
            self.wake.notify_one();
        }
    }

    fn manual_note(&self) -> &'static str {
        match self.mode() {
            OrderMode::Manual => " by an operator (manual mode: nothing sent upstream)",
            OrderMode::Automatic => "",
        }
    }

    /// The order, if it is placed, and its service ID.
    fn placed(&self, id: &OrderId) -> Result<(Order, String), DeskError> {
        let order = self.orders.get(id)?;
        match (&order.state, order.upstream_service_id.clone()) {
            (OrderState::Placed, Some(service_id)) => Ok((order, service_id)),
            (&state, _) => Err(DeskError::Conflict {
                state,
                message: format!(
                    "only a placed order can be changed upstream; this one is {state}"
                ),
            }),
        }
    }

    fn attempt(&self, id: &OrderId, actor: &str, last_chance: bool) -> Result<Attempt, DeskError> {
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
        let order = match self.orders.transition(
            id,
            OrderState::Paid,
            OrderState::Placing,
            Change::by(actor),
        ) {
            Ok(order) => order,
            Err(StoreError::Conflict { .. }) => {
                return Ok(Attempt::NotClaimed(self.orders.get(id)?));
            }
            Err(e) => return Err(e.into()),
        };
        let hook_order = hooks::Order {
            id: order.id.to_string(),
            licence_id: order.licence_id.clone(),
            licence_ip: order.licence_ip.map(|ip| ip.to_string()),
            tariff_id: order.tariff_id,
            period: u16::try_from(order.period_months).unwrap_or(u16::MAX),
            autoprolong: order.autoprolong,
            price: types::Money {
                units: order.price.amount_e4,
                currency: order.price.currency.clone(),
            },
        };
        let (result, seen) = self.invoke(&HookCall::Place(hook_order), Some(id));
        let settlement = match result {
            Ok(HookResult::Placed(answer)) => settle_place(Ok(answer.map(|p| p.service_id)), &seen),
            Ok(_) => settle_place(
                Err(&Fault::Host("the plugin answered another hook".into())),
                &seen,
            ),
            Err(fault) => settle_place(Err(&fault), &seen),
        };
        let change = Change::by(actor);
        let (to, change) = match settlement {
            Settlement::Placed(service_id) => (
                OrderState::Placed,
                change
                    .with_service_id(service_id)
                    .with_note("placed upstream"),
            ),
            Settlement::Failed(why) => (OrderState::Failed, change.with_error(why)),
            Settlement::InDoubt(why) => (OrderState::InDoubt, change.with_error(why)),
            Settlement::Retry(why) if last_chance => (
                OrderState::Failed,
                change.with_error(format!(
                    "{why} (gave up after {} attempts; nothing reached upstream)",
                    order.attempts
                )),
            ),
            Settlement::Retry(why) => (
                OrderState::Paid,
                change
                    .with_error(why)
                    .with_note("nothing reached upstream; queued again"),
            ),
        };
        let retry = to == OrderState::Paid;
        // The outcome must not be lost: a busy or failing database gets a few more chances.
        // If it never takes it, the order stays `placing`, and the next start marks it in doubt.
        let mut wait = Duration::from_millis(100);
        let order = loop {
            match self
                .orders
                .transition(id, OrderState::Placing, to, change.clone())
            {
                Ok(order) => break order,
                Err(e @ (StoreError::Database(_) | StoreError::SchemaTooNew { .. }))
                    if wait < Duration::from_secs(5) =>
                {
                    tracing::warn!(order = %id, "recording the outcome ({to}) failed, retrying: {e}");
                    std::thread::sleep(wait);
                    wait *= 2;
                }
                Err(e) => {
                    tracing::error!(order = %id, "the outcome {to} of this placement could not be recorded: {e}");
                    return Err(e.into());
                }
            }
        };
        Ok(Attempt::Settled { order, retry })
    }

    /// Runs an order hook other than `place` for a placed order and says how it ended.
    fn operate(&self, id: &OrderId, hook: &HookCall) -> Result<(), DeskError> {
        let (result, seen) = self.invoke(hook, Some(id));
        // The rules of placement apply: "done" stands for a service ID.
        let settlement = match result {
            Ok(HookResult::Done(answer)) => {
                settle_place(Ok(answer.map(|()| "done".to_owned())), &seen)
            }
            Ok(_) => settle_place(
                Err(&Fault::Host("the plugin answered another hook".into())),
                &seen,
            ),
            Err(fault) => settle_place(Err(&fault), &seen),
        };
        let (failure, message) = match settlement {
            Settlement::Placed(_) => return Ok(()),
            Settlement::Failed(m) => (UpstreamFailure::Refused, m),
            Settlement::InDoubt(m) => (UpstreamFailure::InDoubt, m),
            Settlement::Retry(m) => (UpstreamFailure::NotSent, m),
        };
        Err(DeskError::Upstream { failure, message })
    }

    /// Runs a hook with upstream calls recorded in `order`'s history.
    fn invoke(
        &self,
        hook: &HookCall,
        order: Option<&OrderId>,
    ) -> (Result<HookResult, Fault>, Vec<Seen>) {
        let active = self.reseller.active();
        let policy = &active.grants().upstream;
        let journal = Journal::new(policy.client().clone(), self.orders.clone(), order.cloned());
        let grants = Grants {
            upstream: Arc::new(policy.with_client(journal.clone())),
            ..active.grants().clone()
        };
        let (result, usage) = active.plugin().invoke(&grants, hook);
        tracing::debug!(fuel = usage.fuel, elapsed = ?usage.elapsed, "order hook");
        if let Err(fault) = &result {
            tracing::error!(order = order.map(OrderId::as_str), "{fault}");
        }
        (result, journal.seen())
    }
}

/// Says so in the log when no module of the price list has a price for the period a Buy
/// orders: every Buy would be refused.
fn warn_if_no_price_for_the_period(reseller: &Reseller) {
    let active = reseller.active();
    let config = active.config();
    let months = config.orders.period_months;
    let Ok(doc) = active.export_prices(&panel_query(None)) else {
        return;
    };
    let priced = config
        .catalogue
        .modules
        .iter()
        .any(|m| price_in_list(&doc.body, config.tariff_id(m), months).is_some());
    if !priced && !config.catalogue.modules.is_empty() {
        tracing::warn!(
            "orders.period_months = {months}, but no module of the price list has a price for \
             {months} month(s): every Buy will be refused (see the plugin's periods)"
        );
    }
}

/// A plugin that could not be run, as an upstream failure: nothing is known to have been sent.
fn plugin_failure(fault: &Fault) -> DeskError {
    DeskError::Upstream {
        failure: UpstreamFailure::NotSent,
        message: format!("the plugin failed: {fault}"),
    }
}

/// Takes the exclusive lock on `path`, creating it if needed, without waiting.
fn lock_file(path: &Path) -> Result<std::fs::File, DeskError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| DeskError::Internal(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(DeskError::Unavailable(format!(
            "another process places the orders of this database (it holds {}): a running \
             server places paid orders itself",
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(DeskError::Internal(format!(
            "cannot lock {}: {e}",
            path.display()
        ))),
    }
}

/// The panel's query for the orderable modules as XML: the whole list, or one module.
fn panel_query(pricelist: Option<u64>) -> pricing::Query {
    pricing::Query {
        itemtype: "addition".to_owned(),
        only_available: true,
        pricelist,
        format: pricing::Format::Xml,
        lang: None,
    }
}

/// `delay` from now, or as late as the clock goes.
fn later(delay: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(delay)
        .unwrap_or(now + Duration::from_secs(86_400))
}

/// The wait before attempt `tries + 1`.
fn backoff(settings: &crate::config::OrdersConfig, tries: u32) -> Duration {
    let factor = 1u64 << tries.saturating_sub(1).min(20);
    Duration::from_millis(
        settings
            .retry_initial_ms
            .saturating_mul(factor)
            .min(settings.retry_max_ms),
    )
}

/// Opens (creating if needed) the SQLite order database at `path`.
pub fn open_store(path: &Path) -> Result<SqliteStore, DeskError> {
    SqliteStore::open(path).map_err(|e| {
        DeskError::Internal(format!(
            "cannot open the order database {}: {e}",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OrdersConfig;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let settings = OrdersConfig {
            retry_initial_ms: 1000,
            retry_max_ms: 5000,
            ..OrdersConfig::default()
        };
        let waits: Vec<u64> = (1..=5)
            .map(|t| u64::try_from(backoff(&settings, t).as_millis()).unwrap_or(0))
            .collect();
        assert_eq!(waits, [1000, 2000, 4000, 5000, 5000]);
        assert_eq!(backoff(&settings, u32::MAX), Duration::from_millis(5000));
    }
}
