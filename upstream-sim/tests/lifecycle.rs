//! A module's life upstream over a real socket: ordered with a reference, listed, read, quoted,
//! renewed, suspended and resumed, and expired or renewed automatically by the clock.

mod common;

use common::{Upstream, error_of, pair, refusal, xml};
use reqwest::Method;
use upstream_sim::{Date, DateError, ServiceStatus, State};

const ORDER: &str = "addition.order.param";

fn date(s: &str) -> Date {
    s.parse().expect("a date")
}

/// Orders Dr.Web lite on licence 184431 for `period` months; the new service's ID.
fn order(upstream: &Upstream, period: &str, extra: &[(&str, &str)]) -> String {
    let mut params = vec![
        ("item", "184431"),
        ("period", period),
        ("pricelist", "55361"),
        ("skipbasket", "on"),
        ("sok", "ok"),
    ];
    params.extend_from_slice(extra);
    let answer = upstream.call(ORDER, &params);
    common::child_text(&answer.body, "id").expect("an ID")
}

fn clock(upstream: &Upstream, body: &str) -> serde_json::Value {
    let moved = upstream.control(Method::POST, "/sim/clock", Some(body));
    assert_eq!(moved.status, 200, "{moved:?}");
    serde_json::from_str(&moved.body).expect("JSON")
}

#[test]
fn a_module_is_listed_read_and_its_balance_shown() {
    let upstream = Upstream::start();
    assert_eq!(upstream.call("addition", &[]).body, xml("<doc/>"));
    order(
        &upstream,
        "12",
        &[("autoprolong", "12"), ("remoteid", "ord-1")],
    );
    order(&upstream, "1", &[]);

    let listed = upstream.call("addition", &[("p_cnt", "100"), ("p_num", "1")]);
    assert_eq!(listed.status, 200);
    assert!(listed.content_type.starts_with("text/xml"), "{listed:?}");
    assert_eq!(
        listed.body,
        xml("<doc>\
             <elem><id>100001</id><item>184431</item><pricelist>55361</pricelist>\
             <expiredate>2027-12-01</expiredate><item_status orig=\"2\">Active</item_status>\
             <status>2</status><autoprolong>12</autoprolong><remoteid>ord-1</remoteid></elem>\
             <elem><id>100002</id><item>184431</item><pricelist>55361</pricelist>\
             <expiredate>2027-01-01</expiredate><item_status orig=\"2\">Active</item_status>\
             <status>2</status><autoprolong>null</autoprolong></elem></doc>")
    );

    let form = upstream.call("addition.edit", &[("elid", "100001")]);
    assert_eq!(
        form.body,
        xml(
            "<doc><elid>100001</elid><item>184431</item><pricelist>55361</pricelist>\
             <expiredate>2027-12-01</expiredate><status>2</status>\
             <autoprolong>12</autoprolong><remoteid>ord-1</remoteid></doc>"
        )
    );

    let balance = upstream.call("dashboard.info", &[]);
    assert_eq!(
        balance.body,
        xml("<doc><elem><balance>61.50 EUR</balance>\
             <realbalance>61.50 EUR</realbalance></elem></doc>")
    );
    let json = upstream.call("dashboard.info", &[("out", "json")]);
    let value: serde_json::Value = serde_json::from_str(&json.body).expect("JSON");
    assert_eq!(value["doc"]["elem"]["balance"]["$"], "61.50 EUR");

    let json = upstream.call("addition", &[("out", "json")]);
    let value: serde_json::Value = serde_json::from_str(&json.body).expect("JSON");
    assert_eq!(value["doc"]["elem"][0]["item_status"]["$orig"], "2");
    assert_eq!(value["doc"]["elem"][0]["remoteid"]["$"], "ord-1");
    assert_eq!(value["doc"]["elem"][1]["expiredate"]["$"], "2027-01-01");
}

#[test]
fn bitninja_needs_its_email_and_keeps_it() {
    let upstream = Upstream::start();
    let mut params = vec![
        ("item", "184432"),
        ("period", "6"),
        ("pricelist", "55371"),
        ("skipbasket", "on"),
        ("sok", "ok"),
    ];
    let refused = upstream.call(ORDER, &params);
    assert_eq!(refusal(&refused), pair("missed", "bitninja_email"));
    assert_eq!(
        error_of(&refused.body).map(|e| e.msg).as_deref(),
        Some("The field 'bitninja_email' is required")
    );
    params.push(("bitninja_email", "ops@example.com"));
    let placed = upstream.call(ORDER, &params);
    assert_eq!(placed.body, xml("<doc><id>100001</id></doc>"));
    let services = upstream.handle.sim().services();
    assert_eq!(services[0].expires, date("2027-06-01"));
    assert_eq!(services[0].fields["bitninja_email"], "ops@example.com");
    assert_eq!(upstream.balance(), "46.0000");
}

