//! The partner's catalogue with upstream's prices applied.
//!
//! Upstream's price export lists, per tariff, its costs per period in one currency or more,
//! maybe a trial, and upstream's own names. A module of the catalogue takes the costs in its
//! own currency (the catalogue's, or the module's); when upstream prices the tariff only in
//! another currency, the costs are converted with the configured rate (`catalogue.rates`), and
//! without a rate the module keeps its configured costs and the report says so: the partner's
//! currency is never switched behind its back. A trial is recorded, never priced. Upstream's
//! names are kept and compared with the catalogue's, not put in their place: fixed prices and
//! orders refer to the catalogue's own `intname`.

use std::collections::BTreeMap;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;

use crate::config::{Config, Costs};
use crate::money::{Amount, Currency, Months, UpstreamCost};

/// What upstream says of one tariff besides its costs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UpstreamTariff {
    /// The tariff ID.
    pub tariff_id: u64,
    /// Upstream's `intname` (empty when it gives none).
    pub intname: String,
    /// Upstream's `additionintname`.
    pub additionintname: String,
    /// Upstream's display name.
    pub name: String,
    /// Whether upstream offers a trial of it.
    pub trial: bool,
}

/// Upstream's price export, as last fetched.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UpstreamPrices {
    /// Every tariff listed, in upstream's order.
    pub tariffs: Vec<UpstreamTariff>,
    /// Every cost, in every currency listed.
    pub costs: Vec<UpstreamCost>,
}

/// What became of one tariff.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TariffReport {
    /// The tariff ID.
    pub tariff_id: u64,
    /// The catalogue module it prices (`intname`), when there is one.
    pub module: Option<String>,
    /// What happened.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Upstream offers a trial: recorded, not sold.
    pub trial: bool,
    /// Upstream's names, when they differ from the catalogue's (`intname`, `additionintname`,
    /// `name`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_names: Option<[String; 3]>,
}

/// What became of one tariff's costs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The module's costs are upstream's now.
    Priced {
        /// In this currency.
        currency: Currency,
        /// For these periods.
        periods: Vec<Months>,
        /// Converted from upstream's currency at this rate, when they were.
        #[serde(skip_serializing_if = "Option::is_none")]
        converted_from: Option<(Currency, Decimal)>,
    },
    /// Upstream prices it, but not in the module's currency and without a rate for any of its
    /// currencies: the module keeps its configured costs.
    NoRate {
        /// The module's currency.
        wanted: Currency,
        /// What upstream prices it in.
        upstream: Vec<Currency>,
    },
    /// Upstream gives no one-month cost the module could use: it keeps its configured costs.
    NoMonthlyCost,
    /// The catalogue sells no module of this tariff.
    NotInCatalogue,
}

/// The catalogue with upstream's prices applied, and what became of each tariff.
#[derive(Clone, Debug)]
pub struct Applied {
    /// The configuration as it serves.
    pub config: Config,
    /// How many modules' costs changed.
    pub changed: usize,
    /// One line per tariff upstream lists, in upstream's order, then catalogue modules upstream
    /// does not list are left out.
    pub report: Vec<TariffReport>,
}

impl Applied {
    /// The tariffs upstream prices only in a currency the catalogue has no rate for, as one
    /// sentence each: what a partner must fix for a refresh to be complete.
    pub fn currency_problems(&self) -> Vec<String> {
        self.report
            .iter()
            .filter_map(|r| match &r.outcome {
                Outcome::NoRate { wanted, upstream } => Some(format!(
                    "tariff {} ({}) is priced upstream in {} only, and the catalogue sells it in \
                     {wanted}: set catalogue.rates.{} (or the module's currency)",
                    r.tariff_id,
                    r.module.as_deref().unwrap_or("?"),
                    upstream
                        .iter()
                        .map(Currency::as_str)
                        .collect::<Vec<_>>()
                        .join(", "),
                    upstream.first().map_or("…", Currency::as_str),
                )),
                _ => None,
            })
            .collect()
    }
}

