//! The `pricelist.export` answer in BILLmanager's XML and JSON forms.
//!
//! XML: `<doc>` holding one `<pricelist>` per module with `id`, `additionintname`, one
//! `price currency=".."` per currency holding `period cost="0.0000" type="month" length="N"`
//! elements, `intname` and `name`: the order in which the vendor's documentation lists them.
//! JSON: the same tree under `{"doc": ..}`, an element's text under `"$"`, its attributes under
//! `"$name"`; a single child is an object, repeated children an array.

use std::borrow::Cow;

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesText, Event};
use serde::Serialize;

use crate::model::{Cost, Document, Money};

/// Element text escaped only where XML needs it (`<`, `>`, `&`): quotes stay readable.
/// Characters XML cannot carry are replaced first (see [`xml_chars`]).
pub fn xml_text(s: &str) -> BytesText<'_> {
    use quick_xml::escape::partial_escape;
    match xml_chars(s) {
        Cow::Borrowed(s) => BytesText::from_escaped(partial_escape(s)),
        Cow::Owned(s) => BytesText::from_escaped(partial_escape(&s).into_owned()),
    }
}

/// Whether XML 1.0 can carry `c` at all, escaped or not: not the C0 controls other than tab,
/// line feed and carriage return, nor U+FFFE and U+FFFF.
pub fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// `s` with every character XML cannot carry replaced by U+FFFD: whatever the catalogue says,
/// the document stays well-formed.
pub fn xml_chars(s: &str) -> Cow<'_, str> {
    if s.chars().all(is_xml_char) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(
            s.chars()
                .map(|c| if is_xml_char(c) { c } else { '\u{FFFD}' })
                .collect(),
        )
    }
}

/// Content type of the XML form.
pub const XML: &str = "text/xml; charset=utf-8";
/// Content type of the JSON form.
pub const JSON: &str = "application/json; charset=utf-8";

/// One module's line in the price list, priced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PriceLine<'a> {
    /// Upstream tariff ID.
    pub id: u64,
    /// Service name.
    pub intname: &'a str,
    /// Display name.
    pub name: &'a str,
    /// Service name of the kind.
    pub additionintname: &'a str,
    /// Price per period, the 1-month one first.
    pub periods: Vec<(u16, Money)>,
}

impl PriceLine<'_> {
    /// The periods grouped by currency, each currency once, in the order it first appears.
    fn by_currency(&self) -> Vec<(&str, Vec<(u16, &Money)>)> {
        let mut groups: Vec<(&str, Vec<(u16, &Money)>)> = Vec::with_capacity(1);
        for (months, money) in &self.periods {
            match groups.iter_mut().find(|(c, _)| *c == money.currency) {
                Some((_, periods)) => periods.push((*months, money)),
                None => groups.push((money.currency.as_str(), vec![(*months, money)])),
            }
        }
        groups
    }
}

/// BILLmanager's word for a period's length, the text of `<period>`.
fn period_word(months: u16) -> &'static str {
    match months {
        1 => "monthly",
        3 => "quarterly",
        6 => "semiannual",
        12 => "annually",
        _ => "period",
    }
}

