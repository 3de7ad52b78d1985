//! Why an order operation did not happen ([`DeskError`]), and how an upstream call went
//! wrong ([`UpstreamOutcome`]): the errors of [`super::OrderDesk`], mapped by the API to its
//! codes and by the CLI to its messages.

use serde::Serialize;

use super::operation::{OperationKind, OperationState};
use super::placer::PlacerError;
use super::prices::RefreshError;
use super::{OrderState, StoreError};
use crate::config::ConfigError;
use crate::runtime::Fault;

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
    /// No operation of the order has this number.
    #[error("no such operation of this order")]
    NoOperation,
    /// Another operation of the order is open: running, or in doubt.
    #[error("operation {id} ({kind}) of this order is {state}; it must end first")]
    OperationOpen {
        /// Its number.
        id: i64,
        /// What it does.
        kind: OperationKind,
        /// Where it stands.
        state: OperationState,
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
            StoreError::NoOperation => DeskError::NoOperation,
            StoreError::OperationOpen { id, kind, state } => {
                DeskError::OperationOpen { id, kind, state }
            }
            e @ (StoreError::SchemaTooNew { .. } | StoreError::Database(_)) => {
                DeskError::Internal(e.to_string())
            }
        }
    }
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
    pub(super) fn from_fault(fault: Fault) -> DeskError {
        if fault.is_guest() {
            DeskError::Plugin(fault)
        } else {
            DeskError::Internal(fault.to_string())
        }
    }
}
