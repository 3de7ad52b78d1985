//! The partner-facing side of BILLmanager's protocol: request parameters, and the error document
//! every failure is answered with:
//!
//! ```xml
//! <doc><error type="value" object="itemtype">
//!   <param name="object" type="msg" msg="itemtype">itemtype</param>
//!   <param name="value">soft</param>
//!   <msg>The value of the field 'itemtype' is invalid</msg>
//! </error></doc>
//! ```
//!
//! Messages never carry internals (paths, backtraces, secrets); echoed values are cut short.

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, Event};
use serde_json::json;

use crate::bindings::pricing::{Format, Query};
// One rule for what XML can carry, shared with the plugin's renderers.
pub use reseller_plugin::render::{is_xml_char, xml_chars, xml_text as text};

/// Content type of XML answers.
pub const XML: &str = "text/xml; charset=utf-8";
/// Content type of JSON answers.
pub const JSON: &str = "application/json; charset=utf-8";

/// The longest value or field name echoed back in an error document, in characters.
const ECHO_CHARS: usize = 64;
/// The longest reason (which may come from a plugin) put in an error message, in characters.
const REASON_CHARS: usize = 256;

/// A request's parameters, from the query string and a form body, in order.
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Parses `application/x-www-form-urlencoded` text (a query string or a form body).
    pub fn parse(parts: &[&[u8]]) -> Self {
        Params(
            parts
                .iter()
                .flat_map(|p| form_urlencoded::parse(p))
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every parameter, in order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    /// Whether `name` was given at all.
    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }

    /// The document format asked for; XML when absent. `sjson` (BILLmanager's "simple JSON")
    /// is answered with the JSON document: the only JSON shape the panel's protocol documents.
    pub fn format(&self) -> Result<Format, BillmgrError> {
        let Some(out) = self.get("out") else {
            return Ok(Format::Xml);
        };
        match out.trim().to_ascii_lowercase().as_str() {
            "" | "xml" => Ok(Format::Xml),
            "json" | "sjson" => Ok(Format::Json),
            _ => Err(BillmgrError::value("out", out, "expected xml or json")),
        }
    }

    /// The `pricelist.export` query, read as leniently as BILLmanager reads it: without
    /// `itemtype` the modules are listed (the only item type sold here), `onlyavailable`
    /// takes any usual spelling of a checkbox, and a `lang` that is not a language code is
    /// ignored.
    pub fn price_query(&self) -> Result<Query, BillmgrError> {
        let format = self.format()?;
        let itemtype = match self.get("itemtype").map(str::trim) {
            None | Some("") => MODULES,
            Some(itemtype) => itemtype,
        };
        let only_available = self.get("onlyavailable").is_some_and(checked);
        let pricelist = match self.get("pricelist").map(str::trim) {
            None | Some("") => None,
            Some(id) => Some(id.parse::<u64>().map_err(|_| {
                BillmgrError::value("pricelist", id, "expected a tariff ID (a whole number)")
            })?),
        };
        let lang = self.get("lang").and_then(language);
        Ok(Query {
            itemtype: itemtype.to_owned(),
            only_available,
            pricelist,
            format,
            lang,
        })
    }
}

/// The item type of modules, the only one sold here.
pub const MODULES: &str = "addition";

/// Whether a checkbox value means "checked": `on` as BILLmanager's forms send it, and the
/// usual spellings of yes; anything else, as in BILLmanager, is unchecked.
fn checked(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "on" | "yes" | "true" | "1" | "y"
    )
}

/// The language of a locale in any usual form (`ru`, `en`, `ru_RU`, `en-US`, `RU`) as its
/// lower-case primary code; `None` for anything that is not one.
pub fn language(locale: &str) -> Option<String> {
    let primary = locale.trim().split(['_', '-', '.', '@']).next()?;
    ((2..=3).contains(&primary.len()) && primary.bytes().all(|b| b.is_ascii_alphabetic()))
        .then(|| primary.to_ascii_lowercase())
}

/// Whether `content_type` is one of `format`'s: a plugin may not answer the panel with, say, an
/// HTML page.
pub fn content_type_matches(format: Format, content_type: &str) -> bool {
    let media = content_type.split(';').next().unwrap_or_default().trim();
    match format {
        Format::Xml => {
            media.eq_ignore_ascii_case("text/xml") || media.eq_ignore_ascii_case("application/xml")
        }
        Format::Json => media.eq_ignore_ascii_case("application/json"),
    }
}

/// An error answered as a BILLmanager error document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BillmgrError {
    /// HTTP status.
    pub status: u16,
    /// The error's `type`: `value`, `missed`, or the host's own `plugin` and `internal`.
    pub kind: &'static str,
    /// The error's `object`: the field concerned, when there is one.
    pub object: String,
    /// The refused value, echoed (cut short).
    pub value: Option<String>,
    /// The `<msg>` text.
    pub message: String,
}

impl BillmgrError {
    /// A required parameter is missing.
    pub fn missed(object: &str) -> Self {
        BillmgrError {
            status: 400,
            kind: "missed",
            object: object.to_owned(),
            value: None,
            message: format!("The field '{object}' is required"),
        }
    }

