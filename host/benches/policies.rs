//! The example pricing policy in each language (`examples/policy-*`), pricing a 50-module
//! catalogue through the host's sandbox: instructions, time and peak memory per call (medians,
//! each call in a fresh instance), and start-up: compiling the component cold, and loading it
//! from the code cache.
//!
//! `cargo bench -p reseller-host --bench policies`. The Rust policy is built by cargo; the Python
//! and JavaScript ones are measured when `.ci/run`'s variables name them
//! (`RESELLER_POLICY_PYTHON_WASM`, `RESELLER_POLICY_JS_WASM`), and left out otherwise. Run as a
//! test (`cargo test --benches`), it makes one short pass over the Rust policy only.
#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use reseller_host::config::{Config, Source};
use reseller_host::convert::{snapshot, wit_date};
use reseller_host::limits::Limits;
use reseller_host::runtime::{LoadedPolicy, Runtime};

const MODULES: usize = 50;

/// The benchmark catalogue (bench/catalogue.sh) with the example policies' settings.
fn config() -> Config {
    let out = std::process::Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../bench/catalogue.sh"
        ))
        .arg(MODULES.to_string())
        .output()
        .expect("catalogue.sh");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let catalogue = &text[..text.find("[pricing]").expect("a pricing table")];
    let text = format!("{catalogue}[pricing]\nmarkup_percent = \"20\"\nending = \"0.90\"\n");
    Config::parse(&text, Source::Embedded).expect("config")
}

fn median(mut values: Vec<u128>) -> u128 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let mut policies = vec![(
        "Rust",
        PathBuf::from(reseller_test_artifacts::POLICY_RUST_PATH),
    )];
    if full {
        for (language, var) in [
            ("Python", "RESELLER_POLICY_PYTHON_WASM"),
            ("JavaScript", "RESELLER_POLICY_JS_WASM"),
        ] {
            match std::env::var_os(var) {
                Some(path) => policies.push((language, PathBuf::from(path))),
                None => println!("{language}: left out, {var} is not set (see .ci/run)"),
            }
        }
    }
    let calls = if full { 50 } else { 3 };
    let config = config();
    let snapshot = snapshot(&config, 1);
    let today = wit_date(reseller_host::capabilities::calendar::today());
    println!(
        "{MODULES}-module price export through each policy, a fresh instance per call, \
         {calls} calls, medians"
    );
    println!(
        "{:<11} {:>9} {:>14} {:>10} {:>11} {:>12} {:>12}",
        "policy", "size_KiB", "instructions", "time_us", "memory_KiB", "cold_start", "cached_start"
    );
    for (language, path) in policies {
        let bytes = std::fs::read(&path).expect("read the component");
        let cache = tempfile::tempdir().expect("a cache directory");
        let load = || {
            let runtime = Runtime::with_cache(cache.path().to_owned());
            let started = Instant::now();
            let policy = LoadedPolicy::load(&runtime, language, &bytes, Limits::for_policy())
                .expect("the policy loads");
            (policy, started.elapsed())
        };
        let (_, cold) = load();
        let (policy, cached) = load();
        let mut fuel = Vec::new();
        let mut time = Vec::new();
        let mut memory = Vec::new();
        for _ in 0..calls {
            let (result, usage) = policy.price(&snapshot.offers, &snapshot.settings, today);
            let prices = result.expect("no fault").expect("prices");
            assert_eq!(prices.len(), MODULES);
            fuel.push(u128::from(usage.fuel));
            time.push(usage.elapsed.as_micros());
            memory.push(usage.peak_memory as u128 / 1024);
        }
        println!(
            "{:<11} {:>9} {:>14} {:>10} {:>11} {:>12} {:>12}",
            language,
            bytes.len() / 1024,
            median(fuel),
            median(time),
            median(memory),
            ms(cold),
            ms(cached)
        );
    }
}
