//! Placement: what one attempt does to a paid order, and what an upstream action on a placed
//! module (renew, suspend, resume, remove, rebind) did. The plugin's hook runs with every
//! upstream call recorded by a [`Journal`]; the host then weighs the plugin's verdict against
//! what it saw itself, by these rules, in order:
//!
//! 1. No write may have reached upstream (none was made, or every one provably never left;
//!    reads do not count): a success is not believed (nothing was done) → **failed**; so is a
//!    typed refusal the plugin found itself (bad value, missing field, …); anything else (not
//!    sent, a fault of the host, a plugin fault) → **retry** with backoff: nothing can have
//!    been charged.
//! 2. A write may have reached upstream:
//!    - the plugin returned success (a service ID) → **done** (placed);
//!    - a refusal (wrong credentials, bad value, missing field, insufficient balance, another
//!      error document) → **failed**, but only if every write that reached upstream was
//!      answered with an error document the host read itself; otherwise **in doubt**;
//!    - anything else — not sent, in doubt, an unreadable answer, a plugin fault after the
//!      call, an answer the plugin could not use — → **in doubt**. It is never re-sent
//!      automatically: the partner might be charged twice.
//!
//! The functions here take what serves and the store, and return a [`Settlement`]; recording
//! it is the caller's.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use super::journal::{Journal, Reads, Seen};
use super::store::{Backend, SendMarker};
use super::{
    Amendment, CallOutcome, Change, Order, OrderId, OrderState, OrderStore, StoreError, check_name,
};
use crate::bindings::{orders as hooks, types};
use crate::capabilities::Grants;
use crate::convert::{date, is_refusal, order_error_message};
use crate::money::Months;
use crate::reseller::Active;
use crate::runtime::{Called, Fault, LoadedPlugin};

/// What becomes of an order after one placement attempt, or of an action on a placed one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settlement<T> {
    /// Upstream did it: the module's service ID and expiry, or the action's result.
    Done(T),
    /// Nothing was done upstream; an operator decides what next.
    Failed(String),
    /// A write may have reached upstream; an operator must find out.
    InDoubt(String),
    /// Nothing reached upstream: it may be tried again.
    Retry(Unsent),
}

/// Why nothing reached upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unsent {
    /// The request never left, or the plugin says it could not send it.
    NotSent(String),
    /// The plugin, or the host running it, failed before any request left.
    Fault(Fault),
}

impl Unsent {
    /// The reason, for the order's record.
    pub fn message(&self) -> String {
        match self {
            Unsent::NotSent(m) => m.clone(),
            Unsent::Fault(f) => f.to_string(),
        }
    }
}

/// A placed module as upstream made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    /// Its service ID upstream.
    pub service_id: String,
    /// When it expires, when the answer said.
    pub expires: Option<time::Date>,
}

/// An action on a placed module upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Renew it for a period.
    Renew(Months),
    /// Suspend it.
    Suspend,
    /// Resume it.
    Resume,
    /// Remove it.
    Remove,
    /// Bind it to another licence.
    Rebind(String),
}

/// What an action did upstream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Acted {
    /// The module's new expiry date, when the answer said (a renewal).
    pub expires: Option<time::Date>,
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
    /// The order waits (for its order fields, for the balance): nothing was tried.
    Waiting(Order),
}

/// Claims a paid order (`paid → placing`), runs one placement attempt, and records what it
/// settled on. `last_chance` marks the order failed rather than queue it again when nothing
/// was sent.
pub fn attempt(
    active: &Active,
    store: &Arc<dyn Backend>,
    id: &OrderId,
    actor: &str,
    last_chance: bool,
) -> Result<Attempt, StoreError> {
    let order = match store.claim_for_placing(id) {
        Ok(order) => order,
        Err(StoreError::Conflict { .. }) => return Ok(Attempt::NotClaimed(store.get(id)?)),
        Err(e) => return Err(e),
    };
    let change = Change::by(actor);
    let mut amendment = Amendment {
        waiting: Some(None),
        ..Amendment::default()
    };
    let (to, change) = match place(active, store, &order) {
        Settlement::Done(placed) => {
            amendment.expires_on = Some(placed.expires);
            (
                OrderState::Placed,
                change
                    .with_service_id(placed.service_id)
                    .with_note("placed upstream"),
            )
        }
        Settlement::Failed(why) => (OrderState::Failed, change.with_error(why)),
        Settlement::InDoubt(why) => (OrderState::InDoubt, change.with_error(why)),
        Settlement::Retry(unsent) if last_chance => (
            OrderState::Failed,
            change.with_error(format!(
                "{} (gave up after {} attempts; nothing reached upstream)",
                unsent.message(),
                order.attempts
            )),
        ),
        Settlement::Retry(unsent) => (
            OrderState::Paid,
            change
                .with_error(unsent.message())
                .with_note("nothing reached upstream; queued again"),
        ),
    };
    let retry = to == OrderState::Paid;
    let order = record_outcome(&**store, id, to, &amendment, change)?;
    Ok(Attempt::Settled { order, retry })
}