    /// A parameter has a value that is not served.
    pub fn value(object: &str, value: &str, why: &str) -> Self {
        let object: String = object.chars().take(ECHO_CHARS).collect();
        let why: String = why.chars().take(REASON_CHARS).collect();
        BillmgrError {
            status: 400,
            kind: "value",
            message: format!("The value of the field '{object}' is invalid: {why}"),
            object,
            value: Some(value.chars().take(ECHO_CHARS).collect()),
        }
    }

    /// No such function.
    pub fn unknown_func(func: &str) -> Self {
        BillmgrError {
            status: 404,
            ..BillmgrError::value("func", func, "no such function here")
        }
    }

    /// The query string or form body is longer than allowed.
    pub fn too_long(max: usize) -> Self {
        BillmgrError {
            status: 414,
            kind: "value",
            object: "query".to_owned(),
            value: None,
            message: format!("The request's parameters are longer than {max} bytes"),
        }
    }

    /// The plugin failed: the partner's fault, not the caller's.
    pub fn plugin() -> Self {
        BillmgrError {
            status: 500,
            kind: "plugin",
            object: String::new(),
            value: None,
            message: "The partner's pricing could not be computed; please try again later"
                .to_owned(),
        }
    }

    /// The host failed, or is misconfigured.
    pub fn internal() -> Self {
        BillmgrError {
            status: 500,
            kind: "internal",
            object: String::new(),
            value: None,
            message: "The partner's billing could not answer; please try again later".to_owned(),
        }
    }

    /// No such path.
    pub fn not_found() -> Self {
        BillmgrError {
            status: 404,
            kind: "missed",
            object: "path".to_owned(),
            value: None,
            message: "No such page; BILLmanager calls go to /billmgr".to_owned(),
        }
    }

    /// The document in `format`, with its content type.
    pub fn render(&self, format: Format) -> (&'static str, Vec<u8>) {
        match format {
            Format::Xml => (XML, self.xml()),
            Format::Json => (JSON, self.json()),
        }
    }

    fn xml(&self) -> Vec<u8> {
        let object = xml_chars(&self.object);
        let object = object.as_ref();
        let mut w = Writer::new(Vec::with_capacity(256));
        // Writing into a Vec cannot fail.
        let _ = (|| -> std::io::Result<()> {
            w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
            w.create_element("doc").write_inner_content(|w| {
                let mut error = w
                    .create_element("error")
                    .with_attribute(("type", self.kind));
                if !object.is_empty() {
                    error = error.with_attribute(("object", object));
                }
                error.write_inner_content(|w| {
                    if !object.is_empty() {
                        w.create_element("param")
                            .with_attributes([("name", "object"), ("type", "msg"), ("msg", object)])
                            .write_text_content(text(object))?;
                    }
                    if let Some(value) = &self.value {
                        w.create_element("param")
                            .with_attribute(("name", "value"))
                            .write_text_content(text(value))?;
                    }
                    w.create_element("msg")
                        .write_text_content(text(&self.message))?;
                    Ok(())
                })?;
                Ok(())
            })?;
            Ok(())
        })();
        w.into_inner()
    }

    fn json(&self) -> Vec<u8> {
        let mut params = Vec::new();
        if !self.object.is_empty() {
            params.push(
                json!({"$name": "object", "$type": "msg", "$msg": self.object, "$": self.object}),
            );
        }
        if let Some(value) = &self.value {
            params.push(json!({"$name": "value", "$": value}));
        }
        let mut error = json!({"$type": self.kind, "msg": {"$": self.message}});
        if !self.object.is_empty() {
            error["$object"] = json!(self.object);
        }
        match params.len() {
            0 => {}
            1 => error["param"] = params.remove(0),
            _ => error["param"] = json!(params),
        }
        json!({"doc": {"error": error}}).to_string().into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &str) -> Params {
        Params::parse(&[q.as_bytes()])
    }

    #[test]
    fn the_panels_query_parses() {
        let q =
            params("func=pricelist.export&itemtype=addition&onlyavailable=on&out=xml&authinfo=u:p")
                .price_query()
                .expect("query");
        assert_eq!(q.itemtype, "addition");
        assert!(q.only_available);
        assert_eq!(q.pricelist, None);
        assert!(matches!(q.format, Format::Xml));
        let q = params("itemtype=addition&pricelist=55361&out=json&lang=ru&extra=1")
            .price_query()
            .expect("query");
        assert_eq!(q.pricelist, Some(55361));
        assert!(matches!(q.format, Format::Json));
        assert_eq!(q.lang.as_deref(), Some("ru"));
        assert!(!q.only_available);
    }

    #[test]
    fn bad_parameters_name_the_field() {
        let object = |q: &str| params(q).price_query().expect_err(q).object;
        assert_eq!(object("out=html&itemtype=addition"), "out");
        assert_eq!(object("itemtype=addition&pricelist=abc"), "pricelist");
        assert_eq!(object("itemtype=addition&pricelist=-1"), "pricelist");
        assert_eq!(
            object("itemtype=addition&pricelist=99999999999999999999999"),
            "pricelist"
        );
    }

