//! Answer documents: a small element tree, written as BILLmanager XML with quick-xml (so every
//! text and attribute is escaped by the writer), as BILLmanager JSON, or as an HTML page.

use std::io;

use quick_xml::Writer;
use quick_xml::escape::partial_escape;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use serde_json::{Map, Value};

/// The format asked for with `out=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// `out=xml`, and the default.
    Xml,
    /// `out=json`.
    Json,
}

impl Format {
    /// The format named by an `out` parameter; XML for anything but `json`.
    pub(crate) fn from_out(out: Option<&str>) -> Format {
        match out {
            Some(o) if o.trim().eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::Xml,
        }
    }

    /// The HTTP content type of a document in this format.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::Xml => "text/xml; charset=UTF-8",
            Format::Json => "application/json",
        }
    }
}

/// An element: a name and attributes from this crate (always valid XML names), and text and
/// attribute values from anywhere (escaped when written).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Node {
    name: &'static str,
    attrs: Vec<(&'static str, String)>,
    text: Option<String>,
    children: Vec<Node>,
}

impl Node {
    /// An empty element.
    pub(crate) fn new(name: &'static str) -> Node {
        Node {
            name,
            attrs: Vec::new(),
            text: None,
            children: Vec::new(),
        }
    }

    /// An element holding only text.
    pub(crate) fn leaf(name: &'static str, text: impl Into<String>) -> Node {
        Node::new(name).text(text)
    }

    /// Adds an attribute.
    pub(crate) fn attr(mut self, name: &'static str, value: impl Into<String>) -> Node {
        self.attrs.push((name, value.into()));
        self
    }

    /// Sets the text.
    pub(crate) fn text(mut self, text: impl Into<String>) -> Node {
        self.text = Some(text.into());
        self
    }

    /// Appends a child.
    pub(crate) fn child(mut self, child: Node) -> Node {
        self.children.push(child);
        self
    }

    /// Appends children.
    pub(crate) fn children(mut self, children: impl IntoIterator<Item = Node>) -> Node {
        self.children.extend(children);
        self
    }

    /// The document in `format`, as BILLmanager writes it.
    pub(crate) fn render(&self, format: Format) -> io::Result<Vec<u8>> {
        match format {
            Format::Xml => self.to_xml(true),
            Format::Json => {
                let mut root = Map::new();
                root.insert(self.name.to_owned(), self.to_json());
                serde_json::to_vec(&Value::Object(root)).map_err(io::Error::other)
            }
        }
    }

    /// The element as XML, after an XML declaration if `declaration`.
    pub(crate) fn to_xml(&self, declaration: bool) -> io::Result<Vec<u8>> {
        let mut writer = Writer::new(Vec::new());
        if declaration {
            writer.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
            writer.get_mut().push(b'\n');
        }
        self.write(&mut writer)?;
        Ok(writer.into_inner())
    }

    fn write(&self, writer: &mut Writer<Vec<u8>>) -> io::Result<()> {
        let start = BytesStart::new(self.name)
            .with_attributes(self.attrs.iter().map(|(k, v)| (*k, v.as_str())));
        if self.text.is_none() && self.children.is_empty() {
            return writer.write_event(Event::Empty(start));
        }
        writer.write_event(Event::Start(start))?;
        if let Some(text) = &self.text {
            // Quotes need no escaping in text: `'` stays readable in messages.
            writer.write_event(Event::Text(BytesText::from_escaped(partial_escape(text))))?;
        }
        for child in &self.children {
            child.write(writer)?;
        }
        writer.write_event(Event::End(BytesEnd::new(self.name)))
    }

    /// BILLmanager's JSON convention: text under `"$"`, an attribute under `"$name"`, one child
    /// as an object, repeated children as an array.
    fn to_json(&self) -> Value {
        let mut map = Map::new();
        for (name, value) in &self.attrs {
            map.insert(format!("${name}"), Value::String(value.clone()));
        }
        if let Some(text) = &self.text {
            map.insert("$".to_owned(), Value::String(text.clone()));
        }
        for child in &self.children {
            let value = child.to_json();
            // Child values are always objects, so an array here can only be repeated children.
            match map.get_mut(child.name) {
                None => {
                    map.insert(child.name.to_owned(), value);
                }
                Some(Value::Array(items)) => items.push(value),
                Some(first) => {
                    let first = first.take();
                    map.insert(child.name.to_owned(), Value::Array(vec![first, value]));
                }
            }
        }
        Value::Object(map)
    }
}