#[test]
fn a_renewal_is_quoted_then_confirmed() {
    let upstream = Upstream::start();
    let id = order(&upstream, "1", &[]);
    let quote = upstream.call("service.prolong", &[("elid", &id), ("period", "1")]);
    assert_eq!(
        quote.body,
        xml(
            "<doc><elid>100001</elid><period>1</period><expiredate>2027-01-01</expiredate>\
             <newexpiredate>2027-02-01</newexpiredate><status>2</status>\
             <slist name=\"period\"><val key=\"1\">3.50 EUR per month</val>\
             <val key=\"12\">35.00 EUR per 12 months</val></slist></doc>"
        )
    );
    assert_eq!(upstream.balance(), "96.5000");

    let renewed = upstream.call(
        "service.prolong",
        &[("elid", &id), ("period", "12"), ("sok", "ok")],
    );
    assert_eq!(
        renewed.body,
        xml("<doc><ok/><id>100001</id><doc><newexpiredate>2028-01-01</newexpiredate></doc></doc>")
    );
    assert_eq!(upstream.balance(), "61.5000");
    let service = &upstream.handle.sim().services()[0];
    assert_eq!(
        (service.expires, &service.renewals[..]),
        (date("2028-01-01"), &[12][..])
    );
}

#[test]
fn the_renewal_window_refuses_early_renewals() {
    let upstream = Upstream::with(State {
        renew_window_days: Some(30),
        ..State::default()
    });
    let id = order(&upstream, "12", &[]);
    let early = upstream.call(
        "service.prolong",
        &[("elid", &id), ("period", "12"), ("sok", "ok")],
    );
    assert_eq!(
        early.body,
        xml("<doc><error type=\"value\" object=\"period\">\
             <param name=\"object\" type=\"msg\" msg=\"period\">period</param>\
             <param name=\"value\">2027-11-01</param>\
             <msg>The service can be renewed only after 2027-11-01</msg></error></doc>")
    );
    assert_eq!(upstream.balance(), "65.0000");

    let report = clock(&upstream, r#"{"today": "2027-11-01"}"#);
    assert_eq!(
        report,
        serde_json::json!({"today": "2027-11-01", "renewed": [], "suspended": []})
    );
    let renewed = upstream.call(
        "service.prolong",
        &[("elid", &id), ("period", "12"), ("sok", "ok")],
    );
    assert_eq!(
        renewed.body,
        xml("<doc><ok/><id>100001</id><doc><newexpiredate>2028-12-01</newexpiredate></doc></doc>")
    );
    assert_eq!(upstream.balance(), "30.0000");
}

#[test]
fn suspend_and_resume_change_the_status_at_once() {
    let upstream = Upstream::start();
    let id = order(&upstream, "1", &[]);
    let suspended = upstream.call("addition.suspend", &[("elid", &id)]);
    assert_eq!(suspended.body, xml("<doc><ok/></doc>"));
    assert!(
        upstream
            .call("addition", &[])
            .body
            .contains("<item_status orig=\"3_employeesuspend\">Suspended by Administrator</item_status><status>3</status>")
    );
    let resumed = upstream.call("addition.resume", &[("elid", &id), ("sok", "ok")]);
    assert_eq!(resumed.body, xml("<doc><ok/></doc>"));
    assert_eq!(
        upstream.handle.sim().services()[0].status,
        ServiceStatus::Active
    );
    assert_eq!(
        refusal(&upstream.call("addition.resume", &[("elid", "5")])),
        pair("value", "elid")
    );
    upstream.call("addition.delete", &[("elid", &id)]);
    assert_eq!(
        refusal(&upstream.call("addition.suspend", &[("elid", &id)])),
        pair("value", "elid")
    );
}

#[test]
fn the_clock_suspends_expired_services_and_renews_autoprolonged_ones() {
    let upstream = Upstream::start();
    let lapsing = order(&upstream, "1", &[]);
    let renewing = order(&upstream, "1", &[("autoprolong", "1")]);
    assert_eq!(upstream.balance(), "93.0000");
    let today = upstream.control(Method::GET, "/sim/clock", None);
    assert_eq!(today.body, r#"{"today":"2026-12-01"}"#);

    let report = clock(&upstream, r#"{"advance_days": 30}"#);
    assert_eq!(
        report,
        serde_json::json!({"today": "2026-12-31", "renewed": [], "suspended": []})
    );
    let report = clock(&upstream, r#"{"advance_days": 1}"#);
    assert_eq!(
        report,
        serde_json::json!({"today": "2027-01-01", "renewed": [100002], "suspended": [100001]})
    );
    assert_eq!(upstream.balance(), "89.5000");
    let listed = upstream.call("addition", &[]).body;
    assert!(
        listed.contains(
            "<id>100001</id><item>184431</item><pricelist>55361</pricelist>\
             <expiredate>2027-01-01</expiredate>\
             <item_status orig=\"3_autosuspend\">Suspended</item_status><status>3</status>"
        ),
        "{listed}"
    );
    assert!(
        listed.contains(
            "<id>100002</id><item>184431</item><pricelist>55361</pricelist>\
             <expiredate>2027-02-01</expiredate><item_status orig=\"2\">Active</item_status>"
        ),
        "{listed}"
    );
    let services = upstream.handle.sim().services();
    assert_eq!(services[1].renewals, [1]);

    // An expired service cannot be resumed: it must be renewed, which resumes it.
    let refused = upstream.call("addition.resume", &[("elid", &lapsing)]);
    assert_eq!(refusal(&refused), pair("value", "elid"));
    let renewed = upstream.call(
        "service.prolong",
        &[("elid", &lapsing), ("period", "1"), ("sok", "ok")],
    );
    assert!(
        renewed
            .body
            .contains("<newexpiredate>2027-02-01</newexpiredate>")
    );
    assert_eq!(
        upstream.handle.sim().services()[0].status,
        ServiceStatus::Active
    );
    assert_eq!(upstream.balance(), "86.0000");

    // Short of money, an autoprolonged service is suspended instead.
    let mut state = upstream.handle.sim().state();
    state.account.balance = "1.0000".parse().expect("amount");
    upstream.handle.sim().set_state(state).expect("state");
    let report = upstream.handle.sim().set_today(date("2027-02-01"));
    assert_eq!(report.suspended, [100001, 100002]);
    assert!(report.renewed.is_empty());
    assert_eq!(upstream.balance(), "1.0000");
    assert_eq!(renewing, "100002");
    assert_eq!(upstream.handle.sim().today(), date("2027-02-01"));

    // The state shows the clock and the services' life; a reset goes back to the start.
    let state = upstream.control(Method::GET, "/sim/state", None);
    let state: serde_json::Value = serde_json::from_str(&state.body).expect("JSON");
    assert_eq!(state["today"], "2027-02-01");
    assert_eq!(state["services"][1]["status"], "expired");
    assert_eq!(state["services"][1]["expires"], "2027-02-01");
    assert_eq!(state["services"][1]["autoprolong"], 1);
    upstream.control(Method::POST, "/sim/reset", None);
    assert_eq!(upstream.handle.sim().today(), date("2026-12-01"));
}

#[test]
fn clock_moves_are_checked() {
    let upstream = Upstream::start();
    for bad in [
        "{}",
        r#"{"advance_days": 1, "today": "2027-01-01"}"#,
        r#"{"advance_days": -1}"#,
        r#"{"today": "2027-02-30"}"#,
        r#"{"today": "soon"}"#,
        r#"{"days": 3}"#,
        "not json",
    ] {
        let refused = upstream.control(Method::POST, "/sim/clock", Some(bad));
        assert_eq!(refused.status, 400, "{bad}: {refused:?}");
        let why: serde_json::Value = serde_json::from_str(&refused.body).expect("JSON");
        assert!(why["error"].is_string(), "{bad}");
    }
    let far = upstream.control(
        Method::POST,
        "/sim/clock",
        Some(r#"{"advance_days": 4294967295}"#),
    );
    assert_eq!(far.status, 400, "{far:?}");
    assert_eq!(
        upstream.handle.sim().advance_days(u32::MAX),
        Err(DateError::OutOfRange)
    );
    assert_eq!(upstream.handle.sim().today(), date("2026-12-01"));
    let report = upstream.handle.sim().advance_days(0).expect("moved");
    assert_eq!(report.today, date("2026-12-01"));
}
