//! The panel's `pricelist.export` against the real binary and the real component, over a real
//! loopback socket.

use crate::common::{Answer, Server, fixture, get, post_form, request, xml_error};

/// A server on the test catalogue; each test has its own, stopped when it ends.
fn server() -> Server {
    Server::start(Some(&fixture("catalogue.toml")))
}

/// The panel's exact request.
const PANEL: &str = "/billmgr?func=pricelist.export&itemtype=addition&onlyavailable=on&out=xml";

/// What a module's line must say: id, intname, name, additionintname, currency, periods.
struct Line {
    id: &'static str,
    intname: &'static str,
    name: &'static str,
    additionintname: &'static str,
    currency: &'static str,
    periods: &'static [(&'static str, &'static str, &'static str)],
}

const LITE: Line = Line {
    id: "55377",
    intname: "drweb-lite",
    name: "Dr.Web <lite> & \"friends\" — Антивирус",
    additionintname: "DrWeb",
    currency: "RUB",
    periods: &[
        ("149.0000", "1", "monthly"),
        ("1250.0000", "12", "annually"),
    ],
};
const DDOS: Line = Line {
    id: "23221",
    intname: "ddos-guard",
    name: "DDoS-GUARD",
    additionintname: "DDoSGUARD",
    currency: "RUB",
    periods: &[("1150.0000", "1", "monthly")],
};
const BITNINJA: Line = Line {
    id: "55390",
    intname: "bitninja",
    name: "BitNinja",
    additionintname: "BitNinja",
    currency: "EUR",
    periods: &[("8.2500", "1", "monthly"), ("82.5000", "12", "annually")],
};
const ARCHIVED: Line = Line {
    id: "55379",
    intname: "drweb-host",
    name: "Dr.Web host (archived)",
    additionintname: "DrWeb",
    currency: "RUB",
    periods: &[("630.0000", "1", "monthly")],
};

/// Checks every element and attribute of an XML price list against `expected`, in order.
fn assert_xml(answer: &Answer, expected: &[&Line]) {
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.content_type, "text/xml; charset=utf-8");
    let doc = roxmltree::Document::parse(&answer.body).expect("well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "doc");
    let lines: Vec<_> = root.children().filter(|n| n.is_element()).collect();
    assert_eq!(lines.len(), expected.len(), "{}", answer.body);
    for (node, want) in lines.iter().zip(expected) {
        assert_eq!(node.tag_name().name(), "pricelist");
        let children: Vec<_> = node.children().filter(|n| n.is_element()).collect();
        let names: Vec<_> = children.iter().map(|n| n.tag_name().name()).collect();
        // The order in which the vendor's documentation lists them.
        assert_eq!(names, ["id", "additionintname", "price", "intname", "name"]);
        assert_eq!(children[0].text(), Some(want.id));
        assert_eq!(children[1].text(), Some(want.additionintname));
        assert_eq!(children[3].text(), Some(want.intname));
        assert_eq!(children[4].text(), Some(want.name));
        let price = children[2];
        assert_eq!(price.attributes().count(), 1);
        assert_eq!(price.attribute("currency"), Some(want.currency));
        let periods: Vec<_> = price.children().filter(|n| n.is_element()).collect();
        assert_eq!(periods.len(), want.periods.len(), "{}", want.intname);
        for (period, (cost, length, text)) in periods.iter().zip(want.periods) {
            assert_eq!(period.tag_name().name(), "period");
            assert_eq!(period.attributes().count(), 3);
            assert_eq!(period.attribute("cost"), Some(*cost), "{}", want.intname);
            assert_eq!(period.attribute("type"), Some("month"));
            assert_eq!(period.attribute("length"), Some(*length));
            assert_eq!(period.text(), Some(*text));
        }
    }
}

/// The same for the JSON form.
fn assert_json(answer: &Answer, expected: &[&Line]) {
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.content_type, "application/json; charset=utf-8");
    let v: serde_json::Value = serde_json::from_str(&answer.body).expect("JSON");
    let doc = v["doc"].as_object().expect("doc object");
    let lines: Vec<&serde_json::Value> = match doc.get("pricelist") {
        None => Vec::new(),
        Some(serde_json::Value::Array(items)) => items.iter().collect(),
        Some(one) => vec![one],
    };
    assert_eq!(lines.len(), expected.len(), "{}", answer.body);
    if expected.len() == 1 {
        assert!(doc["pricelist"].is_object(), "a single child is an object");
    }
    for (line, want) in lines.iter().zip(expected) {
        assert_eq!(line["id"]["$"], want.id);
        assert_eq!(line["intname"]["$"], want.intname);
        assert_eq!(line["name"]["$"], want.name);
        assert_eq!(line["additionintname"]["$"], want.additionintname);
        assert_eq!(line["price"]["$currency"], want.currency);
        let periods: Vec<&serde_json::Value> = match &line["price"]["period"] {
            serde_json::Value::Array(items) => items.iter().collect(),
            one => vec![one],
        };
        assert_eq!(periods.len(), want.periods.len());
        for (period, (cost, length, text)) in periods.iter().zip(want.periods) {
            assert_eq!(period["$cost"], *cost);
            assert_eq!(period["$type"], "month");
            assert_eq!(period["$length"], *length);
            assert_eq!(period["$"], *text);
        }
    }
}

