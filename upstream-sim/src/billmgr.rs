//! The BILLmanager API as the simulator answers it: the call's parameters, `authinfo`, dispatch
//! on `func`, the calls a partner makes for modules, and BILLmanager's error documents.
//!
//! Every outcome is a `<doc>`: the answer, or a `<doc><error>` (sent with HTTP 200, as
//! BILLmanager does). Nothing here panics on any input.

use crate::doc::Node;
use crate::state::{Amount, Service, State, Tariff};

/// The parameter holding the credentials: kept out of the journal and the logs.
const CREDENTIALS: &str = "authinfo";

/// The fields an unconfirmed (no `sok`) order form echoes back.
const ORDER_FIELDS: &[&str] = &["item", "period", "pricelist", "autoprolong", "skipbasket"];

/// The parameters of a call: the query string and, for a POST, the form-encoded body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    /// Reads `query` and then `body`, both `application/x-www-form-urlencoded`. Never fails:
    /// bytes that are not UTF-8 are replaced, as a lenient server does.
    pub(crate) fn parse(query: Option<&str>, body: Option<&[u8]>) -> Params {
        let mut pairs = Vec::new();
        if let Some(query) = query {
            pairs.extend(form_urlencoded::parse(query.as_bytes()).into_owned());
        }
        if let Some(body) = body {
            pairs.extend(form_urlencoded::parse(body).into_owned());
        }
        Params(pairs)
    }

    /// The first value of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every parameter but the credentials, in the order received.
    pub(crate) fn without_credentials(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .filter(|(k, _)| k != CREDENTIALS)
            .cloned()
            .collect()
    }
}

/// The content of a BILLmanager error document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ApiError {
    kind: &'static str,
    object: String,
    value: Option<String>,
    message: String,
}

impl ApiError {
    fn auth() -> ApiError {
        ApiError {
            kind: "auth",
            object: "badpassword".to_owned(),
            value: None,
            message: "Invalid username or password".to_owned(),
        }
    }

    fn missed(field: &str) -> ApiError {
        ApiError {
            kind: "missed",
            object: field.to_owned(),
            value: None,
            message: format!("The field '{field}' is required"),
        }
    }

    fn invalid(field: &str, value: &str) -> ApiError {
        ApiError {
            kind: "value",
            object: field.to_owned(),
            value: Some(value.to_owned()),
            message: format!("The value of the field '{field}' is invalid"),
        }
    }

    fn balance(cost: Amount, balance: Amount, currency: &str) -> ApiError {
        ApiError {
            kind: "balance",
            object: "balance".to_owned(),
            value: Some(balance.to_string()),
            message: format!(
                "Insufficient funds: the operation costs {cost} {currency}, \
                 the balance is {balance} {currency}"
            ),
        }
    }

    /// The error `type`.
    pub(crate) fn kind(&self) -> &str {
        self.kind
    }

    /// The error `object`.
    pub(crate) fn object(&self) -> &str {
        &self.object
    }

    /// The error document.
    pub(crate) fn to_doc(&self) -> Node {
        let object = Node::leaf("param", self.object.as_str())
            .attr("name", "object")
            .attr("type", "msg")
            .attr("msg", self.object.as_str());
        let value = self
            .value
            .as_deref()
            .map(|v| Node::leaf("param", v).attr("name", "value"));
        let error = Node::new("error")
            .attr("type", self.kind)
            .attr("object", self.object.as_str())
            .child(object)
            .children(value)
            .child(Node::leaf("msg", self.message.as_str()));
        Node::new("doc").child(error)
    }
}

/// Answers one call against `state`, changing it if the call says so.
pub(crate) fn handle(state: &mut State, params: &Params) -> Result<Node, ApiError> {
    authenticate(state, params)?;
    match params.get("func").map(str::trim) {
        None | Some("") => Err(ApiError::missed("func")),
        Some("pricelist.export") => Ok(pricelist_export(state, params)),
        Some("addition.order.param") => order(state, params),
        Some("addition.edit") => rebind(state, params),
        Some("service.prolong") => prolong(state, params),
        Some("addition.delete") => delete(state, params),
        Some(other) => Err(ApiError::invalid("func", other)),
    }
}

