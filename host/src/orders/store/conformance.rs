//! Behaviour every backend of [`OrderStore`] and [`CostStore`] must show: each function runs
//! on a fresh store and asserts what a backend owes its callers.

use std::collections::HashSet;

use super::*;
use crate::catalogue::UpstreamTariff;
use crate::money::{Money, Months};
use crate::orders::operation::OperationKind;
use OrderState::*;

/// A valid new order for `licence` and `tariff`.
pub(crate) fn new_order(licence: &str, tariff: u64) -> NewOrder {
    NewOrder {
        licence_id: licence.to_owned(),
        licence_ip: Some("192.0.2.10".parse().expect("ip")),
        tariff_id: tariff,
        service_name: "drweb".to_owned(),
        price: Money::from_units(9_139_286, "EUR").expect("money"),
        period: Months::MONTH,
        autoprolong: true,
        module: Some("drweb-lite".to_owned()),
        fields: [("email".to_owned(), "a@example.org".to_owned())].into(),
    }
}

/// A new order moved to `Paid`.
pub(crate) fn paid(store: &dyn OrderStore, licence: &str, tariff: u64) -> Order {
    let created = store
        .create_or_reuse_new(&new_order(licence, tariff))
        .expect("create");
    store
        .transition(&created.order.id, New, Paid, Change::by("billing"))
        .expect("pay")
}

pub(crate) fn create_and_reuse(store: &dyn OrderStore) {
    let first = store
        .create_or_reuse_new(&new_order("L1", 55361))
        .expect("create");
    assert!(!first.reused);
    let o = &first.order;
    assert_eq!(o.state, New);
    assert_eq!(o.licence_id, "L1");
    assert_eq!(o.licence_ip, Some("192.0.2.10".parse().expect("ip")));
    assert_eq!(o.tariff_id, 55361);
    assert_eq!(o.service_name, "drweb");
    assert_eq!(o.price.to_string(), "913.9286 EUR");
    assert_eq!((o.period, o.autoprolong), (Months::MONTH, true));
    assert_eq!(
        (o.attempts, &o.last_error, &o.upstream_service_id),
        (0, &None, &None)
    );
    assert!(o.created_ms > 0 && o.updated_ms == o.created_ms);
    assert_eq!(store.get(&o.id).expect("get"), *o);

    // The same redirect again, even with another price: the same order, unchanged.
    let mut again = new_order("L1", 55361);
    again.price = Money::from_units(1, "EUR").expect("money");
    let second = store.create_or_reuse_new(&again).expect("reuse");
    assert!(second.reused);
    assert_eq!(second.order, *o);

    // Another tariff or another licence: another order.
    let other_tariff = store
        .create_or_reuse_new(&new_order("L1", 55362))
        .expect("create");
    let other_licence = store
        .create_or_reuse_new(&new_order("L2", 55361))
        .expect("create");
    assert!(!other_tariff.reused && !other_licence.reused);
    let ids: HashSet<_> = [&o.id, &other_tariff.order.id, &other_licence.order.id]
        .into_iter()
        .collect();
    assert_eq!(ids.len(), 3);

    // Once paid, the next redirect makes a new order.
    store
        .transition(&o.id, New, Paid, Change::by("billing"))
        .expect("pay");
    let third = store
        .create_or_reuse_new(&new_order("L1", 55361))
        .expect("create");
    assert!(!third.reused);
    assert_ne!(third.order.id, o.id);
    assert_eq!(store.get(&o.id).expect("get").state, Paid);
}

pub(crate) fn invalid_input_is_refused(store: &dyn OrderStore) {
    let mut bad = new_order("", 1);
    assert!(matches!(
        store.create_or_reuse_new(&bad),
        Err(StoreError::Invalid(_))
    ));
    bad = new_order("L", u64::MAX);
    assert!(matches!(
        store.create_or_reuse_new(&bad),
        Err(StoreError::Invalid(_))
    ));
    assert!(store.list(&ListFilter::default()).expect("list").is_empty());

    let unknown = OrderId::from_parts(1, [1; 10]);
    assert_eq!(store.get(&unknown), Err(StoreError::NotFound));
    assert_eq!(store.history(&unknown), Err(StoreError::NotFound));
    assert_eq!(
        store.transition(&unknown, New, Paid, Change::by("t")),
        Err(StoreError::NotFound)
    );
    assert_eq!(store.claim_for_placing(&unknown), Err(StoreError::NotFound));
    let call = UpstreamCall {
        func: "addition.order.param".to_owned(),
        params: vec![],
        http_status: None,
        duration_ms: 0,
        outcome: CallOutcome::NotSent,
        detail: String::new(),
    };
    assert_eq!(
        store.record_upstream_call(&unknown, call),
        Err(StoreError::NotFound)
    );
}

