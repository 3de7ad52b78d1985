//! `reseller check`: what a partner runs before deploying a plugin or a pricing policy. Loads
//! the file as the server would, lists what it imports and exports, runs sample calls in the
//! sandbox (price exports and order hooks against a canned upstream, or a policy's prices of the
//! catalogue), and reports what each call used.

use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::time::Duration;

use quick_xml::Writer;
use quick_xml::events::BytesText;

use crate::bindings::upstream::{CallError, Response};
use crate::bindings::{orders, pricing, types};
use crate::capabilities::policy::PolicyLink;
use crate::capabilities::upstream::{UpstreamClient, UpstreamPolicy};
use crate::capabilities::{Grants, Role, calendar};
use crate::config::{Config, ConfigError, DEFAULT_FUNCTIONS};
use crate::convert::{order_error_message, pricing_message, snapshot, wit_date};
use crate::runtime::{Called, Harness, LoadError, LoadedPlugin, LoadedPolicy, Runtime, Usage};

/// Why a file could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// It does not load.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The policy to join to a protocol does not load.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// One sample call and how it went.
pub struct Sample {
    /// What was called, for a human.
    pub label: String,
    /// Its outcome, for a human.
    pub outcome: String,
    /// Whether the plugin failed (a fault, not a business error).
    pub fault: bool,
    /// What it used.
    pub usage: Usage,
}

/// Everything `check` found.
pub struct Report {
    /// The plugin's file name.
    pub name: String,
    /// Its size in bytes.
    pub size: usize,
    /// Its SHA-256.
    pub sha256: String,
    /// What it is, against which contract.
    pub world: String,
    /// What it imports.
    pub imports: Vec<String>,
    /// What it exports.
    pub exports: Vec<String>,
    /// The sample calls.
    pub samples: Vec<Sample>,
}

impl Report {
    /// Whether every sample ran without a fault.
    pub fn passed(&self) -> bool {
        self.samples.iter().all(|s| !s.fault)
    }
}

/// Answers like upstream would, without a network: what `check` runs order hooks against.
struct CannedUpstream {
    pricelist: Vec<u8>,
}

impl UpstreamClient for CannedUpstream {
    fn call(&self, func: &str, _: &[(String, String)], _: Duration) -> Result<Response, CallError> {
        let service = "<elid>1001</elid><item>100001</item><pricelist>1</pricelist>\
                       <expiredate>2027-01-01</expiredate><status>2</status>\
                       <remoteid>check-1</remoteid>";
        let body = match func {
            "addition.order.param" => b"<doc><id>1001</id></doc>".to_vec(),
            "pricelist.export" => self.pricelist.clone(),
            "service.prolong" => b"<doc><elid>1001</elid><period>1</period>\
                <expiredate>2027-01-01</expiredate><newexpiredate>2027-02-01</newexpiredate>\
                <doc><newexpiredate>2027-02-01</newexpiredate></doc></doc>"
                .to_vec(),
            "addition.edit" => format!("<doc>{service}</doc>").into_bytes(),
            "addition" => format!("<doc><elem>{service}</elem></doc>").into_bytes(),
            "dashboard.info" => b"<doc><elem><balance>100.00 EUR</balance></elem></doc>".to_vec(),
            _ => b"<doc><ok/></doc>".to_vec(),
        };
        Ok(Response {
            status: 200,
            body,
            truncated: false,
        })
    }
}

/// Upstream's price export for the catalogue, as the canned upstream answers it.
fn upstream_pricelist(config: &Config) -> Vec<u8> {
    let mut w = Writer::new(Vec::new());
    let _ = w.create_element("doc").write_inner_content(|w| {
        for module in &config.catalogue.modules {
            let currency = config.currency_of(module).as_str();
            let cost = module.cost.month().to_string();
            w.create_element("pricelist").write_inner_content(|w| {
                w.create_element("id")
                    .write_text_content(BytesText::new(&config.tariff_id(module).to_string()))?;
                w.create_element("price")
                    .with_attribute(("currency", currency))
                    .write_inner_content(|w| {
                        w.create_element("period")
                            .with_attributes([
                                ("cost", cost.as_str()),
                                ("type", "month"),
                                ("length", "1"),
                            ])
                            .write_empty()
                            .map(drop)
                    })?;
                Ok(())
            })?;
        }
        Ok(())
    });
    w.into_inner()
}

