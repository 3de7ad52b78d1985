//! The BILLmanager API as the simulator answers it: the call's parameters, `authinfo`, dispatch
//! on `func`, the calls a partner makes for modules, and BILLmanager's error documents.
//!
//! Every outcome is a `<doc>`: the answer, or a `<doc><error>` (sent with HTTP 200, as
//! BILLmanager does). Nothing here panics on any input.

use std::collections::BTreeMap;

use crate::date::Date;
use crate::doc::Node;
use crate::state::{Amount, Price, Service, ServiceStatus, State, Tariff};

/// The parameter holding the credentials: kept out of the journal and the logs.
const CREDENTIALS: &str = "authinfo";

/// The fields an unconfirmed (no `sok`) order form echoes back.
const ORDER_FIELDS: &[&str] = &[
    "item",
    "period",
    "pricelist",
    "autoprolong",
    "skipbasket",
    "remoteid",
];

/// The `length` of a trial period in a price list: BILLmanager's period ID for a trial.
const TRIAL_PERIOD: &str = "-100";

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
        ApiError::value(
            field,
            value,
            format!("The value of the field '{field}' is invalid"),
        )
    }

    /// A `value` error with its own message.
    fn value(field: &str, value: &str, message: String) -> ApiError {
        ApiError {
            kind: "value",
            object: field.to_owned(),
            value: Some(value.to_owned()),
            message,
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
        Some("addition") => Ok(list_services(state)),
        Some("addition.order.param") => order(state, params),
        Some("addition.edit") => edit(state, params),
        Some("addition.suspend") => suspend(state, params),
        Some("addition.resume") => resume(state, params),
        Some("service.prolong") => prolong(state, params),
        Some("addition.delete") => delete(state, params),
        Some("dashboard.info") => Ok(dashboard(state)),
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
        .enumerate()
        .filter(|_| modules)
        .filter(|(_, t)| t.orderable || !only_available)
        .filter(|(_, t)| wanted.is_none_or(|w| w == t.id.to_string()))
        .map(|(position, t)| pricelist_item(t, &state.account.currency, position));
    Node::new("doc").children(items)
}

/// One `<pricelist>`, in the order the vendor documents (`id`, `additionintname`, `price`,
/// `intname`, `name`), then what real exports carry besides and a client must tolerate:
/// more `<price>` elements, `<name_ru>`, an `<orderpriority>`, a `type` on `<price>`.
fn pricelist_item(tariff: &Tariff, currency: &str, position: usize) -> Node {
    let price = |currency: &str, prices: &[Price]| {
        let mut sorted: Vec<_> = prices.iter().collect();
        sorted.sort_by_key(|p| p.months);
        let trial = tariff.trial.then(|| {
            Node::leaf("period", "trial")
                .attr("cost", "0.0000")
                .attr("type", "month")
                .attr("length", TRIAL_PERIOD)
        });
        let periods = sorted.into_iter().map(|p| {
            Node::leaf("period", period_name(p.months))
                .attr("cost", p.cost.to_string())
                .attr("type", "month")
                .attr("length", p.months.to_string())
        });
        Node::new("price")
            .attr("currency", currency)
            .attr("type", "basic")
            .children(trial)
            .children(periods)
    };
    let others = tariff
        .other_prices
        .iter()
        .map(|o| price(o.currency.trim(), &o.prices));
    let priority = position.saturating_add(1).saturating_mul(10);
    Node::new("pricelist")
        .child(Node::leaf("id", tariff.id.to_string()))
        .child(Node::leaf(
            "additionintname",
            tariff.additionintname.as_str(),
        ))
        .child(price(currency, &tariff.prices))
        .children(others)
        .child(Node::leaf("intname", tariff.intname.as_str()))
        .child(Node::leaf("name", tariff.name.as_str()))
        .child(Node::leaf(
            "name_ru",
            tariff.name_ru.as_deref().unwrap_or(&tariff.name),
        ))
        .child(Node::leaf("orderpriority", priority.to_string()))
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

/// A period as the renewal form shows its price: `per month`, `per 12 months`.
fn period_label(months: u16) -> String {
    match months {
        1 => "per month".to_owned(),
        n => format!("per {n} months"),
    }
}

/// `func=addition`: the module services, one `<elem>` each, in order of creation.
fn list_services(state: &State) -> Node {
    let elems = state.services.iter().map(|s| {
        Node::new("elem")
            .child(Node::leaf("id", s.id.to_string()))
            .child(Node::leaf("item", s.licence.as_str()))
            .child(Node::leaf("pricelist", s.tariff.to_string()))
            .child(Node::leaf("expiredate", s.expires.to_string()))
            .child(Node::leaf("item_status", s.status.label()).attr("orig", s.status.orig()))
            .child(Node::leaf("status", s.status.code().to_string()))
            .child(Node::leaf("autoprolong", autoprolong_text(s)))
            .children(s.remoteid.as_deref().map(|r| Node::leaf("remoteid", r)))
    });
    Node::new("doc").children(elems)
}

/// `autoprolong` as forms and lists show it: the months, or `null` when off.
fn autoprolong_text(service: &Service) -> String {
    service
        .autoprolong
        .map_or_else(|| "null".to_owned(), |m| m.to_string())
}

/// `dashboard.info`: the account summary, the balance as BILLmanager shows it.
fn dashboard(state: &State) -> Node {
    let account = &state.account;
    let shown = account.balance.display_with(&account.currency);
    Node::new("doc").child(
        Node::new("elem")
            .child(Node::leaf("balance", shown.as_str()))
            .child(Node::leaf("realbalance", shown)),
    )
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
    let fields = tariff
        .required_fields
        .iter()
        .map(|name| Ok((name.clone(), required(params, name)?.to_owned())))
        .collect::<Result<BTreeMap<_, _>, ApiError>>()?;
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
    let expires = state
        .today
        .add_months(u32::from(months))
        .map_err(|_| ApiError::invalid("period", period))?;
    let tariff = tariff.id;
    debit(state, cost)?;
    let id = state.allocate_service_id();
    let remoteid = params
        .get("remoteid")
        .map(str::trim)
        .filter(|r| !r.is_empty());
    state.services.push(Service {
        id,
        licence: item.to_owned(),
        tariff,
        period: months,
        autoprolong,
        renewals: Vec::new(),
        status: ServiceStatus::Active,
        expires,
        remoteid: remoteid.map(str::to_owned),
        fields,
    });
    Ok(Node::new("doc").child(Node::leaf("id", id.to_string())))
}

/// `addition.edit`: without `sok`, the service's edit form; with it, binds the service to
/// another licence (and sets its `remoteid` when one is sent).
fn edit(state: &mut State, params: &Params) -> Result<Node, ApiError> {
    if !confirmed(params) {
        let elid = required(params, "elid")?;
        let service = &state.services[service_index(state, elid)?];
        return Ok(Node::new("doc")
            .child(Node::leaf("elid", service.id.to_string()))
            .child(Node::leaf("item", service.licence.as_str()))
            .child(Node::leaf("pricelist", service.tariff.to_string()))
            .child(Node::leaf("expiredate", service.expires.to_string()))
            .child(Node::leaf("status", service.status.code().to_string()))
            .child(Node::leaf("autoprolong", autoprolong_text(service)))
            .children(
                service
                    .remoteid
                    .as_deref()
                    .map(|r| Node::leaf("remoteid", r)),
            ));
    }
    let elid = required(params, "elid")?;
    let item = required(params, "item")?;
    let index = service_index(state, elid)?;
    if !state.licences.contains_key(item) {
        return Err(ApiError::invalid("item", item));
    }
    let service = &mut state.services[index];
    service.licence = item.to_owned();
    if let Some(remoteid) = params.get("remoteid").map(str::trim) {
        service.remoteid = Some(remoteid.to_owned()).filter(|r| !r.is_empty());
    }
    Ok(done(Some(elid)))
}

/// `addition.suspend`: stops a service (`3_employeesuspend`). Acts at once, with or without
/// `sok`, like BILLmanager's other list actions.
fn suspend(state: &mut State, params: &Params) -> Result<Node, ApiError> {
    let elid = required(params, "elid")?;
    let index = service_index(state, elid)?;
    state.services[index].status = ServiceStatus::Suspended;
    Ok(done(None))
}

/// `addition.resume`: restarts a suspended service, unless it has expired (it must be renewed
/// instead). Acts at once, with or without `sok`.
fn resume(state: &mut State, params: &Params) -> Result<Node, ApiError> {
    let elid = required(params, "elid")?;
    let index = service_index(state, elid)?;
    let today = state.today;
    let service = &mut state.services[index];
    if service.expired_on(today) {
        return Err(ApiError::value(
            "elid",
            elid,
            format!(
                "The service expired on {}: renew it to resume it",
                service.expires
            ),
        ));
    }
    if matches!(
        service.status,
        ServiceStatus::Suspended | ServiceStatus::Expired
    ) {
        service.status = ServiceStatus::Active;
    }
    Ok(done(None))
}

/// `service.prolong`: without `sok`, a quote for a period (the new expiry, and each period's
/// cost as display text); with `sok=ok`, renews the service for a period its tariff sells,
/// paid from the balance, resuming it if it was suspended at expiry.
fn prolong(state: &mut State, params: &Params) -> Result<Node, ApiError> {
    let elid = required(params, "elid")?;
    if !confirmed(params) {
        return quote(state, params, elid);
    }
    let period = required(params, "period")?;
    let index = service_index(state, elid)?;
    let service = &state.services[index];
    let tariff = state
        .tariff(service.tariff)
        .ok_or_else(|| ApiError::invalid("elid", elid))?;
    let (months, cost) = period_cost(tariff, period)?;
    if let Some(days) = state.renew_window_days {
        let opens = service
            .expires
            .add_days(-i64::from(days))
            .unwrap_or(Date::MIN);
        if state.today < opens {
            return Err(ApiError::value(
                "period",
                &opens.to_string(),
                format!("The service can be renewed only after {opens}"),
            ));
        }
    }
    let expires = renewal_base(service, state.today)
        .add_months(u32::from(months))
        .map_err(|_| ApiError::invalid("period", period))?;
    debit(state, cost)?;
    let service = &mut state.services[index];
    service.expires = expires;
    service.renewals.push(months);
    if service.status == ServiceStatus::Expired {
        service.status = ServiceStatus::Active;
    }
    Ok(done(Some(elid))
        .child(Node::new("doc").child(Node::leaf("newexpiredate", expires.to_string()))))
}

/// The renewal form: nothing changes. Without `period`, the service's own period is quoted
/// (its `autoprolong` period first), or the shortest one sold.
fn quote(state: &State, params: &Params, elid: &str) -> Result<Node, ApiError> {
    let service = &state.services[service_index(state, elid)?];
    let tariff = state
        .tariff(service.tariff)
        .ok_or_else(|| ApiError::invalid("elid", elid))?;
    let months = match params
        .get("period")
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        Some(period) => period_cost(tariff, period)?.0,
        None => [service.autoprolong, Some(service.period)]
            .into_iter()
            .flatten()
            .find(|&m| tariff.cost(m).is_some())
            .or_else(|| tariff.prices.iter().map(|p| p.months).min())
            .ok_or_else(|| ApiError::missed("period"))?,
    };
    let new_expiry = renewal_base(service, state.today)
        .add_months(u32::from(months))
        .map_err(|_| ApiError::invalid("period", &months.to_string()))?;
    let mut prices: Vec<_> = tariff.prices.iter().collect();
    prices.sort_by_key(|p| p.months);
    let currency = &state.account.currency;
    let choices = prices.into_iter().map(|p| {
        Node::leaf(
            "val",
            format!(
                "{} {}",
                p.cost.display_with(currency),
                period_label(p.months)
            ),
        )
        .attr("key", p.months.to_string())
    });
    Ok(Node::new("doc")
        .child(Node::leaf("elid", service.id.to_string()))
        .child(Node::leaf("period", months.to_string()))
        .child(Node::leaf("expiredate", service.expires.to_string()))
        .child(Node::leaf("newexpiredate", new_expiry.to_string()))
        .child(Node::leaf("status", service.status.code().to_string()))
        .child(Node::new("slist").attr("name", "period").children(choices)))
}

/// Where a renewal counts from: the expiry, or today once that has passed.
fn renewal_base(service: &Service, today: Date) -> Date {
    if service.expired_on(today) {
        today
    } else {
        service.expires
    }
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

/// The index of the service `elid` names; an unknown (or removed) one is a `value` error.
fn service_index(state: &State, elid: &str) -> Result<usize, ApiError> {
    let id: Option<u64> = elid.parse().ok();
    state
        .services
        .iter()
        .position(|s| Some(s.id) == id)
        .ok_or_else(|| ApiError::invalid("elid", elid))
}

/// The months and cost of `period`, if the tariff sells it (a trial, `-100`, is not sold).
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
        assert_eq!(
            one,
            "<doc><pricelist><id>23221</id><additionintname>DDoSGUARD</additionintname>\
             <price currency=\"EUR\" type=\"basic\">\
             <period cost=\"10.0000\" type=\"month\" length=\"1\">monthly</period></price>\
             <intname>ddosguard</intname><name>DDoS-GUARD</name><name_ru>DDoS-GUARD</name_ru>\
             <orderpriority>40</orderpriority></pricelist></doc>"
        );
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
            Ok(
                "<doc><ok/><id>100001</id><doc><newexpiredate>2027-02-01</newexpiredate></doc>\
                </doc>"
                    .to_owned()
            )
        );
        assert_eq!(state.services[0].renewals, [1]);
        assert_eq!(state.account.balance.to_string(), "80.0000");
    }

    const PLACE_LITE: &str =
        "func=addition.order.param&item=184431&pricelist=55361&skipbasket=on&sok=ok";

    fn date(s: &str) -> Date {
        s.parse().expect("a date")
    }

    #[test]
    fn the_price_list_carries_trials_more_periods_and_other_currencies() {
        let mut state = State::default();
        let bitninja = call(&mut state, "func=pricelist.export&pricelist=55371").expect("list");
        assert_eq!(
            bitninja,
            "<doc><pricelist><id>55371</id><additionintname>BitNinja</additionintname>\
             <price currency=\"EUR\" type=\"basic\">\
             <period cost=\"0.0000\" type=\"month\" length=\"-100\">trial</period>\
             <period cost=\"9.9000\" type=\"month\" length=\"1\">monthly</period>\
             <period cost=\"54.0000\" type=\"month\" length=\"6\">semiannual</period>\
             <period cost=\"99.0000\" type=\"month\" length=\"12\">annually</period></price>\
             <intname>bitninja</intname><name>BitNinja</name><name_ru>BitNinja</name_ru>\
             <orderpriority>50</orderpriority></pricelist></doc>"
        );
        let pro = call(&mut state, "func=pricelist.export&pricelist=55362").expect("list");
        assert_eq!(
            pro,
            "<doc><pricelist><id>55362</id><additionintname>DrWeb</additionintname>\
             <price currency=\"EUR\" type=\"basic\">\
             <period cost=\"6.9000\" type=\"month\" length=\"1\">monthly</period>\
             <period cost=\"19.5000\" type=\"month\" length=\"3\">quarterly</period>\
             <period cost=\"69.0000\" type=\"month\" length=\"12\">annually</period></price>\
             <price currency=\"RUB\" type=\"basic\">\
             <period cost=\"690.0000\" type=\"month\" length=\"1\">monthly</period>\
             <period cost=\"1950.0000\" type=\"month\" length=\"3\">quarterly</period>\
             <period cost=\"6900.0000\" type=\"month\" length=\"12\">annually</period></price>\
             <intname>drweb_pro</intname><name>Dr.Web for ispmanager 6 pro</name>\
             <name_ru>Dr.Web для ispmanager 6 pro</name_ru>\
             <orderpriority>20</orderpriority></pricelist></doc>"
        );
    }

    #[test]
    fn orders_record_remoteid_fields_status_and_expiry() {
        let mut state = State::default();
        let placed = call(
            &mut state,
            &format!("{PLACE_LITE}&period=12&autoprolong=12&remoteid=%20r-1%20"),
        );
        assert_eq!(placed, Ok("<doc><id>100001</id></doc>".to_owned()));
        let service = &state.services[0];
        assert_eq!(service.remoteid.as_deref(), Some("r-1"));
        assert_eq!(service.status, ServiceStatus::Active);
        assert_eq!(service.expires, date("2027-12-01"));

        // Any period the tariff sells; the expiry keeps the day or takes the month's last.
        state.today = date("2027-08-31");
        let quarterly = "func=addition.order.param&item=184432&pricelist=55362&period=3\
                         &skipbasket=on&sok=ok&remoteid=";
        assert!(call(&mut state, quarterly).is_ok());
        assert_eq!(state.services[1].expires, date("2027-11-30"));
        assert_eq!(state.services[1].remoteid, None);
        assert_eq!(state.account.balance.to_string(), "45.5000");
    }

    #[test]
    fn required_fields_are_asked_for_and_recorded() {
        let mut state = State::default();
        let bitninja = "func=addition.order.param&item=184431&pricelist=55371&period=6\
                        &skipbasket=on&sok=ok";
        let refused = handle(
            &mut state,
            &Params::parse(Some(&format!("authinfo=partner:secret&{bitninja}")), None),
        )
        .expect_err("refused");
        let xml = String::from_utf8(refused.to_doc().to_xml(false).expect("xml")).expect("UTF-8");
        assert_eq!(
            xml,
            "<doc><error type=\"missed\" object=\"bitninja_email\">\
             <param name=\"object\" type=\"msg\" msg=\"bitninja_email\">bitninja_email</param>\
             <msg>The field 'bitninja_email' is required</msg></error></doc>"
        );
        assert!(state.services.is_empty());
        assert_eq!(
            refusal(&mut state, &format!("{bitninja}&bitninja_email=%20")),
            ("missed".to_owned(), "bitninja_email".to_owned())
        );
        let placed = call(
            &mut state,
            &format!("{bitninja}&bitninja_email=ops%40example.com"),
        );
        assert_eq!(placed, Ok("<doc><id>100001</id></doc>".to_owned()));
        assert_eq!(
            state.services[0]
                .fields
                .get("bitninja_email")
                .map(String::as_str),
            Some("ops@example.com")
        );
        assert_eq!(state.services[0].expires, date("2027-06-01"));
        // The trial is listed, never sold.
        assert_eq!(
            refusal(
                &mut state,
                &format!("{bitninja}&bitninja_email=a&period=-100").replace("period=6&", "")
            ),
            ("value".to_owned(), "period".to_owned())
        );
    }

    #[test]
    fn services_are_listed_and_read_one_by_one() {
        let mut state = State::default();
        assert_eq!(call(&mut state, "func=addition"), Ok("<doc/>".to_owned()));
        call(&mut state, &format!("{PLACE_LITE}&period=1&remoteid=o-7")).expect("placed");
        call(
            &mut state,
            &format!("{PLACE_LITE}&period=12&autoprolong=12"),
        )
        .expect("placed");
        call(&mut state, "func=addition.suspend&elid=100002").expect("suspended");
        assert_eq!(
            call(&mut state, "func=addition&p_cnt=1000&p_num=1"),
            Ok("<doc>\
                <elem><id>100001</id><item>184431</item><pricelist>55361</pricelist>\
                <expiredate>2027-01-01</expiredate><item_status orig=\"2\">Active</item_status>\
                <status>2</status><autoprolong>null</autoprolong><remoteid>o-7</remoteid></elem>\
                <elem><id>100002</id><item>184431</item><pricelist>55361</pricelist>\
                <expiredate>2027-12-01</expiredate>\
                <item_status orig=\"3_employeesuspend\">Suspended by Administrator</item_status>\
                <status>3</status><autoprolong>12</autoprolong></elem></doc>"
                .to_owned())
        );
        assert_eq!(
            call(&mut state, "func=addition.edit&elid=100001"),
            Ok(
                "<doc><elid>100001</elid><item>184431</item><pricelist>55361</pricelist>\
                <expiredate>2027-01-01</expiredate><status>2</status>\
                <autoprolong>null</autoprolong><remoteid>o-7</remoteid></doc>"
                    .to_owned()
            )
        );
        assert_eq!(
            refusal(&mut state, "func=addition.edit&elid=4"),
            ("value".to_owned(), "elid".to_owned())
        );
        assert_eq!(
            refusal(&mut state, "func=addition.edit"),
            ("missed".to_owned(), "elid".to_owned())
        );
        // Confirmed, the edit rebinds, and sets the reference when one is sent.
        call(
            &mut state,
            "func=addition.edit&elid=100002&item=184433&remoteid=o-8&sok=ok",
        )
        .expect("rebound");
        assert_eq!(state.services[1].licence, "184433");
        assert_eq!(state.services[1].remoteid.as_deref(), Some("o-8"));
    }

    #[test]
    fn the_balance_reads_as_billmanager_shows_it() {
        let mut state = State::default();
        let summary = "<doc><elem><balance>100.00 EUR</balance>\
                       <realbalance>100.00 EUR</realbalance></elem></doc>";
        assert_eq!(
            call(&mut state, "func=dashboard.info"),
            Ok(summary.to_owned())
        );
        state.account.balance = "31.4999".parse().expect("amount");
        assert_eq!(
            call(&mut state, "func=dashboard.info"),
            Ok("<doc><elem><balance>31.50 EUR</balance>\
                <realbalance>31.50 EUR</realbalance></elem></doc>"
                .to_owned())
        );
    }

    #[test]
    fn a_renewal_quote_changes_nothing() {
        let mut state = State::default();
        call(&mut state, &format!("{PLACE_LITE}&period=1")).expect("placed");
        let before = state.clone();
        let quote = "<doc><elid>100001</elid><period>12</period><expiredate>2027-01-01</expiredate>\
                     <newexpiredate>2028-01-01</newexpiredate><status>2</status>\
                     <slist name=\"period\"><val key=\"1\">3.50 EUR per month</val>\
                     <val key=\"12\">35.00 EUR per 12 months</val></slist></doc>";
        assert_eq!(
            call(&mut state, "func=service.prolong&elid=100001&period=12"),
            Ok(quote.to_owned())
        );
        // Without a period, the service's own.
        assert!(
            call(&mut state, "func=service.prolong&elid=100001").is_ok_and(|q| q.contains(
                "<period>1</period><expiredate>2027-01-01</expiredate>\
                                          <newexpiredate>2027-02-01</newexpiredate>"
            ))
        );
        assert_eq!(state, before);
        assert_eq!(
            refusal(&mut state, "func=service.prolong&elid=100001&period=6"),
            ("value".to_owned(), "period".to_owned())
        );
        assert_eq!(
            refusal(&mut state, "func=service.prolong&elid=9"),
            ("value".to_owned(), "elid".to_owned())
        );
        assert_eq!(
            refusal(&mut state, "func=service.prolong"),
            ("missed".to_owned(), "elid".to_owned())
        );
        // Once expired, a renewal counts from today.
        state.today = date("2027-02-10");
        assert!(
            call(&mut state, "func=service.prolong&elid=100001&period=1")
                .is_ok_and(|q| q.contains("<newexpiredate>2027-03-10</newexpiredate>"))
        );
    }

    #[test]
    fn a_renewal_extends_from_the_expiry_or_from_today_and_resumes() {
        let mut state = State::default();
        call(&mut state, &format!("{PLACE_LITE}&period=1")).expect("placed");
        assert_eq!(
            call(
                &mut state,
                "func=service.prolong&elid=100001&period=12&sok=ok"
            ),
            Ok(
                "<doc><ok/><id>100001</id><doc><newexpiredate>2028-01-01</newexpiredate>\
                </doc></doc>"
                    .to_owned()
            )
        );
        assert_eq!(state.account.balance.to_string(), "61.5000");

        let report = crate::clock::set_today(&mut state, date("2028-01-01"));
        assert_eq!(report.suspended, [100001]);
        assert_eq!(state.services[0].status, ServiceStatus::Expired);
        state.today = date("2028-01-20");
        assert_eq!(
            call(
                &mut state,
                "func=service.prolong&elid=100001&period=1&sok=ok"
            ),
            Ok(
                "<doc><ok/><id>100001</id><doc><newexpiredate>2028-02-20</newexpiredate>\
                </doc></doc>"
                    .to_owned()
            )
        );
        assert_eq!(state.services[0].status, ServiceStatus::Active);
        assert_eq!(state.services[0].renewals, [12, 1]);
        assert_eq!(state.account.balance.to_string(), "58.0000");
    }

    #[test]
    fn early_renewals_are_refused_before_the_window_opens() {
        let mut state = State {
            renew_window_days: Some(10),
            ..State::default()
        };
        call(&mut state, &format!("{PLACE_LITE}&period=1")).expect("placed");
        let early = handle(
            &mut state,
            &Params::parse(
                Some("authinfo=partner:secret&func=service.prolong&elid=100001&period=1&sok=ok"),
                None,
            ),
        )
        .expect_err("too early");
        let xml = String::from_utf8(early.to_doc().to_xml(false).expect("xml")).expect("UTF-8");
        assert_eq!(
            xml,
            "<doc><error type=\"value\" object=\"period\">\
             <param name=\"object\" type=\"msg\" msg=\"period\">period</param>\
             <param name=\"value\">2026-12-22</param>\
             <msg>The service can be renewed only after 2026-12-22</msg></error></doc>"
        );
        assert_eq!(state.account.balance.to_string(), "96.5000");
        // The quote is still shown.
        assert!(call(&mut state, "func=service.prolong&elid=100001&period=1").is_ok());
        state.today = date("2026-12-22");
        assert!(
            call(
                &mut state,
                "func=service.prolong&elid=100001&period=1&sok=ok"
            )
            .is_ok()
        );
        assert_eq!(state.services[0].expires, date("2027-02-01"));
    }

    #[test]
    fn suspend_and_resume_act_at_once() {
        let mut state = State::default();
        call(&mut state, &format!("{PLACE_LITE}&period=1")).expect("placed");
        assert_eq!(
            call(&mut state, "func=addition.suspend&elid=100001"),
            Ok("<doc><ok/></doc>".to_owned())
        );
        assert_eq!(state.services[0].status, ServiceStatus::Suspended);
        assert_eq!(
            call(&mut state, "func=addition.resume&elid=100001&sok=ok"),
            Ok("<doc><ok/></doc>".to_owned())
        );
        assert_eq!(state.services[0].status, ServiceStatus::Active);
        for func in ["addition.suspend", "addition.resume"] {
            assert_eq!(
                refusal(&mut state, &format!("func={func}&elid=7")),
                ("value".to_owned(), "elid".to_owned())
            );
            assert_eq!(
                refusal(&mut state, &format!("func={func}")),
                ("missed".to_owned(), "elid".to_owned())
            );
        }

        crate::clock::set_today(&mut state, date("2027-01-01"));
        let refused = handle(
            &mut state,
            &Params::parse(
                Some("authinfo=partner:secret&func=addition.resume&elid=100001"),
                None,
            ),
        )
        .expect_err("expired");
        let xml = String::from_utf8(refused.to_doc().to_xml(false).expect("xml")).expect("UTF-8");
        assert_eq!(
            xml,
            "<doc><error type=\"value\" object=\"elid\">\
             <param name=\"object\" type=\"msg\" msg=\"elid\">elid</param>\
             <param name=\"value\">100001</param>\
             <msg>The service expired on 2027-01-01: renew it to resume it</msg></error></doc>"
        );
        assert_eq!(state.services[0].status, ServiceStatus::Expired);

        call(&mut state, "func=addition.delete&elid=100001").expect("removed");
        assert_eq!(
            refusal(&mut state, "func=addition.suspend&elid=100001"),
            ("value".to_owned(), "elid".to_owned())
        );
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
