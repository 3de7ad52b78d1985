//! Orders: the durable record of every module order and its life.
//!
//! An order is born from the panel's Buy redirect (protocol reference §3), becomes paid when the
//! partner's billing system says so, is placed upstream with `addition.order.param` (§4) — or by
//! an operator in manual mode (§5) — and may later be removed. This module holds the domain
//! (the [`Order`], its [`OrderState`] and the transitions allowed between states); [`store`]
//! holds the storage contract ([`OrderStore`]), [`sqlite`] its SQLite backend (one placing
//! process per database) and [`postgres`] its PostgreSQL backend (several hosts placing from
//! one database, each claim with a lease).
//!
//! # States and transitions
//!
//! | from        | to          | who / why |
//! |-------------|-------------|-----------|
//! | *(none)*    | `New`       | recorded from the Buy redirect; unpaid |
//! | `New`       | `Paid`      | the billing system says the user paid |
//! | `New`       | `Cancelled` | abandoned or cancelled before payment |
//! | `Paid`      | `Placing`   | a worker claims the order and is about to send the upstream request ([`OrderStore::claim_for_placing`]); counts an attempt |
//! | `Paid`      | `Paid`      | a retry is scheduled after a failure that happened *before* anything was sent (e.g. the plugin or the upstream configuration was unavailable); counts an attempt and records the error |
//! | `Paid`      | `Placed`    | manual mode: an operator placed it by hand and gives the service ID |
//! | `Paid`      | `Cancelled` | refunded before placement |
//! | `Placing`   | `Placed`    | upstream answered with the new service ID |
//! | `Placing`   | `Failed`    | upstream refused with an error that means no order exists (bad value, insufficient balance, wrong credentials) |
//! | `Placing`   | `InDoubt`   | the request may have reached upstream but the outcome is unknown (timeout after sending, connection cut, unreadable answer); also every `Placing` order found at startup ([`OrderStore::mark_interrupted_in_doubt`]) |
//! | `Placing`   | `Paid`      | the request provably never left (connection refused, DNS failure): the claim is released so the order is retried with backoff |
//! | `Failed`    | `Paid`      | an operator retries (e.g. after topping up the balance) |
//! | `Failed`    | `Cancelled` | an operator gives up and refunds |
//! | `InDoubt`   | `Placed`    | an operator found the service upstream and gives its ID |
//! | `InDoubt`   | `Paid`      | an operator (or a reconciliation step) established that it is absent: retry |
//! | `Placed`    | `Suspended` | the module was suspended upstream (the end user stopped paying), or an operator did it by hand |
//! | `Suspended` | `Placed`    | the module was resumed |
//! | `Placed`    | `Removed`   | `addition.delete` succeeded, or an operator removed it |
//! | `Suspended` | `Removed`   | the same, for a suspended module |
//!
//! `Cancelled` and `Removed` are final. Nothing leaves `InDoubt` by a new request: sending
//! it again could charge the partner twice, which is the worst outcome. An operator, or the
//! reconciliation when upstream lists the order under its `remoteid`, settles it.
//!
//! A placement whose claim was interrupted before the host recorded "about to send"
//! ([`OrderStore::mark_sending`]) provably sent nothing: it goes back to `Paid`, not to
//! `InDoubt`. Operations on a placed module (renew, suspend, resume, remove, rebind) are
//! [`operation::Operation`]s of their own, with the same rules.
//!
//! `Placing → Paid` is the one way back from `Placing` that re-queues the order. A caller may
//! take it only when the request cannot have reached upstream; anything else goes to `InDoubt`.

pub mod balance;
pub mod buy;
pub mod desk;
mod error;
pub mod events;
pub mod journal;
pub mod lifecycle;
pub mod operation;
pub mod page;
pub mod placement;
mod placer;
pub mod postgres;
mod prices;
pub mod reconcile;
pub mod sqlite;
pub mod store;
pub mod upkeep;
pub mod worker;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::money::Money;
use crate::money::Months;

pub use desk::OrderDesk;
pub use error::{DeskError, UpstreamOutcome};
pub use postgres::PgStore;
pub use prices::PriceRefresh;
pub use sqlite::SqliteStore;
pub use store::{
    Amendment, CallOutcome, Change, CostStore, Created, HistoryEntry, ListFilter, OrderStore,
    StoreError, TransitionRecord, UpstreamCall, UpstreamCallRecord,
};

