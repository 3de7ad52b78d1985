//! The order flow end to end: the real `reseller` binary with the real built-in plugin, the
//! upstream simulator, and real sockets between them. Prices → Buy redirect → order recorded →
//! paid → exactly one `addition.order.param` → placed; every way upstream can fail; manual
//! mode; rebind, renew, remove; a host killed in the middle of placement; the API's refusals.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{BIN, Server};
use serde_json::{Value, json};
use upstream_sim::{Fault, FaultSpec, Simulator, State};

pub(crate) const TOKEN: &str = "test-token-0123456789abcdef";
pub(crate) const PLACE: &str = "addition.order.param";

/// What a test needs: a simulated upstream, a directory with a configuration and a database.
pub(crate) struct Setup {
    pub(crate) sim: upstream_sim::Handle,
    pub(crate) dir: tempfile::TempDir,
}

impl Setup {
    pub(crate) fn new() -> Setup {
        Setup::with_state(State::default())
    }

    pub(crate) fn with_state(state: State) -> Setup {
        let sim = Simulator::start("127.0.0.1:0", state).expect("simulator");
        Setup {
            sim,
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// Writes the configuration (upstream at `url`, `extra` appended) and returns its path.
    pub(crate) fn config_for(&self, url: &str, extra: &str) -> PathBuf {
        let path = self.dir.path().join("reseller.toml");
        let text = format!(
            r#"
[upstream]
url = "{url}"
user = "partner"
password = "secret"
timeout_ms = 1500

[api]
token = "{TOKEN}"

[catalogue]
region = "eu"
currency = "EUR"

[[catalogue.modules]]
intname = "drweb-lite"
additionintname = "DrWeb"
name = "Dr.Web for ispmanager 6 lite"
tariff = {{ ru = 55377, eu = 55361 }}
cost = {{ month = "3.00", year = "30.00" }}

[[catalogue.modules]]
intname = "drweb-pro"
additionintname = "DrWeb"
name = "Dr.Web for ispmanager 6 pro"
tariff = {{ ru = 55378, eu = 55362 }}
cost = {{ month = "6.00", year = "60.00" }}

[[catalogue.modules]]
intname = "ddos-guard"
additionintname = "DDoSGUARD"
name = "DDoS-GUARD"
tariff = {{ ru = 23221, eu = 23221 }}
cost = {{ month = "15.00" }}

[pricing]
markup_percent = "20"
rounding_step = "0.10"
rounding = "up"
periods = [1, 12]

{extra}
"#
        );
        std::fs::write(&path, text).expect("write config");
        path
    }

    pub(crate) fn config(&self, extra: &str) -> PathBuf {
        let url = self.sim.billmgr_url();
        self.config_for(
            &url,
            &format!("[orders]\npoll_ms = 100\nretry_initial_ms = 100\n{extra}"),
        )
    }

    pub(crate) fn start(&self, config: &Path) -> Server {
        Server::start_in(self.dir.path(), Some(config))
    }

    pub(crate) fn count(&self, func: &str) -> usize {
        self.sim.sim().count(func)
    }

    /// Runs `reseller ARGS --config CONFIG` in the setup's directory.
    pub(crate) fn reseller(&self, config: &Path, args: &[&str]) -> std::process::Output {
        Command::new(BIN)
            .current_dir(self.dir.path())
            .args(args)
            .arg("--config")
            .arg(config)
            .output()
            .expect("run reseller")
    }

    /// Runs a CLI command that must succeed, and returns its JSON.
    pub(crate) fn cli_json(&self, config: &Path, args: &[&str]) -> Value {
        let out = self.reseller(config, args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON")
    }
}

/// The billing system's side of the API.
pub(crate) struct Api<'a> {
    server: &'a Server,
    token: &'a str,
}

impl<'a> Api<'a> {
    pub(crate) fn new(server: &'a Server) -> Self {
        Api {
            server,
            token: TOKEN,
        }
    }

    pub(crate) fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        token: Option<&str>,
    ) -> (u16, Value) {
        let client = reqwest::blocking::Client::new();
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = client.request(method, self.server.url(&format!("/api/v1{path}")));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_owned());
        }
        let response = request.send().expect("API call");
        let status = response.status().as_u16();
        let text = response.text().expect("body");
        let value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON answer: {text}"));
        (status, value)
    }

    pub(crate) fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(&body.to_string()), Some(self.token))
    }

    pub(crate) fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None, Some(self.token))
    }

    pub(crate) fn order(&self, id: &str) -> Value {
        let (status, body) = self.get(&format!("/orders/{id}"));
        assert_eq!(status, 200, "{body}");
        body
    }

    pub(crate) fn state(&self, id: &str) -> String {
        self.order(id)["order"]["state"]
            .as_str()
            .expect("a state")
            .to_owned()
    }

    /// Waits until the order (with its history) is as `done` wants it, and returns it.
    pub(crate) fn wait_for(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let order = self.order(id);
            if done(&order) {
                return order;
            }
            assert!(Instant::now() < deadline, "timed out at {order}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the order leaves `paid` and `placing`, and returns it.
    pub(crate) fn settled(&self, id: &str) -> Value {
        self.wait_for(id, |o| {
            !matches!(o["order"]["state"].as_str(), Some("paid" | "placing"))
        })
    }

    /// The order once placed with its expiry read from upstream (a read made after the order,
    /// so it may land a moment after the state).
    pub(crate) fn placed_with_expiry(&self, id: &str) -> Value {
        self.wait_for(id, |o| {
            o["order"]["state"] != "placed" || !o["order"]["expires_at"].is_null()
        })
    }

    pub(crate) fn paid(&self, id: &str) -> Value {
        let (status, body) = self.post(&format!("/orders/{id}/paid"), json!({}));
        assert_eq!(status, 200, "{body}");
        body
    }
}

/// Follows the panel's Buy button: answers (status, Location, body).
pub(crate) fn buy(server: &Server, query: &str) -> (u16, String, String) {
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let response = client
        .get(server.url(&format!("/billmgr?{query}")))
        .send()
        .expect("redirect");
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, location, response.text().expect("body"))
}

