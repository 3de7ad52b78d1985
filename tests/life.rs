//! A module's life after the sale, end to end against the upstream simulator: the expiry,
//! renewals the customer paid for (quoted first, idempotent under one key, never re-sent in
//! doubt), suspend and resume, removal, reconciliation after a crash, imports, order fields,
//! the balance, and events to a webhook that checks their signature, across a restart.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use upstream_sim::{Fault, FaultSpec, Service, ServiceStatus, State};

use crate::orders::{Api, PLACE, Setup, TOKEN, order_for, params_of};

const PROLONG: &str = "service.prolong";
const SECRET: &str = "webhook-secret-0123456789";

/// A POST with an `Idempotency-Key`: status, body, and whether it says it is a replay.
fn post_keyed(
    server: &crate::common::Server,
    path: &str,
    body: Value,
    key: &str,
) -> (u16, Value, bool) {
    let response = reqwest::blocking::Client::new()
        .post(server.url(&format!("/api/v1{path}")))
        .bearer_auth(TOKEN)
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .expect("API call");
    let status = response.status().as_u16();
    let replayed = response.headers().get("idempotent-replayed").is_some();
    let value: Value = response.json().expect("JSON");
    (status, value, replayed)
}

/// A placed order for licence 184431 (Dr.Web lite), through Buy and payment.
fn placed(setup: &Setup, server: &crate::common::Server) -> String {
    let api = Api::new(server);
    let id = order_for(server, "184431", "drweb-lite", 55361);
    api.paid(&id);
    api.settled(&id);
    let placed = api.placed_with_expiry(&id);
    assert_eq!(placed["order"]["state"], "placed", "{placed}");
    assert_eq!(setup.count(PLACE), 1);
    id
}

/// A webhook receiver: every delivery, with whether its signature was right.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<(Value, bool)>>>,
}

