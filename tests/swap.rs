//! Swapping the logic: digest pinning, the compiled-code cache, hot swap by API, CLI and
//! signal (a failed swap keeps the old plugin serving), and `reseller check`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{Server, fixture, get, reseller, text};

const BUILTIN: &str = env!("RESELLER_PLUGIN_WASM");
const CHARM: &str = reseller_test_artifacts::CHARM_PATH;
const HOSTILE: &str = reseller_test_artifacts::HOSTILE_PATH;
const TOKEN: &str = "test-token-0123456789";
const PANEL: &str = "/billmgr?func=pricelist.export&itemtype=addition&onlyavailable=on&out=xml";

/// What serves: a whole plugin or a protocol (`plugin.path`), and the policy joined to a
/// protocol (`plugin.policy.path`); `None` for the built-in ones.
#[derive(Clone, Copy)]
struct Logic<'a> {
    plugin: Option<&'a str>,
    policy: Option<&'a str>,
}

const BUILTIN_LOGIC: Logic<'static> = Logic {
    plugin: Some(BUILTIN),
    policy: None,
};
const CHARM_LOGIC: Logic<'static> = Logic {
    plugin: None,
    policy: Some(CHARM),
};
const HOSTILE_LOGIC: Logic<'static> = Logic {
    plugin: Some(HOSTILE),
    policy: None,
};

/// The fixture catalogue with `logic` (copied into `dir`), `extra` under `[plugin]` and a
/// `[pricing]` table.
fn write_config(dir: &Path, logic: Logic<'_>, pricing: &str, extra: &str) -> PathBuf {
    let catalogue = std::fs::read_to_string(fixture("catalogue.toml")).expect("fixture");
    let catalogue = &catalogue[..catalogue.find("[pricing]").expect("a pricing table")];
    let copy = |file: &str| {
        let name = Path::new(file).file_name().expect("file name");
        std::fs::copy(file, dir.join(name)).expect("copy the component");
        name.to_string_lossy().into_owned()
    };
    let mut plugin = String::from("[plugin]\ncache_dir = \"cache\"\n");
    if let Some(file) = logic.plugin {
        plugin.push_str(&format!("path = \"{}\"\n", copy(file)));
    }
    plugin.push_str(extra);
    if let Some(file) = logic.policy {
        plugin.push_str(&format!("\n[plugin.policy]\npath = \"{}\"\n", copy(file)));
    }
    let config =
        format!("{catalogue}\n{plugin}\n[api]\ntoken = \"{TOKEN}\"\n\n[pricing]\n{pricing}\n");
    let path = dir.join("reseller.toml");
    std::fs::write(&path, config).expect("write config");
    path
}

const MARKUP: &str = "markup_percent = \"25\"\nrounding_step = \"10\"\nperiods = [1, 12]";
const CHARM_PRICING: &str = "markup_percent = \"15\"";

/// (id, cost of each period) of each module in a price list.
fn prices(xml: &str) -> Vec<(String, Vec<String>)> {
    let doc = roxmltree::Document::parse(xml).expect("XML");
    doc.root_element()
        .children()
        .filter(|n| n.has_tag_name("pricelist"))
        .map(|line| {
            let id = line
                .children()
                .find(|n| n.has_tag_name("id"))
                .and_then(|n| n.text())
                .unwrap_or_default();
            let costs = line
                .descendants()
                .filter(|n| n.has_tag_name("period"))
                .filter_map(|n| n.attribute("cost"))
                .map(str::to_owned)
                .collect();
            (id.to_owned(), costs)
        })
        .collect()
}

/// Element names of a price list, in document order, without text or attribute values.
fn shape(xml: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(xml).expect("XML");
    doc.descendants()
        .filter(|n| n.is_element())
        .map(|n| n.tag_name().name().to_owned())
        .collect()
}

