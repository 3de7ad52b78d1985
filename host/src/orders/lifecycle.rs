//! The module's life after the sale, as desk operations: renew (with a quote first), suspend,
//! resume, remove and rebind. Each runs as a durable [`Operation`] with the never-twice rules
//! of placement: an idempotency key makes a repeated request answer what the first one did
//! (waiting while it runs) and never send anything twice; a write whose outcome is unknown
//! leaves the operation `in_doubt` until an operator or the reconciliation settles it.
//!
//! In manual mode nothing is sent upstream: the operation records what an operator did by hand.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::events::EventKind;
use super::operation::{Began, NewOperation, Operation, OperationKind, OperationState};
use super::placement::{self, Acted, Action, Settlement, Unsent};
use super::store::{OperationEnd, OrderEffect};
use super::{Amendment, Change, Order, OrderId, OrderState};
use super::{DeskError, OrderDesk, UpstreamOutcome};
use crate::config::OrderMode;
use crate::convert::{date, order_error_message};
use crate::money::{Money, Months};

/// How long a repeated request waits for the operation its key names to end.
const REPLAY_WAIT: Duration = Duration::from_secs(90);

/// What an operation did: the operation as it ended and the order as it is now.
#[derive(Clone, Debug, Serialize)]
pub struct Performed {
    /// The operation.
    pub operation: Operation,
    /// The order now.
    pub order: Order,
    /// Whether this answer is the one of an earlier request with the same idempotency key.
    pub replayed: bool,
}

/// What renewing would cost and give, as upstream quotes it.
#[derive(Clone, Debug, Serialize)]
pub struct RenewalQuote {
    /// The period quoted, in months.
    pub period_months: Months,
    /// The module's expiry date now, when known.
    #[serde(with = "crate::dates::iso::option")]
    pub expires_at: Option<time::Date>,
    /// Its expiry date after the renewal, when known.
    #[serde(with = "crate::dates::iso::option")]
    pub new_expires_at: Option<time::Date>,
    /// What upstream would charge the partner, when it says.
    pub cost: Option<Money>,
}

/// What an operator found upstream about an operation in doubt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finding {
    /// Upstream did it (for a renewal, with the new expiry date when known).
    Done(Option<time::Date>),
    /// Upstream did not.
    NotDone,
}

/// One operation asked of the desk.
struct Asked<'a> {
    kind: OperationKind,
    action: Action,
    request: serde_json::Value,
    key: Option<&'a str>,
    actor: &'a str,
    /// The expiry date an operator gives with a renewal recorded by hand.
    manual_expiry: Option<time::Date>,
}

impl OrderDesk {
    /// Renews a placed (or suspended) module for `period`, or for the order's own period:
    /// `service.prolong`, paid from the partner's balance. `key` (the billing system's
    /// invoice ID, say) makes a repeated request answer the same and renew once. In manual
    /// mode, records a renewal done by hand, with its new expiry date when given.
    pub fn renew(
        &self,
        id: &OrderId,
        period: Option<Months>,
        key: Option<&str>,
        expires: Option<time::Date>,
        actor: &str,
    ) -> Result<Performed, DeskError> {
        let order = self.get(id)?;
        let months = period.unwrap_or(order.period);
        self.perform(
            &order,
            Asked {
                kind: OperationKind::Renew,
                action: Action::Renew(months),
                request: serde_json::json!({ "period_months": months }),
                key,
                actor,
                manual_expiry: expires,
            },
        )
    }

    /// Suspends a placed module (the end user stopped paying).
    pub fn suspend(
        &self,
        id: &OrderId,
        key: Option<&str>,
        actor: &str,
    ) -> Result<Performed, DeskError> {
        self.simple(id, OperationKind::Suspend, Action::Suspend, key, actor)
    }

