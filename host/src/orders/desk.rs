//! [`OrderDesk`]: every order operation, for the HTTP API, the CLI and billing systems that
//! embed the host. Each operation is one method; they block (database, plugin, upstream), so
//! async callers run them on a blocking thread. The background work of a server (the placement
//! worker, scheduled price refreshes) is in [`super::worker`].
//!
//! The desk keeps no order state of its own: the store's compare-and-set transitions decide
//! every race, so several desks — the server's worker, an API request and a CLI run against the
//! same database — never place one order twice.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::buy::{BuyRequest, LICENCE_RULE, is_licence_id};
use super::placement::{self, Attempt, Operation, Settlement, Unsent};
use super::placer::{Placer, PlacerError};
use super::prices::{self, PriceRefresh, RefreshError};
use super::{
    Amendment, Change, CostStore, Created, HistoryEntry, ListFilter, Order, OrderId, OrderState,
    OrderStore, SqliteStore, StoreError,
};
use crate::config::{Config, ConfigError, OrderMode};
use crate::money::Months;
use crate::reseller::Reseller;
use crate::runtime::{Fault, Runtime};

/// How an upstream operation went wrong, for callers that branch on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamOutcome {
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
        outcome: UpstreamOutcome,
        /// What happened, for the operator.
        message: String,
    },
    /// The plugin failed (a trap, a limit) before any request reached upstream: the partner's
    /// plugin is at fault, and nothing changed upstream.
    #[error(transparent)]
    Plugin(Fault),
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

/// Every order operation; see the [module documentation](self).
pub struct OrderDesk {
    reseller: Arc<Reseller>,
    orders: Arc<dyn OrderStore>,
    costs: Arc<dyn CostStore>,
    wake: tokio::sync::Notify,
    placer: Placer,
}

impl From<PlacerError> for DeskError {
    fn from(e: PlacerError) -> Self {
        match e {
            PlacerError::Busy(_) => DeskError::Unavailable(e.to_string()),
            PlacerError::Io { .. } => DeskError::Internal(e.to_string()),
        }
    }
}

impl From<RefreshError> for DeskError {
    fn from(e: RefreshError) -> Self {
        match e {
            RefreshError::Fault(fault) => DeskError::from_fault(fault),
            RefreshError::Upstream { not_sent, message } => DeskError::Upstream {
                outcome: if not_sent {
                    UpstreamOutcome::NotSent
                } else {
                    UpstreamOutcome::Refused
                },
                message,
            },
            RefreshError::Unusable(message) => DeskError::Upstream {
                outcome: UpstreamOutcome::Refused,
                message,
            },
            RefreshError::Store(e) => e.into(),
        }
    }
}

impl DeskError {
    /// A fault before anything reached upstream: the plugin's, or the host's.
    fn from_fault(fault: Fault) -> DeskError {
        if fault.is_guest() {
            DeskError::Plugin(fault)
        } else {
            DeskError::Internal(fault.to_string())
        }
    }
}

impl OrderDesk {
    /// Opens the configured SQLite database and loads the host on `config`, with the upstream
    /// costs stored in the database applied (once: the plugin is loaded and checked one time).
    /// Stored costs that no longer price the catalogue are ignored, with a warning; a later
    /// refresh replaces them.
    pub fn open(runtime: Runtime, config: Config) -> Result<Arc<OrderDesk>, DeskError> {
        let path = config.order_database();
        let store = Arc::new(SqliteStore::open(&path)?);
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
        Ok(OrderDesk::build(
            Arc::new(reseller),
            store.clone(),
            store,
            Placer::for_database(&path),
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
        if let Some((stored, _)) = costs.upstream()?
            && !stored.costs.is_empty()
            && let Err(e) = reseller.set_upstream(stored)
        {
            // The configured costs keep serving; a later refresh replaces the stored ones.
            tracing::warn!(
                "the stored upstream prices cannot be applied, so they are ignored: {e}"
            );
        }
        Ok(OrderDesk::build(
            reseller,
            orders,
            costs,
            Placer::in_process(),
        ))
    }

    fn build(
        reseller: Arc<Reseller>,
        orders: Arc<dyn OrderStore>,
        costs: Arc<dyn CostStore>,
        placer: Placer,
    ) -> Arc<OrderDesk> {
        super::buy::warn_if_no_price_for_the_period(&reseller.active());
        Arc::new(OrderDesk {
            reseller,
            orders,
            costs,
            wake: tokio::sync::Notify::new(),
            placer,
        })
    }

    /// Makes this desk the one that places orders from its database, if no other process
    /// (a server, a CLI run) is; then marks orders a stopped placer left `placing` as in doubt
    /// (their request may have reached upstream) and returns them. Placing — [`place`],
    /// [`worker::run`] — needs this first.
    ///
    /// [`place`]: Self::place
    /// [`worker::run`]: super::worker::run
    pub fn become_placer(&self) -> Result<Vec<Order>, DeskError> {
        self.placer.take()?;
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
        super::buy::record(&self.reseller.active(), &*self.orders, request)
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
                &Operation::Rebind {
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

    /// Renews a placed module (`service.prolong`) for `period`, or for the order's own period.
    pub fn renew(
        &self,
        id: &OrderId,
        period: Option<Months>,
        actor: &str,
    ) -> Result<Order, DeskError> {
        let (order, service_id) = self.placed(id)?;
        let months = period.unwrap_or(order.period);
        if self.mode() == OrderMode::Automatic {
            self.operate(
                id,
                &Operation::Renew {
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
            self.operate(id, &Operation::Remove { service_id })?;
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

    /// Fetches what upstream charges now (the plugin's `upstream-costs` hook, `pricelist.export`
    /// upstream), keeps it in the database and makes the catalogue's costs follow it.
    pub fn refresh_prices(&self) -> Result<PriceRefresh, DeskError> {
        Ok(prices::refresh(&self.reseller, &self.orders, &*self.costs)?)
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
        Ok(placement::attempt(
            &self.reseller.active(),
            &self.orders,
            id,
            actor,
            last_chance,
        )?)
    }

    /// Runs an operation on a placed module upstream and says how it ended.
    fn operate(&self, id: &OrderId, operation: &Operation) -> Result<(), DeskError> {
        let settlement = placement::operate(&self.reseller.active(), &self.orders, id, operation);
        let (outcome, message) = match settlement {
            Settlement::Placed(_) => return Ok(()),
            Settlement::Failed(m) => (UpstreamOutcome::Refused, m),
            Settlement::InDoubt(m) => (UpstreamOutcome::InDoubt, m),
            Settlement::Retry(Unsent::NotSent(m)) => (UpstreamOutcome::NotSent, m),
            Settlement::Retry(Unsent::Fault(fault)) => return Err(DeskError::from_fault(fault)),
        };
        Err(DeskError::Upstream { outcome, message })
    }
}