#[test]
fn the_panels_request_gets_every_orderable_module_priced() {
    let srv = server();
    assert_xml(&get(&srv.url(PANEL)), &[&LITE, &DDOS, &BITNINJA]);
}

#[test]
fn json_form_carries_the_same_prices() {
    let srv = server();
    let url = srv.url(&PANEL.replace("out=xml", "out=json"));
    assert_json(&get(&url), &[&LITE, &DDOS, &BITNINJA]);
}

#[test]
fn without_onlyavailable_modules_that_cannot_be_ordered_are_listed_too() {
    let srv = server();
    let url = srv.url("/billmgr?func=pricelist.export&itemtype=addition");
    assert_xml(&get(&url), &[&LITE, &DDOS, &BITNINJA, &ARCHIVED]);
    assert_xml(
        &get(&format!("{url}&onlyavailable=off")),
        &[&LITE, &DDOS, &BITNINJA, &ARCHIVED],
    );
}

#[test]
fn pricelist_narrows_to_one_module() {
    let srv = server();
    assert_xml(
        &get(&srv.url(&format!("{PANEL}&pricelist=55390"))),
        &[&BITNINJA],
    );
    let json = PANEL.replace("out=xml", "out=json");
    assert_json(&get(&srv.url(&format!("{json}&pricelist=55377"))), &[&LITE]);
}

#[test]
fn unknown_or_filtered_pricelist_answers_an_empty_list() {
    let srv = server();
    assert_xml(&get(&srv.url(&format!("{PANEL}&pricelist=99999"))), &[]);
    // Archived: not orderable, so filtered by onlyavailable=on.
    assert_xml(&get(&srv.url(&format!("{PANEL}&pricelist=55379"))), &[]);
    let json = get(&srv.url(&format!(
        "{}&pricelist=1",
        PANEL.replace("out=xml", "out=json")
    )));
    assert_json(&json, &[]);
}

#[test]
fn post_form_and_extra_parameters_answer_like_get() {
    let srv = server();
    let form = "func=pricelist.export&itemtype=addition&onlyavailable=on&out=xml";
    assert_xml(
        &post_form(&srv.url("/billmgr"), form),
        &[&LITE, &DDOS, &BITNINJA],
    );
    // Older panels send credentials and a language; unknown parameters are tolerated.
    let url = format!("{PANEL}&authinfo=partner:secret&lang=ru&sfrom=panel");
    assert_xml(&get(&srv.url(&url)), &[&LITE, &DDOS, &BITNINJA]);
    // The older path.
    let old = PANEL.replace("/billmgr", "/manager/billmgr");
    assert_xml(&get(&srv.url(&old)), &[&LITE, &DDOS, &BITNINJA]);
}

/// Asserts an error answer: status, type, object, and that it leaks no internals.
fn assert_error(answer: &Answer, status: u16, kind: &str, object: &str) -> Option<String> {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(answer.content_type, "text/xml; charset=utf-8");
    let (t, o, value, msg) = xml_error(&answer.body);
    assert_eq!((t.as_str(), o.as_str()), (kind, object), "{}", answer.body);
    assert!(!msg.is_empty());
    for internal in [
        "/work",
        "/home",
        "src/",
        ".rs",
        "panicked",
        "backtrace",
        "wasm",
    ] {
        assert!(
            !answer.body.contains(internal),
            "leaks {internal}: {}",
            answer.body
        );
    }
    value
}

