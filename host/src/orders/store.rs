//! The storage contract for orders: [`OrderStore`], implemented by [`SqliteStore`] (one
//! placer per database) and [`PgStore`] (several hosts placing from one database); and for
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
//! [`PgStore`]: super::PgStore

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;

use super::events::{Event, EventKind};
use super::operation::{Began, NewOperation, Operation, OperationState};
use super::{
    NewOrder, Order, OrderFields, OrderId, OrderState, can_transition, check_fields, check_name,
};
use crate::catalogue::UpstreamPrices;
use crate::money::{Money, Months, UpstreamCost};

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
    /// Another operation of the order is open (running, or in doubt).
    #[error("operation {id} ({kind}) of this order is {state}: it must end first")]
    OperationOpen {
        /// Its number.
        id: i64,
        /// What it does.
        kind: super::operation::OperationKind,
        /// Where it stands.
        state: OperationState,
    },
    /// No operation has this number (for this order).
    #[error("no such operation")]
    NoOperation,
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
    /// The upstream service ID; required when, and only when, an order is placed (entering
    /// `Placed` from a state in which it did not exist upstream).
    pub service_id: Option<String>,
    /// The event the change is announced as, when not the one its new state implies
    /// ([`EventKind::of_transition`]); an amendment announces nothing without one.
    pub event: Option<EventKind>,
    /// What the event says besides the order (e.g. a renewal's period).
    pub event_data: Option<serde_json::Value>,
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

    /// Announces the change as `event`, with `data` besides the order.
    pub fn announced(mut self, event: EventKind, data: serde_json::Value) -> Change {
        self.event = Some(event);
        self.event_data = Some(data);
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
        let placing = to == OrderState::Placed && !from.is_upstream();
        match (&self.service_id, placing) {
            (None, true) => {
                return Err(StoreError::Invalid(
                    "a placed order needs the upstream service ID".to_owned(),
                ));
            }
            (Some(id), true) => {
                check_name("service ID", id).map_err(|e| StoreError::Invalid(e.to_string()))?;
            }
            (Some(_), false) => {
                return Err(StoreError::Invalid(format!(
                    "a service ID is recorded only when an order is placed, not {from} to {to}"
                )));
            }
            (None, false) => {}
        }
        Ok(self.with_texts_cut())
    }

    /// The change with its actor cut to 128 bytes and its note and error to [`MAX_TEXT_LEN`].
    fn with_texts_cut(self) -> Change {
        Change {
            actor: cut(self.actor, 128),
            note: self.note.map(|t| cut(t, MAX_TEXT_LEN)),
            error: self.error.map(|t| cut(t, MAX_TEXT_LEN)),
            ..self
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
    text.truncate(text.floor_char_boundary(max));
    text
}

/// What a change does to an order besides its state: each field is kept when `None`; for the
/// `Option<Option<_>>` ones, `Some(None)` clears the value. An amendment that changes nothing
/// still records its [`Change`] (e.g. a renewal whose answer gave no date).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Amendment {
    /// The new licence ID, when the module was rebound to another licence.
    pub licence_id: Option<String>,
    /// The new licence IP.
    pub licence_ip: Option<Option<IpAddr>>,
    /// The module's order fields, replaced as a whole.
    pub fields: Option<OrderFields>,
    /// Another period (an unpaid order only: its price changes with it).
    pub period: Option<Months>,
    /// Another price (with the period).
    pub price: Option<Money>,
    /// The upstream expiry date.
    pub expires_on: Option<Option<time::Date>>,
    /// Where the module stands upstream, as a sync read it.
    pub upstream_status: Option<Option<String>>,
    /// Why a paid order waits.
    pub waiting: Option<Option<String>>,
}

impl Amendment {
    /// Checks an amendment and the change recorded with it before any backend touches the
    /// database: names and fields must be storable ([`StoreError::Invalid`]). Returns the
    /// change with long texts cut to [`MAX_TEXT_LEN`]. Every backend calls this (through
    /// [`checked_change`]).
    pub fn checked(&self, change: Change) -> Result<Change, StoreError> {
        let invalid = |e: &dyn std::fmt::Display| StoreError::Invalid(e.to_string());
        if let Some(licence) = &self.licence_id {
            check_name("licence ID", licence).map_err(|e| invalid(&e))?;
        }
        if let Some(fields) = &self.fields {
            check_fields(fields).map_err(|e| invalid(&e))?;
        }
        if let Some(Some(status)) = &self.upstream_status {
            check_name("upstream status", status).map_err(|e| invalid(&e))?;
        }
        Ok(change.with_texts_cut())
    }
}

