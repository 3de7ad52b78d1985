//! The order side of the ispmanager protocol: the upstream BILLmanager calls a placed module
//! needs, and the reading of their answers.
//!
//! Every answer is told apart: a `<doc>` with the expected content, a `<doc><error>`, or
//! something that is not a BILLmanager document at all (an HTML page, a truncated or empty
//! body). For a call that changes something upstream, an unreadable answer means the change may
//! or may not have happened: it is reported as in doubt, never as a plain failure to retry.

use rust_decimal::Decimal;
use serde::Deserialize;

use crate::model::{FieldError, Money, PeriodCost, UNITS_PER_ONE};

/// What upstream answered, whatever it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// The body as received.
    pub body: Vec<u8>,
    /// Whether the host cut the body at its size bound.
    pub truncated: bool,
}

/// Why the host gave no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallError {
    /// Refused by the host's policy.
    NotAllowed(String),
    /// Never left the host.
    NotSent(String),
    /// May have reached upstream.
    InDoubt(String),
}

/// The mediated upstream call, as the plugin sees it.
pub trait Upstream {
    /// Sends `func` with `params` (credentials and format are the host's to add).
    fn call(&mut self, func: &str, params: &[(&str, &str)]) -> Result<Response, CallError>;
}

/// A BILLmanager error document from upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamFailure {
    /// `type` attribute.
    pub kind: String,
    /// `object` attribute.
    pub object: String,
    /// `<msg>` text.
    pub message: String,
}

/// Why an order hook failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// Credentials refused.
    #[error("upstream refused the credentials: {0}")]
    Auth(String),
    /// A value refused.
    #[error("upstream refused `{}`: {}", .0.field, .0.message)]
    InvalidValue(FieldError),
    /// A field missing.
    #[error("upstream misses `{}`: {}", .0.field, .0.message)]
    MissingValue(FieldError),
    /// Not enough money upstream.
    #[error("insufficient upstream balance: {0}")]
    InsufficientBalance(String),
    /// Never sent: safe to retry.
    #[error("not sent: {0}")]
    NotSent(String),
    /// Outcome unknown.
    #[error("in doubt: {0}")]
    InDoubt(String),
    /// A read answered with something that is not a document.
    #[error("malformed answer: {0}")]
    MalformedAnswer(String),
    /// Another upstream error document.
    #[error("upstream error {} on `{}`: {}", .0.kind, .0.object, .0.message)]
    Upstream(UpstreamFailure),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// A paid order to place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Order {
    /// The panel's licence ID (`item`).
    pub licence_id: String,
    /// Module tariff ID (`pricelist`).
    pub tariff_id: u64,
    /// Months paid for.
    pub period: u16,
    /// Renew automatically upstream.
    pub autoprolong: bool,
}

/// Upstream costs of one module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamOffer {
    /// Tariff ID.
    pub tariff_id: u64,
    /// Costs per period.
    pub costs: Vec<PeriodCost>,
}

/// Error `type`s that mean the partner's balance does not cover an order. Upstream's exact word
/// is not documented; these are the ones this plugin recognises.
const BALANCE_ERRORS: &[&str] = &["balance", "nomoney", "notenoughmoney"];

/// Orders the module for the licence, paid from the partner's balance (`skipbasket=on`).
/// Returns the new module service's ID.
pub fn place(up: &mut dyn Upstream, order: &Order) -> Result<String, OrderError> {
    let period = order.period.to_string();
    let tariff = order.tariff_id.to_string();
    let autoprolong = if order.autoprolong {
        period.as_str()
    } else {
        "null"
    };
    let params = [
        ("item", order.licence_id.as_str()),
        ("period", period.as_str()),
        ("pricelist", tariff.as_str()),
        ("autoprolong", autoprolong),
        ("skipbasket", "on"),
        ("sok", "ok"),
    ];
    let doc = call(up, "addition.order.param", &params, Effect::Write)?;
    match doc.id.map(|id| id.trim().to_owned()) {
        Some(id) if !id.is_empty() => Ok(id),
        _ => Err(OrderError::InDoubt(
            "upstream accepted the order but named no service ID".to_owned(),
        )),
    }
}

