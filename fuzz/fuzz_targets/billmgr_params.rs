//! The panel's query string and form body: parsing never panics, and every refusal is a
//! well-formed BILLmanager document in XML and valid JSON, whatever it echoes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use reseller_host::billmgr::{BillmgrError, Params};
use reseller_host::bindings::pricing::Format;

fuzz_target!(|data: &[u8]| {
    // The query string, then the form body after the first newline.
    let (query, form) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let params = Params::parse(&[query, form]);
    match params.price_query() {
        Ok(q) => {
            assert!(q.lang.as_ref().is_none_or(|l| l.len() <= 8));
            assert_eq!(Some(q.itemtype.as_str()), params.get("itemtype"));
        }
        Err(e) => check(&e),
    }
    if let Err(e) = params.format() {
        check(&e);
    }
    if let Some(func) = params.get("func") {
        check(&BillmgrError::unknown_func(func));
    }
    // Any name and value echoed back.
    let text = String::from_utf8_lossy(data);
    let middle = text
        .char_indices()
        .nth(text.chars().count() / 2)
        .map_or(text.len(), |(i, _)| i);
    let (name, value) = text.split_at(middle);
    check(&BillmgrError::value(name, value, value));
});

fn check(e: &BillmgrError) {
    let (_, xml) = e.render(Format::Xml);
    let text = std::str::from_utf8(&xml).expect("UTF-8");
    let doc = roxmltree::Document::parse(text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    assert!(doc.root_element().has_tag_name("doc"));
    assert!(doc.descendants().any(|n| n.has_tag_name("error")));
    let (_, json) = e.render(Format::Json);
    let v: serde_json::Value = serde_json::from_slice(&json).expect("JSON");
    assert!(v["doc"]["error"]["$type"].is_string());
}