/// Checks a change of an order in `from` — to `to`, or an amendment that keeps the state when
/// `to` is `None` — as every backend must before touching the database; returns the change to
/// record, its texts cut.
pub fn checked_change(
    from: OrderState,
    to: Option<OrderState>,
    amendment: &Amendment,
    change: Change,
) -> Result<Change, StoreError> {
    let change = match to {
        Some(to) => change.checked(from, to)?,
        None if change.service_id.is_some() => {
            return Err(StoreError::Invalid(
                "a service ID is recorded only when an order is placed, not by an amendment"
                    .to_owned(),
            ));
        }
        None => change,
    };
    if let Some(Some(why)) = &amendment.waiting
        && why.len() > MAX_TEXT_LEN
    {
        return Err(StoreError::Invalid(
            "the waiting reason is too long".to_owned(),
        ));
    }
    amendment.checked(change)
}

/// Checks a list of upstream costs before any backend touches the database. Every backend
/// calls this; an error is [`StoreError::Invalid`].
pub fn check_costs(costs: &[UpstreamCost]) -> Result<(), StoreError> {
    UpstreamCost::validate_all(costs).map_err(|e| StoreError::Invalid(e.to_string()))
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
    /// Only orders of this tariff.
    pub tariff_id: Option<u64>,
    /// Only orders whose module expires on or before this day.
    pub expires_by: Option<time::Date>,
    /// Only orders created at or after this time (UNIX ms).
    pub created_from_ms: Option<i64>,
    /// Only orders created before this time (UNIX ms).
    pub created_to_ms: Option<i64>,
    /// Orders skipped first (paging).
    pub offset: u32,
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
            tariff_id: None,
            expires_by: None,
            created_from_ms: None,
            created_to_ms: None,
            offset: 0,
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
/// - at most one `New` order exists per (licence, licence IP, tariff, period);
/// - an order's history is totally ordered by its event number.
///
/// With a backend of one placer per database, [`recover_interrupted`] must only be run when no
/// other instance is placing (the placer, at startup). A backend whose claims expire
/// ([`claims_expire`]) records which instance claimed an order, and settles only its own
/// claims and those whose lease ran out.
///
/// [`claims_expire`]: OrderStore::claims_expire
///
/// [`recover_interrupted`]: OrderStore::recover_interrupted
pub trait OrderStore: Send + Sync {
    /// Records a `New` order — or, if an unpaid (`New`) order for the same licence, licence IP,
    /// tariff and period exists, returns that one unchanged (a repeated Buy redirect). A Buy
    /// that differs in any of them (one without the IP, say) gets an order of its own, so that
    /// an order page never shows what its Buy did not send. Atomic: racing calls for one such
    /// Buy create one order.
    fn create_or_reuse_new(&self, new: &NewOrder) -> Result<Created, StoreError>;

    /// The order with this ID.
    fn get(&self, id: &OrderId) -> Result<Order, StoreError>;

    /// Orders matching `filter`, newest first.
    fn list(&self, filter: &ListFilter) -> Result<Vec<Order>, StoreError>;

    /// Changes an order if, and only if, it is in `from` now: moves it to `to` when given (the
    /// state table must allow it), applies `amendment`, and records the change (and the event
    /// it announces) in the same transaction. Returns the order as changed.
    ///
    /// An amendment (`to` = `None`) records a [`TransitionRecord`] from `from` to `from` whose
    /// note should say what changed, and does not count an attempt.
    ///
    /// Errors: [`StoreError::Forbidden`] (table), [`StoreError::Invalid`] (the change, the
    /// amendment, or a licence ID that would give its licence a second identical `New` order),
    /// [`StoreError::NotFound`], [`StoreError::Conflict`] (it is not in `from`).
    fn change(
        &self,
        id: &OrderId,
        from: OrderState,
        to: Option<OrderState>,
        amendment: &Amendment,
        change: Change,
    ) -> Result<Order, StoreError>;

    /// Moves an order from `from` to `to`: [`change`](OrderStore::change) without amendment.
    fn transition(
        &self,
        id: &OrderId,
        from: OrderState,
        to: OrderState,
        change: Change,
    ) -> Result<Order, StoreError> {
        self.change(id, from, Some(to), &Amendment::default(), change)
    }

    /// Changes an order's details, keeping its state `expected`:
    /// [`change`](OrderStore::change) without a new state.
    fn amend(
        &self,
        id: &OrderId,
        expected: OrderState,
        amendment: &Amendment,
        change: Change,
    ) -> Result<Order, StoreError> {
        self.change(id, expected, None, amendment, change)
    }

    /// Records an order that exists upstream but was never sold through this host (found by
    /// the reconciliation), directly `Placed` with its service ID and expiry. Errors:
    /// [`StoreError::Invalid`], also when an order not removed already has this service ID.
    fn import_placed(
        &self,
        new: &NewOrder,
        service_id: &str,
        expires_on: Option<time::Date>,
        actor: &str,
    ) -> Result<Order, StoreError>;

    /// Counts of orders per state (states without orders are left out).
    fn counts(&self) -> Result<BTreeMap<OrderState, u64>, StoreError>;

    /// Whether the store takes writes now, for readiness probes: writes nothing. By default,
    /// whether it answers a read.
    fn check_writable(&self) -> Result<(), StoreError> {
        self.counts().map(drop)
    }

    /// Records, just before an upstream write leaves, that it is about to: for a placement
    /// (the order is still `Placing` under this claim) or for an operation (`pending →
    /// sending`). Fails — and the write must not be sent — when the record cannot be made or
    /// the claim was lost.
    fn mark_sending(&self, marker: &SendMarker) -> Result<(), StoreError>;

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

    /// At startup, before any worker runs, in one transaction: every `Placing` order whose
    /// write was marked about to leave becomes `InDoubt` (never re-sent automatically); one
    /// whose write was not marked provably sent nothing and goes back to `Paid`; likewise a
    /// `sending` operation becomes `in_doubt` and a `pending` one is dropped.
    fn recover_interrupted(&self) -> Result<Interrupted, StoreError>;

    /// How long a claim lasts without being renewed, for a backend that lets several hosts
    /// place at once: each claim (a `placing` order, an open operation) names its owner and
    /// carries a lease the owner renews while it works, and an upstream write is marked about
    /// to leave only under a live lease. `None` (the default) for a backend with one placer
    /// per database, elected outside the store (a file lock).
    fn claims_expire(&self) -> Option<std::time::Duration> {
        None
    }

    /// Settles the claims whose lease ran out (see [`claims_expire`]) as
    /// [`recover_interrupted`] settles a stopped placer's, in one transaction; claims whose
    /// owner still renews them are left alone, so any host may run it at any time. A backend
    /// without leases has none to settle.
    ///
    /// [`claims_expire`]: OrderStore::claims_expire
    /// [`recover_interrupted`]: OrderStore::recover_interrupted
    fn recover_expired(&self) -> Result<Interrupted, StoreError> {
        Ok(Interrupted::default())
    }

    /// Claims one run of the scheduled task `name` (the status sync, the upkeep pass, …) if no
    /// host ran it within the last `every`: on a backend several hosts share, exactly one of
    /// them runs each round, so a round's work (and the events it emits) is done once. A
    /// backend with one placer always answers yes: its one worker paces the task itself.
    fn claim_scheduled(&self, name: &str, every: std::time::Duration) -> Result<bool, StoreError> {
        let _ = (name, every);
        Ok(true)
    }

    /// Deletes orders that were cancelled without ever being paid, last changed before
    /// `before_ms`, with their history; returns how many. Keeps the database bounded under
    /// abandoned Buys.
    fn purge_abandoned(&self, before_ms: i64) -> Result<u64, StoreError>;
}

/// What [`OrderStore::recover_interrupted`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Interrupted {
    /// Placements that may have reached upstream: now `InDoubt`.
    pub in_doubt: Vec<Order>,
    /// Placements that provably sent nothing: back to `Paid`.
    pub requeued: Vec<Order>,
    /// Operations that may have reached upstream: now `in_doubt`.
    pub operations_in_doubt: Vec<Operation>,
    /// Operations that sent nothing: dropped.
    pub operations_dropped: Vec<Operation>,
}

