//! The storage contract for orders: [`OrderStore`], implemented by [`SqliteStore`] today and
//! meant to be implemented by a PostgreSQL backend for several host instances later; and for
//! the upstream costs last fetched: [`CostStore`], implemented by the same backends.
//!
//! The contract relies only on what both databases give: transactions, conditional updates
//! (`UPDATE … WHERE state = $from`), a partial unique index and `RETURNING`. Every change of an
//! order and its audit record are written in one transaction; a state change succeeds only if the
//! order is still in the state the caller saw (compare-and-set), so two racing callers — two
//! threads, two processes or two hosts — get exactly one winner.
//!
//! Methods are blocking: async callers run them with `tokio::task::spawn_blocking`.
//!
//! [`SqliteStore`]: super::SqliteStore

use std::collections::HashSet;
use std::net::IpAddr;

use serde::Serialize;

use super::{MAX_PERIOD_MONTHS, NewOrder, Order, OrderId, OrderState, can_transition, check_name};

/// Longest free text (note, error, upstream call detail) kept, in bytes; longer text is cut.
pub const MAX_TEXT_LEN: usize = 4096;

/// Largest number of orders [`OrderStore::list`] returns.
pub const MAX_LIST_LIMIT: u32 = 10_000;

/// Parameter names never stored with an upstream call: BILLmanager credentials and sessions.
pub const CREDENTIAL_PARAMS: &[&str] = &["authinfo", "auth", "password", "passwd", "token"];

/// Why a store operation did not happen.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// No order has this ID.
    #[error("no such order")]
    NotFound,
    /// The order is no longer in the state the caller expected: someone else changed it first.
    #[error("the order is {current}, not in the expected state")]
    Conflict {
        /// The state it is in now.
        current: OrderState,
    },
    /// The state table does not allow this transition.
    #[error("an order cannot go from {from} to {to}")]
    Forbidden {
        /// The state asked to leave.
        from: OrderState,
        /// The state asked to enter.
        to: OrderState,
    },
    /// The request itself is wrong (a missing service ID, an empty licence ID, …).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The database was written by a newer host with a schema this one does not know.
    #[error(
        "the order database has schema version {found}, newer than the {supported} this host \
         knows; refusing to use it (run the newer host, or restore a backup)"
    )]
    SchemaTooNew {
        /// The database's schema version.
        found: i64,
        /// The newest version this host can use.
        supported: i64,
    },
    /// The database failed or holds data this host cannot read.
    #[error("order database: {0}")]
    Database(String),
}

/// What a transition records besides the new state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// Who made it: `worker`, `api`, `cli`, `startup`, an operator's name, …
    pub actor: String,
    /// Why, in words; kept in the audit record.
    pub note: Option<String>,
    /// An error that caused the transition; becomes the order's `last_error`.
    pub error: Option<String>,
    /// The upstream service ID; required when, and only when, entering `Placed`.
    pub service_id: Option<String>,
}

impl Change {
    /// A change made by `actor`, with nothing else recorded.
    pub fn by(actor: impl Into<String>) -> Change {
        Change {
            actor: actor.into(),
            ..Change::default()
        }
    }

    /// Adds a note.
    pub fn with_note(mut self, note: impl Into<String>) -> Change {
        self.note = Some(note.into());
        self
    }

    /// Adds the error that caused the transition.
    pub fn with_error(mut self, error: impl Into<String>) -> Change {
        self.error = Some(error.into());
        self
    }

    /// Adds the upstream service ID (for `Placed`).
    pub fn with_service_id(mut self, service_id: impl Into<String>) -> Change {
        self.service_id = Some(service_id.into());
        self
    }

    /// Checks a transition before any backend touches the database: the state table first
    /// ([`StoreError::Forbidden`]), then the change ([`StoreError::Invalid`]). Returns the change
    /// with long texts cut to [`MAX_TEXT_LEN`]. Every backend calls this.
    pub fn checked(self, from: OrderState, to: OrderState) -> Result<Change, StoreError> {
        if !can_transition(from, to) {
            return Err(StoreError::Forbidden { from, to });
        }
        match (&self.service_id, to) {
            (None, OrderState::Placed) => {
                return Err(StoreError::Invalid(
                    "a placed order needs the upstream service ID".to_owned(),
                ));
            }
            (Some(id), OrderState::Placed) => {
                check_name("service ID", id).map_err(StoreError::Invalid)?;
            }
            (Some(_), _) => {
                return Err(StoreError::Invalid(format!(
                    "a service ID is recorded only when an order becomes placed, not {to}"
                )));
            }
            (None, _) => {}
        }
        Ok(self.with_texts_cut())
    }

    /// The change with its actor cut to 128 bytes and its note and error to [`MAX_TEXT_LEN`].
    fn with_texts_cut(self) -> Change {
        Change {
            actor: cut(self.actor, 128),
            note: self.note.map(|t| cut(t, MAX_TEXT_LEN)),
            error: self.error.map(|t| cut(t, MAX_TEXT_LEN)),
            service_id: self.service_id,
        }
    }

    /// Whether this transition starts a placement attempt: a claim (`→ Placing`) or a retry
    /// scheduled before sending (`Paid → Paid`).
    pub fn counts_attempt(from: OrderState, to: OrderState) -> bool {
        to == OrderState::Placing || (from == OrderState::Paid && to == OrderState::Paid)
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary.
pub(crate) fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// What [`OrderStore::amend`] changes in an order besides recording it: each field is kept when
/// `None`. An amendment that changes nothing still records its [`Change`] (e.g. a renewal).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Amendment {
    /// The new licence ID, when the module was rebound to another licence.
    pub licence_id: Option<String>,
    /// The new licence IP: `Some(Some(ip))` sets it, `Some(None)` clears it.
    pub licence_ip: Option<Option<IpAddr>>,
}

impl Amendment {
    /// Checks an amendment and the change recorded with it before any backend touches the
    /// database: the licence ID must be a valid name and the change must carry no service ID
    /// (both [`StoreError::Invalid`]). Returns the change with long texts cut to
    /// [`MAX_TEXT_LEN`]. Every backend calls this.
    pub fn checked(&self, change: Change) -> Result<Change, StoreError> {
        if let Some(licence) = &self.licence_id {
            check_name("licence ID", licence).map_err(StoreError::Invalid)?;
        }
        if change.service_id.is_some() {
            return Err(StoreError::Invalid(
                "a service ID is recorded only when an order becomes placed, not by an amendment"
                    .to_owned(),
            ));
        }
        Ok(change.with_texts_cut())
    }
}

/// What upstream charges the partner for one tariff and period, as last fetched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UpstreamCost {
    /// The tariff ID (the `pricelist` of upstream calls).
    pub tariff_id: u64,
    /// The period, in months.
    pub period_months: u32,
    /// The cost in ten-thousandths of the currency's unit.
    pub amount_e4: i64,
    /// Three capital letters, e.g. `EUR`.
    pub currency: String,
}