impl Receiver {
    /// Answers `fail_first` deliveries with HTTP 500, then 204.
    fn start(fail_first: usize) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let got = Arc::new(Mutex::new(Vec::new()));
        let seen = got.clone();
        std::thread::spawn(move || {
            let mut refused = 0;
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut headers = BTreeMap::new();
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = line.trim_end().split_once(':') {
                        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                    }
                }
                let length: usize = headers
                    .get("content-length")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let status = if refused < fail_first {
                    refused += 1;
                    "500 Internal Server Error"
                } else {
                    let signed = headers.get("x-reseller-signature").is_some_and(|sig| {
                        reseller_host::orders::events::verify(SECRET.as_bytes(), &body, sig)
                    });
                    let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    seen.lock().expect("lock").push((event, signed));
                    "204 No Content"
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        Receiver { url, got }
    }

    fn types(&self) -> Vec<String> {
        self.got
            .lock()
            .expect("lock")
            .iter()
            .map(|(e, _)| e["type"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    fn wait_for(&self, kind: &str) {
        let deadline = Instant::now() + Duration::from_secs(40);
        while !self.types().iter().any(|t| t == kind) {
            assert!(
                Instant::now() < deadline,
                "no {kind} delivered: {:?}",
                self.types()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn events_config(hook: &str) -> String {
    format!(
        "[events]\nwebhook_url = \"{hook}\"\nsecret = \"{SECRET}\"\npoll_ms = 50\ntimeout_ms = 2000\n"
    )
}

#[test]
fn a_module_lives_its_whole_life_and_the_billing_system_hears_of_each_step() {
    let setup = Setup::new();
    let hook = Receiver::start(1);
    let config = setup.config(&events_config(&hook.url));
    let server = setup.start(&config);
    let api = Api::new(&server);
    let id = placed(&setup, &server);
    // The expiry is upstream's, read after the order.
    let service = setup.sim.sim().services()[0].clone();
    let order = api.order(&id);
    assert_eq!(
        order["order"]["expires_at"],
        service.expires.to_string(),
        "{order}"
    );
    assert_eq!(service.remoteid.as_deref(), Some(id.as_str()));

    // A quote first: nothing renewed.
    let (status, quote) = api.get(&format!("/orders/{id}/renewal-quote?period=12"));
    assert_eq!(status, 200, "{quote}");
    assert_eq!(quote["quote"]["expires_at"], service.expires.to_string());
    assert_eq!(quote["quote"]["period_months"], 12);
    assert!(quote["quote"]["new_expires_at"].is_string(), "{quote}");
    assert!(quote["quote"]["cost"]["amount"].is_string(), "{quote}");
    assert!(setup.sim.sim().services()[0].renewals.is_empty());

    // The customer paid invoice 42 for a year: renewed once, however often it is said.
    let renew = |key: &str| {
        post_keyed(
            &server,
            &format!("/orders/{id}/renew"),
            json!({"period": 12}),
            key,
        )
    };
    let (status, first, replayed) = renew("invoice-42");
    assert_eq!((status, replayed), (200, false), "{first}");
    assert_eq!(first["operation"]["state"], "done");
    let new_expiry = setup.sim.sim().services()[0].expires.to_string();
    assert_eq!(first["order"]["expires_at"], new_expiry);
    assert_eq!(
        quote["quote"]["new_expires_at"], new_expiry,
        "the quote was right"
    );
    let (status, again, replayed) = renew("invoice-42");
    assert_eq!((status, replayed), (200, true), "{again}");
    assert_eq!(again["operation"], first["operation"]);
    assert_eq!(setup.count(PROLONG) - 1, 1, "one quote, one renewal");

    // Twenty at once with one new key: one renewal upstream, twenty equal answers.
    let answers: Vec<(u16, Value, bool)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20)
            .map(|_| scope.spawn(|| renew("invoice-43")))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    assert_eq!(setup.count(PROLONG) - 1, 2, "twenty calls, one renewal");
    assert_eq!(setup.sim.sim().services()[0].renewals, [12, 12]);
    let operation = &answers[0].1["operation"]["id"];
    for (status, body, _) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(&body["operation"]["id"], operation);
    }
    assert_eq!(
        answers.iter().filter(|(_, _, replayed)| !replayed).count(),
        1
    );

    // The customer stops paying, then pays again.
    let (status, body) = api.post(&format!("/orders/{id}/suspend"), json!({}));
    assert_eq!(
        (status, body["order"]["state"].as_str()),
        (200, Some("suspended")),
        "{body}"
    );
    assert_eq!(
        setup.sim.sim().services()[0].status,
        ServiceStatus::Suspended
    );
    let (status, body) = api.post(&format!("/orders/{id}/suspend"), json!({}));
    assert_eq!(
        (status, &body["replayed"]),
        (200, &json!(true)),
        "suspended already: {body}"
    );
    assert_eq!(setup.count("addition.suspend"), 1);
    let (status, body) = api.post(&format!("/orders/{id}/resume"), json!({}));
    assert_eq!(
        (status, body["order"]["state"].as_str()),
        (200, Some("placed")),
        "{body}"
    );
    assert_eq!(setup.sim.sim().services()[0].status, ServiceStatus::Active);

    // Renewals due: within a year and a half, it is listed.
    let (_, due) = api.get("/renewals?within_days=800");
    assert_eq!(due["orders"][0]["id"], id.as_str(), "{due}");
    let (_, due) = api.get("/renewals?within_days=1");
    assert_eq!(due["orders"], json!([]));

    // The feed and the webhook say the same, each event signed, the failed delivery retried.
    hook.wait_for("order.resumed");
    let (_, feed) = api.get("/events");
    let feed_types: Vec<&str> = feed["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    for kind in [
        "order.paid",
        "order.placed",
        "order.renewed",
        "order.suspended",
        "order.resumed",
    ] {
        assert!(
            feed_types.contains(&kind),
            "{kind} missing from {feed_types:?}"
        );
    }
    assert_eq!(
        feed_types.iter().filter(|t| **t == "order.renewed").count(),
        2
    );
    // The delivery refused first comes again after its backoff.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let delivered = hook.got.lock().expect("lock").clone();
        assert!(
            delivered.iter().all(|(_, signed)| *signed),
            "unsigned: {delivered:?}"
        );
        let mut ids: Vec<i64> = delivered
            .iter()
            .filter_map(|(e, _)| e["id"].as_i64())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() == feed_types.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every event delivered: {:?}",
            hook.types()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Removed at last; the CLI shows it.
    let (status, body) = api.post(&format!("/orders/{id}/remove"), json!({}));
    assert_eq!(
        (status, body["order"]["state"].as_str()),
        (200, Some("removed")),
        "{body}"
    );
    let shown = setup.cli_json(&config, &["orders", "show", &id]);
    assert_eq!(
        shown["operations"].as_array().map(Vec::len),
        Some(5),
        "{shown}"
    );
}

#[test]
fn events_survive_a_restart_and_arrive_at_least_once() {
    let setup = Setup::new();
    // Nobody listens yet: the events wait in the outbox.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = format!("http://{}/hook", silent.local_addr().expect("addr"));
    drop(silent);
    let config = setup.config(&events_config(&dead));
    let server = setup.start(&config);
    let id = placed(&setup, &server);
    server.kill();
    let hook = Receiver::start(0);
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, text.replace(&dead, &hook.url)).expect("config");
    let server = setup.start(&config);
    hook.wait_for("order.placed");
    let delivered = hook.got.lock().expect("lock").clone();
    let placed: Vec<&Value> = delivered
        .iter()
        .map(|(e, _)| e)
        .filter(|e| e["type"] == "order.placed")
        .collect();
    assert_eq!(placed[0]["order_id"], id.as_str());
    assert_eq!(placed[0]["data"]["order"]["state"], "placed");
    drop(server);
}

#[test]
fn a_renewal_in_doubt_is_never_sent_again_and_is_settled_by_the_evidence() {
    let setup = Setup::new();
    let config = setup.config("");
    let server = setup.start(&config);
    let api = Api::new(&server);
    let id = placed(&setup, &server);
    let before = setup.sim.sim().services()[0].expires;
    // Upstream renews, then the connection drops: nobody knows.
    setup
        .sim
        .sim()
        .arm(FaultSpec::new(Fault::Cut).on(PROLONG).applied())
        .expect("armed");
    let renew = |key: &str| post_keyed(&server, &format!("/orders/{id}/renew"), json!({}), key);
    let (status, body, _) = renew("inv-7");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (502, Some("upstream_in_doubt")),
        "{body}"
    );
    // The same key answers the same, and sends nothing.
    let (status, again, _) = renew("inv-7");
    assert_eq!(
        (status, &again["error"]["code"]),
        (502, &body["error"]["code"])
    );
    // Nothing else happens to the module until the doubt is settled.
    let (status, other, _) = renew("inv-8");
    assert_eq!(
        (status, other["error"]["code"].as_str()),
        (409, Some("operation_open")),
        "{other}"
    );
    let (status, other) = api.post(&format!("/orders/{id}/suspend"), json!({}));
    assert_eq!(
        (status, other["error"]["code"].as_str()),
        (409, Some("operation_open")),
        "{other}"
    );
    assert_eq!(
        setup.count(PROLONG),
        1,
        "a renewal in doubt is never sent again"
    );

    // The reconciliation sees the expiry moved; applied, the renewal is done.
    let (status, report) = api.post("/reconcile", json!({}));
    assert_eq!(status, 200, "{report}");
    let doubt = &report["report"]["operations_in_doubt"][0];
    assert_eq!(doubt["kind"], "renew", "{report}");
    assert!(
        doubt["evidence"]
            .as_str()
            .is_some_and(|e| e.contains("moved")),
        "{report}"
    );
    assert!(doubt["resolved"].is_null());
    let (status, report) = api.post("/reconcile", json!({"apply": true}));
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["report"]["operations_in_doubt"][0]["resolved"],
        "settled as done"
    );
    let order = api.order(&id);
    let after = setup.sim.sim().services()[0].expires;
    assert!(after > before);
    assert_eq!(order["order"]["expires_at"], after.to_string(), "{order}");
    assert_eq!(order["operations"][0]["settled_by"], "api");
    // The key keeps its answer: done now.
    let (status, done, replayed) = renew("inv-7");
    assert_eq!((status, replayed), (200, true), "{done}");
    assert_eq!(setup.count(PROLONG), 1);
}

#[test]
fn a_crash_mid_placement_is_settled_by_remoteid_automatically() {
    let setup = Setup::new();
    let config = setup.config("reconcile_after_s = 1\n");
    let server = setup.start(&config);
    let api = Api::new(&server);
    setup
        .sim
        .sim()
        .arm(
            FaultSpec::new(Fault::Delay { ms: 1500 })
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
    server.kill();
    let server = setup.start(&config);
    let api = Api::new(&server);
    assert_eq!(api.state(&id), "in_doubt");
    // A second later the reconciliation finds it under its remoteid and places it.
    let placed = api.wait_for(&id, |o| o["order"]["state"] == "placed");
    let service = setup.sim.sim().services()[0].clone();
    assert_eq!(
        placed["order"]["upstream_service_id"],
        service.id.to_string()
    );
    assert!(
        placed["history"]
            .to_string()
            .contains("reconciliation: found upstream")
    );
    assert_eq!(setup.count(PLACE), 1, "never sent again");
}

#[test]
fn modules_sold_before_are_imported_and_differences_reported() {
    let mut state = State::default();
    let today = state.today;
    state.services.push(Service {
        id: 500001,
        licence: "184431".to_owned(),
        tariff: 55362,
        period: 1,
        autoprolong: None,
        renewals: Vec::new(),
        status: ServiceStatus::Active,
        expires: today.add_months(1).expect("date"),
        remoteid: None,
        fields: BTreeMap::new(),
    });
    state.next_service_id = 500002;
    let setup = Setup::with_state(state);
    let config = setup.config("");
    let server = setup.start(&config);
    let api = Api::new(&server);
    let (status, report) = api.post("/reconcile", json!({}));
    assert_eq!(status, 200, "{report}");
    let unknown = &report["report"]["unknown_upstream"];
    assert_eq!(unknown[0]["service"]["service_id"], "500001", "{report}");
    assert!(unknown[0]["imported"].is_null());
    let report = setup.cli_json(&config, &["orders", "reconcile", "--import"]);
    let imported = report["report"]["unknown_upstream"][0]["imported"]
        .as_str()
        .expect("imported")
        .to_owned();
    let order = api.order(&imported);
    assert_eq!(order["order"]["state"], "placed");
    assert_eq!(order["order"]["tariff_id"], 55362);
    assert_eq!(order["order"]["upstream_service_id"], "500001");
    assert_eq!(
        order["order"]["expires_at"],
        today.add_months(1).expect("date").to_string()
    );
    // Known now: not reported again. Suspended upstream by hand: a difference.
    let (_, report) = api.post("/reconcile", json!({}));
    assert_eq!(report["report"]["unknown_upstream"], json!([]), "{report}");
    let mut state = setup.sim.sim().state();
    state.services[0].status = ServiceStatus::Suspended;
    setup.sim.sim().set_state(state).expect("state");
    let (_, report) = api.post("/reconcile", json!({}));
    let difference = &report["report"]["differences"][0];
    assert_eq!(
        (
            difference["field"].as_str(),
            difference["upstream"].as_str()
        ),
        (Some("status"), Some("suspended")),
        "{report}"
    );
}

#[test]
fn bitninja_waits_for_its_email_which_reaches_upstream() {
    let setup = Setup::new();
    let config = setup.config("");
    let text = std::fs::read_to_string(&config).expect("config");
    let bitninja = r#"
[[catalogue.modules]]
intname = "bitninja"
additionintname = "BitNinja"
name = "BitNinja"
tariff = { ru = 55390, eu = 55371 }
cost = { month = "9.90", 6 = "54.00", year = "99.00" }
fields = [{ name = "bitninja_email", label = "Email for BitNinja", pattern = "[^@\\s]+@[^@\\s]+" }]
"#;
    let text = text
        .replacen("[pricing]", &format!("{bitninja}\n[pricing]"), 1)
        .replace("periods = [1, 12]", "periods = [1, 6, 12]");
    assert!(
        text.contains("bitninja_email"),
        "the catalogue takes the module"
    );
    std::fs::write(&config, text).expect("config");
    let server = setup.start(&config);
    let api = Api::new(&server);
    // The panel sends the RU tariff and its own name for the module: the EU module is ordered.
    let (status, location, body) = crate::orders::buy(
        &server,
        "module=bitninja-pro&license=184431&ip=192.0.2.10&module_id=55390",
    );
    assert_eq!(status, 303, "{body}");
    let id = location.trim_start_matches("order/").to_owned();
    let order = api.order(&id);
    assert_eq!(
        (
            order["order"]["tariff_id"].as_u64(),
            order["order"]["module"].as_str()
        ),
        (Some(55371), Some("bitninja-pro"))
    );
    let (_, counts) = api.get("/buys");
    assert_eq!(
        (
            counts["buys"]["module_mismatch"].as_u64(),
            counts["buys"]["other_region"].as_u64()
        ),
        (Some(1), Some(1)),
        "{counts}"
    );
    // The order page asks for the email and the period.
    let page = crate::common::get(&server.url(&format!("/order/{id}")));
    assert!(
        page.body.contains("name=\"bitninja_email\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("<option value=\"6\">"), "{}", page.body);
    api.paid(&id);
    let waiting = api.wait_for(&id, |o| !o["order"]["waiting"].is_null());
    assert!(
        waiting["order"]["waiting"]
            .as_str()
            .is_some_and(|w| w.contains("bitninja_email"))
    );
    assert_eq!(setup.count(PLACE), 0);
    let (status, body) = api.call(
        "PATCH",
        &format!("/orders/{id}"),
        Some(&json!({"fields": {"bitninja_email": "not an email"}}).to_string()),
        Some(TOKEN),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    let (status, body) = api.call(
        "PATCH",
        &format!("/orders/{id}"),
        Some(&json!({"fields": {"bitninja_email": "admin@example.org"}}).to_string()),
        Some(TOKEN),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(api.settled(&id)["order"]["state"], "placed");
    let call = setup
        .sim
        .sim()
        .calls()
        .into_iter()
        .find(|c| c.func == PLACE)
        .expect("ordered");
    assert!(params_of(&call).contains(&("bitninja_email", "admin@example.org")));
    assert_eq!(
        setup.sim.sim().services()[0]
            .fields
            .get("bitninja_email")
            .map(String::as_str),
        Some("admin@example.org")
    );
}

#[test]
fn a_buyer_chooses_the_period_on_the_order_page() {
    let setup = Setup::new();
    let server = setup.start(&setup.config(""));
    let api = Api::new(&server);
    let id = order_for(&server, "184431", "drweb-lite", 55361);
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let response = client
        .post(server.url(&format!("/order/{id}")))
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body("period=12")
        .send()
        .expect("post");
    assert_eq!(response.status().as_u16(), 303);
    let order = api.order(&id);
    assert_eq!(order["order"]["period_months"], 12);
    assert_eq!(order["order"]["price"]["amount"], "36.0000", "{order}");
    let response = client
        .post(server.url(&format!("/order/{id}")))
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body("period=5")
        .send()
        .expect("post");
    assert_eq!(response.status().as_u16(), 400);
    assert!(
        response
            .text()
            .unwrap_or_default()
            .contains("not sold for 5")
    );
    api.paid(&id);
    api.settled(&id);
    let call = setup
        .sim
        .sim()
        .calls()
        .into_iter()
        .find(|c| c.func == PLACE)
        .expect("ordered");
    assert!(params_of(&call).contains(&("period", "12")));
}

/// Kills the host while `func` hangs upstream (the write applied), restarts it, and checks that
/// the operation is in doubt, never re-sent.
fn killed_during(func: &str, path: &str, setup_state: impl Fn(&Api<'_>, &str)) {
    let setup = Setup::new();
    let config = setup.config("");
    let server = setup.start(&config);
    let api = Api::new(&server);
    let id = placed(&setup, &server);
    setup_state(&api, &id);
    setup
        .sim
        .sim()
        .arm(FaultSpec::new(Fault::Delay { ms: 3000 }).on(func).applied())
        .expect("armed");
    let url = server.url(&format!("/api/v1/orders/{id}/{path}"));
    std::thread::spawn(move || {
        let _ = reqwest::blocking::Client::new()
            .post(url)
            .bearer_auth(TOKEN)
            .json(&json!({}))
            .send();
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while setup.count(func) == 0 {
        assert!(Instant::now() < deadline, "{func} never reached upstream");
        std::thread::sleep(Duration::from_millis(10));
    }
    server.kill();
    let server = setup.start(&config);
    let api = Api::new(&server);
    let order = api.order(&id);
    let last = order["operations"]
        .as_array()
        .and_then(|ops| ops.last())
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(last["state"], "in_doubt", "{func}: {order}");
    let (status, body) = api.post(&format!("/orders/{id}/{path}"), json!({}));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("operation_open")),
        "{body}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(setup.count(func), 1, "{func} was sent again");
}

#[test]
fn a_host_killed_during_each_new_write_leaves_it_in_doubt_never_resent() {
    killed_during(PROLONG, "renew", |_, _| {});
    killed_during("addition.suspend", "suspend", |_, _| {});
    killed_during("addition.resume", "resume", |api, id| {
        let (status, body) = api.post(&format!("/orders/{id}/suspend"), json!({}));
        assert_eq!(status, 200, "{body}");
    });
    killed_during("addition.delete", "remove", |_, _| {});
}

#[test]
fn the_clock_expires_modules_and_the_sync_follows_upstream() {
    let setup = Setup::new();
    let config = setup.config("sync_minutes = 0\n");
    let server = setup.start(&config);
    let api = Api::new(&server);
    let id = placed(&setup, &server);
    let expires = setup.sim.sim().services()[0].expires;
    // Not renewed: a month and a day later upstream has suspended it.
    setup.sim.sim().advance_days(32).expect("clock");
    assert_eq!(setup.sim.sim().services()[0].status, ServiceStatus::Expired);
    let (_, report) = api.post("/reconcile", json!({"apply": true}));
    let difference = &report["report"]["differences"][0];
    assert_eq!(difference["upstream"], "suspended", "{report}");
    let order = api.order(&id);
    assert_eq!(order["order"]["upstream_status"], "suspended");
    assert_eq!(order["order"]["expires_at"], expires.to_string());
    let due = setup.cli_json(&config, &["orders", "due", "--within-days", "40"]);
    assert_eq!(due["orders"][0]["id"], id.as_str(), "{due}");
}

#[test]
fn a_real_price_export_refreshes_with_trials_periods_and_currencies() {
    let setup = Setup::new();
    let config = setup.config("");
    // Upstream exports a trial and a 6-month period (BitNinja) and a second currency (Dr.Web
    // pro in RUB): the refresh succeeds and says what it did with each tariff.
    let output = setup.reseller(&config, &["prices", "refresh"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let refresh: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let tariff = |id: u64| {
        refresh["tariffs"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["tariff_id"] == id))
            .cloned()
            .unwrap_or_else(|| panic!("tariff {id} missing from {refresh}"))
    };
    let pro = tariff(55362);
    assert_eq!(pro["outcome"], "priced", "{pro}");
    assert_eq!(pro["currency"], "EUR");
    assert_eq!(pro["periods"], json!([1, 3, 12]));
    let bitninja = tariff(55371);
    assert_eq!(
        (bitninja["outcome"].as_str(), &bitninja["trial"]),
        (Some("not_in_catalogue"), &json!(true)),
        "{bitninja}"
    );
    // Upstream's names differ from the placeholders: said, not applied.
    assert!(tariff(55361)["upstream_names"].is_array(), "{refresh}");

    // The tariffs the catalogue lacks, as catalogue entries with upstream's names and costs.
    let output = setup.reseller(&config, &["prices", "import"]);
    let toml = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{toml}");
    let entries: toml::Table = toml.parse().expect("TOML");
    let modules = entries["catalogue"]["modules"].as_array().expect("modules");
    let names: Vec<&str> = modules
        .iter()
        .filter_map(|m| m["intname"].as_str())
        .collect();
    assert!(names.contains(&"bitninja"), "{toml}");
    let bitninja = modules
        .iter()
        .find(|m| m["intname"].as_str() == Some("bitninja"))
        .expect("bitninja");
    assert_eq!(bitninja["tariff"]["eu"].as_integer(), Some(55371));
    assert!(bitninja["cost"].get("6").is_some(), "{toml}");
    assert!(
        bitninja["cost"].get("-100").is_none(),
        "a trial is never a cost: {toml}"
    );
}

#[test]
fn another_currency_is_converted_with_a_rate_or_refused() {
    let mut state = State::default();
    // Upstream prices Dr.Web lite in roubles only.
    for tariff in &mut state.tariffs {
        tariff.other_prices.clear();
    }
    state.account.currency = "RUB".to_owned();
    let setup = Setup::with_state(state);
    let config = setup.config("");
    let output = setup.reseller(&config, &["prices", "refresh"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "refused without a rate");
    assert!(stderr.contains("RUB") && stderr.contains("EUR"), "{stderr}");
    // With a rate the costs are converted: 3.50 RUB × 0.0105 = 0.0368 EUR (half away from zero).
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        text.replace(
            "currency = \"EUR\"\n",
            "currency = \"EUR\"\nrates = { RUB = \"0.0105\" }\n",
        ),
    )
    .expect("config");
    let output = setup.reseller(&config, &["prices", "refresh"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let refresh: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let lite = refresh["tariffs"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["tariff_id"] == 55361))
        .cloned()
        .expect("lite");
    assert_eq!(lite["converted_from"][0], "RUB", "{lite}");
}

#[test]
fn a_redirect_sends_nothing_and_a_login_page_is_a_doubt() {
    let setup = Setup::new();
    let server = setup.start(&setup.config(""));
    let api = Api::new(&server);
    // A front proxy redirects (http → https, another path): nothing ran, so it is tried again.
    setup
        .sim
        .sim()
        .arm(FaultSpec::new(Fault::Redirect).on(PLACE))
        .expect("armed");
    let id = order_for(&server, "184431", "drweb-lite", 55361);
    api.paid(&id);
    let placed = api.settled(&id);
    assert_eq!(placed["order"]["state"], "placed", "{placed}");
    assert_eq!(setup.count(PLACE), 2, "redirected once, then placed");
    assert!(
        placed["history"].to_string().contains("check upstream.url"),
        "{placed}"
    );
    // A login page instead of a document may come after the order ran: in doubt.
    setup
        .sim
        .sim()
        .arm(FaultSpec::new(Fault::Login).on(PLACE).applied())
        .expect("armed");
    let id = order_for(&server, "184432", "drweb-lite", 55361);
    api.paid(&id);
    assert_eq!(api.settled(&id)["order"]["state"], "in_doubt");
}

#[test]
fn one_client_cannot_fill_the_order_database() {
    let setup = Setup::new();
    let server = setup.start(&setup.config("buys_per_address_per_minute = 5\n"));
    let api = Api::new(&server);
    let mut statuses = Vec::new();
    for licence in 0..12 {
        let (status, _, _) = crate::orders::buy(
            &server,
            &format!("module=drweb-lite&license=L{licence}&module_id=55361"),
        );
        statuses.push(status);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 303).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        7,
        "{statuses:?}"
    );
    let (_, list) = api.get("/orders");
    assert_eq!(list["orders"].as_array().map(Vec::len), Some(5));
    let (_, counts) = api.get("/buys");
    assert_eq!(counts["buys"]["refused"]["rate_limited"], 7, "{counts}");
}

#[test]
fn buys_that_reveal_different_things_are_different_orders() {
    let setup = Setup::new();
    let server = setup.start(&setup.config(""));
    let with_ip = order_for(&server, "184431", "drweb-lite", 55361);
    let (status, location, _) =
        crate::orders::buy(&server, "module=drweb-lite&license=184431&module_id=55361");
    assert_eq!(status, 303);
    let without_ip = location.trim_start_matches("order/").to_owned();
    assert_ne!(
        with_ip, without_ip,
        "a Buy without the IP never gets the order that shows it"
    );
    let page = crate::common::get(&server.url(&format!("/order/{without_ip}")));
    assert!(!page.body.contains("192.0.2.10"), "{}", page.body);
    let page = crate::common::get(&server.url(&format!("/order/{with_ip}")));
    assert!(page.body.contains("192.0.2.10"));
}

#[test]
fn a_removal_whose_answer_was_lost_is_settled_by_the_operator() {
    let setup = Setup::new();
    let server = setup.start(&setup.config(""));
    let api = Api::new(&server);
    let id = placed(&setup, &server);
    setup
        .sim
        .sim()
        .arm(FaultSpec::new(Fault::Cut).on("addition.delete").applied())
        .expect("armed");
    let (status, body) = api.post(&format!("/orders/{id}/remove"), json!({}));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (502, Some("upstream_in_doubt")),
        "{body}"
    );
    let order = api.order(&id);
    assert_eq!(order["order"]["state"], "placed");
    let operation = order["operations"][0]["id"].as_i64().expect("operation");
    assert_eq!(order["operations"][0]["state"], "in_doubt");
    // The operator looked: upstream removed it.
    let (status, body) = api.post(
        &format!("/orders/{id}/operations/{operation}/resolve"),
        json!({"done": true}),
    );
    assert_eq!(
        (status, body["order"]["state"].as_str()),
        (200, Some("removed")),
        "{body}"
    );
    assert_eq!(body["operation"]["settled_by"], "api");
    assert_eq!(setup.count("addition.delete"), 1);
    // Settled: not again.
    let (status, _) = api.post(
        &format!("/orders/{id}/operations/{operation}/resolve"),
        json!({"done": false}),
    );
    assert_eq!(status, 400);
}
