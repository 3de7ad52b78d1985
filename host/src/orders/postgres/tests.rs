//! The PostgreSQL backend against a real server: the URL in `RESELLER_TEST_POSTGRES` (a role
//! that may create schemas in its database). Each test works in a schema of its own.
//! Without the variable the tests say they are skipped and pass, except under `CI=true`,
//! where a missing database is a failure.

use std::io::Write as _;
use std::sync::{Arc, Barrier};
use std::thread;

use super::*;
use crate::orders::SqliteStore;
use crate::orders::operation::{Began, NewOperation, OperationKind, OperationState};
use crate::orders::store::conformance::{self, prices_of, stored_costs};
use crate::orders::store::{EventStore, OperationStore};
use OrderState::*;

/// The test database's URL, or `None` (with the reason printed) when the tests are skipped.
fn test_url(test: &str) -> Option<String> {
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
fn fresh_schema(url: &str) -> String {
    let schema = format!(
        "t_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, NoTls)
            .await
            .expect("connect to RESELLER_TEST_POSTGRES");
        tokio::spawn(connection);
        client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};"
            ))
            .await
            .expect("create schema");
    });
    let mut with = url::Url::parse(url).expect("url");
    with.query_pairs_mut()
        .append_pair("options", &format!("-csearch_path={schema}"));
    with.to_string()
}

static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn open(url: &str) -> PgStore {
    PgStore::open(&PgOptions::new(url)).expect("open the PostgreSQL store")
}

/// A store on a fresh schema, or `None` when skipped.
fn fresh(test: &str) -> Option<PgStore> {
    test_url(test).map(|url| open(&fresh_schema(&url)))
}

/// Runs SQL as is, in the store's database (to simulate what the store never does itself).
fn raw(store: &PgStore, sql: &str) {
    store
        .write(async |tx| tx.batch_execute(sql).await.map_err(db))
        .expect("raw SQL");
}

#[test]
fn conformance() {
    let Some(url) = test_url("conformance") else {
        return;
    };
    let store = || open(&fresh_schema(&url));
    conformance::create_and_reuse(&store());
    conformance::invalid_input_is_refused(&store());
    conformance::transitions_are_checked(&store());
    conformance::automatic_life_is_recorded(&store());
    conformance::retries_and_doubt_are_recorded(&store());
    conformance::listing_and_resuming(&store());
    conformance::long_texts_are_cut(&store());
    conformance::amend_rebinds_a_placed_order(&store());
    conformance::amend_records_a_renewal(&store());
    conformance::amend_is_a_compare_and_set(&store());
    conformance::amend_input_is_checked(&store());
    conformance::operations_are_exclusive_and_keyed(&store());
    conformance::operations_are_recovered(&store());
    conformance::events_go_with_their_changes(&store());
    conformance::lists_counts_imports_and_purges(&store());
    conformance::costs_are_replaced(&store());
    conformance::invalid_costs_change_nothing(&store());
    let url = fresh_schema(&url);
    let reopen = || -> Box<dyn CostStore> { Box::new(open(&url)) };
    conformance::costs_survive_reopening(&reopen);
}

#[test]
fn usable_as_a_trait_object() {
    let Some(store) = fresh("usable_as_a_trait_object") else {
        return;
    };
    let store: Arc<dyn crate::orders::store::Backend> = Arc::new(store);
    conformance::create_and_reuse(store.as_ref());
    assert!(store.claims_expire().is_some());
}

#[test]
fn racing_hosts_claim_each_order_once() {
    let Some(url) = test_url("racing_hosts_claim_each_order_once") else {
        return;
    };
    let url = fresh_schema(&url);
    // Three hosts: three stores, three pools, decided by the database alone.
    let hosts: Vec<Arc<PgStore>> = (0..3).map(|_| Arc::new(open(&url))).collect();
    for round in 0..20 {
        let order = conformance::paid(hosts[0].as_ref(), &format!("L{round}"), 1);
        let barrier = Arc::new(Barrier::new(6));
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let store = Arc::clone(&hosts[i % 3]);
                let barrier = Arc::clone(&barrier);
                let id = order.id.clone();
                thread::spawn(move || {
                    barrier.wait();
                    store.claim_for_placing(&id).map(|_| i % 3)
                })
            })
            .collect();
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect();
        let winners: Vec<usize> = results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .copied()
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        for r in &results {
            if let Err(e) = r {
                assert_eq!(*e, StoreError::Conflict { current: Placing });
            }
        }
        // Only the winner may mark its send, and settle the claim.
        let winner = &hosts[winners[0]];
        let loser = &hosts[(winners[0] + 1) % 3];
        assert!(
            loser
                .mark_sending(&SendMarker::Placement(order.id.clone()))
                .is_err()
        );
        assert_eq!(
            loser.transition(&order.id, Placing, Paid, Change::by("worker")),
            Err(StoreError::Conflict { current: Placing })
        );
        winner
            .mark_sending(&SendMarker::Placement(order.id.clone()))
            .expect("the winner marks");
        let placed = winner
            .transition(
                &order.id,
                Placing,
                Placed,
                Change::by("worker").with_service_id(format!("S{round}")),
            )
            .expect("the winner settles");
        assert_eq!((placed.state, placed.attempts), (Placed, 1));
    }
}