/// Loads `bytes` as the server would with `config`'s limits, and runs the samples: a plugin's
/// hooks (a protocol joined to `config`'s policy), or a policy's prices.
pub fn check(
    runtime: &Runtime,
    name: &str,
    bytes: &[u8],
    config: &Config,
) -> Result<Report, CheckError> {
    match crate::runtime::inspect(bytes, &config.plugin.limits)?.role {
        Role::Policy => {
            let policy =
                LoadedPolicy::load(runtime, name, bytes, config.plugin.policy.limits.clone())?;
            Ok(check_policy(&policy, bytes.len(), config))
        }
        Role::Plugin | Role::Protocol => check_plugin(runtime, name, bytes, config),
    }
}

/// A policy's prices of the catalogue with the settings, and with settings it must refuse.
fn check_policy(policy: &LoadedPolicy, size: usize, config: &Config) -> Report {
    let snapshot = snapshot(config, 1);
    let today = wit_date(calendar::today());
    let priced = |prices: &Vec<crate::bindings::policy::OfferPrices>| {
        let periods: usize = prices.iter().map(|p| p.prices.len()).sum();
        format!("{} modules, {periods} prices", prices.len())
    };
    let samples = vec![
        sample(
            "price: the catalogue",
            policy.price(&snapshot.offers, &snapshot.settings, today),
            priced,
            pricing_message,
        ),
        sample(
            "price: one module",
            policy.price(
                &snapshot.offers[..snapshot.offers.len().min(1)],
                &snapshot.settings,
                today,
            ),
            priced,
            pricing_message,
        ),
        sample(
            "price: settings that are not a table",
            policy.price(&snapshot.offers, "[]", today),
            priced,
            pricing_message,
        ),
    ];
    report(policy, size, "pricing policy", samples)
}

fn report(harness: &Harness, size: usize, what: &str, samples: Vec<Sample>) -> Report {
    Report {
        name: harness.name().to_string(),
        size,
        sha256: harness.sha256().to_owned(),
        world: format!(
            "billing:reseller@{} {what} ({} core instances)",
            harness.contract_version(),
            harness.core_instances()
        ),
        imports: harness.imports().to_vec(),
        exports: harness.exports().to_vec(),
        samples,
    }
}

