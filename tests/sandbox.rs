//! What the component may reach: its imports are exactly the granted set, and a component that
//! asks for more, or does not fit the world, does not load.

use reseller_host::limits::Limits;
use reseller_host::reseller::{BUILTIN_POLICY, BUILTIN_PROTOCOL};
use reseller_host::runtime::{LoadError, LoadedPlugin, LoadedPolicy, Runtime};

fn load(bytes: &[u8]) -> Result<LoadedPlugin, LoadError> {
    LoadedPlugin::load(&Runtime::new(), "test", bytes, Limits::default())
}

fn builtin_policy() -> std::sync::Arc<LoadedPolicy> {
    let policy = LoadedPolicy::load(
        &Runtime::new(),
        "builtin-markup",
        BUILTIN_POLICY,
        Limits::for_policy(),
    );
    std::sync::Arc::new(policy.expect("the built-in policy loads"))
}

fn unversioned(names: &[String]) -> Vec<String> {
    let mut names: Vec<String> = names
        .iter()
        .map(|n| {
            n.split_once('@')
                .map_or(n.as_str(), |(name, _)| name)
                .to_owned()
        })
        .collect();
    names.sort();
    names
}

/// What Rust's standard library imports for stdio, panics and exit; granted empty.
const RUST_STD: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stderr",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stderr",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
];

#[test]
fn the_builtin_policy_imports_the_log_and_nothing_else() {
    let policy = builtin_policy();
    let mut expected = vec!["billing:reseller/log", "billing:reseller/types"];
    expected.extend(RUST_STD);
    assert_eq!(
        unversioned(policy.imports()),
        expected,
        "{:?}",
        policy.imports()
    );
    assert_eq!(unversioned(policy.exports()), ["billing:reseller/policy"]);
    assert_eq!(policy.contract_version(), "0.2.0");
}

#[test]
fn the_builtin_protocol_imports_exactly_the_granted_interfaces() {
    let plugin = load(BUILTIN_PROTOCOL).expect("the built-in protocol loads");
    let expected = [
        // Our capabilities, the policy joined to it among them.
        "billing:reseller/calendar",
        "billing:reseller/catalogue",
        "billing:reseller/log",
        "billing:reseller/policy",
        "billing:reseller/types",
        "billing:reseller/upstream",
        // What Rust's standard library imports for stdio, panics and exit; granted empty.
        "wasi:cli/environment",
        "wasi:cli/exit",
        "wasi:cli/stderr",
        "wasi:cli/stdin",
        "wasi:cli/stdout",
        "wasi:cli/terminal-input",
        "wasi:cli/terminal-output",
        "wasi:cli/terminal-stderr",
        "wasi:cli/terminal-stdin",
        "wasi:cli/terminal-stdout",
        "wasi:io/error",
        "wasi:io/poll",
        "wasi:io/streams",
    ];
    assert_eq!(
        unversioned(plugin.imports()),
        expected,
        "{:?}",
        plugin.imports()
    );
    for own in plugin
        .imports()
        .iter()
        .filter(|n| n.starts_with("billing:"))
    {
        assert!(own.ends_with("@0.2.0"), "{own}");
    }
    assert_eq!(
        unversioned(plugin.exports()),
        ["billing:reseller/orders", "billing:reseller/pricing"]
    );
}

/// A component exporting `exports` (empty instances) and importing `imports`.
fn component(imports: &[&str], exports: &[&str]) -> Vec<u8> {
    let mut wat = String::from("(component\n");
    for import in imports {
        wat.push_str(&format!("  (import \"{import}\" (instance))\n"));
    }
    for (i, export) in exports.iter().enumerate() {
        wat.push_str(&format!(
            "  (instance $e{i})\n  (export \"{export}\" (instance $e{i}))\n"
        ));
    }
    wat.push(')');
    wat::parse_str(&wat).expect("wat")
}