pub(crate) fn transitions_are_checked(store: &dyn OrderStore) {
    let o = store
        .create_or_reuse_new(&new_order("L1", 1))
        .expect("create")
        .order;
    // Forbidden by the table, whatever the order's state.
    assert_eq!(
        store.transition(&o.id, New, Placed, Change::by("t").with_service_id("9")),
        Err(StoreError::Forbidden {
            from: New,
            to: Placed
        })
    );
    assert_eq!(
        store.transition(&o.id, InDoubt, Placing, Change::by("t")),
        Err(StoreError::Forbidden {
            from: InDoubt,
            to: Placing
        })
    );
    // Allowed by the table, but the order is not in `from`.
    assert_eq!(
        store.claim_for_placing(&o.id),
        Err(StoreError::Conflict { current: New })
    );
    assert_eq!(
        store.transition(&o.id, Placed, Removed, Change::by("t")),
        Err(StoreError::Conflict { current: New })
    );
    // Placed needs a service ID; nothing else takes one.
    let paid = store
        .transition(&o.id, New, Paid, Change::by("billing"))
        .expect("pay");
    assert!(matches!(
        store.transition(&o.id, Paid, Placed, Change::by("operator")),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.transition(
            &o.id,
            Paid,
            Placed,
            Change::by("operator").with_service_id(" ")
        ),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.transition(
            &o.id,
            Paid,
            Cancelled,
            Change::by("op").with_service_id("1")
        ),
        Err(StoreError::Invalid(_))
    ));
    // None of the refusals changed anything.
    assert_eq!(store.get(&o.id).expect("get"), paid);
    assert_eq!(store.history(&o.id).expect("history").len(), 2);
}

pub(crate) fn automatic_life_is_recorded(store: &dyn OrderStore) {
    let o = paid(store, "L1", 55361);
    assert_eq!((o.state, o.attempts), (Paid, 0));

    let placing = store.claim_for_placing(&o.id).expect("claim");
    assert_eq!((placing.state, placing.attempts), (Placing, 1));
    // A second claim loses.
    assert_eq!(
        store.claim_for_placing(&o.id),
        Err(StoreError::Conflict { current: Placing })
    );

    let call = UpstreamCall {
        func: "addition.order.param".to_owned(),
        params: vec![
            ("authinfo".to_owned(), "partner:secret".to_owned()),
            ("item".to_owned(), "L1".to_owned()),
            ("AuthInfo ".to_owned(), "partner:secret".to_owned()),
            ("pricelist".to_owned(), "55361".to_owned()),
            ("period".to_owned(), "1".to_owned()),
            ("auth".to_owned(), "session".to_owned()),
        ],
        http_status: Some(200),
        duration_ms: 842,
        outcome: CallOutcome::Succeeded,
        detail: "service 3001".to_owned(),
    };
    store.record_upstream_call(&o.id, call).expect("record");

    let placed = store
        .transition(
            &o.id,
            Placing,
            Placed,
            Change::by("worker").with_service_id("3001"),
        )
        .expect("placed");
    assert_eq!(placed.state, Placed);
    assert_eq!(placed.upstream_service_id.as_deref(), Some("3001"));
    assert_eq!(placed.attempts, 1);
    assert!(placed.updated_ms >= placed.created_ms);
    assert_eq!(store.get(&o.id).expect("get"), placed);

    let history = store.history(&o.id).expect("history");
    let events: Vec<u64> = history.iter().map(HistoryEntry::event).collect();
    assert_eq!(events, [1, 2, 3, 4, 5]);
    let steps: Vec<String> = history
        .iter()
        .map(|e| match e {
            HistoryEntry::Transition(t) => format!(
                "{}->{} by {}",
                t.from.map_or("-", OrderState::as_str),
                t.to,
                t.actor
            ),
            HistoryEntry::UpstreamCall(c) => format!("call {}", c.call.func),
        })
        .collect();
    assert_eq!(
        steps,
        [
            "-->new by create",
            "new->paid by billing",
            "paid->placing by worker",
            "call addition.order.param",
            "placing->placed by worker",
        ]
    );
    let HistoryEntry::UpstreamCall(call) = &history[3] else {
        panic!("expected a call, got {:?}", history[3]);
    };
    let names: Vec<&str> = call.call.params.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["item", "pricelist", "period"],
        "credentials dropped"
    );
    assert!(!format!("{history:?}").contains("secret"));
    assert_eq!(call.call.http_status, Some(200));
    assert_eq!(call.call.duration_ms, 842);
    assert_eq!(call.call.outcome, CallOutcome::Succeeded);
    assert_eq!(call.call.detail, "service 3001");
    let HistoryEntry::Transition(last) = &history[4] else {
        panic!("expected a transition, got {:?}", history[4]);
    };
    assert_eq!(last.service_id.as_deref(), Some("3001"));

    // Removal ends it.
    let removed = store
        .transition(
            &o.id,
            Placed,
            Removed,
            Change::by("api").with_note("user asked"),
        )
        .expect("remove");
    assert_eq!(removed.state, Removed);
    assert_eq!(removed.upstream_service_id.as_deref(), Some("3001"));
}