fn authenticate(state: &State, params: &Params) -> Result<(), ApiError> {
    let authinfo = params.get(CREDENTIALS).ok_or_else(ApiError::auth)?;
    let (user, password) = authinfo.split_once(':').unwrap_or((authinfo, ""));
    let account = &state.account;
    if user == account.user && password == account.password {
        Ok(())
    } else {
        Err(ApiError::auth())
    }
}

/// `pricelist.export`: the module tariffs, in BILLmanager's price list shape.
fn pricelist_export(state: &State, params: &Params) -> Node {
    let value = |name| params.get(name).map(str::trim).filter(|v| !v.is_empty());
    // The simulator sells modules only: any other item type has an empty price list.
    let modules = value("itemtype").is_none_or(|t| t == "addition");
    let only_available = value("onlyavailable") == Some("on");
    let wanted = value("pricelist");
    let items = state
        .tariffs
        .iter()
        .filter(|_| modules)
        .filter(|t| t.orderable || !only_available)
        .filter(|t| wanted.is_none_or(|w| w == t.id.to_string()))
        .map(|t| pricelist_item(t, &state.account.currency));
    Node::new("doc").children(items)
}

fn pricelist_item(tariff: &Tariff, currency: &str) -> Node {
    let mut prices: Vec<_> = tariff.prices.iter().collect();
    prices.sort_by_key(|p| p.months);
    let periods = prices.into_iter().map(|p| {
        Node::leaf("period", period_name(p.months))
            .attr("cost", p.cost.to_string())
            .attr("type", "month")
            .attr("length", p.months.to_string())
    });
    Node::new("pricelist")
        .child(Node::leaf("id", tariff.id.to_string()))
        .child(Node::leaf("intname", tariff.intname.as_str()))
        .child(Node::leaf("name", tariff.name.as_str()))
        .child(Node::leaf(
            "additionintname",
            tariff.additionintname.as_str(),
        ))
        .child(
            Node::new("price")
                .attr("currency", currency)
                .children(periods),
        )
}

fn period_name(months: u16) -> String {
    match months {
        1 => "monthly".to_owned(),
        3 => "quarterly".to_owned(),
        6 => "semiannual".to_owned(),
        12 => "annually".to_owned(),
        24 => "biennial".to_owned(),
        36 => "triennial".to_owned(),
        n => format!("{n} months"),
    }
}

/// `addition.order.param`: orders a module for a licence, paid from the balance.
fn order(state: &mut State, params: &Params) -> Result<Node, ApiError> {
    if !confirmed(params) {
        return Ok(form(params, ORDER_FIELDS));
    }
    let item = required(params, "item")?;
    let period = required(params, "period")?;
    let pricelist = required(params, "pricelist")?;
    let tariff = pricelist
        .parse()
        .ok()
        .and_then(|id| state.tariff(id))
        .filter(|t| t.orderable)
        .ok_or_else(|| ApiError::invalid("pricelist", pricelist))?;
    if !state.licences.contains_key(item) {
        return Err(ApiError::invalid("item", item));
    }
    let (months, cost) = period_cost(tariff, period)?;
    let autoprolong = match params.get("autoprolong").map(str::trim) {
        None | Some("" | "null") => None,
        Some(v) if v.parse() == Ok(months) => Some(months),
        Some(v) => return Err(ApiError::invalid("autoprolong", v)),
    };
    // Without `skipbasket=on` BILLmanager puts the order in a basket to pay later: not simulated.
    match params.get("skipbasket").map(str::trim) {
        Some("on") => {}
        other => return Err(ApiError::invalid("skipbasket", other.unwrap_or_default())),
    }
    let tariff = tariff.id;
    debit(state, cost)?;
    let id = state.allocate_service_id();
    state.services.push(Service {
        id,
        licence: item.to_owned(),
        tariff,
        period: months,
        autoprolong,
        renewals: Vec::new(),
    });
    Ok(Node::new("doc").child(Node::leaf("id", id.to_string())))
}

/// `addition.edit`: binds a module service to another licence.
fn rebind(state: &mut State, params: &Params) -> Result<Node, ApiError> {
    if !confirmed(params) {
        return Ok(form(params, &["elid", "item"]));
    }
    let elid = required(params, "elid")?;
    let item = required(params, "item")?;
    let index = service_index(state, elid)?;
    if !state.licences.contains_key(item) {
        return Err(ApiError::invalid("item", item));
    }
    state.services[index].licence = item.to_owned();
    Ok(done(Some(elid)))
}

