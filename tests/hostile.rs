//! Hostile plugins, built from source: each misbehaviour is contained with the right error,
//! and ordinary price requests keep being answered while one runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reseller_host::bindings::catalogue::Snapshot;
use reseller_host::bindings::orders::Order;
use reseller_host::bindings::pricing::{Format, Query};
use reseller_host::bindings::types::{Money, OrderError, PricingError};
use reseller_host::bindings::upstream::{CallError, Response};
use reseller_host::capabilities::Grants;
use reseller_host::capabilities::upstream::{UpstreamClient, UpstreamPolicy};
use reseller_host::config::{Config, Source};
use reseller_host::limits::{Limit, LimitHit, Limits};
use reseller_host::runtime::{Fault, LoadError, LoadedPlugin, Runtime};

const HOSTILE: &[u8] = reseller_test_artifacts::HOSTILE;
const INCOMPATIBLE: &[u8] = reseller_test_artifacts::INCOMPATIBLE;

/// Records what reaches "upstream" and answers with an empty document.
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl UpstreamClient for Recorder {
    fn call(
        &self,
        func: &str,
        params: &[(String, String)],
        _: Duration,
    ) -> Result<Response, CallError> {
        self.0
            .lock()
            .expect("lock")
            .push(format!("{func} {params:?}"));
        Ok(Response {
            status: 200,
            body: b"<doc/>".to_vec(),
            truncated: false,
        })
    }
}

fn hostile(limits: Limits) -> LoadedPlugin {
    LoadedPlugin::load(&Runtime::new(), "hostile", HOSTILE, limits)
        .expect("the hostile guest loads")
}

