//! The order side of the ispmanager protocol: the upstream BILLmanager calls a module needs over
//! its life, and the reading of their answers.
//!
//! Every answer is told apart: a `<doc>` with the expected content, a `<doc><error>`, or
//! something that is not a BILLmanager document at all (an HTML page, a truncated or empty
//! body). For a call that changes something upstream, an unreadable answer means the change may
//! or may not have happened: it is reported as in doubt, never as a plain failure to retry.
//!
//! The function names are this module's: upstream's documentation names `addition.order.param`,
//! `addition.edit`, `service.prolong` and `addition.delete`; the list (`addition`), suspend and
//! resume (`addition.suspend`, `addition.resume`) and balance (`dashboard.info`) calls follow
//! BILLmanager's naming of the module section and are to be confirmed against a live account.

use rust_decimal::Decimal;
use serde::Deserialize;

use crate::model::{Date, FieldError, Money, PeriodCost, UNITS_PER_ONE};

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
    /// The host's order ID: sent as `remoteid`, BILLmanager's key for the caller's own ID, so
    /// that the module can be found upstream by it later.
    pub id: String,
    /// The panel's licence ID (`item`).
    pub licence_id: String,
    /// Module tariff ID (`pricelist`).
    pub tariff_id: u64,
    /// Months paid for.
    pub period: u16,
    /// Renew automatically upstream.
    pub autoprolong: bool,
    /// The module's own order fields (e.g. `bitninja_email`), sent as they are.
    pub fields: Vec<(String, String)>,
}

/// A module placed upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    /// The module service's ID (`elid` of later calls).
    pub service_id: String,
    /// Its expiry date, when upstream says.
    pub expires: Option<Date>,
}

/// What a renewal would do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RenewalQuote {
    /// The expiry date now.
    pub expires: Option<Date>,
    /// The expiry date after the renewal.
    pub new_expires: Option<Date>,
    /// What upstream would charge, read from the text it shows (`3.50 EUR per month`).
    pub cost: Option<Money>,
}

/// Where a module stands upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceStatus {
    /// Ordered, not yet active.
    Ordered,
    /// Active.
    Active,
    /// Suspended.
    Suspended,
    /// Deleted.
    Deleted,
    /// Not said plainly.
    Unknown,
}

impl ServiceStatus {
    /// The status of a BILLmanager status code, plain (`2`) or with its reason (`3_autosuspend`,
    /// the `orig` of a list's `item_status`): 1 ordered, 2 active, 3 suspended, 4 deleted,
    /// 5 being processed (counted as ordered).
    pub fn from_code(code: &str) -> ServiceStatus {
        match code.trim().split('_').next().unwrap_or_default() {
            "1" | "5" => ServiceStatus::Ordered,
            "2" => ServiceStatus::Active,
            "3" => ServiceStatus::Suspended,
            "4" => ServiceStatus::Deleted,
            _ => ServiceStatus::Unknown,
        }
    }
}

/// One module service upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamService {
    /// Its ID (`elid`).
    pub service_id: String,
    /// The licence it is bound to.
    pub licence_id: Option<String>,
    /// Its tariff ID.
    pub tariff_id: Option<u64>,
    /// Where it stands.
    pub status: ServiceStatus,
    /// When it expires.
    pub expires: Option<Date>,
    /// The caller's own ID for it (`remoteid`).
    pub remote_id: Option<String>,
}

/// Upstream's prices of one module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamOffer {
    /// Tariff ID.
    pub tariff_id: u64,
    /// Upstream's `intname` (empty when not given).
    pub intname: String,
    /// Upstream's `additionintname` (empty when not given).
    pub additionintname: String,
    /// Upstream's `name` (empty when not given).
    pub name: String,
    /// Costs per period, in every currency listed; trials are not among them.
    pub costs: Vec<PeriodCost>,
    /// Whether upstream lists a trial period (a length of -100, or 0).
    pub trial: bool,
}

/// Error `type`s that mean the partner's balance does not cover an order. Upstream's exact word
/// is not documented; these are the ones this plugin recognises.
const BALANCE_ERRORS: &[&str] = &["balance", "nomoney", "notenoughmoney"];

