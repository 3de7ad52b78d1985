//! The simulator: the account state, the journal of calls and the armed faults behind one lock.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::billmgr::{self, Params};
use crate::clock::{self, ClockReport};
use crate::date::{Date, DateError};
use crate::doc::{Format, Node};
use crate::faults::{Fault, FaultError, FaultSpec, Faults};
use crate::state::{Amount, Service, State, StateError};

/// What a call was answered, whatever a fault then did to the answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum Outcome {
    /// A document without an error.
    Ok,
    /// An error document.
    Error {
        /// The error `type`: `auth`, `missed`, `value`, `balance`.
        #[serde(rename = "type")]
        kind: String,
        /// The error `object`: the field at fault.
        object: String,
    },
}

/// One call received on `/billmgr`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Call {
    /// Order of arrival, from 1 (restarts on [`Simulator::reset`]).
    pub seq: u64,
    /// `func`, trimmed; empty when missing.
    pub func: String,
    /// The parameters as received, without `authinfo`.
    pub params: Vec<(String, String)>,
    /// When it arrived, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// What it was answered.
    pub outcome: Outcome,
    /// The fault that hit it.
    pub fault: Option<Fault>,
    /// Whether it was carried out: `false` only when a fault stood in for it, in which case
    /// nothing changed whatever [`Call::outcome`] says.
    pub carried_out: bool,
}

/// A simulated upstream. Cheap to clone: clones share the same account, journal and faults.
#[derive(Clone)]
pub struct Simulator {
    shared: Arc<Mutex<Inner>>,
}

impl fmt::Debug for Simulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulator").finish_non_exhaustive()
    }
}

struct Inner {
    initial: State,
    state: State,
    calls: Vec<Call>,
    received: u64,
    faults: Faults,
}

/// A document to answer, in the format the call asked for.
pub(crate) struct Reply {
    doc: Node,
    format: Format,
}

impl Reply {
    /// The content type and the bytes of the document.
    pub(crate) fn render(&self) -> io::Result<(&'static str, Vec<u8>)> {
        Ok((self.format.content_type(), self.doc.render(self.format)?))
    }
}

impl Simulator {
    /// A simulator of `state`, used as given ([`State::validate`] checks one); [`reset`]
    /// returns to it.
    ///
    /// [`reset`]: Simulator::reset
    pub fn new(state: State) -> Simulator {
        let inner = Inner {
            initial: state.clone(),
            state,
            calls: Vec::new(),
            received: 0,
            faults: Faults::default(),
        };
        Simulator {
            shared: Arc::new(Mutex::new(inner)),
        }
    }

    /// The account as it is now.
    pub fn state(&self) -> State {
        self.lock().state.clone()
    }

    /// Replaces the account (not what [`Simulator::reset`] returns to).
    pub fn set_state(&self, state: State) -> Result<(), StateError> {
        state.validate()?;
        self.lock().state = state;
        Ok(())
    }

    /// The balance now.
    pub fn balance(&self) -> Amount {
        self.lock().state.account.balance
    }

    /// The module services now.
    pub fn services(&self) -> Vec<Service> {
        self.lock().state.services.clone()
    }

    /// The simulated day.
    pub fn today(&self) -> Date {
        self.lock().state.today
    }

    /// Moves the clock `days` forward, renewing (with `autoprolong`, from the balance) or
    /// suspending every active service whose expiry it reaches; `0` only settles the services
    /// already past it. Fails, changing nothing, past `9999-12-31`.
    pub fn advance_days(&self, days: u32) -> Result<ClockReport, DateError> {
        let mut inner = self.lock();
        let today = inner.state.today.add_days(i64::from(days))?;
        Ok(clock::set_today(&mut inner.state, today))
    }

    /// Sets the clock to `today`, with the effects of [`Simulator::advance_days`]; moving it
    /// back only changes the day.
    pub fn set_today(&self, today: Date) -> ClockReport {
        clock::set_today(&mut self.lock().state, today)
    }

    /// Every call received since the start or the last reset, in order of arrival.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// How many calls of `func` were received.
    pub fn count(&self, func: &str) -> usize {
        self.lock().calls.iter().filter(|c| c.func == func).count()
    }

    /// How many calls of each `func` were received.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for call in &self.lock().calls {
            *counts.entry(call.func.clone()).or_insert(0) += 1;
        }
        counts
    }

    /// Forgets the calls received so far.
    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// Arms a fault after those already armed.
    pub fn arm(&self, spec: FaultSpec) -> Result<(), FaultError> {
        self.lock().faults.arm(spec)
    }

    /// The faults still armed, with the calls each has left.
    pub fn pending_faults(&self) -> Vec<FaultSpec> {
        self.lock().faults.pending()
    }

    /// Disarms every fault.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Back to the state the simulator was created with; no calls, no faults.
    pub fn reset(&self) {
        let mut inner = self.lock();
        inner.state = inner.initial.clone();
        inner.calls.clear();
        inner.received = 0;
        inner.faults.clear();
    }

    /// The fault for a call of `func`, used up by it.
    pub(crate) fn take_fault(&self, func: &str) -> Option<FaultSpec> {
        self.lock().faults.take(func)
    }

    /// Answers a call and records it. With a `fault` that does not apply, the call is answered
    /// against a scratch copy of the state (so that a truncated answer is the right document)
    /// and nothing changes.
    pub(crate) fn execute(&self, params: &Params, fault: Option<&FaultSpec>) -> Reply {
        let carried_out = fault.is_none_or(|f| f.apply || matches!(f.fault, Fault::Delay { .. }));
        let func = params.get("func").unwrap_or_default().trim().to_owned();
        let mut inner = self.lock();
        let result = if carried_out {
            billmgr::handle(&mut inner.state, params)
        } else {
            billmgr::handle(&mut inner.state.clone(), params)
        };
        let (doc, outcome) = match result {
            Ok(doc) => (doc, Outcome::Ok),
            Err(e) => {
                let outcome = Outcome::Error {
                    kind: e.kind().to_owned(),
                    object: e.object().to_owned(),
                };
                (e.to_doc(), outcome)
            }
        };
        inner.received = inner.received.saturating_add(1);
        let call = Call {
            seq: inner.received,
            func,
            params: params.without_credentials(),
            at_unix_ms: now_unix_ms(),
            outcome,
            fault: fault.map(|f| f.fault.clone()),
            carried_out,
        };
        tracing::info!(
            seq = call.seq,
            func = ?call.func,
            outcome = ?call.outcome,
            fault = ?call.fault,
            carried_out,
            "billmgr call"
        );
        tracing::debug!(seq = call.seq, params = ?call.params, "billmgr call parameters");
        inner.calls.push(call);
        Reply {
            doc,
            format: Format::from_out(params.get("out")),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while holding the lock; should it ever, the data is still consistent
        // enough for a test double.
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}