/// Records the outcome of a placement. The outcome must not be lost: a busy or failing
/// database gets a few more chances. If it never takes it, the order stays `placing`, and the
/// next placer marks it in doubt.
fn record_outcome(
    store: &dyn OrderStore,
    id: &OrderId,
    to: OrderState,
    amendment: &Amendment,
    change: Change,
) -> Result<Order, StoreError> {
    let mut wait = Duration::from_millis(100);
    loop {
        match store.change(id, OrderState::Placing, Some(to), amendment, change.clone()) {
            Ok(order) => return Ok(order),
            Err(e @ (StoreError::Database(_) | StoreError::SchemaTooNew { .. }))
                if wait < Duration::from_secs(5) =>
            {
                tracing::warn!(order = %id, "recording the outcome ({to}) failed, retrying: {e}");
                std::thread::sleep(wait);
                wait *= 2;
            }
            Err(e) => {
                tracing::error!(order = %id, "the outcome {to} of this placement could not be recorded: {e}");
                return Err(e);
            }
        }
    }
}

/// One placement attempt of a claimed order: the plugin's `place` hook, settled.
pub fn place(active: &Active, store: &Arc<dyn Backend>, order: &Order) -> Settlement<Placed> {
    let hook = hook_order(order);
    let marker = SendMarker::Placement(order.id.clone());
    let (answer, seen) = journaled(
        active,
        store,
        Some(&order.id),
        Some(marker),
        |plugin, grants| plugin.place(grants, &hook),
    );
    let answer = answer.map(|a| {
        a.map(|p| Placed {
            service_id: p.service_id,
            expires: p.expires.as_ref().and_then(date),
        })
    });
    settle(answer, &seen, |p| check_name("service ID", &p.service_id))
}

/// An action on a placed order upstream, under the operation `operation`, settled by the
/// rules of placement. `None` when the plugin was built before the action existed.
pub fn act(
    active: &Active,
    store: &Arc<dyn Backend>,
    order: &OrderId,
    operation: i64,
    service_id: &str,
    action: &Action,
) -> Option<Settlement<Acted>> {
    let marker = SendMarker::Operation(operation);
    let mut unsupported = false;
    let (answer, seen) = journaled(
        active,
        store,
        Some(order),
        Some(marker),
        |plugin, grants| {
            let done = |(r, usage): Called<Result<(), types::OrderError>>| {
                (r.map(|r| r.map(|()| Acted::default())), usage)
            };
            let optional = |c: Option<Called<Result<(), types::OrderError>>>,
                            unsupported: &mut bool| {
                c.map(done).unwrap_or_else(|| {
                    *unsupported = true;
                    (Ok(Ok(Acted::default())), Default::default())
                })
            };
            match action {
                Action::Renew(period) => {
                    let (result, usage) = plugin.renew(grants, service_id, period.get());
                    (
                        result.map(|r| {
                            r.map(|renewed| Acted {
                                expires: renewed.expires.as_ref().and_then(date),
                            })
                        }),
                        usage,
                    )
                }
                Action::Suspend => optional(plugin.suspend(grants, service_id), &mut unsupported),
                Action::Resume => optional(plugin.resume(grants, service_id), &mut unsupported),
                Action::Remove => done(plugin.remove(grants, service_id)),
                Action::Rebind(licence) => done(plugin.rebind(grants, service_id, licence)),
            }
        },
    );
    if unsupported {
        return None;
    }
    Some(settle(answer, &seen, |_| Ok::<(), Infallible>(())))
}

