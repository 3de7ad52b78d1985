//! Shadow runs: a candidate pricing policy (`[plugin.candidate]`) prices what the live policy
//! prices, off the serving path, and the host keeps a report of where the two differ, before an
//! operator promotes the candidate.
//!
//! The live policy's answers reach the shadow where the protocol gets them, in
//! [`PolicyLink::price`](crate::capabilities::policy::PolicyLink::price): each one, kept or
//! fresh, is offered. A share of them (`sample_percent`, spread evenly, the first always) is
//! queued for the candidate with the input it answered; the queue is bounded and a sample that
//! finds it full is dropped and counted, never waited for. One worker thread runs the candidate
//! in its own sandbox (its own engine, limits and call slot) and compares its prices with the
//! live ones, module by module and period by period. Nothing flows back: the live answer was
//! given before the candidate ran, and a candidate that traps, loops or exhausts its memory only
//! adds to its faults in the report.
//!
//! Promotion ([`promote`]) makes the candidate the live policy through the host's ordinary swap:
//! the new configuration is loaded and checked beside the old one and swapped in atomically, or
//! refused with the old one still serving. It does not edit the configuration file.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::bindings::policy::OfferPrices;
use crate::bindings::types::{Date, Money, Offer, PricingError};
use crate::capabilities::Role;
use crate::config::{Config, ConfigError};
use crate::convert::pricing_message;
use crate::limits::{Limit, Limits};
use crate::runtime::{Called, LoadedPlugin, LoadedPolicy, Runtime, Usage};

/// Samples waiting for the candidate at most; more are dropped.
pub const QUEUE: usize = 16;
/// Differences listed in a report at most (the count says how many there were).
pub const MAX_DIFFERENCES: usize = 1_000;
/// The longest fault or refusal message kept, in bytes.
const MAX_MESSAGE_BYTES: usize = 2_048;

/// A candidate policy beside the live one, and what it found so far.
pub struct Shadow {
    candidate: Arc<LoadedPolicy>,
    sample_percent: u8,
    offered: AtomicU64,
    queue: SyncSender<Sample>,
    report: Arc<Mutex<Findings>>,
}

/// One live answer and the input it answered, for the candidate to price.
struct Sample {
    offers: Vec<Offer>,
    settings: String,
    today: Date,
    live: Vec<OfferPrices>,
}

/// What the worker found, counted since the configuration loaded.
#[derive(Default)]
struct Findings {
    sampled: u64,
    dropped: u64,
    compared: u64,
    agreed: u64,
    differed: u64,
    refused: u64,
    faults: u64,
    limit_hits: HashMap<Limit, u64>,
    last_fault: Option<String>,
    last_refusal: Option<String>,
    last_usage: Option<Usage>,
    /// The differences of the last comparison that priced.
    last: Option<Comparison>,
}

/// Where the candidate's prices of one input differ from the live ones.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// The day priced.
    pub today: Date,
    /// Modules in the input.
    pub modules: usize,
    /// Prices compared (periods of modules, either side's).
    pub prices: usize,
    /// Every price that differs, in the live answer's order, then the candidate's extras.
    pub differences: Vec<Difference>,
}

/// A module's price for a period that the two policies do not agree on.
#[derive(Clone, Debug, PartialEq)]
pub struct Difference {
    /// The module's tariff ID.
    pub tariff_id: u64,
    /// The module's service name, when the input has the module.
    pub intname: String,
    /// The period.
    pub months: u16,
    /// The live policy's price; `None` when it gives none for this period.
    pub live: Option<Money>,
    /// The candidate's price; `None` when it gives none.
    pub candidate: Option<Money>,
}

impl Shadow {
    /// Starts shadow runs of `candidate`, which prices with `settings` (the live policy's when
    /// `None`), on `sample_percent` of the live answers.
    pub fn start(
        candidate: LoadedPolicy,
        settings: Option<String>,
        sample_percent: u8,
    ) -> std::io::Result<Shadow> {
        let candidate = Arc::new(candidate);
        let (queue, samples) = sync_channel(QUEUE);
        let report = Arc::new(Mutex::new(Findings::default()));
        let worker = Worker {
            candidate: candidate.clone(),
            settings,
            report: report.clone(),
        };
        std::thread::Builder::new()
            .name("shadow".to_owned())
            .spawn(move || worker.run(samples))?;
        Ok(Shadow {
            candidate,
            sample_percent,
            offered: AtomicU64::new(0),
            queue,
            report,
        })
    }

