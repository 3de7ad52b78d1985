//! Faults, the journal of calls and the control API, over a real socket.

mod common;

use common::{AUTHINFO, Upstream, child_text, error_of};
use reqwest::Method;
use upstream_sim::{Fault, FaultSpec, Outcome};

const ORDER: &str = "addition.order.param";

const ORDER_PARAMS: &[(&str, &str)] = &[
    ("item", "184431"),
    ("period", "12"),
    ("pricelist", "55361"),
    ("autoprolong", "12"),
    ("skipbasket", "on"),
    ("sok", "ok"),
];

impl Upstream {
    fn arm(&self, spec: FaultSpec) {
        self.handle.sim().arm(spec).expect("armed");
    }

    fn order(&self) -> common::Answer {
        self.call(ORDER, ORDER_PARAMS)
    }
}

fn is_xml_doc(body: &str) -> bool {
    roxmltree::Document::parse(body).is_ok_and(|d| d.root_element().has_tag_name("doc"))
}

#[test]
fn a_delay_answers_normally_and_takes_effect() {
    let upstream = Upstream::start();
    upstream.arm(FaultSpec::new(Fault::Delay { ms: 20 }).on(ORDER));
    upstream.arm(FaultSpec::new(Fault::Delay { ms: 20 }).on(ORDER).applied());
    for _ in 0..2 {
        let answer = upstream.order();
        assert!(child_text(&answer.body, "id").is_some(), "{answer:?}");
    }
    assert_eq!(upstream.handle.sim().services().len(), 2);
    let calls = upstream.handle.sim().calls();
    assert!(
        calls
            .iter()
            .all(|c| c.carried_out && c.fault == Some(Fault::Delay { ms: 20 }))
    );
}

#[test]
fn a_status_fault_answers_a_5xx_page() {
    let upstream = Upstream::start();
    upstream.arm(FaultSpec::new(Fault::Status { code: 503 }).on(ORDER));
    let answer = upstream.order();
    assert_eq!(answer.status, 503);
    assert!(answer.content_type.starts_with("text/html"), "{answer:?}");
    assert!(
        answer.body.contains("503 Service Unavailable"),
        "{}",
        answer.body
    );
    assert!(!is_xml_doc(&answer.body));
    assert_eq!(upstream.balance(), "100.0000");
    assert!(upstream.handle.sim().services().is_empty());
    let call = &upstream.handle.sim().calls()[0];
    assert_eq!(call.fault, Some(Fault::Status { code: 503 }));
    assert!(!call.carried_out);

    upstream.arm(FaultSpec::new(Fault::Status { code: 500 }).applied());
    assert_eq!(upstream.order().status, 500);
    assert_eq!(upstream.handle.sim().services().len(), 1);
    assert_eq!(upstream.balance(), "65.0000");
}

#[test]
fn an_html_fault_answers_a_page_with_http_200() {
    let upstream = Upstream::start();
    upstream.arm(FaultSpec::new(Fault::Html));
    let answer = upstream.call("pricelist.export", &[("itemtype", "addition")]);
    assert_eq!(answer.status, 200);
    assert!(answer.content_type.starts_with("text/html"), "{answer:?}");
    let page = roxmltree::Document::parse(
        answer
            .body
            .strip_prefix("<!DOCTYPE html>\n")
            .unwrap_or(&answer.body),
    )
    .expect("a well-formed page");
    assert!(page.root_element().has_tag_name("html"));
    // The fault is used up.
    let next = upstream.call("pricelist.export", &[("itemtype", "addition")]);
    assert!(is_xml_doc(&next.body));
}

#[test]
fn a_truncated_answer_is_the_right_document_cut_in_half() {
    let upstream = Upstream::start();
    let whole = upstream
        .call("pricelist.export", &[("itemtype", "addition")])
        .body;
    upstream.arm(FaultSpec::new(Fault::Truncated).on("pricelist.export"));
    let cut = upstream
        .call("pricelist.export", &[("itemtype", "addition")])
        .body;
    assert_eq!(cut.len(), whole.len() / 2);
    assert!(whole.starts_with(&cut));
    assert!(roxmltree::Document::parse(&cut).is_err());

    upstream.arm(FaultSpec::new(Fault::Truncated).on(ORDER));
    let not_placed = upstream.order();
    assert!(!is_xml_doc(&not_placed.body));
    assert!(upstream.handle.sim().services().is_empty());
    assert_eq!(upstream.balance(), "100.0000");

    upstream.arm(FaultSpec::new(Fault::Truncated).on(ORDER).applied());
    let placed = upstream.order();
    let services = upstream.handle.sim().services();
    assert_eq!(services.len(), 1);
    let full = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<doc><id>{}</id></doc>",
        services[0].id
    );
    assert_eq!(placed.body, full[..full.len() / 2]);
    assert_eq!(upstream.balance(), "65.0000");
}

