//! WASI, linked whole and granted empty, so that components from any mainstream toolchain load
//! as they are (Rust's std imports stdio; componentize-py and componentize-js also import
//! clocks, randomness, the filesystem and sockets, and componentize-js `wasi:http`).
//!
//! What a guest sees through it: no arguments, no environment variables, a closed stdin, stdout
//! and stderr captured (kept for the log and for the message of a fault, bounded), no
//! preopened directory, every socket address refused and no name lookup, and no HTTP (its
//! functions trap). Time and randomness keep a plugin a function of its inputs: the wall clock
//! reads midnight (UTC) of the call's day, the monotonic clock stands still, and the random
//! bytes are a fixed stream. A policy that prices by date reads the day and nothing finer, so
//! the host may keep a price list for the day.

use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker, ResourceType};
use wasmtime::{Engine, bail};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::random::Deterministic;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx};

use super::CallState;

/// How much of a guest's stdout and stderr is kept.
pub const OUTPUT_BYTES: usize = 4096;

/// The WASI packages a plugin may import, at any 0.2 version: linked, granting nothing.
pub const GRANTED: &[&str] = &[
    "wasi:io/",
    "wasi:cli/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
    "wasi:sockets/",
    "wasi:http/",
];

/// The bytes every call's "random" stream repeats: fixed, so that a plugin is a function of
/// its inputs.
const RANDOM: [u8; 32] = [
    0x9e, 0x37, 0x79, 0xb9, 0x7f, 0x4a, 0x7c, 0x15, 0xf3, 0x9c, 0xc0, 0x60, 0x5c, 0xed, 0xc8, 0x34,
    0x10, 0x82, 0x27, 0x6b, 0xf3, 0xa2, 0x72, 0x37, 0x0c, 0x71, 0x8e, 0x3a, 0xd1, 0x5f, 0x42, 0x27,
];

/// The wall clock: midnight (UTC) of the call's day.
struct Midnight(std::time::Duration);

impl HostWallClock for Midnight {
    fn resolution(&self) -> std::time::Duration {
        std::time::Duration::from_secs(86_400)
    }

    fn now(&self) -> std::time::Duration {
        self.0
    }
}

/// The monotonic clock: it stands still.
struct Still;

impl HostMonotonicClock for Still {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        0
    }
}

/// A context that grants nothing, for a call on `today`, and the pipes its stdout and stderr
/// write to.
pub fn empty_ctx(today: time::Date) -> (WasiCtx, MemoryOutputPipe, MemoryOutputPipe) {
    let stdout = MemoryOutputPipe::new(OUTPUT_BYTES);
    let stderr = MemoryOutputPipe::new(OUTPUT_BYTES);
    let midnight = today.midnight().assume_utc().unix_timestamp();
    let midnight = std::time::Duration::from_secs(u64::try_from(midnight).unwrap_or(0));
    let ctx = WasiCtx::builder()
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .wall_clock(Midnight(midnight))
        .monotonic_clock(Still)
        .secure_random(Deterministic::new(RANDOM.to_vec()))
        .insecure_random(Deterministic::new(RANDOM.to_vec()))
        .insecure_random_seed(0x5eed)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build();
    (ctx, stdout, stderr)
}

/// Links every WASI interface wasmtime implements, over the empty context of each call.
pub fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)
}

/// Links, for `component`, a trapping stand-in of every `wasi:http` interface it imports:
/// componentize-js imports HTTP whether or not the code uses it, and a plugin never makes a
/// request of its own. Other imports are left to the linker (and to its semver matching).
pub fn stub_http(
    linker: &mut Linker<CallState>,
    engine: &Engine,
    component: &Component,
) -> wasmtime::Result<()> {
    let ty = component.component_type();
    let imports: Vec<_> = ty.imports(engine).collect();
    // A resource type is defined once, by the interface that declares it: `wasi:http/types`
    // uses `wasi:io`'s streams and pollable, which WASI's own linking provides, and a stand-in
    // defined again there would be another type.
    let mut defined: Vec<ResourceType> = imports
        .iter()
        .filter(|(name, _)| !name.starts_with("wasi:http/"))
        .filter_map(|(_, item)| match &item.ty {
            ComponentItem::ComponentInstance(instance) => Some(instance.exports(engine)),
            _ => None,
        })
        .flatten()
        .filter_map(|(_, item)| match item.ty {
            ComponentItem::Resource(ty) => Some(ty),
            _ => None,
        })
        .collect();
    for (name, item) in &imports {
        if !name.starts_with("wasi:http/") {
            continue;
        }
        let ComponentItem::ComponentInstance(instance) = &item.ty else {
            continue;
        };
        let mut stub = linker.instance(name)?;
        for (export, item) in instance.exports(engine) {
            match item.ty {
                ComponentItem::ComponentFunc(_) => {
                    let what = format!("{name}#{export}");
                    stub.func_new(export, move |_, _, _, _| {
                        bail!("{what}: a plugin may not make HTTP requests")
                    })?;
                }
                ComponentItem::Resource(ty) if !defined.contains(&ty) => {
                    defined.push(ty);
                    stub.resource(export, ResourceType::host::<()>(), |_, _| Ok(()))?;
                }
                _ => {}
            }
        }
    }
    Ok(())
}