/// A small HTML page, like the error pages of a web server in front of the billing.
pub(crate) fn html_page(title: &str, text: &str) -> io::Result<Vec<u8>> {
    let page = Node::new("html")
        .child(Node::new("head").child(Node::leaf("title", title)))
        .child(
            Node::new("body")
                .child(Node::leaf("h1", title))
                .child(Node::leaf("p", text)),
        );
    let mut bytes = b"<!DOCTYPE html>\n".to_vec();
    bytes.extend(page.to_xml(false)?);
    Ok(bytes)
}

/// BILLmanager's login page, as an upstream answers a call it did not take as an API call.
pub(crate) fn login_page() -> io::Result<Vec<u8>> {
    let input = |kind: &str, name: &str| {
        Node::new("input")
            .attr("type", kind)
            .attr("name", name)
            .attr("value", "")
    };
    let form = Node::new("form")
        .attr("method", "post")
        .attr("action", "/billmgr")
        .child(
            Node::new("input")
                .attr("type", "hidden")
                .attr("name", "func")
                .attr("value", "auth"),
        )
        .child(input("text", "username"))
        .child(input("password", "password"))
        .child(
            Node::new("input")
                .attr("type", "submit")
                .attr("value", "Log in"),
        );
    let page = Node::new("html")
        .child(Node::new("head").child(Node::leaf("title", "BILLmanager")))
        .child(
            Node::new("body")
                .child(Node::leaf("h1", "Log in to BILLmanager"))
                .child(form),
        );
    let mut bytes = b"<!DOCTYPE html>\n".to_vec();
    bytes.extend(page.to_xml(false)?);
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: io::Result<Vec<u8>>) -> String {
        String::from_utf8(bytes.expect("rendered")).expect("UTF-8")
    }

    #[test]
    fn xml_escapes_text_and_attributes() {
        let doc = Node::new("doc").child(
            Node::new("error")
                .attr("object", "a\"<&>")
                .child(Node::leaf("msg", "x < y & z")),
        );
        assert_eq!(
            text(doc.render(Format::Xml)),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <doc><error object=\"a&quot;&lt;&amp;&gt;\"><msg>x &lt; y &amp; z</msg></error></doc>"
        );
    }

    #[test]
    fn empty_elements_are_self_closing() {
        let doc = Node::new("doc").child(Node::new("ok"));
        assert_eq!(text(doc.to_xml(false)), "<doc><ok/></doc>");
    }

    #[test]
    fn json_follows_the_billmanager_convention() {
        let period = |cost: &str, length: &str| {
            Node::leaf("period", "x")
                .attr("cost", cost)
                .attr("length", length)
        };
        let doc = Node::new("doc")
            .child(Node::leaf("id", "1"))
            .child(
                Node::new("price")
                    .attr("currency", "EUR")
                    .child(period("1.0000", "1"))
                    .child(period("9.0000", "12"))
                    .child(period("20.0000", "24")),
            )
            .child(Node::new("ok"));
        let value: Value =
            serde_json::from_slice(&doc.render(Format::Json).expect("json")).expect("parses");
        assert_eq!(
            value,
            serde_json::json!({"doc": {
                "id": {"$": "1"},
                "price": {"$currency": "EUR", "period": [
                    {"$": "x", "$cost": "1.0000", "$length": "1"},
                    {"$": "x", "$cost": "9.0000", "$length": "12"},
                    {"$": "x", "$cost": "20.0000", "$length": "24"},
                ]},
                "ok": {},
            }})
        );
    }

    #[test]
    fn html_pages_are_escaped_too() {
        let page = text(html_page("502 Bad Gateway", "<script>"));
        assert!(page.starts_with("<!DOCTYPE html>\n<html><head><title>502 Bad Gateway"));
        assert!(page.contains("<p>&lt;script&gt;</p>"));
    }

    #[test]
    fn out_selects_the_format() {
        assert_eq!(Format::from_out(Some("json")), Format::Json);
        assert_eq!(Format::from_out(Some("xml")), Format::Xml);
        assert_eq!(Format::from_out(Some("devel")), Format::Xml);
        assert_eq!(Format::from_out(None), Format::Xml);
    }
}
