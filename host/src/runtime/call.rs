//! One call: a fresh `Store` with its limits, a fresh instance, what it used, and the fault if
//! it failed.

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use wasmtime::{Engine, Store, Trap};

use crate::capabilities::policy::PolicyFault;
use crate::capabilities::{CallState, Grants, Hook, calendar};
use crate::limits::{Limit, LimitHit, Limiter, Limits};

/// What a call used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Instructions executed (fuel consumed).
    pub fuel: u64,
    /// The largest linear memory reached, in bytes.
    pub peak_memory: usize,
    /// Wall-clock time of the whole call, instantiation included.
    pub elapsed: Duration,
}

/// A call that ended without an answer from the plugin: not a business error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    /// The plugin's fault: it went past one of its limits.
    #[error(transparent)]
    Limit(#[from] LimitHit),
    /// The plugin's fault: a trap (a panic, an exception, an invalid operation).
    #[error("the plugin failed: {reason}{}", said(.output))]
    Guest {
        /// What happened.
        reason: String,
        /// What the plugin wrote to stderr and stdout (a panic message, a Python traceback, a
        /// JavaScript error), bounded.
        output: String,
    },
    /// The partner's pricing policy failed while the protocol asked it for prices.
    #[error("the pricing policy failed: {0}")]
    Policy(Box<Fault>),
    /// The host's fault: the call could not be run.
    #[error("the host could not run the plugin: {0}")]
    Host(String),
}

/// What a guest wrote, as the end of a fault's message.
fn said(output: &str) -> String {
    if output.is_empty() {
        String::new()
    } else {
        format!(" (it wrote: {})", output.escape_debug())
    }
}

impl Fault {
    /// Whether a plugin (the protocol, or its policy), rather than the host, is to blame.
    pub fn is_guest(&self) -> bool {
        match self {
            Fault::Host(_) => false,
            Fault::Policy(inner) => inner.is_guest(),
            Fault::Limit(_) | Fault::Guest { .. } => true,
        }
    }

    /// The limit hit, when a limit stopped the call (the policy's, when it was the policy).
    pub fn limit_hit(&self) -> Option<&LimitHit> {
        match self {
            Fault::Limit(hit) => Some(hit),
            Fault::Policy(inner) => inner.limit_hit(),
            _ => None,
        }
    }
}

/// Bounds the calls of one plugin in flight: past the bound, callers wait for a call to end.
/// With pooling, each call in flight holds one pre-reserved instance slot.
pub(super) struct CallSlots {
    free: Mutex<u32>,
    freed: Condvar,
}

/// One call's slot, given back when dropped.
pub(super) struct Slot<'a>(&'a CallSlots);

impl CallSlots {
    pub(super) fn new(slots: u32) -> Self {
        CallSlots {
            free: Mutex::new(slots),
            freed: Condvar::new(),
        }
    }

    /// Waits for a free slot and takes it.
    pub(super) fn acquire(&self) -> Slot<'_> {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        while *free == 0 {
            free = self
                .freed
                .wait(free)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *free -= 1;
        Slot(self)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.0.freed.notify_one();
    }
}

/// How many epoch ticks make `d`, rounded up, at least one.
fn ticks(d: Duration) -> u64 {
    let tick = super::EPOCH_TICK.as_nanos().max(1);
    u64::try_from(d.as_nanos().div_ceil(tick))
        .unwrap_or(u64::MAX)
        .max(1)
}

/// Runs `f` in a fresh store of `engine` bounded by `limits`: `f` instantiates and calls.
pub(super) fn run<R>(
    engine: &Engine,
    grants: &Grants,
    limits: &Limits,
    hook: Hook,
    f: impl FnOnce(&mut Store<CallState>) -> wasmtime::Result<R>,
) -> (Result<R, Fault>, Usage) {
    let started = Instant::now();
    let mut store = Store::new(
        engine,
        CallState::new(
            grants,
            limits,
            hook,
            calendar::today(),
            Limiter::new(limits.clone()),
        ),
    );
    store.limiter(|state| state.limiter_mut());
    // The deadline bounds the guest's own running time; an order hook also waits on upstream.
    let deadline = match hook {
        Hook::Pricing => limits.deadline(),
        Hook::Orders => limits.deadline().saturating_add(limits.upstream_time()),
    };
    store.set_epoch_deadline(ticks(deadline));
    store.epoch_deadline_trap();
    let outcome = store.set_fuel(limits.fuel).and_then(|()| f(&mut store));
    let usage = Usage {
        fuel: limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0)),
        peak_memory: store.data().limiter().peak_memory(),
        elapsed: started.elapsed(),
    };
    (outcome.map_err(|e| fault(&e, store.data(), limits)), usage)
}

fn fault(e: &wasmtime::Error, state: &CallState, limits: &Limits) -> Fault {
    if let Some(hit) = e.downcast_ref::<LimitHit>() {
        return Fault::Limit(hit.clone());
    }
    if let Some(PolicyFault(inner)) = e.downcast_ref::<PolicyFault>() {
        return Fault::Policy(Box::new(inner.clone()));
    }
    let hit = |limit| Fault::Limit(LimitHit::new(limit, limits, None));
    match e.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => hit(Limit::Fuel),
        Some(Trap::Interrupt) => hit(Limit::Deadline),
        Some(Trap::StackOverflow) => hit(Limit::Stack),
        Some(trap) => Fault::Guest {
            reason: trap.to_string(),
            output: state.output(),
        },
        None => Fault::Host(root(e)),
    }
}

/// The innermost cause of an error, without a backtrace.
pub(super) fn root(e: &wasmtime::Error) -> String {
    e.root_cause().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_bound_calls_in_flight() {
        let slots = std::sync::Arc::new(CallSlots::new(2));
        let a = slots.acquire();
        let _b = slots.acquire();
        let waiter = {
            let slots = slots.clone();
            std::thread::spawn(move || drop(slots.acquire()))
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "a third call waits");
        drop(a);
        waiter
            .join()
            .expect("the third call ran once a slot was free");
    }

    #[test]
    fn ticks_round_up() {
        assert_eq!(ticks(Duration::ZERO), 1);
        assert_eq!(ticks(super::super::EPOCH_TICK), 1);
        assert_eq!(ticks(Duration::from_millis(1_000)), 100);
        assert_eq!(ticks(Duration::from_millis(1_001)), 101);
        assert_eq!(ticks(Duration::MAX), u64::MAX);
    }
}