    /// Resumes a suspended module (the end user paid again).
    pub fn resume(
        &self,
        id: &OrderId,
        key: Option<&str>,
        actor: &str,
    ) -> Result<Performed, DeskError> {
        self.simple(id, OperationKind::Resume, Action::Resume, key, actor)
    }

    /// Removes a placed or suspended module upstream (`addition.delete`).
    pub fn remove(
        &self,
        id: &OrderId,
        key: Option<&str>,
        actor: &str,
    ) -> Result<Performed, DeskError> {
        self.simple(id, OperationKind::Remove, Action::Remove, key, actor)
    }

    /// Binds a placed module to another licence (`addition.edit`).
    pub fn rebind(
        &self,
        id: &OrderId,
        licence_id: &str,
        licence_ip: Option<std::net::IpAddr>,
        key: Option<&str>,
        actor: &str,
    ) -> Result<Performed, DeskError> {
        let licence_id = licence_id.trim();
        if !super::buy::is_licence_id(licence_id) {
            return Err(DeskError::Invalid(format!(
                "licence: {}",
                super::buy::LICENCE_RULE
            )));
        }
        let order = self.get(id)?;
        self.perform(
            &order,
            Asked {
                kind: OperationKind::Rebind,
                action: Action::Rebind(licence_id.to_owned()),
                request: serde_json::json!({ "licence_id": licence_id, "licence_ip": licence_ip }),
                key,
                actor,
                manual_expiry: None,
            },
        )
    }

    /// What renewing the module for `period` (or the order's own) would cost and give,
    /// asked of upstream without renewing (`service.prolong` without `sok`).
    pub fn quote_renewal(
        &self,
        id: &OrderId,
        period: Option<Months>,
    ) -> Result<RenewalQuote, DeskError> {
        let order = self.get(id)?;
        let service_id = upstream_service(&order, &[OrderState::Placed, OrderState::Suspended])?;
        self.automatic("a renewal quote comes from upstream")?;
        let months = period.unwrap_or(order.period);
        let active = self.reseller().active();
        let (answer, _) = placement::journaled(&active, self.backend(), Some(id), None, |p, g| {
            match p.quote_renewal(g, &service_id, months.get()) {
                Some(called) => (called.0.map(Some), called.1),
                None => (Ok(None), Default::default()),
            }
        });
        let quote = match answer {
            Ok(Some(Ok(quote))) => quote,
            Ok(Some(Err(e))) => {
                return Err(DeskError::Upstream {
                    outcome: UpstreamOutcome::Refused,
                    message: order_error_message(&e),
                });
            }
            Ok(None) => return Err(DeskError::Unavailable(too_old("quote a renewal"))),
            Err(fault) => return Err(DeskError::from_fault(fault)),
        };
        let cost =
            match quote.cost {
                Some(m) => Some(Money::from_units(m.units, &m.currency).map_err(|e| {
                    DeskError::Upstream {
                        outcome: UpstreamOutcome::Refused,
                        message: format!("the quoted cost is unusable: {e}"),
                    }
                })?),
                None => None,
            };
        Ok(RenewalQuote {
            period_months: months,
            expires_at: quote.expires.as_ref().and_then(date),
            new_expires_at: quote.new_expires.as_ref().and_then(date),
            cost,
        })
    }

    /// The operations of an order, oldest first.
    pub fn operations(&self, id: &OrderId) -> Result<Vec<Operation>, DeskError> {
        self.get(id)?;
        Ok(self.backend().operations(id)?)
    }