fn check_plugin(
    runtime: &Runtime,
    name: &str,
    bytes: &[u8],
    config: &Config,
) -> Result<Report, CheckError> {
    let plugin = LoadedPlugin::load(runtime, name, bytes, config.plugin.limits.clone())?;
    let policy = match plugin.role() {
        Role::Protocol => Some(Arc::new(PolicyLink::new(Arc::new(
            crate::reseller::load_policy(runtime, config)?,
        )))),
        _ => None,
    };
    let what = match &policy {
        Some(link) => format!("protocol, joined to the policy {}", link.policy().name()),
        None => "whole plugin".to_owned(),
    };
    let snapshot = snapshot(config, 1);
    let first_id = snapshot.offers.first().map_or(1, |o| o.tariff_id);
    let client = Arc::new(CannedUpstream {
        pricelist: upstream_pricelist(config),
    });
    let grants = Grants {
        plugin: plugin.name().clone(),
        catalogue: Arc::new(snapshot),
        upstream: Arc::new(UpstreamPolicy::new(
            DEFAULT_FUNCTIONS.iter().map(|f| (*f).to_owned()),
            client,
        )),
        policy,
    };
    let query = |itemtype: &str, only_available, pricelist, format| pricing::Query {
        itemtype: itemtype.to_owned(),
        only_available,
        pricelist,
        format,
        lang: None,
    };
    use pricing::Format::{Json, Xml};
    let exports = [
        (
            "export-prices: the panel's query (xml)",
            query("addition", true, None, Xml),
        ),
        (
            "export-prices: every module (json)",
            query("addition", false, None, Json),
        ),
        (
            "export-prices: one module",
            query("addition", true, Some(first_id), Xml),
        ),
        (
            "export-prices: unknown module",
            query("addition", true, Some(u64::MAX), Xml),
        ),
        (
            "export-prices: itemtype=soft",
            query("soft", true, None, Xml),
        ),
    ];
    let document =
        |doc: &pricing::Document| format!("{} bytes of {}", doc.body.len(), doc.content_type);
    let done = |(): &()| "done".to_owned();
    let mut samples: Vec<Sample> = exports
        .iter()
        .map(|(label, q)| {
            sample(
                label,
                plugin.export_prices(&grants, q),
                document,
                pricing_message,
            )
        })
        .collect();
    let order = orders::Order {
        id: "check-1".to_owned(),
        licence_id: "100001".to_owned(),
        licence_ip: Some("192.0.2.1".to_owned()),
        tariff_id: first_id,
        period: 1,
        autoprolong: true,
        price: types::Money {
            units: 10_000,
            currency: "EUR".to_owned(),
        },
        fields: Vec::new(),
    };
    samples.extend([
        sample(
            "place",
            plugin.place(&grants, &order),
            |p| format!("placed as service {}", p.service_id),
            order_error_message,
        ),
        sample(
            "rebind",
            plugin.rebind(&grants, "1001", "100002"),
            done,
            order_error_message,
        ),
        sample(
            "renew",
            plugin.renew(&grants, "1001", 1),
            |_| "renewed".to_owned(),
            order_error_message,
        ),
        sample(
            "remove",
            plugin.remove(&grants, "1001"),
            done,
            order_error_message,
        ),
        sample(
            "upstream-costs",
            plugin.upstream_costs(&grants),
            |costs| format!("{} modules priced upstream", costs.len()),
            order_error_message,
        ),
    ]);
    // The hooks of 0.2: a plugin built against 0.1 has none.
    if plugin.has_lifecycle_hooks() {
        let optional = |label: &str, called: Option<Called<Result<String, types::OrderError>>>| {
            called.map(|c| sample(label, c, String::clone, order_error_message))
        };
        samples.extend(
            [
                optional(
                    "quote-renewal",
                    plugin.quote_renewal(&grants, "1001", 1).map(|(r, u)| {
                        let quoted = |q: orders::RenewalQuote| match q.new_expires {
                            Some(d) => format!("new expiry {}-{:02}-{:02}", d.year, d.month, d.day),
                            None => "quoted without a date".to_owned(),
                        };
                        (r.map(|r| r.map(quoted)), u)
                    }),
                ),
                optional(
                    "suspend",
                    plugin
                        .suspend(&grants, "1001")
                        .map(|(r, u)| (r.map(|r| r.map(|()| "done".to_owned())), u)),
                ),
                optional(
                    "resume",
                    plugin
                        .resume(&grants, "1001")
                        .map(|(r, u)| (r.map(|r| r.map(|()| "done".to_owned())), u)),
                ),
                optional(
                    "service",
                    plugin.service(&grants, "1001").map(|(r, u)| {
                        (r.map(|r| r.map(|s| format!("service {}", s.service_id))), u)
                    }),
                ),
                optional(
                    "services",
                    plugin
                        .services(&grants)
                        .map(|(r, u)| (r.map(|r| r.map(|l| format!("{} listed", l.len()))), u)),
                ),
                optional(
                    "balance",
                    plugin.balance(&grants).map(|(r, u)| {
                        (
                            r.map(|r| r.map(|m| format!("{} units of {}", m.units, m.currency))),
                            u,
                        )
                    }),
                ),
            ]
            .into_iter()
            .flatten(),
        );
    }
    Ok(report(&plugin, bytes.len(), &what, samples))
}

/// One sample call, described: its answer, its business error, or its fault.
fn sample<T, E>(
    label: &str,
    (result, usage): Called<Result<T, E>>,
    ok: impl FnOnce(&T) -> String,
    err: impl FnOnce(&E) -> String,
) -> Sample {
    let (outcome, fault) = match &result {
        Err(fault) => (format!("FAULT: {fault}"), true),
        Ok(Ok(value)) => (ok(value), false),
        Ok(Err(e)) => (format!("error: {}", err(e)), false),
    };
    Sample {
        label: label.to_owned(),
        outcome,
        fault,
        usage,
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "plugin   {}", self.name)?;
        writeln!(f, "size     {} bytes", self.size)?;
        writeln!(f, "sha256   {}", self.sha256)?;
        writeln!(f, "world    {}", self.world)?;
        writeln!(f, "imports")?;
        for i in &self.imports {
            writeln!(f, "  {i}")?;
        }
        writeln!(f, "exports")?;
        for e in &self.exports {
            writeln!(f, "  {e}")?;
        }
        writeln!(f, "calls    (instructions, peak memory, time)")?;
        for s in &self.samples {
            let mut line = String::new();
            let _ = write!(
                line,
                "  {:<40} {:>11} instr {:>6} KiB {:>8} µs  {}",
                s.label,
                s.usage.fuel,
                s.usage.peak_memory / 1024,
                s.usage.elapsed.as_micros(),
                s.outcome
            );
            writeln!(f, "{line}")?;
        }
        write!(
            f,
            "result   {}",
            if self.passed() { "passed" } else { "FAILED" }
        )
    }
}
