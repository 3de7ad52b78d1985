//! The BILLmanager calls over a real socket, as a partner's client makes them.

mod common;

use common::{Upstream, child_text, doc, error_of, pair, refusal};
use upstream_sim::{Outcome, State};

const ORDER: &str = "addition.order.param";

/// The parameters of a valid order, with `changes` replacing or adding some.
fn order<'a>(changes: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut params = vec![
        ("item", "184431"),
        ("period", "12"),
        ("pricelist", "55361"),
        ("autoprolong", "12"),
        ("skipbasket", "on"),
        ("sok", "ok"),
    ];
    for &(name, value) in changes {
        params.retain(|(n, _)| *n != name);
        params.push((name, value));
    }
    params
}

#[test]
fn the_price_list_has_the_billmanager_shape_and_values() {
    let upstream = Upstream::start();
    let answer = upstream.call("pricelist.export", &[("itemtype", "addition")]);
    assert_eq!(answer.status, 200);
    assert!(answer.content_type.starts_with("text/xml"), "{answer:?}");
    assert!(
        answer
            .body
            .starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>")
    );
    let doc = doc(&answer.body);
    let items: Vec<_> = doc
        .root_element()
        .children()
        .filter(|n| n.is_element())
        .collect();
    assert_eq!(items.len(), 5);
    assert!(items.iter().all(|n| n.has_tag_name("pricelist")));

    let first = items[0];
    let names: Vec<_> = first
        .children()
        .filter(|n| n.is_element())
        .map(|n| n.tag_name().name())
        .collect();
    // The vendor's documented order, then what real exports add.
    assert_eq!(
        names,
        [
            "id",
            "additionintname",
            "price",
            "intname",
            "name",
            "name_ru",
            "orderpriority"
        ]
    );
    let text = |name: &str| {
        first
            .children()
            .find(|n| n.has_tag_name(name))
            .and_then(|n| n.text())
    };
    assert_eq!(text("id"), Some("55361"));
    assert_eq!(text("name"), Some("Dr.Web for ispmanager 6 lite"));
    let price = first
        .children()
        .find(|n| n.has_tag_name("price"))
        .expect("price");
    assert_eq!(price.attribute("currency"), Some("EUR"));
    let periods: Vec<_> = price
        .children()
        .filter(|n| n.has_tag_name("period"))
        .map(|p| {
            (
                p.attribute("cost").unwrap_or_default(),
                p.attribute("type").unwrap_or_default(),
                p.attribute("length").unwrap_or_default(),
                p.text().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        periods,
        [
            ("3.5000", "month", "1", "monthly"),
            ("35.0000", "month", "12", "annually")
        ]
    );

    let ids: Vec<_> = items
        .iter()
        .filter_map(|n| n.children().find(|c| c.has_tag_name("id")))
        .filter_map(|n| n.text())
        .collect();
    assert_eq!(ids, ["55361", "55362", "55363", "23221", "55371"]);
    // The panel needs the monthly period of every module.
    for item in &items {
        let monthly = item.descendants().any(|p| {
            p.has_tag_name("period")
                && p.attribute("type") == Some("month")
                && p.attribute("length") == Some("1")
        });
        assert!(monthly, "{item:?}");
    }
}

#[test]
fn the_price_list_narrows_to_one_tariff_and_speaks_json() {
    let upstream = Upstream::start();
    let one = upstream.call(
        "pricelist.export",
        &[
            ("itemtype", "addition"),
            ("pricelist", "23221"),
            ("lang", "en"),
        ],
    );
    let doc = doc(&one.body);
    assert_eq!(
        doc.descendants()
            .filter(|n| n.has_tag_name("pricelist"))
            .count(),
        1
    );
    assert_eq!(
        doc.descendants()
            .find(|n| n.has_tag_name("additionintname"))
            .and_then(|n| n.text()),
        Some("DDoSGUARD")
    );

    let json = upstream.call(
        "pricelist.export",
        &[("pricelist", "55371"), ("out", "json")],
    );
    assert_eq!(json.content_type, "application/json");
    let value: serde_json::Value = serde_json::from_str(&json.body).expect("JSON");
    let item = &value["doc"]["pricelist"];
    assert_eq!(item["id"]["$"], "55371");
    assert_eq!(item["price"]["$currency"], "EUR");
    assert_eq!(item["price"]["$type"], "basic");
    assert_eq!(
        item["price"]["period"][0],
        serde_json::json!({"$": "trial", "$cost": "0.0000", "$type": "month", "$length": "-100"})
    );
    assert_eq!(item["price"]["period"][1]["$cost"], "9.9000");
    assert_eq!(item["price"]["period"][2]["$length"], "6");
    assert_eq!(item["price"]["period"][3]["$length"], "12");

    // A second currency is a second `price`: an array in JSON.
    let json = upstream.call(
        "pricelist.export",
        &[("pricelist", "55362"), ("out", "json")],
    );
    let value: serde_json::Value = serde_json::from_str(&json.body).expect("JSON");
    let prices = &value["doc"]["pricelist"]["price"];
    assert_eq!(prices[0]["$currency"], "EUR");
    assert_eq!(prices[1]["$currency"], "RUB");
    assert_eq!(prices[1]["period"][1]["$cost"], "1950.0000");
    assert_eq!(
        value["doc"]["pricelist"]["name_ru"]["$"],
        "Dr.Web для ispmanager 6 pro"
    );
}

#[test]
fn both_paths_and_form_posts_are_served() {
    let upstream = Upstream::start();
    let answer = upstream.post_form(
        "/manager/billmgr",
        &[
            ("authinfo", common::AUTHINFO),
            ("func", "pricelist.export"),
            ("itemtype", "addition"),
        ],
    );
    assert_eq!(answer.status, 200);
    assert_eq!(
        doc(&answer.body)
            .descendants()
            .filter(|n| n.has_tag_name("pricelist"))
            .count(),
        5
    );

    let mut form = order(&[]);
    form.extend([("authinfo", common::AUTHINFO), ("func", ORDER)]);
    let placed = upstream.post_form("/billmgr", &form);
    assert_eq!(child_text(&placed.body, "id").as_deref(), Some("100001"));
}

#[test]
fn wrong_or_missing_credentials_are_refused() {
    let upstream = Upstream::start();
    for authinfo in [
        None,
        Some("partner:wrong"),
        Some("someone:secret"),
        Some("partner"),
        Some(""),
    ] {
        let answer = upstream
            .try_call(authinfo, ORDER, &order(&[]))
            .expect("an answer");
        assert_eq!(
            refusal(&answer),
            pair("auth", "badpassword"),
            "{authinfo:?}"
        );
    }
    assert_eq!(upstream.balance(), "100.0000");
    assert!(upstream.handle.sim().services().is_empty());
    let calls = upstream.handle.sim().calls();
    assert_eq!(calls.len(), 5);
    assert!(
        calls
            .iter()
            .all(|c| c.params.iter().all(|(k, _)| k != "authinfo"))
    );
}

#[test]
fn each_order_field_is_checked() {
    let upstream = Upstream::start();
    let missing = |field: &str| {
        let params: Vec<_> = order(&[])
            .into_iter()
            .filter(|(name, _)| *name != field)
            .collect();
        refusal(&upstream.call(ORDER, &params))
    };
    assert_eq!(missing("item"), pair("missed", "item"));
    assert_eq!(missing("period"), pair("missed", "period"));
    assert_eq!(missing("pricelist"), pair("missed", "pricelist"));

    let cases = [
        (("pricelist", "99999"), "pricelist"),
        (("pricelist", "not-a-number"), "pricelist"),
        (("item", "999999"), "item"),
        (("period", "24"), "period"),
        (("period", "-100"), "period"),
        (("autoprolong", "1"), "autoprolong"),
    ];
    for ((name, value), object) in cases {
        let answer = upstream.call(ORDER, &order(&[(name, value)]));
        let error = error_of(&answer.body).expect("an error document");
        assert_eq!(
            (error.kind.as_str(), error.object.as_str()),
            ("value", object)
        );
        assert_eq!(error.value.as_deref(), Some(value));
        assert!(error.msg.contains(object), "{error:?}");
    }
    // DDoS-GUARD is sold monthly only.
    let yearly = upstream.call(ORDER, &order(&[("pricelist", "23221")]));
    assert_eq!(refusal(&yearly), pair("value", "period"));

    assert_eq!(upstream.balance(), "100.0000");
    assert!(upstream.handle.sim().services().is_empty());
}

#[test]
fn an_unorderable_tariff_is_refused() {
    let mut state = State::default();
    state.tariffs[0].orderable = false;
    let upstream = Upstream::with(state);
    assert_eq!(
        refusal(&upstream.call(ORDER, &order(&[]))),
        pair("value", "pricelist")
    );
    let available = upstream.call(
        "pricelist.export",
        &[("itemtype", "addition"), ("onlyavailable", "on")],
    );
    assert!(!available.body.contains("55361"));
}

#[test]
fn an_insufficient_balance_changes_nothing() {
    let mut state = State::default();
    state.account.balance = "34.9999".parse().expect("amount");
    let upstream = Upstream::with(state);
    let answer = upstream.call(ORDER, &order(&[]));
    let error = error_of(&answer.body).expect("an error document");
    assert_eq!(error.kind, "balance");
    assert!(error.msg.contains("35.0000 EUR"), "{error:?}");
    assert_eq!(upstream.balance(), "34.9999");
    assert!(upstream.handle.sim().services().is_empty());

    // Exactly enough is enough.
    let monthly = upstream.call(ORDER, &order(&[("period", "1"), ("autoprolong", "null")]));
    assert!(child_text(&monthly.body, "id").is_some(), "{monthly:?}");
    assert_eq!(upstream.balance(), "31.4999");
}

#[test]
fn a_successful_order_debits_exactly_and_returns_a_new_id() {
    let upstream = Upstream::start();
    let first = upstream.call(ORDER, &order(&[]));
    assert_eq!(first.status, 200);
    assert!(error_of(&first.body).is_none(), "{first:?}");
    let first_id = child_text(&first.body, "id").expect("an ID");
    assert_eq!(upstream.balance(), "65.0000");

    let second = upstream.call(
        ORDER,
        &order(&[
            ("item", "184432"),
            ("pricelist", "55371"),
            ("period", "1"),
            ("autoprolong", "null"),
            ("bitninja_email", "ops@example.com"),
        ]),
    );
    let second_id = child_text(&second.body, "id").expect("an ID");
    assert_ne!(first_id, second_id);
    assert_eq!(upstream.balance(), "55.1000");

    let services = upstream.handle.sim().services();
    assert_eq!(services.len(), 2);
    assert_eq!(services[0].id.to_string(), first_id);
    assert_eq!(
        (
            services[0].licence.as_str(),
            services[0].tariff,
            services[0].period,
            services[0].autoprolong
        ),
        ("184431", 55361, 12, Some(12))
    );
    assert_eq!(
        (
            services[1].licence.as_str(),
            services[1].tariff,
            services[1].autoprolong
        ),
        ("184432", 55371, None)
    );
}

#[test]
fn services_are_rebound_renewed_and_removed() {
    let upstream = Upstream::start();
    let placed = upstream.call(ORDER, &order(&[]));
    let id = child_text(&placed.body, "id").expect("an ID");
    let sim = upstream.handle.sim();

    let rebound = upstream.call(
        "addition.edit",
        &[("elid", &id), ("item", "184433"), ("sok", "ok")],
    );
    assert!(
        doc(&rebound.body)
            .descendants()
            .any(|n| n.has_tag_name("ok"))
    );
    assert_eq!(
        child_text(&rebound.body, "id").as_deref(),
        Some(id.as_str())
    );
    assert_eq!(sim.services()[0].licence, "184433");
    let edit = |elid: &str, item: &str| {
        refusal(&upstream.call(
            "addition.edit",
            &[("elid", elid), ("item", item), ("sok", "ok")],
        ))
    };
    assert_eq!(edit("424242", "184431"), pair("value", "elid"));
    assert_eq!(edit(&id, "nope"), pair("value", "item"));
    assert_eq!(
        refusal(&upstream.call("addition.edit", &[("elid", &id), ("sok", "ok")])),
        pair("missed", "item")
    );
    assert_eq!(sim.services()[0].licence, "184433");

    let renewed = upstream.call(
        "service.prolong",
        &[("elid", &id), ("period", "1"), ("sok", "ok")],
    );
    assert!(error_of(&renewed.body).is_none(), "{renewed:?}");
    assert_eq!(upstream.balance(), "61.5000");
    assert_eq!(sim.services()[0].renewals, [1]);
    assert_eq!(
        refusal(&upstream.call(
            "service.prolong",
            &[("elid", &id), ("period", "7"), ("sok", "ok")]
        )),
        pair("value", "period")
    );
    assert_eq!(
        refusal(&upstream.call(
            "service.prolong",
            &[("elid", "1"), ("period", "1"), ("sok", "ok")]
        )),
        pair("value", "elid")
    );
    let costly = upstream.call(
        "service.prolong",
        &[("elid", &id), ("period", "12"), ("sok", "ok")],
    );
    assert!(child_text(&costly.body, "ok").is_some());
    let broke = upstream.call(
        "service.prolong",
        &[("elid", &id), ("period", "12"), ("sok", "ok")],
    );
    assert_eq!(refusal(&broke), pair("balance", "balance"));
    assert_eq!(upstream.balance(), "26.5000");

    let removed = upstream.call("addition.delete", &[("elid", &id), ("sok", "ok")]);
    assert!(child_text(&removed.body, "ok").is_some(), "{removed:?}");
    assert!(sim.services().is_empty());
    assert_eq!(
        refusal(&upstream.call("addition.delete", &[("elid", &id), ("sok", "ok")])),
        pair("value", "elid")
    );
    assert_eq!(
        refusal(&upstream.call("addition.delete", &[("sok", "ok")])),
        pair("missed", "elid")
    );
    // IDs are not reused.
    let again = upstream.call(ORDER, &order(&[]));
    assert_ne!(child_text(&again.body, "id"), Some(id));
}

#[test]
fn unknown_and_missing_funcs_are_errors() {
    let upstream = Upstream::start();
    let unknown = upstream.call("vds.order", &[]);
    let error = error_of(&unknown.body).expect("an error document");
    assert_eq!(
        (error.kind.as_str(), error.object.as_str()),
        ("value", "func")
    );
    assert_eq!(error.value.as_deref(), Some("vds.order"));
    assert_eq!(refusal(&upstream.call("", &[])), pair("missed", "func"));
    let outcomes: Vec<_> = upstream
        .handle
        .sim()
        .calls()
        .into_iter()
        .map(|c| c.outcome)
        .collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Error {
                kind: "value".to_owned(),
                object: "func".to_owned()
            },
            Outcome::Error {
                kind: "missed".to_owned(),
                object: "func".to_owned()
            },
        ]
    );
}

#[test]
fn hostile_values_come_back_escaped() {
    let upstream = Upstream::start();
    let nasty = "<x a=\"1\">&amp;'</x>\u{1F600}";
    let answer = upstream.call(ORDER, &order(&[("item", nasty)]));
    let error = error_of(&answer.body).expect("a well-formed error document");
    assert_eq!(error.value.as_deref(), Some(nasty));
    let func = upstream.call("a<b>&\"c", &[]);
    assert_eq!(
        error_of(&func.body).and_then(|e| e.value).as_deref(),
        Some("a<b>&\"c")
    );
}
