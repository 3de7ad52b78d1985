//! Several hosts on one PostgreSQL database, end to end: three real `reseller` processes and
//! the upstream simulator on loopback; 200 orders paid through all three at once while one
//! host is killed (SIGKILL) and started again. Placement stays exactly once across hosts.
//!
//! The database is the URL in `RESELLER_TEST_POSTGRES` (a role that may create schemas in
//! it); each run works in a schema of its own. Without the variable the test says it is
//! skipped; under `CI=true` a missing database is a failure.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use upstream_sim::{Fault, FaultSpec, State};

use crate::common::Server;
use crate::orders::{Api, PLACE, Setup, order_for};

const ORDERS: usize = 200;
const HOSTS: usize = 3;

/// The test database's URL, or `None` (with the reason printed) when the test is skipped.
pub(crate) fn postgres_url(test: &str) -> Option<String> {
    match std::env::var("RESELLER_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true but RESELLER_TEST_POSTGRES is not set: the PostgreSQL tests must run")
        }
        _ => {
            // Straight to stderr, past the test harness's capture: a skip must be seen.
            let _ = writeln!(
                std::io::stderr(),
                "{test}: skipped: RESELLER_TEST_POSTGRES is not set (a postgres:// URL of a \
                 database whose role may create schemas; .ci/run sets one up)"
            );
            None
        }
    }
}

/// A fresh, empty schema in the test database: the URL that uses it.
pub(crate) fn fresh_schema(url: &str, name: &str) -> String {
    let schema = format!("{name}_{}", std::process::id());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connect to RESELLER_TEST_POSTGRES");
        tokio::spawn(connection);
        client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};"
            ))
            .await
            .expect("create a schema");
    });
    let mut with = url::Url::parse(url).expect("a URL");
    with.query_pairs_mut()
        .append_pair("options", &format!("-csearch_path={schema}"));
    with.to_string()
}

/// Upstream with a licence per order and money for all of them.
fn roomy_upstream() -> State {
    let mut state = State::default();
    state.account.balance = "100000.0000".parse().expect("amount");
    for i in 0..ORDERS {
        state
            .licences
            .insert(licence(i), "192.0.2.10".parse().expect("an IP address"));
    }
    state
}

fn licence(i: usize) -> String {
    format!("7{i:05}")
}

/// The hosts behind the load balancer: their base URLs, one of them possibly down.
#[derive(Clone)]
struct Balancer {
    bases: Arc<Mutex<Vec<String>>>,
}

impl Balancer {
    fn base(&self, i: usize) -> String {
        let bases = self.bases.lock().expect("bases");
        bases[i % bases.len()].clone()
    }

    fn set(&self, i: usize, base: String) {
        self.bases.lock().expect("bases")[i] = base;
    }