/// Renders the XML form.
pub fn xml(lines: &[PriceLine<'_>]) -> Document {
    let mut w = Writer::new(Vec::with_capacity(256 + 320 * lines.len()));
    // Writing into a Vec cannot fail: the io::Result carries no error here.
    let _ = write_xml(&mut w, lines);
    Document {
        content_type: XML,
        body: w.into_inner(),
    }
}

fn write_xml(w: &mut Writer<Vec<u8>>, lines: &[PriceLine<'_>]) -> std::io::Result<()> {
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    w.create_element("doc").write_inner_content(|w| {
        for line in lines {
            w.create_element("pricelist").write_inner_content(|w| {
                let id = line.id.to_string();
                w.create_element("id").write_text_content(xml_text(&id))?;
                w.create_element("additionintname")
                    .write_text_content(xml_text(line.additionintname))?;
                for (currency, periods) in line.by_currency() {
                    w.create_element("price")
                        .with_attribute(("currency", xml_chars(currency).as_ref()))
                        .write_inner_content(|w| {
                            for (months, money) in &periods {
                                let cost = Cost(money.units).to_string();
                                let length = months.to_string();
                                w.create_element("period")
                                    .with_attributes([
                                        ("cost", cost.as_str()),
                                        ("type", "month"),
                                        ("length", length.as_str()),
                                    ])
                                    .write_text_content(xml_text(period_word(*months)))?;
                            }
                            Ok(())
                        })?;
                }
                w.create_element("intname")
                    .write_text_content(xml_text(line.intname))?;
                w.create_element("name")
                    .write_text_content(xml_text(line.name))?;
                Ok(())
            })?;
        }
        Ok(())
    })?;
    Ok(())
}

/// An element with text only.
#[derive(Serialize)]
struct Text<'a> {
    #[serde(rename = "$")]
    text: &'a str,
}

/// One child is an object, repeated children an array.
#[derive(Serialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    fn new(mut items: Vec<T>) -> Option<Self> {
        match items.len() {
            0 => None,
            1 => items.pop().map(OneOrMany::One),
            _ => Some(OneOrMany::Many(items)),
        }
    }
}

#[derive(Serialize)]
struct JsonRoot<'a> {
    doc: JsonDoc<'a>,
}

#[derive(Serialize)]
struct JsonDoc<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pricelist: Option<OneOrMany<JsonLine<'a>>>,
}

#[derive(Serialize)]
struct JsonLine<'a> {
    id: Text<'a>,
    additionintname: Text<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    price: Option<OneOrMany<JsonPrice<'a>>>,
    intname: Text<'a>,
    name: Text<'a>,
}

#[derive(Serialize)]
struct JsonPrice<'a> {
    #[serde(rename = "$currency")]
    currency: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    period: Option<OneOrMany<JsonPeriod>>,
}

#[derive(Serialize)]
struct JsonPeriod {
    #[serde(rename = "$cost")]
    cost: String,
    #[serde(rename = "$type")]
    kind: &'static str,
    #[serde(rename = "$length")]
    length: String,
    #[serde(rename = "$")]
    text: &'static str,
}