impl UpstreamCost {
    /// Checks one cost; the message says which field is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if i64::try_from(self.tariff_id).is_err() {
            return Err(format!("tariff ID {} is too large", self.tariff_id));
        }
        if self.period_months == 0 || self.period_months > MAX_PERIOD_MONTHS {
            return Err(format!(
                "the period must be 1 to {MAX_PERIOD_MONTHS} months, not {}",
                self.period_months
            ));
        }
        if self.amount_e4 < 0 {
            return Err(format!(
                "the cost of tariff {} for {} months is negative",
                self.tariff_id, self.period_months
            ));
        }
        if self.currency.len() != 3 || !self.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err("the currency is not three capital letters".to_owned());
        }
        Ok(())
    }

    /// Checks a whole list before any backend touches the database: every cost
    /// ([`validate`](UpstreamCost::validate)) and no (tariff, period) twice. Every backend calls
    /// this; an error is [`StoreError::Invalid`].
    pub fn validate_all(costs: &[UpstreamCost]) -> Result<(), StoreError> {
        let mut seen = HashSet::with_capacity(costs.len());
        for cost in costs {
            cost.validate().map_err(StoreError::Invalid)?;
            if !seen.insert((cost.tariff_id, cost.period_months)) {
                return Err(StoreError::Invalid(format!(
                    "tariff {} for {} months is listed twice",
                    cost.tariff_id, cost.period_months
                )));
            }
        }
        Ok(())
    }
}

/// The result of [`OrderStore::create_or_reuse_new`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Created {
    /// The order, new or reused.
    pub order: Order,
    /// `true` when an unpaid order for the same licence and tariff already existed and is
    /// returned unchanged.
    pub reused: bool,
}

/// Which orders [`OrderStore::list`] returns, newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListFilter {
    /// Only orders in this state.
    pub state: Option<OrderState>,
    /// Only orders for this licence.
    pub licence_id: Option<String>,
    /// At most this many (capped at [`MAX_LIST_LIMIT`]).
    pub limit: u32,
}

impl Default for ListFilter {
    fn default() -> Self {
        ListFilter {
            state: None,
            licence_id: None,
            limit: 100,
        }
    }
}

/// How an upstream call ended, as far as the caller could tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    /// A BILLmanager answer with the expected result.
    Succeeded,
    /// A BILLmanager error document: upstream refused.
    Refused,
    /// The request never left (connection refused, DNS failure, …).
    NotSent,
    /// The request may have reached upstream, but no usable answer came back.
    Unknown,
}

impl CallOutcome {
    /// Every outcome.
    pub const ALL: [CallOutcome; 4] = [
        CallOutcome::Succeeded,
        CallOutcome::Refused,
        CallOutcome::NotSent,
        CallOutcome::Unknown,
    ];

    /// The stable name used in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Succeeded => "succeeded",
            CallOutcome::Refused => "refused",
            CallOutcome::NotSent => "not_sent",
            CallOutcome::Unknown => "unknown",
        }
    }

    /// The outcome stored under `name`.
    pub fn from_name(name: &str) -> Option<CallOutcome> {
        CallOutcome::ALL.into_iter().find(|o| o.as_str() == name)
    }
}

/// One upstream call made for an order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UpstreamCall {
    /// The BILLmanager function, e.g. `addition.order.param`.
    pub func: String,
    /// The parameters sent, in order. Credentials ([`CREDENTIAL_PARAMS`]) are dropped by the
    /// store even if a caller passes them.
    pub params: Vec<(String, String)>,
    /// The HTTP status, when an answer came.
    pub http_status: Option<u16>,
    /// How long the call took.
    pub duration_ms: u64,
    /// How it ended.
    pub outcome: CallOutcome,
    /// A short description: the service ID, the upstream error message, the transport error.
    pub detail: String,
}

impl UpstreamCall {
    /// The call as it may be stored: credential parameters dropped, long texts cut.
    pub fn sanitized(self) -> UpstreamCall {
        UpstreamCall {
            func: cut(self.func, MAX_TEXT_LEN),
            params: self
                .params
                .into_iter()
                .filter(|(name, _)| {
                    !CREDENTIAL_PARAMS
                        .iter()
                        .any(|c| c.eq_ignore_ascii_case(name.trim()))
                })
                .map(|(n, v)| (cut(n, MAX_TEXT_LEN), cut(v, MAX_TEXT_LEN)))
                .collect(),
            detail: cut(self.detail, MAX_TEXT_LEN),
            ..self
        }
    }
}

/// A recorded state change, or an amendment ([`OrderStore::amend`]), recorded with `from` equal
/// to `to`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TransitionRecord {
    /// The event's position in the order's history (1 = creation).
    pub event: u64,
    /// The state left; `None` for the creation.
    pub from: Option<OrderState>,
    /// The state entered.
    pub to: OrderState,
    /// When, UNIX milliseconds.
    pub at_ms: i64,
    /// Who.
    pub actor: String,
    /// Why.
    pub note: Option<String>,
    /// The error that caused it.
    pub error: Option<String>,
    /// The service ID given on entering `Placed`.
    pub service_id: Option<String>,
}

/// A recorded upstream call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UpstreamCallRecord {
    /// The event's position in the order's history.
    pub event: u64,
    /// When it was recorded, UNIX milliseconds.
    pub at_ms: i64,
    /// The call.
    pub call: UpstreamCall,
}

