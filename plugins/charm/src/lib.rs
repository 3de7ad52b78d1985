//! Charm pricing: a second `billing:reseller` pricing policy whose partner price list ends in
//! psychological prices (3.99, 1190), built on the built-in plugin's library
//! ([`reseller_plugin`]). It shows that swapping the policy changes prices and nothing else: the
//! query rules, the rendering of the price list and the order hooks are the built-in protocol's.
//!
//! # Prices
//!
//! A module's price for a period is its upstream cost with `markup_percent` on top, raised to the
//! next *charm price* of its currency: the smallest `k × step + ending` (k = 0, 1, 2, …) that is
//! not below it. A price that already is a charm price stays as it is (3.99 EUR stays 3.99; 4.00
//! becomes 4.99), and a price at or below `ending` becomes `ending`, the lowest charm price: a
//! module upstream gives away lists at 0.99 EUR unless it has a fixed price of `"0"`.
//!
//! | currency | step | ending | e.g. |
//! |---|---|---|---|
//! | `EUR`, `USD` | `1` | `0.99` | 3.60 → 3.99, 4.00 → 4.99, 3.99 → 3.99 |
//! | `RUB` | `100` | `90` | 1142.41 → 1190, 1190 → 1190, 1190.01 → 1290 |
//!
//! Another currency needs its own `step` and `ending`: a module costed in a currency without any
//! is refused as a bad setting naming `pricing.currency.<CODE>`. A fixed price for a module and
//! currency overrides all this and is listed exactly as written.
//!
//! Every period the catalogue has an upstream cost for is priced; the panel lists a module
//! that has a 1-month price.
//!
//! # Settings
//!
//! The host passes the configuration's `[pricing]` table as JSON. Every amount and percentage is
//! a decimal string or a whole number, never a float (it could not hold money exactly), with at
//! most four decimals. A bad setting is refused with its dotted key under `pricing.`, e.g.
//! `pricing.currency.EUR.ending`.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `markup_percent` | `"0"` | markup over the upstream cost, in percent; above -100 |
//! | `currency.<CODE>.step`, `.ending` | the table above | the charm prices of a currency (upper-case ISO 4217 code): a positive `step` and an `ending` from 0 up to, not including, the step; both required, they replace the currency's default |
//! | `prices.<intname>.<CODE>.month`, `.year` | none | a fixed price of a module in a currency, not charmed; without `year` the year is charm-priced |
//!
//! ```toml
//! [pricing]
//! markup_percent = "15"
//!
//! [pricing.currency.KZT]            # a currency without a default
//! step = "500"
//! ending = "490"
//!
//! [pricing.prices.drweb-lite.EUR]   # fixed, used as written
//! month = "4.49"
//! year = "44.90"
//! ```
//!
//! With these settings, a module whose upstream charges 100.00 RUB a month lists at 190.00 RUB
//! (115.00 with the markup, raised to the next `…90` per hundred), one that costs 7.50 EUR lists
//! at 8.99 EUR (8.625 with the markup), and `drweb-lite` at 4.49 EUR whatever its cost.
//!
//! # Building and running
//!
//! `cargo build -p reseller-charm --target wasm32-wasip2 --profile guest` builds the component
//! `reseller_charm.wasm`, a `pricing-policy`; the host prices with it instead of the built-in
//! policy with `[plugin.policy] path = ".../reseller_charm.wasm"` and these settings under
//! `[pricing]`. Build it in a cargo invocation of its own, not together with `reseller-plugin`:
//! cargo would unify the latter's `export` feature into this crate's dependency, and this
//! component would then carry the protocol's world instead of the policy's.

use std::collections::BTreeMap;

use reseller_plugin::PricingPolicy;
use reseller_plugin::model::{Date, FieldError, Money, Offer, OfferPrices, PricingError};
use reseller_plugin::policy::{self, Amount, FixedPrice, Percent, Step};
use rust_decimal::Decimal;
use serde::Deserialize;

/// The charm pricing policy, configured by [`Settings`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Charm;

impl PricingPolicy for Charm {
    fn prices(
        offers: &[Offer],
        settings_json: &str,
        _today: Date,
    ) -> Result<Vec<OfferPrices>, PricingError> {
        let settings = Settings::from_json(settings_json)?;
        reseller_plugin::price_each(offers, |offer, months| settings.price(offer, months))
    }
}