/// Records an order for `licence` and `module_id` through the redirect; returns its ID.
pub(crate) fn order_for(server: &Server, licence: &str, module: &str, module_id: u64) -> String {
    let (status, location, body) = buy(
        server,
        &format!("module={module}&license={licence}&ip=192.0.2.10&module_id={module_id}"),
    );
    assert_eq!(status, 303, "{body}");
    location
        .strip_prefix("order/")
        .unwrap_or_else(|| panic!("a relative order page: {location}"))
        .to_owned()
}

pub(crate) fn params_of(call: &upstream_sim::Call) -> Vec<(&str, &str)> {
    call.params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

#[test]
fn from_price_to_placed_exactly_once() {
    let setup = Setup::new();
    let server = setup.start(&setup.config(""));
    let api = Api::new(&server);

    // The panel's price: 3.00 + 20 %, rounded up to 0.10.
    let prices = crate::common::get(
        &server.url("/billmgr?func=pricelist.export&itemtype=addition&onlyavailable=on&out=xml"),
    );
    assert!(
        prices
            .body
            .contains(r#"<period cost="3.6000" type="month" length="1">"#),
        "{}",
        prices.body
    );

    let id = order_for(&server, "184431", "drweb-lite", 55361);
    let page = crate::common::get(&server.url(&format!("/order/{id}")));
    assert_eq!(page.status, 200);
    assert!(page.content_type.starts_with("text/html"));
    assert!(
        page.body.contains(&id) && page.body.contains("3.6000 EUR"),
        "{}",
        page.body
    );

    let order = api.order(&id);
    let o = &order["order"];
    assert_eq!(o["state"], "new");
    assert_eq!(o["licence_id"], "184431");
    assert_eq!(o["licence_ip"], "192.0.2.10");
    assert_eq!(o["tariff_id"], 55361);
    assert_eq!(o["service_name"], "drweb-lite");
    assert_eq!(
        o["price"],
        json!({"amount": "3.6000", "amount_e4": 36000, "currency": "EUR"})
    );
    assert_eq!(o["period_months"], 1);

    // The same Buy while unpaid is the same order; the additionintname also names the module.
    assert_eq!(order_for(&server, "184431", "DrWeb", 55361), id);
    let (_, list) = api.get("/orders");
    assert_eq!(list["orders"].as_array().map(Vec::len), Some(1), "{list}");

    let first = api.paid(&id);
    assert_eq!(first["changed"], true);
    let placed = api.settled(&id);
    assert_eq!(placed["order"]["state"], "placed", "{placed}");
    assert_eq!(placed["order"]["upstream_service_id"], "100001");
    assert_eq!(setup.count(PLACE), 1);

    let calls = setup.sim.sim().calls();
    let call = calls
        .iter()
        .find(|c| c.func == PLACE)
        .expect("the order call");
    let params = params_of(call);
    for expected in [
        ("item", "184431"),
        ("period", "1"),
        ("pricelist", "55361"),
        // By default the module is not renewed from the partner's balance behind its back.
        ("autoprolong", "null"),
        ("remoteid", id.as_str()),
        ("skipbasket", "on"),
        ("sok", "ok"),
        ("out", "xml"),
    ] {
        assert!(
            params.contains(&expected),
            "{expected:?} missing from {params:?}"
        );
    }
    let services = setup.sim.sim().services();
    assert_eq!(services.len(), 1);
    assert_eq!(
        (services[0].id, services[0].licence.as_str()),
        (100001, "184431")
    );

    // Paid again: nothing changes, nothing is sent.
    let again = api.paid(&id);
    assert_eq!(again["changed"], false);
    assert_eq!(again["order"]["state"], "placed");
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(setup.count(PLACE), 1);

    // The history: every transition and the upstream call, without credentials.
    let history = &placed["history"];
    let steps: Vec<String> = history
        .as_array()
        .expect("history")
        .iter()
        .map(|h| match h["kind"].as_str() {
            Some("transition") => h["to"].as_str().unwrap_or_default().to_owned(),
            _ => format!("call {}", h["call"]["func"].as_str().unwrap_or_default()),
        })
        .collect();
    assert_eq!(
        steps,
        [
            "new",
            "paid",
            "placing",
            "call addition.order.param",
            "placed",
            // The order's answer had no expiry date: the module's form is read for it.
            "call addition.edit",
            "placed"
        ]
    );
    let text = history.to_string();
    assert!(
        !text.contains("secret") && !text.contains("authinfo"),
        "{text}"
    );

    // After payment, a Buy for the same licence and module is a new order.
    assert_ne!(order_for(&server, "184431", "drweb-lite", 55361), id);
}

#[test]
fn racing_payments_place_one_order() {
    let setup = Setup::new();
    let server = setup.start(&setup.config(""));
    let api = Api::new(&server);
    let id = order_for(&server, "184432", "drweb-pro", 55362);
    let changed: Vec<bool> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| api.paid(&id)["changed"] == true))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    assert_eq!(changed.iter().filter(|c| **c).count(), 1, "{changed:?}");
    assert_eq!(api.settled(&id)["order"]["state"], "placed");
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(setup.count(PLACE), 1);
    assert_eq!(setup.sim.sim().services().len(), 1);
}