/// Orders the module for the licence, paid from the partner's balance (`skipbasket=on`), with
/// the host's order ID as `remoteid`. Returns the new module service's ID, and its expiry when
/// the answer gives one (`/doc/expiredate`; the host reads the service afterwards otherwise).
pub fn place(up: &mut dyn Upstream, order: &Order) -> Result<Placed, OrderError> {
    let period = order.period.to_string();
    let tariff = order.tariff_id.to_string();
    let autoprolong = if order.autoprolong {
        period.as_str()
    } else {
        "null"
    };
    let mut params = vec![
        ("item", order.licence_id.as_str()),
        ("period", period.as_str()),
        ("pricelist", tariff.as_str()),
        ("autoprolong", autoprolong),
        ("remoteid", order.id.as_str()),
    ];
    params.extend(order.fields.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    params.extend([("skipbasket", "on"), ("sok", "ok")]);
    let doc: IdDoc = call(up, "addition.order.param", &params, Effect::Write)?;
    let service_id = match doc.id.map(|id| id.trim().to_owned()) {
        Some(id) if !id.is_empty() => id,
        _ => {
            return Err(OrderError::InDoubt(
                "upstream accepted the order but named no service ID".to_owned(),
            ));
        }
    };
    Ok(Placed {
        service_id,
        expires: doc.expiredate.as_deref().and_then(Date::parse),
    })
}

/// Binds a placed module to another licence.
pub fn rebind(up: &mut dyn Upstream, service_id: &str, licence_id: &str) -> Result<(), OrderError> {
    let params = [("elid", service_id), ("item", licence_id), ("sok", "ok")];
    call::<IdDoc>(up, "addition.edit", &params, Effect::Write).map(drop)
}

/// Renews a placed module for `period` months, paid from the partner's balance; returns the new
/// expiry date when the answer gives it (`/doc/doc/newexpiredate`, or `/doc/newexpiredate`).
pub fn renew(
    up: &mut dyn Upstream,
    service_id: &str,
    period: u16,
) -> Result<Option<Date>, OrderError> {
    let period = period.to_string();
    let params = [
        ("elid", service_id),
        ("period", period.as_str()),
        ("sok", "ok"),
    ];
    let doc: ProlongDoc = call(up, "service.prolong", &params, Effect::Write)?;
    let nested = doc.doc.and_then(|d| d.newexpiredate);
    Ok(nested
        .or(doc.newexpiredate)
        .as_deref()
        .and_then(Date::parse))
}

/// What renewing a placed module for `period` months would cost and give: `service.prolong`
/// without `sok`, which changes nothing.
pub fn quote_renewal(
    up: &mut dyn Upstream,
    service_id: &str,
    period: u16,
) -> Result<RenewalQuote, OrderError> {
    let months = period.to_string();
    let params = [("elid", service_id), ("period", months.as_str())];
    let doc: ProlongDoc = call(up, "service.prolong", &params, Effect::Read)?;
    let cost = doc
        .slist
        .iter()
        .filter(|s| s.name == "period")
        .flat_map(|s| &s.val)
        .find(|v| v.key.trim() == months)
        .and_then(|v| shown_money(&v.text));
    Ok(RenewalQuote {
        expires: doc.expiredate.as_deref().and_then(Date::parse),
        new_expires: doc.newexpiredate.as_deref().and_then(Date::parse),
        cost,
    })
}

/// Suspends a placed module.
pub fn suspend(up: &mut dyn Upstream, service_id: &str) -> Result<(), OrderError> {
    let params = [("elid", service_id), ("sok", "ok")];
    call::<IdDoc>(up, "addition.suspend", &params, Effect::Write).map(drop)
}

/// Resumes a suspended module.
pub fn resume(up: &mut dyn Upstream, service_id: &str) -> Result<(), OrderError> {
    let params = [("elid", service_id), ("sok", "ok")];
    call::<IdDoc>(up, "addition.resume", &params, Effect::Write).map(drop)
}

/// Removes a placed module upstream.
pub fn remove(up: &mut dyn Upstream, service_id: &str) -> Result<(), OrderError> {
    let params = [("elid", service_id), ("sok", "ok")];
    call::<IdDoc>(up, "addition.delete", &params, Effect::Write).map(drop)
}

/// One module service upstream: its edit form (`addition.edit` without `sok`), which changes
/// nothing.
pub fn service(up: &mut dyn Upstream, service_id: &str) -> Result<UpstreamService, OrderError> {
    let doc: ElemDoc = call(up, "addition.edit", &[("elid", service_id)], Effect::Read)?;
    let mut found = doc.into_service();
    if found.service_id.is_empty() {
        found.service_id = service_id.to_owned();
    }
    Ok(found)
}

/// Every module service of the partner's account (`addition`, the module list).
pub fn services(up: &mut dyn Upstream) -> Result<Vec<UpstreamService>, OrderError> {
    let doc: ListDoc = call(up, "addition", &[], Effect::Read)?;
    Ok(doc
        .elem
        .into_iter()
        .map(ElemDoc::into_service)
        .filter(|s| !s.service_id.is_empty())
        .collect())
}

/// The partner's balance (`dashboard.info`, shown as `100.00 EUR`).
pub fn balance(up: &mut dyn Upstream) -> Result<Money, OrderError> {
    let doc: ListDoc = call(up, "dashboard.info", &[], Effect::Read)?;
    doc.elem
        .iter()
        .find_map(|e| e.balance.as_deref())
        .and_then(shown_money)
        .ok_or_else(|| OrderError::MalformedAnswer("`dashboard.info` shows no balance".to_owned()))
}

/// What upstream charges the partner for modules now.
pub fn upstream_costs(up: &mut dyn Upstream) -> Result<Vec<UpstreamOffer>, OrderError> {
    let doc: PriceListDoc = call(
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

/// What every answer may carry: an error document.
trait Answer: for<'de> Deserialize<'de> {
    fn error(&mut self) -> Option<ErrorElement>;
}

macro_rules! answers {
    ($($name:ident),*) => {
        $(impl Answer for $name {
            fn error(&mut self) -> Option<ErrorElement> {
                self.error.take()
            }
        })*
    };
}

answers!(IdDoc, ProlongDoc, ElemDoc, ListDoc, PriceListDoc);

#[derive(Debug, Default, Deserialize)]
struct IdDoc {
    id: Option<String>,
    expiredate: Option<String>,
    error: Option<ErrorElement>,
}

#[derive(Debug, Default, Deserialize)]
struct ProlongDoc {
    expiredate: Option<String>,
    newexpiredate: Option<String>,
    doc: Option<Box<NestedDoc>>,
    #[serde(default)]
    slist: Vec<SlistElement>,
    error: Option<ErrorElement>,
}

#[derive(Debug, Default, Deserialize)]
struct NestedDoc {
    newexpiredate: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct SlistElement {
    #[serde(rename = "@name", default)]
    name: String,
    #[serde(default)]
    val: Vec<ValElement>,
}

#[derive(Debug, Default, Deserialize)]
struct ValElement {
    #[serde(rename = "@key", default)]
    key: String,
    #[serde(rename = "$text", default)]
    text: String,
}

/// One service: a list's `<elem>`, or an edit form's `<doc>`.
#[derive(Debug, Default, Deserialize)]
struct ElemDoc {
    id: Option<String>,
    elid: Option<String>,
    item: Option<String>,
    pricelist: Option<String>,
    expiredate: Option<String>,
    item_status: Option<StatusElement>,
    status: Option<String>,
    remoteid: Option<String>,
    balance: Option<String>,
    error: Option<ErrorElement>,
}

#[derive(Debug, Default, Deserialize)]
struct StatusElement {
    #[serde(rename = "@orig", default)]
    orig: String,
}

impl ElemDoc {
    fn into_service(self) -> UpstreamService {
        let text = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        let status = self
            .item_status
            .map(|s| s.orig)
            .filter(|o| !o.trim().is_empty())
            .or(self.status)
            .map_or(ServiceStatus::Unknown, |code| {
                ServiceStatus::from_code(&code)
            });
        UpstreamService {
            service_id: text(self.elid.or(self.id)).unwrap_or_default(),
            licence_id: text(self.item),
            tariff_id: text(self.pricelist).and_then(|p| p.parse().ok()),
            status,
            expires: self.expiredate.as_deref().and_then(Date::parse),
            remote_id: text(self.remoteid),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct ListDoc {
    #[serde(default)]
    elem: Vec<ElemDoc>,
    error: Option<ErrorElement>,
}

#[derive(Debug, Default, Deserialize)]
struct PriceListDoc {
    #[serde(default)]
    pricelist: Vec<PricelistElement>,
    error: Option<ErrorElement>,
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
    #[serde(default)]
    intname: String,
    #[serde(default)]
    additionintname: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    price: Vec<PriceElement>,
}

#[derive(Debug, Deserialize)]
struct PriceElement {
    #[serde(rename = "@currency", default)]
    currency: String,
    #[serde(default)]
    period: Vec<PeriodElement>,
}

#[derive(Debug, Deserialize)]
struct PeriodElement {
    #[serde(rename = "@cost", default)]
    cost: String,
    #[serde(rename = "@type", default)]
    kind: String,
    #[serde(rename = "@length", default)]
    length: String,
}

fn call<D: Answer>(
    up: &mut dyn Upstream,
    func: &str,
    params: &[(&str, &str)],
    effect: Effect,
) -> Result<D, OrderError> {
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
    let mut doc: D = quick_xml::de::from_str(text)
        .map_err(|e| unreadable(format!("a document that does not parse ({e})")))?;
    if let Some(error) = doc.error() {
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

/// An exact amount with at most four decimals, in ten-thousandths; `None` otherwise.
fn units(text: &str) -> Option<i64> {
    text.trim()
        .parse::<Decimal>()
        .ok()
        .filter(|d| !d.is_sign_negative() && d.normalize().scale() <= 4)
        .and_then(|d| d.checked_mul(Decimal::from(UNITS_PER_ONE)))
        .and_then(|d| i64::try_from(d).ok())
}

/// Money as BILLmanager shows it to people: `100.00 EUR`, `3.50 EUR per month`.
fn shown_money(text: &str) -> Option<Money> {
    let mut words = text.split_whitespace();
    let amount = units(words.next()?)?;
    let currency = words.next()?;
    let code = currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase());
    code.then(|| Money {
        units: amount,
        currency: currency.to_owned(),
    })
}

/// One module of upstream's price list. Periods that are not whole months, or not a length
/// of at least one month, are left out: a length of -100 (or 0) is a trial and only marks the
/// module as having one. Every `<price>` (currency) is read.
fn upstream_offer(p: PricelistElement) -> Result<UpstreamOffer, OrderError> {
    let bad = |what: &str| OrderError::MalformedAnswer(format!("module {}: {what}", p.id.trim()));
    let tariff_id =
        p.id.trim()
            .parse()
            .map_err(|_| bad("the ID is not a number"))?;
    let mut costs = Vec::new();
    let mut trial = false;
    for price in &p.price {
        let currency = price.currency.trim();
        for period in price
            .period
            .iter()
            .filter(|x| x.kind.is_empty() || x.kind == "month")
        {
            let Ok(length) = period.length.trim().parse::<i64>() else {
                return Err(bad("a period length is not a number"));
            };
            if length <= 0 {
                trial = true;
                continue;
            }
            let Ok(months) = u16::try_from(length) else {
                continue;
            };
            let units = units(&period.cost)
                .ok_or_else(|| bad("a cost is not an amount with at most four decimals"))?;
            costs.push(PeriodCost {
                months,
                cost: Money {
                    units,
                    currency: currency.to_owned(),
                },
            });
        }
    }
    Ok(UpstreamOffer {
        tariff_id,
        intname: p.intname.trim().to_owned(),
        additionintname: p.additionintname.trim().to_owned(),
        name: p.name.trim().to_owned(),
        costs,
        trial,
    })
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
            id: "01JQ3V6K8Z9X4N2B7C5D0E1F2G".to_owned(),
            licence_id: "L-1".to_owned(),
            tariff_id: 55361,
            period: 12,
            autoprolong,
            fields: vec![("bitninja_email".to_owned(), "a@example.com".to_owned())],
        }
    }

    #[test]
    fn place_sends_the_documented_parameters_and_reads_the_id() {
        let mut up = Canned::new(
            200,
            "<?xml version=\"1.0\"?>\n<doc><id> 4242 </id><expiredate>2027-01-31</expiredate></doc>",
        );
        let placed = place(&mut up, &order(true)).expect("placed");
        assert_eq!(placed.service_id, "4242");
        assert_eq!(
            placed.expires.map(|d| d.to_string()).as_deref(),
            Some("2027-01-31")
        );
        assert_eq!(up.calls.len(), 1, "one write, nothing else");
        let (func, params) = &up.calls[0];
        assert_eq!(func, "addition.order.param");
        let expected = [
            ("item", "L-1"),
            ("period", "12"),
            ("pricelist", "55361"),
            ("autoprolong", "12"),
            ("remoteid", "01JQ3V6K8Z9X4N2B7C5D0E1F2G"),
            ("bitninja_email", "a@example.com"),
            ("skipbasket", "on"),
            ("sok", "ok"),
        ];
        let got: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(got, expected);

        let mut up = Canned::new(200, "<doc><id>7</id></doc>");
        let placed = place(&mut up, &order(false)).expect("placed");
        assert_eq!((placed.service_id.as_str(), placed.expires), ("7", None));
        assert!(
            up.calls[0]
                .1
                .contains(&("autoprolong".to_owned(), "null".to_owned()))
        );
    }

    #[test]
    fn renewals_read_the_new_expiry_and_quotes_change_nothing() {
        let nested =
            "<doc><ok/><id>5</id><doc><newexpiredate>2027-03-01</newexpiredate></doc></doc>";
        let renewed = renew(&mut Canned::new(200, nested), "5", 1).expect("renewed");
        assert_eq!(
            renewed.map(|d| d.to_string()).as_deref(),
            Some("2027-03-01")
        );
        let flat = "<doc><ok/><newexpiredate>2027-04-01</newexpiredate></doc>";
        let renewed = renew(&mut Canned::new(200, flat), "5", 1).expect("renewed");
        assert_eq!(
            renewed.map(|d| d.to_string()).as_deref(),
            Some("2027-04-01")
        );
        assert_eq!(
            renew(&mut Canned::new(200, "<doc><ok/></doc>"), "5", 1),
            Ok(None)
        );

        let form = r#"<doc><elid>5</elid><period>12</period><expiredate>2027-01-31</expiredate>
            <newexpiredate>2028-01-31</newexpiredate><status>2</status>
            <slist name="period"><val key="1">3.50 EUR per month</val>
            <val key="12">35.00 EUR per 12 months</val></slist></doc>"#;
        let mut up = Canned::new(200, form);
        let quote = quote_renewal(&mut up, "5", 12).expect("quote");
        assert_eq!(
            quote.expires.map(|d| d.to_string()).as_deref(),
            Some("2027-01-31")
        );
        assert_eq!(
            quote.new_expires.map(|d| d.to_string()).as_deref(),
            Some("2028-01-31")
        );
        assert_eq!(
            quote.cost,
            Some(Money {
                units: 350_000,
                currency: "EUR".to_owned()
            })
        );
        assert!(
            up.calls[0].1.iter().all(|(k, _)| k != "sok"),
            "a quote is never confirmed"
        );
        // The renewal window is upstream's refusal, with the date it names.
        let early = r#"<doc><error type="value" object="period"><param name="value">2027-01-30</param>
            <msg>The service can be renewed only after 2027-01-30</msg></error></doc>"#;
        assert!(matches!(
            renew(&mut Canned::new(200, early), "5", 1),
            Err(OrderError::InvalidValue(f)) if f.value == "2027-01-30"
        ));
    }

    #[test]
    fn services_balance_and_status_are_read() {
        let list = r#"<doc>
            <elem><id>100001</id><item>184431</item><pricelist>55361</pricelist>
              <expiredate>2027-01-01</expiredate><item_status orig="2">Active</item_status>
              <status>2</status><remoteid>01ABC</remoteid></elem>
            <elem><id>100002</id><pricelist>23221</pricelist>
              <item_status orig="3_autosuspend">Stopped</item_status></elem>
            <elem><name>no id</name></elem>
          </doc>"#;
        let found = services(&mut Canned::new(200, list)).expect("list");
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].service_id, "100001");
        assert_eq!(found[0].licence_id.as_deref(), Some("184431"));
        assert_eq!(found[0].tariff_id, Some(55361));
        assert_eq!(found[0].status, ServiceStatus::Active);
        assert_eq!(found[0].remote_id.as_deref(), Some("01ABC"));
        assert_eq!(found[1].status, ServiceStatus::Suspended);
        assert_eq!(
            (found[1].licence_id.as_deref(), found[1].expires),
            (None, None)
        );

        let edit = "<doc><elid>9</elid><item>1</item><expiredate>2027-05-05</expiredate><status>3</status></doc>";
        let one = service(&mut Canned::new(200, edit), "9").expect("service");
        assert_eq!(
            (one.service_id.as_str(), one.status),
            ("9", ServiceStatus::Suspended)
        );

        let dash = "<doc><elem><balance>1234.56 RUB</balance></elem></doc>";
        assert_eq!(
            balance(&mut Canned::new(200, dash)),
            Ok(Money {
                units: 12_345_600,
                currency: "RUB".to_owned()
            })
        );
        assert!(matches!(
            balance(&mut Canned::new(200, "<doc><elem/></doc>")),
            Err(OrderError::MalformedAnswer(_))
        ));
        for (code, status) in [
            ("1", ServiceStatus::Ordered),
            ("5_open", ServiceStatus::Ordered),
            ("2", ServiceStatus::Active),
            ("3_abusesuspend", ServiceStatus::Suspended),
            ("4", ServiceStatus::Deleted),
            ("", ServiceStatus::Unknown),
            ("x", ServiceStatus::Unknown),
        ] {
            assert_eq!(ServiceStatus::from_code(code), status, "{code:?}");
        }
    }

    #[test]
    fn lifecycle_writes_are_confirmed() {
        for (f, func) in [
            (
                suspend as fn(&mut dyn Upstream, &str) -> Result<(), OrderError>,
                "addition.suspend",
            ),
            (resume, "addition.resume"),
            (remove, "addition.delete"),
        ] {
            let mut up = Canned::new(200, "<doc><ok/></doc>");
            f(&mut up, "77").expect("done");
            assert_eq!(up.calls[0].0, func);
            assert_eq!(
                up.calls[0].1,
                [
                    ("elid".to_owned(), "77".to_owned()),
                    ("sok".to_owned(), "ok".to_owned())
                ]
            );
            // An unreadable answer to a write is in doubt.
            assert!(matches!(
                f(&mut Canned::new(502, "<html/>"), "77"),
                Err(OrderError::InDoubt(_))
            ));
        }
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
        assert_eq!(offers[0].additionintname, "Virusdie");
        assert_eq!(offers[0].costs[0].cost.units, 9_139_286);
        assert_eq!(offers[0].costs[1].months, 12);
        assert_eq!(offers[0].costs[1].cost.units, 90_000_000);
        assert!(!offers[0].trial);
        assert!(offers[1].costs.is_empty());

        // What a real client area exports: a trial, 3- and 6-month periods, two currencies,
        // elements and attributes this plugin does not know, in the vendor's order.
        let real = r#"<doc>
            <pricelist><id>55371</id><additionintname>BitNinja</additionintname>
              <price currency="EUR" type="basic">
                <period cost="0.0000" type="month" length="-100">trial</period>
                <period cost="9.9000" type="month" length="1">monthly</period>
                <period cost="55.0000" type="month" length="6">semiannual</period>
              </price>
              <intname>bitninja</intname><name>BitNinja</name><name_ru>БитНиндзя</name_ru>
              <price currency="RUB"><period cost="990.0000" type="month" length="1">monthly</period></price>
              <orderpriority>3</orderpriority>
            </pricelist>
            <pricelist><id>1</id><price currency="EUR"><period cost="1" type="day" length="7"/>
              <period cost="2.5" type="month" length="3"/></price></pricelist>
          </doc>"#;
        let offers = upstream_costs(&mut Canned::new(200, real)).expect("costs");
        assert!(offers[0].trial);
        assert_eq!(
            (offers[0].intname.as_str(), offers[0].name.as_str()),
            ("bitninja", "BitNinja")
        );
        let costs: Vec<(u16, i64, &str)> = offers[0]
            .costs
            .iter()
            .map(|c| (c.months, c.cost.units, c.cost.currency.as_str()))
            .collect();
        assert_eq!(
            costs,
            [
                (1, 99_000, "EUR"),
                (6, 550_000, "EUR"),
                (1, 9_900_000, "RUB")
            ]
        );
        assert_eq!(offers[1].costs.len(), 1, "days are not months");
        assert_eq!(offers[1].costs[0].months, 3);
        let bad = r#"<doc><pricelist><id>1</id><price currency="EUR">
            <period cost="1.23456" type="month" length="1"/></price></pricelist></doc>"#;
        assert!(matches!(
            upstream_costs(&mut Canned::new(200, bad)),
            Err(OrderError::MalformedAnswer(_))
        ));
    }
}
