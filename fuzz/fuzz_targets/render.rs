//! The plugin's price-list renderers: any catalogue text renders a well-formed XML document
//! whose texts are the catalogue's (less what XML cannot carry), and valid JSON that keeps
//! them exactly.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use reseller_plugin::model::Money;
use reseller_plugin::render::{PriceLine, json, xml, xml_chars};

#[derive(Arbitrary, Debug)]
struct Line {
    id: u64,
    intname: String,
    name: String,
    additionintname: String,
    periods: Vec<(u16, i64, String)>,
}

/// What an XML parser reads back of text `s`: line ends normalised to `\n`.
fn as_read(s: &str) -> String {
    xml_chars(s).replace("\r\n", "\n").replace('\r', "\n")
}

fuzz_target!(|lines: Vec<Line>| {
    let priced: Vec<PriceLine<'_>> = lines
        .iter()
        .map(|l| PriceLine {
            id: l.id,
            intname: &l.intname,
            name: &l.name,
            additionintname: &l.additionintname,
            periods: l
                .periods
                .iter()
                .map(|(months, units, currency)| {
                    (
                        *months,
                        Money {
                            units: *units,
                            currency: currency.clone(),
                        },
                    )
                })
                .collect(),
        })
        .collect();

    let body = xml(&priced).body;
    let text = std::str::from_utf8(&body).expect("UTF-8");
    let doc = roxmltree::Document::parse(text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    let read: Vec<_> = doc
        .root_element()
        .children()
        .filter(|n| n.has_tag_name("pricelist"))
        .collect();
    assert_eq!(read.len(), lines.len());
    for (node, line) in read.iter().zip(&lines) {
        let child = |tag: &str| {
            node.children()
                .find(|n| n.has_tag_name(tag))
                .map(|n| n.text().unwrap_or_default().to_owned())
        };
        assert_eq!(child("id"), Some(line.id.to_string()));
        assert_eq!(child("name"), Some(as_read(&line.name)));
        assert_eq!(child("intname"), Some(as_read(&line.intname)));
        assert_eq!(
            child("additionintname"),
            Some(as_read(&line.additionintname))
        );
        let periods = node
            .descendants()
            .filter(|n| n.has_tag_name("period"))
            .count();
        assert_eq!(periods, line.periods.len());
    }

    let body = json(&priced).body;
    let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    let items = match &v["doc"]["pricelist"] {
        serde_json::Value::Null => vec![],
        serde_json::Value::Array(items) => items.clone(),
        one => vec![one.clone()],
    };
    assert_eq!(items.len(), lines.len());
    for (item, line) in items.iter().zip(&lines) {
        assert_eq!(item["name"]["$"], line.name.as_str());
        assert_eq!(item["intname"]["$"], line.intname.as_str());
    }
});