/// One entry of an order's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HistoryEntry {
    /// A state change or an amendment.
    Transition(TransitionRecord),
    /// An upstream call.
    UpstreamCall(UpstreamCallRecord),
}

impl HistoryEntry {
    /// The entry's position in the order's history.
    pub fn event(&self) -> u64 {
        match self {
            HistoryEntry::Transition(t) => t.event,
            HistoryEntry::UpstreamCall(c) => c.event,
        }
    }
}

/// The durable record of orders.
///
/// Guarantees every backend gives:
/// - each method is atomic: it happens entirely or not at all, including its audit records;
/// - [`transition`](OrderStore::transition) is a compare-and-set on the state: of several callers
///   moving one order out of the same state, exactly one succeeds, the others get
///   [`StoreError::Conflict`] with the state they lost to;
/// - at most one `New` order exists per (licence, tariff);
/// - an order's history is totally ordered by its event number.
///
/// With several host instances on one database, [`mark_interrupted_in_doubt`] must only be run
/// when no instance is placing (today: the single instance, at startup). A multi-instance backend
/// will need to record which instance claimed an order.
///
/// [`mark_interrupted_in_doubt`]: OrderStore::mark_interrupted_in_doubt
pub trait OrderStore: Send + Sync {
    /// Records a `New` order — or, if an unpaid (`New`) order for the same licence and tariff
    /// exists, returns that one unchanged (a repeated Buy redirect). Atomic: racing calls for one
    /// (licence, tariff) create one order.
    fn create_or_reuse_new(&self, new: &NewOrder) -> Result<Created, StoreError>;

    /// The order with this ID.
    fn get(&self, id: &OrderId) -> Result<Order, StoreError>;

    /// Orders matching `filter`, newest first.
    fn list(&self, filter: &ListFilter) -> Result<Vec<Order>, StoreError>;

    /// Moves an order from `from` to `to` if, and only if, it is in `from` now and the state
    /// table allows it; records the transition in the same transaction. Returns the order as
    /// changed.
    ///
    /// Errors: [`StoreError::Forbidden`] (table), [`StoreError::Invalid`] (the change),
    /// [`StoreError::NotFound`], [`StoreError::Conflict`] (it is not in `from`).
    fn transition(
        &self,
        id: &OrderId,
        from: OrderState,
        to: OrderState,
        change: Change,
    ) -> Result<Order, StoreError>;

    /// Changes an order's details without changing its state, if, and only if, it is in
    /// `expected` now: rebinds it to another licence, or records a renewal (an empty
    /// [`Amendment`]). Records the change in the same transaction as a [`TransitionRecord`] from
    /// `expected` to `expected` whose note should say what changed; the change's error, if
    /// any, becomes the order's `last_error`. Does not count an attempt. Returns the order as
    /// changed.
    ///
    /// Errors: [`StoreError::Invalid`] (the amendment, the change, or a licence ID that would
    /// give its licence a second `New` order for the tariff), [`StoreError::NotFound`],
    /// [`StoreError::Conflict`] (it is not in `expected`).
    fn amend(
        &self,
        id: &OrderId,
        expected: OrderState,
        amendment: &Amendment,
        change: Change,
    ) -> Result<Order, StoreError>;

    /// A worker's claim before it sends the upstream order: `Paid → Placing`. Two workers never
    /// both win it for one order.
    fn claim_for_placing(&self, id: &OrderId) -> Result<Order, StoreError> {
        self.transition(
            id,
            OrderState::Paid,
            OrderState::Placing,
            Change::by("worker"),
        )
    }

    /// Records an upstream call made for an order, after [`UpstreamCall::sanitized`].
    fn record_upstream_call(
        &self,
        order_id: &OrderId,
        call: UpstreamCall,
    ) -> Result<(), StoreError>;

    /// The order's transitions (creation included) and upstream calls, oldest first.
    fn history(&self, id: &OrderId) -> Result<Vec<HistoryEntry>, StoreError>;

    /// Orders a restarted host must look at, oldest first: `Paid` ones (queued for placement) and
    /// `Placing` ones (a placement was interrupted).
    fn orders_to_resume(&self) -> Result<Vec<Order>, StoreError>;

    /// At startup, before any worker runs: every `Placing` order becomes `InDoubt` (its request
    /// may have reached upstream), in one transaction; returns them. They are never re-sent
    /// automatically.
    fn mark_interrupted_in_doubt(&self) -> Result<Vec<Order>, StoreError>;
}

/// The upstream costs last fetched, kept so that they survive a restart and can be shown with
/// their age.
///
/// Guarantees every backend gives: [`replace_upstream_costs`] is atomic (readers see the old
/// list or the new one, never a mix) and changes nothing when it fails.
///
/// [`replace_upstream_costs`]: CostStore::replace_upstream_costs
pub trait CostStore: Send + Sync {
    /// Replaces every stored upstream cost with `costs`, atomically; records when.
    ///
    /// An empty list is recorded as a fetch that found no costs. Errors:
    /// [`StoreError::Invalid`] ([`UpstreamCost::validate_all`]), and nothing changes.
    fn replace_upstream_costs(&self, costs: &[UpstreamCost]) -> Result<(), StoreError>;

    /// The stored upstream costs (ordered by tariff, then period) and when they were fetched
    /// (UNIX ms), or None if never.
    fn upstream_costs(&self) -> Result<Option<(Vec<UpstreamCost>, i64)>, StoreError>;
}

/// Behaviour every backend must show; a backend's tests call these on a fresh store.
#[cfg(test)]
pub(crate) mod conformance {
    use super::*;
    use crate::orders::Money;
    use OrderState::*;

    /// A valid new order for `licence` and `tariff`.
    pub(crate) fn new_order(licence: &str, tariff: u64) -> NewOrder {
        NewOrder {
            licence_id: licence.to_owned(),
            licence_ip: Some("192.0.2.10".parse().expect("ip")),
            tariff_id: tariff,
            service_name: "drweb".to_owned(),
            price: Money {
                amount_e4: 9_139_286,
                currency: "EUR".to_owned(),
            },
            period_months: 1,
            autoprolong: true,
        }
    }