fn wait_for(server: &Server, want: &[(String, Vec<String>)]) {
    let started = Instant::now();
    while prices(&get(&server.url(PANEL)).body) != want {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the server never served the new prices"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn swapping_the_plugin_changes_prices_and_nothing_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), BUILTIN_LOGIC, MARKUP, "");
    let server = Server::start(Some(&config));
    let markup = get(&server.url(PANEL)).body;
    let ids_and_costs = |v: &[(&str, &[&str])]| -> Vec<(String, Vec<String>)> {
        v.iter()
            .map(|(id, c)| {
                (
                    (*id).to_owned(),
                    c.iter().map(|s| (*s).to_owned()).collect(),
                )
            })
            .collect()
    };
    let markup_prices = ids_and_costs(&[
        ("55377", &["130.0000", "1250.0000"]),
        ("23221", &["1150.0000"]),
        ("55390", &["10.0000", "100.0000"]),
    ]);
    assert_eq!(prices(&markup), markup_prices);

    // Swap to the charm policy through the CLI (the API underneath).
    write_config(dir.path(), CHARM_LOGIC, CHARM_PRICING, "");
    let out = reseller(&[
        "reload",
        "--config",
        config.to_str().expect("utf-8"),
        "--url",
        &server.base,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert!(
        report["policy"]["name"]
            .as_str()
            .is_some_and(|n| n.ends_with("reseller_charm.wasm")),
        "{report}"
    );
    assert_eq!(report["plugin"]["name"], "builtin", "{report}");
    let charm = get(&server.url(PANEL)).body;
    assert_eq!(
        prices(&charm),
        ids_and_costs(&[
            ("55377", &["190.0000", "1190.0000"]),
            ("23221", &["1090.0000"]),
            ("55390", &["8.9900", "86.9900"]),
        ])
    );
    assert_eq!(shape(&charm), shape(&markup), "only the prices changed");

    // A plugin that fails its check is refused; the charm policy keeps serving.
    write_config(dir.path(), HOSTILE_LOGIC, "mode = \"panic\"", "");
    let out = reseller(&[
        "reload",
        "--config",
        config.to_str().expect("utf-8"),
        "--url",
        &server.base,
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("keeps serving"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(get(&server.url(PANEL)).body, charm);

    // SIGHUP reloads too.
    write_config(dir.path(), BUILTIN_LOGIC, MARKUP, "");
    let hup = Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .expect("kill");
    assert!(hup.success());
    wait_for(&server, &markup_prices);
    assert_eq!(get(&server.url(PANEL)).body, markup);
}

#[test]
fn the_api_wants_the_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), BUILTIN_LOGIC, MARKUP, "");
    let server = Server::start(Some(&config));
    let client = reqwest::blocking::Client::new();
    let info = |token: Option<&str>| {
        let mut request = client.get(server.url("/api/v1/plugin"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().expect("GET");
        let status = response.status().as_u16();
        (status, response.json::<serde_json::Value>().expect("JSON"))
    };
    let (status, body) = info(None);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, body) = info(Some("test-token-0123456788"));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, body) = info(Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["plugin"]["sha256"].as_str().map(str::len), Some(64));
    assert!(body["stats"]["calls"].as_u64().is_some_and(|c| c >= 1));
    let unknown = client
        .get(server.url("/api/v1/nothing"))
        .bearer_auth(TOKEN)
        .send()
        .expect("GET");
    assert_eq!(unknown.status(), 404);

    let without = Server::start(Some(&fixture("catalogue.toml")));
    let response = client
        .get(without.url("/api/v1/plugin"))
        .bearer_auth(TOKEN)
        .send()
        .expect("GET");
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().expect("JSON");
    assert_eq!(body["error"]["code"], "api_disabled");
}

#[test]
fn a_pinned_digest_must_match() {
    let dir = tempfile::tempdir().expect("tempdir");
    let digest = reseller_host::runtime::plugin_sha256(&std::fs::read(BUILTIN).expect("read"));
    let wrong = "0".repeat(64);
    let config = write_config(
        dir.path(),
        BUILTIN_LOGIC,
        MARKUP,
        &format!("sha256 = \"{wrong}\""),
    );
    let out = reseller(&["pricelist", "--config", config.to_str().expect("utf-8")]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains(": plugin.sha256: ") && err.contains(&digest) && err.contains(&wrong),
        "{err}"
    );

    let config = write_config(
        dir.path(),
        BUILTIN_LOGIC,
        MARKUP,
        &format!("sha256 = \"{}\"", digest.to_uppercase()),
    );
    let out = reseller(&["pricelist", "--config", config.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn check_reports_each_hook_and_what_it_used() {
    let out = reseller(&["check", BUILTIN]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    for line in [
        "world    billing:reseller@0.2.0 protocol, joined to the policy builtin-markup",
        "  billing:reseller/catalogue@0.2.0",
        "  billing:reseller/policy@0.2.0",
        "  billing:reseller/pricing@0.2.0",
        "placed as service 1001",
        "5 modules priced upstream",
        "error: invalid itemtype `soft`",
        "result   passed",
    ] {
        assert!(report.contains(line), "missing {line:?} in\n{report}");
    }
    assert!(
        report
            .lines()
            .any(|l| l.contains("the panel's query") && l.contains(" instr ")),
        "{report}"
    );

    let out = reseller(&["check", HOSTILE]);
    assert!(!out.status.success());
    let report = text(&out.stdout);
    assert!(
        report.contains("FAULT: the plugin hit its limit upstream_calls = 4"),
        "{report}"
    );
    assert!(report.contains("result   FAILED"), "{report}");

    let out = reseller(&["check", reseller_test_artifacts::INCOMPATIBLE_PATH]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("billing:reseller@1.0.0"),
        "{}",
        text(&out.stderr)
    );
}
