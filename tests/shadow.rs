//! Shadow runs over loopback: a candidate policy beside the live one, its report by API and
//! CLI, its promotion, and a hostile candidate that never reaches a live answer.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{Server, fixture, get, reseller};

const RUST_POLICY: &str = reseller_test_artifacts::POLICY_RUST_PATH;
const HOSTILE_POLICY: &str = reseller_test_artifacts::HOSTILE_POLICY_PATH;
const TOKEN: &str = "test-token-0123456789";
const PANEL: &str = "/billmgr?func=pricelist.export&itemtype=addition&onlyavailable=on&out=xml";

/// The fixture catalogue priced by the Rust example policy with a 20 % markup, `candidate`
/// (a `[plugin.candidate]` table's body, with `[plugin.candidate.pricing]` when it has one)
/// beside it, and `server` under `[server]`.
fn write_config(dir: &Path, candidate: &str, server: &str) -> PathBuf {
    let catalogue = std::fs::read_to_string(fixture("catalogue.toml")).expect("fixture");
    let catalogue = &catalogue[..catalogue.find("[pricing]").expect("a pricing table")];
    let catalogue = catalogue.replace("[server]\n", &format!("[server]\n{server}\n"));
    let config = format!(
        "{catalogue}\n[plugin]\ncache_dir = \"cache\"\n\n[plugin.policy]\npath = \"{RUST_POLICY}\"\n\n\
         {candidate}\n[api]\ntoken = \"{TOKEN}\"\n\n[pricing]\nmarkup_percent = \"20\"\n"
    );
    let path = dir.join("reseller.toml");
    std::fs::write(&path, config).expect("write the configuration");
    path
}

fn api(server: &Server, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let client = reqwest::blocking::Client::new();
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = client
        .request(method, server.url(&format!("/api/v1{path}")))
        .bearer_auth(TOKEN);
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    let response = request.send().expect("API call");
    let status = response.status().as_u16();
    (status, response.json().expect("JSON"))
}