    /// An operator (or the reconciliation, as `actor`) found out what upstream did with an
    /// operation in doubt, and settles it: done (the order changes as the operation would
    /// have changed it) or not done (failed: nothing changed upstream).
    pub fn resolve_operation(
        &self,
        order: &OrderId,
        operation: i64,
        finding: Finding,
        actor: &str,
    ) -> Result<Performed, DeskError> {
        let op = self.backend().operation(operation)?;
        if &op.order_id != order {
            return Err(DeskError::NoOperation);
        }
        if op.state != OperationState::InDoubt {
            return Err(DeskError::Invalid(format!(
                "operation {operation} is {}: only an operation in doubt is resolved",
                op.state
            )));
        }
        let current = self.get(order)?;
        let (end, effect) = match finding {
            Finding::Done(expires) => {
                let action = action_of(&op)?;
                let suffix = " (established after a doubt)";
                let effect = effect(&current, &op, &action, &Acted { expires }, actor, suffix)?;
                (
                    OperationEnd {
                        state: OperationState::Done,
                        result: Some(
                            serde_json::json!({ "expires_at": crate::dates::opt(expires) }),
                        ),
                        error: None,
                        settled_by: Some(actor.to_owned()),
                    },
                    Some(effect),
                )
            }
            Finding::NotDone => (
                OperationEnd {
                    state: OperationState::Failed,
                    result: None,
                    error: Some(format!("{actor} established that upstream did not do it")),
                    settled_by: Some(actor.to_owned()),
                },
                None,
            ),
        };
        let operation =
            self.backend()
                .settle_operation(operation, &[OperationState::InDoubt], end, effect)?;
        Ok(Performed {
            order: self.get(order)?,
            operation,
            replayed: false,
        })
    }

    fn simple(
        &self,
        id: &OrderId,
        kind: OperationKind,
        action: Action,
        key: Option<&str>,
        actor: &str,
    ) -> Result<Performed, DeskError> {
        let order = self.get(id)?;
        self.perform(
            &order,
            Asked {
                kind,
                action,
                request: serde_json::json!({}),
                key,
                actor,
                manual_expiry: None,
            },
        )
    }

