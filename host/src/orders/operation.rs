//! Operations on a placed module: renew, suspend, resume, remove, rebind. Each is a durable
//! record of its own, so that the never-twice rules of placement hold for them too:
//!
//! | from      | to         | when |
//! |-----------|------------|------|
//! | *(none)*  | `pending`  | begun; at most one operation of an order is open (`pending`, `sending` or `in_doubt`) at a time |
//! | `pending` | `sending`  | the host records "about to send" just before the upstream write |
//! | `pending` | *(gone)*   | nothing was sent (refused before sending, a plugin fault, a crash before the mark): as if never begun, so the same idempotency key may try again |
//! | `pending` / `sending` | `done` | upstream did it; the order changes in the same transaction |
//! | `pending` / `sending` | `failed` | upstream refused with an error document: nothing changed upstream |
//! | `sending` | `in_doubt` | the write may have reached upstream and its outcome is unknown (also every `sending` operation found at start) |
//! | `in_doubt` | `done` / `failed` | an operator, or the reconciliation, established what upstream did |
//!
//! An idempotency key names one operation of one order: the same key again answers what that
//! operation did (waiting while it runs), and never sends anything twice.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::OrderId;

/// What an operation does to a placed module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    /// Renew it for a period (`service.prolong`).
    Renew,
    /// Suspend it.
    Suspend,
    /// Resume it.
    Resume,
    /// Remove it (`addition.delete`).
    Remove,
    /// Bind it to another licence (`addition.edit`).
    Rebind,
}

impl OperationKind {
    /// Every kind.
    pub const ALL: [OperationKind; 5] = [
        OperationKind::Renew,
        OperationKind::Suspend,
        OperationKind::Resume,
        OperationKind::Remove,
        OperationKind::Rebind,
    ];

    /// The stable name used in storage and in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::Renew => "renew",
            OperationKind::Suspend => "suspend",
            OperationKind::Resume => "resume",
            OperationKind::Remove => "remove",
            OperationKind::Rebind => "rebind",
        }
    }
}

impl fmt::Display for OperationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an operation stands; see the [module documentation](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationState {
    /// Begun; nothing has been sent.
    Pending,
    /// The upstream write is about to leave, or has left.
    Sending,
    /// Upstream did it.
    Done,
    /// Upstream refused: nothing changed upstream.
    Failed,
    /// The write may have reached upstream; nobody knows yet.
    InDoubt,
}

impl OperationState {
    /// Every state.
    pub const ALL: [OperationState; 5] = [
        OperationState::Pending,
        OperationState::Sending,
        OperationState::Done,
        OperationState::Failed,
        OperationState::InDoubt,
    ];

    /// The stable name used in storage and in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            OperationState::Pending => "pending",
            OperationState::Sending => "sending",
            OperationState::Done => "done",
            OperationState::Failed => "failed",
            OperationState::InDoubt => "in_doubt",
        }
    }

    /// Whether the operation still holds its order: no other may begin.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            OperationState::Pending | OperationState::Sending | OperationState::InDoubt
        )
    }

    /// Whether it has ended, one way or the other.
    pub fn is_settled(self) -> bool {
        matches!(self, OperationState::Done | OperationState::Failed)
    }
}

impl fmt::Display for OperationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a kind or a state of operations.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not known here")]
pub struct UnknownName(pub String);

impl FromStr for OperationKind {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OperationKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownName(s.chars().take(64).collect()))
    }
}

impl FromStr for OperationState {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OperationState::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownName(s.chars().take(64).collect()))
    }
}

/// The longest idempotency key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 200;

/// An idempotency key that is not 1 to [`MAX_KEY_LEN`] printable ASCII characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an idempotency key is 1 to {MAX_KEY_LEN} printable ASCII characters without spaces")]
pub struct InvalidKey;

/// Checks an idempotency key: 1 to [`MAX_KEY_LEN`] printable ASCII characters.
pub fn check_key(key: &str) -> Result<(), InvalidKey> {
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(InvalidKey);
    }
    Ok(())
}

/// One operation, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Operation {
    /// Its number.
    pub id: i64,
    /// The order it acts on.
    pub order_id: OrderId,
    /// What it does.
    pub kind: OperationKind,
    /// The billing system's idempotency key, when it gave one.
    pub key: Option<String>,
    /// What was asked: the period of a renewal, the licence of a rebind.
    pub request: serde_json::Value,
    /// Where it stands.
    pub state: OperationState,
    /// What upstream answered when done (e.g. the new expiry date).
    pub result: Option<serde_json::Value>,
    /// Why it failed or is in doubt.
    pub error: Option<String>,
    /// Who began it.
    pub actor: String,
    /// Who settled it, when someone did by hand (an operator, the reconciliation).
    pub settled_by: Option<String>,
    /// When it was begun, UNIX milliseconds.
    pub created_ms: i64,
    /// When it last changed, UNIX milliseconds.
    pub updated_ms: i64,
}

/// An operation to begin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewOperation {
    /// The order it acts on.
    pub order_id: OrderId,
    /// What it does.
    pub kind: OperationKind,
    /// The billing system's idempotency key, if any.
    pub key: Option<String>,
    /// What is asked.
    pub request: serde_json::Value,
    /// Who begins it.
    pub actor: String,
}

/// What beginning an operation found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Began {
    /// A new operation, `pending`: the caller runs it.
    New(Operation),
    /// The operation this key already names: its answer is the answer.
    Existing(Operation),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in OperationKind::ALL {
            assert_eq!(k.as_str().parse::<OperationKind>(), Ok(k));
        }
        for s in OperationState::ALL {
            assert_eq!(s.as_str().parse::<OperationState>(), Ok(s));
            assert_ne!(s.is_open(), s.is_settled(), "{s}");
        }
        assert!("RENEW".parse::<OperationKind>().is_err());
    }

    #[test]
    fn keys_are_checked() {
        assert!(check_key("inv-2026-0042").is_ok());
        assert!(check_key("").is_err());
        assert!(check_key("a b").is_err());
        assert!(check_key("ключ").is_err());
        assert!(check_key(&"k".repeat(MAX_KEY_LEN + 1)).is_err());
    }
}