fn grants(mode: &str, recorder: Arc<Recorder>) -> Grants {
    Grants {
        plugin: "hostile".into(),
        catalogue: Arc::new(Snapshot {
            version: 1,
            offers: Vec::new(),
            settings: format!(r#"{{"mode":"{mode}"}}"#),
        }),
        upstream: Arc::new(UpstreamPolicy::new(
            ["pricelist.export".to_owned()],
            recorder,
        )),
        policy: None,
    }
}

fn query() -> Query {
    Query {
        itemtype: "addition".to_owned(),
        only_available: true,
        pricelist: None,
        format: Format::Xml,
        lang: None,
    }
}

fn order() -> Order {
    Order {
        id: "o".to_owned(),
        licence_id: "1".to_owned(),
        licence_ip: None,
        tariff_id: 1,
        period: 1,
        autoprolong: false,
        price: Money {
            units: 1,
            currency: "EUR".to_owned(),
        },
        fields: Vec::new(),
    }
}

fn export_fault(plugin: &LoadedPlugin, mode: &str) -> Fault {
    match plugin
        .export_prices(&grants(mode, Arc::default()), &query())
        .0
    {
        Err(fault) => fault,
        Ok(answer) => panic!("{mode}: answered {answer:?}"),
    }
}

fn limit_hit(fault: Fault) -> LimitHit {
    match fault {
        Fault::Limit(hit) => hit,
        other => panic!("expected a limit hit, got {other}"),
    }
}

#[test]
fn an_endless_loop_runs_out_of_fuel() {
    let plugin = hostile(Limits::default());
    let hit = limit_hit(export_fault(&plugin, "loop"));
    assert_eq!(
        (hit.limit, hit.figure),
        (Limit::Fuel, Limits::default().fuel)
    );
    assert_eq!(plugin.stats().limit_hits(Limit::Fuel), 1);
}

#[test]
fn an_endless_loop_with_fuel_to_spare_meets_its_deadline() {
    let limits = Limits {
        fuel: u64::MAX / 2,
        deadline_ms: 50,
        ..Limits::default()
    };
    let hit = limit_hit(export_fault(&hostile(limits), "loop"));
    assert_eq!((hit.limit, hit.figure), (Limit::Deadline, 50));
}

#[test]
fn a_memory_bomb_is_stopped_at_the_memory_limit() {
    let hit = limit_hit(export_fault(&hostile(Limits::default()), "memory"));
    assert_eq!((hit.limit, hit.figure), (Limit::Memory, 16 << 20));
    assert!(hit.asked.is_some_and(|asked| asked > 16 << 20), "{hit}");
}

#[test]
fn unbounded_recursion_overflows_the_stack() {
    let hit = limit_hit(export_fault(&hostile(Limits::default()), "recursion"));
    assert_eq!((hit.limit, hit.figure), (Limit::Stack, 512 << 10));
}

#[test]
fn a_panic_is_the_guests_fault_with_its_message() {
    match export_fault(&hostile(Limits::default()), "panic") {
        Fault::Guest { output, .. } => assert!(
            output.contains("hostile guest panics on purpose"),
            "{output}"
        ),
        other => panic!("expected a guest fault, got {other}"),
    }
}

#[test]
fn a_multi_megabyte_answer_is_refused() {
    let hit = limit_hit(export_fault(&hostile(Limits::default()), "huge"));
    assert_eq!((hit.limit, hit.asked), (Limit::AnswerBytes, Some(5 << 20)));
}

#[test]
fn calling_the_host_in_a_tight_loop_is_stopped() {
    let hit = limit_hit(export_fault(&hostile(Limits::default()), "hostcalls"));
    assert_eq!((hit.limit, hit.figure), (Limit::Hostcalls, 1_000));
}

#[test]
fn passing_the_host_megabytes_is_stopped() {
    let hit = limit_hit(export_fault(&hostile(Limits::default()), "big-hostcall"));
    assert_eq!(
        (hit.limit, hit.asked),
        (Limit::HostcallBytes, Some(4 << 20))
    );
}

#[test]
fn forbidden_upstream_requests_never_leave_the_host() {
    let plugin = hostile(Limits::default());
    let recorder = Arc::new(Recorder::default());
    // While pricing, nothing at all.
    let answer = plugin
        .export_prices(&grants("upstream", recorder.clone()), &query())
        .0
        .expect("no fault");
    match answer {
        Err(PricingError::Other(seen)) => {
            assert_eq!(
                seen.matches("not allowed while pricing").count(),
                4,
                "{seen}"
            );
        }
        other => panic!("{other:?}"),
    }
    // From an order hook, the policy's refusals.
    let order = order();
    match plugin
        .place(&grants("upstream", recorder.clone()), &order)
        .0
        .expect("no fault")
    {
        Err(OrderError::Other(seen)) => {
            assert!(seen.contains("user.delete: Err(CallError::NotAllowed(\"the function `user.delete` is not allowed"), "{seen}");
            assert!(
                seen.contains("evil.example/billmgr` is not allowed"),
                "{seen}"
            );
            assert!(
                seen.contains("the parameter `authinfo` is set by the host"),
                "{seen}"
            );
            assert!(
                seen.contains("the parameter `out` is set by the host"),
                "{seen}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        recorder.0.lock().expect("lock").is_empty(),
        "nothing reached upstream"
    );
}

#[test]
fn an_order_hook_that_keeps_calling_upstream_is_stopped_at_its_limit() {
    let plugin = hostile(Limits {
        upstream_calls: 3,
        ..Limits::default()
    });
    let recorder = Arc::new(Recorder::default());
    let order = order();
    let fault = plugin
        .place(&grants("", recorder.clone()), &order)
        .0
        .expect_err("stopped");
    let hit = limit_hit(fault);
    assert_eq!(
        (hit.limit, hit.figure, hit.asked),
        (Limit::UpstreamCalls, 3, Some(4))
    );
    assert_eq!(recorder.0.lock().expect("lock").len(), 3);
}

#[test]
fn the_guest_sees_no_environment_arguments_or_input() {
    // The host process has an environment (PATH, HOME, …) and arguments; the guest sees none.
    assert!(std::env::vars().next().is_some());
    let answer =
        hostile(Limits::default()).export_prices(&grants("snoop", Arc::default()), &query());
    match answer.0.expect("no fault") {
        Err(PricingError::Other(seen)) => assert_eq!(seen, r#"env=[] args=[] stdin=Ok(0):"""#),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_component_of_an_incompatible_contract_version_is_refused_naming_both() {
    let err = LoadedPlugin::load(
        &Runtime::new(),
        "incompatible",
        INCOMPATIBLE,
        Limits::default(),
    )
    .err()
    .expect("refused");
    assert!(
        matches!(err, LoadError::IncompatibleVersion { .. }),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains("billing:reseller@1.0.0") && message.contains("billing:reseller@0.2.0"),
        "{message}"
    );
}

#[test]
fn a_component_of_a_later_compatible_version_is_served() {
    let plugin = LoadedPlugin::load(
        &Runtime::new(),
        "newer",
        reseller_test_artifacts::NEWER_MINOR,
        Limits::default(),
    )
    .expect("a 0.2.1 plugin loads in a 0.2.0 host");
    assert!(
        plugin
            .exports()
            .iter()
            .any(|e| e == "billing:reseller/pricing@0.2.1"),
        "{:?}",
        plugin.exports()
    );
    let doc = plugin
        .export_prices(&grants("", Arc::default()), &query())
        .0
        .expect("no fault")
        .expect("a document");
    assert_eq!(doc.body, b"<doc><!-- 0.2.1 plugin:  --></doc>");
}

#[test]
fn price_requests_are_answered_while_hostile_guests_spin() {
    let runtime = Runtime::new();
    let config = Config::parse(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/catalogue.toml"
        ))
        .expect("fixture")
        .replace("[server]", "[plugin]\ncache = false\n\n[server]"),
        Source::Embedded,
    )
    .expect("config");
    let reseller =
        Arc::new(reseller_host::Reseller::new(runtime.clone(), config).expect("reseller"));
    let expected = reseller.export_prices(&query()).expect("prices").body;

    let rt = tokio::runtime::Runtime::new().expect("tokio");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop_server, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(reseller_host::http::serve(listener, reseller, async {
        let _ = stopped.await;
    }));

    let spinning = Arc::new(AtomicBool::new(true));
    let hostile_plugin = Arc::new(
        LoadedPlugin::load(
            &runtime,
            "hostile",
            HOSTILE,
            Limits {
                fuel: u64::MAX / 2,
                deadline_ms: 200,
                ..Limits::default()
            },
        )
        .expect("loads"),
    );
    let spinners: Vec<_> = (0..2)
        .map(|_| {
            let (plugin, spinning) = (hostile_plugin.clone(), spinning.clone());
            std::thread::spawn(move || {
                let mut hits = 0;
                while spinning.load(Ordering::Relaxed) {
                    let fault = export_fault(&plugin, "loop");
                    assert_eq!(limit_hit(fault).limit, Limit::Deadline);
                    hits += 1;
                }
                hits
            })
        })
        .collect();

    let url = format!(
        "http://{addr}/billmgr?func=pricelist.export&itemtype=addition&onlyavailable=on&out=xml"
    );
    for _ in 0..40 {
        let response = reqwest::blocking::get(&url).expect("GET");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.bytes().expect("body").as_ref(),
            expected.as_slice()
        );
    }
    spinning.store(false, Ordering::Relaxed);
    let hits: u32 = spinners
        .into_iter()
        .map(|s| s.join().expect("spinner"))
        .sum();
    assert!(
        hits >= 2,
        "the hostile guests were running all along ({hits} deadline hits)"
    );
    let _ = stop_server.send(());
    rt.block_on(server).expect("server task").expect("server");
}