    #[test]
    fn the_query_is_read_as_leniently_as_billmanager_reads_it() {
        let q = |text: &str| params(text).price_query().expect(text);
        assert_eq!(q("out=xml").itemtype, MODULES, "no itemtype: the modules");
        for yes in ["on", "ON", "yes", "true", "1"] {
            assert!(q(&format!("onlyavailable={yes}")).only_available, "{yes}");
        }
        for no in ["off", "", "no", "false", "0", "maybe"] {
            assert!(!q(&format!("onlyavailable={no}")).only_available, "{no}");
        }
        for (lang, code) in [
            ("ru", Some("ru")),
            ("en", Some("en")),
            ("ru_RU", Some("ru")),
            ("en-US", Some("en")),
            ("RU", Some("ru")),
            ("ru_RU.UTF-8", Some("ru")),
            ("%3Cscript%3E", None),
            ("ru1", None),
            ("", None),
            ("x", None),
        ] {
            assert_eq!(q(&format!("lang={lang}")).lang.as_deref(), code, "{lang}");
        }
        assert!(matches!(q("out=sjson").format, Format::Json));
        assert!(matches!(q("out=JSON").format, Format::Json));
        assert!(matches!(q("out=").format, Format::Xml));
    }

    #[test]
    fn error_document_is_escaped_and_complete() {
        let e = BillmgrError::value("itemtype", "<soft & \"hard\">", "only modules");
        let (ct, body) = e.render(Format::Xml);
        assert_eq!(ct, XML);
        let text = String::from_utf8(body).expect("utf-8");
        let doc = roxmltree::Document::parse(&text).expect("well-formed");
        let error = doc.root_element().first_element_child().expect("error");
        assert_eq!(error.tag_name().name(), "error");
        assert_eq!(error.attribute("type"), Some("value"));
        assert_eq!(error.attribute("object"), Some("itemtype"));
        let value = error
            .children()
            .find(|n| n.attribute("name") == Some("value"))
            .expect("value");
        assert_eq!(value.text(), Some("<soft & \"hard\">"));

        let (ct, body) = e.render(Format::Json);
        assert_eq!(ct, JSON);
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["doc"]["error"]["$type"], "value");
        assert_eq!(v["doc"]["error"]["param"][1]["$"], "<soft & \"hard\">");
    }

    /// Parses `body` with two XML parsers, failing on anything not well-formed.
    fn assert_well_formed(body: &[u8]) {
        let text = std::str::from_utf8(body).expect("UTF-8");
        roxmltree::Document::parse(text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
        let mut reader = quick_xml::Reader::from_str(text);
        loop {
            match reader.read_event() {
                Ok(Event::Eof) => break,
                Ok(_) => {}
                Err(e) => panic!("{e}: {text:?}"),
            }
        }
        assert!(text.chars().all(is_xml_char), "{text:?}");
    }

    #[test]
    fn characters_xml_cannot_carry_are_replaced() {
        for hostile in ["\0", "\u{1}", "\u{1b}[31m", "\u{FFFE}", "a\u{FFFF}b\u{8}"] {
            let query = format!("itemtype=addition&pricelist={hostile}");
            let e = params(&query).price_query().expect_err(&query);
            let (_, body) = e.render(Format::Xml);
            assert_well_formed(&body);
            let text = String::from_utf8(body).expect("UTF-8");
            assert!(text.contains('\u{FFFD}'), "{text:?}");
            // The field name too, and the message a plugin may give.
            let e = BillmgrError::value(hostile, hostile, hostile);
            assert_well_formed(&e.render(Format::Xml).1);
            let (_, json) = e.render(Format::Json);
            let v: serde_json::Value = serde_json::from_slice(&json).expect("JSON");
            assert_eq!(v["doc"]["error"]["$object"], hostile);
        }
        assert_eq!(xml_chars("tab\tnew\nline"), "tab\tnew\nline");
        assert!(matches!(
            xml_chars("plain Щ 😀"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn echoed_values_are_cut() {
        let e = BillmgrError::value(&"f".repeat(500), &"Щ".repeat(1000), &"w".repeat(5000));
        assert_eq!(e.value.map(|v| v.chars().count()), Some(ECHO_CHARS));
        assert_eq!(e.object.len(), ECHO_CHARS);
        assert!(e.message.len() < ECHO_CHARS + REASON_CHARS + 64);
    }

    #[test]
    fn only_the_asked_format_passes() {
        assert!(content_type_matches(Format::Xml, "text/xml; charset=utf-8"));
        assert!(content_type_matches(Format::Xml, "application/XML"));
        assert!(content_type_matches(
            Format::Json,
            "application/json; charset=utf-8"
        ));
        assert!(!content_type_matches(Format::Xml, "text/html"));
        assert!(!content_type_matches(Format::Xml, "application/json"));
        assert!(!content_type_matches(Format::Json, "text/xml"));
        assert!(!content_type_matches(Format::Json, ""));
    }
}
