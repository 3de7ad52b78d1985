//! In-process cost of the plugin path against the same logic compiled natively.
//!
//! `cargo bench -p reseller-host --bench plugin`. A price export of a 50-module catalogue by
//! the built-in protocol joined to the built-in policy:
//! (a) with everything but compilation fresh per call (`Linker` instantiate);
//! (b) as the server runs it without its answer cache (fresh stores and instances from each
//!     `InstancePre`), with the policy called afresh each time, or its answer kept;
//! (c) the policy alone;
//! (d) the same pricing and rendering code compiled natively;
//! then the fixed cost: instantiation alone, and a call that does nothing.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use reseller_host::bindings::{Plugin, pricing};
use reseller_host::capabilities::upstream::UpstreamPolicy;
use reseller_host::capabilities::{self, CallState, Grants, Hook, Role, calendar};
use reseller_host::config::{Config, Source};
use reseller_host::limits::{Limiter, Limits};
use reseller_host::reseller::{BUILTIN_POLICY, BUILTIN_PROTOCOL};
use reseller_host::runtime::{LoadedPlugin, LoadedPolicy, Runtime};
use reseller_plugin::PricingPolicy;
use reseller_plugin::model;
use reseller_plugin::policy::Markup;
use wasmtime::Store;
use wasmtime::component::{Component, Linker};

const HOSTILE: &[u8] = reseller_test_artifacts::HOSTILE;

/// The benchmark catalogue of `n` modules (bench/catalogue.sh), without the code cache.
fn config(n: usize) -> Config {
    let out = std::process::Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../bench/catalogue.sh"
        ))
        .arg(n.to_string())
        .output()
        .expect("catalogue.sh");
    let text = String::from_utf8(out.stdout).expect("utf-8") + "\n[plugin]\ncache = false\n";
    Config::parse(&text, Source::Embedded).expect("config")
}

fn query() -> pricing::Query {
    pricing::Query {
        itemtype: "addition".to_owned(),
        only_available: true,
        pricelist: None,
        format: pricing::Format::Xml,
        lang: None,
    }
}

/// What the protocol is granted, with a fresh join to `policy` (nothing of it kept yet).
fn joined(config: &Config, plugin: &LoadedPlugin, policy: &Arc<LoadedPolicy>) -> Grants {
    Grants::new(
        plugin.name().clone(),
        reseller_host::convert::snapshot(config, 1),
        UpstreamPolicy::not_configured(),
    )
    .with_policy(policy.clone())
}

fn builtin_policy(runtime: &Runtime) -> Arc<LoadedPolicy> {
    let policy = LoadedPolicy::load(
        runtime,
        "builtin-markup",
        BUILTIN_POLICY,
        Limits::for_policy(),
    );
    Arc::new(policy.expect("the built-in policy loads"))
}

fn today() -> model::Date {
    let day = calendar::today();
    model::Date {
        year: u16::try_from(day.year()).expect("a year of this era"),
        month: u8::from(day.month()),
        day: day.day(),
    }
}

/// The native path: the same policy and rendering code, compiled for the host.
fn native_export(offers: &[model::Offer], settings: &str, query: &model::Query) -> model::Document {
    let prices = Markup::prices(offers, settings, today()).expect("prices");
    reseller_plugin::price_list(offers, &prices, query).expect("a price list")
}

