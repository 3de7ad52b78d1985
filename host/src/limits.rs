//! Bounds on every call into a plugin, and the error that says which one was hit.
//!
//! Defaults take Shopify Functions' limits for a pricing function as the anchor (11 million
//! instructions, 10 MB of memory, 512 kB of stack, 128 kB in, 20 kB out) and leave headroom for
//! a catalogue of a few hundred modules and for order hooks that wait on upstream. Each can be
//! overridden per plugin under `[plugin.limits]`.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use wasmtime::ResourceLimiter;

/// Bounds on one call. Every figure is per call (one hook invocation in a fresh instance).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Wasm instructions the guest may execute (wasmtime fuel: about one per instruction).
    pub fuel: u64,
    /// Wall-clock time the guest may run, in milliseconds, not counting upstream calls.
    pub deadline_ms: u64,
    /// Linear memory of the instance, in bytes.
    pub memory_bytes: usize,
    /// Wasm stack, in bytes.
    pub stack_bytes: usize,
    /// Bytes the guest may pass to the host in one host call (a log message, an upstream
    /// request).
    pub hostcall_bytes: usize,
    /// Host calls the guest may make in one call.
    pub hostcalls: u32,
    /// Size of the document a price export may return, in bytes.
    pub answer_bytes: usize,
    /// Upstream calls one order hook may make.
    pub upstream_calls: u32,
    /// Total time upstream calls of one hook may take, in milliseconds.
    pub upstream_time_ms: u64,
    /// Calls of the plugin that may run at once; more wait their turn.
    pub concurrent_calls: u32,
    /// Core module instances the component may create (a Rust plugin makes a few; a Python one
    /// about fifteen).
    pub instances: u32,
    /// Linear memories the component may have.
    pub memories: u32,
    /// Tables the component may have.
    pub tables: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: DEFAULT_FUEL,
            deadline_ms: 1_000,
            memory_bytes: 16 << 20,
            stack_bytes: 512 << 10,
            hostcall_bytes: 128 << 10,
            hostcalls: 1_000,
            answer_bytes: 1 << 20,
            upstream_calls: 4,
            upstream_time_ms: 60_000,
            concurrent_calls: 32,
            instances: 32,
            memories: 2,
            tables: 8,
        }
    }
}

/// Elements a plugin's table may grow to.
pub const MAX_TABLE_ELEMENTS: usize = 20_000;

/// The default instruction budget: 50 million, a few milliseconds of CPU. The built-in plugin
/// prices the 5-module default catalogue in 0.12 million and 50 modules in 1.03 million, so a
/// catalogue of hundreds of modules fits with room to spare.
pub const DEFAULT_FUEL: u64 = 50_000_000;

impl Limits {
    /// The guest's own running time.
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }

    /// The total time upstream calls may take in one hook.
    pub fn upstream_time(&self) -> Duration {
        Duration::from_millis(self.upstream_time_ms)
    }

    /// The first limit that cannot work, by its configuration key.
    pub fn validate(&self) -> Result<(), BadLimit> {
        let bad = |key, message: &'static str| Err(BadLimit { key, message });
        if self.fuel == 0 {
            return bad("fuel", "must be above 0");
        }
        if self.deadline_ms == 0 {
            return bad("deadline_ms", "must be above 0");
        }
        if self.hostcalls == 0 {
            return bad("hostcalls", "must be above 0");
        }
        if self.upstream_time_ms == 0 {
            return bad("upstream_time_ms", "must be above 0");
        }
        if !(1..=1024).contains(&self.concurrent_calls) {
            return bad("concurrent_calls", "must be between 1 and 1024");
        }
        if self.memory_bytes < 1 << 20 {
            return bad("memory_bytes", "must be at least 1048576 (1 MiB)");
        }
        if !(64 << 10..=64 << 20).contains(&self.stack_bytes) {
            return bad("stack_bytes", "must be between 65536 and 67108864");
        }
        if self.hostcall_bytes < 1024 {
            return bad("hostcall_bytes", "must be at least 1024");
        }
        if self.answer_bytes < 1024 {
            return bad("answer_bytes", "must be at least 1024");
        }
        if !(1..=1024).contains(&self.instances) {
            return bad("instances", "must be between 1 and 1024");
        }
        if !(1..=16).contains(&self.memories) {
            return bad("memories", "must be between 1 and 16");
        }
        if !(1..=64).contains(&self.tables) {
            return bad("tables", "must be between 1 and 64");
        }
        Ok(())
    }
}

/// A limit set to a figure that cannot work.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct BadLimit {
    /// Its key under `[plugin.limits]`.
    pub key: &'static str,
    /// What is wrong.
    pub message: &'static str,
}

impl Limits {
    /// The defaults for a pricing policy: an interpreter (Python, JavaScript) starts with 10 to
    /// 15 MiB of memory and needs room to work.
    pub fn for_policy() -> Limits {
        Limits {
            memory_bytes: 64 << 20,
            ..Limits::default()
        }
    }
}