/// Whose upstream write is about to leave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendMarker {
    /// A placement of the order, under its claim.
    Placement(OrderId),
    /// An operation.
    Operation(i64),
}

/// How an operation ends, for [`OperationStore::settle_operation`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperationEnd {
    /// `done`, `failed` or `in_doubt`.
    pub state: OperationState,
    /// What upstream answered (done).
    pub result: Option<serde_json::Value>,
    /// Why it failed or is in doubt.
    pub error: Option<String>,
    /// Who settled it by hand, when someone did (an operator resolving a doubt).
    pub settled_by: Option<String>,
}

/// What a done operation does to its order, in the same transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderEffect {
    /// The state the order must be in.
    pub from: OrderState,
    /// Its new state, if it changes.
    pub to: Option<OrderState>,
    /// What else changes.
    pub amendment: Amendment,
    /// The record of it.
    pub change: Change,
}

/// The durable record of operations on placed modules; see [`super::operation`].
///
/// Guarantees every backend gives: at most one open operation per order; an idempotency key
/// names at most one operation of an order; every method is atomic, and a settlement changes
/// the operation and its order together or not at all.
pub trait OperationStore: Send + Sync {
    /// Begins an operation (`pending`), or finds the one its idempotency key already names.
    ///
    /// Errors: [`StoreError::NotFound`] (the order), [`StoreError::OperationOpen`] (another
    /// operation of the order is open), [`StoreError::Invalid`] (the key names an operation
    /// of another kind).
    fn begin_operation(&self, new: &NewOperation) -> Result<Began, StoreError>;