/// Longest licence ID, service name or service ID accepted, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// The state of an order. See the [module documentation](self) for the transitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    /// Recorded from the Buy redirect; not paid.
    New,
    /// Paid; queued for placement (or waiting for an operator in manual mode).
    Paid,
    /// A worker holds the order and is making the upstream request.
    Placing,
    /// Upstream returned the service ID.
    Placed,
    /// Upstream refused; no order exists upstream. An operator may retry.
    Failed,
    /// The request may have reached upstream; the outcome is unknown. Waits for an operator.
    InDoubt,
    /// Cancelled before placement. Final.
    Cancelled,
    /// The module was removed after placement. Final.
    Removed,
    /// Placed, and suspended upstream.
    Suspended,
}

impl OrderState {
    /// Every state, in the order of a typical life.
    pub const ALL: [OrderState; 9] = [
        OrderState::New,
        OrderState::Paid,
        OrderState::Placing,
        OrderState::Placed,
        OrderState::Suspended,
        OrderState::Failed,
        OrderState::InDoubt,
        OrderState::Cancelled,
        OrderState::Removed,
    ];

    /// The stable name used in storage and in the API (`in_doubt`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::New => "new",
            OrderState::Paid => "paid",
            OrderState::Placing => "placing",
            OrderState::Placed => "placed",
            OrderState::Failed => "failed",
            OrderState::InDoubt => "in_doubt",
            OrderState::Cancelled => "cancelled",
            OrderState::Removed => "removed",
            OrderState::Suspended => "suspended",
        }
    }

    /// Whether the module exists upstream in this state (placed, or suspended).
    pub fn is_upstream(self) -> bool {
        matches!(self, OrderState::Placed | OrderState::Suspended)
    }

    /// Whether no transition leaves this state.
    pub fn is_final(self) -> bool {
        OrderState::ALL.iter().all(|&to| !can_transition(self, to))
    }
}

impl fmt::Display for OrderState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state name that is not one of [`OrderState::as_str`]'s.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an order state")]
pub struct UnknownState(pub String);

impl FromStr for OrderState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OrderState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownState(s.chars().take(64).collect()))
    }
}

/// Whether an order may go from `from` to `to`: the table in the [module documentation](self).
pub fn can_transition(from: OrderState, to: OrderState) -> bool {
    use OrderState::*;
    matches!(
        (from, to),
        (New, Paid | Cancelled)
            | (Paid, Placing | Paid | Placed | Cancelled)
            | (Placing, Placed | Failed | InDoubt | Paid)
            | (Failed, Paid | Cancelled)
            | (InDoubt, Placed | Paid)
            | (Placed, Suspended | Removed)
            | (Suspended, Placed | Removed)
    )
}

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// An order's ID: 26 characters of Crockford base32 laid out like a ULID (48 bits of creation
/// time in milliseconds, then 80 random bits), e.g. `01JQ3V6K8Z9X4N2B7C5D0E1F2G`.
///
/// Why a string and not an integer: the ID travels to the user's browser in the checkout URL and
/// is shown on the order page, so it must not be guessable or reveal how many orders the
/// partner has, as a counter would; it must also be unique across several host instances
/// sharing one PostgreSQL database without a central sequence. The time prefix keeps IDs
/// roughly sortable by creation and index-friendly. The random part comes from the backend
/// (SQLite's `randomblob`, seeded from the OS; PostgreSQL's `gen_random_bytes`), so no new
/// dependency is needed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct OrderId(String);

/// A string that is not an [`OrderId`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not an order ID: expected 26 characters of Crockford base32")]
pub struct InvalidOrderId;

impl OrderId {
    /// The length of every order ID.
    pub const LEN: usize = 26;

    /// Builds an ID from a creation time (UNIX milliseconds; only the low 48 bits are kept) and
    /// 80 bits of randomness.
    pub fn from_parts(unix_ms: u64, entropy: [u8; 10]) -> OrderId {
        let mut value = u128::from(unix_ms & 0xFFFF_FFFF_FFFF) << 80;
        for (i, b) in entropy.iter().enumerate() {
            value |= u128::from(*b) << (8 * (9 - i));
        }
        let mut out = String::with_capacity(Self::LEN);
        for i in (0..Self::LEN).rev() {
            let digit = (value >> (5 * i)) & 0x1F;
            // `digit` < 32, so the index is in range.
            out.push(char::from(CROCKFORD[digit as usize]));
        }
        OrderId(out)
    }

