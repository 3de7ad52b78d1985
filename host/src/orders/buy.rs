//! The panel's Buy redirect (protocol reference §3): the browser's parameters, checked one by
//! one, and the price the partner showed for the module, read back from the partner's own price
//! list the way the panel reads it.

use std::net::IpAddr;

use rust_decimal::Decimal;
use serde::Deserialize;

use super::{
    Change, Created, DeskError, NewOrder, Order, OrderFields, OrderId, OrderState, OrderStore,
};
use crate::convert::panel_query;
use crate::money::{Amount, Currency, Money, Months};
use crate::reseller::Active;

/// The longest licence ID accepted, in bytes.
pub const MAX_LICENCE_LEN: usize = 64;
/// The longest module service name accepted, in bytes.
pub const MAX_MODULE_LEN: usize = 128;

/// What [`is_licence_id`] accepts, in words.
pub const LICENCE_RULE: &str = "a licence ID is letters, digits, `-`, `_` or `.`, at most 64";

/// Whether `id` can be a panel's licence ID: 1 to [`MAX_LICENCE_LEN`] ASCII letters, digits,
/// `-`, `_` or `.`.
pub fn is_licence_id(id: &str) -> bool {
    (1..=MAX_LICENCE_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// A Buy redirect's parameters, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuyRequest {
    /// `module` as the panel sent it (control characters replaced, cut at
    /// [`MAX_MODULE_LEN`]); not what decides the module: `module_id` does.
    pub module: Option<String>,
    /// `license`: the panel's licence ID.
    pub licence_id: String,
    /// `ip`: the licence's IP, when sent.
    pub licence_ip: Option<IpAddr>,
    /// `module_id`: the module's tariff ID, in either region.
    pub tariff_id: u64,
    /// `period`: the months asked for, when a partner's page lets the buyer choose.
    pub period: Option<Months>,
    /// Every other parameter, by name: the module's own order fields among them.
    pub extra: Vec<(String, String)>,
}

/// A parameter of the redirect that is missing or wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct BadParam {
    /// The parameter's name.
    pub field: &'static str,
    /// What is wrong, for the user.
    pub message: String,
}

fn bad(field: &'static str, message: impl Into<String>) -> BadParam {
    BadParam {
        field,
        message: message.into(),
    }
}

/// The parameters a Buy takes itself; the others may be order fields.
const BUY_PARAMS: &[&str] = &["module", "license", "ip", "module_id", "period", "func"];

impl BuyRequest {
    /// Checks the redirect's parameters `params` (the first value of each name counts).
    pub fn parse(params: &[(String, String)]) -> Result<BuyRequest, BadParam> {
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.trim())
        };
        let module = get("module").filter(|m| !m.is_empty()).map(|m| {
            let clean: String = m
                .chars()
                .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
                .collect();
            let end = clean.floor_char_boundary(MAX_MODULE_LEN);
            clean[..end].to_owned()
        });
        let licence_id = get("license").unwrap_or_default();
        if licence_id.is_empty() {
            return Err(bad("license", "missing"));
        }
        if !is_licence_id(licence_id) {
            return Err(bad("license", LICENCE_RULE));
        }
        let licence_ip = match get("ip") {
            None | Some("") => None,
            Some(ip) => Some(
                ip.parse::<IpAddr>()
                    .map_err(|_| bad("ip", "not an IP address"))?,
            ),
        };
        let module_id = get("module_id").unwrap_or_default();
        if module_id.is_empty() {
            return Err(bad("module_id", "missing"));
        }
        let tariff_id = module_id
            .parse::<u64>()
            .ok()
            .filter(|id| *id > 0 && i64::try_from(*id).is_ok())
            .ok_or_else(|| bad("module_id", "not a module ID"))?;
        let period = match get("period") {
            None | Some("") => None,
            Some(p) => Some(
                p.parse::<Months>()
                    .map_err(|_| bad("period", "a number of months, 1 to 120"))?,
            ),
        };
        let mut extra: Vec<(String, String)> = Vec::new();
        for (name, value) in params {
            if !BUY_PARAMS.contains(&name.as_str()) && !extra.iter().any(|(n, _)| n == name) {
                extra.push((name.clone(), value.trim().to_owned()));
            }
        }
        Ok(BuyRequest {
            module,
            licence_id: licence_id.to_owned(),
            licence_ip,
            tariff_id,
            period,
            extra,
        })
    }
}