/// `config` with upstream's costs applied; see the [module documentation](self).
pub fn apply(config: &Config, upstream: &UpstreamPrices) -> Applied {
    let mut served = config.clone();
    let mut changed = 0;
    let mut report = Vec::new();
    let tariffs: Vec<u64> = upstream
        .tariffs
        .iter()
        .map(|t| t.tariff_id)
        .chain(upstream.costs.iter().map(|c| c.tariff_id))
        .fold(Vec::new(), |mut seen, t| {
            if !seen.contains(&t) {
                seen.push(t);
            }
            seen
        });
    for tariff in tariffs {
        let info = upstream.tariffs.iter().find(|t| t.tariff_id == tariff);
        let trial = info.is_some_and(|t| t.trial);
        let index = config
            .catalogue
            .modules
            .iter()
            .position(|m| config.tariff_id(m) == tariff);
        let Some(index) = index else {
            report.push(TariffReport {
                tariff_id: tariff,
                module: None,
                outcome: Outcome::NotInCatalogue,
                trial,
                upstream_names: None,
            });
            continue;
        };
        let module = &config.catalogue.modules[index];
        let wanted = config.currency_of(module).clone();
        let mut by_currency: BTreeMap<&Currency, Vec<(Months, Amount)>> = BTreeMap::new();
        for cost in upstream.costs.iter().filter(|c| c.tariff_id == tariff) {
            by_currency
                .entry(&cost.cost.currency)
                .or_default()
                .push((cost.period, cost.cost.amount));
        }
        let chosen = match by_currency.get(&wanted) {
            Some(costs) => Some((costs.clone(), None)),
            None => by_currency.iter().find_map(|(currency, costs)| {
                let rate = config.catalogue.rates.get(*currency)?;
                let converted: Option<Vec<(Months, Amount)>> = costs
                    .iter()
                    .map(|(months, amount)| Some((*months, convert(*amount, rate.0)?)))
                    .collect();
                Some((converted?, Some(((*currency).clone(), rate.0))))
            }),
        };
        let outcome = match chosen {
            None if by_currency.is_empty() => Outcome::NoMonthlyCost,
            None => Outcome::NoRate {
                wanted,
                upstream: by_currency.keys().map(|c| (*c).clone()).collect(),
            },
            Some((costs, converted_from)) => {
                match costs.iter().find(|(m, _)| *m == Months::MONTH) {
                    None => Outcome::NoMonthlyCost,
                    Some((_, month)) => {
                        let costs = Costs::new(*month, costs.iter().copied());
                        let target = &mut served.catalogue.modules[index];
                        if target.cost != costs {
                            changed += 1;
                            target.cost = costs.clone();
                        }
                        Outcome::Priced {
                            currency: wanted,
                            periods: costs.iter().map(|(m, _)| m).collect(),
                            converted_from,
                        }
                    }
                }
            }
        };
        let upstream_names = info
            .map(|t| [t.intname.clone(), t.additionintname.clone(), t.name.clone()])
            .filter(|[i, a, n]| {
                let differs = |ours: &str, theirs: &str| !theirs.is_empty() && ours != theirs;
                differs(&module.intname, i)
                    || differs(&module.additionintname, a)
                    || differs(&module.name, n)
            });
        report.push(TariffReport {
            tariff_id: tariff,
            module: Some(module.intname.clone()),
            outcome,
            trial,
            upstream_names,
        });
    }
    Applied {
        config: served,
        changed,
        report,
    }
}