#[test]
fn each_upstream_fault_settles_in_the_right_state() {
    let setup = Setup::new();
    let server = setup.start(&setup.config(""));
    let api = Api::new(&server);
    // (fault, the state it must leave the order in). Faults that may follow a request upstream
    // carried out are in doubt: never re-sent.
    let cases = [
        (FaultSpec::new(Fault::Html).on(PLACE).applied(), "in_doubt"),
        (
            FaultSpec::new(Fault::Truncated).on(PLACE).applied(),
            "in_doubt",
        ),
        (FaultSpec::new(Fault::Empty).on(PLACE).applied(), "in_doubt"),
        (FaultSpec::new(Fault::Cut).on(PLACE).applied(), "in_doubt"),
        (
            FaultSpec::new(Fault::Status { code: 502 }).on(PLACE),
            "in_doubt",
        ),
        (
            FaultSpec::new(Fault::Delay { ms: 4000 })
                .on(PLACE)
                .applied(),
            "in_doubt",
        ),
    ];
    let licences = ["184431", "184432", "184433"];
    let modules = [
        ("drweb-lite", 55361),
        ("drweb-pro", 55362),
        ("ddos-guard", 23221),
    ];
    for (i, (fault, expected)) in cases.into_iter().enumerate() {
        let (module, tariff) = modules[i % 3];
        let licence = licences[i / 3];
        setup.sim.sim().arm(fault.clone()).expect("armed");
        let before = setup.count(PLACE);
        let id = order_for(&server, licence, module, tariff);
        api.paid(&id);
        let settled = api.settled(&id);
        assert_eq!(settled["order"]["state"], expected, "{fault:?}: {settled}");
        assert!(settled["order"]["last_error"].is_string(), "{settled}");
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(setup.count(PLACE), before + 1, "{fault:?} was retried");
    }
    // An in-doubt order is not cancelled or retried blindly.
    let (_, list) = api.get("/orders?state=in_doubt");
    let id = list["orders"][0]["id"]
        .as_str()
        .expect("an in-doubt order")
        .to_owned();
    let (status, body) = api.post(&format!("/orders/{id}/cancel"), json!({}));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("wrong_state"))
    );
    let (status, body) = api.post(&format!("/orders/{id}/retry"), json!({}));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );
    // The operator found the module upstream (the fault applied the order): mark it placed.
    let order = &list["orders"][0];
    let service = setup
        .sim
        .sim()
        .services()
        .into_iter()
        .find(|s| s.licence == order["licence_id"] && order["tariff_id"] == s.tariff)
        .expect("the module upstream")
        .id
        .to_string();
    let (status, body) = api.post(
        &format!("/orders/{id}/placed"),
        json!({"service_id": service}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["order"]["state"], "placed");
}

#[test]
fn an_in_doubt_order_retried_by_an_operator_is_placed() {
    let setup = Setup::new();
    let server = setup.start(&setup.config(""));
    let api = Api::new(&server);
    // A 502 before anything happened upstream: in doubt until an operator checks.
    setup
        .sim
        .sim()
        .arm(FaultSpec::new(Fault::Status { code: 503 }).on(PLACE))
        .expect("armed");
    let id = order_for(&server, "184433", "drweb-lite", 55361);
    api.paid(&id);
    assert_eq!(api.settled(&id)["order"]["state"], "in_doubt");
    assert!(setup.sim.sim().services().is_empty());
    let (status, body) = api.post(
        &format!("/orders/{id}/retry"),
        json!({"absent_upstream": true}),
    );
    assert_eq!(status, 200, "{body}");
    let settled = api.settled(&id);
    assert_eq!(settled["order"]["state"], "placed", "{settled}");
    assert_eq!(setup.count(PLACE), 2);
    assert_eq!(setup.sim.sim().services().len(), 1);
}