/// Runs a hook with its upstream calls recorded in `order`'s history (when there is one),
/// marking `marker` before each write, and says what the host saw of them.
pub fn journaled<R>(
    active: &Active,
    store: &Arc<dyn Backend>,
    order: Option<&OrderId>,
    marker: Option<SendMarker>,
    hook: impl FnOnce(&LoadedPlugin, &Grants) -> Called<R>,
) -> (Result<R, Fault>, Vec<Seen>) {
    let policy = &active.grants().upstream;
    let reads = Reads::from_config(&active.config().upstream);
    let journal = Journal::new(
        policy.client().clone(),
        store.clone(),
        order.cloned(),
        marker,
        reads,
    );
    let grants = Grants {
        upstream: Arc::new(policy.with_client(journal.clone())),
        ..active.grants().clone()
    };
    let (result, usage) = hook(active.plugin(), &grants);
    tracing::debug!(fuel = usage.fuel, elapsed = ?usage.elapsed, "order hook");
    if let Err(fault) = &result {
        tracing::error!(order = order.map(OrderId::as_str), "{fault}");
    }
    (result, journal.seen())
}

/// A paid order as the `place` hook receives it.
fn hook_order(order: &Order) -> hooks::Order {
    hooks::Order {
        id: order.id.to_string(),
        licence_id: order.licence_id.clone(),
        licence_ip: order.licence_ip.map(|ip| ip.to_string()),
        tariff_id: order.tariff_id,
        period: order.period.get(),
        autoprolong: order.autoprolong,
        price: types::Money {
            units: order.price.amount.units(),
            currency: order.price.currency.to_string(),
        },
        fields: order
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// Settles a hook's answer (or fault) against the calls the host saw; `usable` checks a
/// success's answer. See the [module documentation](self) for the rules.
pub fn settle<T, E: std::fmt::Display>(
    answer: Result<Result<T, types::OrderError>, Fault>,
    seen: &[Seen],
    usable: impl Fn(&T) -> Result<(), E>,
) -> Settlement<T> {
    let reached: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.write && s.outcome != CallOutcome::NotSent)
        .collect();
    let all_refused = reached.iter().all(|s| s.outcome == CallOutcome::Refused);
    match answer {
        Ok(Ok(_)) if reached.is_empty() => Settlement::Failed(
            "the plugin reported success without any write reaching upstream".to_owned(),
        ),
        Ok(Ok(done)) => match usable(&done) {
            Ok(()) => Settlement::Done(done),
            Err(why) => Settlement::InDoubt(format!(
                "upstream was called but the plugin's answer is unusable: {why}"
            )),
        },
        Ok(Err(e)) => {
            let message = order_error_message(&e);
            let refusal = is_refusal(&e);
            if reached.is_empty() {
                if refusal {
                    Settlement::Failed(message)
                } else {
                    Settlement::Retry(Unsent::NotSent(message))
                }
            } else if refusal && all_refused {
                Settlement::Failed(message)
            } else if refusal {
                Settlement::InDoubt(format!(
                    "the plugin reports a refusal ({message}), but not every answer from \
                     upstream was an error document"
                ))
            } else {
                Settlement::InDoubt(message)
            }
        }
        Err(fault) if reached.is_empty() => Settlement::Retry(Unsent::Fault(fault)),
        Err(fault) => Settlement::InDoubt(format!("after an upstream call: {fault}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::types::{FieldError, OrderError, UpstreamFailure};

    fn seen(outcomes: &[CallOutcome]) -> Vec<Seen> {
        outcomes
            .iter()
            .map(|&outcome| Seen {
                func: "addition.order.param".to_owned(),
                write: true,
                outcome,
            })
            .collect()
    }

    fn settle(
        answer: Result<Result<String, OrderError>, Fault>,
        seen: &[Seen],
    ) -> Settlement<String> {
        super::settle(answer, seen, |id: &String| check_name("service ID", id))
    }

    fn field() -> FieldError {
        FieldError {
            field: "pricelist".to_owned(),
            value: "1".to_owned(),
            message: "unknown".to_owned(),
        }
    }

    use CallOutcome::{NotSent, Refused, Succeeded, Unknown};

    #[test]
    fn a_service_id_places_the_order() {
        let s = settle(Ok(Ok("100001".to_owned())), &seen(&[Succeeded]));
        assert_eq!(s, Settlement::Done("100001".to_owned()));
        let s = settle(Ok(Ok("a\nb".to_owned())), &seen(&[Succeeded]));
        assert!(matches!(s, Settlement::InDoubt(_)), "{s:?}");
        let s = settle(Ok(Ok(String::new())), &[]);
        assert!(matches!(s, Settlement::Failed(_)), "{s:?}");
        // A service ID without any request reaching upstream orders nothing.
        for calls in [vec![], seen(&[NotSent])] {
            let s = settle(Ok(Ok("100001".to_owned())), &calls);
            assert!(matches!(s, Settlement::Failed(_)), "{s:?}");
        }
    }

    #[test]
    fn nothing_sent_is_retried_or_failed() {
        for seen_calls in [vec![], seen(&[NotSent]), seen(&[NotSent, NotSent])] {
            for e in [
                OrderError::NotSent("refused".into()),
                OrderError::InDoubt("lying".into()),
                OrderError::MalformedAnswer("?".into()),
                OrderError::Other("?".into()),
            ] {
                let s = settle(Ok(Err(e)), &seen_calls);
                assert!(matches!(s, Settlement::Retry(Unsent::NotSent(_))), "{s:?}");
            }
            let s = settle(Ok(Err(OrderError::InvalidValue(field()))), &seen_calls);
            assert!(matches!(s, Settlement::Failed(_)), "{s:?}");
            let fault = Fault::Host("busy".into());
            let s = settle(Err(fault.clone()), &seen_calls);
            assert_eq!(s, Settlement::Retry(Unsent::Fault(fault)));
        }
    }

    #[test]
    fn refusals_need_an_error_document() {
        let refusals = [
            OrderError::Auth("bad password".into()),
            OrderError::InvalidValue(field()),
            OrderError::MissingValue(field()),
            OrderError::InsufficientBalance("short".into()),
            OrderError::Upstream(UpstreamFailure {
                kind: "exists".into(),
                object: String::new(),
                message: "already".into(),
            }),
        ];
        for e in refusals {
            let s = settle(Ok(Err(e.clone())), &seen(&[NotSent, Refused]));
            assert!(matches!(s, Settlement::Failed(_)), "{s:?}");
            // A plugin claiming a refusal while upstream answered a plain document, or nothing
            // readable, may be wrong: the order may exist — even if a later call was refused.
            for calls in [
                seen(&[Succeeded]),
                seen(&[Unknown]),
                seen(&[Succeeded, Refused]),
                seen(&[Unknown, Refused]),
                seen(&[Refused, Unknown, NotSent]),
            ] {
                let s = settle(Ok(Err(e.clone())), &calls);
                assert!(matches!(s, Settlement::InDoubt(_)), "{calls:?}: {s:?}");
            }
        }
    }

    #[test]
    fn reads_never_make_a_doubt() {
        let read = |outcome| Seen {
            func: "addition.edit".to_owned(),
            write: false,
            outcome,
        };
        let calls = [read(Unknown), read(Succeeded)];
        let s = settle(Ok(Err(OrderError::InDoubt("cut".into()))), &calls);
        assert!(matches!(s, Settlement::Retry(_)), "{s:?}");
        let fault = Fault::Host("gone".into());
        let s = settle(Err(fault.clone()), &calls);
        assert_eq!(s, Settlement::Retry(Unsent::Fault(fault)));
    }

    #[test]
    fn anything_else_after_sending_is_in_doubt() {
        for e in [
            OrderError::NotSent("claims".into()),
            OrderError::InDoubt("cut".into()),
            OrderError::MalformedAnswer("html".into()),
            OrderError::Other("?".into()),
        ] {
            for last in [Succeeded, Refused, Unknown] {
                let s = settle(Ok(Err(e.clone())), &seen(&[last]));
                assert!(
                    matches!(s, Settlement::InDoubt(_)),
                    "{e:?} after {last:?}: {s:?}"
                );
            }
        }
        let fault = Fault::Guest {
            reason: "trap".into(),
            output: String::new(),
        };
        let s = settle(Err(fault.clone()), &seen(&[Unknown]));
        assert!(matches!(s, Settlement::InDoubt(_)), "{s:?}");
        let s = settle(Err(fault), &seen(&[Succeeded, NotSent]));
        assert!(matches!(s, Settlement::InDoubt(_)), "{s:?}");
    }
}