/// Why a Buy was refused, for the count a partner watches: lost sales.
pub fn refusal_reason(e: &DeskError) -> &'static str {
    match e {
        DeskError::Invalid(_) => "invalid",
        DeskError::Unavailable(_) => "unavailable",
        _ => "failed",
    }
}

/// What became of the Buy redirects since the host started.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct BuyCounts {
    /// Buys that recorded (or found) an order.
    pub accepted: u64,
    /// Accepted Buys whose `module` did not name the module of their `module_id`.
    pub module_mismatch: u64,
    /// Accepted Buys whose `module_id` was the module's ID in the other region.
    pub other_region: u64,
    /// Refused Buys, by reason (`invalid:<parameter>`, `not_sold`, `unavailable`,
    /// `rate_limited`, `failed`).
    pub refused: std::collections::BTreeMap<String, u64>,
}

/// The counters behind [`BuyCounts`].
#[derive(Debug, Default)]
pub struct BuyStats(std::sync::Mutex<BuyCounts>);

impl BuyStats {
    fn with(&self, f: impl FnOnce(&mut BuyCounts)) {
        f(&mut self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner));
    }

    /// The counts now.
    pub fn counts(&self) -> BuyCounts {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Counts a refused Buy and logs it with its reason and raw parameters (escaped, cut), so
    /// that a partner sees lost sales.
    pub fn refused(&self, reason: &str, detail: &str, params: &[(String, String)]) {
        let raw: Vec<String> = params
            .iter()
            .take(16)
            .map(|(k, v)| {
                let show = |t: &str| {
                    let t: String = t.chars().take(128).collect();
                    t.escape_debug().to_string()
                };
                format!("{}={}", show(k), show(v))
            })
            .collect();
        tracing::warn!(reason, params = %raw.join("&"), "Buy refused: {detail}");
        self.with(|c| *c.refused.entry(reason.to_owned()).or_default() += 1);
        crate::metrics::global()
            .buys
            .with_label_values(&["refused", reason])
            .inc();
    }

    /// Counts what a recorded Buy found.
    pub(crate) fn accepted(&self, mismatch: bool, other_region: bool) {
        self.with(|c| {
            c.accepted += 1;
            c.module_mismatch += u64::from(mismatch);
            c.other_region += u64::from(other_region);
        });
        let reason = match (mismatch, other_region) {
            (true, _) => "module_mismatch",
            (false, true) => "other_region",
            (false, false) => "",
        };
        crate::metrics::global()
            .buys
            .with_label_values(&["accepted", reason])
            .inc();
    }
}