#[test]
fn what_is_not_granted_is_refused_before_compiling_every_import_named() {
    let pricing = [
        "billing:reseller/pricing@0.2.0",
        "billing:reseller/orders@0.2.0",
    ];
    let bytes = component(
        &[
            "wasi:keyvalue/store@0.2.0",
            "billing:reseller/secrets@0.2.0",
            "billing:reseller/catalogue@0.1.0",
            // Granted empty: files, sockets and clocks load.
            "wasi:filesystem/preopens@0.2.6",
            "wasi:sockets/tcp@0.2.6",
            "wasi:clocks/wall-clock@0.2.6",
        ],
        &pricing,
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::with_cache(tmp.path().join("cache"));
    match LoadedPlugin::load(&runtime, "test", &bytes, Limits::default()) {
        Err(LoadError::ForbiddenImports { imports, .. }) => assert_eq!(
            imports,
            [
                "wasi:keyvalue/store@0.2.0",
                "billing:reseller/secrets@0.2.0",
                "billing:reseller/catalogue@0.1.0",
            ]
        ),
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("loaded"),
    }
    assert!(
        !tmp.path().join("cache").exists(),
        "nothing of it is cached"
    );

    // A policy gets the log, not upstream or the catalogue.
    let bytes = component(
        &[
            "billing:reseller/upstream@0.2.0",
            "billing:reseller/log@0.2.0",
        ],
        &["billing:reseller/policy@0.2.0"],
    );
    match LoadedPolicy::load(&runtime, "test", &bytes, Limits::for_policy()) {
        Err(LoadError::ForbiddenImports { role, imports }) => {
            assert_eq!(role, "pricing policy");
            assert_eq!(imports, ["billing:reseller/upstream@0.2.0"]);
        }
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("loaded"),
    }
}

#[test]
fn a_component_of_another_world_or_role_does_not_load() {
    let bytes = wat::parse_str("(component)").expect("wat");
    let err = load(&bytes).err().expect("refused");
    assert!(matches!(err, LoadError::Incompatible { .. }), "{err}");
    assert!(err.to_string().contains("billing:reseller@0.2.0"), "{err}");
    let err = load(BUILTIN_POLICY)
        .err()
        .expect("a policy is not a plugin");
    assert!(err.to_string().contains("[plugin.policy]"), "{err}");
    let err = LoadedPolicy::load(&Runtime::new(), "p", BUILTIN_PROTOCOL, Limits::for_policy())
        .err()
        .expect("a protocol is not a policy");
    assert!(err.to_string().contains("protocol component"), "{err}");
}

#[test]
fn a_component_that_creates_too_many_instances_is_refused_naming_the_limit() {
    let limits = Limits {
        instances: 1,
        ..Limits::default()
    };
    let err = LoadedPlugin::load(&Runtime::new(), "test", BUILTIN_PROTOCOL, limits)
        .err()
        .expect("refused");
    assert!(
        err.to_string().contains("plugin.limits.instances = 1"),
        "{err}"
    );
}

#[test]
fn files_that_are_not_components_do_not_load() {
    let core = wat::parse_str("(module)").expect("wat");
    for (bytes, words) in [
        (core.as_slice(), "core wasm module"),
        (b"not wasm".as_slice(), "not a WebAssembly file"),
        (
            b"\0asm\x0d\0\x01\0garbage".as_slice(),
            "not a valid component",
        ),
    ] {
        let err = load(bytes).err().expect("refused");
        assert!(err.to_string().contains(words), "{err}");
    }
}

mod orders {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use reseller_host::bindings::catalogue::Snapshot;
    use reseller_host::bindings::orders::Order;
    use reseller_host::bindings::types::{Money, OrderError};
    use reseller_host::bindings::upstream::{CallError, Response};
    use reseller_host::capabilities::Grants;
    use reseller_host::capabilities::upstream::{UpstreamClient, UpstreamPolicy};

    use super::*;

    /// A function and its parameters, as the host's client received them.
    type Call = (String, Vec<(String, String)>);

    /// Records each call and answers with a fixed body.
    struct Fake {
        body: &'static str,
        calls: Mutex<Vec<Call>>,
    }

    impl UpstreamClient for Fake {
        fn call(
            &self,
            func: &str,
            params: &[(String, String)],
            _: Duration,
        ) -> Result<Response, CallError> {
            self.calls
                .lock()
                .expect("lock")
                .push((func.to_owned(), params.to_vec()));
            Ok(Response {
                status: 200,
                body: self.body.as_bytes().to_vec(),
                truncated: false,
            })
        }
    }

    fn grants(fake: Arc<Fake>, functions: &[&str]) -> Grants {
        Grants::new(
            "test".into(),
            Snapshot {
                version: 1,
                offers: Vec::new(),
                settings: "{}".to_owned(),
            },
            UpstreamPolicy::new(functions.iter().map(|f| (*f).to_owned()), fake),
        )
    }

    fn order() -> Order {
        Order {
            id: "o-1".to_owned(),
            licence_id: "LIC-9".to_owned(),
            licence_ip: Some("192.0.2.7".to_owned()),
            tariff_id: 23221,
            period: 1,
            autoprolong: true,
            price: Money {
                units: 180_000,
                currency: "EUR".to_owned(),
            },
            fields: Vec::new(),
        }
    }

    #[test]
    fn the_component_places_an_order_through_the_host_capability() {
        let plugin = load(BUILTIN_PROTOCOL).expect("loads");
        let fake = Arc::new(Fake {
            body: "<doc><id>777</id></doc>",
            calls: Mutex::default(),
        });
        let placed = plugin
            .place(&grants(fake.clone(), &["addition.order.param"]), &order())
            .0
            .expect("no fault")
            .expect("placed");
        assert_eq!(placed.service_id, "777");
        let calls = fake.calls.lock().expect("lock");
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].0, "addition.order.param");
        let params: Vec<(&str, &str)> = calls[0]
            .1
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            params,
            [
                ("item", "LIC-9"),
                ("period", "1"),
                ("pricelist", "23221"),
                ("autoprolong", "1"),
                ("remoteid", "o-1"),
                ("skipbasket", "on"),
                ("sok", "ok")
            ]
        );
    }

    #[test]
    fn a_function_outside_the_policy_never_reaches_upstream() {
        let plugin = load(BUILTIN_PROTOCOL).expect("loads");
        let fake = Arc::new(Fake {
            body: "<doc/>",
            calls: Mutex::default(),
        });
        let outcome = plugin
            .remove(&grants(fake.clone(), &["pricelist.export"]), "777")
            .0
            .expect("no fault");
        assert!(matches!(outcome, Err(OrderError::Other(m)) if m.contains("addition.delete")));
        assert!(fake.calls.lock().expect("lock").is_empty());
    }

    #[test]
    fn an_html_answer_to_an_order_is_in_doubt() {
        let plugin = load(BUILTIN_PROTOCOL).expect("loads");
        let fake = Arc::new(Fake {
            body: "<html>502 Bad Gateway</html>",
            calls: Mutex::default(),
        });
        let outcome = plugin
            .place(&grants(fake, &["addition.order.param"]), &order())
            .0
            .expect("no fault");
        assert!(
            matches!(outcome, Err(OrderError::InDoubt(_))),
            "{outcome:?}"
        );
    }
}