fn price_export(c: &mut Criterion) {
    let config = config(50);
    let runtime = Runtime::new();
    let limits = Limits::default();
    let plugin =
        LoadedPlugin::load(&runtime, "builtin", BUILTIN_PROTOCOL, limits.clone()).expect("loads");
    let policy = builtin_policy(&runtime);
    let grants = joined(&config, &plugin, &policy);
    let q = query();
    let expected = plugin
        .export_prices(&grants, &q)
        .0
        .expect("no fault")
        .expect("prices")
        .body;

    let (offers, settings) = reseller_host::bench::native_offers(&config);
    let native_query = model::Query {
        itemtype: "addition".to_owned(),
        only_available: true,
        pricelist: None,
        format: model::Format::Xml,
    };
    let native = native_export(&offers, &settings, &native_query);
    assert_eq!(
        native.body, expected,
        "the native and the sandboxed logic answer the same bytes"
    );

    // (a) only the compiled component is reused.
    let engine = runtime.engine(&limits).expect("engine");
    let component = Component::new(&engine, BUILTIN_PROTOCOL).expect("component");
    let mut linker = Linker::new(&engine);
    capabilities::add_to_linker(
        &mut linker,
        Role::Protocol,
        reseller_host::bindings::VERSION,
    )
    .expect("link");

    let mut group = c.benchmark_group("price_export_50_modules");
    group.bench_function("plugin_fresh_linker_instance", |b| {
        b.iter(|| {
            let grants = joined(&config, &plugin, &policy);
            let mut store = Store::new(
                &engine,
                CallState::new(
                    &grants,
                    &limits,
                    Hook::Pricing,
                    calendar::today(),
                    Limiter::new(limits.clone()),
                ),
            );
            store.limiter(|s| s.limiter_mut());
            store.set_fuel(limits.fuel).expect("fuel");
            store.set_epoch_deadline(100);
            let instance = Plugin::instantiate(&mut store, &component, &linker).expect("instance");
            let doc = instance
                .billing_reseller_pricing()
                .call_export_prices(&mut store, &q)
                .expect("call");
            black_box(doc.expect("prices").body.len())
        })
    });
    group.bench_function("plugin_instance_pre", |b| {
        b.iter(|| {
            black_box(
                plugin
                    .export_prices(&joined(&config, &plugin, &policy), &q)
                    .0
                    .expect("no fault")
                    .expect("prices")
                    .body
                    .len(),
            )
        })
    });
    group.bench_function("plugin_instance_pre_policy_answer_kept", |b| {
        b.iter(|| {
            black_box(
                plugin
                    .export_prices(&grants, &q)
                    .0
                    .expect("no fault")
                    .expect("prices")
                    .body
                    .len(),
            )
        })
    });
    let snapshot = reseller_host::convert::snapshot(&config, 1);
    let wit_today = reseller_host::convert::wit_date(calendar::today());
    group.bench_function("policy_only", |b| {
        b.iter(|| {
            black_box(
                policy
                    .price(&snapshot.offers, &snapshot.settings, wit_today)
                    .0
                    .expect("no fault")
                    .expect("prices")
                    .len(),
            )
        })
    });
    let unpooled_runtime = Runtime::new().without_pooling();
    let unpooled = LoadedPlugin::load(
        &unpooled_runtime,
        "builtin",
        BUILTIN_PROTOCOL,
        limits.clone(),
    )
    .expect("loads");
    let unpooled_policy = builtin_policy(&unpooled_runtime);
    group.bench_function("plugin_instance_pre_without_pooling", |b| {
        b.iter(|| {
            black_box(
                unpooled
                    .export_prices(&joined(&config, &unpooled, &unpooled_policy), &q)
                    .0
                    .expect("no fault")
                    .expect("prices")
                    .body
                    .len(),
            )
        })
    });
    // What the server runs: the plugin behind the rendered-answer cache (all hits here).
    let reseller = reseller_host::Reseller::new(Runtime::new(), config.clone()).expect("reseller");
    group.bench_function("server_path_answer_cache", |b| {
        b.iter(|| black_box(reseller.export_prices(&q).expect("prices").body.len()))
    });
    group.bench_function("native", |b| {
        b.iter(|| black_box(native_export(&offers, &settings, &native_query).body.len()))
    });
    group.finish();
}

fn fixed_cost(c: &mut Criterion) {
    let config = config(50);
    let runtime = Runtime::new();
    let builtin = LoadedPlugin::load(&runtime, "builtin", BUILTIN_PROTOCOL, Limits::default())
        .expect("loads");
    let empty = LoadedPlugin::load(&runtime, "hostile", HOSTILE, Limits::default()).expect("loads");
    let grants = joined(&config, &builtin, &builtin_policy(&runtime));
    let mut group = c.benchmark_group("fixed_cost");
    group.bench_function("instantiate_only", |b| {
        b.iter(|| builtin.instantiate_only(&grants).0.expect("no fault"))
    });
    group.bench_function("empty_call", |b| {
        b.iter(|| {
            empty
                .rebind(&grants, "1", "2")
                .0
                .expect("no fault")
                .expect("done")
        })
    });
    group.finish();
}

criterion_group!(benches, price_export, fixed_cost);
criterion_main!(benches);