#[test]
fn refusals_fail_the_order_without_retrying() {
    // No money upstream, and the host does not look at the balance before sending.
    let mut state = State::default();
    state.account.balance = "0.5000".parse().expect("amount");
    let setup = Setup::with_state(state);
    let server = setup.start(&setup.config("check_balance = false\n"));
    let api = Api::new(&server);
    let id = order_for(&server, "184431", "drweb-lite", 55361);
    api.paid(&id);
    let settled = api.settled(&id);
    assert_eq!(settled["order"]["state"], "failed", "{settled}");
    let error = settled["order"]["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("balance"), "{error}");
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(setup.count(PLACE), 1);

    // The partner tops up; the operator retries.
    let mut state = setup.sim.sim().state();
    state.account.balance = "100.0000".parse().expect("amount");
    setup.sim.sim().set_state(state).expect("state");
    let (status, _) = api.post(&format!("/orders/{id}/retry"), json!({}));
    assert_eq!(status, 200);
    assert_eq!(api.settled(&id)["order"]["state"], "placed");
    assert_eq!(setup.count(PLACE), 2);

    // An unknown licence upstream is a refused value.
    let id = order_for(&server, "999999", "drweb-lite", 55361);
    api.paid(&id);
    let settled = api.settled(&id);
    assert_eq!(settled["order"]["state"], "failed", "{settled}");
    // A failed order may be cancelled.
    let (status, body) = api.post(&format!("/orders/{id}/cancel"), json!({}));
    assert_eq!(
        (status, body["order"]["state"].as_str()),
        (200, Some("cancelled"))
    );
}

#[test]
fn an_order_the_balance_cannot_cover_waits_instead_of_failing() {
    let mut state = State::default();
    state.account.balance = "0.5000".parse().expect("amount");
    let setup = Setup::with_state(state);
    let config = setup.config("");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        text.replace(
            "timeout_ms = 1500\n",
            "timeout_ms = 1500\nbalance_alert = \"10.00\"\nbalance_max_age_s = 0\n",
        ),
    )
    .expect("write");
    let server = setup.start(&config);
    let api = Api::new(&server);
    let id = order_for(&server, "184431", "drweb-lite", 55361);
    api.paid(&id);
    let waiting = api.wait_for(&id, |o| !o["order"]["waiting"].is_null());
    assert_eq!(waiting["order"]["state"], "paid");
    let why = waiting["order"]["waiting"].as_str().unwrap_or_default();
    assert!(why.contains("balance (0.5000 EUR)"), "{why}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(setup.count(PLACE), 0, "nothing was sent to fail");
    let (status, body) = api.get("/balance");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["balance"]["balance"]["amount"], "0.5000");
    assert_eq!(body["balance"]["low"], true);
    let (_, events) = api.get("/events");
    assert!(
        events["events"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["type"] == "balance.low")),
        "{events}"
    );

    // The partner tops up: the order goes.
    let mut state = setup.sim.sim().state();
    state.account.balance = "100.0000".parse().expect("amount");
    setup.sim.sim().set_state(state).expect("state");
    let placed = api.settled(&id);
    assert_eq!(placed["order"]["state"], "placed", "{placed}");
    assert!(placed["order"]["waiting"].is_null(), "{placed}");
    assert_eq!(setup.count(PLACE), 1);
    let output = setup.reseller(&config, &["balance"]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("\"currency\": \"EUR\""), "{text}");
}