mod cache {
    use std::os::unix::fs::PermissionsExt;

    use reseller_host::runtime::CacheOutcome;
    use sha2::{Digest, Sha256};

    use super::*;

    fn load(dir: &std::path::Path) -> LoadedPlugin {
        LoadedPlugin::load(
            &Runtime::with_cache(dir.to_owned()),
            "builtin",
            BUILTIN_PROTOCOL,
            Limits::default(),
        )
        .expect("loads")
    }

    fn rebuilt_because(dir: &std::path::Path) -> String {
        match load(dir).cache_outcome() {
            Some(CacheOutcome::Rebuilt(why)) => why.clone(),
            other => panic!("expected a rebuild, got {other:?}"),
        }
    }

    #[test]
    fn compiled_code_is_reused_and_untrusted_entries_are_rebuilt() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("cache");
        assert_eq!(load(&dir).cache_outcome(), Some(&CacheOutcome::Miss));
        let from_cache = load(&dir);
        assert_eq!(from_cache.cache_outcome(), Some(&CacheOutcome::Hit));
        let mode = |p: &std::path::Path| {
            std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
        };
        assert_eq!(mode(&dir), 0o700, "the cache is private to the host's user");

        let entries: Vec<_> = std::fs::read_dir(&dir)
            .expect("read dir")
            .map(|e| e.expect("entry").path())
            .collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
        let entry = &entries[0];
        let name = entry
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        assert!(
            name.starts_with(from_cache.sha256()),
            "keyed by the plugin's digest: {name}"
        );

        // A flipped byte: the checksum catches it.
        let mut bytes = std::fs::read(entry).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(entry, &bytes).expect("write");
        assert!(rebuilt_because(&dir).contains("checksum"));
        assert_eq!(load(&dir).cache_outcome(), Some(&CacheOutcome::Hit));

        // A well-formed entry whose content is not compiled code of this engine.
        let garbage = b"not compiled code".to_vec();
        let mut forged = b"reseller-cwasm-1\n".to_vec();
        forged.extend_from_slice(&Sha256::digest(&garbage));
        forged.extend_from_slice(&garbage);
        std::fs::write(entry, forged).expect("write");
        assert!(rebuilt_because(&dir).contains("refused by wasmtime"));

