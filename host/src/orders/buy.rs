//! The panel's Buy redirect (protocol reference §3): the browser's parameters, checked one by
//! one, and the price the partner showed for the module, read back from the partner's own price
//! list the way the panel reads it.

use std::net::IpAddr;

use rust_decimal::Decimal;
use serde::Deserialize;

use super::{Created, DeskError, NewOrder, Order, OrderStore};
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
    /// `module`: the module's service name (`intname` or `additionintname`).
    pub module: String,
    /// `license`: the panel's licence ID.
    pub licence_id: String,
    /// `ip`: the licence's IP, when sent.
    pub licence_ip: Option<IpAddr>,
    /// `module_id`: the module's tariff ID.
    pub tariff_id: u64,
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

impl BuyRequest {
    /// Checks the redirect's parameters, given by `get` (the first value of each name).
    pub fn parse<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<BuyRequest, BadParam> {
        let module = get("module").map(str::trim).unwrap_or_default();
        if module.is_empty() {
            return Err(bad("module", "missing"));
        }
        if module.len() > MAX_MODULE_LEN || module.chars().any(char::is_control) {
            return Err(bad("module", "not a module name"));
        }
        let licence_id = get("license").map(str::trim).unwrap_or_default();
        if licence_id.is_empty() {
            return Err(bad("license", "missing"));
        }
        if !is_licence_id(licence_id) {
            return Err(bad("license", LICENCE_RULE));
        }
        let licence_ip = match get("ip").map(str::trim) {
            None | Some("") => None,
            Some(ip) => Some(
                ip.parse::<IpAddr>()
                    .map_err(|_| bad("ip", "not an IP address"))?,
            ),
        };
        let module_id = get("module_id").map(str::trim).unwrap_or_default();
        if module_id.is_empty() {
            return Err(bad("module_id", "missing"));
        }
        let tariff_id = module_id
            .parse::<u64>()
            .ok()
            .filter(|id| *id > 0 && i64::try_from(*id).is_ok())
            .ok_or_else(|| bad("module_id", "not a module ID"))?;
        Ok(BuyRequest {
            module: module.to_owned(),
            licence_id: licence_id.to_owned(),
            licence_ip,
            tariff_id,
        })
    }
}

/// Records the order of a Buy redirect — or returns the unpaid one already recorded for the
/// same licence and module. The price is the one the partner's price list shows for the
/// configured period.
pub fn record(
    active: &Active,
    store: &dyn OrderStore,
    request: &BuyRequest,
) -> Result<Created, DeskError> {
    let config = active.config();
    let module = config.module(request.tariff_id).ok_or_else(|| {
        DeskError::Invalid(format!("module_id: {} is not sold here", request.tariff_id))
    })?;
    let named = [&module.intname, &module.additionintname]
        .iter()
        .any(|n| n.eq_ignore_ascii_case(&request.module));
    if !named {
        return Err(DeskError::Invalid(format!(
            "module: `{}` is not the name of module {}",
            request.module, request.tariff_id
        )));
    }
    if !module.orderable {
        return Err(DeskError::Unavailable(format!(
            "{} cannot be ordered now",
            module.name
        )));
    }
    let months = config.orders.period_months;
    let doc = active
        .export_prices(&panel_query(Some(request.tariff_id), true))
        .map_err(|e| {
            tracing::error!("pricing a Buy redirect: {e}");
            DeskError::Unavailable("the price of this module cannot be computed now".to_owned())
        })?;
    let price = price_in_list(&doc.body, request.tariff_id, months).ok_or_else(|| {
        DeskError::Unavailable(format!(
            "{} has no price for {months} month(s) in the price list",
            module.name
        ))
    })?;
    let new = NewOrder {
        licence_id: request.licence_id.clone(),
        licence_ip: request.licence_ip,
        tariff_id: request.tariff_id,
        service_name: module.intname.clone(),
        price,
        period: months,
        autoprolong: config.orders.autoprolong,
    };
    Ok(store.create_or_reuse_new(&new)?)
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
        BuyRequest::parse(|name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v))
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
        let r = parse(&[
            ("module", "x"),
            ("license", "1"),
            ("module_id", "2"),
            ("ip", ""),
        ])
        .expect("ip is optional");
        assert_eq!(r.licence_ip, None);
        let r = parse(&[
            ("module", "x"),
            ("license", "1"),
            ("module_id", "2"),
            ("ip", "2001:db8::1"),
        ])
        .expect("IPv6");
        assert!(r.licence_ip.is_some_and(|ip| ip.is_ipv6()));
    }

    #[test]
    fn each_bad_parameter_is_named() {
        let ok = [("module", "x"), ("license", "1"), ("module_id", "2")];
        let with = |name: &str, value: &'static str| {
            let mut v: Vec<(&str, &str)> = ok.iter().filter(|(k, _)| *k != name).copied().collect();
            v.push((name, value));
            v.into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect::<Vec<_>>()
        };
        let cases: &[(&str, &'static str)] = &[
            ("module", ""),
            ("module", "a\u{0}b"),
            ("license", ""),
            ("license", "1; DROP TABLE orders"),
            ("license", "<script>"),
            ("ip", "999.1.1.1"),
            ("ip", "localhost"),
            ("module_id", "abc"),
            ("module_id", "0"),
            ("module_id", "-1"),
            ("module_id", "18446744073709551615"),
        ];
        for (name, value) in cases {
            let pairs = with(name, value);
            let err = BuyRequest::parse(|n| pairs.iter().find(|(k, _)| k == n).map(|(_, v)| *v))
                .expect_err(value);
            assert_eq!(err.field, *name, "{value:?}: {err}");
        }
        let long = "1".repeat(65);
        let err = BuyRequest::parse(|n| match n {
            "license" => Some(long.as_str()),
            "module" => Some("x"),
            "module_id" => Some("2"),
            _ => None,
        })
        .expect_err("long licence");
        assert_eq!(err.field, "license");
        assert_eq!(parse(&[]).expect_err("empty").field, "module");
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