#[test]
fn racing_hosts_deliver_each_event_once() {
    let Some(url) = test_url("racing_hosts_deliver_each_event_once") else {
        return;
    };
    let url = fresh_schema(&url);
    let hosts: Vec<Arc<PgStore>> = (0..3).map(|_| Arc::new(open(&url))).collect();
    let mut emitted = Vec::new();
    for i in 0..90 {
        let key = format!("balance.low:{i}");
        let id = hosts[i % 3]
            .emit(
                EventKind::BalanceLow,
                None,
                serde_json::json!({ "i": i }),
                Some(&key),
            )
            .expect("emit")
            .expect("a new event");
        emitted.push(id);
    }
    // Three deliverers on three hosts, each claiming small batches until nothing is due.
    let now = now_ms();
    let barrier = Arc::new(Barrier::new(3));
    let handles: Vec<_> = hosts
        .iter()
        .map(|h| {
            let (h, barrier) = (Arc::clone(h), Arc::clone(&barrier));
            thread::spawn(move || {
                barrier.wait();
                let mut mine = Vec::new();
                loop {
                    let batch = h.claim_deliveries(now, 60_000, 4).expect("claim");
                    if batch.is_empty() {
                        return mine;
                    }
                    for event in batch {
                        h.delivered(event.id).expect("delivered");
                        mine.push(event.id);
                    }
                }
            })
        })
        .collect();
    let mut delivered: Vec<i64> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("thread"))
        .collect();
    delivered.sort_unstable();
    assert_eq!(delivered, emitted, "each event delivered once, none left");
    assert_eq!(hosts[1].undelivered().expect("undelivered"), (0, None));
    // A claimed event is not claimed again before its lease runs out.
    let id = hosts[0]
        .emit(EventKind::BalanceLow, None, serde_json::json!({}), None)
        .expect("emit")
        .expect("new");
    let now = now_ms();
    let first = hosts[0].claim_deliveries(now, 60_000, 10).expect("claim");
    assert_eq!(first.iter().map(|e| e.id).collect::<Vec<_>>(), [id]);
    assert!(
        hosts[1]
            .claim_deliveries(now + 1_000, 60_000, 10)
            .expect("claim")
            .is_empty()
    );
    assert_eq!(
        hosts[2]
            .claim_deliveries(now + 61_000, 60_000, 10)
            .expect("claim")
            .len(),
        1
    );
}

#[test]
fn racing_identical_buys_create_one_order() {
    let Some(url) = test_url("racing_identical_buys_create_one_order") else {
        return;
    };
    let url = fresh_schema(&url);
    let hosts: Vec<Arc<PgStore>> = (0..2).map(|_| Arc::new(open(&url))).collect();
    let barrier = Arc::new(Barrier::new(6));
    let handles: Vec<_> = (0..6)
        .map(|i| {
            let store = Arc::clone(&hosts[i % 2]);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                store.create_or_reuse_new(&conformance::new_order("L1", 7))
            })
        })
        .collect();
    let results: Vec<Created> = handles
        .into_iter()
        .map(|h| h.join().expect("thread").expect("create"))
        .collect();
    assert_eq!(results.iter().filter(|c| !c.reused).count(), 1);
    assert!(results.iter().all(|c| c.order.id == results[0].order.id));
    assert_eq!(
        hosts[0].list(&ListFilter::default()).expect("list").len(),
        1
    );
}

fn renewal(order: &OrderId, key: &str) -> NewOperation {
    NewOperation {
        order_id: order.clone(),
        kind: OperationKind::Renew,
        key: Some(key.to_owned()),
        request: serde_json::json!({ "period_months": 1 }),
        actor: "api".to_owned(),
    }
}

