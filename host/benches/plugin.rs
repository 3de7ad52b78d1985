//! In-process cost of the plugin path against the same logic compiled natively.
//!
//! `cargo bench -p reseller-host --bench plugin`. A price export of a 50-module catalogue
//! (a) through the plugin with everything but compilation fresh per call (`Linker` instantiate),
//! (b) through the plugin as the server runs it (a fresh store and instance from the
//! `InstancePre`), (c) the same pricing and rendering code compiled natively; then the fixed
//! cost: instantiation alone, and a call that does nothing.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use reseller_host::bindings::{Plugin, pricing};
use reseller_host::capabilities::upstream::UpstreamPolicy;
use reseller_host::capabilities::{self, CallState, Grants, Hook};
use reseller_host::config::{Config, Source};
use reseller_host::limits::{Limiter, Limits};
use reseller_host::reseller::BUILTIN_PLUGIN;
use reseller_host::runtime::{LoadedPlugin, Runtime};
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

fn grants(config: &Config, plugin: &LoadedPlugin) -> Grants {
    Grants {
        plugin: plugin.name().clone(),
        catalogue: Arc::new(reseller_host::convert::snapshot(config, 1)),
        upstream: Arc::new(UpstreamPolicy::not_configured()),
    }
}

fn price_export(c: &mut Criterion) {
    let config = config(50);
    let runtime = Runtime::new();
    let limits = Limits::default();
    let plugin =
        LoadedPlugin::load(&runtime, "builtin", BUILTIN_PLUGIN, limits.clone()).expect("loads");
    let grants = grants(&config, &plugin);
    let q = query();
    let expected = plugin
        .export_prices(&grants, &q)
        .0
        .expect("no fault")
        .expect("prices")
        .body;

    let (offers, settings) = reseller_host::bench::native_offers(&config);
    let native = Markup::export_prices(
        &offers,
        &settings,
        &model::Query {
            itemtype: "addition".to_owned(),
            only_available: true,
            pricelist: None,
            format: model::Format::Xml,
        },
    )
    .expect("prices");
    assert_eq!(
        native.body, expected,
        "the native and the sandboxed logic answer the same bytes"
    );

    // (a) only the compiled component is reused.
    let engine = runtime.engine(&limits).expect("engine");
    let component = Component::new(&engine, BUILTIN_PLUGIN).expect("component");
    let mut linker = Linker::new(&engine);
    capabilities::add_to_linker(&mut linker).expect("link");

    let mut group = c.benchmark_group("price_export_50_modules");
    group.bench_function("plugin_fresh_linker_instance", |b| {
        b.iter(|| {
            let mut store = Store::new(
                &engine,
                CallState::new(
                    &grants,
                    &limits,
                    Hook::Pricing,
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
                    .export_prices(&grants, &q)
                    .0
                    .expect("no fault")
                    .expect("prices")
                    .body
                    .len(),
            )
        })
    });
    let unpooled = LoadedPlugin::load(
        &Runtime::new().without_pooling(),
        "builtin",
        BUILTIN_PLUGIN,
        limits.clone(),
    )
    .expect("loads");
    group.bench_function("plugin_instance_pre_without_pooling", |b| {
        b.iter(|| {
            black_box(
                unpooled
                    .export_prices(&grants, &q)
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
    let native_query = model::Query {
        itemtype: "addition".to_owned(),
        only_available: true,
        pricelist: None,
        format: model::Format::Xml,
    };
    group.bench_function("native", |b| {
        b.iter(|| {
            black_box(
                Markup::export_prices(&offers, &settings, &native_query)
                    .expect("prices")
                    .body
                    .len(),
            )
        })
    });
    group.finish();
}

fn fixed_cost(c: &mut Criterion) {
    let config = config(50);
    let runtime = Runtime::new();
    let builtin =
        LoadedPlugin::load(&runtime, "builtin", BUILTIN_PLUGIN, Limits::default()).expect("loads");
    let empty = LoadedPlugin::load(&runtime, "hostile", HOSTILE, Limits::default()).expect("loads");
    let grants = grants(&config, &builtin);
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
