//! Events for the billing system: what happened to its orders, and to the partner's account,
//! so that it does not have to poll.
//!
//! Every event is written to an outbox in the order database in the same transaction as the
//! change it announces ([`super::EventStore`]), then delivered at least once to the configured
//! webhook (`[events] webhook_url`) with backoff; `GET /api/v1/events?after=ID` serves the same
//! feed to those who poll. A receiver deduplicates by the event's `id`.
//!
//! A delivery is an HTTP `POST` of one event as JSON:
//!
//! ```json
//! {"id": 42, "type": "order.placed", "at": "2026-12-02T10:00:00Z",
//!  "order_id": "01JQ3V6K8Z9X4N2B7C5D0E1F2G", "data": {"order": {…}}}
//! ```
//!
//! with the headers `X-Reseller-Event: order.placed`, `X-Reseller-Delivery: 42` and
//! `X-Reseller-Signature: sha256=<hex>`, the HMAC-SHA256 of the body under the configured
//! secret. Any `2xx` answer is a delivery; anything else is tried again later.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::{OrderId, OrderState};

/// What an event says happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    /// The billing system marked an order paid.
    #[serde(rename = "order.paid")]
    Paid,
    /// The module was ordered upstream.
    #[serde(rename = "order.placed")]
    Placed,
    /// Upstream refused the order, or the host gave up: nothing exists upstream.
    #[serde(rename = "order.failed")]
    Failed,
    /// The order may or may not exist upstream: someone must look.
    #[serde(rename = "order.in_doubt")]
    InDoubt,
    /// The order was cancelled before placement.
    #[serde(rename = "order.cancelled")]
    Cancelled,
    /// The module was renewed upstream.
    #[serde(rename = "order.renewed")]
    Renewed,
    /// The module was suspended.
    #[serde(rename = "order.suspended")]
    Suspended,
    /// The module was resumed.
    #[serde(rename = "order.resumed")]
    Resumed,
    /// The module was removed.
    #[serde(rename = "order.removed")]
    Removed,
    /// The module was bound to another licence.
    #[serde(rename = "order.rebound")]
    Rebound,
    /// The module expires soon and has not been renewed.
    #[serde(rename = "renewal.due")]
    RenewalDue,
    /// The module's expiry passed without a renewal.
    #[serde(rename = "order.lapsed")]
    Lapsed,
    /// An operation on a placed module may or may not have happened upstream.
    #[serde(rename = "operation.in_doubt")]
    OperationInDoubt,
    /// Upstream refused an operation on a placed module.
    #[serde(rename = "operation.failed")]
    OperationFailed,
    /// The partner's upstream balance fell below `upstream.balance_alert`.
    #[serde(rename = "balance.low")]
    BalanceLow,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 15] = [
        EventKind::Paid,
        EventKind::Placed,
        EventKind::Failed,
        EventKind::InDoubt,
        EventKind::Cancelled,
        EventKind::Renewed,
        EventKind::Suspended,
        EventKind::Resumed,
        EventKind::Removed,
        EventKind::Rebound,
        EventKind::RenewalDue,
        EventKind::Lapsed,
        EventKind::OperationInDoubt,
        EventKind::OperationFailed,
        EventKind::BalanceLow,
    ];

    /// The stable name (`order.placed`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Paid => "order.paid",
            EventKind::Placed => "order.placed",
            EventKind::Failed => "order.failed",
            EventKind::InDoubt => "order.in_doubt",
            EventKind::Cancelled => "order.cancelled",
            EventKind::Renewed => "order.renewed",
            EventKind::Suspended => "order.suspended",
            EventKind::Resumed => "order.resumed",
            EventKind::Removed => "order.removed",
            EventKind::Rebound => "order.rebound",
            EventKind::RenewalDue => "renewal.due",
            EventKind::Lapsed => "order.lapsed",
            EventKind::OperationInDoubt => "operation.in_doubt",
            EventKind::OperationFailed => "operation.failed",
            EventKind::BalanceLow => "balance.low",
        }
    }

    /// The event a change of state announces, if any: entering `paid` (not a retry),
    /// `placed`, `failed`, `in_doubt`, `cancelled`, `suspended` or `removed`; `placed` from
    /// `suspended` is a resumption.
    pub fn of_transition(from: OrderState, to: OrderState) -> Option<EventKind> {
        use OrderState as S;
        match (from, to) {
            (S::Suspended, S::Placed) => Some(EventKind::Resumed),
            (S::New | S::Failed | S::InDoubt, S::Paid) => Some(EventKind::Paid),
            (_, S::Placed) => Some(EventKind::Placed),
            (_, S::Failed) => Some(EventKind::Failed),
            (_, S::InDoubt) => Some(EventKind::InDoubt),
            (_, S::Cancelled) => Some(EventKind::Cancelled),
            (_, S::Suspended) => Some(EventKind::Suspended),
            (_, S::Removed) => Some(EventKind::Removed),
            _ => None,
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not an event kind.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an event kind")]
pub struct UnknownEvent(pub String);

impl FromStr for EventKind {
    type Err = UnknownEvent;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownEvent(s.chars().take(64).collect()))
    }
}