    /// The operation `id`.
    fn operation(&self, id: i64) -> Result<Operation, StoreError>;

    /// The operations of an order, oldest first.
    fn operations(&self, order: &OrderId) -> Result<Vec<Operation>, StoreError>;

    /// Operations in `state`, oldest first (e.g. the ones in doubt, for reconciliation).
    fn operations_in(&self, state: OperationState) -> Result<Vec<Operation>, StoreError>;

    /// Settles an operation that is in one of `from` (and changes its order by `effect`), in
    /// one transaction. Errors: [`StoreError::NoOperation`], [`StoreError::Conflict`] from the
    /// order, [`StoreError::Invalid`] when the operation is not in one of `from`.
    fn settle_operation(
        &self,
        id: i64,
        from: &[OperationState],
        end: OperationEnd,
        effect: Option<OrderEffect>,
    ) -> Result<Operation, StoreError>;

    /// Drops a `pending` operation that sent nothing, so that its key may try again.
    fn drop_operation(&self, id: i64) -> Result<(), StoreError>;
}

/// The durable outbox of events for the billing system; see [`super::events`].
///
/// Guarantees every backend gives: an event is written in the same transaction as the change
/// it announces; IDs grow; a delivery claim is held by one deliverer until its lease ends.
pub trait EventStore: Send + Sync {
    /// Records an event not tied to an order change (balance low, renewal due). With a
    /// `dedupe` key, an event with the same key already recorded makes this a no-op
    /// (returns `None`).
    fn emit(
        &self,
        kind: EventKind,
        order: Option<&OrderId>,
        data: serde_json::Value,
        dedupe: Option<&str>,
    ) -> Result<Option<i64>, StoreError>;

    /// Events with an ID above `after`, oldest first, at most `limit`.
    fn events_after(&self, after: i64, limit: u32) -> Result<Vec<Event>, StoreError>;

    /// Claims up to `limit` undelivered events whose next attempt is due at `now_ms`, each
    /// for `lease_ms` (no other deliverer gets them meanwhile); oldest first.
    fn claim_deliveries(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError>;

    /// The event was delivered.
    fn delivered(&self, id: i64) -> Result<(), StoreError>;

    /// How many delivery attempts an event has had.
    fn delivery_attempts(&self, id: i64) -> Result<u32, StoreError>;

    /// The delivery failed; try again at `next_ms`.
    fn delivery_failed(&self, id: i64, next_ms: i64, error: &str) -> Result<(), StoreError>;

    /// Undelivered events, and the oldest one's age base (UNIX ms), for health reports.
    fn undelivered(&self) -> Result<(u64, Option<i64>), StoreError>;

    /// Deletes events recorded before `before_ms` that were delivered (all of them with
    /// `undelivered_too`, when no webhook is configured); returns how many.
    fn purge_events(&self, before_ms: i64, undelivered_too: bool) -> Result<u64, StoreError>;
}

/// Everything the desk keeps: orders, operations, events and upstream's prices, in one
/// database.
pub trait Backend: OrderStore + OperationStore + EventStore + CostStore {}

impl<T: OrderStore + OperationStore + EventStore + CostStore> Backend for T {}

/// Upstream's prices last fetched (its tariffs and their costs), kept so that they survive a
/// restart and can be shown with their age.
///
/// Guarantees every backend gives: [`replace_upstream`] is atomic (readers see the old prices
/// or the new ones, never a mix) and changes nothing when it fails.
///
/// [`replace_upstream`]: CostStore::replace_upstream
pub trait CostStore: Send + Sync {
    /// Replaces the stored upstream prices with `prices`, atomically; records when.
    ///
    /// Empty prices are recorded as a fetch that found none. Errors: [`StoreError::Invalid`]
    /// ([`check_costs`]), and nothing changes.
    fn replace_upstream(&self, prices: &UpstreamPrices) -> Result<(), StoreError>;

    /// The stored upstream prices (tariffs in upstream's order; costs ordered by tariff,
    /// period, then currency) and when they were fetched (UNIX ms), or None if never.
    fn upstream(&self) -> Result<Option<(UpstreamPrices, i64)>, StoreError>;

    /// Records the partner's upstream balance, read now.
    fn record_balance(&self, balance: &Money) -> Result<(), StoreError>;

    /// The balance last read and when (UNIX ms), or None if never.
    fn balance(&self) -> Result<Option<(Money, i64)>, StoreError>;
}

/// Behaviour every backend must show; a backend's tests call these on a fresh store.
/// The time now, UNIX milliseconds.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
pub(crate) mod conformance;

#[cfg(test)]
mod tests {
    use super::*;

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
