//! Components from every mainstream toolchain, built from source with default flags: the
//! example pricing policy in Rust, Python and JavaScript (`examples/policy-*`) gives the panel
//! byte-identical price lists, and whole plugins from Python and JavaScript
//! (`tests/guests/plugin-*`) load and serve, their exceptions reaching the operator.
//!
//! The Rust components are built by cargo. The Python and JavaScript ones are built by `.ci/run`,
//! which names them in environment variables ([`PYTHON_POLICY`], …); without them a test says it
//! is skipped and why, except under `CI=true`, where that is a failure.

use std::path::{Path, PathBuf};

use crate::common::{Server, fixture, get, reseller, text};

const RUST_POLICY: &str = reseller_test_artifacts::POLICY_RUST_PATH;
/// The Python example policy, `examples/policy-python/policy.wasm`.
const PYTHON_POLICY: &str = "RESELLER_POLICY_PYTHON_WASM";
/// The JavaScript example policy, `examples/policy-js/policy.wasm`.
const JS_POLICY: &str = "RESELLER_POLICY_JS_WASM";
/// A whole plugin in Python, `tests/guests/plugin-python/plugin.wasm`.
const PYTHON_PLUGIN: &str = "RESELLER_PLUGIN_PYTHON_WASM";
/// A whole plugin in JavaScript, `tests/guests/plugin-js/plugin.wasm`.
const JS_PLUGIN: &str = "RESELLER_PLUGIN_JS_WASM";

const PANEL_XML: &str = "/billmgr?func=pricelist.export&itemtype=addition&onlyavailable=on&out=xml";
const ALL_JSON: &str = "/billmgr?func=pricelist.export&itemtype=addition&out=json";
const ONE_MODULE: &str = "/billmgr?func=pricelist.export&itemtype=addition&pricelist=55390";
const SETTINGS: &str = "markup_percent = \"20\"\nending = \"0.90\"";

/// The component a variable names, or `None` (with the reason printed) when it is not set
/// outside CI.
fn built(var: &str, what: &str) -> Option<PathBuf> {
    match std::env::var_os(var) {
        Some(path) => {
            let path = PathBuf::from(path);
            assert!(
                path.is_file(),
                "{var} names {}, which is not a file",
                path.display()
            );
            Some(path)
        }
        None if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{var} is not set: .ci/run builds {what} and names it there")
        }
        None => {
            eprintln!(
                "skipped: {var} is not set; build {what} (see .ci/run) and set it to run this test"
            );
            None
        }
    }
}

/// Compiled code shared by the tests' servers and checks, kept between runs: compiling a Python
/// or JavaScript component takes tens of seconds, loading it from the cache a fraction of one.
fn code_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("polyglot-cache")
}

/// The fixture catalogue with `plugin` (a whole plugin) or the built-in protocol joined to
/// `policy`, under default limits, and `pricing` as its settings.
fn write_config(
    dir: &Path,
    plugin: Option<&Path>,
    policy: Option<&Path>,
    pricing: &str,
) -> PathBuf {
    let catalogue = std::fs::read_to_string(fixture("catalogue.toml")).expect("fixture");
    let catalogue = &catalogue[..catalogue.find("[pricing]").expect("a pricing table")];
    let mut config = format!(
        "{catalogue}\n[plugin]\ncache_dir = \"{}\"\n",
        code_cache().display()
    );
    if let Some(plugin) = plugin {
        config.push_str(&format!("path = \"{}\"\n", plugin.display()));
    }
    if let Some(policy) = policy {
        config.push_str(&format!(
            "\n[plugin.policy]\npath = \"{}\"\n",
            policy.display()
        ));
    }
    config.push_str(&format!("\n[pricing]\n{pricing}\n"));
    let path = dir.join("reseller.toml");
    std::fs::write(&path, config).expect("write the configuration");
    path
}

/// What a policy makes of the fixture catalogue: `reseller check`'s report, the panel's price
/// lists over HTTP, and the refusal of a float markup.
struct Served {
    check: String,
    answers: Vec<(&'static str, String)>,
    refusal: String,
}

fn serve_policy(policy: &Path) -> Served {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), None, Some(policy), SETTINGS);
    let config_arg = config.to_str().expect("utf-8");
    let policy_arg = policy.to_str().expect("utf-8");
    let out = reseller(&["check", policy_arg, "--config", config_arg]);
    let check = text(&out.stdout);
    assert!(
        out.status.success(),
        "{policy_arg} fails its check:\n{check}\n{}",
        text(&out.stderr)
    );
    let server = Server::start(Some(&config));
    let answers = [PANEL_XML, ALL_JSON, ONE_MODULE]
        .into_iter()
        .map(|query| {
            let answer = get(&server.url(query));
            assert_eq!(answer.status, 200, "{policy_arg} {query}: {}", answer.body);
            (query, answer.body)
        })
        .collect();
    server.kill();
    let bad = write_config(
        dir.path(),
        None,
        Some(policy),
        "markup_percent = 20.5\nending = \"0.90\"",
    );
    let out = reseller(&["pricelist", "--config", bad.to_str().expect("utf-8")]);
    assert!(!out.status.success(), "a float markup is refused");
    let stderr = text(&out.stderr);
    let refusal = stderr
        .split_once(": pricing.")
        .map(|(_, rest)| format!("pricing.{}", rest.trim()))
        .unwrap_or(stderr);
    Served {
        check,
        answers,
        refusal,
    }
}