/// `service.prolong`: renews a service for a period its tariff sells, paid from the balance.
fn prolong(state: &mut State, params: &Params) -> Result<Node, ApiError> {
    if !confirmed(params) {
        return Ok(form(params, &["elid", "period"]));
    }
    let elid = required(params, "elid")?;
    let period = required(params, "period")?;
    let index = service_index(state, elid)?;
    let tariff = state
        .tariff(state.services[index].tariff)
        .ok_or_else(|| ApiError::invalid("elid", elid))?;
    let (months, cost) = period_cost(tariff, period)?;
    debit(state, cost)?;
    state.services[index].renewals.push(months);
    Ok(done(Some(elid)))
}

/// `addition.delete`: removes a service. Like BILLmanager's other list actions it acts at once,
/// with or without `sok`.
fn delete(state: &mut State, params: &Params) -> Result<Node, ApiError> {
    let elid = required(params, "elid")?;
    let index = service_index(state, elid)?;
    state.services.remove(index);
    Ok(done(None))
}

/// Whether a form call is confirmed (`sok=ok`); without it BILLmanager only shows the form.
fn confirmed(params: &Params) -> bool {
    params.get("sok").is_some_and(|v| !v.trim().is_empty())
}

/// The form of an unconfirmed call: the known fields as sent, nothing changed.
fn form(params: &Params, fields: &[&'static str]) -> Node {
    let fields = fields
        .iter()
        .filter_map(|&name| params.get(name).map(|v| Node::leaf(name, v)));
    Node::new("doc").children(fields)
}

/// `<doc><ok/>[<id>ELID</id>]</doc>`.
fn done(elid: Option<&str>) -> Node {
    Node::new("doc")
        .child(Node::new("ok"))
        .children(elid.map(|id| Node::leaf("id", id)))
}

fn required<'p>(params: &'p Params, field: &str) -> Result<&'p str, ApiError> {
    params
        .get(field)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::missed(field))
}

fn service_index(state: &State, elid: &str) -> Result<usize, ApiError> {
    let id: Option<u64> = elid.parse().ok();
    state
        .services
        .iter()
        .position(|s| Some(s.id) == id)
        .ok_or_else(|| ApiError::invalid("elid", elid))
}

fn period_cost(tariff: &Tariff, period: &str) -> Result<(u16, Amount), ApiError> {
    period
        .parse()
        .ok()
        .and_then(|months| Some((months, tariff.cost(months)?)))
        .ok_or_else(|| ApiError::invalid("period", period))
}