    /// The candidate.
    pub fn candidate(&self) -> &Arc<LoadedPolicy> {
        &self.candidate
    }

    /// Offers the live policy's answer `live` to `offers` with `settings` on `today`: queued
    /// for the candidate when sampled and the queue has room. Never blocks.
    pub fn offer(&self, offers: &[Offer], settings: &str, today: Date, live: &[OfferPrices]) {
        let n = self.offered.fetch_add(1, Ordering::Relaxed);
        if !sampled(n, self.sample_percent) {
            return;
        }
        let sample = Sample {
            offers: offers.to_vec(),
            settings: settings.to_owned(),
            today,
            live: live.to_vec(),
        };
        let queued = self.queue.try_send(sample);
        let mut report = lock(&self.report);
        report.sampled += 1;
        if matches!(queued, Err(TrySendError::Full(_))) {
            report.dropped += 1;
        }
    }

    /// The report: the candidate, what was sampled and compared, its faults and limit hits,
    /// and the differences of the last comparison, as the API answers it.
    pub fn report(&self) -> Value {
        let findings = lock(&self.report);
        let candidate = &self.candidate;
        let stats = candidate.stats();
        let limit_hits: serde_json::Map<String, Value> = Limit::ALL
            .iter()
            .map(|l| {
                let hits = findings.limit_hits.get(l).copied().unwrap_or(0);
                (l.key().to_owned(), json!(hits))
            })
            .collect();
        let last = findings.last.as_ref().map(|c| {
            let shown: Vec<Value> = c
                .differences
                .iter()
                .take(MAX_DIFFERENCES)
                .map(Difference::to_json)
                .collect();
            json!({
                "today": format!("{:04}-{:02}-{:02}", c.today.year, c.today.month, c.today.day),
                "modules": c.modules,
                "prices": c.prices,
                "differing": c.differences.len(),
                "differences": shown,
            })
        });
        let usage = findings.last_usage.map(|u| {
            json!({
                "instructions": u.fuel,
                "peak_memory_bytes": u.peak_memory,
                "elapsed_us": u64::try_from(u.elapsed.as_micros()).unwrap_or(u64::MAX),
            })
        });
        json!({
            "candidate": {
                "name": &**candidate.name(),
                "sha256": candidate.sha256(),
                "contract": candidate.contract_version(),
                "calls": stats.calls(),
            },
            "sample_percent": self.sample_percent,
            "offered": self.offered.load(Ordering::Relaxed),
            "sampled": findings.sampled,
            "dropped": findings.dropped,
            "compared": findings.compared,
            "agreed": findings.agreed,
            "differed": findings.differed,
            "refused": findings.refused,
            "faults": findings.faults,
            "limit_hits": limit_hits,
            "last_fault": findings.last_fault,
            "last_refusal": findings.last_refusal,
            "last_usage": usage,
            "last_comparison": last,
        })
    }

    /// The last comparison of the candidate's prices with the live ones, if any.
    pub fn last_comparison(&self) -> Option<Comparison> {
        lock(&self.report).last.clone()
    }

    /// Whether promoting the candidate is safe by what it showed: it was compared at least
    /// once and never faulted nor refused. `Err` says why not.
    pub fn fit_for_promotion(&self) -> Result<(), Unfit> {
        let findings = lock(&self.report);
        if findings.compared == 0 {
            return Err(Unfit::NotPriced);
        }
        if findings.faults > 0 {
            return Err(Unfit::Faulted {
                times: findings.faults,
                last: findings.last_fault.clone().unwrap_or_default(),
            });
        }
        if findings.refused > 0 {
            return Err(Unfit::Refused {
                times: findings.refused,
                last: findings.last_refusal.clone().unwrap_or_default(),
            });
        }
        Ok(())
    }
}

/// Whether the `n`th offer (from 0) is sampled at `percent`: spread evenly, the first always
/// (unless the percentage is 0).
pub fn sampled(n: u64, percent: u8) -> bool {
    let p = u128::from(percent.min(100));
    let n = u128::from(n);
    ((n + 1) * p).div_ceil(100) > (n * p).div_ceil(100)
}