pub(crate) fn retries_and_doubt_are_recorded(store: &dyn OrderStore) {
    let o = paid(store, "L1", 1);
    // Failed before sending, before the claim: Paid → Paid counts an attempt.
    let again = store
        .transition(
            &o.id,
            Paid,
            Paid,
            Change::by("worker").with_error("plugin not loaded"),
        )
        .expect("retry");
    assert_eq!((again.state, again.attempts), (Paid, 1));
    assert_eq!(again.last_error.as_deref(), Some("plugin not loaded"));
    // Claimed, then the connection was refused: released back to Paid.
    store.claim_for_placing(&o.id).expect("claim");
    let released = store
        .transition(
            &o.id,
            Placing,
            Paid,
            Change::by("worker").with_error("connection refused"),
        )
        .expect("release");
    assert_eq!((released.state, released.attempts), (Paid, 2));
    assert_eq!(released.last_error.as_deref(), Some("connection refused"));
    // Claimed, then the answer timed out: in doubt.
    store.claim_for_placing(&o.id).expect("claim");
    let doubt = store
        .transition(
            &o.id,
            Placing,
            InDoubt,
            Change::by("worker").with_error("timeout"),
        )
        .expect("doubt");
    assert_eq!((doubt.state, doubt.attempts), (InDoubt, 3));
    // Nothing claims it back.
    assert_eq!(
        store.claim_for_placing(&o.id),
        Err(StoreError::Conflict { current: InDoubt })
    );
    // An operator found it placed.
    let placed = store
        .transition(
            &o.id,
            InDoubt,
            Placed,
            Change::by("operator").with_service_id("77"),
        )
        .expect("placed");
    assert_eq!(placed.upstream_service_id.as_deref(), Some("77"));
    assert_eq!(placed.last_error.as_deref(), Some("timeout"));

    // Insufficient balance: Failed, then an operator retries.
    let o = paid(store, "L2", 1);
    store.claim_for_placing(&o.id).expect("claim");
    let failed = store
        .transition(
            &o.id,
            Placing,
            Failed,
            Change::by("worker").with_error("balance"),
        )
        .expect("fail");
    assert_eq!(failed.state, Failed);
    let retried = store
        .transition(&o.id, Failed, Paid, Change::by("operator"))
        .expect("retry");
    assert_eq!((retried.state, retried.attempts), (Paid, 1));

    let history = store.history(&o.id).expect("history");
    let errors: Vec<Option<&str>> = history
        .iter()
        .filter_map(|e| match e {
            HistoryEntry::Transition(t) => Some(t.error.as_deref()),
            HistoryEntry::UpstreamCall(_) => None,
        })
        .collect();
    assert_eq!(errors, [None, None, None, Some("balance"), None]);
}

pub(crate) fn listing_and_resuming(store: &dyn OrderStore) {
    let a = store
        .create_or_reuse_new(&new_order("A", 1))
        .expect("a")
        .order;
    let b = paid(store, "B", 1);
    let c = paid(store, "C", 1);
    store.claim_for_placing(&c.id).expect("claim");
    let d = paid(store, "D", 1);

    let all = store.list(&ListFilter::default()).expect("list");
    let ids: Vec<&OrderId> = all.iter().map(|o| &o.id).collect();
    assert_eq!(ids, [&d.id, &c.id, &b.id, &a.id], "newest first");

    let two = store
        .list(&ListFilter {
            limit: 2,
            ..ListFilter::default()
        })
        .expect("list");
    assert_eq!(two.len(), 2);
    assert_eq!(two[0].id, d.id);
    let none = store
        .list(&ListFilter {
            limit: 0,
            ..ListFilter::default()
        })
        .expect("list");
    assert!(none.is_empty());
    let huge = store
        .list(&ListFilter {
            limit: u32::MAX,
            ..ListFilter::default()
        })
        .expect("list");
    assert_eq!(huge.len(), 4);

    let paid_only = store
        .list(&ListFilter {
            state: Some(Paid),
            ..ListFilter::default()
        })
        .expect("list");
    let ids: Vec<&OrderId> = paid_only.iter().map(|o| &o.id).collect();
    assert_eq!(ids, [&d.id, &b.id]);
    let for_a = store
        .list(&ListFilter {
            licence_id: Some("A".to_owned()),
            ..ListFilter::default()
        })
        .expect("list");
    assert_eq!(for_a, std::slice::from_ref(&a));

    let resume = store.orders_to_resume().expect("resume");
    let states: Vec<(&OrderId, OrderState)> = resume.iter().map(|o| (&o.id, o.state)).collect();
    assert_eq!(states, [(&b.id, Paid), (&c.id, Placing), (&d.id, Paid)]);

    // `c` was about to send when its placer stopped: in doubt. A claim that never marked its
    // send sent nothing: back to paid.
    store
        .mark_sending(&SendMarker::Placement(c.id.clone()))
        .expect("mark sending");
    let e = paid(store, "E", 5);
    store.claim_for_placing(&e.id).expect("claim e");
    let interrupted = store.recover_interrupted().expect("recover");
    assert_eq!(interrupted.in_doubt.len(), 1);
    assert_eq!(interrupted.in_doubt[0].id, c.id);
    assert_eq!(interrupted.in_doubt[0].state, InDoubt);
    assert!(interrupted.in_doubt[0].last_error.is_some());
    assert_eq!(interrupted.requeued.len(), 1);
    assert_eq!(interrupted.requeued[0].id, e.id);
    let e = store.get(&e.id).expect("get");
    assert_eq!(
        (e.state, e.attempts),
        (Paid, 1),
        "the claim's attempt still counts"
    );
    store
        .transition(&e.id, Paid, Cancelled, Change::by("test"))
        .expect("cancel e");
    // A mark needs the claim.
    assert!(
        store
            .mark_sending(&SendMarker::Placement(e.id.clone()))
            .is_err()
    );
    assert_eq!(store.get(&c.id).expect("get").state, InDoubt);
    for (id, state) in [(&a.id, New), (&b.id, Paid), (&d.id, Paid)] {
        assert_eq!(store.get(id).expect("get").state, state);
    }
    let HistoryEntry::Transition(t) = store.history(&c.id).expect("history").pop().expect("entry")
    else {
        panic!("expected a transition");
    };
    assert_eq!(
        (t.from, t.to, t.actor.as_str()),
        (Some(Placing), InDoubt, "startup")
    );

    let resume = store.orders_to_resume().expect("resume");
    let ids: Vec<&OrderId> = resume.iter().map(|o| &o.id).collect();
    assert_eq!(ids, [&b.id, &d.id]);
    assert_eq!(
        store.recover_interrupted().expect("recover"),
        Interrupted::default()
    );
}