#[test]
fn expired_claims_are_settled_by_another_host_and_never_resent() {
    let Some(url) = test_url("expired_claims_are_settled_by_another_host_and_never_resent") else {
        return;
    };
    let url = fresh_schema(&url);
    let (a, b) = (open(&url), open(&url));
    assert_ne!(a.instance(), b.instance());
    // Host A: one placement marked about to send, one not; one operation sending, one pending.
    let sent = conformance::paid(&a, "L1", 1);
    let unsent = conformance::paid(&a, "L2", 1);
    a.claim_for_placing(&sent.id).expect("claim");
    a.mark_sending(&SendMarker::Placement(sent.id.clone()))
        .expect("mark");
    a.claim_for_placing(&unsent.id).expect("claim");
    let placed = conformance::placed(&a, "L3", "S3");
    let other = conformance::placed(&a, "L4", "S4");
    let Began::New(sending) = a.begin_operation(&renewal(&placed.id, "k1")).expect("op") else {
        panic!("new");
    };
    a.mark_sending(&SendMarker::Operation(sending.id))
        .expect("mark op");
    let Began::New(pending) = a.begin_operation(&renewal(&other.id, "k2")).expect("op") else {
        panic!("new");
    };
    // A is alive: B settles none of its claims, at start or later.
    assert_eq!(
        b.recover_expired().expect("recover"),
        Interrupted::default()
    );
    assert_eq!(
        b.recover_interrupted().expect("recover"),
        Interrupted::default()
    );
    assert_eq!(b.get(&sent.id).expect("get").state, Placing);
    // A stops renewing (it died, or lost the database): its leases run out.
    raw(
        &a,
        "UPDATE orders SET lease_until_ms = 0 WHERE state = 'placing';
         UPDATE operations SET lease_until_ms = 0 WHERE state IN ('pending', 'sending');",
    );
    let found = b.recover_expired().expect("recover");
    let ids = |orders: &[Order]| orders.iter().map(|o| o.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&found.in_doubt), std::slice::from_ref(&sent.id));
    assert_eq!(ids(&found.requeued), std::slice::from_ref(&unsent.id));
    assert_eq!(
        found
            .operations_in_doubt
            .iter()
            .map(|o| (o.id, o.state))
            .collect::<Vec<_>>(),
        [(sending.id, OperationState::InDoubt)]
    );
    assert_eq!(
        found
            .operations_dropped
            .iter()
            .map(|o| o.id)
            .collect::<Vec<_>>(),
        [pending.id]
    );
    let HistoryEntry::Transition(t) = b.history(&sent.id).expect("history").pop().expect("entry")
    else {
        panic!("expected a transition");
    };
    assert_eq!(
        (t.from, t.to, t.actor.as_str()),
        (Some(Placing), InDoubt, "recovery")
    );
    // B claims the requeued order. A, back, cannot send or settle what it no longer holds.
    b.claim_for_placing(&unsent.id).expect("B claims it");
    assert!(
        a.mark_sending(&SendMarker::Placement(unsent.id.clone()))
            .is_err()
    );
    assert!(
        a.mark_sending(&SendMarker::Placement(sent.id.clone()))
            .is_err()
    );
    assert!(a.mark_sending(&SendMarker::Operation(sending.id)).is_err());
    assert_eq!(
        a.transition(
            &unsent.id,
            Placing,
            Failed,
            Change::by("worker").with_error("x")
        ),
        Err(StoreError::Conflict { current: Placing })
    );
    b.mark_sending(&SendMarker::Placement(unsent.id.clone()))
        .expect("B marks");
    // A second pass finds nothing more; B's live claim stays.
    assert_eq!(
        a.recover_expired().expect("recover"),
        Interrupted::default()
    );
    assert_eq!(a.get(&unsent.id).expect("get").state, Placing);
    // The in-doubt placement is never claimed again.
    assert_eq!(
        b.claim_for_placing(&sent.id),
        Err(StoreError::Conflict { current: InDoubt })
    );
    let kinds: Vec<_> = b
        .events_after(0, 1000)
        .expect("events")
        .iter()
        .map(|e| e.kind)
        .collect();
    assert!(kinds.contains(&EventKind::OperationInDoubt));
}