#[test]
fn the_rust_python_and_javascript_policies_give_the_same_bytes() {
    let rust = serve_policy(Path::new(RUST_POLICY));
    for line in [
        "world    billing:reseller@0.2.0 pricing policy",
        "price: the catalogue",
        "error: invalid setting pricing: the pricing settings must be a table (a JSON object)",
        "result   passed",
    ] {
        assert!(rust.check.contains(line), "{line:?} in\n{}", rust.check);
    }
    // The rules, checked on the Rust policy's answer: 100.00 RUB + 20 % = 120.00, ending .90;
    // 913.9286 + 20 % = 1096.71432, up to 1096.7144, ending .90; 7.50 and 75.00 EUR likewise.
    let (_, panel) = &rust.answers[0];
    let costs: Vec<&str> = panel
        .split("cost=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .collect();
    assert_eq!(
        costs,
        ["120.9000", "1200.9000", "1096.9000", "9.9000", "90.9000"],
        "{panel}"
    );
    assert_eq!(
        rust.refusal,
        "pricing.markup_percent: 20.5 is a float; write the markup as a decimal string, e.g. \"12.5\""
    );

    let others = [
        (PYTHON_POLICY, "the Python example policy"),
        (JS_POLICY, "the JavaScript example policy"),
    ];
    for (var, what) in others {
        let Some(path) = built(var, what) else {
            continue;
        };
        let served = serve_policy(&path);
        for ((query, expected), (_, got)) in rust.answers.iter().zip(&served.answers) {
            assert_eq!(got, expected, "{what} answers {query} otherwise than Rust");
        }
        assert_eq!(served.refusal, rust.refusal, "{what} refuses otherwise");
        assert!(
            served.check.contains("result   passed"),
            "{what}:\n{}",
            served.check
        );
    }
}

/// `reseller check` of a whole plugin with `pricing`, and its report.
fn check_plugin(plugin: &Path, pricing: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), Some(plugin), None, pricing);
    let out = reseller(&[
        "check",
        plugin.to_str().expect("utf-8"),
        "--config",
        config.to_str().expect("utf-8"),
    ]);
    (out.status.success(), text(&out.stdout))
}

#[test]
fn whole_plugins_from_python_and_javascript_serve_and_their_exceptions_are_told() {
    let plugins = [
        (
            PYTHON_PLUGIN,
            "the Python whole-plugin guest",
            "mode = \"raise\"",
            "RuntimeError: the Python guest raises on purpose",
        ),
        (
            JS_PLUGIN,
            "the JavaScript whole-plugin guest",
            "mode = \"throw\"",
            "Error: the JavaScript guest throws on purpose",
        ),
    ];
    for (var, what, failing, message) in plugins {
        let Some(path) = built(var, what) else {
            continue;
        };
        let (passed, report) = check_plugin(&path, "");
        assert!(passed, "{what}:\n{report}");
        assert!(
            report.contains("world    billing:reseller@0.2.0 whole plugin"),
            "{report}"
        );
        assert!(
            report.contains("error: this test plugin takes no orders"),
            "{report}"
        );

        // It serves the panel: every module at its one-month cost.
        let dir = tempfile::tempdir().expect("tempdir");
        let config = write_config(dir.path(), Some(&path), None, "");
        let server = Server::start(Some(&config));
        let answer = get(&server.url(PANEL_XML));
        assert_eq!(answer.status, 200, "{what}: {}", answer.body);
        assert!(
            answer
                .body
                .contains("<pricelist><id>55377</id><cost currency=\"RUB\">100.0000</cost>"),
            "{what}: {}",
            answer.body
        );

        // What it throws reaches the operator with its message.
        let (passed, report) = check_plugin(&path, failing);
        assert!(!passed, "{what} faults:\n{report}");
        let fault = report
            .lines()
            .find(|l| l.contains("the panel's query") && l.contains("FAULT: "))
            .unwrap_or_else(|| panic!("{what}: no fault in\n{report}"));
        assert!(fault.contains(message), "{what}: {fault}");
    }
}