    /// Begins the operation (or finds the one its key names), runs it and settles it. Asked
    /// again without a key once done (a module already removed, suspended or resumed), it
    /// answers the operation that did it.
    fn perform(&self, order: &Order, asked: Asked<'_>) -> Result<Performed, DeskError> {
        let reached = match asked.kind {
            OperationKind::Remove => Some(OrderState::Removed),
            OperationKind::Suspend => Some(OrderState::Suspended),
            OperationKind::Resume => Some(OrderState::Placed),
            OperationKind::Renew | OperationKind::Rebind => None,
        };
        if asked.key.is_none() && reached == Some(order.state) {
            let last = self
                .backend()
                .operations(&order.id)?
                .into_iter()
                .rev()
                .find(|op| op.kind == asked.kind && op.state == OperationState::Done);
            if let Some(operation) = last {
                return Ok(Performed {
                    order: order.clone(),
                    operation,
                    replayed: true,
                });
            }
        }
        let began = self.backend().begin_operation(&NewOperation {
            order_id: order.id.clone(),
            kind: asked.kind,
            key: asked.key.map(str::to_owned),
            request: asked.request.clone(),
            actor: asked.actor.to_owned(),
        })?;
        let op = match began {
            Began::Existing(op) => return self.replay(op),
            Began::New(op) => op,
        };
        let order = self.get(&order.id)?;
        let service_id = match upstream_service(&order, allowed_from(asked.kind)) {
            Ok(service_id) => service_id,
            Err(e) => {
                self.backend().drop_operation(op.id)?;
                return Err(e);
            }
        };
        let acted = match self.mode() {
            OrderMode::Manual => Acted {
                expires: asked.manual_expiry,
            },
            OrderMode::Automatic => {
                let active = self.reseller().active();
                let settled = placement::act(
                    &active,
                    self.backend(),
                    &order.id,
                    op.id,
                    &service_id,
                    &asked.action,
                );
                match settled {
                    Some(Settlement::Done(acted)) => acted,
                    None => {
                        self.backend().drop_operation(op.id)?;
                        return Err(DeskError::Unavailable(too_old(asked.kind.as_str())));
                    }
                    Some(Settlement::Retry(unsent)) => {
                        // Nothing left: as if never begun, so the same key may try again.
                        self.backend().drop_operation(op.id)?;
                        return Err(match unsent {
                            Unsent::NotSent(message) => DeskError::Upstream {
                                outcome: UpstreamOutcome::NotSent,
                                message,
                            },
                            Unsent::Fault(fault) => DeskError::from_fault(fault),
                        });
                    }
                    Some(Settlement::Failed(message)) => {
                        self.end(&op, OperationState::Failed, &message)?;
                        return Err(DeskError::Upstream {
                            outcome: UpstreamOutcome::Refused,
                            message,
                        });
                    }
                    Some(Settlement::InDoubt(message)) => {
                        self.end(&op, OperationState::InDoubt, &message)?;
                        tracing::warn!(order = %order.id, operation = op.id, "{} in doubt: {message}", asked.kind);
                        return Err(DeskError::Upstream {
                            outcome: UpstreamOutcome::InDoubt,
                            message,
                        });
                    }
                }
            }
        };
        let suffix = self.manual_note();
        let effect = effect(&order, &op, &asked.action, &acted, asked.actor, suffix)?;
        let end = OperationEnd {
            state: OperationState::Done,
            result: Some(serde_json::json!({ "expires_at": crate::dates::opt(acted.expires) })),
            error: None,
            settled_by: None,
        };
        let from = [OperationState::Pending, OperationState::Sending];
        let operation = match self.backend().settle_operation(
            op.id,
            &from,
            end.clone(),
            Some(effect),
        ) {
            Ok(op) => op,
            Err(e @ super::StoreError::Conflict { .. }) => {
                // Upstream did it, but the order moved meanwhile: keep the operation's record.
                tracing::error!(order = %order.id, operation = op.id, "done upstream, but the order changed meanwhile: {e}");
                self.backend().settle_operation(op.id, &from, end, None)?
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Performed {
            order: self.get(&order.id)?,
            operation,
            replayed: false,
        })
    }

    /// Settles a running operation as failed or in doubt, with `why`.
    fn end(&self, op: &Operation, state: OperationState, why: &str) -> Result<(), DeskError> {
        self.backend().settle_operation(
            op.id,
            &[OperationState::Pending, OperationState::Sending],
            OperationEnd {
                state,
                result: None,
                error: Some(why.to_owned()),
                settled_by: None,
            },
            None,
        )?;
        Ok(())
    }

    /// The answer of the operation an idempotency key named first: waits while it runs.
    fn replay(&self, op: Operation) -> Result<Performed, DeskError> {
        let started = Instant::now();
        let mut op = op;
        while matches!(op.state, OperationState::Pending | OperationState::Sending) {
            if started.elapsed() > REPLAY_WAIT {
                return Err(DeskError::Unavailable(format!(
                    "operation {} with this idempotency key is still running; ask again later",
                    op.id
                )));
            }
            std::thread::sleep(Duration::from_millis(25));
            op = match self.backend().operation(op.id) {
                Ok(op) => op,
                // Dropped: it sent nothing, and its request may be made again.
                Err(super::StoreError::NoOperation) => {
                    return Err(DeskError::Upstream {
                        outcome: UpstreamOutcome::NotSent,
                        message: "the first request with this idempotency key sent nothing; \
                                  ask again"
                            .to_owned(),
                    });
                }
                Err(e) => return Err(e.into()),
            };
        }
        let message = op.error.clone().unwrap_or_default();
        match op.state {
            OperationState::Failed => Err(DeskError::Upstream {
                outcome: UpstreamOutcome::Refused,
                message,
            }),
            OperationState::InDoubt => Err(DeskError::Upstream {
                outcome: UpstreamOutcome::InDoubt,
                message,
            }),
            _ => Ok(Performed {
                order: self.get(&op.order_id)?,
                operation: op,
                replayed: true,
            }),
        }
    }

    fn automatic(&self, what: &str) -> Result<(), DeskError> {
        match self.mode() {
            OrderMode::Automatic => Ok(()),
            OrderMode::Manual => Err(DeskError::Unavailable(format!(
                "{what}, and nothing is sent upstream in manual mode"
            ))),
        }
    }
}

/// The states an operation of `kind` may start from.
fn allowed_from(kind: OperationKind) -> &'static [OrderState] {
    match kind {
        OperationKind::Suspend => &[OrderState::Placed],
        OperationKind::Resume => &[OrderState::Suspended],
        OperationKind::Renew | OperationKind::Remove | OperationKind::Rebind => {
            &[OrderState::Placed, OrderState::Suspended]
        }
    }
}