reseller_plugin::export_policy!(Charm);

/// The charm pricing settings: the `[pricing]` table.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Markup over the upstream cost, in percent, before the price is charmed.
    #[serde(default)]
    pub markup_percent: Percent,
    /// Charm prices by currency (ISO code), replacing the defaults of [`CharmRule::default_for`].
    #[serde(default)]
    pub currency: BTreeMap<String, CharmRule>,
    /// Fixed prices by module `intname`, then by currency.
    #[serde(default)]
    pub prices: BTreeMap<String, BTreeMap<String, FixedPrice>>,
}

/// The charm prices of one currency: `ending`, `step + ending`, `2 × step + ending`, …
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CharmRule {
    /// The distance between two charm prices, e.g. `1`.
    pub step: Step,
    /// What every charm price ends in, below the step, e.g. `0.99`.
    pub ending: Amount,
}

impl CharmRule {
    /// The built-in rule of a currency: step 1 ending 0.99 for `EUR` and `USD`, step 100 ending
    /// 90 for `RUB`; `None` for any other.
    pub fn default_for(currency: &str) -> Option<CharmRule> {
        let (step, ending) = match currency {
            "EUR" | "USD" => (Decimal::ONE, Decimal::new(99, 2)),
            "RUB" => (Decimal::ONE_HUNDRED, Decimal::from(90)),
            _ => return None,
        };
        Some(CharmRule {
            step: Step(step),
            ending: Amount(ending),
        })
    }

    /// The smallest charm price not below `price`; `price` itself when it is one. `None` when the
    /// result does not fit a decimal.
    pub fn raise(&self, price: Decimal) -> Option<Decimal> {
        let (Step(step), Amount(ending)) = (self.step, self.ending);
        let above = price.checked_sub(ending)?;
        if above <= Decimal::ZERO {
            return Some(ending);
        }
        // Exact, unlike a division: how far the price is past the charm price below it.
        let past = above.checked_rem(step)?;
        if past.is_zero() {
            return Some(price);
        }
        price.checked_sub(past)?.checked_add(step)
    }
}

impl Settings {
    /// Parses and checks settings from their JSON form. Errors name the setting's path under
    /// `pricing.`.
    pub fn from_json(json: &str) -> Result<Settings, PricingError> {
        let settings: Settings = policy::from_json(json)?;
        settings.check()?;
        Ok(settings)
    }

    fn check(&self) -> Result<(), PricingError> {
        for (code, rule) in &self.currency {
            check_code(code, || format!("pricing.currency.{code}"))?;
            if rule.ending.0 >= rule.step.0 {
                return Err(invalid(
                    format!("pricing.currency.{code}.ending"),
                    rule.ending.0.to_string(),
                    format!(
                        "the ending must be below the step ({}): every charm price is a multiple \
                         of the step plus the ending",
                        rule.step.0
                    ),
                ));
            }
        }
        for (intname, by_currency) in &self.prices {
            for code in by_currency.keys() {
                check_code(code, || format!("pricing.prices.{intname}.{code}"))?;
            }
        }
        Ok(())
    }

    /// The charm rule of `currency`: configured, else the default, else a bad setting.
    fn rule(&self, currency: &str) -> Result<CharmRule, PricingError> {
        self.currency
            .get(currency)
            .copied()
            .or_else(|| CharmRule::default_for(currency))
            .ok_or_else(|| {
                invalid(
                    format!("pricing.currency.{currency}"),
                    String::new(),
                    format!(
                        "the catalogue has costs in {currency}, which has no default charm \
                         prices: set its `step` and `ending`"
                    ),
                )
            })
    }

    /// The partner's price of `offer` for a period of `months`, or `None` when upstream does not
    /// sell that period.
    pub fn price(&self, offer: &Offer, months: u16) -> Result<Option<Money>, PricingError> {
        let Some(upstream) = offer.upstream_costs.iter().find(|c| c.months == months) else {
            return Ok(None);
        };
        let currency = &upstream.cost.currency;
        let fixed = self
            .prices
            .get(&offer.intname)
            .and_then(|by_currency| by_currency.get(currency))
            .and_then(|f| match months {
                1 => Some(f.month),
                12 => f.year,
                _ => None,
            });
        let price = match fixed {
            Some(Amount(price)) => price,
            None => {
                let rule = self.rule(currency)?;
                let raw = self
                    .markup_percent
                    .apply(upstream.cost.units, &offer.intname)?;
                rule.raise(raw)
                    .ok_or_else(|| policy::overflow(&offer.intname, raw))?
            }
        };
        policy::money(price, currency, &offer.intname).map(Some)
    }
}