/// Binds a placed module to another licence.
pub fn rebind(up: &mut dyn Upstream, service_id: &str, licence_id: &str) -> Result<(), OrderError> {
    let params = [("elid", service_id), ("item", licence_id), ("sok", "ok")];
    call(up, "addition.edit", &params, Effect::Write).map(drop)
}

/// Renews a placed module for `period` months.
pub fn renew(up: &mut dyn Upstream, service_id: &str, period: u16) -> Result<(), OrderError> {
    let period = period.to_string();
    let params = [
        ("elid", service_id),
        ("period", period.as_str()),
        ("sok", "ok"),
    ];
    call(up, "service.prolong", &params, Effect::Write).map(drop)
}

/// Removes a placed module upstream.
pub fn remove(up: &mut dyn Upstream, service_id: &str) -> Result<(), OrderError> {
    let params = [("elid", service_id), ("sok", "ok")];
    call(up, "addition.delete", &params, Effect::Write).map(drop)
}

/// What upstream charges the partner for modules now.
pub fn upstream_costs(up: &mut dyn Upstream) -> Result<Vec<UpstreamOffer>, OrderError> {
    let doc = call(
        up,
        "pricelist.export",
        &[("itemtype", "addition")],
        Effect::Read,
    )?;
    doc.pricelist.into_iter().map(upstream_offer).collect()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Effect {
    Read,
    Write,
}

#[derive(Debug, Default, Deserialize)]
struct Doc {
    id: Option<String>,
    error: Option<ErrorElement>,
    #[serde(default)]
    pricelist: Vec<PricelistElement>,
}

#[derive(Debug, Deserialize)]
struct ErrorElement {
    #[serde(rename = "@type", default)]
    kind: String,
    #[serde(rename = "@object", default)]
    object: String,
    #[serde(default)]
    param: Vec<ParamElement>,
    #[serde(default)]
    msg: String,
}

#[derive(Debug, Deserialize)]
struct ParamElement {
    #[serde(rename = "@name", default)]
    name: String,
    #[serde(rename = "$text", default)]
    text: String,
}

#[derive(Debug, Deserialize)]
struct PricelistElement {
    id: String,
    price: Option<PriceElement>,
}

#[derive(Debug, Deserialize)]
struct PriceElement {
    #[serde(rename = "@currency")]
    currency: String,
    #[serde(default)]
    period: Vec<PeriodElement>,
}

#[derive(Debug, Deserialize)]
struct PeriodElement {
    #[serde(rename = "@cost")]
    cost: String,
    #[serde(rename = "@type", default)]
    kind: String,
    #[serde(rename = "@length")]
    length: String,
}

fn call(
    up: &mut dyn Upstream,
    func: &str,
    params: &[(&str, &str)],
    effect: Effect,
) -> Result<Doc, OrderError> {
    let response = up.call(func, params).map_err(|e| match e {
        CallError::NotAllowed(m) => OrderError::Other(format!("the host refused `{func}`: {m}")),
        CallError::NotSent(m) => OrderError::NotSent(m),
        CallError::InDoubt(m) => OrderError::InDoubt(m),
    })?;
    let unreadable = |why: String| {
        let what = format!("`{func}` answered HTTP {} with {why}", response.status);
        match effect {
            Effect::Write => OrderError::InDoubt(what),
            Effect::Read => OrderError::MalformedAnswer(what),
        }
    };
    if response.truncated {
        return Err(unreadable("a body cut at the size bound".to_owned()));
    }
    let text = std::str::from_utf8(&response.body)
        .map_err(|_| unreadable("a body that is not UTF-8".to_owned()))?;
    if text.trim().is_empty() {
        return Err(unreadable("an empty body".to_owned()));
    }
    if !is_doc(text) {
        return Err(unreadable(
            "something that is not a BILLmanager document".to_owned(),
        ));
    }
    let doc: Doc = quick_xml::de::from_str(text)
        .map_err(|e| unreadable(format!("a document that does not parse ({e})")))?;
    if let Some(error) = doc.error {
        return Err(upstream_error(error));
    }
    if !(200..300).contains(&response.status) {
        return Err(unreadable("a document without an error".to_owned()));
    }
    Ok(doc)
}

/// Whether the document's root element is `<doc>`.
fn is_doc(text: &str) -> bool {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(text);
    loop {
        match reader.read_event() {
            Ok(Event::Start(e) | Event::Empty(e)) => return e.name().0 == "doc",
            Ok(Event::Eof) | Err(_) => return false,
            Ok(_) => {}
        }
    }
}

fn upstream_error(e: ErrorElement) -> OrderError {
    let value = e
        .param
        .iter()
        .find(|p| p.name == "value")
        .map(|p| p.text.clone());
    let field = || FieldError {
        field: e.object.clone(),
        value: value.clone().unwrap_or_default(),
        message: e.msg.clone(),
    };
    match e.kind.as_str() {
        "auth" => OrderError::Auth(e.msg),
        "value" => OrderError::InvalidValue(field()),
        "missed" => OrderError::MissingValue(field()),
        kind if BALANCE_ERRORS.contains(&kind) => OrderError::InsufficientBalance(e.msg),
        _ => OrderError::Upstream(UpstreamFailure {
            kind: e.kind,
            object: e.object,
            message: e.msg,
        }),
    }
}

fn upstream_offer(p: PricelistElement) -> Result<UpstreamOffer, OrderError> {
    let bad = |what: &str| OrderError::MalformedAnswer(format!("module {}: {what}", p.id));
    let tariff_id =
        p.id.trim()
            .parse()
            .map_err(|_| bad("the ID is not a number"))?;
    let mut costs = Vec::new();
    if let Some(price) = &p.price {
        for period in price
            .period
            .iter()
            .filter(|x| x.kind.is_empty() || x.kind == "month")
        {
            let months = period
                .length
                .trim()
                .parse()
                .map_err(|_| bad("a period length is not a number"))?;
            let units = period
                .cost
                .trim()
                .parse::<Decimal>()
                .ok()
                .filter(|d| !d.is_sign_negative() && d.scale() <= 4)
                .and_then(|d| d.checked_mul(Decimal::from(UNITS_PER_ONE)))
                .and_then(|d| i64::try_from(d).ok())
                .ok_or_else(|| bad("a cost is not an amount with at most four decimals"))?;
            costs.push(PeriodCost {
                months,
                cost: Money {
                    units,
                    currency: price.currency.clone(),
                },
            });
        }
    }
    Ok(UpstreamOffer { tariff_id, costs })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers every call with one canned response and records what was asked.
    struct Canned {
        answer: Result<Response, CallError>,
        calls: Vec<(String, Vec<(String, String)>)>,
    }

    impl Canned {
        fn new(status: u16, body: &str) -> Self {
            let answer = Ok(Response {
                status,
                body: body.as_bytes().to_vec(),
                truncated: false,
            });
            Canned {
                answer,
                calls: Vec::new(),
            }
        }
    }

    impl Upstream for Canned {
        fn call(&mut self, func: &str, params: &[(&str, &str)]) -> Result<Response, CallError> {
            let params = params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            self.calls.push((func.to_owned(), params));
            self.answer.clone()
        }
    }

    fn order(autoprolong: bool) -> Order {
        Order {
            licence_id: "L-1".to_owned(),
            tariff_id: 55361,
            period: 12,
            autoprolong,
        }
    }

    #[test]
    fn place_sends_the_documented_parameters_and_reads_the_id() {
        let mut up = Canned::new(200, "<?xml version=\"1.0\"?>\n<doc><id> 4242 </id></doc>");
        assert_eq!(place(&mut up, &order(true)), Ok("4242".to_owned()));
        let (func, params) = &up.calls[0];
        assert_eq!(func, "addition.order.param");
        let expected = [
            ("item", "L-1"),
            ("period", "12"),
            ("pricelist", "55361"),
            ("autoprolong", "12"),
            ("skipbasket", "on"),
            ("sok", "ok"),
        ];
        let got: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(got, expected);
        place(&mut up, &order(false)).expect("placed");
        assert!(
            up.calls[1]
                .1
                .contains(&("autoprolong".to_owned(), "null".to_owned()))
        );
    }

    #[test]
    fn upstream_error_documents_are_typed() {
        let value = r#"<doc><error type="value" object="pricelist">
            <param name="object" type="msg" msg="pricelist">pricelist</param>
            <param name="value">99999</param>
            <msg>The value of the field 'pricelist' is invalid</msg></error></doc>"#;
        let expected = OrderError::InvalidValue(FieldError {
            field: "pricelist".to_owned(),
            value: "99999".to_owned(),
            message: "The value of the field 'pricelist' is invalid".to_owned(),
        });
        assert_eq!(
            place(&mut Canned::new(200, value), &order(false)),
            Err(expected)
        );

        let auth = r#"<doc><error type="auth"><msg>Bad login &amp; password</msg></error></doc>"#;
        assert_eq!(
            place(&mut Canned::new(200, auth), &order(false)),
            Err(OrderError::Auth("Bad login & password".to_owned()))
        );
        let missed = r#"<doc><error type="missed" object="item"><msg>m</msg></error></doc>"#;
        assert!(matches!(
            rebind(&mut Canned::new(200, missed), "1", "2"),
            Err(OrderError::MissingValue(f)) if f.field == "item"
        ));
        let money = r#"<doc><error type="balance"><msg>Not enough money</msg></error></doc>"#;
        assert!(matches!(
            place(&mut Canned::new(200, money), &order(false)),
            Err(OrderError::InsufficientBalance(_))
        ));
        let other = r#"<doc><error type="exists" object="elid"><msg>x</msg></error></doc>"#;
        assert!(matches!(
            remove(&mut Canned::new(500, other), "1"),
            Err(OrderError::Upstream(f)) if f.kind == "exists" && f.object == "elid"
        ));
    }

    #[test]
    fn unreadable_answers_to_writes_are_in_doubt_and_to_reads_malformed() {
        let cases = [
            (502, "<html><body>Bad Gateway</body></html>"),
            (200, ""),
            (200, "<doc><id>12"),
            (200, "not xml at all"),
            (500, "<doc/>"),
        ];
        for (status, body) in cases {
            let placed = place(&mut Canned::new(status, body), &order(false));
            assert!(
                matches!(placed, Err(OrderError::InDoubt(_))),
                "{body:?}: {placed:?}"
            );
            let costs = upstream_costs(&mut Canned::new(status, body));
            assert!(
                matches!(costs, Err(OrderError::MalformedAnswer(_))),
                "{body:?}: {costs:?}"
            );
        }
        let mut cut = Canned::new(200, "<doc><id>12</id></doc>");
        if let Ok(r) = &mut cut.answer {
            r.truncated = true;
        }
        assert!(matches!(
            renew(&mut cut, "12", 1),
            Err(OrderError::InDoubt(_))
        ));
        let no_id = place(&mut Canned::new(200, "<doc><ok/></doc>"), &order(false));
        assert!(matches!(no_id, Err(OrderError::InDoubt(_))));
    }

    #[test]
    fn host_errors_keep_their_meaning() {
        for (e, check) in [
            (CallError::NotSent("refused".to_owned()), "not sent"),
            (CallError::InDoubt("timeout".to_owned()), "in doubt"),
            (CallError::NotAllowed("policy".to_owned()), "refused"),
        ] {
            let mut up = Canned {
                answer: Err(e),
                calls: Vec::new(),
            };
            let err = place(&mut up, &order(false)).expect_err("fails");
            assert!(err.to_string().contains(check), "{err}");
        }
    }

    #[test]
    fn upstream_costs_are_read_exactly() {
        let body = r#"<doc>
            <pricelist><id>277</id><additionintname>Virusdie</additionintname>
              <price currency="EUR">
                <period cost="913.9286" type="month" length="1">monthly</period>
                <period cost="9000" type="month" length="12">annually</period>
              </price></pricelist>
            <pricelist><id>23221</id></pricelist>
          </doc>"#;
        let offers = upstream_costs(&mut Canned::new(200, body)).expect("costs");
        assert_eq!(offers.len(), 2);
        assert_eq!(offers[0].tariff_id, 277);
        assert_eq!(offers[0].costs[0].cost.units, 9_139_286);
        assert_eq!(offers[0].costs[1].months, 12);
        assert_eq!(offers[0].costs[1].cost.units, 90_000_000);
        assert!(offers[1].costs.is_empty());
        let bad = r#"<doc><pricelist><id>1</id><price currency="EUR">
            <period cost="1.23456" type="month" length="1"/></price></pricelist></doc>"#;
        assert!(matches!(
            upstream_costs(&mut Canned::new(200, bad)),
            Err(OrderError::MalformedAnswer(_))
        ));
    }
}