/// The order's service ID, if it is in one of `states`.
fn upstream_service(order: &Order, states: &[OrderState]) -> Result<String, DeskError> {
    match (&order.upstream_service_id, states.contains(&order.state)) {
        (Some(service_id), true) => Ok(service_id.clone()),
        _ => {
            let names: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
            Err(DeskError::Conflict {
                state: order.state,
                message: format!(
                    "only an order that is {} can do that; this one is {}",
                    names.join(" or "),
                    order.state
                ),
            })
        }
    }
}

/// The action an operation stands for, read back from its record.
fn action_of(op: &Operation) -> Result<Action, DeskError> {
    Ok(match op.kind {
        OperationKind::Renew => {
            let months = op.request["period_months"]
                .as_u64()
                .and_then(|m| i64::try_from(m).ok())
                .and_then(|m| Months::new(m).ok())
                .ok_or_else(|| DeskError::Internal("a renewal without its period".into()))?;
            Action::Renew(months)
        }
        OperationKind::Suspend => Action::Suspend,
        OperationKind::Resume => Action::Resume,
        OperationKind::Remove => Action::Remove,
        OperationKind::Rebind => Action::Rebind(
            op.request["licence_id"]
                .as_str()
                .ok_or_else(|| DeskError::Internal("a rebind without its licence".into()))?
                .to_owned(),
        ),
    })
}

/// What a done operation does to its order.
fn effect(
    order: &Order,
    op: &Operation,
    action: &Action,
    acted: &Acted,
    actor: &str,
    how: &str,
) -> Result<OrderEffect, DeskError> {
    let change = Change::by(actor);
    let mut amendment = Amendment::default();
    let (to, change) = match action {
        Action::Renew(months) => {
            if acted.expires.is_some() {
                amendment.expires_on = Some(acted.expires);
            }
            let note = format!("renewed for {months} month(s){how}");
            (
                None,
                change.with_note(note).announced(
                    EventKind::Renewed,
                    serde_json::json!({ "operation": op.id, "period_months": months, "expires_at": crate::dates::opt(acted.expires) }),
                ),
            )
        }
        Action::Suspend => (
            Some(OrderState::Suspended),
            change.with_note(format!("suspended{how}")),
        ),
        Action::Resume => (
            Some(OrderState::Placed),
            change.with_note(format!("resumed{how}")),
        ),
        Action::Remove => (
            Some(OrderState::Removed),
            change.with_note(format!("removed{how}")),
        ),
        Action::Rebind(licence) => {
            amendment.licence_id = Some(licence.clone());
            let ip = op.request["licence_ip"]
                .as_str()
                .and_then(|ip| ip.parse().ok());
            amendment.licence_ip = Some(ip);
            let note = format!(
                "rebound from licence {} to {licence}{how}",
                order.licence_id
            );
            (
                None,
                change.with_note(note).announced(
                    EventKind::Rebound,
                    serde_json::json!({ "operation": op.id, "from_licence": order.licence_id }),
                ),
            )
        }
    };
    Ok(OrderEffect {
        from: order.state,
        to,
        amendment,
        change,
    })
}

fn too_old(what: &str) -> String {
    format!(
        "the plugin was built against billing:reseller@0.1.0, which cannot {what}: rebuild it \
         against the current contract"
    )
}
