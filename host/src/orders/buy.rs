//! The panel's Buy redirect (protocol reference §3): the browser's parameters, checked one by
//! one, and the price the partner showed for the module, read back from the partner's own price
//! list the way the panel reads it.

use std::net::IpAddr;

use rust_decimal::Decimal;
use serde::Deserialize;

use super::Money;

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
pub fn price_in_list(xml: &[u8], tariff_id: u64, months: u16) -> Option<Money> {
    let text = std::str::from_utf8(xml).ok()?;
    let doc: Doc = quick_xml::de::from_str(text).ok()?;
    let list = doc
        .pricelist
        .into_iter()
        .find(|p| p.id.trim().parse::<u64>().ok() == Some(tariff_id))?;
    list.price.into_iter().find_map(|price| {
        let period = price
            .period
            .iter()
            .find(|p| p.kind == "month" && p.length.trim().parse::<u16>().ok() == Some(months))?;
        let cost: Decimal = period.cost.trim().parse().ok()?;
        let amount_e4 = cost
            .checked_mul(Decimal::from(10_000))
            .filter(|d| d.fract().is_zero() && !d.is_sign_negative())
            .and_then(|d| i64::try_from(d).ok())?;
        let money = Money {
            amount_e4,
            currency: price.currency.trim().to_owned(),
        };
        money.has_valid_currency().then_some(money)
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
        let m = |amount_e4, currency: &str| Money {
            amount_e4,
            currency: currency.to_owned(),
        };
        assert_eq!(
            price_in_list(LIST.as_bytes(), 55361, 1),
            Some(m(36_000, "EUR"))
        );
        assert_eq!(
            price_in_list(LIST.as_bytes(), 55361, 12),
            Some(m(360_000, "EUR"))
        );
        assert_eq!(
            price_in_list(LIST.as_bytes(), 23221, 1),
            Some(m(9_500_000, "RUB"))
        );
        assert_eq!(price_in_list(LIST.as_bytes(), 23221, 12), None);
        assert_eq!(price_in_list(LIST.as_bytes(), 1, 1), None);
        assert_eq!(price_in_list(b"<doc/>", 1, 1), None);
        assert_eq!(price_in_list(b"<html>", 1, 1), None);
        let odd = r#"<doc><pricelist><id>1</id><price currency="EUR"><period cost="1.00001" type="month" length="1"/></price></pricelist></doc>"#;
        assert_eq!(price_in_list(odd.as_bytes(), 1, 1), None);
        let negative = r#"<doc><pricelist><id>1</id><price currency="EUR"><period cost="-1" type="month" length="1"/></price></pricelist></doc>"#;
        assert_eq!(price_in_list(negative.as_bytes(), 1, 1), None);
    }
}