#[test]
fn wrong_credentials_fail_the_order() {
    let setup = Setup::new();
    let config = setup.config("");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        text.replace("password = \"secret\"", "password = \"wrong\""),
    )
    .expect("write");
    let server = setup.start(&config);
    let api = Api::new(&server);
    let id = order_for(&server, "184431", "drweb-lite", 55361);
    api.paid(&id);
    let settled = api.settled(&id);
    assert_eq!(settled["order"]["state"], "failed", "{settled}");
    assert!(
        settled["order"]["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("credentials"),
        "{settled}"
    );
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[test]
fn requests_that_never_left_are_retried_until_they_succeed() {
    let port = free_port();
    let setup = Setup::new();
    let url = format!("http://127.0.0.1:{port}/billmgr");
    let config = setup.config_for(
        &url,
        "[orders]\npoll_ms = 50\nretry_initial_ms = 200\nretry_max_ms = 400\nmax_attempts = 1000\n",
    );
    let server = setup.start(&config);
    let api = Api::new(&server);
    let id = order_for(&server, "184431", "drweb-lite", 55361);
    api.paid(&id);
    // Upstream is down: the connection is refused, the order stays paid and is tried again.
    let order = api.wait_for(&id, |order| {
        assert!(
            matches!(order["order"]["state"].as_str(), Some("paid" | "placing")),
            "{order}"
        );
        order["order"]["attempts"].as_u64().unwrap_or(0) >= 2 && order["order"]["state"] == "paid"
    });
    assert!(order["history"].to_string().contains("not_sent"), "{order}");
    // Upstream comes back on that port: the order is placed, once.
    let sim = Simulator::start(("127.0.0.1", port), State::default()).expect("simulator");
    let settled = api.settled(&id);
    assert_eq!(settled["order"]["state"], "placed", "{settled}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sim.sim().count(PLACE), 1);
}

#[test]
fn requests_that_never_left_fail_after_the_last_attempt() {
    let setup = Setup::new();
    let url = format!("http://127.0.0.1:{}/billmgr", free_port());
    let config = setup.config_for(
        &url,
        "[orders]\npoll_ms = 50\nretry_initial_ms = 50\nretry_max_ms = 100\nmax_attempts = 3\n",
    );
    let server = setup.start(&config);
    let api = Api::new(&server);
    let id = order_for(&server, "184431", "drweb-lite", 55361);
    api.paid(&id);
    let settled = api.settled(&id);
    assert_eq!(settled["order"]["state"], "failed", "{settled}");
    assert_eq!(settled["order"]["attempts"], 3);
    let error = settled["order"]["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("gave up after 3 attempts"), "{error}");
}

#[test]
fn manual_mode_sends_nothing_upstream() {
    let setup = Setup::new();
    let config = setup.config("mode = \"manual\"\n");
    let server = setup.start(&config);
    let api = Api::new(&server);
    let id = order_for(&server, "184431", "drweb-lite", 55361);
    api.paid(&id);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(api.state(&id), "paid");

    // The operator orders by hand, then records it — here with the CLI, beside the server.
    let answer = setup.cli_json(&config, &["orders", "placed", &id, "777001"]);
    assert_eq!(answer["order"]["state"], "placed");
    assert_eq!(api.order(&id)["order"]["upstream_service_id"], "777001");

    let (status, body) = api.post(
        &format!("/orders/{id}/rebind"),
        json!({"licence": "184432"}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["order"]["licence_id"], "184432");
    let (status, _) = api.post(&format!("/orders/{id}/renew"), json!({"period": 12}));
    assert_eq!(status, 200);
    let (status, body) = api.post(&format!("/orders/{id}/remove"), json!({}));
    assert_eq!(
        (status, body["order"]["state"].as_str()),
        (200, Some("removed"))
    );
    assert!(
        setup.sim.sim().calls().is_empty(),
        "{:?}",
        setup.sim.sim().calls()
    );
    let history = api.order(&id)["history"].to_string();
    assert!(history.contains("manual mode"), "{history}");
}

#[test]
fn placed_modules_are_rebound_renewed_and_removed_upstream() {
    let setup = Setup::new();
    let server = setup.start(&setup.config(""));
    let api = Api::new(&server);
    let id = order_for(&server, "184431", "drweb-lite", 55361);
    api.paid(&id);
    assert_eq!(api.settled(&id)["order"]["state"], "placed");

    let (status, body) = api.post(
        &format!("/orders/{id}/rebind"),
        json!({"licence": "184432", "ip": "192.0.2.11"}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["order"]["licence_id"], "184432");
    assert_eq!(body["order"]["licence_ip"], "192.0.2.11");
    assert_eq!(setup.sim.sim().services()[0].licence, "184432");
    let edit = setup
        .sim
        .sim()
        .calls()
        .into_iter()
        .find(|c| c.func == "addition.edit" && c.params.iter().any(|(k, _)| k == "sok"))
        .expect("edit");
    let params = params_of(&edit);
    for p in [("elid", "100001"), ("item", "184432"), ("sok", "ok")] {
        assert!(params.contains(&p), "{p:?} missing from {params:?}");
    }

    // A licence upstream does not know is refused; the order keeps its licence.
    let (status, body) = api.post(&format!("/orders/{id}/rebind"), json!({"licence": "555"}));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (502, Some("upstream_refused")),
        "{body}"
    );
    assert_eq!(api.order(&id)["order"]["licence_id"], "184432");

    let (status, body) = api.post(&format!("/orders/{id}/renew"), json!({"period": 12}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(setup.sim.sim().services()[0].renewals, [12]);
    assert_eq!(setup.count("service.prolong"), 1);

    let (status, body) = api.post(&format!("/orders/{id}/remove"), json!({}));
    assert_eq!(
        (status, body["order"]["state"].as_str()),
        (200, Some("removed")),
        "{body}"
    );
    assert!(setup.sim.sim().services().is_empty());
    // Removing again changes nothing and sends nothing.
    let (status, body) = api.post(&format!("/orders/{id}/remove"), json!({}));
    assert_eq!((status, &body["replayed"]), (200, &json!(true)), "{body}");
    assert_eq!(setup.count("addition.delete"), 1);
    let (status, body) = api.post(&format!("/orders/{id}/renew"), json!({}));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("wrong_state"))
    );
}

#[test]
fn a_host_killed_while_placing_leaves_the_order_in_doubt_not_duplicated() {
    let setup = Setup::new();
    let config = setup.config("");
    let server = setup.start(&config);
    let api = Api::new(&server);
    // Upstream takes the order, then is slow to answer: the host dies while it waits.
    setup
        .sim
        .sim()
        .arm(
            FaultSpec::new(Fault::Delay { ms: 1200 })
                .on(PLACE)
                .applied(),
        )
        .expect("armed");
    let id = order_for(&server, "184431", "drweb-lite", 55361);
    api.paid(&id);
    let deadline = Instant::now() + Duration::from_secs(20);
    while setup.count(PLACE) == 0 {
        assert!(
            Instant::now() < deadline,
            "the order never reached upstream"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(api.state(&id), "placing");
    server.kill();

    let server = setup.start(&config);
    let api = Api::new(&server);
    let order = api.order(&id);
    assert_eq!(order["order"]["state"], "in_doubt", "{order}");
    assert!(
        server
            .log
            .lock()
            .map(|l| l.contains("interrupted"))
            .unwrap_or(false)
    );
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(setup.count(PLACE), 1, "an interrupted order was sent again");
    assert_eq!(api.state(&id), "in_doubt");
    // The operator finds the module upstream and records it.
    let service = setup.sim.sim().services();
    assert_eq!(service.len(), 1);
    let (status, body) = api.post(
        &format!("/orders/{id}/placed"),
        json!({"service_id": service[0].id.to_string()}),
    );
    assert_eq!(
        (status, body["order"]["state"].as_str()),
        (200, Some("placed")),
        "{body}"
    );
}

#[test]
fn paid_orders_queued_when_the_host_dies_are_placed_on_start() {
    let port = free_port();
    let setup = Setup::new();
    let url = format!("http://127.0.0.1:{port}/billmgr");
    // Upstream is down and the next retry is far away: the order waits, paid.
    let config = setup.config_for(
        &url,
        "[orders]\npoll_ms = 50\nretry_initial_ms = 600000\nretry_max_ms = 600000\n",
    );
    let server = setup.start(&config);
    let api = Api::new(&server);
    let id = order_for(&server, "184431", "drweb-lite", 55361);
    api.paid(&id);
    api.wait_for(&id, |o| {
        o["order"]["attempts"] == 1 && o["order"]["state"] == "paid"
    });
    server.kill();

    let sim = Simulator::start(("127.0.0.1", port), State::default()).expect("simulator");
    let server = setup.start(&config);
    let api = Api::new(&server);
    let settled = api.settled(&id);
    assert_eq!(settled["order"]["state"], "placed", "{settled}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sim.sim().count(PLACE), 1);
}

#[test]
fn the_api_refuses_bad_tokens_and_bad_input_clearly() {
    let setup = Setup::new();
    let server = setup.start(&setup.config(""));
    let api = Api::new(&server);
    let id = order_for(&server, "184431", "drweb-lite", 55361);

    for token in [None, Some("wrong-token-0123456789abcdef"), Some("")] {
        let (status, body) = api.call("GET", "/orders", None, token);
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (401, Some("unauthorized")),
            "{token:?}"
        );
        let (status, _) = api.call("POST", &format!("/orders/{id}/paid"), Some("{}"), token);
        assert_eq!(status, 401);
    }
    assert_eq!(api.state(&id), "new");

    let cases: &[(&str, &str, Option<&str>, u16, &str)] = &[
        (
            "POST",
            "/orders/{id}/paid",
            Some("{not json"),
            400,
            "invalid_json",
        ),
        ("POST", "/orders/{id}/paid", Some("[]"), 400, "invalid_json"),
        (
            "POST",
            "/orders/{id}/placed",
            Some("{}"),
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/orders/{id}/placed",
            Some(r#"{"service_id": 5}"#),
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/orders/{id}/renew",
            Some(r#"{"period": -1}"#),
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/orders/{id}/retry",
            Some(r#"{"absent": true}"#),
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/orders/{id}/rebind",
            Some(r#"{"licence": "1", "ip": "nope"}"#),
            400,
            "invalid_json",
        ),
        ("POST", "/orders/{id}/explode", Some("{}"), 404, "not_found"),
        ("GET", "/orders/not-an-id", None, 400, "invalid_order_id"),
        ("GET", "/orders/%FF%FE", None, 400, "invalid_request"),
        (
            "GET",
            "/orders/01JQ3V6K8Z9X4N2B7C5D0E1F2G",
            None,
            404,
            "order_not_found",
        ),
        (
            "POST",
            "/orders/01JQ3V6K8Z9X4N2B7C5D0E1F2G/paid",
            Some("{}"),
            404,
            "order_not_found",
        ),
        (
            "GET",
            "/orders?state=sleeping",
            None,
            400,
            "invalid_request",
        ),
        ("GET", "/orders?limit=0", None, 400, "invalid_request"),
        ("GET", "/orders?colour=red", None, 400, "invalid_request"),
        (
            "POST",
            "/orders/{id}",
            Some("{}"),
            405,
            "method_not_allowed",
        ),
        ("DELETE", "/orders", None, 405, "method_not_allowed"),
        (
            "POST",
            "/orders/{id}/placed",
            Some(r#"{"service_id": "1"}"#),
            409,
            "wrong_state",
        ),
        (
            "POST",
            "/orders/{id}/rebind",
            Some(r#"{"licence": "184432"}"#),
            409,
            "wrong_state",
        ),
        ("POST", "/orders/{id}/retry", Some("{}"), 409, "wrong_state"),
    ];
    for (method, path, body, status, code) in cases {
        let path = path.replace("{id}", &id);
        let (got, answer) = api.call(method, &path, *body, Some(TOKEN));
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (*status, Some(*code)),
            "{method} {path} {body:?}: {answer}"
        );
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    // None of it touched the order, or wrote anything upstream.
    assert_eq!(api.state(&id), "new");
    let writes: Vec<String> = setup
        .sim
        .sim()
        .calls()
        .into_iter()
        .map(|c| c.func)
        .filter(|f| !["addition", "dashboard.info", "pricelist.export"].contains(&f.as_str()))
        .collect();
    assert_eq!(writes, Vec::<String>::new());

    // Cancelled orders stay cancelled and cannot be paid.
    let (status, _) = api.post(&format!("/orders/{id}/cancel"), json!({}));
    assert_eq!(status, 200);
    let (status, body) = api.post(&format!("/orders/{id}/paid"), json!({}));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("wrong_state"))
    );
}

#[test]
fn without_a_token_the_api_is_off() {
    let setup = Setup::new();
    let config = setup.config("");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, text.replace(&format!("token = \"{TOKEN}\""), "")).expect("write");
    let server = setup.start(&config);
    let api = Api::new(&server);
    let (status, body) = api.call("GET", "/orders", None, Some(TOKEN));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("api_disabled"))
    );
}

#[test]
fn bad_buy_redirects_are_explained_and_record_nothing() {
    let setup = Setup::new();
    let server = setup.start(&setup.config(""));
    let api = Api::new(&server);
    let cases = [
        ("module=drweb-lite&module_id=55361", 400, "license"),
        ("module=drweb-lite&license=184431", 400, "module_id"),
        (
            "module=drweb-lite&license=18%3C4431&module_id=55361",
            400,
            "license",
        ),
        (
            "module=drweb-lite&license=184431&ip=300.1.1.1&module_id=55361",
            400,
            "ip",
        ),
        (
            "module=drweb-lite&license=184431&module_id=x",
            400,
            "module_id",
        ),
        (
            "module=drweb-lite&license=184431&module_id=99999",
            400,
            "not sold here",
        ),
        (
            "module=drweb-lite&license=184431&module_id=55361&period=7",
            400,
            "not sold for 7 month",
        ),
        (
            "module=%3Cscript%3E&license=%3Cscript%3E&module_id=55361",
            400,
            "license",
        ),
    ];
    for (query, status, needle) in cases {
        let (got, location, body) = buy(&server, query);
        assert_eq!(got, status, "{query}: {body}");
        assert!(location.is_empty());
        assert!(body.contains(needle), "{query}: {body}");
        assert!(!body.contains("<script>"), "{body}");
    }
    let (_, list) = api.get("/orders");
    assert_eq!(list["orders"], json!([]));
    // Every refusal is counted by reason, and logged with its parameters, escaped.
    let (_, counts) = api.get("/buys");
    let refused = &counts["buys"]["refused"];
    assert_eq!(refused["invalid:license"], 3, "{counts}");
    assert_eq!(refused["invalid:ip"], 1, "{counts}");
    assert_eq!(refused["invalid:module_id"], 2, "{counts}");
    assert_eq!(refused["invalid"], 2, "{counts}");
    assert_eq!(counts["buys"]["accepted"], 0);
    let log = server.log.lock().map(|l| l.clone()).unwrap_or_default();
    assert!(log.contains("Buy refused"), "{log}");
    assert!(
        log.contains("license=18<4431")
            || log.contains("license=18\\u{3c}4431")
            || log.contains("18<4431"),
        "{log}"
    );
    // An order page for nothing.
    let page = crate::common::get(&server.url("/order/01JQ3V6K8Z9X4N2B7C5D0E1F2G"));
    assert_eq!(page.status, 404);
    let page = crate::common::get(&server.url("/order/%3Cx%3E"));
    assert_eq!(page.status, 404);
}

#[test]
fn a_checkout_url_receives_the_order() {
    let setup = Setup::new();
    let config = setup.config(
        "checkout_url = \"https://billing.example/cart?order={order_id}&sum={amount}&cur={currency}\"\n",
    );
    let server = setup.start(&config);
    let (status, location, _) = buy(&server, "module=drweb-lite&license=184431&module_id=55361");
    assert_eq!(status, 303);
    let rest = location
        .strip_prefix("https://billing.example/cart?order=")
        .unwrap_or_else(|| panic!("{location}"));
    let (id, tail) = rest.split_once('&').expect("more parameters");
    assert_eq!(id.len(), 26);
    assert_eq!(tail, "sum=3.6000&cur=EUR");
}

#[test]
fn upstream_prices_become_the_catalogue_costs() {
    let setup = Setup::new();
    let config = setup.config("");
    // The CLI fetches upstream's prices into the database…
    let refresh = setup.cli_json(&config, &["prices", "refresh"]);
    assert_eq!(refresh["modules_updated"], 3, "{refresh}");
    assert_eq!(setup.count("pricelist.export"), 1);

    // …and a server started on it prices from them: upstream's 3.50 + 20 % = 4.20.
    let server = setup.start(&config);
    let prices = crate::common::get(
        &server.url("/billmgr?func=pricelist.export&itemtype=addition&pricelist=55361"),
    );
    assert!(
        prices
            .body
            .contains(r#"cost="4.2000" type="month" length="1""#),
        "{}",
        prices.body
    );

    // Upstream changes its price; the API refreshes and the panel sees it at once.
    let mut state = setup.sim.sim().state();
    let tariff = state
        .tariffs
        .iter_mut()
        .find(|t| t.id == 55361)
        .expect("tariff");
    tariff.prices[0].cost = "5.0000".parse().expect("amount");
    setup.sim.sim().set_state(state).expect("state");
    let api = Api::new(&server);
    let (status, body) = api.post("/prices/refresh", json!({}));
    assert_eq!(status, 200, "{body}");
    let prices = crate::common::get(
        &server.url("/billmgr?func=pricelist.export&itemtype=addition&pricelist=55361"),
    );
    assert!(
        prices
            .body
            .contains(r#"cost="6.0000" type="month" length="1""#),
        "{}",
        prices.body
    );
    // A Buy now records the new price.
    let id = order_for(&server, "184431", "drweb-lite", 55361);
    assert_eq!(api.order(&id)["order"]["price"]["amount"], "6.0000");
}

#[test]
fn the_example_configuration_runs_the_whole_flow() {
    let setup = Setup::new();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/simulator.toml");
    let text = std::fs::read_to_string(example).expect("the example");
    let addr = setup.sim.addr().to_string();
    assert!(text.contains("127.0.0.1:8090"));
    let config = setup.dir.path().join("simulator.toml");
    std::fs::write(&config, text.replace("127.0.0.1:8090", &addr)).expect("write");
    let server = setup.start(&config);
    let id = order_for(&server, "184431", "drweb-lite", 55361);
    let api = Api {
        server: &server,
        token: "walkthrough-token-0123456789",
    };
    api.paid(&id);
    let placed = api.wait_for(&id, |o| o["order"]["state"] == "placed");
    assert_eq!(placed["order"]["price"]["amount"], "3.6000");
    assert_eq!(setup.count(PLACE), 1);
    assert!(setup.dir.path().join("orders.sqlite3").exists());
}

/// A plugin may get the upstream call wrong, or lie about its outcome: the host's own reading
/// decides. Through the library, as a billing system embedding the host would run it.
#[test]
fn a_plugin_cannot_order_twice_or_talk_an_order_out_of_doubt() {
    use reseller_host::Reseller;
    use reseller_host::config::Config;
    use reseller_host::money::{Money, Months};
    use reseller_host::orders::placement::Attempt;
    use reseller_host::orders::{NewOrder, OrderDesk, OrderStore, SqliteStore};
    use reseller_host::runtime::Runtime;

    let hostile = reseller_test_artifacts::HOSTILE_PATH;
    for mode in ["double-order", "liar", "claims-not-sent"] {
        let setup = Setup::new();
        let path = setup.config_for(
            &setup.sim.billmgr_url(),
            &format!("mode = \"{mode}\"\n[plugin]\npath = \"{hostile}\"\ncache = false\n"),
        );
        let config = Config::from_file(&path).expect("config");
        let reseller = Arc::new(Reseller::new(Runtime::new(), config).expect("host"));
        let store = Arc::new(SqliteStore::open_in_memory().expect("store"));
        let desk = OrderDesk::new(reseller, store.clone()).expect("desk");
        assert_eq!(
            desk.become_placer().expect("the placer"),
            Default::default()
        );
        let created = store
            .create_or_reuse_new(&NewOrder {
                licence_id: "184431".to_owned(),
                licence_ip: None,
                tariff_id: 55361,
                service_name: "drweb-lite".to_owned(),
                price: Money::from_units(36_000, "EUR").expect("money"),
                period: Months::MONTH,
                autoprolong: false,
                module: None,
                fields: Default::default(),
            })
            .expect("order");
        let id = created.order.id;
        assert!(desk.mark_paid(&id, "billing").expect("paid").changed);
        let Attempt::Settled { order, retry } = desk.place(&id, "billing").expect("attempt") else {
            panic!("{mode}: not claimed");
        };
        assert_eq!(order.state.as_str(), "in_doubt", "{mode}: {order:?}");
        assert!(!retry, "{mode}");
        assert_eq!(setup.count(PLACE), 1, "{mode}");
        assert_eq!(setup.sim.sim().services().len(), 1, "{mode}");
        // Nothing will send it again.
        assert!(matches!(
            desk.place(&id, "billing"),
            Ok(Attempt::NotClaimed(_))
        ));
        assert_eq!(setup.count(PLACE), 1, "{mode}");
    }
}

#[test]
fn one_process_places_the_orders_of_a_database() {
    let setup = Setup::new();
    let config = setup.config("");
    let server = setup.start(&config);
    let api = Api::new(&server);

    // A second server on the same database refuses to start, and changes nothing.
    let second = setup.reseller(&config, &["serve", "--listen", "127.0.0.1:0"]);
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("another process places the orders"),
        "{stderr}"
    );

    // The CLI marks an order paid beside the server, which places it; placing from the CLI is
    // refused while the server does it.
    let id = order_for(&server, "184431", "drweb-lite", 55361);
    setup.cli_json(&config, &["orders", "paid", &id]);
    assert_eq!(api.settled(&id)["order"]["state"], "placed");
    let out = setup.reseller(&config, &["orders", "place", &id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("another process places"));
    let shown = setup.cli_json(&config, &["orders", "show", &id]);
    assert_eq!(shown["order"]["state"], "placed");
    assert_eq!(setup.count(PLACE), 1);
}

#[test]
fn without_a_server_the_cli_places_the_order_itself() {
    let setup = Setup::new();
    let config = setup.config("");
    let server = setup.start(&config);
    let id = order_for(&server, "184432", "drweb-pro", 55362);
    server.kill();
    let answer = setup.cli_json(&config, &["orders", "paid", &id]);
    assert_eq!(answer["order"]["state"], "placed", "{answer}");
    assert_eq!(setup.count(PLACE), 1);
}