    /// A new order moved to `Paid`.
    pub(crate) fn paid(store: &dyn OrderStore, licence: &str, tariff: u64) -> Order {
        let created = store
            .create_or_reuse_new(&new_order(licence, tariff))
            .expect("create");
        store
            .transition(&created.order.id, New, Paid, Change::by("billing"))
            .expect("pay")
    }

    pub(crate) fn create_and_reuse(store: &dyn OrderStore) {
        let first = store
            .create_or_reuse_new(&new_order("L1", 55361))
            .expect("create");
        assert!(!first.reused);
        let o = &first.order;
        assert_eq!(o.state, New);
        assert_eq!(o.licence_id, "L1");
        assert_eq!(o.licence_ip, Some("192.0.2.10".parse().expect("ip")));
        assert_eq!(o.tariff_id, 55361);
        assert_eq!(o.service_name, "drweb");
        assert_eq!(o.price.amount_e4, 9_139_286);
        assert_eq!(o.price.currency, "EUR");
        assert_eq!((o.period_months, o.autoprolong), (1, true));
        assert_eq!(
            (o.attempts, &o.last_error, &o.upstream_service_id),
            (0, &None, &None)
        );
        assert!(o.created_ms > 0 && o.updated_ms == o.created_ms);
        assert_eq!(store.get(&o.id).expect("get"), *o);

        // The same redirect again, even with another price: the same order, unchanged.
        let mut again = new_order("L1", 55361);
        again.price.amount_e4 = 1;
        let second = store.create_or_reuse_new(&again).expect("reuse");
        assert!(second.reused);
        assert_eq!(second.order, *o);

        // Another tariff or another licence: another order.
        let other_tariff = store
            .create_or_reuse_new(&new_order("L1", 55362))
            .expect("create");
        let other_licence = store
            .create_or_reuse_new(&new_order("L2", 55361))
            .expect("create");
        assert!(!other_tariff.reused && !other_licence.reused);
        let ids: HashSet<_> = [&o.id, &other_tariff.order.id, &other_licence.order.id]
            .into_iter()
            .collect();
        assert_eq!(ids.len(), 3);

        // Once paid, the next redirect makes a new order.
        store
            .transition(&o.id, New, Paid, Change::by("billing"))
            .expect("pay");
        let third = store
            .create_or_reuse_new(&new_order("L1", 55361))
            .expect("create");
        assert!(!third.reused);
        assert_ne!(third.order.id, o.id);
        assert_eq!(store.get(&o.id).expect("get").state, Paid);
    }

    pub(crate) fn invalid_input_is_refused(store: &dyn OrderStore) {
        let mut bad = new_order("", 1);
        assert!(matches!(
            store.create_or_reuse_new(&bad),
            Err(StoreError::Invalid(_))
        ));
        bad = new_order("L", u64::MAX);
        assert!(matches!(
            store.create_or_reuse_new(&bad),
            Err(StoreError::Invalid(_))
        ));
        assert!(store.list(&ListFilter::default()).expect("list").is_empty());

        let unknown = OrderId::from_parts(1, [1; 10]);
        assert_eq!(store.get(&unknown), Err(StoreError::NotFound));
        assert_eq!(store.history(&unknown), Err(StoreError::NotFound));
        assert_eq!(
            store.transition(&unknown, New, Paid, Change::by("t")),
            Err(StoreError::NotFound)
        );
        assert_eq!(store.claim_for_placing(&unknown), Err(StoreError::NotFound));
        let call = UpstreamCall {
            func: "addition.order.param".to_owned(),
            params: vec![],
            http_status: None,
            duration_ms: 0,
            outcome: CallOutcome::NotSent,
            detail: String::new(),
        };
        assert_eq!(
            store.record_upstream_call(&unknown, call),
            Err(StoreError::NotFound)
        );
    }

    pub(crate) fn transitions_are_checked(store: &dyn OrderStore) {
        let o = store
            .create_or_reuse_new(&new_order("L1", 1))
            .expect("create")
            .order;
        // Forbidden by the table, whatever the order's state.
        assert_eq!(
            store.transition(&o.id, New, Placed, Change::by("t").with_service_id("9")),
            Err(StoreError::Forbidden {
                from: New,
                to: Placed
            })
        );
        assert_eq!(
            store.transition(&o.id, InDoubt, Placing, Change::by("t")),
            Err(StoreError::Forbidden {
                from: InDoubt,
                to: Placing
            })
        );
        // Allowed by the table, but the order is not in `from`.
        assert_eq!(
            store.claim_for_placing(&o.id),
            Err(StoreError::Conflict { current: New })
        );
        assert_eq!(
            store.transition(&o.id, Placed, Removed, Change::by("t")),
            Err(StoreError::Conflict { current: New })
        );
        // Placed needs a service ID; nothing else takes one.
        let paid = store
            .transition(&o.id, New, Paid, Change::by("billing"))
            .expect("pay");
        assert!(matches!(
            store.transition(&o.id, Paid, Placed, Change::by("operator")),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            store.transition(
                &o.id,
                Paid,
                Placed,
                Change::by("operator").with_service_id(" ")
            ),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            store.transition(
                &o.id,
                Paid,
                Cancelled,
                Change::by("op").with_service_id("1")
            ),
            Err(StoreError::Invalid(_))
        ));
        // None of the refusals changed anything.
        assert_eq!(store.get(&o.id).expect("get"), paid);
        assert_eq!(store.history(&o.id).expect("history").len(), 2);
    }