/// One event, as stored and as delivered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Its ID: growing, unique; the receiver's deduplication key.
    pub id: i64,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// When, as RFC 3339 UTC.
    #[serde(rename = "at", serialize_with = "rfc3339")]
    pub at_ms: i64,
    /// The order concerned, if any.
    pub order_id: Option<OrderId>,
    /// What happened, in detail: the order as it became (`order`), and the change's own data.
    pub data: serde_json::Value,
}

fn rfc3339<S: serde::Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(*ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let text = at
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(serde::ser::Error::custom)?;
    s.serialize_str(&text)
}

impl Event {
    /// The body of its delivery.
    pub fn body(&self) -> Vec<u8> {
        // A struct of strings, numbers and a JSON value always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The `X-Reseller-Signature` of `body` under `secret`: `sha256=` and the HMAC-SHA256 in hex.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(body);
    format!("sha256={:x}", mac.finalize().into_bytes())
}

/// Whether `header` is `body`'s signature under `secret`, compared in constant time: what a
/// receiver checks.
pub fn verify(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Some(expected) = decode_hex(hex) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Why one delivery did not happen.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The receiver answered something else than `2xx`.
    #[error("the webhook answered HTTP {0}")]
    Status(u16),
    /// The request did not complete.
    #[error("the webhook could not be reached: {0}")]
    Http(String),
}

/// Sends events to a webhook.
pub struct Webhook {
    url: String,
    secret: Vec<u8>,
    client: reqwest::blocking::Client,
}

impl Webhook {
    /// A webhook at `url`, signing with `secret`, giving each delivery `timeout`.
    pub fn new(url: &str, secret: &[u8], timeout: Duration) -> Result<Webhook, DeliveryError> {
        let client = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| DeliveryError::Http(e.to_string()))?;
        Ok(Webhook {
            url: url.to_owned(),
            secret: secret.to_vec(),
            client,
        })
    }

    /// Delivers one event.
    pub fn deliver(&self, event: &Event) -> Result<(), DeliveryError> {
        let body = event.body();
        let response = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Reseller-Event", event.kind.as_str())
            .header("X-Reseller-Delivery", event.id.to_string())
            .header("X-Reseller-Signature", signature(&self.secret, &body))
            .body(body)
            .send()
            .map_err(|e| DeliveryError::Http(without_url(&e)))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(DeliveryError::Status(status.as_u16()))
        }
    }
}

/// A reqwest error without the URL, which may carry credentials.
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    kind.to_owned()
}

/// The wait before delivery attempt `attempt + 1`: 5 s doubling, at most an hour.
pub fn retry_delay(attempt: u32) -> Duration {
    let seconds = 5u64.saturating_mul(1 << attempt.min(12));
    Duration::from_secs(seconds.min(3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_transitions_announce_what_they_should() {
        for k in EventKind::ALL {
            assert_eq!(k.as_str().parse::<EventKind>(), Ok(k));
            let json = serde_json::to_string(&k).expect("json");
            assert_eq!(json, format!("\"{}\"", k.as_str()));
        }
        use OrderState as S;
        assert_eq!(
            EventKind::of_transition(S::Placing, S::Placed),
            Some(EventKind::Placed)
        );
        assert_eq!(
            EventKind::of_transition(S::Suspended, S::Placed),
            Some(EventKind::Resumed)
        );
        assert_eq!(EventKind::of_transition(S::Paid, S::Placing), None);
        assert_eq!(EventKind::of_transition(S::Paid, S::Paid), None);
        assert_eq!(EventKind::of_transition(S::Placing, S::Paid), None);
        assert_eq!(
            EventKind::of_transition(S::New, S::Paid),
            Some(EventKind::Paid)
        );
    }

    #[test]
    fn signatures_are_hmac_sha256_and_verify() {
        // RFC 4231, test case 2.
        let sig = signature(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(verify(b"Jefe", b"what do ya want for nothing?", &sig));
        assert!(!verify(b"Jefe", b"what do ya want for nothing!", &sig));
        assert!(!verify(b"other", b"what do ya want for nothing?", &sig));
        assert!(!verify(b"Jefe", b"x", "sha256=zz"));
        assert!(!verify(b"Jefe", b"x", "md5=00"));
    }

    #[test]
    fn events_serialise_with_their_type_and_time() {
        let e = Event {
            id: 7,
            kind: EventKind::Placed,
            at_ms: 1_764_669_600_000,
            order_id: None,
            data: serde_json::json!({"x": 1}),
        };
        let v: serde_json::Value = serde_json::from_slice(&e.body()).expect("json");
        assert_eq!(v["type"], "order.placed");
        assert_eq!(v["at"], "2025-12-02T10:00:00Z");
        assert_eq!(v["id"], 7);
    }

    #[test]
    fn retries_back_off_to_an_hour() {
        assert_eq!(retry_delay(0), Duration::from_secs(5));
        assert_eq!(retry_delay(1), Duration::from_secs(10));
        assert_eq!(retry_delay(30), Duration::from_secs(3600));
    }
}