pub(crate) fn long_texts_are_cut(store: &dyn OrderStore) {
    let o = paid(store, "L1", 1);
    let long = "é".repeat(MAX_TEXT_LEN);
    let changed = store
        .transition(&o.id, Paid, Paid, Change::by("w").with_error(long.clone()))
        .expect("retry");
    let err = changed.last_error.expect("error");
    assert!(err.len() <= MAX_TEXT_LEN && err.len() >= MAX_TEXT_LEN - 1);
    assert!(err.chars().all(|c| c == 'é'));
}

/// A paid order claimed and placed upstream as service `service_id`.
pub(crate) fn placed(store: &dyn OrderStore, licence: &str, service_id: &str) -> Order {
    let o = paid(store, licence, 1);
    store.claim_for_placing(&o.id).expect("claim");
    store
        .transition(
            &o.id,
            Placing,
            Placed,
            Change::by("worker").with_service_id(service_id),
        )
        .expect("place")
}

/// The order's last history entry, which must be a transition.
fn last_transition(store: &dyn OrderStore, id: &OrderId) -> TransitionRecord {
    match store.history(id).expect("history").pop() {
        Some(HistoryEntry::Transition(t)) => t,
        other => panic!("expected a transition, got {other:?}"),
    }
}

pub(crate) fn amend_rebinds_a_placed_order(store: &dyn OrderStore) {
    let o = placed(store, "184431", "3001");
    let events = store.history(&o.id).expect("history").len();
    let new_ip: IpAddr = "198.51.100.7".parse().expect("ip");
    let rebound = store
        .amend(
            &o.id,
            Placed,
            &Amendment {
                licence_id: Some("184432".to_owned()),
                licence_ip: Some(Some(new_ip)),
                ..Amendment::default()
            },
            Change::by("operator").with_note("rebound from licence 184431 to 184432"),
        )
        .expect("rebind");
    assert_eq!(rebound.licence_id, "184432");
    assert_eq!(rebound.licence_ip, Some(new_ip));
    assert!(rebound.updated_ms >= o.updated_ms);
    // Nothing else changed: state, service, attempts, error, price, …
    assert_eq!(
        Order {
            licence_id: o.licence_id.clone(),
            licence_ip: o.licence_ip,
            updated_ms: o.updated_ms,
            ..rebound.clone()
        },
        o
    );
    assert_eq!(store.get(&o.id).expect("get"), rebound);

    let history = store.history(&o.id).expect("history");
    assert_eq!(history.len(), events + 1);
    let t = last_transition(store, &o.id);
    assert_eq!(t.event, u64::try_from(events).expect("count") + 1);
    assert_eq!((t.from, t.to), (Some(Placed), Placed));
    assert_eq!(t.actor, "operator");
    assert_eq!(
        t.note.as_deref(),
        Some("rebound from licence 184431 to 184432")
    );
    assert_eq!((t.error, t.service_id), (None, None));
    assert_eq!(t.at_ms, rebound.updated_ms);

    // The order is found under its new licence only.
    let by_licence = |licence: &str| {
        store
            .list(&ListFilter {
                licence_id: Some(licence.to_owned()),
                ..ListFilter::default()
            })
            .expect("list")
    };
    assert_eq!(by_licence("184432"), std::slice::from_ref(&rebound));
    assert!(by_licence("184431").is_empty());

    // Rebound again to a licence without an IP; an error given is kept.
    let again = store
        .amend(
            &o.id,
            Placed,
            &Amendment {
                licence_id: Some("184433".to_owned()),
                licence_ip: Some(None),
                ..Amendment::default()
            },
            Change::by("api")
                .with_note("rebound from licence 184432 to 184433")
                .with_error("licence 184432 was deleted"),
        )
        .expect("rebind");
    assert_eq!(again.licence_id, "184433");
    assert_eq!(again.licence_ip, None);
    assert_eq!(
        again.last_error.as_deref(),
        Some("licence 184432 was deleted")
    );
    assert_eq!((again.state, again.attempts), (Placed, 1));
    assert_eq!(again.upstream_service_id.as_deref(), Some("3001"));
    let t = last_transition(store, &o.id);
    assert_eq!(t.error.as_deref(), Some("licence 184432 was deleted"));

    // Only the IP: the licence stays.
    let ip_only = store
        .amend(
            &o.id,
            Placed,
            &Amendment {
                licence_ip: Some(Some(new_ip)),
                ..Amendment::default()
            },
            Change::by("api").with_note("licence 184433 moved to 198.51.100.7"),
        )
        .expect("new ip");
    assert_eq!(
        (ip_only.licence_id.as_str(), ip_only.licence_ip),
        ("184433", Some(new_ip))
    );
    // A later amendment without an error keeps the last one.
    assert_eq!(ip_only.last_error, again.last_error);
}