    /// `POST /api/v1/orders/ID/paid` through host `first`, or the next ones when it is down
    /// (as a load balancer does); the payment is idempotent.
    fn pay(&self, first: usize, id: &str) {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        let deadline = Instant::now() + Duration::from_secs(30);
        for attempt in 0.. {
            let base = self.base(first + attempt);
            let sent = client
                .post(format!("{base}/api/v1/orders/{id}/paid"))
                .bearer_auth(crate::orders::TOKEN)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body("{}")
                .send();
            match sent {
                Ok(r) if r.status().is_success() => return,
                Ok(r) => panic!("paying {id} through {base}: {} {:?}", r.status(), r.text()),
                Err(e) => {
                    assert!(Instant::now() < deadline, "no host took the payment: {e}");
                    thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}

#[test]
fn three_hosts_place_each_order_once_through_a_killed_host() {
    let Some(url) = postgres_url("three_hosts_place_each_order_once_through_a_killed_host") else {
        return;
    };
    let database = fresh_schema(&url, "hosts");
    let setup = Setup::with_state(roomy_upstream());
    // Each placement waits upstream after it took effect, so that a killed host was most
    // likely sending one.
    setup
        .sim
        .sim()
        .arm(
            FaultSpec::new(Fault::Delay { ms: 25 })
                .on(PLACE)
                .times(10 * ORDERS as u32)
                .applied(),
        )
        .expect("armed");
    let config = setup.config(&format!(
        "database = \"{database}\"\nclaim_lease_ms = 1000\nmax_attempts = 10\n\
         buys_per_address_per_minute = 0\n"
    ));
    let mut hosts: Vec<Server> = (0..HOSTS).map(|_| setup.start(&config)).collect();
    let balancer = Balancer {
        bases: Arc::new(Mutex::new(hosts.iter().map(|h| h.base.clone()).collect())),
    };

    // The Buys arrive through every host.
    let ids: Vec<String> = (0..ORDERS)
        .map(|i| order_for(&hosts[i % HOSTS], &licence(i), "drweb-lite", 55361))
        .collect();
    let started = Instant::now();

    // Paid through all three at once, a little at a time, while one host is killed.
    let payers: Vec<_> = (0..HOSTS)
        .map(|h| {
            let balancer = balancer.clone();
            let mine: Vec<String> = ids.iter().skip(h).step_by(HOSTS).cloned().collect();
            thread::spawn(move || {
                for id in mine {
                    balancer.pay(h, &id);
                    thread::sleep(Duration::from_millis(10));
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while setup.count(PLACE) < ORDERS / 4 {
        assert!(Instant::now() < deadline, "placement never got going");
        thread::sleep(Duration::from_millis(5));
    }
    let victim = hosts.remove(1);
    let killed_pid = victim.pid();
    victim.kill();
    let sent_at_kill = setup.count(PLACE);
    let restarted = setup.start(&config);
    balancer.set(1, restarted.base.clone());
    hosts.insert(1, restarted);
    for payer in payers {
        payer.join().expect("a payer");
    }

    // Every order settles, wherever it was paid and whoever placed it.
    let api = Api::new(&hosts[0]);
    let orders: Vec<Value> = ids.iter().map(|id| api.settled(id)).collect();
    let elapsed = started.elapsed();
    // No more requests trickle in after everything settled.
    thread::sleep(Duration::from_millis(1500));

    let mut by_state: BTreeMap<String, usize> = BTreeMap::new();
    for o in &orders {
        *by_state
            .entry(o["order"]["state"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    let services = setup.sim.sim().services();
    let mut upstream_by_order: HashMap<String, Vec<u64>> = HashMap::new();
    for s in &services {
        let remote = s
            .remoteid
            .clone()
            .expect("every order carries its remoteid");
        upstream_by_order.entry(remote).or_default().push(s.id);
    }
    let summary = format!(
        "{by_state:?}; {} upstream orders, {} requests ({sent_at_kill} when host {killed_pid} \
         was killed), {elapsed:?}",
        services.len(),
        setup.count(PLACE)
    );

    // Never twice: one upstream order at most per order, and the requests are the orders.
    for (order, found) in &upstream_by_order {
        assert_eq!(found.len(), 1, "order {order} is upstream twice: {summary}");
        assert!(ids.contains(order), "an unknown order {order} upstream");
    }
    assert_eq!(services.len(), setup.count(PLACE), "{summary}");
    // None lost, each in a documented state: placed, or in doubt because its host died after
    // the request could have left.
    let mut in_doubt = 0;
    for o in &orders {
        let id = o["order"]["id"].as_str().expect("an ID");
        match o["order"]["state"].as_str() {
            Some("placed") => {
                let service = o["order"]["upstream_service_id"]
                    .as_str()
                    .expect("a placed order's service");
                assert_eq!(
                    upstream_by_order.get(id).map(|s| s[0].to_string()),
                    Some(service.to_owned()),
                    "order {id} is placed as {service}, which upstream does not hold: {summary}"
                );
            }
            Some("in_doubt") => {
                in_doubt += 1;
                let last = o["history"]
                    .as_array()
                    .and_then(|h| h.iter().rev().find(|e| e["to"].is_string()))
                    .cloned()
                    .unwrap_or(json!(null));
                assert_eq!(last["from"], "placing", "order {id}: {last}");
                let why = last["error"].as_str().unwrap_or_default();
                assert!(
                    why.contains("may have left") || why.contains("may or may not exist"),
                    "order {id} is in doubt for another reason: {last}"
                );
                assert!(
                    upstream_by_order.get(id).is_none_or(|s| s.len() == 1),
                    "{summary}"
                );
            }
            other => panic!("order {id} ended {other:?}: {summary}"),
        }
    }
    // One host died, and a host sends one placement at a time.
    assert!(in_doubt <= 1, "{summary}");
    assert_eq!(
        by_state.get("placed").copied().unwrap_or(0) + in_doubt,
        ORDERS,
        "{summary}"
    );
    assert!(
        elapsed < Duration::from_secs(40),
        "the hosts were slow: {summary}"
    );
    eprintln!("three hosts, one killed: {summary}");
}

#[test]
fn a_sqlite_history_migrated_to_postgres_is_served_and_placed_from_there() {
    let Some(url) =
        postgres_url("a_sqlite_history_migrated_to_postgres_is_served_and_placed_from_there")
    else {
        return;
    };
    let database = fresh_schema(&url, "migrated");
    let setup = Setup::new();
    let sqlite = setup.config("");
    let server = setup.start(&sqlite);
    let api = Api::new(&server);
    let placed = order_for(&server, "184431", "drweb-lite", 55361);
    api.paid(&placed);
    api.settled(&placed);
    let before = api.placed_with_expiry(&placed);
    assert_eq!(before["order"]["state"], "placed", "{before}");
    let unpaid = order_for(&server, "184432", "drweb-pro", 55362);
    drop(server);

    let file = setup.dir.path().join("reseller-orders.sqlite3");
    let out = std::process::Command::new(crate::common::BIN)
        .args(["orders", "migrate", "--from"])
        .arg(&file)
        .args(["--to", &database])
        .output()
        .expect("run reseller");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(report["copied"]["orders"], 2, "{report}");
    assert!(
        report["copied"]["transitions"].as_u64() > Some(2),
        "{report}"
    );
    assert!(
        report["copied"]["upstream_calls"].as_u64() >= Some(1),
        "{report}"
    );
    if let Some(password) = url::Url::parse(&database)
        .expect("a URL")
        .password()
        .filter(|p| !p.is_empty())
    {
        assert!(!stdout.contains(&format!(":{password}@")), "{stdout}");
    }
    // Again: refused, the database is no longer empty.
    let again = std::process::Command::new(crate::common::BIN)
        .args(["orders", "migrate", "--from"])
        .arg(&file)
        .args(["--to", &database])
        .output()
        .expect("run reseller");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("empty"));

    // A host on PostgreSQL serves the history as it was, and places what is paid next.
    let config = setup.config(&format!("database = \"{database}\"\n"));
    let server = setup.start(&config);
    let api = Api::new(&server);
    let after = api.order(&placed);
    for key in [
        "id",
        "state",
        "upstream_service_id",
        "expires_at",
        "price",
        "created_ms",
    ] {
        assert_eq!(after["order"][key], before["order"][key], "{key}: {after}");
    }
    // The whole history came along (a host may add its status sync after it).
    let (was, is) = (
        before["history"].as_array().expect("history"),
        after["history"].as_array().expect("history"),
    );
    assert_eq!(is.get(..was.len()), Some(was.as_slice()), "{after}");
    api.paid(&unpaid);
    let now = api.settled(&unpaid);
    assert_eq!(now["order"]["state"], "placed", "{now}");
    assert_eq!(setup.count(PLACE), 2);
}