/// Renders the JSON form.
pub fn json(lines: &[PriceLine<'_>]) -> Document {
    let ids: Vec<String> = lines.iter().map(|l| l.id.to_string()).collect();
    let items = lines
        .iter()
        .zip(&ids)
        .map(|(line, id)| JsonLine {
            id: Text { text: id },
            additionintname: Text {
                text: line.additionintname,
            },
            price: OneOrMany::new(
                line.by_currency()
                    .into_iter()
                    .map(|(currency, periods)| JsonPrice {
                        currency,
                        period: OneOrMany::new(
                            periods
                                .iter()
                                .map(|(months, money)| JsonPeriod {
                                    cost: Cost(money.units).to_string(),
                                    kind: "month",
                                    length: months.to_string(),
                                    text: period_word(*months),
                                })
                                .collect(),
                        ),
                    })
                    .collect(),
            ),
            intname: Text { text: line.intname },
            name: Text { text: line.name },
        })
        .collect();
    let root = JsonRoot {
        doc: JsonDoc {
            pricelist: OneOrMany::new(items),
        },
    };
    // Serialising these plain structs (string keys, no maps, no floats) cannot fail.
    let body = serde_json::to_vec(&root).unwrap_or_default();
    Document {
        content_type: JSON,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(id: u64, name: &'a str, periods: &[(u16, i64)]) -> PriceLine<'a> {
        PriceLine {
            id,
            intname: "drweb",
            name,
            additionintname: "DrWeb",
            periods: periods
                .iter()
                .map(|&(m, units)| {
                    (
                        m,
                        Money {
                            units,
                            currency: "EUR".to_owned(),
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn xml_has_the_documented_shape_and_escapes() {
        let doc = xml(&[line(
            277,
            "A <b> & \"c\" — Защита",
            &[(1, 9_139_286), (12, 90_000_000)],
        )]);
        assert_eq!(doc.content_type, XML);
        let text = String::from_utf8(doc.body).expect("utf-8");
        assert_eq!(
            text,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><doc><pricelist><id>277</id>\
             <additionintname>DrWeb</additionintname><price currency=\"EUR\">\
             <period cost=\"913.9286\" type=\"month\" length=\"1\">monthly</period>\
             <period cost=\"9000.0000\" type=\"month\" length=\"12\">annually</period>\
             </price><intname>drweb</intname><name>A &lt;b&gt; &amp; \"c\" — Защита</name>\
             </pricelist></doc>"
        );
    }

    #[test]
    fn any_catalogue_text_renders_a_well_formed_document() {
        let hostile = "\0\u{1}\u{1b}[0m\u{FFFE}\u{FFFF}<&>\"'\u{7f}\u{85}";
        let mut l = line(1, hostile, &[(1, 10_000)]);
        l.intname = hostile;
        l.additionintname = hostile;
        l.periods[0].1.currency = hostile.to_owned();
        let body = xml(&[l.clone()]).body;
        let text = std::str::from_utf8(&body).expect("UTF-8");
        let mut reader = quick_xml::Reader::from_str(text);
        loop {
            match reader.read_event() {
                Ok(Event::Eof) => break,
                Ok(_) => {}
                Err(e) => panic!("{e}: {text:?}"),
            }
        }
        assert!(text.chars().all(is_xml_char), "{text:?}");
        // Five characters replaced in each of the four places; the rest kept, escaped.
        assert_eq!(text.matches('\u{FFFD}').count(), 20, "{text:?}");
        assert_eq!(
            text.matches("[0m\u{FFFD}\u{FFFD}&lt;&amp;&gt;\"'\u{7f}\u{85}")
                .count(),
            3,
            "{text:?}"
        );
        let v: serde_json::Value = serde_json::from_slice(&json(&[l]).body).expect("JSON");
        assert_eq!(v["doc"]["pricelist"]["name"]["$"], hostile);
    }

    #[test]
    fn empty_list_is_an_empty_doc() {
        let text = String::from_utf8(xml(&[]).body).expect("utf-8");
        assert!(text.ends_with("<doc></doc>"), "{text}");
        assert_eq!(json(&[]).body, br#"{"doc":{}}"#);
    }

    #[test]
    fn json_single_child_is_object_repeated_is_array() {
        let one = json(&[line(1, "n", &[(1, 10_000)])]);
        assert_eq!(one.content_type, JSON);
        let v: serde_json::Value = serde_json::from_slice(&one.body).expect("json");
        assert_eq!(v["doc"]["pricelist"]["id"]["$"], "1");
        assert_eq!(v["doc"]["pricelist"]["price"]["$currency"], "EUR");
        assert_eq!(v["doc"]["pricelist"]["price"]["period"]["$cost"], "1.0000");
        assert_eq!(v["doc"]["pricelist"]["price"]["period"]["$length"], "1");
        assert_eq!(v["doc"]["pricelist"]["price"]["period"]["$"], "monthly");

        let two = json(&[
            line(1, "n", &[(1, 10_000), (12, 5)]),
            line(2, "\"<&>\"", &[(1, 1)]),
        ]);
        let v: serde_json::Value = serde_json::from_slice(&two.body).expect("json");
        assert_eq!(v["doc"]["pricelist"][1]["name"]["$"], "\"<&>\"");
        assert_eq!(
            v["doc"]["pricelist"][0]["price"]["period"][1]["$cost"],
            "0.0005"
        );
    }
}