pub(crate) fn amend_records_a_renewal(store: &dyn OrderStore) {
    let o = placed(store, "L1", "3001");
    let renewed = store
        .amend(
            &o.id,
            Placed,
            &Amendment::default(),
            Change::by("billing").with_note("renewed for 1 month"),
        )
        .expect("renew");
    assert_eq!(
        Order {
            updated_ms: o.updated_ms,
            ..renewed.clone()
        },
        o
    );
    assert!(renewed.updated_ms >= o.updated_ms);
    let t = last_transition(store, &o.id);
    assert_eq!((t.from, t.to), (Some(Placed), Placed));
    assert_eq!(
        (t.actor.as_str(), t.note.as_deref()),
        ("billing", Some("renewed for 1 month"))
    );

    // Amending a paid order does not count an attempt, unlike a `Paid → Paid` retry.
    let p = paid(store, "L2", 1);
    let amended = store
        .amend(
            &p.id,
            Paid,
            &Amendment::default(),
            Change::by("api").with_note("looked at"),
        )
        .expect("amend");
    assert_eq!((amended.state, amended.attempts), (Paid, 0));

    // Long texts are cut as for transitions.
    let long = "é".repeat(MAX_TEXT_LEN);
    store
        .amend(
            &o.id,
            Placed,
            &Amendment::default(),
            Change::by("x".repeat(1000)).with_note(long),
        )
        .expect("amend");
    let t = last_transition(store, &o.id);
    assert_eq!(t.actor.len(), 128);
    let note = t.note.expect("note");
    assert!(note.len() <= MAX_TEXT_LEN && note.len() >= MAX_TEXT_LEN - 1);
}

pub(crate) fn amend_is_a_compare_and_set(store: &dyn OrderStore) {
    let o = paid(store, "L1", 1);
    let history = store.history(&o.id).expect("history");
    let rebind = Amendment {
        licence_id: Some("L9".to_owned()),
        licence_ip: Some(None),
        ..Amendment::default()
    };
    for expected in [Placed, New, Placing] {
        assert_eq!(
            store.amend(&o.id, expected, &rebind, Change::by("op").with_note("x")),
            Err(StoreError::Conflict { current: Paid })
        );
    }
    // Nothing changed.
    assert_eq!(store.get(&o.id).expect("get"), o);
    assert_eq!(store.history(&o.id).expect("history"), history);

    let unknown = OrderId::from_parts(1, [1; 10]);
    assert_eq!(
        store.amend(&unknown, Placed, &rebind, Change::by("op")),
        Err(StoreError::NotFound)
    );
    assert_eq!(
        store.amend(&unknown, Placed, &Amendment::default(), Change::by("op")),
        Err(StoreError::NotFound)
    );
}