#[test]
fn bad_input_answers_billmanager_error_documents() {
    let s = server();
    let q = |query: &str| get(&s.url(&format!("/billmgr?{query}")));
    let value = assert_error(
        &q("func=pricelist.export&itemtype=soft"),
        400,
        "value",
        "itemtype",
    );
    assert_eq!(value.as_deref(), Some("soft"));
    assert_error(
        &q("func=pricelist.export&itemtype=addition&out=html"),
        400,
        "value",
        "out",
    );
    assert_error(
        &q("func=pricelist.export&itemtype=addition&pricelist=12ab"),
        400,
        "value",
        "pricelist",
    );
    assert_error(&q("func=user.delete&elid=1"), 404, "value", "func");
    assert_error(&q("itemtype=addition"), 400, "missed", "func");
    assert_error(&q(""), 400, "missed", "func");
    let long = format!(
        "func=pricelist.export&itemtype=addition&pad={}",
        "x".repeat(600)
    );
    assert_error(&q(&long), 414, "value", "query");
    let form = format!(
        "func=pricelist.export&itemtype=addition&pad={}",
        "x".repeat(600)
    );
    assert_error(&post_form(&s.url("/billmgr"), &form), 414, "value", "query");
    assert_error(&get(&s.url("/index.php")), 404, "missed", "path");
    assert_error(&request("DELETE", &s.url(PANEL)), 405, "value", "method");
    // Hostile values are escaped, not interpreted, and echoed cut short.
    let echoed = assert_error(
        &q("func=pricelist.export&itemtype=%3C%2Fparam%3E%3Cx%3E%26%22"),
        400,
        "value",
        "itemtype",
    );
    assert_eq!(echoed.as_deref(), Some("</param><x>&\""));
    let echoed = assert_error(
        &q(&format!("func={}", "f".repeat(300))),
        404,
        "value",
        "func",
    );
    assert_eq!(echoed.map(|v| v.len()), Some(64));
}

#[test]
fn the_panel_is_served_on_every_path_leniently_and_errors_come_with_200() {
    // The embedded defaults: BILLmanager's way, errors with HTTP 200.
    let s = Server::start(None);
    for path in ["/", "/billmgr", "/manager/billmgr"] {
        let a = get(&s.url(&format!(
            "{path}?func=pricelist.export&itemtype=addition&onlyavailable=on&lang=ru_RU"
        )));
        assert_eq!(a.status, 200, "{path}");
        assert!(
            a.body.contains("<pricelist><id>55361</id>"),
            "{path}: {}",
            a.body
        );
    }
    // Without itemtype, with odd checkbox spellings and locales, in "simple JSON".
    for query in [
        "func=pricelist.export",
        "func=pricelist.export&itemtype=addition&onlyavailable=YES&lang=en-US",
        "func=pricelist.export&itemtype=addition&lang=xx_invalid_99",
    ] {
        let a = get(&s.url(&format!("/?{query}")));
        assert_eq!(a.status, 200, "{query}");
        assert!(a.body.contains("<id>55361</id>"), "{query}: {}", a.body);
    }
    let a = get(&s.url("/?func=pricelist.export&itemtype=addition&out=sjson"));
    assert_eq!(a.content_type, "application/json; charset=utf-8");
    let v: serde_json::Value = serde_json::from_str(&a.body).expect("JSON");
    assert!(v["doc"]["pricelist"].is_array(), "{v}");
    let a = get(&s.url("/?func=pricelist.export&itemtype=soft"));
    assert_eq!(a.status, 200);
    assert!(
        a.body
            .contains("<error type=\"value\" object=\"itemtype\">"),
        "{}",
        a.body
    );
}

#[test]
fn errors_come_in_json_when_json_is_asked_for() {
    let srv = server();
    let a = get(&srv.url("/billmgr?func=pricelist.export&itemtype=soft&out=json"));
    assert_eq!(a.status, 400);
    assert_eq!(a.content_type, "application/json; charset=utf-8");
    let v: serde_json::Value = serde_json::from_str(&a.body).expect("JSON");
    assert_eq!(v["doc"]["error"]["$type"], "value");
    assert_eq!(v["doc"]["error"]["$object"], "itemtype");
    assert_eq!(v["doc"]["error"]["param"][1]["$"], "soft");
    assert!(
        v["doc"]["error"]["msg"]["$"]
            .as_str()
            .is_some_and(|m| m.contains("itemtype"))
    );
}

#[test]
fn embedded_defaults_serve_the_documented_modules() {
    let defaults = Server::start(None);
    let a = get(&defaults.url(PANEL));
    assert_eq!(a.status, 200);
    let doc = roxmltree::Document::parse(&a.body).expect("XML");
    let ids: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("id"))
        .filter_map(|n| n.text())
        .collect();
    assert_eq!(ids, ["55361", "55362", "55363", "23221", "55371"]);
    let month_costs = doc
        .descendants()
        .filter(|n| n.has_tag_name("period") && n.attribute("length") == Some("1"))
        .count();
    assert_eq!(
        month_costs, 5,
        "every module has the 1-month price the panel needs"
    );
}