/// One catalogue entry as `reseller prices import` writes it.
#[derive(Serialize)]
struct Entry {
    intname: String,
    additionintname: String,
    name: String,
    tariff: BTreeMap<&'static str, u64>,
    cost: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct Entries {
    catalogue: EntriesCatalogue,
}

#[derive(Serialize)]
struct EntriesCatalogue {
    modules: Vec<Entry>,
}

/// Catalogue entries (`[[catalogue.modules]]`, TOML) for the tariffs upstream lists and the
/// catalogue lacks, with upstream's names and costs (in the catalogue's currency, converted
/// with `catalogue.rates` when upstream has none in it); trials are left out. Tariffs that
/// cannot be priced are named in comments. Empty when nothing is missing.
pub fn import_entries(config: &Config, upstream: &UpstreamPrices) -> String {
    let region = match config.catalogue.region {
        crate::config::Region::Ru => "ru",
        crate::config::Region::Eu => "eu",
    };
    let wanted = &config.catalogue.currency;
    let mut modules = Vec::new();
    let mut skipped = Vec::new();
    for tariff in &upstream.tariffs {
        if config.module_in_any_region(tariff.tariff_id).is_some() {
            continue;
        }
        let costs: Vec<&UpstreamCost> = upstream
            .costs
            .iter()
            .filter(|c| c.tariff_id == tariff.tariff_id)
            .collect();
        let in_currency =
            |currency: &Currency, rate: Option<Decimal>| -> Option<Vec<(Months, Amount)>> {
                let picked: Vec<(Months, Amount)> = costs
                    .iter()
                    .filter(|c| &c.cost.currency == currency)
                    .map(|c| {
                        Some((
                            c.period,
                            match rate {
                                Some(r) => convert(c.cost.amount, r)?,
                                None => c.cost.amount,
                            },
                        ))
                    })
                    .collect::<Option<_>>()?;
                (!picked.is_empty()).then_some(picked)
            };
        let priced = in_currency(wanted, None).or_else(|| {
            config
                .catalogue
                .rates
                .iter()
                .find_map(|(currency, rate)| in_currency(currency, Some(rate.0)))
        });
        let Some(priced) = priced.filter(|p| p.iter().any(|(m, _)| *m == Months::MONTH)) else {
            skipped.push(format!(
                "# tariff {} ({}): no monthly cost in {wanted} (add a rate to catalogue.rates)",
                tariff.tariff_id,
                tariff.name.replace('\n', " ")
            ));
            continue;
        };
        let cost = priced
            .iter()
            .map(|(months, amount)| {
                let key = match months.get() {
                    1 => "month".to_owned(),
                    12 => "year".to_owned(),
                    n => n.to_string(),
                };
                (key, amount.to_string())
            })
            .collect();
        let name_or = |text: &str, fallback: String| {
            if text.trim().is_empty() {
                fallback
            } else {
                text.to_owned()
            }
        };
        modules.push(Entry {
            intname: name_or(&tariff.intname, format!("tariff-{}", tariff.tariff_id)),
            additionintname: name_or(&tariff.additionintname, "addition".to_owned()),
            name: name_or(&tariff.name, format!("Tariff {}", tariff.tariff_id)),
            tariff: BTreeMap::from([(region, tariff.tariff_id)]),
            cost,
        });
    }
    let mut out = String::new();
    if !modules.is_empty() {
        let entries = Entries {
            catalogue: EntriesCatalogue { modules },
        };
        // Plain strings and integers always serialise.
        out.push_str(&toml::to_string(&entries).unwrap_or_default());
    }
    for line in skipped {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// `amount` of another currency in the catalogue's, at `rate`, rounded to the nearest
/// ten-thousandth (halves away from zero); `None` when it does not fit.
fn convert(amount: Amount, rate: Decimal) -> Option<Amount> {
    let units = Decimal::from(amount.units())
        .checked_mul(rate)?
        .round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero);
    Amount::from_units(i64::try_from(units).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::Source;
    use crate::money::Money;

    fn config(extra: &str) -> Config {
        let text = format!(
            r#"
            [catalogue]
            region = "eu"
            currency = "EUR"
            {extra}
            [[catalogue.modules]]
            intname = "a"
            additionintname = "A"
            name = "A"
            tariff = {{ eu = 1 }}
            cost = {{ month = "10.5" }}
            [[catalogue.modules]]
            intname = "b"
            additionintname = "B"
            name = "B"
            tariff = {{ ru = 3, eu = 4 }}
            cost = {{ month = "1", year = "10" }}
            "#
        );
        Config::parse(&text, Source::File(PathBuf::from("/etc/reseller.toml"))).expect("config")
    }

    fn cost(tariff_id: u64, months: i64, units: i64, currency: &str) -> UpstreamCost {
        UpstreamCost {
            tariff_id,
            period: Months::new(months).expect("months"),
            cost: Money::from_units(units, currency).expect("money"),
        }
    }

    fn units(c: &Config, module: usize) -> Vec<(u16, i64)> {
        c.catalogue.modules[module]
            .cost
            .iter()
            .map(|(m, a)| (m.get(), a.units()))
            .collect()
    }

    #[test]
    fn costs_in_the_modules_currency_replace_the_configured_ones() {
        let c = config("");
        let same = apply(&c, &UpstreamPrices::default());
        assert_eq!((same.changed, same.report.len()), (0, 0));
        assert_eq!(units(&same.config, 0), [(1, 105_000)]);
        let upstream = UpstreamPrices {
            tariffs: vec![UpstreamTariff {
                tariff_id: 1,
                intname: "a-upstream".to_owned(),
                trial: true,
                ..UpstreamTariff::default()
            }],
            costs: vec![
                cost(1, 1, 120_000, "EUR"),
                cost(1, 6, 600_000, "EUR"),
                cost(1, 1, 9_000_000, "RUB"),
                // The other region's tariff of module b, and a tariff not sold here.
                cost(3, 1, 5, "EUR"),
                // A year without a month changes nothing.
                cost(4, 12, 7, "EUR"),
            ],
        };
        let applied = apply(&c, &upstream);
        assert_eq!(applied.changed, 1);
        assert_eq!(units(&applied.config, 0), [(1, 120_000), (6, 600_000)]);
        assert_eq!(units(&applied.config, 1), [(1, 10_000), (12, 100_000)]);
        let a = &applied.report[0];
        assert!(a.trial);
        assert_eq!(
            a.upstream_names.as_ref().map(|n| n[0].as_str()),
            Some("a-upstream")
        );
        assert!(
            matches!(&a.outcome, Outcome::Priced { converted_from: None, periods, .. } if periods.len() == 2)
        );
        assert_eq!(applied.report[1].outcome, Outcome::NotInCatalogue);
        assert_eq!(applied.report[2].outcome, Outcome::NoMonthlyCost);
        assert!(applied.currency_problems().is_empty());
    }

    #[test]
    fn another_currency_is_converted_at_its_rate_or_refused() {
        let upstream = UpstreamPrices {
            tariffs: Vec::new(),
            costs: vec![cost(1, 1, 9_000_000, "RUB"), cost(1, 12, 91_234_567, "RUB")],
        };
        let applied = apply(&config(""), &upstream);
        assert_eq!(applied.changed, 0, "the configured costs stay");
        assert_eq!(units(&applied.config, 0), [(1, 105_000)]);
        let problems = applied.currency_problems();
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].contains("RUB only") && problems[0].contains("catalogue.rates.RUB"),
            "{problems:?}"
        );

        let applied = apply(&config(r#"rates = { RUB = "0.0105" }"#), &upstream);
        assert_eq!(applied.changed, 1);
        // 900.0000 RUB × 0.0105 = 9.4500 EUR; 9123.4567 × 0.0105 = 95.79629535 → 95.7963.
        assert_eq!(units(&applied.config, 0), [(1, 94_500), (12, 957_963)]);
        assert!(matches!(
            &applied.report[0].outcome,
            Outcome::Priced { converted_from: Some((c, _)), .. } if c.as_str() == "RUB"
        ));
        assert!(applied.currency_problems().is_empty());
    }
}