    pub(crate) fn automatic_life_is_recorded(store: &dyn OrderStore) {
        let o = paid(store, "L1", 55361);
        assert_eq!((o.state, o.attempts), (Paid, 0));

        let placing = store.claim_for_placing(&o.id).expect("claim");
        assert_eq!((placing.state, placing.attempts), (Placing, 1));
        // A second claim loses.
        assert_eq!(
            store.claim_for_placing(&o.id),
            Err(StoreError::Conflict { current: Placing })
        );

        let call = UpstreamCall {
            func: "addition.order.param".to_owned(),
            params: vec![
                ("authinfo".to_owned(), "partner:secret".to_owned()),
                ("item".to_owned(), "L1".to_owned()),
                ("AuthInfo ".to_owned(), "partner:secret".to_owned()),
                ("pricelist".to_owned(), "55361".to_owned()),
                ("period".to_owned(), "1".to_owned()),
                ("auth".to_owned(), "session".to_owned()),
            ],
            http_status: Some(200),
            duration_ms: 842,
            outcome: CallOutcome::Succeeded,
            detail: "service 3001".to_owned(),
        };
        store.record_upstream_call(&o.id, call).expect("record");

        let placed = store
            .transition(
                &o.id,
                Placing,
                Placed,
                Change::by("worker").with_service_id("3001"),
            )
            .expect("placed");
        assert_eq!(placed.state, Placed);
        assert_eq!(placed.upstream_service_id.as_deref(), Some("3001"));
        assert_eq!(placed.attempts, 1);
        assert!(placed.updated_ms >= placed.created_ms);
        assert_eq!(store.get(&o.id).expect("get"), placed);

        let history = store.history(&o.id).expect("history");
        let events: Vec<u64> = history.iter().map(HistoryEntry::event).collect();
        assert_eq!(events, [1, 2, 3, 4, 5]);
        let steps: Vec<String> = history
            .iter()
            .map(|e| match e {
                HistoryEntry::Transition(t) => format!(
                    "{}->{} by {}",
                    t.from.map_or("-", OrderState::as_str),
                    t.to,
                    t.actor
                ),
                HistoryEntry::UpstreamCall(c) => format!("call {}", c.call.func),
            })
            .collect();
        assert_eq!(
            steps,
            [
                "-->new by create",
                "new->paid by billing",
                "paid->placing by worker",
                "call addition.order.param",
                "placing->placed by worker",
            ]
        );
        let HistoryEntry::UpstreamCall(call) = &history[3] else {
            panic!("expected a call, got {:?}", history[3]);
        };
        let names: Vec<&str> = call.call.params.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["item", "pricelist", "period"],
            "credentials dropped"
        );
        assert!(!format!("{history:?}").contains("secret"));
        assert_eq!(call.call.http_status, Some(200));
        assert_eq!(call.call.duration_ms, 842);
        assert_eq!(call.call.outcome, CallOutcome::Succeeded);
        assert_eq!(call.call.detail, "service 3001");
        let HistoryEntry::Transition(last) = &history[4] else {
            panic!("expected a transition, got {:?}", history[4]);
        };
        assert_eq!(last.service_id.as_deref(), Some("3001"));