/// The candidate's side: one thread, one call at a time.
struct Worker {
    candidate: Arc<LoadedPolicy>,
    settings: Option<String>,
    report: Arc<Mutex<Findings>>,
}

impl Worker {
    /// Prices each sample until the shadow is dropped.
    fn run(self, samples: Receiver<Sample>) {
        for sample in samples {
            let settings = self.settings.as_deref().unwrap_or(&sample.settings);
            let called = self.candidate.price(&sample.offers, settings, sample.today);
            lock(&self.report).record(&sample, called);
        }
    }
}

impl Findings {
    fn record(
        &mut self,
        sample: &Sample,
        (result, usage): Called<Result<Vec<OfferPrices>, PricingError>>,
    ) {
        self.compared += 1;
        self.last_usage = Some(usage);
        match result {
            Err(fault) => {
                self.faults += 1;
                if let Some(hit) = fault.limit_hit() {
                    *self.limit_hits.entry(hit.limit).or_default() += 1;
                }
                self.last_fault = Some(bounded(fault.to_string()));
            }
            Ok(Err(refusal)) => {
                self.refused += 1;
                self.last_refusal = Some(bounded(pricing_message(&refusal)));
            }
            Ok(Ok(prices)) => {
                let comparison = compare(&sample.offers, sample.today, &sample.live, &prices);
                if comparison.differences.is_empty() {
                    self.agreed += 1;
                } else {
                    self.differed += 1;
                }
                self.last = Some(comparison);
            }
        }
    }
}

fn bounded(mut message: String) -> String {
    if message.len() > MAX_MESSAGE_BYTES {
        message.truncate(message.floor_char_boundary(MAX_MESSAGE_BYTES));
        message.push('…');
    }
    message
}

/// Where `candidate` differs from `live` for `offers`: every live price the candidate gives
/// otherwise or not at all, then every price only the candidate gives.
pub fn compare(
    offers: &[Offer],
    today: Date,
    live: &[OfferPrices],
    candidate: &[OfferPrices],
) -> Comparison {
    let intname = |tariff_id: u64| {
        offers
            .iter()
            .find(|o| o.tariff_id == tariff_id)
            .map(|o| o.intname.clone())
            .unwrap_or_default()
    };
    let price = |list: &[OfferPrices], tariff_id: u64, months: u16| {
        list.iter()
            .filter(|o| o.tariff_id == tariff_id)
            .flat_map(|o| &o.prices)
            .find(|p| p.months == months)
            .map(|p| p.price.clone())
    };
    let mut prices = 0;
    let mut differences = Vec::new();
    for (side, other, live_side) in [(live, candidate, true), (candidate, live, false)] {
        for offer in side {
            for period in &offer.prices {
                let theirs = price(other, offer.tariff_id, period.months);
                if !live_side && theirs.is_some() {
                    continue; // compared from the live side
                }
                prices += 1;
                if theirs.as_ref() == Some(&period.price) {
                    continue;
                }
                let (live, candidate) = if live_side {
                    (Some(period.price.clone()), theirs)
                } else {
                    (None, Some(period.price.clone()))
                };
                differences.push(Difference {
                    tariff_id: offer.tariff_id,
                    intname: intname(offer.tariff_id),
                    months: period.months,
                    live,
                    candidate,
                });
            }
        }
    }
    Comparison {
        today,
        modules: offers.len(),
        prices,
        differences,
    }
}

impl Difference {
    /// By how much the candidate's price differs, when both are in the same currency:
    /// `(candidate − live, percent of live)`, the percentage to two decimals (none when the live
    /// price is zero).
    pub fn by_how_much(&self) -> Option<(Decimal, Option<Decimal>)> {
        let (Some(live), Some(candidate)) = (&self.live, &self.candidate) else {
            return None;
        };
        if live.currency != candidate.currency {
            return None;
        }
        let delta = i128::from(candidate.units) - i128::from(live.units);
        let amount = Decimal::try_from_i128_with_scale(delta, 4).ok()?;
        let percent = (live.units != 0)
            .then(|| {
                let live = Decimal::new(live.units, 4);
                amount
                    .checked_mul(Decimal::ONE_HUNDRED)?
                    .checked_div(live)
                    .map(|p| p.round_dp(2))
            })
            .flatten();
        Some((amount, percent))
    }