pub(crate) fn amend_input_is_checked(store: &dyn OrderStore) {
    let o = placed(store, "L1", "3001");
    let history = store.history(&o.id).expect("history");
    let licence = |l: String| Amendment {
        licence_id: Some(l),
        ..Amendment::default()
    };
    for bad in [
        String::new(),
        " ".to_owned(),
        "x".repeat(257),
        "18\n4432".to_owned(),
        "a\u{7}b".to_owned(),
    ] {
        let err = store
            .amend(&o.id, Placed, &licence(bad.clone()), Change::by("op"))
            .expect_err("bad licence accepted");
        assert!(
            matches!(&err, StoreError::Invalid(m) if m.contains("licence ID")),
            "{bad:?}: {err:?}"
        );
    }
    // A service ID is given only on entering `Placed`.
    assert!(matches!(
        store.amend(
            &o.id,
            Placed,
            &Amendment::default(),
            Change::by("op").with_service_id("3002")
        ),
        Err(StoreError::Invalid(_))
    ));
    // The input is checked before the order is looked up.
    let unknown = OrderId::from_parts(1, [1; 10]);
    assert!(matches!(
        store.amend(&unknown, Placed, &licence(String::new()), Change::by("op")),
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(store.get(&o.id).expect("get"), o);
    assert_eq!(store.history(&o.id).expect("history"), history);

    // A rebind may not give a licence a second unpaid order for one tariff.
    let a = store
        .create_or_reuse_new(&new_order("A", 7))
        .expect("a")
        .order;
    let b = store
        .create_or_reuse_new(&new_order("B", 7))
        .expect("b")
        .order;
    let b_history = store.history(&b.id).expect("history");
    assert!(matches!(
        store.amend(
            &b.id,
            New,
            &licence("A".to_owned()),
            Change::by("op").with_note("rebound from licence B to A")
        ),
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(store.get(&a.id).expect("get"), a);
    assert_eq!(store.get(&b.id).expect("get"), b);
    assert_eq!(store.history(&b.id).expect("history"), b_history);
    // Another licence is fine.
    let moved = store
        .amend(&b.id, New, &licence("C".to_owned()), Change::by("op"))
        .expect("rebind");
    assert_eq!((moved.licence_id.as_str(), moved.state), ("C", New));
}

/// Upstream prices of these costs, without tariff details.
pub(crate) fn prices_of(costs: &[UpstreamCost]) -> UpstreamPrices {
    UpstreamPrices {
        tariffs: Vec::new(),
        costs: costs.to_vec(),
    }
}

/// The stored costs and when they were fetched.
pub(crate) fn stored_costs<S: CostStore + ?Sized>(
    store: &S,
) -> Result<Option<(Vec<UpstreamCost>, i64)>, StoreError> {
    Ok(store.upstream()?.map(|(prices, at)| (prices.costs, at)))
}

/// Costs in EUR for the tests: (tariff, months, ten-thousandths).
pub(crate) fn costs(list: &[(u64, i64, i64)]) -> Vec<UpstreamCost> {
    list.iter()
        .map(|&(tariff_id, months, units)| UpstreamCost {
            tariff_id,
            period: Months::new(months).expect("months"),
            cost: Money::from_units(units, "EUR").expect("money"),
        })
        .collect()
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since.as_millis()).expect("ms fit")
}

pub(crate) fn costs_are_replaced(store: &dyn CostStore) {
    assert_eq!(stored_costs(store).expect("read"), None, "never fetched");

    let before = now_ms();
    store
        .replace_upstream(&prices_of(&costs(&[
            (55362, 12, 1_000_000),
            (55361, 3, 270_000),
            (55361, 1, 90_000),
            (7, 1, 0),
        ])))
        .expect("replace");
    let after = now_ms();
    let (stored, at) = stored_costs(store).expect("read").expect("fetched");
    assert_eq!(
        stored,
        costs(&[
            (7, 1, 0),
            (55361, 1, 90_000),
            (55361, 3, 270_000),
            (55362, 12, 1_000_000),
        ]),
        "ordered by tariff, then period"
    );
    assert!(before <= at && at <= after, "{before} <= {at} <= {after}");

    // Other currencies and the largest values are kept exactly.
    let mut second = costs(&[(1, i64::from(Months::MAX), i64::MAX)]);
    second.push(UpstreamCost {
        tariff_id: i64::MAX.unsigned_abs(),
        period: Months::MONTH,
        cost: Money::from_units(1, "USD").expect("money"),
    });
    store
        .replace_upstream(&prices_of(&second))
        .expect("replace");
    let (stored, at2) = stored_costs(store).expect("read").expect("fetched");
    assert_eq!(stored, second, "everything replaced");
    assert!(at2 >= at);

    // Tariffs are kept in upstream's order, with their names and trials.
    let tariff = |tariff_id, name: &str, trial| UpstreamTariff {
        tariff_id,
        intname: name.to_lowercase(),
        additionintname: name.to_owned(),
        name: format!("{name} — «ру»"),
        trial,
    };
    let with_tariffs = UpstreamPrices {
        tariffs: vec![tariff(9, "Zeta", true), tariff(2, "Alpha", false)],
        costs: costs(&[(2, 1, 5), (2, 1, 5)][..1]),
    };
    store.replace_upstream(&with_tariffs).expect("replace");
    let (read, _) = store.upstream().expect("read").expect("fetched");
    assert_eq!(read, with_tariffs);

    // An empty list is a fetch that found nothing, not "never fetched".
    store.replace_upstream(&prices_of(&[])).expect("replace");
    let (stored, at3) = stored_costs(store).expect("read").expect("fetched");
    assert!(stored.is_empty());
    assert!(at3 >= at2);
}

pub(crate) fn invalid_costs_change_nothing(store: &dyn CostStore) {
    // Periods, amounts and currencies are valid by their types (see `money`); what is left
    // is what only a whole list or a database can refuse.
    let good = costs(&[(1, 1, 10_000), (1, 12, 100_000)]);
    let cases: Vec<(Vec<UpstreamCost>, &str)> = vec![
        (costs(&[(u64::MAX, 1, 1)]), "too large"),
        (costs(&[(i64::MAX.unsigned_abs() + 1, 1, 1)]), "too large"),
        (costs(&[(1, 1, 1), (2, 1, 1), (1, 1, 2)]), "twice"),
    ];

    // Before any fetch: still never fetched.
    for (list, needle) in &cases {
        let err = store
            .replace_upstream(&prices_of(list))
            .expect_err("invalid costs accepted");
        assert!(
            matches!(&err, StoreError::Invalid(m) if m.contains(needle)),
            "{err:?} lacks {needle:?}"
        );
    }
    assert_eq!(stored_costs(store).expect("read"), None);

    // After one: the previous costs stay, with their time.
    store.replace_upstream(&prices_of(&good)).expect("replace");
    let previous = stored_costs(store).expect("read").expect("fetched");
    for (list, _) in &cases {
        assert!(matches!(
            store.replace_upstream(&prices_of(list)),
            Err(StoreError::Invalid(_))
        ));
        assert_eq!(stored_costs(store).expect("read").as_ref(), Some(&previous));
    }
}

/// `open` opens the same database each time, as a restarted host would.
pub(crate) fn costs_survive_reopening(open: &dyn Fn() -> Box<dyn CostStore>) {
    let list = costs(&[(2, 1, 5), (1, 6, 30)]);
    let stored = {
        let store = open();
        store.replace_upstream(&prices_of(&list)).expect("replace");
        stored_costs(&*store).expect("read").expect("fetched")
    };
    assert_eq!(stored.0, costs(&[(1, 6, 30), (2, 1, 5)]));
    let store = open();
    assert_eq!(stored_costs(&*store).expect("read"), Some(stored));
}

/// A placed order for `licence` and `tariff`, with service ID `service`.
fn placed_for(store: &dyn OrderStore, licence: &str, tariff: u64, service: &str) -> Order {
    let o = paid(store, licence, tariff);
    store.claim_for_placing(&o.id).expect("claim");
    store
        .transition(
            &o.id,
            Placing,
            Placed,
            Change::by("worker").with_service_id(service),
        )
        .expect("place")
}

fn renewal(order: &OrderId, key: Option<&str>) -> NewOperation {
    NewOperation {
        order_id: order.clone(),
        kind: OperationKind::Renew,
        key: key.map(str::to_owned),
        request: serde_json::json!({"period_months": 1}),
        actor: "billing".to_owned(),
    }
}

pub(crate) fn operations_are_exclusive_and_keyed<S: OrderStore + OperationStore>(store: &S) {
    let o = placed_for(store, "L1", 1, "S1");
    let Began::New(first) = store
        .begin_operation(&renewal(&o.id, Some("inv-1")))
        .expect("begin")
    else {
        panic!("a new key begins a new operation");
    };
    assert_eq!(
        (first.state, first.kind),
        (OperationState::Pending, OperationKind::Renew)
    );
    // The same key names the same operation, whatever it asks.
    let Began::Existing(again) = store
        .begin_operation(&renewal(&o.id, Some("inv-1")))
        .expect("again")
    else {
        panic!("the same key finds the operation");
    };
    assert_eq!(again.id, first.id);
    // Another key, or none, waits for the open one to end.
    for key in [Some("inv-2"), None] {
        let err = store
            .begin_operation(&renewal(&o.id, key))
            .expect_err("open");
        assert!(
            matches!(err, StoreError::OperationOpen { id, .. } if id == first.id),
            "{err:?}"
        );
    }
    // A key names one kind of operation.
    let suspend = NewOperation {
        kind: OperationKind::Suspend,
        ..renewal(&o.id, Some("inv-1"))
    };
    assert!(matches!(
        store.begin_operation(&suspend),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.begin_operation(&renewal(&o.id, Some("bad key"))),
        Err(StoreError::Invalid(_))
    ));
    let unknown = OrderId::from_parts(1, [9; 10]);
    assert_eq!(
        store.begin_operation(&renewal(&unknown, None)),
        Err(StoreError::NotFound)
    );
    // Marked about to send, then settled with its order in one transaction.
    store
        .mark_sending(&SendMarker::Operation(first.id))
        .expect("mark");
    assert_eq!(
        store.operation(first.id).expect("op").state,
        OperationState::Sending
    );
    let day = time::macros::date!(2027 - 03 - 01);
    let done = store
        .settle_operation(
            first.id,
            &[OperationState::Pending, OperationState::Sending],
            OperationEnd {
                state: OperationState::Done,
                result: Some(serde_json::json!({"expires_at": "2027-03-01"})),
                error: None,
                settled_by: None,
            },
            Some(OrderEffect {
                from: Placed,
                to: None,
                amendment: Amendment {
                    expires_on: Some(Some(day)),
                    ..Amendment::default()
                },
                change: Change::by("billing").with_note("renewed"),
            }),
        )
        .expect("settle");
    assert_eq!(done.state, OperationState::Done);
    assert_eq!(store.get(&o.id).expect("get").expires_on, Some(day));
    // Settled once: not again.
    let end = OperationEnd {
        state: OperationState::Failed,
        result: None,
        error: Some("x".to_owned()),
        settled_by: None,
    };
    assert!(matches!(
        store.settle_operation(first.id, &[OperationState::Sending], end.clone(), None),
        Err(StoreError::Invalid(_))
    ));
    // An effect whose order moved: nothing changes, the operation stays open.
    let Began::New(second) = store
        .begin_operation(&renewal(&o.id, None))
        .expect("second")
    else {
        panic!("new");
    };
    let wrong = OrderEffect {
        from: Suspended,
        to: Some(Placed),
        amendment: Amendment::default(),
        change: Change::by("x"),
    };
    let err = store
        .settle_operation(
            second.id,
            &[OperationState::Pending],
            OperationEnd {
                state: OperationState::Done,
                ..end.clone()
            },
            Some(wrong),
        )
        .expect_err("wrong state");
    assert!(
        matches!(err, StoreError::Conflict { current: Placed }),
        "{err:?}"
    );
    assert_eq!(
        store.operation(second.id).expect("op").state,
        OperationState::Pending
    );
    // A pending one may be dropped (it sent nothing); then its key is free again.
    store.drop_operation(second.id).expect("drop");
    assert_eq!(store.operation(second.id), Err(StoreError::NoOperation));
    let ops = store.operations(&o.id).expect("ops");
    assert_eq!(ops.iter().map(|op| op.id).collect::<Vec<_>>(), [first.id]);
}

pub(crate) fn operations_are_recovered<S: OrderStore + OperationStore>(store: &S) {
    let a = placed_for(store, "A", 1, "SA");
    let b = placed_for(store, "B", 1, "SB");
    let Began::New(sending) = store
        .begin_operation(&renewal(&a.id, Some("k")))
        .expect("a")
    else {
        panic!("new");
    };
    store
        .mark_sending(&SendMarker::Operation(sending.id))
        .expect("mark");
    let Began::New(pending) = store
        .begin_operation(&renewal(&b.id, Some("k")))
        .expect("b")
    else {
        panic!("new");
    };
    let found = store.recover_interrupted().expect("recover");
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
    // In doubt, it holds its order: nothing else begins, and its key answers it.
    assert!(matches!(
        store.begin_operation(&renewal(&a.id, None)),
        Err(StoreError::OperationOpen { .. })
    ));
    assert!(matches!(
        store.begin_operation(&renewal(&a.id, Some("k"))),
        Ok(Began::Existing(op)) if op.state == OperationState::InDoubt
    ));
    assert_eq!(
        store
            .operations_in(OperationState::InDoubt)
            .expect("in doubt")
            .len(),
        1
    );
    // Dropped: the same key begins afresh.
    assert!(matches!(
        store.begin_operation(&renewal(&b.id, Some("k"))),
        Ok(Began::New(_))
    ));
}

pub(crate) fn events_go_with_their_changes<S: OrderStore + EventStore>(store: &S) {
    let o = placed_for(store, "L1", 1, "S1");
    let events = store.events_after(0, 100).expect("events");
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventKind::Paid, EventKind::Placed]);
    assert_eq!(events[1].order_id.as_ref(), Some(&o.id));
    assert_eq!(events[1].data["order"]["state"], "placed");
    assert!(events[0].id < events[1].id);
    // An amendment announces only what it says it is.
    store
        .amend(&o.id, Placed, &Amendment::default(), Change::by("x"))
        .expect("amend");
    assert_eq!(store.events_after(events[1].id, 100).expect("events"), []);
    store
        .amend(
            &o.id,
            Placed,
            &Amendment::default(),
            Change::by("x").announced(EventKind::Renewed, serde_json::json!({"period_months": 1})),
        )
        .expect("amend");
    let renewed = store.events_after(events[1].id, 100).expect("events");
    assert_eq!(renewed.len(), 1);
    assert_eq!(renewed[0].data["change"]["period_months"], 1);
    // A dedupe key records an event once.
    let key = Some("balance.low:2026-12-02");
    let first = store
        .emit(EventKind::BalanceLow, None, serde_json::json!({}), key)
        .expect("emit");
    assert!(first.is_some());
    assert_eq!(
        store
            .emit(EventKind::BalanceLow, None, serde_json::json!({}), key)
            .expect("again"),
        None
    );
    // Deliveries: claimed under a lease by one deliverer, then delivered or put back.
    let (undelivered, _) = store.undelivered().expect("undelivered");
    assert_eq!(undelivered, 4);
    let now = 10_i64.pow(13);
    let claimed = store.claim_deliveries(now, 60_000, 2).expect("claim");
    assert_eq!(claimed.len(), 2);
    let rest = store
        .claim_deliveries(now, 60_000, 10)
        .expect("claim the rest");
    assert_eq!(rest.len(), 2);
    assert!(
        store
            .claim_deliveries(now, 60_000, 10)
            .expect("none")
            .is_empty()
    );
    store.delivered(claimed[0].id).expect("delivered");
    store
        .delivery_failed(claimed[1].id, now + 1, "HTTP 500")
        .expect("failed");
    assert_eq!(store.delivery_attempts(claimed[1].id).expect("attempts"), 1);
    let retry = store.claim_deliveries(now + 1, 60_000, 10).expect("retry");
    assert_eq!(
        retry.iter().map(|e| e.id).collect::<Vec<_>>(),
        [claimed[1].id]
    );
    // After the lease, unanswered claims come back.
    let back = store
        .claim_deliveries(now + 61_000, 60_000, 10)
        .expect("lease over");
    assert_eq!(back.len(), 3);
    assert_eq!(store.undelivered().expect("undelivered").0, 3);
    assert_eq!(store.purge_events(i64::MAX, false).expect("purge"), 1);
    assert_eq!(store.events_after(0, 100).expect("events").len(), 3);
}

pub(crate) fn lists_counts_imports_and_purges<S: OrderStore + CostStore>(store: &S) {
    let a = placed_for(store, "A", 1, "SA");
    let b = placed_for(store, "B", 2, "SB");
    let day = |d: u8| time::Date::from_calendar_date(2027, time::Month::May, d).expect("date");
    for (o, d) in [(&a, 10), (&b, 20)] {
        store
            .amend(
                &o.id,
                Placed,
                &Amendment {
                    expires_on: Some(Some(day(d))),
                    ..Amendment::default()
                },
                Change::by("sync"),
            )
            .expect("expiry");
    }
    let by = |f: ListFilter| {
        store
            .list(&f)
            .expect("list")
            .into_iter()
            .map(|o| o.licence_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        by(ListFilter {
            expires_by: Some(day(15)),
            ..ListFilter::default()
        }),
        ["A"]
    );
    assert_eq!(
        by(ListFilter {
            tariff_id: Some(2),
            ..ListFilter::default()
        }),
        ["B"]
    );
    assert_eq!(
        by(ListFilter {
            offset: 1,
            ..ListFilter::default()
        }),
        ["A"]
    );
    let imported = store
        .import_placed(&new_order("C", 3), "SC", Some(day(1)), "reconcile")
        .expect("import");
    assert_eq!(
        (
            imported.state,
            imported.upstream_service_id.as_deref(),
            imported.expires_on
        ),
        (Placed, Some("SC"), Some(day(1)))
    );
    assert!(matches!(
        store.import_placed(&new_order("D", 3), "SA", None, "reconcile"),
        Err(StoreError::Invalid(_))
    ));
    // Unpaid and cancelled long ago: purged, with its history; a paid-then-cancelled one stays.
    let abandoned = store
        .create_or_reuse_new(&new_order("E", 4))
        .expect("new")
        .order;
    store
        .transition(&abandoned.id, New, Cancelled, Change::by("expiry"))
        .expect("cancel");
    let refunded = paid(store, "F", 4);
    store
        .transition(&refunded.id, Paid, Cancelled, Change::by("billing"))
        .expect("refund");
    let counts = store.counts().expect("counts");
    assert_eq!(counts.get(&Placed), Some(&3));
    assert_eq!(counts.get(&Cancelled), Some(&2));
    assert_eq!(store.purge_abandoned(i64::MAX).expect("purge"), 1);
    assert_eq!(store.get(&abandoned.id), Err(StoreError::NotFound));
    assert_eq!(store.get(&refunded.id).expect("kept").state, Cancelled);
    // The balance.
    assert_eq!(store.balance().expect("none"), None);
    let money = Money::from_units(1_234_500, "EUR").expect("money");
    store.record_balance(&money).expect("record");
    store.record_balance(&money).expect("again");
    assert_eq!(
        store.balance().expect("balance").map(|(m, _)| m),
        Some(money)
    );
}
