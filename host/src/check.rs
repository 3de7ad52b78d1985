//! `reseller check`: what a partner runs before deploying a plugin. Loads the file as the
//! server would, lists what it imports and exports, runs sample price exports and order hooks
//! in the sandbox against a canned upstream, and reports what each call used.

use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::time::Duration;

use quick_xml::Writer;
use quick_xml::events::BytesText;

use crate::bindings::upstream::{CallError, Response};
use crate::bindings::{orders, pricing, types};
use crate::capabilities::upstream::{UpstreamClient, UpstreamPolicy};
use crate::capabilities::{Grants, upstream::DEFAULT_FUNCTIONS};
use crate::config::Config;
use crate::runtime::{Fault, HookCall, HookResult, LoadError, LoadedPlugin, Runtime, Usage};

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
        let body = match func {
            "addition.order.param" => b"<doc><id>1001</id></doc>".to_vec(),
            "pricelist.export" => self.pricelist.clone(),
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
            let currency = module
                .currency
                .as_ref()
                .unwrap_or(&config.catalogue.currency)
                .0
                .as_str();
            let cost = rust_decimal::Decimal::new(module.cost.month.0, 4).to_string();
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

/// Loads `bytes` as the server would with `config`'s limits, and runs the samples.
pub fn check(
    runtime: &Runtime,
    name: &str,
    bytes: &[u8],
    config: &Config,
) -> Result<Report, LoadError> {
    let plugin = LoadedPlugin::load(runtime, name, bytes, config.plugin.limits.clone())?;
    let snapshot = crate::bindings::snapshot(config, 1);
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
    };
    let query = |itemtype: &str, only_available, pricelist, format| pricing::Query {
        itemtype: itemtype.to_owned(),
        only_available,
        pricelist,
        format,
        lang: None,
    };
    use pricing::Format::{Json, Xml};
    let calls = [
        (
            "export-prices: the panel's query (xml)",
            HookCall::ExportPrices(query("addition", true, None, Xml)),
        ),
        (
            "export-prices: every module (json)",
            HookCall::ExportPrices(query("addition", false, None, Json)),
        ),
        (
            "export-prices: one module",
            HookCall::ExportPrices(query("addition", true, Some(first_id), Xml)),
        ),
        (
            "export-prices: unknown module",
            HookCall::ExportPrices(query("addition", true, Some(u64::MAX), Xml)),
        ),
        (
            "export-prices: itemtype=soft",
            HookCall::ExportPrices(query("soft", true, None, Xml)),
        ),
        (
            "place",
            HookCall::Place(orders::Order {
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
            }),
        ),
        (
            "rebind",
            HookCall::Rebind {
                service_id: "1001".to_owned(),
                licence_id: "100002".to_owned(),
            },
        ),
        (
            "renew",
            HookCall::Renew {
                service_id: "1001".to_owned(),
                period: 1,
            },
        ),
        (
            "remove",
            HookCall::Remove {
                service_id: "1001".to_owned(),
            },
        ),
        ("upstream-costs", HookCall::UpstreamCosts),
    ];
    let samples = calls
        .into_iter()
        .map(|(label, call)| {
            let (result, usage) = plugin.invoke(&grants, &call);
            Sample {
                label: label.to_owned(),
                fault: result.is_err(),
                outcome: describe(&result),
                usage,
            }
        })
        .collect();
    Ok(Report {
        name: name.to_owned(),
        size: bytes.len(),
        sha256: plugin.sha256().to_owned(),
        imports: plugin.imports().to_vec(),
        exports: plugin.exports().to_vec(),
        samples,
    })
}

fn describe(result: &Result<HookResult, Fault>) -> String {
    match result {
        Err(fault) => format!("FAULT: {fault}"),
        Ok(HookResult::Document(Ok(doc))) => {
            format!("{} bytes of {}", doc.body.len(), doc.content_type)
        }
        Ok(HookResult::Document(Err(e))) => {
            format!("error: {}", crate::service::pricing_message(e))
        }
        Ok(HookResult::Placed(Ok(placed))) => format!("placed as service {}", placed.service_id),
        Ok(HookResult::Done(Ok(()))) => "done".to_owned(),
        Ok(HookResult::Costs(Ok(costs))) => format!("{} modules priced upstream", costs.len()),
        Ok(HookResult::Placed(Err(e)) | HookResult::Done(Err(e)) | HookResult::Costs(Err(e))) => {
            format!("error: {e:?}")
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "plugin   {}", self.name)?;
        writeln!(f, "size     {} bytes", self.size)?;
        writeln!(f, "sha256   {}", self.sha256)?;
        writeln!(f, "world    {} (compatible)", crate::bindings::PACKAGE)?;
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