        // Removal ends it.
        let removed = store
            .transition(
                &o.id,
                Placed,
                Removed,
                Change::by("api").with_note("user asked"),
            )
            .expect("remove");
        assert_eq!(removed.state, Removed);
        assert_eq!(removed.upstream_service_id.as_deref(), Some("3001"));
    }

    pub(crate) fn retries_and_doubt_are_recorded(store: &dyn OrderStore) {
        let o = paid(store, "L1", 1);
        // Failed before sending, before the claim: Paid → Paid counts an attempt.
        let again = store
            .transition(
                &o.id,
                Paid,
                Paid,
                Change::by("worker").with_error("plugin not loaded"),
            )
            .expect("retry");
        assert_eq!((again.state, again.attempts), (Paid, 1));
        assert_eq!(again.last_error.as_deref(), Some("plugin not loaded"));
        // Claimed, then the connection was refused: released back to Paid.
        store.claim_for_placing(&o.id).expect("claim");
        let released = store
            .transition(
                &o.id,
                Placing,
                Paid,
                Change::by("worker").with_error("connection refused"),
            )
            .expect("release");
        assert_eq!((released.state, released.attempts), (Paid, 2));
        assert_eq!(released.last_error.as_deref(), Some("connection refused"));
        // Claimed, then the answer timed out: in doubt.
        store.claim_for_placing(&o.id).expect("claim");
        let doubt = store
            .transition(
                &o.id,
                Placing,
                InDoubt,
                Change::by("worker").with_error("timeout"),
            )
            .expect("doubt");
        assert_eq!((doubt.state, doubt.attempts), (InDoubt, 3));
        // Nothing claims it back.
        assert_eq!(
            store.claim_for_placing(&o.id),
            Err(StoreError::Conflict { current: InDoubt })
        );
        // An operator found it placed.
        let placed = store
            .transition(
                &o.id,
                InDoubt,
                Placed,
                Change::by("operator").with_service_id("77"),
            )
            .expect("placed");
        assert_eq!(placed.upstream_service_id.as_deref(), Some("77"));
        assert_eq!(placed.last_error.as_deref(), Some("timeout"));

        // Insufficient balance: Failed, then an operator retries.
        let o = paid(store, "L2", 1);
        store.claim_for_placing(&o.id).expect("claim");
        let failed = store
            .transition(
                &o.id,
                Placing,
                Failed,
                Change::by("worker").with_error("balance"),
            )
            .expect("fail");
        assert_eq!(failed.state, Failed);
        let retried = store
            .transition(&o.id, Failed, Paid, Change::by("operator"))
            .expect("retry");
        assert_eq!((retried.state, retried.attempts), (Paid, 1));

        let history = store.history(&o.id).expect("history");
        let errors: Vec<Option<&str>> = history
            .iter()
            .filter_map(|e| match e {
                HistoryEntry::Transition(t) => Some(t.error.as_deref()),
                HistoryEntry::UpstreamCall(_) => None,
            })
            .collect();
        assert_eq!(errors, [None, None, None, Some("balance"), None]);
    }

    pub(crate) fn listing_and_resuming(store: &dyn OrderStore) {
        let a = store
            .create_or_reuse_new(&new_order("A", 1))
            .expect("a")
            .order;
        let b = paid(store, "B", 1);
        let c = paid(store, "C", 1);
        store.claim_for_placing(&c.id).expect("claim");
        let d = paid(store, "D", 1);

        let all = store.list(&ListFilter::default()).expect("list");
        let ids: Vec<&OrderId> = all.iter().map(|o| &o.id).collect();
        assert_eq!(ids, [&d.id, &c.id, &b.id, &a.id], "newest first");

        let two = store
            .list(&ListFilter {
                limit: 2,
                ..ListFilter::default()
            })
            .expect("list");
        assert_eq!(two.len(), 2);
        assert_eq!(two[0].id, d.id);
        let none = store
            .list(&ListFilter {
                limit: 0,
                ..ListFilter::default()
            })
            .expect("list");
        assert!(none.is_empty());
        let huge = store
            .list(&ListFilter {
                limit: u32::MAX,
                ..ListFilter::default()
            })
            .expect("list");
        assert_eq!(huge.len(), 4);

        let paid_only = store
            .list(&ListFilter {
                state: Some(Paid),
                ..ListFilter::default()
            })
            .expect("list");
        let ids: Vec<&OrderId> = paid_only.iter().map(|o| &o.id).collect();
        assert_eq!(ids, [&d.id, &b.id]);
        let for_a = store
            .list(&ListFilter {
                licence_id: Some("A".to_owned()),
                ..ListFilter::default()
            })
            .expect("list");
        assert_eq!(for_a, std::slice::from_ref(&a));

        let resume = store.orders_to_resume().expect("resume");
        let states: Vec<(&OrderId, OrderState)> = resume.iter().map(|o| (&o.id, o.state)).collect();
        assert_eq!(states, [(&b.id, Paid), (&c.id, Placing), (&d.id, Paid)]);

        let interrupted = store.mark_interrupted_in_doubt().expect("mark");
        assert_eq!(interrupted.len(), 1);
        assert_eq!(interrupted[0].id, c.id);
        assert_eq!(interrupted[0].state, InDoubt);
        assert!(interrupted[0].last_error.is_some());
        assert_eq!(store.get(&c.id).expect("get").state, InDoubt);
        for (id, state) in [(&a.id, New), (&b.id, Paid), (&d.id, Paid)] {
            assert_eq!(store.get(id).expect("get").state, state);
        }
        let HistoryEntry::Transition(t) =
            store.history(&c.id).expect("history").pop().expect("entry")
        else {
            panic!("expected a transition");
        };
        assert_eq!(
            (t.from, t.to, t.actor.as_str()),
            (Some(Placing), InDoubt, "startup")
        );

        let resume = store.orders_to_resume().expect("resume");
        let ids: Vec<&OrderId> = resume.iter().map(|o| &o.id).collect();
        assert_eq!(ids, [&b.id, &d.id]);
        assert!(store.mark_interrupted_in_doubt().expect("mark").is_empty());
    }

    pub(crate) fn long_texts_are_cut(store: &dyn OrderStore) {
        let o = paid(store, "L1", 1);
        let long = "é".repeat(MAX_TEXT_LEN);
        let changed = store
            .transition(&o.id, Paid, Paid, Change::by("w").with_error(long.clone()))
            .expect("retry");
        let err = changed.last_error.expect("error");
        assert!(err.len() <= MAX_TEXT_LEN && err.len() >= MAX_TEXT_LEN - 1);
        assert!(err.chars().all(|c| c == 'é'));
    }

    /// A paid order claimed and placed upstream as service `service_id`.
    pub(crate) fn placed(store: &dyn OrderStore, licence: &str, service_id: &str) -> Order {
        let o = paid(store, licence, 1);
        store.claim_for_placing(&o.id).expect("claim");
        store
            .transition(
                &o.id,
                Placing,
                Placed,
                Change::by("worker").with_service_id(service_id),
            )
            .expect("place")
    }

    /// The order's last history entry, which must be a transition.
    fn last_transition(store: &dyn OrderStore, id: &OrderId) -> TransitionRecord {
        match store.history(id).expect("history").pop() {
            Some(HistoryEntry::Transition(t)) => t,
            other => panic!("expected a transition, got {other:?}"),
        }
    }

    pub(crate) fn amend_rebinds_a_placed_order(store: &dyn OrderStore) {
        let o = placed(store, "184431", "3001");
        let events = store.history(&o.id).expect("history").len();
        let new_ip: IpAddr = "198.51.100.7".parse().expect("ip");
        let rebound = store
            .amend(
                &o.id,
                Placed,
                &Amendment {
                    licence_id: Some("184432".to_owned()),
                    licence_ip: Some(Some(new_ip)),
                },
                Change::by("operator").with_note("rebound from licence 184431 to 184432"),
            )
            .expect("rebind");
        assert_eq!(rebound.licence_id, "184432");
        assert_eq!(rebound.licence_ip, Some(new_ip));
        assert!(rebound.updated_ms >= o.updated_ms);
        // Nothing else changed: state, service, attempts, error, price, …
        assert_eq!(
            Order {
                licence_id: o.licence_id.clone(),
                licence_ip: o.licence_ip,
                updated_ms: o.updated_ms,
                ..rebound.clone()
            },
            o
        );
        assert_eq!(store.get(&o.id).expect("get"), rebound);

        let history = store.history(&o.id).expect("history");
        assert_eq!(history.len(), events + 1);
        let t = last_transition(store, &o.id);
        assert_eq!(t.event, u64::try_from(events).expect("count") + 1);
        assert_eq!((t.from, t.to), (Some(Placed), Placed));
        assert_eq!(t.actor, "operator");
        assert_eq!(
            t.note.as_deref(),
            Some("rebound from licence 184431 to 184432")
        );
        assert_eq!((t.error, t.service_id), (None, None));
        assert_eq!(t.at_ms, rebound.updated_ms);

        // The order is found under its new licence only.
        let by_licence = |licence: &str| {
            store
                .list(&ListFilter {
                    licence_id: Some(licence.to_owned()),
                    ..ListFilter::default()
                })
                .expect("list")
        };
        assert_eq!(by_licence("184432"), std::slice::from_ref(&rebound));
        assert!(by_licence("184431").is_empty());

        // Rebound again to a licence without an IP; an error given is kept.
        let again = store
            .amend(
                &o.id,
                Placed,
                &Amendment {
                    licence_id: Some("184433".to_owned()),
                    licence_ip: Some(None),
                },
                Change::by("api")
                    .with_note("rebound from licence 184432 to 184433")
                    .with_error("licence 184432 was deleted"),
            )
            .expect("rebind");
        assert_eq!(again.licence_id, "184433");
        assert_eq!(again.licence_ip, None);
        assert_eq!(
            again.last_error.as_deref(),
            Some("licence 184432 was deleted")
        );
        assert_eq!((again.state, again.attempts), (Placed, 1));
        assert_eq!(again.upstream_service_id.as_deref(), Some("3001"));
        let t = last_transition(store, &o.id);
        assert_eq!(t.error.as_deref(), Some("licence 184432 was deleted"));

        // Only the IP: the licence stays.
        let ip_only = store
            .amend(
                &o.id,
                Placed,
                &Amendment {
                    licence_ip: Some(Some(new_ip)),
                    ..Amendment::default()
                },
                Change::by("api").with_note("licence 184433 moved to 198.51.100.7"),
            )
            .expect("new ip");
        assert_eq!(
            (ip_only.licence_id.as_str(), ip_only.licence_ip),
            ("184433", Some(new_ip))
        );
        // A later amendment without an error keeps the last one.
        assert_eq!(ip_only.last_error, again.last_error);
    }

    pub(crate) fn amend_records_a_renewal(store: &dyn OrderStore) {
        let o = placed(store, "L1", "3001");
        let renewed = store
            .amend(
                &o.id,
                Placed,
                &Amendment::default(),
                Change::by("billing").with_note("renewed for 1 month"),
            )
            .expect("renew");
        assert_eq!(
            Order {
                updated_ms: o.updated_ms,
                ..renewed.clone()
            },
            o
        );
        assert!(renewed.updated_ms >= o.updated_ms);
        let t = last_transition(store, &o.id);
        assert_eq!((t.from, t.to), (Some(Placed), Placed));
        assert_eq!(
            (t.actor.as_str(), t.note.as_deref()),
            ("billing", Some("renewed for 1 month"))
        );

        // Amending a paid order does not count an attempt, unlike a `Paid → Paid` retry.
        let p = paid(store, "L2", 1);
        let amended = store
            .amend(
                &p.id,
                Paid,
                &Amendment::default(),
                Change::by("api").with_note("looked at"),
            )
            .expect("amend");
        assert_eq!((amended.state, amended.attempts), (Paid, 0));

        // Long texts are cut as for transitions.
        let long = "é".repeat(MAX_TEXT_LEN);
        store
            .amend(
                &o.id,
                Placed,
                &Amendment::default(),
                Change::by("x".repeat(1000)).with_note(long),
            )
            .expect("amend");
        let t = last_transition(store, &o.id);
        assert_eq!(t.actor.len(), 128);
        let note = t.note.expect("note");
        assert!(note.len() <= MAX_TEXT_LEN && note.len() >= MAX_TEXT_LEN - 1);
    }

    pub(crate) fn amend_is_a_compare_and_set(store: &dyn OrderStore) {
        let o = paid(store, "L1", 1);
        let history = store.history(&o.id).expect("history");
        let rebind = Amendment {
            licence_id: Some("L9".to_owned()),
            licence_ip: Some(None),
        };
        for expected in [Placed, New, Placing] {
            assert_eq!(
                store.amend(&o.id, expected, &rebind, Change::by("op").with_note("x")),
                Err(StoreError::Conflict { current: Paid })
            );
        }
        // Nothing changed.
        assert_eq!(store.get(&o.id).expect("get"), o);
        assert_eq!(store.history(&o.id).expect("history"), history);

        let unknown = OrderId::from_parts(1, [1; 10]);
        assert_eq!(
            store.amend(&unknown, Placed, &rebind, Change::by("op")),
            Err(StoreError::NotFound)
        );
        assert_eq!(
            store.amend(&unknown, Placed, &Amendment::default(), Change::by("op")),
            Err(StoreError::NotFound)
        );
    }

    pub(crate) fn amend_input_is_checked(store: &dyn OrderStore) {
        let o = placed(store, "L1", "3001");
        let history = store.history(&o.id).expect("history");
        let licence = |l: String| Amendment {
            licence_id: Some(l),
            ..Amendment::default()
        };
        for bad in [
            String::new(),
            " ".to_owned(),
            "x".repeat(257),
            "18\n4432".to_owned(),
            "a\u{7}b".to_owned(),
        ] {
            let err = store
                .amend(&o.id, Placed, &licence(bad.clone()), Change::by("op"))
                .expect_err("bad licence accepted");
            assert!(
                matches!(&err, StoreError::Invalid(m) if m.contains("licence ID")),
                "{bad:?}: {err:?}"
            );
        }
        // A service ID is given only on entering `Placed`.
        assert!(matches!(
            store.amend(
                &o.id,
                Placed,
                &Amendment::default(),
                Change::by("op").with_service_id("3002")
            ),
            Err(StoreError::Invalid(_))
        ));
        // The input is checked before the order is looked up.
        let unknown = OrderId::from_parts(1, [1; 10]);
        assert!(matches!(
            store.amend(&unknown, Placed, &licence(String::new()), Change::by("op")),
            Err(StoreError::Invalid(_))
        ));
        assert_eq!(store.get(&o.id).expect("get"), o);
        assert_eq!(store.history(&o.id).expect("history"), history);

        // A rebind may not give a licence a second unpaid order for one tariff.
        let a = store
            .create_or_reuse_new(&new_order("A", 7))
            .expect("a")
            .order;
        let b = store
            .create_or_reuse_new(&new_order("B", 7))
            .expect("b")
            .order;
        let b_history = store.history(&b.id).expect("history");
        assert!(matches!(
            store.amend(
                &b.id,
                New,
                &licence("A".to_owned()),
                Change::by("op").with_note("rebound from licence B to A")
            ),
            Err(StoreError::Invalid(_))
        ));
        assert_eq!(store.get(&a.id).expect("get"), a);
        assert_eq!(store.get(&b.id).expect("get"), b);
        assert_eq!(store.history(&b.id).expect("history"), b_history);
        // Another licence is fine.
        let moved = store
            .amend(&b.id, New, &licence("C".to_owned()), Change::by("op"))
            .expect("rebind");
        assert_eq!((moved.licence_id.as_str(), moved.state), ("C", New));
    }

    /// Costs for the tests: (tariff, period, amount).
    pub(crate) fn costs(list: &[(u64, u32, i64)]) -> Vec<UpstreamCost> {
        list.iter()
            .map(|&(tariff_id, period_months, amount_e4)| UpstreamCost {
                tariff_id,
                period_months,
                amount_e4,
                currency: "EUR".to_owned(),
            })
            .collect()
    }

    fn now_ms() -> i64 {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970");
        i64::try_from(since.as_millis()).expect("ms fit")
    }

    pub(crate) fn costs_are_replaced(store: &dyn CostStore) {
        assert_eq!(store.upstream_costs().expect("read"), None, "never fetched");

        let before = now_ms();
        store
            .replace_upstream_costs(&costs(&[
                (55362, 12, 1_000_000),
                (55361, 3, 270_000),
                (55361, 1, 90_000),
                (7, 1, 0),
            ]))
            .expect("replace");
        let after = now_ms();
        let (stored, at) = store.upstream_costs().expect("read").expect("fetched");
        assert_eq!(
            stored,
            costs(&[
                (7, 1, 0),
                (55361, 1, 90_000),
                (55361, 3, 270_000),
                (55362, 12, 1_000_000),
            ]),
            "ordered by tariff, then period"
        );
        assert!(before <= at && at <= after, "{before} <= {at} <= {after}");

        // Other currencies and the largest values are kept exactly.
        let mut second = costs(&[(1, MAX_PERIOD_MONTHS, i64::MAX)]);
        second.push(UpstreamCost {
            tariff_id: i64::MAX.unsigned_abs(),
            period_months: 1,
            amount_e4: 1,
            currency: "USD".to_owned(),
        });
        store.replace_upstream_costs(&second).expect("replace");
        let (stored, at2) = store.upstream_costs().expect("read").expect("fetched");
        assert_eq!(stored, second, "everything replaced");
        assert!(at2 >= at);

        // An empty list is a fetch that found nothing, not "never fetched".
        store.replace_upstream_costs(&[]).expect("replace");
        let (stored, at3) = store.upstream_costs().expect("read").expect("fetched");
        assert!(stored.is_empty());
        assert!(at3 >= at2);
    }

    pub(crate) fn invalid_costs_change_nothing(store: &dyn CostStore) {
        let good = costs(&[(1, 1, 10_000), (1, 12, 100_000)]);
        let mut cases: Vec<(Vec<UpstreamCost>, &str)> = vec![
            (costs(&[(u64::MAX, 1, 1)]), "too large"),
            (costs(&[(i64::MAX.unsigned_abs() + 1, 1, 1)]), "too large"),
            (costs(&[(1, 0, 1)]), "period"),
            (costs(&[(1, MAX_PERIOD_MONTHS + 1, 1)]), "period"),
            (costs(&[(1, 1, -1)]), "negative"),
            (costs(&[(1, 1, 1), (2, 1, 1), (1, 1, 2)]), "twice"),
        ];
        for currency in ["eur", "EURO", "EU", "", "€UR", "E1R"] {
            let mut list = good.clone();
            list[1].currency = currency.to_owned();
            cases.push((list, "currency"));
        }

        // Before any fetch: still never fetched.
        for (list, needle) in &cases {
            let err = store
                .replace_upstream_costs(list)
                .expect_err("invalid costs accepted");
            assert!(
                matches!(&err, StoreError::Invalid(m) if m.contains(needle)),
                "{err:?} lacks {needle:?}"
            );
        }
        assert_eq!(store.upstream_costs().expect("read"), None);

        // After one: the previous costs stay, with their time.
        store.replace_upstream_costs(&good).expect("replace");
        let previous = store.upstream_costs().expect("read").expect("fetched");
        for (list, _) in &cases {
            assert!(matches!(
                store.replace_upstream_costs(list),
                Err(StoreError::Invalid(_))
            ));
            assert_eq!(
                store.upstream_costs().expect("read").as_ref(),
                Some(&previous)
            );
        }
    }

    /// `open` opens the same database each time, as a restarted host would.
    pub(crate) fn costs_survive_reopening(open: &dyn Fn() -> Box<dyn CostStore>) {
        let list = costs(&[(2, 1, 5), (1, 6, 30)]);
        let stored = {
            let store = open();
            store.replace_upstream_costs(&list).expect("replace");
            store.upstream_costs().expect("read").expect("fetched")
        };
        assert_eq!(stored.0, costs(&[(1, 6, 30), (2, 1, 5)]));
        let store = open();
        assert_eq!(store.upstream_costs().expect("read"), Some(stored));
    }

    #[test]
    fn cut_respects_char_boundaries() {
        assert_eq!(cut("abc".to_owned(), 5), "abc");
        assert_eq!(cut("abc".to_owned(), 2), "ab");
        assert_eq!(cut("éé".to_owned(), 3), "é");
        assert_eq!(cut("éé".to_owned(), 0), "");
    }

    #[test]
    fn credentials_are_dropped_from_calls() {
        let call = UpstreamCall {
            func: "addition.edit".to_owned(),
            params: vec![
                ("AUTHINFO".to_owned(), "u:p".to_owned()),
                ("elid".to_owned(), "5".to_owned()),
                ("password".to_owned(), "p".to_owned()),
            ],
            http_status: None,
            duration_ms: 1,
            outcome: CallOutcome::Unknown,
            detail: "x".repeat(MAX_TEXT_LEN + 10),
        }
        .sanitized();
        assert_eq!(call.params, [("elid".to_owned(), "5".to_owned())]);
        assert_eq!(call.detail.len(), MAX_TEXT_LEN);
    }

    #[test]
    fn outcomes_round_trip() {
        for o in CallOutcome::ALL {
            assert_eq!(CallOutcome::from_name(o.as_str()), Some(o));
        }
        assert_eq!(CallOutcome::from_name("ok"), None);
    }
}