/// Refuses a currency code that could never match a cost: costs carry upper-case ISO codes.
fn check_code(code: &str, field: impl FnOnce() -> String) -> Result<(), PricingError> {
    if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) {
        return Ok(());
    }
    Err(invalid(
        field(),
        code.to_owned(),
        "a currency is an upper-case ISO 4217 code, e.g. `EUR`".to_owned(),
    ))
}

fn invalid(field: String, value: String, message: String) -> PricingError {
    PricingError::InvalidSettings(FieldError {
        field,
        value,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reseller_plugin::model::{Document, Format, Query};
    use reseller_plugin::policy::Markup;

    /// `units` are ten-thousandths: 36_000 is 3.60.
    fn offer(intname: &str, costs: &[(u16, i64, &str)]) -> Offer {
        Offer::with_costs(1, intname, costs)
    }

    fn settings(json: &str) -> Settings {
        Settings::from_json(json).expect("settings")
    }

    /// The monthly price in `currency` of a module costing `units` upstream.
    fn monthly(s: &Settings, units: i64, currency: &str) -> i64 {
        let price = s
            .price(&offer("a", &[(1, units, currency)]), 1)
            .expect("price")
            .expect("priced");
        assert_eq!(price.currency, currency);
        price.units
    }

    #[test]
    fn eur_and_usd_end_in_99() {
        let s = Settings::default();
        for currency in ["EUR", "USD"] {
            assert_eq!(monthly(&s, 36_000, currency), 39_900, "3.60 -> 3.99");
            assert_eq!(monthly(&s, 40_000, currency), 49_900, "4.00 -> 4.99");
            assert_eq!(monthly(&s, 39_900, currency), 39_900, "3.99 stays");
            assert_eq!(monthly(&s, 39_901, currency), 49_900, "3.9901 -> 4.99");
            assert_eq!(monthly(&s, 36_015, currency), 39_900, "3.6015 -> 3.99");
            assert_eq!(monthly(&s, 5_000, currency), 9_900, "0.50 -> 0.99");
            assert_eq!(monthly(&s, 0, currency), 9_900, "free -> the lowest");
        }
    }

    #[test]
    fn rub_ends_in_90_per_hundred() {
        let s = Settings::default();
        assert_eq!(
            monthly(&s, 11_424_100, "RUB"),
            11_900_000,
            "1142.41 -> 1190"
        );
        assert_eq!(monthly(&s, 11_900_000, "RUB"), 11_900_000, "1190 stays");
        assert_eq!(
            monthly(&s, 11_900_100, "RUB"),
            12_900_000,
            "1190.01 -> 1290"
        );
        assert_eq!(monthly(&s, 500_000, "RUB"), 900_000, "50 -> 90");
        assert_eq!(monthly(&s, 1_000_000, "RUB"), 1_900_000, "100 -> 190");
    }

    #[test]
    fn configured_rules_add_a_currency_or_replace_a_default() {
        let s = settings(
            r#"{"currency": {"KZT": {"step": 500, "ending": "490"},
                             "EUR": {"step": "0.10", "ending": "0.09"}}}"#,
        );
        assert_eq!(monthly(&s, 10_000_000, "KZT"), 14_900_000, "1000 -> 1490");
        assert_eq!(monthly(&s, 4_900_000, "KZT"), 4_900_000, "490 stays");
        assert_eq!(monthly(&s, 36_000, "EUR"), 36_900, "3.60 -> 3.69");
        assert_eq!(monthly(&s, 36_900, "EUR"), 36_900, "3.69 stays");
        assert_eq!(monthly(&s, 37_000, "EUR"), 37_900, "3.70 -> 3.79");
        assert_eq!(monthly(&s, 36_000, "USD"), 39_900, "USD keeps its default");
        let s = settings(r#"{"currency": {"EUR": {"step": "5", "ending": "0"}}}"#);
        assert_eq!(
            monthly(&s, 36_000, "EUR"),
            50_000,
            "a zero ending: multiples"
        );
        assert_eq!(monthly(&s, 50_000, "EUR"), 50_000);
    }

    #[test]
    fn a_currency_without_a_rule_names_its_key() {
        let err = Settings::default()
            .price(&offer("a", &[(1, 10_000, "KZT")]), 1)
            .expect_err("no rule for KZT");
        match err {
            PricingError::InvalidSettings(e) => assert_eq!(e.field, "pricing.currency.KZT"),
            other => panic!("expected invalid settings, got {other:?}"),
        }
    }

    #[test]
    fn markup_comes_before_the_charm() {
        let s = settings(r#"{"markup_percent": "15"}"#);
        assert_eq!(
            monthly(&s, 75_000, "EUR"),
            89_900,
            "7.50 +15% = 8.625 -> 8.99"
        );
        assert_eq!(
            monthly(&s, 1_000_000, "RUB"),
            1_900_000,
            "100 +15% = 115 -> 190"
        );
        let s = settings(r#"{"markup_percent": "-50"}"#);
        assert_eq!(monthly(&s, 100_000, "EUR"), 59_900, "10 -50% = 5 -> 5.99");
    }

    #[test]
    fn fixed_prices_override_as_written() {
        let s = settings(
            r#"{"markup_percent": "50",
                "prices": {"a": {"EUR": {"month": "4.49", "year": "44.90"}},
                           "b": {"EUR": {"month": "0"}}}}"#,
        );
        let a = offer("a", &[(1, 100_000, "EUR"), (12, 1_000_000, "EUR")]);
        let price = |o: &Offer, months| s.price(o, months).expect("price").map(|m| m.units);
        assert_eq!(price(&a, 1), Some(44_900), "fixed, not charmed");
        assert_eq!(price(&a, 12), Some(449_000), "fixed year");
        let b = offer("b", &[(1, 100_000, "EUR"), (12, 1_000_000, "EUR")]);
        assert_eq!(price(&b, 1), Some(0), "a fixed zero stays free");
        assert_eq!(
            price(&b, 12),
            Some(1_509_900),
            "no fixed year: 150 -> 150.99"
        );
        let other_currency = offer("a", &[(1, 100_000, "USD")]);
        assert_eq!(price(&other_currency, 1), Some(159_900));
        let other_module = offer("c", &[(1, 100_000, "EUR")]);
        assert_eq!(price(&other_module, 1), Some(159_900));
        let no_year_upstream = offer("a", &[(1, 100_000, "EUR")]);
        assert_eq!(price(&no_year_upstream, 12), None, "not sold upstream");
    }

    #[test]
    fn large_values_overflow_as_an_error_not_a_panic() {
        let overflows = |s: &Settings, units: i64| {
            matches!(
                s.price(&offer("a", &[(1, units, "EUR")]), 1),
                Err(PricingError::Overflow(_))
            )
        };
        let s = Settings::default();
        assert!(overflows(&s, i64::MAX), "raised past the largest amount");
        assert_eq!(
            monthly(&s, 9_223_372_036_854_760_000, "EUR"),
            9_223_372_036_854_769_900,
            "922337203685476.00 -> …76.99 still fits"
        );
        assert!(overflows(
            &settings(r#"{"markup_percent": "1000000"}"#),
            i64::MAX
        ));
        let huge =
            r#"{"currency": {"EUR": {"step": "79228162514264337593543950335", "ending": 0}}}"#;
        assert!(overflows(&settings(huge), 10_000), "a step past money");
        assert!(overflows(&settings(huge), i64::MAX));
        let huge = r#"{"prices": {"a": {"EUR": {"month": "79228162514264337593543950335"}}}}"#;
        assert!(
            overflows(&settings(huge), 10_000),
            "a fixed price past money"
        );
    }

    #[test]
    fn bad_settings_name_the_key() {
        let field = |json: &str| match Settings::from_json(json) {
            Err(PricingError::InvalidSettings(e)) => e.field,
            other => panic!("expected invalid settings for {json}, got {other:?}"),
        };
        assert_eq!(
            field(r#"{"markup_percent": "-100"}"#),
            "pricing.markup_percent"
        );
        assert_eq!(
            field(r#"{"markup_percent": 1.5}"#),
            "pricing.markup_percent"
        );
        assert_eq!(
            field(r#"{"markup_percent": "lots"}"#),
            "pricing.markup_percent"
        );
        let rule = |rule: &str| field(&format!(r#"{{"currency": {{"EUR": {rule}}}}}"#));
        assert_eq!(
            rule(r#"{"step": "0", "ending": "0"}"#),
            "pricing.currency.EUR.step"
        );
        assert_eq!(
            rule(r#"{"step": 0.5, "ending": "0"}"#),
            "pricing.currency.EUR.step"
        );
        assert_eq!(
            rule(r#"{"step": "1", "ending": "1"}"#),
            "pricing.currency.EUR.ending"
        );
        assert_eq!(
            rule(r#"{"step": "1", "ending": "-0.01"}"#),
            "pricing.currency.EUR.ending"
        );
        assert_eq!(
            rule(r#"{"step": "1", "ending": "0.99999"}"#),
            "pricing.currency.EUR.ending"
        );
        assert_eq!(rule(r#"{"step": "1"}"#), "pricing.currency.EUR");
        assert_eq!(
            rule(r#"{"step": "1", "ending": "0.99", "colour": 1}"#),
            "pricing.currency.EUR.colour"
        );
        assert_eq!(
            field(r#"{"currency": {"eur": {"step": "1", "ending": "0"}}}"#),
            "pricing.currency.eur"
        );
        assert_eq!(
            field(r#"{"prices": {"a": {"EUR": {"month": "-1"}}}}"#),
            "pricing.prices.a.EUR.month"
        );
        assert_eq!(
            field(r#"{"prices": {"a": {"EUR": {"year": "1"}}}}"#),
            "pricing.prices.a.EUR"
        );
        assert_eq!(
            field(r#"{"prices": {"a": {"Euro": {"month": "1"}}}}"#),
            "pricing.prices.a.Euro"
        );
        assert_eq!(field(r#"{"rounding_step": "1"}"#), "pricing.rounding_step");
        assert_eq!(field("[]"), "pricing");
        let err = export::<Charm>(&[], r#"{"surprise": 1}"#, &query(Format::Xml));
        assert!(
            matches!(err, Err(PricingError::InvalidSettings(e)) if e.field == "pricing.surprise")
        );
    }

    /// A policy's prices, rendered as the built-in protocol renders them.
    fn export<P: PricingPolicy>(
        offers: &[Offer],
        settings: &str,
        query: &Query,
    ) -> Result<Document, PricingError> {
        let today = Date {
            year: 2027,
            month: 1,
            day: 1,
        };
        let prices = P::prices(offers, settings, today)?;
        reseller_plugin::price_list(offers, &prices, query)
    }

    fn query(format: Format) -> Query {
        Query {
            itemtype: "addition".to_owned(),
            only_available: false,
            pricelist: None,
            format,
        }
    }

    fn catalogue() -> Vec<Offer> {
        let mut drweb = offer("drweb", &[(1, 75_000, "EUR"), (12, 750_000, "EUR")]);
        drweb.tariff_id = 277;
        drweb.name = "Dr.Web <Antivirus> & \"more\"".to_owned();
        let mut ddos = offer("ddos", &[(1, 11_424_100, "RUB")]);
        ddos.tariff_id = 9014;
        ddos.orderable = false;
        let mut yearly_only = offer("yearly", &[(12, 100_000, "EUR")]);
        yearly_only.tariff_id = 5;
        vec![drweb, ddos, yearly_only]
    }

    fn xml(doc: &Document) -> String {
        String::from_utf8(doc.body.clone()).expect("utf-8")
    }

    #[test]
    fn query_rules_are_the_built_in_ones() {
        let offers = catalogue();
        let export = |q: &Query| export::<Charm>(&offers, "{}", q);
        let mut q = query(Format::Xml);
        let text = xml(&export(&q).expect("export"));
        assert!(text.contains("<id>277</id>") && text.contains("<id>9014</id>"));
        assert!(!text.contains("<id>5</id>"), "no 1-month cost: no line");
        assert!(
            text.contains(r#"<period cost="75.9900" type="month" length="12">annually</period>"#),
            "a yearly cost lists the year, no setting needed: {text}"
        );
        q.only_available = true;
        assert!(!xml(&export(&q).expect("export")).contains("<id>9014</id>"));
        q.only_available = false;
        q.pricelist = Some(9014);
        let text = xml(&export(&q).expect("export"));
        assert!(!text.contains("<id>277</id>") && text.contains("<id>9014</id>"));
        q.pricelist = Some(1);
        assert!(xml(&export(&q).expect("export")).ends_with("<doc></doc>"));
        q.itemtype = "domain".to_owned();
        match export(&q) {
            Err(PricingError::InvalidValue(e)) => {
                assert_eq!((e.field.as_str(), e.value.as_str()), ("itemtype", "domain"))
            }
            other => panic!("expected an invalid itemtype, got {other:?}"),
        }
    }

    /// Replaces every `cost="…"` attribute's value with `*`.
    fn without_costs(text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(at) = rest.find("cost=\"") {
            let (head, tail) = rest.split_at(at + "cost=\"".len());
            out.push_str(head);
            out.push('*');
            rest = &tail[tail.find('"').expect("closing quote")..];
        }
        out.push_str(rest);
        out
    }

    #[test]
    fn swapping_the_policy_changes_prices_and_nothing_else() {
        let offers = catalogue();
        let markup = r#"{"markup_percent": "20", "periods": [1, 12]}"#;
        let charm = r#"{"markup_percent": "20"}"#;

        let m = export::<Markup>(&offers, markup, &query(Format::Xml)).expect("markup");
        let c = export::<Charm>(&offers, charm, &query(Format::Xml)).expect("charm");
        assert_eq!(m.content_type, c.content_type);
        let (m, c) = (xml(&m), xml(&c));
        assert_ne!(m, c);
        assert_eq!(without_costs(&m), without_costs(&c));
        assert!(
            m.contains(r#"cost="9.0000""#) && c.contains(r#"cost="9.9900""#),
            "7.50 +20%"
        );
        assert!(m.contains(r#"cost="1370.8920""#) && c.contains(r#"cost="1390.0000""#));

        let m = export::<Markup>(&offers, markup, &query(Format::Json)).expect("markup");
        let c = export::<Charm>(&offers, charm, &query(Format::Json)).expect("charm");
        assert_eq!(m.content_type, c.content_type);
        let mut m: serde_json::Value = serde_json::from_slice(&m.body).expect("json");
        let mut c: serde_json::Value = serde_json::from_slice(&c.body).expect("json");
        assert_eq!(
            c["doc"]["pricelist"][0]["price"]["period"][1]["$cost"],
            "90.9900"
        );
        assert_ne!(m, c);
        for v in [&mut m, &mut c] {
            for line in v["doc"]["pricelist"].as_array_mut().expect("two lines") {
                match &mut line["price"]["period"] {
                    serde_json::Value::Array(periods) => {
                        periods.iter_mut().for_each(|p| p["$cost"] = "*".into())
                    }
                    period => period["$cost"] = "*".into(),
                }
            }
        }
        assert_eq!(m, c);
    }

    #[test]
    fn the_documented_example() {
        let toml = r#"
            [pricing]
            markup_percent = "15"

            [pricing.currency.KZT]
            step = "500"
            ending = "490"

            [pricing.prices.drweb-lite.EUR]
            month = "4.49"
            year = "44.90"
        "#;
        let table: toml::Table = toml.parse().expect("toml");
        let json = serde_json::to_string(&table["pricing"]).expect("json");
        let s = settings(&json);
        assert_eq!(
            monthly(&s, 1_000_000, "RUB"),
            1_900_000,
            "100.00 RUB -> 190.00"
        );
        assert_eq!(monthly(&s, 75_000, "EUR"), 89_900, "7.50 EUR -> 8.99");
        assert_eq!(
            monthly(&s, 10_000_000, "KZT"),
            14_900_000,
            "1000 +15% -> 1490"
        );
        let lite = offer("drweb-lite", &[(1, 75_000, "EUR"), (12, 750_000, "EUR")]);
        let price = |months| s.price(&lite, months).expect("price").map(|m| m.units);
        assert_eq!((price(1), price(12)), (Some(44_900), Some(449_000)));
    }
}