        // An entry others could have written.
        std::fs::set_permissions(entry, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        assert!(rebuilt_because(&dir).contains("writable by other users"));
        assert_eq!(mode(entry) & 0o022, 0, "the rebuilt entry is private again");

        // Code from the cache answers exactly like freshly compiled code.
        let policy = builtin_policy();
        let grants = |plugin: &LoadedPlugin| {
            reseller_host::capabilities::Grants::new(
                plugin.name().clone(),
                reseller_host::convert::snapshot(
                    &reseller_host::config::Config::embedded().expect("defaults"),
                    1,
                ),
                reseller_host::capabilities::upstream::UpstreamPolicy::not_configured(),
            )
            .with_policy(policy.clone())
        };
        let query = reseller_host::bindings::pricing::Query {
            itemtype: "addition".to_owned(),
            only_available: true,
            pricelist: None,
            format: reseller_host::bindings::pricing::Format::Json,
            lang: None,
        };
        let cached = load(&dir);
        assert_eq!(cached.cache_outcome(), Some(&CacheOutcome::Hit));
        let fresh = super::load(BUILTIN_PROTOCOL).expect("loads");
        let answer = |p: &LoadedPlugin| {
            p.export_prices(&grants(p), &query)
                .0
                .expect("no fault")
                .expect("prices")
                .body
        };
        assert_eq!(answer(&cached), answer(&fresh));
    }
}

mod swap {
    use reseller_host::Reseller;
    use reseller_host::bindings::pricing::{Format, Query};
    use reseller_host::config::{Config, Source};

    use super::*;

    #[test]
    fn calls_in_flight_finish_on_the_plugin_they_started_with() {
        let markup = Config::embedded().expect("defaults");
        let mut charm = Config::parse(
            &reseller_host::config::DEFAULTS.replace(
                "rounding_step = \"0.10\"\nrounding = \"up\"\nperiods = [1, 12]",
                "",
            ),
            Source::Embedded,
        )
        .expect("charm config");
        charm.plugin.policy.path = Some(reseller_test_artifacts::CHARM_PATH.into());
        charm.plugin.cache = false;
        let reseller = Reseller::new(Runtime::new(), markup).expect("reseller");
        let query = Query {
            itemtype: "addition".to_owned(),
            only_available: true,
            pricelist: None,
            format: Format::Xml,
            lang: None,
        };
        let before = reseller.export_prices(&query).expect("prices").body;
        let in_flight = reseller.active();
        reseller.swap(charm).expect("swap");
        let after = reseller.export_prices(&query).expect("prices").body;
        assert_ne!(before, after, "the swap is live for new calls");
        assert_eq!(
            in_flight.export_prices(&query).expect("prices").body,
            before,
            "the old one still serves its caller"
        );
        assert!(
            String::from_utf8_lossy(&after).contains("cost=\"3.9900\""),
            "charm prices"
        );
    }
}

mod answers {
    use reseller_host::Reseller;
    use reseller_host::bindings::pricing::{Format, Query};
    use reseller_host::config::Config;

    use super::*;

    fn query(pricelist: Option<u64>) -> Query {
        Query {
            itemtype: "addition".to_owned(),
            only_available: true,
            pricelist,
            format: Format::Xml,
            lang: None,
        }
    }

    #[test]
    fn rendered_answers_are_reused_for_known_queries_only() {
        let reseller =
            Reseller::new(Runtime::new(), Config::embedded().expect("defaults")).expect("reseller");
        let calls = || reseller.active().rendered();
        let first = reseller.export_prices(&query(None)).expect("prices");
        let after_first = calls();
        for _ in 0..5 {
            assert_eq!(
                reseller.export_prices(&query(None)).expect("prices").body,
                first.body
            );
        }
        assert_eq!(calls(), after_first, "answered from the cache");
        reseller.export_prices(&query(Some(55361))).expect("prices");
        reseller.export_prices(&query(Some(55361))).expect("prices");
        assert_eq!(
            calls(),
            after_first + 1,
            "a module of the catalogue is kept too"
        );
        for _ in 0..3 {
            reseller
                .export_prices(&query(Some(424242)))
                .expect("prices");
        }
        assert_eq!(
            calls(),
            after_first + 4,
            "unknown IDs are not kept: they could fill the cache"
        );
    }

    #[test]
    fn without_the_cache_every_request_runs_the_plugin() {
        let mut config = Config::embedded().expect("defaults");
        config.server.answer_cache = 0;
        let reseller = Reseller::new(Runtime::new(), config).expect("reseller");
        let before = reseller.active().rendered();
        for _ in 0..3 {
            reseller.export_prices(&query(None)).expect("prices");
        }
        assert_eq!(reseller.active().rendered(), before + 3);
    }
}