impl super::OrderDesk {
    /// Changes what an unpaid order asks for: its period (re-priced from the price list) and
    /// its module's order fields (checked against the catalogue). Order fields may also be
    /// given while the order is paid and waits for them.
    pub fn set_details(
        &self,
        id: &OrderId,
        period: Option<Months>,
        fields: Option<&[(String, String)]>,
        actor: &str,
    ) -> Result<Order, DeskError> {
        let order = self.backend().get(id)?;
        let active = self.reseller().active();
        let config = active.config();
        let module = config.module(order.tariff_id).ok_or_else(|| {
            DeskError::Unavailable(format!(
                "tariff {} is no longer in the catalogue",
                order.tariff_id
            ))
        })?;
        let mut amendment = super::Amendment::default();
        let mut notes = Vec::new();
        if let Some(months) = period.filter(|m| *m != order.period) {
            if order.state != OrderState::New {
                return Err(DeskError::Conflict {
                    state: order.state,
                    message: "the period of a paid order cannot change".to_owned(),
                });
            }
            let doc = active
                .export_prices(&panel_query(Some(order.tariff_id), true))
                .map_err(|e| DeskError::Unavailable(format!("the price list: {e}")))?;
            let price = price_in_list(&doc.body, order.tariff_id, months).ok_or_else(|| {
                DeskError::Invalid(format!(
                    "period: {} is not sold for {months} month(s)",
                    module.name
                ))
            })?;
            notes.push(format!("period {months} month(s) at {price}"));
            amendment.period = Some(months);
            amendment.price = Some(price);
        }
        if let Some(given) = fields {
            if !matches!(order.state, OrderState::New | OrderState::Paid) {
                return Err(DeskError::Conflict {
                    state: order.state,
                    message: format!(
                        "the order fields of an order that is {} cannot change",
                        order.state
                    ),
                });
            }
            let mut merged = order.fields.clone();
            merged.extend(order_fields(module, given)?);
            notes.push(format!(
                "order fields {}",
                merged.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
            amendment.fields = Some(merged);
        }
        if amendment == super::Amendment::default() {
            return Ok(order);
        }
        let change = Change::by(actor).with_note(notes.join("; "));
        let order = self.backend().amend(id, order.state, &amendment, change)?;
        if order.state == OrderState::Paid {
            self.wake_worker();
        }
        Ok(order)
    }
}

/// What recording a Buy found, besides the order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Matched {
    /// `module` did not name the module.
    pub mismatch: bool,
    /// `module_id` was the other region's.
    pub other_region: bool,
}

/// Records the order of a Buy redirect — or returns the unpaid one already recorded for the
/// same Buy (licence, IP, module, period). `module_id` decides the module, in either region;
/// a `module` that does not name it is logged, not refused. The period is the one asked for,
/// else `orders.period_months`, else one month when the module has no price for that; the
/// price is the one the partner's price list shows for it.
pub fn record(
    active: &Active,
    store: &dyn OrderStore,
    request: &BuyRequest,
) -> Result<(Created, Matched), DeskError> {
    let config = active.config();
    let module = config
        .module_in_any_region(request.tariff_id)
        .ok_or_else(|| {
            DeskError::Invalid(format!("module_id: {} is not sold here", request.tariff_id))
        })?;
    let tariff_id = config.tariff_id(module);
    let matched = Matched {
        mismatch: request.module.as_deref().is_none_or(|m| {
            ![&module.intname, &module.additionintname]
                .iter()
                .any(|n| n.eq_ignore_ascii_case(m))
        }),
        other_region: tariff_id != request.tariff_id,
    };
    if matched.mismatch {
        tracing::warn!(
            module_id = request.tariff_id,
            module = request
                .module
                .as_deref()
                .map(|m| m.escape_debug().to_string()),
            expected = module.intname,
            "a Buy's module does not name the module of its module_id; ordering by module_id"
        );
    }
    if !module.orderable {
        return Err(DeskError::Unavailable(format!(
            "{} cannot be ordered now",
            module.name
        )));
    }
    let fields = order_fields(module, &request.extra)?;
    let doc = active
        .export_prices(&panel_query(Some(tariff_id), true))
        .map_err(|e| {
            tracing::error!("pricing a Buy redirect: {e}");
            DeskError::Unavailable("the price of this module cannot be computed now".to_owned())
        })?;
    let asked = request.period.unwrap_or(config.orders.period_months);
    let (months, price) = match price_in_list(&doc.body, tariff_id, asked) {
        Some(price) => (asked, price),
        None if request.period.is_none() => {
            let price = price_in_list(&doc.body, tariff_id, Months::MONTH).ok_or_else(|| {
                DeskError::Unavailable(format!("{} has no price in the price list", module.name))
            })?;
            (Months::MONTH, price)
        }
        None => {
            return Err(DeskError::Invalid(format!(
                "period: {} is not sold for {asked} month(s)",
                module.name
            )));
        }
    };
    let new = NewOrder {
        licence_id: request.licence_id.clone(),
        licence_ip: request.licence_ip,
        tariff_id,
        service_name: module.intname.clone(),
        price,
        period: months,
        autoprolong: config.orders.autoprolong,
        module: request.module.clone(),
        fields,
    };
    Ok((store.create_or_reuse_new(&new)?, matched))
}

/// The module's declared order fields among `given` (parameter name = field name), each
/// checked against its pattern; other names are ignored.
pub fn order_fields(
    module: &crate::config::Module,
    given: &[(String, String)],
) -> Result<OrderFields, DeskError> {
    let mut fields = OrderFields::new();
    for field in &module.fields {
        let Some((_, value)) = given.iter().find(|(name, _)| *name == field.name) else {
            continue;
        };
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        if !field.accepts(value) {
            return Err(DeskError::Invalid(format!(
                "{}: not a valid value for “{}”",
                field.name, field.label
            )));
        }
        fields.insert(field.name.clone(), value.to_owned());
    }
    Ok(fields)
}

/// The required order fields of `module` that `fields` lacks, by label.
pub fn missing_fields(module: &crate::config::Module, fields: &OrderFields) -> Vec<String> {
    module
        .fields
        .iter()
        .filter(|f| f.required && !fields.contains_key(&f.name))
        .map(|f| format!("{} ({})", f.label, f.name))
        .collect()
}

/// Says so in the log when no module of the price list has a price for the period a Buy
/// orders: every Buy would be refused.
pub fn warn_if_no_price_for_the_period(active: &Active) {
    let config = active.config();
    let months = config.orders.period_months;
    let Ok(doc) = active.export_prices(&panel_query(None, true)) else {
        return;
    };
    let priced = config
        .catalogue
        .modules
        .iter()
        .any(|m| price_in_list(&doc.body, config.tariff_id(m), months).is_some());
    if !priced && !config.catalogue.modules.is_empty() {
        tracing::warn!(
            "orders.period_months = {months}, but no module of the price list has a price for \
             {months} month(s): every Buy will be refused (see the plugin's periods)"
        );
    }
}

/// Fills a checkout URL template with an order's ID and price, percent-encoded.
pub fn checkout_url(template: &str, order: &Order) -> String {
    let encode = |v: &str| form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
    template
        .replace("{order_id}", &encode(order.id.as_str()))
        .replace("{amount}", &encode(&order.price.amount.to_string()))
        .replace("{currency}", &encode(order.price.currency.as_str()))
}

#[derive(Deserialize)]
struct Doc {
    #[serde(default)]
    pricelist: Vec<PriceList>,
}

#[derive(Deserialize)]
struct PriceList {
    id: String,
    #[serde(default)]
    price: Vec<Price>,
}

#[derive(Deserialize)]
struct Price {
    #[serde(rename = "@currency")]
    currency: String,
    #[serde(default)]
    period: Vec<Period>,
}

#[derive(Deserialize)]
struct Period {
    #[serde(rename = "@cost")]
    cost: String,
    #[serde(rename = "@type")]
    kind: String,
    #[serde(rename = "@length")]
    length: String,
}

/// The price of `months` of module `tariff_id` in a BILLmanager XML price list, as the panel
/// would read it; `None` when the list has no such price.
pub fn price_in_list(xml: &[u8], tariff_id: u64, months: Months) -> Option<Money> {
    let text = std::str::from_utf8(xml).ok()?;
    let doc: Doc = quick_xml::de::from_str(text).ok()?;
    let list = doc
        .pricelist
        .into_iter()
        .find(|p| p.id.trim().parse::<u64>().ok() == Some(tariff_id))?;
    list.price.into_iter().find_map(|price| {
        let period = price.period.iter().find(|p| {
            p.kind == "month" && p.length.trim().parse::<u16>().ok() == Some(months.get())
        })?;
        let cost: Decimal = period.cost.trim().parse().ok()?;
        let amount = Amount::from_decimal(cost).ok()?;
        let currency = Currency::new(price.currency.trim()).ok()?;
        Some(Money::new(amount, currency))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<BuyRequest, BadParam> {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        BuyRequest::parse(&owned)
    }

    #[test]
    fn a_panel_redirect_is_accepted() {
        let r = parse(&[
            ("module", "drweb-lite"),
            ("license", "184431"),
            ("ip", "192.0.2.10"),
            ("module_id", "55361"),
        ])
        .expect("valid");
        assert_eq!(r.licence_id, "184431");
        assert_eq!(r.licence_ip, Some("192.0.2.10".parse().expect("ip")));
        assert_eq!(r.tariff_id, 55361);
        assert_eq!(r.module.as_deref(), Some("drweb-lite"));
        let r = parse(&[("license", "1"), ("module_id", "2"), ("ip", "")]).expect("ip is optional");
        assert_eq!(
            (r.licence_ip, r.module),
            (None, None),
            "module is optional too"
        );
        let r =
            parse(&[("license", "1"), ("module_id", "2"), ("ip", "2001:db8::1")]).expect("IPv6");
        assert!(r.licence_ip.is_some_and(|ip| ip.is_ipv6()));
        // Whatever the panel calls the module is kept, cleaned, never refused.
        let r = parse(&[("module", "a\u{0}b"), ("license", "1"), ("module_id", "2")])
            .expect("odd module");
        assert_eq!(r.module.as_deref(), Some("a\u{FFFD}b"));
        let long = "м".repeat(200);
        let r = parse(&[("module", &long), ("license", "1"), ("module_id", "2")]).expect("long");
        assert!(r.module.is_some_and(|m| m.len() <= MAX_MODULE_LEN));
        let r = parse(&[
            ("license", "1"),
            ("module_id", "2"),
            ("period", "6"),
            ("bitninja_email", " a@example.org "),
        ])
        .expect("period and fields");
        assert_eq!(r.period, Some(Months::new(6).expect("6")));
        assert_eq!(
            r.extra,
            [("bitninja_email".to_owned(), "a@example.org".to_owned())]
        );
    }

    #[test]
    fn each_bad_parameter_is_named() {
        let ok = [("license", "1"), ("module_id", "2")];
        let cases: &[(&str, &str)] = &[
            ("license", ""),
            ("license", "1; DROP TABLE orders"),
            ("license", "<script>"),
            ("ip", "999.1.1.1"),
            ("ip", "localhost"),
            ("module_id", "abc"),
            ("module_id", "0"),
            ("module_id", "-1"),
            ("module_id", "18446744073709551615"),
            ("period", "0"),
            ("period", "121"),
            ("period", "x"),
        ];
        for (name, value) in cases {
            let mut pairs: Vec<(&str, &str)> =
                ok.iter().filter(|(k, _)| k != name).copied().collect();
            pairs.push((name, value));
            let err = parse(&pairs).expect_err(value);
            assert_eq!(err.field, *name, "{value:?}: {err}");
        }
        let long = "1".repeat(65);
        let err = parse(&[("license", &long), ("module_id", "2")]).expect_err("long licence");
        assert_eq!(err.field, "license");
        assert_eq!(parse(&[]).expect_err("empty").field, "license");
    }

    const LIST: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<doc>
  <pricelist>
    <id>55361</id><intname>drweb-lite</intname><name>Dr.Web &amp; co</name>
    <additionintname>DrWeb</additionintname>
    <price currency="EUR">
      <period cost="3.6000" type="month" length="1">monthly</period>
      <period cost="36.0000" type="month" length="12">annually</period>
    </price>
  </pricelist>
  <pricelist><id>23221</id><price currency="RUB"><period cost="950.0000" type="month" length="1">monthly</period></price></pricelist>
</doc>"#;

    #[test]
    fn prices_are_read_like_the_panel_reads_them() {
        let m = |units, currency: &str| Money::from_units(units, currency).expect("money");
        let (month, year) = (Months::MONTH, Months::YEAR);
        assert_eq!(
            price_in_list(LIST.as_bytes(), 55361, month),
            Some(m(36_000, "EUR"))
        );
        assert_eq!(
            price_in_list(LIST.as_bytes(), 55361, year),
            Some(m(360_000, "EUR"))
        );
        assert_eq!(
            price_in_list(LIST.as_bytes(), 23221, month),
            Some(m(9_500_000, "RUB"))
        );
        assert_eq!(price_in_list(LIST.as_bytes(), 23221, year), None);
        assert_eq!(price_in_list(LIST.as_bytes(), 1, month), None);
        assert_eq!(price_in_list(b"<doc/>", 1, month), None);
        assert_eq!(price_in_list(b"<html>", 1, month), None);
        let odd = r#"<doc><pricelist><id>1</id><price currency="EUR"><period cost="1.00001" type="month" length="1"/></price></pricelist></doc>"#;
        assert_eq!(price_in_list(odd.as_bytes(), 1, month), None);
        let negative = r#"<doc><pricelist><id>1</id><price currency="EUR"><period cost="-1" type="month" length="1"/></price></pricelist></doc>"#;
        assert_eq!(price_in_list(negative.as_bytes(), 1, month), None);
    }
}