#[test]
fn an_empty_fault_answers_nothing_with_http_200() {
    let upstream = Upstream::start();
    upstream.arm(FaultSpec::new(Fault::Empty).on(ORDER));
    let answer = upstream.order();
    assert_eq!((answer.status, answer.body.as_str()), (200, ""));
    assert!(upstream.handle.sim().services().is_empty());
    upstream.arm(FaultSpec::new(Fault::Empty).on(ORDER).applied());
    assert_eq!(upstream.order().body, "");
    assert_eq!(upstream.handle.sim().services().len(), 1);
}

#[test]
fn a_cut_closes_the_connection_and_an_applied_cut_leaves_the_order_placed() {
    let upstream = Upstream::start();
    upstream.arm(FaultSpec::new(Fault::Cut).on(ORDER).applied());
    let lost = upstream.try_call(Some(AUTHINFO), ORDER, ORDER_PARAMS);
    let error = lost.expect_err("no answer at all");
    assert!(!error.is_status() && !error.is_timeout(), "{error:?}");
    // The order is in doubt for the client, but placed and paid upstream, exactly once.
    let services = upstream.handle.sim().services();
    assert_eq!(services.len(), 1);
    assert_eq!(services[0].licence, "184431");
    assert_eq!(upstream.balance(), "65.0000");
    assert_eq!(upstream.handle.sim().count(ORDER), 1);

    upstream.arm(FaultSpec::new(Fault::Cut).on(ORDER));
    assert!(
        upstream
            .try_call(Some(AUTHINFO), ORDER, ORDER_PARAMS)
            .is_err()
    );
    assert_eq!(upstream.handle.sim().services().len(), 1);
    assert_eq!(upstream.balance(), "65.0000");
    let calls = upstream.handle.sim().calls();
    assert_eq!(
        calls.iter().map(|c| c.carried_out).collect::<Vec<_>>(),
        [true, false]
    );

    // The server goes on answering.
    assert!(child_text(&upstream.order().body, "id").is_some());
}

#[test]
fn faults_hit_their_func_for_the_given_number_of_calls() {
    let upstream = Upstream::start();
    upstream.arm(FaultSpec::new(Fault::Empty).on("addition.delete").times(2));
    assert!(is_xml_doc(&upstream.call("pricelist.export", &[]).body));
    let delete = [("elid", "1"), ("sok", "ok")];
    assert_eq!(upstream.call("addition.delete", &delete).body, "");
    assert_eq!(upstream.call("addition.delete", &delete).body, "");
    let third = upstream.call("addition.delete", &delete);
    assert_eq!(
        error_of(&third.body).map(|e| e.object).as_deref(),
        Some("elid")
    );
    assert!(upstream.handle.sim().pending_faults().is_empty());
}