#[test]
fn each_round_of_a_scheduled_task_is_run_by_one_host() {
    let Some(url) = test_url("each_round_of_a_scheduled_task_is_run_by_one_host") else {
        return;
    };
    let url = fresh_schema(&url);
    let hosts: Vec<Arc<PgStore>> = (0..3).map(|_| Arc::new(open(&url))).collect();
    let every = Duration::from_millis(600);
    let race = || -> usize {
        let barrier = Arc::new(Barrier::new(hosts.len()));
        let handles: Vec<_> = hosts
            .iter()
            .map(|h| {
                let (h, barrier) = (Arc::clone(h), Arc::clone(&barrier));
                thread::spawn(move || {
                    barrier.wait();
                    h.claim_scheduled("sync", every).expect("claim")
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .filter(|won| *won)
            .count()
    };
    assert_eq!(race(), 1, "the first round has one runner");
    assert_eq!(race(), 0, "the round was run already");
    // Another task is a round of its own.
    assert!(hosts[1].claim_scheduled("balance", every).expect("claim"));
    thread::sleep(every);
    assert_eq!(race(), 1, "the next round has one runner");
}

#[test]
fn leases_are_renewed_while_the_host_lives() {
    let Some(url) = test_url("leases_are_renewed_while_the_host_lives") else {
        return;
    };
    let url = fresh_schema(&url);
    let mut options = PgOptions::new(url.as_str());
    options.lease = Duration::from_secs(1);
    let a = PgStore::open(&options).expect("open");
    let b = open(&url);
    let o = conformance::paid(&a, "L1", 1);
    a.claim_for_placing(&o.id).expect("claim");
    let lease = |s: &PgStore| -> i64 {
        s.read(async |tx| {
            let row = tx
                .query_one("SELECT lease_until_ms FROM orders", &[])
                .await
                .map_err(db)?;
            get(&row, 0)
        })
        .expect("lease")
    };
    let first = lease(&b);
    // Past several lease lengths, the claim is still A's: it was renewed.
    let mut renewed = false;
    for _ in 0..50 {
        thread::sleep(Duration::from_millis(100));
        if lease(&b) > first {
            renewed = true;
            break;
        }
    }
    assert!(renewed, "the lease was never renewed");
    assert_eq!(
        b.recover_expired().expect("recover"),
        Interrupted::default()
    );
    // A dies: nothing renews it, and B settles it once it runs out.
    drop(a);
    let mut found = Interrupted::default();
    for _ in 0..100 {
        found = b.recover_expired().expect("recover");
        if !found.requeued.is_empty() {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        found.requeued.iter().map(|o| &o.id).collect::<Vec<_>>(),
        [&o.id]
    );
}

#[test]
fn a_database_of_the_previous_version_is_upgraded() {
    let Some(url) = test_url("a_database_of_the_previous_version_is_upgraded") else {
        return;
    };
    let url = fresh_schema(&url);
    {
        let store = open(&url);
        // Back to version 1, with a placing order as version 1 wrote it (no claim).
        raw(
            &store,
            "DROP TABLE scheduled_runs; DROP INDEX orders_claims; DROP INDEX operations_claims;
             ALTER TABLE orders DROP COLUMN claimed_by, DROP COLUMN lease_until_ms;
             ALTER TABLE operations DROP COLUMN claimed_by, DROP COLUMN lease_until_ms;
             UPDATE reseller_schema SET version = 1;
             INSERT INTO orders (id, licence_id, licence_ip, tariff_id, service_name, price_e4,
                 currency, period_months, autoprolong, state, attempts, created_ms, updated_ms,
                 events, sending)
             VALUES ('01JQ3V6K8Z9X4N2B7C5D0E1F2G', 'L1', '192.0.2.10', 55361, 'drweb', 36000,
                 'EUR', 1, TRUE, 'placing', 1, 10, 20, 2, TRUE);
             INSERT INTO order_transitions (order_id, event, from_state, to_state, at_ms, actor)
             VALUES ('01JQ3V6K8Z9X4N2B7C5D0E1F2G', 1, NULL, 'new', 10, 'create');",
        );
    }
    let store = open(&url);
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
    let id = OrderId::parse("01JQ3V6K8Z9X4N2B7C5D0E1F2G").expect("id");
    let order = store.get(&id).expect("get");
    assert_eq!((order.state, order.licence_id.as_str()), (Placing, "L1"));
    // A claim without a lease, left by an older host: settled by the first sweep.
    let found = store.recover_expired().expect("recover");
    assert_eq!(
        found.in_doubt.iter().map(|o| &o.id).collect::<Vec<_>>(),
        [&id]
    );
    conformance::create_and_reuse(&store);
}

#[test]
fn a_newer_schema_is_refused() {
    let Some(url) = test_url("a_newer_schema_is_refused") else {
        return;
    };
    let url = fresh_schema(&url);
    raw(
        &open(&url),
        &format!(
            "UPDATE reseller_schema SET version = {}",
            SCHEMA_VERSION + 1
        ),
    );
    let err = PgStore::open(&PgOptions::new(url.as_str())).expect_err("newer schema accepted");
    assert_eq!(
        err,
        StoreError::SchemaTooNew {
            found: SCHEMA_VERSION + 1,
            supported: SCHEMA_VERSION
        }
    );
}

#[test]
fn hosts_starting_at_once_migrate_once() {
    let Some(url) = test_url("hosts_starting_at_once_migrate_once") else {
        return;
    };
    let url = fresh_schema(&url);
    let barrier = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                PgStore::open(&PgOptions::new(url)).map(|s| s.schema_version())
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().expect("thread").expect("open"), Ok(SCHEMA_VERSION));
    }
}

#[test]
fn a_wrong_password_is_an_error_that_does_not_show_it() {
    let Some(url) = test_url("a_wrong_password_is_an_error_that_does_not_show_it") else {
        return;
    };
    let mut options = PgOptions::new(url);
    options.password = Some("not-the-password-7f3a".to_owned());
    let err = PgStore::open(&options).expect_err("a wrong password was accepted");
    let text = err.to_string();
    assert!(matches!(err, StoreError::Database(_)), "{err:?}");
    assert!(!text.contains("not-the-password-7f3a"), "{text}");
    assert!(!format!("{options:?}").contains("not-the-password-7f3a"));
}

#[test]
fn unreadable_rows_are_errors_not_panics() {
    let Some(store) = fresh("unreadable_rows_are_errors_not_panics") else {
        return;
    };
    let o = conformance::paid(&store, "L1", 1);
    raw(&store, "UPDATE orders SET fields = '[1, 2]', tariff_id = 5");
    assert!(matches!(store.get(&o.id), Err(StoreError::Database(_))));
    raw(&store, "UPDATE orders SET fields = '{}', currency = 'EU1'");
    assert!(matches!(
        store.list(&ListFilter::default()),
        Err(StoreError::Database(_))
    ));
}

#[test]
fn a_failed_write_leaves_nothing_behind() {
    let Some(store) = fresh("a_failed_write_leaves_nothing_behind") else {
        return;
    };
    let o = conformance::paid(&store, "L1", 1);
    raw(
        &store,
        "CREATE FUNCTION refuse() RETURNS trigger AS $$
             BEGIN RAISE EXCEPTION 'audit refused'; END $$ LANGUAGE plpgsql;
         CREATE TRIGGER no_audit BEFORE INSERT ON order_transitions
             FOR EACH ROW EXECUTE FUNCTION refuse();",
    );
    let err = store.claim_for_placing(&o.id).expect_err("claimed");
    assert!(
        matches!(&err, StoreError::Database(m) if m.contains("audit refused")),
        "{err:?}"
    );
    let stored = store.get(&o.id).expect("get");
    assert_eq!((stored.state, stored.attempts), (Paid, 0));
    let before = stored_costs(&store).expect("costs");
    raw(&store, "DROP TRIGGER no_audit ON order_transitions");
    raw(
        &store,
        "CREATE TRIGGER one_cost_only BEFORE INSERT ON upstream_costs
             FOR EACH ROW WHEN (NEW.tariff_id = 4) EXECUTE FUNCTION refuse();",
    );
    let err = store
        .replace_upstream(&prices_of(&conformance::costs(&[(3, 1, 30), (4, 1, 40)])))
        .expect_err("replaced");
    assert!(matches!(err, StoreError::Database(_)), "{err:?}");
    assert_eq!(stored_costs(&store).expect("costs"), before);
}

#[test]
fn urls_are_told_apart_and_redacted() {
    assert!(is_url("postgres://u@h/db"));
    assert!(is_url("PostgreSQL://u@h/db"));
    assert!(!is_url("orders.sqlite3"));
    assert!(!is_url("/var/lib/postgres://x"));
    assert_eq!(
        redacted("postgres://user:secret@db.example:5432/orders"),
        "postgres://user:***@db.example:5432/orders"
    );
    assert_eq!(
        redacted("postgres://user@db/orders"),
        "postgres://user@db/orders"
    );
    assert!(!redacted("postgres://u:secret@[bad").contains("secret"));
    let err = PgStore::open(&PgOptions::new("postgres://u:secret@h/db?sslmode=bogus"))
        .expect_err("bad URL");
    assert!(!err.to_string().contains("secret"), "{err}");
}

#[test]
fn a_sqlite_database_is_migrated_whole() {
    let Some(url) = test_url("a_sqlite_database_is_migrated_whole") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("orders.sqlite3");
    let sqlite = SqliteStore::open(&file).expect("sqlite");
    // A history as a partner's SQLite file holds one: every state, upstream calls, operations,
    // events (some delivered), prices and a balance.
    conformance::events_go_with_their_changes(&sqlite);
    conformance::automatic_life_is_recorded(&sqlite);
    conformance::retries_and_doubt_are_recorded(&sqlite);
    conformance::operations_are_exclusive_and_keyed(&sqlite);
    conformance::costs_are_replaced(&sqlite);
    sqlite
        .replace_upstream(&prices_of(&conformance::costs(&[
            (55361, 1, 36_000),
            (55361, 12, 360_000),
        ])))
        .expect("prices");
    sqlite
        .record_balance(&Money::from_units(12_345_000, "EUR").expect("money"))
        .expect("balance");
    let first = sqlite.events_after(0, 1).expect("events");
    sqlite.delivered(first[0].id).expect("delivered");
    // A placement cut short after its request was marked about to leave.
    let cut = conformance::paid(&sqlite, "L-cut", 7);
    sqlite.claim_for_placing(&cut.id).expect("claim");
    sqlite
        .mark_sending(&SendMarker::Placement(cut.id.clone()))
        .expect("sending");

    let target = fresh_schema(&url);
    let pg = open(&target);
    let copied = pg.import_sqlite(&file).expect("migrate");
    let all = ListFilter {
        limit: MAX_LIST_LIMIT,
        ..ListFilter::default()
    };
    let orders = sqlite.list(&all).expect("list");
    assert_eq!(copied.orders, orders.len() as u64);
    assert!(copied.operations > 0 && copied.events > 1 && copied.upstream_calls > 0);
    assert!(copied.balance && copied.upstream_costs > 0);
    assert_eq!(pg.list(&all).expect("list"), orders);
    for order in &orders {
        assert_eq!(
            pg.history(&order.id).expect("history"),
            sqlite.history(&order.id).expect("history"),
            "{}",
            order.id
        );
        assert_eq!(
            pg.operations(&order.id).expect("operations"),
            sqlite.operations(&order.id).expect("operations")
        );
    }
    assert_eq!(
        pg.events_after(0, 1000).expect("events"),
        sqlite.events_after(0, 1000).expect("events")
    );
    assert_eq!(pg.undelivered(), sqlite.undelivered());
    assert_eq!(pg.upstream(), sqlite.upstream());
    assert_eq!(pg.balance(), sqlite.balance());
    assert_eq!(pg.counts(), sqlite.counts());

    // New rows continue after the copied IDs.
    let last_event = sqlite
        .events_after(0, 1000)
        .expect("events")
        .last()
        .map(|e| e.id);
    let next = pg
        .emit(EventKind::BalanceLow, None, serde_json::json!({}), None)
        .expect("emit")
        .expect("recorded");
    assert!(Some(next) > last_event);
    // The cut placement is settled on PostgreSQL as a restart would: in doubt, never re-sent.
    let found = pg.recover_expired().expect("recover");
    assert_eq!(
        found.in_doubt.iter().map(|o| &o.id).collect::<Vec<_>>(),
        [&cut.id]
    );

    // Once is enough: a database with orders is refused, and so is a file that is not there.
    let again = pg.import_sqlite(&file).expect_err("migrated twice");
    assert!(again.to_string().contains("empty"), "{again}");
    let missing = open(&fresh_schema(&url))
        .import_sqlite(&dir.path().join("none.sqlite3"))
        .expect_err("no file");
    assert!(missing.to_string().contains("not a file"), "{missing}");
    // Nor while a host places from the file.
    let placer = crate::orders::placer::Placer::for_database(&file);
    placer.take().expect("lock");
    let busy = open(&fresh_schema(&url))
        .import_sqlite(&file)
        .expect_err("a host places from it");
    assert!(busy.to_string().contains("stop the hosts"), "{busy}");
}