    /// Parses an ID from untrusted input (case-insensitive; stored upper-case).
    pub fn parse(s: &str) -> Result<OrderId, InvalidOrderId> {
        if s.len() != Self::LEN {
            return Err(InvalidOrderId);
        }
        let upper = s.to_ascii_uppercase();
        let valid = upper.bytes().all(|b| CROCKFORD.contains(&b))
            // 26 × 5 = 130 bits: the first digit holds only the top 3 bits of 128.
            && upper.as_bytes().first().is_some_and(|b| *b <= b'7');
        if valid {
            Ok(OrderId(upper))
        } else {
            Err(InvalidOrderId)
        }
    }

    /// The ID as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for OrderId {
    type Err = InvalidOrderId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OrderId::parse(s)
    }
}

impl<'de> Deserialize<'de> for OrderId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        OrderId::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// What a new order is made of: everything the Buy redirect and the partner's price give.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewOrder {
    /// The panel's licence ID (the `item` of upstream calls).
    pub licence_id: String,
    /// The licence's IP, when the panel sent one.
    pub licence_ip: Option<IpAddr>,
    /// The module's tariff ID (the `pricelist` of upstream calls).
    pub tariff_id: u64,
    /// The module's service name (`intname`).
    pub service_name: String,
    /// The price the user was shown.
    pub price: Money,
    /// The period ordered (`period` upstream).
    pub period: Months,
    /// Whether the module renews itself (`autoprolong` = the period, else `null`).
    pub autoprolong: bool,
    /// The Buy's `module` parameter as the panel sent it, when there was a Buy.
    pub module: Option<String>,
    /// The module's own order fields (e.g. `bitninja_email`), by name.
    pub fields: OrderFields,
}

/// A module's own order fields, by name: sent upstream with the order.
pub type OrderFields = BTreeMap<String, String>;

/// The longest value of an order field, in bytes.
pub const MAX_FIELD_LEN: usize = 1024;

/// A field of an order that a store cannot keep.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidOrder {
    /// A name or an ID that is empty, too long, or holds control characters.
    #[error(transparent)]
    Name(#[from] BadName),
    /// A tariff ID beyond what the databases store.
    #[error("tariff ID {0} is too large")]
    TariffTooLarge(u64),
    /// An order field with a name or a value that cannot be kept.
    #[error(
        "order field `{0}`: a name of letters, digits and `_`, and a value of at most 1024 bytes without control characters"
    )]
    Field(String),
}

/// Checks order fields: names of ASCII letters, digits and `_` (as BILLmanager's), values of at
/// most [`MAX_FIELD_LEN`] bytes without control characters; at most 32 of them.
pub fn check_fields(fields: &OrderFields) -> Result<(), InvalidOrder> {
    if fields.len() > 32 {
        return Err(InvalidOrder::Field("(more than 32 fields)".to_owned()));
    }
    for (name, value) in fields {
        let good_name = (1..=64).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !good_name || value.len() > MAX_FIELD_LEN || value.chars().any(char::is_control) {
            return Err(InvalidOrder::Field(name.chars().take(64).collect()));
        }
    }
    Ok(())
}

impl NewOrder {
    /// Checks the fields a store relies on; the error says which one is wrong. (The price and
    /// the period are valid by their types.)
    ///
    /// This is a last line of defence: the HTTP layer validates browser input first.
    pub fn validate(&self) -> Result<(), InvalidOrder> {
        check_name("licence ID", &self.licence_id)?;
        check_name("service name", &self.service_name)?;
        if i64::try_from(self.tariff_id).is_err() {
            return Err(InvalidOrder::TariffTooLarge(self.tariff_id));
        }
        check_fields(&self.fields)
    }
}

