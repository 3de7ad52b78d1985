//! The built-in protocol's price export rendered by the host ([`reseller_host::native`]) answers
//! exactly what the protocol component answers, and the component then runs only for the load's
//! check.

use reseller_host::Reseller;
use reseller_host::bindings::pricing::{Format, Query};
use reseller_host::config::{Config, Source};
use reseller_host::reseller::ExportError;
use reseller_host::runtime::Runtime;

use crate::common::fixture;

const BUILTIN: &str = env!("RESELLER_PLUGIN_WASM");

fn reseller(extra: &str) -> Reseller {
    let text = std::fs::read_to_string(fixture("catalogue.toml")).expect("fixture");
    let text = format!("{text}\n[plugin]\ncache = false\n{extra}\n");
    let config = Config::parse(&text, Source::Embedded).expect("config");
    Reseller::new(Runtime::new(), config).expect("loads")
}

fn query(itemtype: &str, only_available: bool, pricelist: Option<u64>, format: Format) -> Query {
    Query {
        itemtype: itemtype.to_owned(),
        only_available,
        pricelist,
        format,
        lang: Some("ru".to_owned()),
    }
}

/// What an answer says, comparable across the two paths.
fn said(answer: Result<reseller_host::bindings::pricing::Document, ExportError>) -> String {
    match answer {
        Ok(doc) => format!(
            "{}\n{}",
            doc.content_type,
            String::from_utf8_lossy(&doc.body)
        ),
        Err(e) => format!("error: {e}"),
    }
}

#[test]
fn the_native_price_export_answers_what_the_component_answers() {
    let native = reseller("");
    let component = reseller(&format!("path = \"{BUILTIN}\""));
    assert!(native.active().renders_natively());
    assert!(
        !component.active().renders_natively(),
        "a protocol from a file runs in the sandbox"
    );
    let plugin_calls = native.active().plugin().stats().calls();
    let queries = [
        query("addition", true, None, Format::Xml),
        query("addition", false, None, Format::Xml),
        query("addition", true, None, Format::Json),
        query("addition", false, None, Format::Json),
        query("addition", true, Some(55377), Format::Xml),
        query("addition", false, Some(55379), Format::Json),
        query("addition", true, Some(55379), Format::Xml),
        query("addition", true, Some(4_242_424), Format::Xml),
        query("soft", true, None, Format::Xml),
        query("", false, None, Format::Json),
    ];
    for q in &queries {
        let expected = said(component.export_prices(q));
        assert_eq!(said(native.export_prices(q)), expected, "{q:?}");
    }
    assert_eq!(
        native.active().plugin().stats().calls(),
        plugin_calls,
        "the component did not run"
    );
    assert!(
        native.active().rendered() >= 8,
        "rendered natively, not from the answer cache"
    );
}