/// Which limit a guest hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Limit {
    /// Instructions.
    Fuel,
    /// Wall-clock time.
    Deadline,
    /// Linear memory.
    Memory,
    /// Wasm stack.
    Stack,
    /// Bytes passed to the host in one call.
    HostcallBytes,
    /// Number of host calls.
    Hostcalls,
    /// Size of the returned document.
    AnswerBytes,
    /// Number of upstream calls.
    UpstreamCalls,
    /// Time spent in upstream calls.
    UpstreamTime,
}

impl Limit {
    /// Every limit, in a stable order (for counters).
    pub const ALL: [Limit; 9] = [
        Limit::Fuel,
        Limit::Deadline,
        Limit::Memory,
        Limit::Stack,
        Limit::HostcallBytes,
        Limit::Hostcalls,
        Limit::AnswerBytes,
        Limit::UpstreamCalls,
        Limit::UpstreamTime,
    ];

    /// The configuration key under `[plugin.limits]`.
    pub fn key(self) -> &'static str {
        match self {
            Limit::Fuel => "fuel",
            Limit::Deadline => "deadline_ms",
            Limit::Memory => "memory_bytes",
            Limit::Stack => "stack_bytes",
            Limit::HostcallBytes => "hostcall_bytes",
            Limit::Hostcalls => "hostcalls",
            Limit::AnswerBytes => "answer_bytes",
            Limit::UpstreamCalls => "upstream_calls",
            Limit::UpstreamTime => "upstream_time_ms",
        }
    }

    /// The limit's figure in `limits`.
    pub fn figure(self, limits: &Limits) -> u64 {
        let size = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
        match self {
            Limit::Fuel => limits.fuel,
            Limit::Deadline => limits.deadline_ms,
            Limit::Memory => size(limits.memory_bytes),
            Limit::Stack => size(limits.stack_bytes),
            Limit::HostcallBytes => size(limits.hostcall_bytes),
            Limit::Hostcalls => u64::from(limits.hostcalls),
            Limit::AnswerBytes => size(limits.answer_bytes),
            Limit::UpstreamCalls => u64::from(limits.upstream_calls),
            Limit::UpstreamTime => limits.upstream_time_ms,
        }
    }
}

/// A guest went past a limit: the guest's fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct LimitHit {
    /// Which limit.
    pub limit: Limit,
    /// The limit's figure.
    pub figure: u64,
    /// What the guest asked for, when known (bytes, calls).
    pub asked: Option<u64>,
}

impl fmt::Display for LimitHit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the plugin hit its limit {} = {}",
            self.limit.key(),
            self.figure
        )?;
        if let Some(asked) = self.asked {
            write!(f, " (it asked for {asked})")?;
        }
        Ok(())
    }
}

impl LimitHit {
    /// `limit` of `limits` was hit, asking for `asked`.
    pub fn new(limit: Limit, limits: &Limits, asked: Option<u64>) -> Self {
        LimitHit {
            limit,
            figure: limit.figure(limits),
            asked,
        }
    }
}

/// Enforces the memory limit, and records the peak for reports.
pub struct Limiter {
    limits: Limits,
    peak_memory: usize,
}

impl Limiter {
    /// A limiter for one call.
    pub fn new(limits: Limits) -> Self {
        Limiter {
            limits,
            peak_memory: 0,
        }
    }

    /// The largest linear memory the call reached, in bytes.
    pub fn peak_memory(&self) -> usize {
        self.peak_memory
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limits.memory_bytes {
            let asked = u64::try_from(desired).ok();
            return Err(wasmtime::Error::new(LimitHit::new(
                Limit::Memory,
                &self.limits,
                asked,
            )));
        }
        self.peak_memory = self.peak_memory.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; a plugin has no business growing them far.
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        usize::try_from(self.limits.instances).unwrap_or(usize::MAX)
    }

    fn tables(&self) -> usize {
        usize::try_from(self.limits.tables).unwrap_or(usize::MAX)
    }

    fn memories(&self) -> usize {
        usize::try_from(self.limits.memories).unwrap_or(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_limits_name_their_key() {
        assert_eq!(Limits::default().validate(), Ok(()));
        let bad = Limits {
            stack_bytes: 1,
            ..Limits::default()
        };
        assert_eq!(bad.validate().map_err(|e| e.key), Err("stack_bytes"));
        let bad = Limits {
            fuel: 0,
            ..Limits::default()
        };
        assert_eq!(bad.validate().map_err(|e| e.key), Err("fuel"));
        let hit = LimitHit::new(Limit::AnswerBytes, &Limits::default(), Some(5_000_000));
        assert_eq!(
            hit.to_string(),
            "the plugin hit its limit answer_bytes = 1048576 (it asked for 5000000)"
        );
    }

    #[test]
    fn memory_past_the_limit_is_refused_with_the_figure() {
        let mut limiter = Limiter::new(Limits {
            memory_bytes: 2 << 20,
            ..Limits::default()
        });
        assert!(matches!(limiter.memory_growing(0, 1 << 20, None), Ok(true)));
        let err = limiter
            .memory_growing(1 << 20, 3 << 20, None)
            .expect_err("refused");
        let hit = err.downcast_ref::<LimitHit>().expect("a limit hit");
        assert_eq!(
            (hit.limit, hit.figure, hit.asked),
            (Limit::Memory, 2 << 20, Some(3 << 20))
        );
        assert_eq!(limiter.peak_memory(), 1 << 20);
    }
}