#[test]
fn calls_are_counted_per_func() {
    let upstream = Upstream::start();
    upstream.order();
    upstream.call("pricelist.export", &[]);
    upstream.call("pricelist.export", &[]);
    let sim = upstream.handle.sim();
    assert_eq!(sim.count(ORDER), 1);
    assert_eq!(sim.count("pricelist.export"), 2);
    assert_eq!(sim.count("addition.edit"), 0);
    let counts: Vec<_> = sim.counts().into_iter().collect();
    assert_eq!(
        counts,
        [(ORDER.to_owned(), 1), ("pricelist.export".to_owned(), 2)]
    );
    let calls = sim.calls();
    assert_eq!(calls.iter().map(|c| c.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(calls[0].outcome, Outcome::Ok);
    let first_params: Vec<_> = calls[0]
        .params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .filter(|(k, _)| !["func", "out"].contains(k))
        .collect();
    assert_eq!(first_params, ORDER_PARAMS);
    sim.clear_calls();
    assert!(sim.calls().is_empty());
}

#[test]
fn the_control_api_arms_faults_and_shows_calls_and_state() {
    let upstream = Upstream::start();
    let armed = upstream.control(
        Method::POST,
        "/sim/faults",
        Some(r#"{"func": "addition.order.param", "kind": "cut", "apply": true}"#),
    );
    assert_eq!(armed.status, 201, "{armed:?}");
    let pending: serde_json::Value =
        serde_json::from_str(&upstream.control(Method::GET, "/sim/faults", None).body)
            .expect("JSON");
    assert_eq!(pending[0]["kind"], "cut");
    assert_eq!(pending[0]["times"], 1);

    assert!(
        upstream
            .try_call(Some(AUTHINFO), ORDER, ORDER_PARAMS)
            .is_err()
    );

    let calls = upstream.control(Method::GET, "/sim/calls", None);
    assert!(calls.content_type.starts_with("application/json"));
    assert!(!calls.body.contains("secret"), "{}", calls.body);
    let calls: serde_json::Value = serde_json::from_str(&calls.body).expect("JSON");
    assert_eq!(calls["counts"][ORDER], 1);
    let call = &calls["calls"][0];
    assert_eq!(call["func"], ORDER);
    assert_eq!(call["fault"]["kind"], "cut");
    assert_eq!(call["carried_out"], true);
    assert_eq!(call["outcome"]["result"], "ok");
    assert!(call["at_unix_ms"].as_u64().is_some_and(|ms| ms > 0));
    assert!(
        call["params"]
            .as_array()
            .is_some_and(|p| p.contains(&serde_json::json!(["item", "184431"])))
    );

    let state = upstream.control(Method::GET, "/sim/state", None);
    assert!(!state.body.contains("secret"), "{}", state.body);
    let state: serde_json::Value = serde_json::from_str(&state.body).expect("JSON");
    assert_eq!(state["account"]["balance"], "65.0000");
    assert_eq!(state["account"]["currency"], "EUR");
    assert_eq!(state["services"][0]["licence"], "184431");
    assert_eq!(state["licences"]["184432"], "192.0.2.11");

    for bad in [
        r#"{"kind": "explode"}"#,
        r#"{"kind": "status", "code": 404}"#,
        r#"{"kind": "html", "times": 0}"#,
        "not json",
    ] {
        let refused = upstream.control(Method::POST, "/sim/faults", Some(bad));
        assert_eq!(refused.status, 400, "{bad}");
        let why: serde_json::Value = serde_json::from_str(&refused.body).expect("JSON");
        assert!(why["error"].is_string());
    }

    upstream.control(
        Method::POST,
        "/sim/faults",
        Some(r#"{"kind": "empty", "times": 5}"#),
    );
    assert_eq!(
        upstream.control(Method::DELETE, "/sim/faults", None).status,
        204
    );
    assert!(upstream.handle.sim().pending_faults().is_empty());

    assert_eq!(
        upstream.control(Method::POST, "/sim/reset", None).status,
        204
    );
    assert_eq!(upstream.balance(), "100.0000");
    assert!(upstream.handle.sim().services().is_empty());
    assert!(upstream.handle.sim().calls().is_empty());
}

#[test]
fn the_state_can_be_replaced_through_the_control_api() {
    let upstream = Upstream::start();
    let state = r#"{
        "account": {"user": "reseller", "password": "p4ss", "balance": "1.0000", "currency": "USD"},
        "licences": {"9": "203.0.113.9"},
        "tariffs": [{"id": 7, "intname": "kc", "name": "KernelCare",
                     "additionintname": "KernelCare",
                     "prices": [{"months": 1, "cost": "1.0000"}]}]
    }"#;
    let replaced = upstream.control(Method::PUT, "/sim/state", Some(state));
    assert_eq!(replaced.status, 204, "{replaced:?}");
    let placed = upstream
        .try_call(
            Some("reseller:p4ss"),
            ORDER,
            &[
                ("item", "9"),
                ("period", "1"),
                ("pricelist", "7"),
                ("skipbasket", "on"),
                ("sok", "ok"),
            ],
        )
        .expect("an answer");
    assert!(child_text(&placed.body, "id").is_some(), "{placed:?}");
    assert_eq!(upstream.balance(), "0.0000");

    let float = state.replace("\"1.0000\"", "1.0");
    assert_eq!(
        upstream
            .control(Method::PUT, "/sim/state", Some(&float))
            .status,
        400
    );
    assert_eq!(
        upstream
            .control(Method::PUT, "/sim/state", Some("{}"))
            .status,
        400
    );
}

#[test]
fn a_redirect_answers_302_with_nothing_carried_out() {
    let upstream = Upstream::start();
    upstream.arm(FaultSpec::new(Fault::Redirect).on(ORDER));
    let moved = upstream.order();
    assert_eq!(moved.status, 302, "{moved:?}");
    assert_eq!(moved.location, "https://example.invalid/billmgr");
    assert_eq!(moved.body, "");
    assert!(upstream.handle.sim().services().is_empty());
    assert_eq!(upstream.balance(), "100.0000");

    upstream.arm(FaultSpec::new(Fault::Redirect).on(ORDER).applied());
    assert_eq!(upstream.order().status, 302);
    assert_eq!(upstream.handle.sim().services().len(), 1);
    assert_eq!(upstream.balance(), "65.0000");
    let calls = upstream.handle.sim().calls();
    assert_eq!(
        calls
            .iter()
            .map(|c| (c.fault.clone(), c.carried_out))
            .collect::<Vec<_>>(),
        [
            (Some(Fault::Redirect), false),
            (Some(Fault::Redirect), true)
        ]
    );
}

#[test]
fn a_login_fault_answers_the_login_page() {
    let upstream = Upstream::start();
    let armed = upstream.control(
        Method::POST,
        "/sim/faults",
        Some(r#"{"func": "dashboard.info", "kind": "login"}"#),
    );
    assert_eq!(armed.status, 201, "{armed:?}");
    let page = upstream.call("dashboard.info", &[]);
    assert_eq!(page.status, 200);
    assert!(page.content_type.starts_with("text/html"), "{page:?}");
    assert_eq!(
        page.body,
        "<!DOCTYPE html>\n<html><head><title>BILLmanager</title></head><body>\
         <h1>Log in to BILLmanager</h1><form method=\"post\" action=\"/billmgr\">\
         <input type=\"hidden\" name=\"func\" value=\"auth\"/>\
         <input type=\"text\" name=\"username\" value=\"\"/>\
         <input type=\"password\" name=\"password\" value=\"\"/>\
         <input type=\"submit\" value=\"Log in\"/></form></body></html>"
    );
    assert!(!is_xml_doc(&page.body));
    let redirect: serde_json::Value = serde_json::from_str(
        &upstream
            .control(
                Method::POST,
                "/sim/faults",
                Some(r#"{"func": "addition", "kind": "redirect", "times": 2}"#),
            )
            .body,
    )
    .expect("JSON");
    assert_eq!(
        redirect,
        serde_json::json!([{"func": "addition", "times": 2, "apply": false, "kind": "redirect"}])
    );
}

#[test]
fn every_fault_hits_every_lifecycle_call() {
    let funcs: [(&str, &[(&str, &str)]); 6] = [
        ("addition", &[]),
        ("addition.edit", &[("elid", "100001")]),
        ("addition.suspend", &[("elid", "100001")]),
        ("addition.resume", &[("elid", "100001")]),
        ("service.prolong", &[("elid", "100001"), ("period", "1")]),
        ("dashboard.info", &[]),
    ];
    let faults = [
        Fault::Status { code: 503 },
        Fault::Html,
        Fault::Login,
        Fault::Redirect,
        Fault::Truncated,
        Fault::Empty,
        Fault::Cut,
    ];
    for fault in faults {
        let upstream = Upstream::start();
        let placed = upstream.order();
        assert!(child_text(&placed.body, "id").is_some(), "{placed:?}");
        let before = upstream.handle.sim().state();
        for (func, params) in funcs {
            upstream.arm(FaultSpec::new(fault.clone()).on(func));
            // Another call is not hit by a fault armed for this one.
            assert!(is_xml_doc(&upstream.call("pricelist.export", &[]).body));
            let spoiled = upstream.try_call(Some(AUTHINFO), func, params);
            match (&fault, spoiled) {
                (Fault::Cut, Err(_)) => {}
                (Fault::Cut, Ok(answer)) => panic!("{func}: an answer through a cut: {answer:?}"),
                (_, Err(e)) => panic!("{func} under {fault:?}: {e}"),
                (_, Ok(answer)) => assert!(!is_xml_doc(&answer.body), "{func}: {answer:?}"),
            }
            let last = upstream.handle.sim().calls().pop().expect("recorded");
            assert_eq!(
                (last.func.as_str(), last.fault.as_ref(), last.carried_out),
                (func, Some(&fault), false)
            );
            assert!(upstream.handle.sim().pending_faults().is_empty(), "{func}");
        }
        // Not carried out: the suspension and the renewal did not happen.
        assert_eq!(upstream.handle.sim().state(), before, "{fault:?}");
    }
}

#[test]
fn an_applied_fault_on_a_renewal_still_renews() {
    let upstream = Upstream::start();
    upstream.order();
    upstream.arm(
        FaultSpec::new(Fault::Truncated)
            .on("service.prolong")
            .applied(),
    );
    let cut = upstream.call(
        "service.prolong",
        &[("elid", "100001"), ("period", "1"), ("sok", "ok")],
    );
    let whole = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
                 <doc><ok/><id>100001</id><doc><newexpiredate>2028-01-01</newexpiredate></doc></doc>";
    assert_eq!(cut.body, whole[..whole.len() / 2]);
    assert_eq!(upstream.balance(), "61.5000");
    assert_eq!(upstream.handle.sim().services()[0].renewals, [1]);
}