/// An identifier-like text that cannot be kept.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadName {
    /// Nothing but spaces.
    #[error("the {0} is empty")]
    Empty(&'static str),
    /// Longer than [`MAX_NAME_LEN`] bytes.
    #[error("the {0} is longer than {MAX_NAME_LEN} bytes")]
    TooLong(&'static str),
    /// A control character.
    #[error("the {0} contains control characters")]
    Control(&'static str),
}

/// Checks an identifier-like text: not empty, at most [`MAX_NAME_LEN`] bytes, no control
/// characters.
pub(crate) fn check_name(what: &'static str, value: &str) -> Result<(), BadName> {
    if value.trim().is_empty() {
        Err(BadName::Empty(what))
    } else if value.len() > MAX_NAME_LEN {
        Err(BadName::TooLong(what))
    } else if value.chars().any(char::is_control) {
        Err(BadName::Control(what))
    } else {
        Ok(())
    }
}

/// One order, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Order {
    /// Its ID.
    pub id: OrderId,
    /// The panel's licence ID (the `item` of upstream calls).
    pub licence_id: String,
    /// The licence's IP, when the panel sent one.
    pub licence_ip: Option<IpAddr>,
    /// The module's tariff ID (the `pricelist` of upstream calls).
    pub tariff_id: u64,
    /// The module's service name (`intname`).
    pub service_name: String,
    /// The price the user was shown.
    pub price: Money,
    /// The period ordered.
    #[serde(rename = "period_months")]
    pub period: Months,
    /// Whether the module renews itself.
    pub autoprolong: bool,
    /// The upstream service ID (`elid` of later calls), once placed.
    pub upstream_service_id: Option<String>,
    /// Where the order is in its life.
    pub state: OrderState,
    /// How many placement attempts were started (claims, plus retries before sending).
    pub attempts: u32,
    /// The last error recorded by a transition, if any.
    pub last_error: Option<String>,
    /// When it was recorded, UNIX milliseconds.
    pub created_ms: i64,
    /// When it last changed (state or details), UNIX milliseconds.
    pub updated_ms: i64,
    /// The Buy's `module` parameter as the panel sent it, when there was a Buy.
    pub module: Option<String>,
    /// The module's own order fields, by name.
    pub fields: OrderFields,
    /// When the module expires upstream, as upstream last said.
    #[serde(rename = "expires_at", with = "crate::dates::iso::option")]
    pub expires_on: Option<time::Date>,
    /// Where the module stands upstream, as the last status sync read it (`active`,
    /// `suspended`, `deleted`, `ordered`, `unknown`).
    pub upstream_status: Option<String>,
    /// Why a paid order is not being placed now (a missing order field, too little balance).
    pub waiting: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use OrderState::*;

    const ALLOWED: &[(OrderState, OrderState)] = &[
        (New, Paid),
        (New, Cancelled),
        (Paid, Placing),
        (Paid, Paid),
        (Paid, Placed),
        (Paid, Cancelled),
        (Placing, Placed),
        (Placing, Failed),
        (Placing, InDoubt),
        (Placing, Paid),
        (Failed, Paid),
        (Failed, Cancelled),
        (InDoubt, Placed),
        (InDoubt, Paid),
        (Placed, Suspended),
        (Placed, Removed),
        (Suspended, Placed),
        (Suspended, Removed),
    ];

    #[test]
    fn transition_table_is_exactly_the_documented_one() {
        for from in OrderState::ALL {
            for to in OrderState::ALL {
                let expected = ALLOWED.contains(&(from, to));
                assert_eq!(can_transition(from, to), expected, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn dangerous_transitions_are_forbidden() {
        // Nothing leaves `InDoubt` towards a new request without an operator's `Paid`.
        assert!(!can_transition(InDoubt, Placing));
        assert!(!can_transition(InDoubt, Failed));
        assert!(!can_transition(InDoubt, Cancelled));
        // Unpaid orders are never placed.
        assert!(!can_transition(New, Placing));
        assert!(!can_transition(New, Placed));
        // A placing order is not claimed twice, nor cancelled under a worker's feet.
        assert!(!can_transition(Placing, Placing));
        assert!(!can_transition(Placing, Cancelled));
        // A placed order is not placed again or un-placed.
        assert!(!can_transition(Placed, Paid));
        assert!(!can_transition(Placed, Placing));
        assert!(!can_transition(Placed, Cancelled));
        // Final states stay final.
        for to in OrderState::ALL {
            assert!(!can_transition(Cancelled, to));
            assert!(!can_transition(Removed, to));
        }
    }

    #[test]
    fn only_cancelled_and_removed_are_final() {
        let finals: Vec<_> = OrderState::ALL
            .into_iter()
            .filter(|s| s.is_final())
            .collect();
        assert_eq!(finals, [Cancelled, Removed]);
    }

    #[test]
    fn state_names_round_trip() {
        for s in OrderState::ALL {
            assert_eq!(s.as_str().parse::<OrderState>(), Ok(s));
            let json = serde_json::to_string(&s).expect("serialise");
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        assert_eq!(
            "PAID".parse::<OrderState>(),
            Err(UnknownState("PAID".to_owned()))
        );
        assert!("".parse::<OrderState>().is_err());
    }

    #[test]
    fn order_ids_have_the_ulid_layout() {
        let id = OrderId::from_parts(0, [0; 10]);
        assert_eq!(id.as_str(), "00000000000000000000000000");
        let id = OrderId::from_parts(u64::MAX, [0xFF; 10]);
        assert_eq!(id.as_str(), "7ZZZZZZZZZZZZZZZZZZZZZZZZZ");
        // 1_700_000_000_000 ms is 01HF7YAT00 in ULID's time prefix.
        let id = OrderId::from_parts(1_700_000_000_000, [0; 10]);
        assert!(id.as_str().starts_with("01HF7YAT00"), "{id}");
        // Later times sort later.
        let a = OrderId::from_parts(1_700_000_000_000, [0xFF; 10]);
        let b = OrderId::from_parts(1_700_000_000_001, [0; 10]);
        assert!(a < b);
    }

    #[test]
    fn order_ids_are_parsed_strictly() {
        let id = OrderId::from_parts(1_700_000_000_000, [7; 10]);
        assert_eq!(OrderId::parse(id.as_str()), Ok(id.clone()));
        assert_eq!(
            OrderId::parse(&id.as_str().to_ascii_lowercase()),
            Ok(id.clone())
        );
        for bad in [
            "",
            "1",
            "01HF89SN00000000000000000",   // 25
            "01HF89SN0000000000000000000", // 27
            "01HF89SN0000000000000000IL",  // letters outside the alphabet
            "81HF89SN000000000000000000",  // overflows 128 bits
            "01HF89SN0000000000000000é",   // multi-byte
            "../../etc/passwd/aaaaaaaaa",
        ] {
            assert_eq!(OrderId::parse(bad), Err(InvalidOrderId), "{bad:?}");
        }
        let json = serde_json::to_string(&id).expect("serialise");
        let back: OrderId = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(back, id);
        assert!(serde_json::from_str::<OrderId>("\"nope\"").is_err());
    }

    fn valid() -> NewOrder {
        NewOrder {
            licence_id: "123456".to_owned(),
            licence_ip: Some("192.0.2.10".parse().expect("ip")),
            tariff_id: 55361,
            service_name: "drweb".to_owned(),
            price: Money::from_units(99_000, "EUR").expect("money"),
            period: Months::MONTH,
            autoprolong: true,
            module: Some("drweb".to_owned()),
            fields: OrderFields::new(),
        }
    }

    #[test]
    fn new_orders_are_validated() {
        assert_eq!(valid().validate(), Ok(()));
        let cases: Vec<(NewOrder, &str)> = vec![
            (
                NewOrder {
                    licence_id: " ".to_owned(),
                    ..valid()
                },
                "licence ID is empty",
            ),
            (
                NewOrder {
                    licence_id: "x".repeat(257),
                    ..valid()
                },
                "longer than",
            ),
            (
                NewOrder {
                    service_name: "a\nb".to_owned(),
                    ..valid()
                },
                "control",
            ),
            (
                NewOrder {
                    tariff_id: u64::MAX,
                    ..valid()
                },
                "too large",
            ),
            (
                NewOrder {
                    fields: [("bad name".to_owned(), "x".to_owned())].into(),
                    ..valid()
                },
                "order field `bad name`",
            ),
            (
                NewOrder {
                    fields: [("email".to_owned(), "a\u{0}b".to_owned())].into(),
                    ..valid()
                },
                "order field `email`",
            ),
        ];
        for (order, needle) in cases {
            let err = order.validate().expect_err("invalid order accepted");
            assert!(err.to_string().contains(needle), "{err:?} lacks {needle:?}");
        }
    }
}
