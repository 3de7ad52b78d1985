//! One call: a fresh `Store` with its limits, a fresh instance, and the fault if it fails.

use wasmtime::component::InstancePre;
use wasmtime::{Store, StoreLimitsBuilder, Trap};

use crate::bindings::{Plugin, PluginPre};
use crate::capabilities::{CallState, Grants};

/// Bounds on one call.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Linear memory of the instance, in bytes.
    pub memory_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
        }
    }
}

/// A call that ended without an answer from the plugin: not a business error.
#[derive(Debug, thiserror::Error)]
pub enum Fault {
    /// The plugin's fault: a trap (a panic, a limit hit, an invalid operation).
    #[error("the plugin failed: {reason}")]
    Guest {
        /// What happened.
        reason: String,
        /// What the plugin wrote to stderr (a panic message, for instance).
        stderr: String,
    },
    /// The host's fault: the call could not be run.
    #[error("the host could not run the plugin: {0}")]
    Host(String),
}

/// Instantiates `pre` in a fresh store and runs `f`.
pub(super) fn run<R>(
    pre: &PluginPre<CallState>,
    grants: &Grants,
    limits: &Limits,
    f: impl FnOnce(&Plugin, &mut Store<CallState>) -> wasmtime::Result<R>,
) -> Result<R, Fault> {
    let store_limits = StoreLimitsBuilder::new()
        .memory_size(limits.memory_bytes)
        .instances(4)
        .tables(8)
        .memories(4)
        .build();
    let instance_pre: &InstancePre<CallState> = pre.instance_pre();
    let mut store = Store::new(instance_pre.engine(), CallState::new(grants, store_limits));
    store.limiter(|state| &mut state.limits);
    let outcome = pre
        .instantiate(&mut store)
        .and_then(|plugin| f(&plugin, &mut store));
    outcome.map_err(|e| fault(&e, store.data()))
}

fn fault(e: &wasmtime::Error, state: &CallState) -> Fault {
    match e.downcast_ref::<Trap>() {
        Some(trap) => Fault::Guest {
            reason: trap.to_string(),
            stderr: state.stderr(),
        },
        None => Fault::Host(super::plugin::root(e)),
    }
}