    fn to_json(&self) -> Value {
        let money = |m: &Option<Money>| {
            m.as_ref().map(|m| {
                json!({"amount": format!("{:.4}", Decimal::new(m.units, 4)), "currency": m.currency})
            })
        };
        let by = self.by_how_much();
        json!({
            "tariff_id": self.tariff_id,
            "intname": self.intname,
            "months": self.months,
            "live": money(&self.live),
            "candidate": money(&self.candidate),
            "difference": by.map(|(d, _)| format!("{d:.4}")),
            "difference_percent": by.and_then(|(_, p)| p).map(|p| format!("{p:.2}")),
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl crate::capabilities::policy::Observer for Shadow {
    fn offer(&self, offers: &[Offer], settings: &str, today: Date, live: &[OfferPrices]) {
        Shadow::offer(self, offers, settings, today, live);
    }
}

/// Why what a candidate showed makes promoting it unsafe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unfit {
    /// It has not been compared yet.
    #[error("the candidate has not priced anything yet")]
    NotPriced,
    /// It faulted.
    #[error("the candidate faulted {times} times (last: {last})")]
    Faulted {
        /// How many times.
        times: u64,
        /// The last fault.
        last: String,
    },
    /// It refused to price.
    #[error("the candidate refused to price {times} times (last: {last})")]
    Refused {
        /// How many times.
        times: u64,
        /// The last refusal.
        last: String,
    },
}

/// Starts the shadow runs `config` asks for beside `plugin`, if any: the candidate is loaded
/// (a configuration error if it does not load, or if `plugin` is a whole plugin, which has no
/// policy to be compared with).
pub fn start(
    runtime: &Runtime,
    config: &Config,
    plugin: &LoadedPlugin,
) -> Result<Option<Arc<Shadow>>, ConfigError> {
    if config.plugin.candidate.is_some() && plugin.role() != Role::Protocol {
        return Err(ConfigError::new(
            &config.source,
            "plugin.candidate",
            format!(
                "{} is a whole plugin: it prices by itself, with no policy for a candidate to be \
                 compared with",
                plugin.name()
            ),
        ));
    }
    let Some((candidate, settings)) = load_candidate(runtime, config)? else {
        return Ok(None);
    };
    let percent = config
        .plugin
        .candidate
        .as_ref()
        .map_or(100, |c| c.sample_percent);
    let shadow = Shadow::start(candidate, settings, percent).map_err(|e| {
        ConfigError::new(
            &config.source,
            "plugin.candidate",
            format!("cannot start the shadow runs: {e}"),
        )
    })?;
    Ok(Some(Arc::new(shadow)))
}

/// Loads the candidate `config` names under `[plugin.candidate]`, and its settings as JSON
/// (`None`: the live policy's).
pub fn load_candidate(
    runtime: &Runtime,
    config: &Config,
) -> Result<Option<(LoadedPolicy, Option<String>)>, ConfigError> {
    let Some(candidate) = &config.plugin.candidate else {
        return Ok(None);
    };
    let (name, bytes) = crate::runtime::read_component(
        config,
        "plugin.candidate",
        Some(&candidate.path),
        candidate.sha256.as_deref(),
        ("", &[]),
    )?;
    // One worker calls it: one call slot is all it needs.
    let limits = Limits {
        concurrent_calls: 1,
        ..candidate.limits.clone()
    };
    let policy = LoadedPolicy::load(runtime, &name, &bytes, limits).map_err(|e| {
        ConfigError::new(
            &config.source,
            "plugin.candidate.path",
            format!("{name}: {e}"),
        )
    })?;
    let settings = candidate
        .pricing
        .as_ref()
        .map(|t| serde_json::to_string(t).unwrap_or_else(|_| "{}".to_owned()));
    Ok(Some((policy, settings)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::policy::PeriodPrice;

    fn money(units: i64, currency: &str) -> Money {
        Money {
            units,
            currency: currency.to_owned(),
        }
    }

    fn offer_prices(tariff_id: u64, prices: &[(u16, i64, &str)]) -> OfferPrices {
        OfferPrices {
            tariff_id,
            prices: prices
                .iter()
                .map(|&(months, units, currency)| PeriodPrice {
                    months,
                    price: money(units, currency),
                })
                .collect(),
        }
    }

    const TODAY: Date = Date {
        year: 2027,
        month: 1,
        day: 31,
    };

    #[test]
    fn samples_are_spread_evenly_and_the_first_is_always_taken() {
        let taken = |percent| (0..100).filter(|n| sampled(*n, percent)).count();
        assert_eq!(taken(100), 100);
        assert_eq!(taken(0), 0);
        assert_eq!(taken(10), 10);
        assert_eq!(taken(33), 33);
        assert!(sampled(0, 1), "the first, even at 1 %");
        let tens: Vec<u64> = (0..30).filter(|n| sampled(*n, 10)).collect();
        assert_eq!(tens, [0, 10, 20]);
        let halves: Vec<u64> = (0..6).filter(|n| sampled(*n, 50)).collect();
        assert_eq!(halves, [0, 2, 4]);
        assert!(sampled(u64::MAX, 100), "no overflow");
    }

    #[test]
    fn a_comparison_names_every_price_that_differs_and_by_how_much() {
        let offers = [
            Offer {
                tariff_id: 1,
                intname: "a".to_owned(),
                additionintname: String::new(),
                name: String::new(),
                upstream_costs: Vec::new(),
                orderable: true,
            },
            Offer {
                tariff_id: 2,
                intname: "b".to_owned(),
                additionintname: String::new(),
                name: String::new(),
                upstream_costs: Vec::new(),
                orderable: true,
            },
        ];
        let live = [
            offer_prices(1, &[(1, 120_000, "EUR"), (12, 1_200_000, "EUR")]),
            offer_prices(2, &[(1, 50_000, "RUB")]),
        ];
        let same = compare(&offers, TODAY, &live, &live);
        assert_eq!((same.prices, same.differences.len()), (3, 0));

        let candidate = [
            offer_prices(1, &[(1, 130_000, "EUR"), (12, 1_200_000, "EUR")]),
            offer_prices(2, &[(1, 50_000, "EUR"), (6, 1, "RUB")]),
            offer_prices(9, &[(1, 0, "EUR")]),
        ];
        let c = compare(&offers, TODAY, &live, &candidate);
        assert_eq!(c.prices, 5);
        type Found<'a> = (u64, &'a str, u16, Option<i64>, Option<i64>);
        let found: Vec<Found<'_>> = c
            .differences
            .iter()
            .map(|d| {
                (
                    d.tariff_id,
                    d.intname.as_str(),
                    d.months,
                    d.live.as_ref().map(|m| m.units),
                    d.candidate.as_ref().map(|m| m.units),
                )
            })
            .collect();
        assert_eq!(
            found,
            [
                (1, "a", 1, Some(120_000), Some(130_000)),
                (2, "b", 1, Some(50_000), Some(50_000)),
                (2, "b", 6, None, Some(1)),
                (9, "", 1, None, Some(0)),
            ]
        );
        let by = |i: usize| {
            c.differences[i]
                .by_how_much()
                .map(|(d, p)| (d.to_string(), p.map(|p| p.to_string())))
        };
        assert_eq!(by(0), Some(("1.0000".to_owned(), Some("8.33".to_owned()))));
        assert_eq!(by(1), None, "another currency: not comparable");
        assert_eq!(by(2), None);
        let json = c.differences[0].to_json();
        assert_eq!(json["live"]["amount"], "12.0000");
        assert_eq!(json["difference"], "1.0000");
        assert_eq!(json["difference_percent"], "8.33");

        let gone = compare(&offers, TODAY, &live, &[]);
        assert_eq!(gone.differences.len(), 3);
        assert!(gone.differences.iter().all(|d| d.candidate.is_none()));
    }

    #[test]
    fn a_difference_from_zero_has_no_percentage_and_large_ones_do_not_overflow() {
        let d = Difference {
            tariff_id: 1,
            intname: "a".to_owned(),
            months: 1,
            live: Some(money(0, "EUR")),
            candidate: Some(money(i64::MAX, "EUR")),
        };
        let (amount, percent) = d.by_how_much().expect("same currency");
        assert_eq!(amount.to_string(), "922337203685477.5807");
        assert_eq!(percent, None);
        let d = Difference {
            live: Some(money(i64::MIN, "EUR")),
            ..d
        };
        assert!(d.by_how_much().is_some_and(|(_, p)| p.is_some()));
    }
}
