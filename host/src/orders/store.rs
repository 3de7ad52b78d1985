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

use std::net::IpAddr;

use serde::Serialize;

use super::{NewOrder, Order, OrderId, OrderState, can_transition, check_name};
use crate::catalogue::UpstreamPrices;
use crate::money::UpstreamCost;

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
                check_name("service ID", id).map_err(|e| StoreError::Invalid(e.to_string()))?;
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
    text.truncate(text.floor_char_boundary(max));
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
            check_name("licence ID", licence).map_err(|e| StoreError::Invalid(e.to_string()))?;
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
}

/// Behaviour every backend must show; a backend's tests call these on a fresh store.
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
