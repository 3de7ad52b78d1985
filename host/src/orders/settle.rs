//! What a placement attempt means for the order: the host's rules, weighing the plugin's
//! verdict against what the host itself saw of the upstream calls ([`super::journal`]).
//!
//! The rules, in order:
//!
//! 1. No call may have reached upstream (none was made, or every one provably never left):
//!    a service ID is not believed (nothing was ordered) → **failed**; so is a typed refusal
//!    the plugin found itself (bad value, missing field, …); anything else (not sent, a fault
//!    of the host, a plugin fault) → **retry** with backoff: nothing can have been charged.
//! 2. A call may have reached upstream:
//!    - the plugin returned a service ID → **placed**;
//!    - a refusal (wrong credentials, bad value, missing field, insufficient balance, another
//!      error document) → **failed**, but only if every answer that came from upstream was an
//!      error document the host read itself; otherwise **in doubt**;
//!    - anything else — not sent, in doubt, an unreadable answer, a plugin fault after the
//!      call, an answer the plugin could not use — → **in doubt**. It is never re-sent
//!      automatically: the partner might be charged twice.

use super::journal::Seen;
use super::{CallOutcome, check_name};
use crate::bindings::types::OrderError;
use crate::runtime::Fault;
use crate::service::order_error_message;

/// What becomes of an order after one placement attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settlement {
    /// Upstream returned the module's service ID.
    Placed(String),
    /// No order exists upstream; an operator decides what next.
    Failed(String),
    /// The request may have reached upstream; an operator must find out.
    InDoubt(String),
    /// Nothing reached upstream: try again later.
    Retry(String),
}

/// Settles a placement from the plugin's answer (or fault) and the calls the host saw.
pub fn settle_place(
    answer: Result<Result<String, OrderError>, &Fault>,
    seen: &[Seen],
) -> Settlement {
    let reached: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.outcome != CallOutcome::NotSent)
        .collect();
    let all_refused = reached.iter().all(|s| s.outcome == CallOutcome::Refused);
    match answer {
        Ok(Ok(_)) if reached.is_empty() => Settlement::Failed(
            "the plugin reported success without any request reaching upstream".to_owned(),
        ),
        Ok(Ok(service_id)) => match check_name("service ID", &service_id) {
            Ok(()) => Settlement::Placed(service_id),
            Err(why) => Settlement::InDoubt(format!(
                "upstream was called but the plugin's answer is unusable: {why}"
            )),
        },
        Ok(Err(e)) => {
            let message = order_error_message(&e);
            let refusal = matches!(
                e,
                OrderError::Auth(_)
                    | OrderError::InvalidValue(_)
                    | OrderError::MissingValue(_)
                    | OrderError::InsufficientBalance(_)
                    | OrderError::Upstream(_)
            );
            if reached.is_empty() {
                if refusal {
                    Settlement::Failed(message)
                } else {
                    Settlement::Retry(message)
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
        Err(fault) if reached.is_empty() => Settlement::Retry(fault.to_string()),
        Err(fault) => Settlement::InDoubt(format!("after an upstream call: {fault}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::types::{FieldError, UpstreamFailure};

    fn seen(outcomes: &[CallOutcome]) -> Vec<Seen> {
        outcomes
            .iter()
            .map(|&outcome| Seen {
                func: "addition.order.param".to_owned(),
                outcome,
            })
            .collect()
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
        let s = settle_place(Ok(Ok("100001".to_owned())), &seen(&[Succeeded]));
        assert_eq!(s, Settlement::Placed("100001".to_owned()));
        let s = settle_place(Ok(Ok("a\nb".to_owned())), &seen(&[Succeeded]));
        assert!(matches!(s, Settlement::InDoubt(_)), "{s:?}");
        let s = settle_place(Ok(Ok(String::new())), &[]);
        assert!(matches!(s, Settlement::Failed(_)), "{s:?}");
        // A service ID without any request reaching upstream orders nothing.
        for calls in [vec![], seen(&[NotSent])] {
            let s = settle_place(Ok(Ok("100001".to_owned())), &calls);
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
                let s = settle_place(Ok(Err(e)), &seen_calls);
                assert!(matches!(s, Settlement::Retry(_)), "{s:?}");
            }
            let s = settle_place(Ok(Err(OrderError::InvalidValue(field()))), &seen_calls);
            assert!(matches!(s, Settlement::Failed(_)), "{s:?}");
            let fault = Fault::Host("busy".into());
            let s = settle_place(Err(&fault), &seen_calls);
            assert!(matches!(s, Settlement::Retry(_)), "{s:?}");
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
            let s = settle_place(Ok(Err(e.clone())), &seen(&[NotSent, Refused]));
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
                let s = settle_place(Ok(Err(e.clone())), &calls);
                assert!(matches!(s, Settlement::InDoubt(_)), "{calls:?}: {s:?}");
            }
        }
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
                let s = settle_place(Ok(Err(e.clone())), &seen(&[last]));
                assert!(
                    matches!(s, Settlement::InDoubt(_)),
                    "{e:?} after {last:?}: {s:?}"
                );
            }
        }
        let fault = Fault::Guest {
            reason: "trap".into(),
            stderr: String::new(),
        };
        let s = settle_place(Err(&fault), &seen(&[Unknown]));
        assert!(matches!(s, Settlement::InDoubt(_)), "{s:?}");
        let s = settle_place(Err(&fault), &seen(&[Succeeded, NotSent]));
        assert!(matches!(s, Settlement::InDoubt(_)), "{s:?}");
    }
}