/// The report once the candidate has finished what was sampled so far, and at least `at_least`
/// comparisons.
fn settled_report(server: &Server, at_least: u64) -> Value {
    let started = Instant::now();
    loop {
        let (status, report) = api(server, "GET", "/plugin/shadow", None);
        assert_eq!(status, 200, "{report}");
        let compared = report["compared"].as_u64().unwrap_or(0);
        let dropped = report["dropped"].as_u64().unwrap_or(0);
        let sampled = report["sampled"].as_u64().unwrap_or(0);
        if compared >= at_least && compared + dropped == sampled {
            return report;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the candidate never finished: {report}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The cost attribute of every period of a price list, in order.
fn costs(xml: &str) -> Vec<String> {
    xml.split("cost=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(str::to_owned)
        .collect()
}

const WITH_20: [&str; 5] = ["120.0000", "1200.0000", "1096.7144", "9.0000", "90.0000"];
const WITH_30: [&str; 5] = ["130.0000", "1300.0000", "1188.1072", "9.7500", "97.5000"];

#[test]
fn a_candidate_with_a_higher_markup_shows_exactly_its_differences_and_is_promoted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let candidate = format!(
        "[plugin.candidate]\npath = \"{RUST_POLICY}\"\n\n[plugin.candidate.pricing]\nmarkup_percent = \"30\"\n"
    );
    let config = write_config(dir.path(), &candidate, "");
    let server = Server::start(Some(&config));
    let live = get(&server.url(PANEL)).body;
    assert_eq!(costs(&live), WITH_20, "the live policy answers: {live}");

    let report = settled_report(&server, 1);
    assert_eq!(report["faults"], 0, "{report}");
    assert_eq!(report["differed"], report["compared"], "{report}");
    let last = &report["last_comparison"];
    assert_eq!(
        (last["modules"].as_u64(), last["prices"].as_u64()),
        (Some(4), Some(6))
    );
    // Every module and period the policies price, the archived module's too: 30 % against
    // 20 %, each rounded up to the ten-thousandth.
    let diff =
        |id: u64, intname: &str, months: u16, live: &str, candidate: &str, cur: &str, by: &str| {
            json!({
                "tariff_id": id, "intname": intname, "months": months,
                "live": {"amount": live, "currency": cur},
                "candidate": {"amount": candidate, "currency": cur},
                "difference": by, "difference_percent": "8.33",
            })
        };
    let expected = json!([
        diff(
            55377,
            "drweb-lite",
            1,
            "120.0000",
            "130.0000",
            "RUB",
            "10.0000"
        ),
        diff(
            55377,
            "drweb-lite",
            12,
            "1200.0000",
            "1300.0000",
            "RUB",
            "100.0000"
        ),
        diff(
            23221,
            "ddos-guard",
            1,
            "1096.7144",
            "1188.1072",
            "RUB",
            "91.3928"
        ),
        diff(55390, "bitninja", 1, "9.0000", "9.7500", "EUR", "0.7500"),
        diff(55390, "bitninja", 12, "90.0000", "97.5000", "EUR", "7.5000"),
        diff(
            55379,
            "drweb-host",
            1,
            "600.0000",
            "650.0000",
            "RUB",
            "50.0000"
        ),
    ]);
    assert_eq!(last["differences"], expected, "{report}");
    assert_eq!(
        get(&server.url(PANEL)).body,
        live,
        "the live answer never changes"
    );

    // The operator console shows the candidate beside the live policy.
    let browser = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let signed_in = browser
        .post(server.url("/console/signin"))
        .form(&[("secret", TOKEN)])
        .send()
        .expect("sign in");
    assert_eq!(signed_in.status(), 303);
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .split(';')
        .next()
        .expect("cookie")
        .to_owned();
    let page = |path: &str| {
        browser
            .get(server.url(path))
            .header("cookie", &cookie)
            .send()
            .expect("page")
            .text()
            .expect("text")
    };
    let prices = page("/console/prices");
    assert!(prices.contains("<th>Candidate</th>"), "{prices}");
    assert!(prices.contains("9.7500 EUR (+0.7500)"), "{prices}");
    assert!(prices.contains("650.0000 RUB (+50.0000)"), "{prices}");
    let plugin = page("/console/plugin");
    assert!(plugin.contains("Candidate policy"), "{plugin}");
    assert!(plugin.contains("Shadow runs of the candidate"), "{plugin}");

    // The CLI prints the same report.
    let config_arg = config.to_str().expect("utf-8");
    let out = reseller(&[
        "shadow",
        "report",
        "--config",
        config_arg,
        "--url",
        &server.base,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(printed["last_comparison"]["differences"], expected);
    let (_, info) = api(&server, "GET", "/plugin", None);
    assert!(
        info["candidate"]["name"]
            .as_str()
            .is_some_and(|n| n.ends_with("policy_rust.wasm")),
        "{info}"
    );

    // Promoted: the candidate's prices are the live ones, and no candidate is left.
    let out = reseller(&[
        "shadow",
        "promote",
        "--config",
        config_arg,
        "--url",
        &server.base,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let promoted: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(
        promoted["configuration_file"]
            .as_str()
            .is_some_and(|s| s.starts_with("unchanged")),
        "{promoted}"
    );
    assert_eq!(promoted["promoted"]["candidate"], Value::Null, "{promoted}");
    assert_eq!(costs(&get(&server.url(PANEL)).body), WITH_30);
    let (status, body) = api(&server, "GET", "/plugin/shadow", None);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("no_candidate"))
    );

    // The file was not edited: a reload brings the previous live policy back, with its candidate.
    let (status, _) = api(&server, "POST", "/plugin/reload", None);
    assert_eq!(status, 200);
    assert_eq!(costs(&get(&server.url(PANEL)).body), WITH_20);
    let report = settled_report(&server, 1);
    assert_eq!(report["differed"], report["compared"], "{report}");
}

#[test]
fn answers_are_sampled_at_the_configured_share() {
    let dir = tempfile::tempdir().expect("tempdir");
    let candidate = format!("[plugin.candidate]\npath = \"{RUST_POLICY}\"\nsample_percent = 50\n");
    // Without the answer cache every request asks the policy, which answers from what it kept.
    let config = write_config(dir.path(), &candidate, "answer_cache = 0");
    let server = Server::start(Some(&config));
    let before = settled_report(&server, 1)["offered"]
        .as_u64()
        .expect("a count");
    for _ in 0..10 {
        assert_eq!(costs(&get(&server.url(PANEL)).body), WITH_20);
    }
    let report = settled_report(&server, 1);
    let offered = report["offered"].as_u64().expect("a count");
    assert_eq!(offered, before + 10, "every answer is offered: {report}");
    // Every other one, from the first (the load's trial export).
    let every_other = offered.div_ceil(2);
    assert_eq!(report["sampled"], every_other, "{report}");
    assert_eq!(
        report["agreed"], report["compared"],
        "the same policy agrees: {report}"
    );
    assert_eq!(
        report["last_comparison"]["differences"],
        json!([]),
        "{report}"
    );
}

#[test]
fn a_hostile_candidate_never_reaches_a_live_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hostile = |mode: &str| {
        format!(
            "[plugin.candidate]\npath = \"{HOSTILE_POLICY}\"\n\n[plugin.candidate.limits]\nmemory_bytes = 8388608\n\n\
             [plugin.candidate.pricing]\nmode = \"{mode}\"\n"
        )
    };
    let config = write_config(dir.path(), &hostile("loop"), "answer_cache = 0");
    let server = Server::start(Some(&config));
    // An endless loop meets its fuel or, on a machine busy enough, its deadline first.
    let cases = [
        (
            "loop",
            &["fuel", "deadline_ms"][..],
            "the plugin hit its limit",
        ),
        ("memory", &["memory_bytes"][..], "memory_bytes"),
        ("panic", &[][..], "hostile policy panics on purpose"),
    ];
    for (mode, limits, message) in cases {
        write_config(dir.path(), &hostile(mode), "answer_cache = 0");
        let (status, body) = api(&server, "POST", "/plugin/reload", None);
        assert_eq!(status, 200, "{body}");
        for _ in 0..3 {
            let answer = get(&server.url(PANEL));
            assert_eq!(answer.status, 200, "{mode}: {}", answer.body);
            assert_eq!(costs(&answer.body), WITH_20, "{mode}");
        }
        let report = settled_report(&server, 1);
        assert_eq!(report["faults"], report["compared"], "{mode}: {report}");
        if !limits.is_empty() {
            let hits: u64 = limits
                .iter()
                .map(|l| report["limit_hits"][*l].as_u64().unwrap_or(0))
                .sum();
            assert_eq!(Some(hits), report["faults"].as_u64(), "{mode}: {report}");
        }
        assert!(
            report["last_fault"]
                .as_str()
                .is_some_and(|f| f.contains(message)),
            "{mode}: {report}"
        );
        // Not promoted on its record; forced, it fails the check a reload makes, and the live
        // policy keeps serving.
        let (status, body) = api(&server, "POST", "/plugin/shadow/promote", None);
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (409, Some("candidate_unfit"))
        );
        let (status, body) = api(
            &server,
            "POST",
            "/plugin/shadow/promote",
            Some(json!({"force": true})),
        );
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (422, Some("promote_failed")),
            "{body}"
        );
        assert_eq!(costs(&get(&server.url(PANEL)).body), WITH_20, "{mode}");
    }

    // A candidate that prices otherwise, and a module the catalogue does not have.
    write_config(dir.path(), &hostile("double"), "");
    let (status, _) = api(&server, "POST", "/plugin/reload", None);
    assert_eq!(status, 200);
    let report = settled_report(&server, 1);
    let differences = report["last_comparison"]["differences"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(differences.len(), 7, "{report}");
    assert_eq!(
        differences[0]["candidate"]["amount"], "200.0000",
        "{report}"
    );
    let extra = &differences[6];
    assert_eq!(
        (
            extra["tariff_id"].as_u64(),
            extra["intname"].as_str(),
            &extra["live"]
        ),
        (Some(u64::MAX), Some(""), &Value::Null),
        "{report}"
    );
    assert_eq!(costs(&get(&server.url(PANEL)).body), WITH_20);
}

#[test]
fn a_candidate_must_load_and_needs_a_policy_to_be_compared_with() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pinned = format!(
        "[plugin.candidate]\npath = \"{RUST_POLICY}\"\nsha256 = \"{}\"\n",
        "0".repeat(64)
    );
    let config = write_config(dir.path(), &pinned, "");
    let out = reseller(&["pricelist", "--config", config.to_str().expect("utf-8")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(": plugin.candidate.sha256: "), "{err}");

    let over = format!("[plugin.candidate]\npath = \"{RUST_POLICY}\"\nsample_percent = 101\n");
    let config = write_config(dir.path(), &over, "");
    let out = reseller(&["pricelist", "--config", config.to_str().expect("utf-8")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(": plugin.candidate.sample_percent: "), "{err}");

    let whole = format!(
        "[plugin]\npath = \"{}\"\n[plugin.candidate]\npath = \"{RUST_POLICY}\"\n",
        reseller_test_artifacts::HOSTILE_PATH
    );
    let text = std::fs::read_to_string(fixture("catalogue.toml")).expect("fixture");
    let config = dir.path().join("whole.toml");
    std::fs::write(&config, format!("{text}\n{whole}")).expect("write");
    let out = reseller(&["pricelist", "--config", config.to_str().expect("utf-8")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(": plugin.candidate: ") && err.contains("whole plugin"),
        "{err}"
    );
}