fn debit(state: &mut State, cost: Amount) -> Result<(), ApiError> {
    let account = &mut state.account;
    let Some(rest) = account.balance.checked_sub(cost) else {
        return Err(ApiError::balance(cost, account.balance, &account.currency));
    };
    account.balance = rest;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::Format;

    fn call(state: &mut State, query: &str) -> Result<String, ApiError> {
        let params = Params::parse(Some(&format!("authinfo=partner:secret&{query}")), None);
        handle(state, &params)
            .map(|doc| String::from_utf8(doc.to_xml(false).expect("xml")).expect("UTF-8"))
    }

    fn refusal(state: &mut State, query: &str) -> (String, String) {
        let e = call(state, query).expect_err("refused");
        (e.kind().to_owned(), e.object().to_owned())
    }

    #[test]
    fn params_merge_query_and_body_and_hide_the_credentials() {
        let params = Params::parse(
            Some("func=x&authinfo=u%3Ap"),
            Some(b"item=1+2&func=y&bad=%FF"),
        );
        assert_eq!(params.get("func"), Some("x"));
        assert_eq!(params.get("item"), Some("1 2"));
        assert_eq!(params.get("authinfo"), Some("u:p"));
        let public = params.without_credentials();
        assert!(public.iter().all(|(k, _)| k != "authinfo"));
        assert_eq!(public.len(), 4);
    }

    #[test]
    fn passwords_may_contain_colons() {
        let mut state = State::default();
        state.account.password = "a:b".to_owned();
        let params = Params::parse(Some("authinfo=partner:a:b&func=pricelist.export"), None);
        assert!(handle(&mut state, &params).is_ok());
        let params = Params::parse(Some("authinfo=partner&func=pricelist.export"), None);
        assert_eq!(handle(&mut state, &params).map_err(|e| e.kind), Err("auth"));
    }

    #[test]
    fn the_price_list_filters_by_tariff_availability_and_item_type() {
        let mut state = State::default();
        state.tariffs[1].orderable = false;
        let all = call(&mut state, "func=pricelist.export&itemtype=addition").expect("list");
        assert_eq!(all.matches("<pricelist>").count(), 5);
        let available = call(
            &mut state,
            "func=pricelist.export&itemtype=addition&onlyavailable=on",
        )
        .expect("list");
        assert_eq!(available.matches("<pricelist>").count(), 4);
        assert!(!available.contains("<id>55362</id>"));
        let one = call(&mut state, "func=pricelist.export&pricelist=23221").expect("list");
        assert_eq!(one.matches("<pricelist>").count(), 1);
        assert!(one.contains(
            "<price currency=\"EUR\"><period cost=\"10.0000\" type=\"month\" length=\"1\">monthly</period></price>"
        ));
        let soft = call(&mut state, "func=pricelist.export&itemtype=soft").expect("list");
        assert_eq!(soft, "<doc/>");
    }

    #[test]
    fn autoprolong_must_be_the_period_or_null() {
        let mut state = State::default();
        let order = "func=addition.order.param&item=184431&pricelist=55361&skipbasket=on&sok=ok";
        assert!(call(&mut state, &format!("{order}&period=12&autoprolong=12")).is_ok());
        assert!(call(&mut state, &format!("{order}&period=1&autoprolong=null")).is_ok());
        assert!(call(&mut state, &format!("{order}&period=1")).is_ok());
        assert_eq!(
            refusal(&mut state, &format!("{order}&period=1&autoprolong=12")),
            ("value".to_owned(), "autoprolong".to_owned())
        );
        let autoprolong: Vec<_> = state.services.iter().map(|s| s.autoprolong).collect();
        assert_eq!(autoprolong, [Some(12), None, None]);
    }

    #[test]
    fn orders_need_skipbasket_and_unconfirmed_calls_change_nothing() {
        let mut state = State::default();
        let order = "func=addition.order.param&item=184431&pricelist=55361&period=1";
        assert_eq!(
            refusal(&mut state, &format!("{order}&sok=ok")),
            ("value".to_owned(), "skipbasket".to_owned())
        );
        let form = call(&mut state, &format!("{order}&skipbasket=on")).expect("form");
        assert_eq!(
            form,
            "<doc><item>184431</item><period>1</period><pricelist>55361</pricelist>\
             <skipbasket>on</skipbasket></doc>"
        );
        assert_eq!(state, State::default());
    }

    #[test]
    fn renewals_are_for_periods_the_tariff_sells() {
        let mut state = State::default();
        let placed = call(
            &mut state,
            "func=addition.order.param&item=184431&pricelist=23221&period=1&skipbasket=on&sok=ok",
        )
        .expect("placed");
        assert_eq!(placed, "<doc><id>100001</id></doc>");
        assert_eq!(
            refusal(
                &mut state,
                "func=service.prolong&elid=100001&period=12&sok=ok"
            ),
            ("value".to_owned(), "period".to_owned())
        );
        assert_eq!(
            call(
                &mut state,
                "func=service.prolong&elid=100001&period=1&sok=ok"
            ),
            Ok("<doc><ok/><id>100001</id></doc>".to_owned())
        );
        assert_eq!(state.services[0].renewals, [1]);
        assert_eq!(state.account.balance.to_string(), "80.0000");
    }

    #[test]
    fn error_documents_have_the_billmanager_shape() {
        let doc = ApiError::invalid("pricelist", "99999").to_doc();
        let xml = String::from_utf8(doc.render(Format::Xml).expect("xml")).expect("UTF-8");
        assert!(xml.ends_with(
            "<doc><error type=\"value\" object=\"pricelist\">\
             <param name=\"object\" type=\"msg\" msg=\"pricelist\">pricelist</param>\
             <param name=\"value\">99999</param>\
             <msg>The value of the field 'pricelist' is invalid</msg></error></doc>"
        ));
    }
}
