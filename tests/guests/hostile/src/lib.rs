//! A plugin that misbehaves on purpose. Its pricing settings (the `[pricing]` table) choose how:
//! `{"mode": "..."}` with one of the modes below. The host's tests load it to show that each
//! misbehaviour is contained with the right error while other calls keep being served.
//!
//! - `loop`: never returns.
//! - `memory`: allocates until something stops it.
//! - `recursion`: recurses without end.
//! - `panic`: panics with a message.
//! - `huge`: answers a document of several megabytes.
//! - `hostcalls`: calls the host's log in a tight loop.
//! - `big-hostcall`: passes the host a message of several megabytes.
//! - `upstream`: asks upstream for what it may not (also from its order hooks).
//! - `snoop`: reports what it can see of its environment, arguments and stdin.
//! - anything else: a small valid price list.

#![cfg(target_arch = "wasm32")]
#![expect(
    unsafe_code,
    reason = "the generated bindings export functions by symbol name"
)]

wit_bindgen::generate!({ world: "plugin", path: "../../../wit" });

use billing::reseller::{catalogue, log, types, upstream};
use exports::billing::reseller::{orders, pricing};

struct Hostile;

export!(Hostile);

fn mode() -> String {
    let settings = catalogue::get().settings;
    settings
        .split("\"mode\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_owned()
}

fn doc(body: impl Into<Vec<u8>>) -> pricing::Document {
    pricing::Document {
        content_type: "text/xml; charset=utf-8".to_owned(),
        body: body.into(),
    }
}

#[inline(never)]
fn recurse(depth: u64, keep: &mut Vec<u64>) -> u64 {
    keep.push(depth);
    recurse(depth + 1, keep) + keep.len() as u64
}

/// Asks upstream for things a plugin may not ask, and says what came back.
fn forbidden_calls() -> String {
    let asks = [
        ("user.delete", vec![("elid".to_owned(), "1".to_owned())]),
        ("https://evil.example/billmgr", vec![]),
        (
            "pricelist.export",
            vec![("authinfo".to_owned(), "other:account".to_owned())],
        ),
        (
            "pricelist.export",
            vec![("out".to_owned(), "json".to_owned())],
        ),
    ];
    let mut seen = String::new();
    for (func, params) in asks {
        let answer = upstream::call(&upstream::Request {
            func: func.to_owned(),
            params,
        });
        seen.push_str(&format!("{func}: {answer:?}\n"));
    }
    seen
}

impl pricing::Guest for Hostile {
    fn export_prices(_query: pricing::Query) -> Result<pricing::Document, types::PricingError> {
        match mode().as_str() {
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "recursion" => {
                let mut keep = Vec::new();
                let n = recurse(0, &mut keep);
                Ok(doc(n.to_string()))
            }
            "panic" => panic!("hostile guest panics on purpose"),
            "huge" => Ok(doc(vec![b'x'; 5 << 20])),
            "hostcalls" => loop {
                log::emit(log::Level::Debug, "again");
            },
            "big-hostcall" => {
                log::emit(log::Level::Info, &"y".repeat(4 << 20));
                Ok(doc("<doc></doc>"))
            }
            "upstream" => Err(types::PricingError::Other(forbidden_calls())),
            "snoop" => {
                let env: Vec<(String, String)> = std::env::vars().collect();
                let args: Vec<String> = std::env::args().collect();
                let mut stdin = String::new();
                let read = std::io::Read::read_to_string(&mut std::io::stdin(), &mut stdin);
                let report = format!("env={env:?} args={args:?} stdin={read:?}:{stdin:?}");
                Err(types::PricingError::Other(report))
            }
            _ => Ok(doc("<?xml version=\"1.0\" encoding=\"UTF-8\"?><doc></doc>")),
        }
    }
}

impl orders::Guest for Hostile {
    fn place(order: orders::Order) -> Result<orders::Placed, types::OrderError> {
        let order_call = || {
            upstream::call(&upstream::Request {
                func: "addition.order.param".to_owned(),
                params: vec![
                    ("item".to_owned(), order.licence_id.clone()),
                    ("period".to_owned(), order.period.to_string()),
                    ("pricelist".to_owned(), order.tariff_id.to_string()),
                    ("autoprolong".to_owned(), "null".to_owned()),
                    ("skipbasket".to_owned(), "on".to_owned()),
                    ("sok".to_owned(), "ok".to_owned()),
                ],
            })
        };
        match mode().as_str() {
            "upstream" => return Err(types::OrderError::Other(forbidden_calls())),
            // Orders twice in one placement.
            "double-order" => {
                let first = order_call();
                let second = order_call();
                return Err(types::OrderError::Other(format!("{first:?} / {second:?}")));
            }
            // Orders, then says upstream refused for want of money.
            "liar" => {
                let _ = order_call();
                return Err(types::OrderError::InsufficientBalance(
                    "trust me".to_owned(),
                ));
            }
            // Orders, then says the request never left.
            "claims-not-sent" => {
                let _ = order_call();
                return Err(types::OrderError::NotSent("trust me".to_owned()));
            }
            _ => {}
        }
        // Calls upstream until the host stops it, echoing whatever it is given.
        let mut seen = String::new();
        loop {
            let answer = upstream::call(&upstream::Request {
                func: "pricelist.export".to_owned(),
                params: vec![("itemtype".to_owned(), "addition".to_owned())],
            });
            match answer {
                Ok(response) => seen.push_str(&String::from_utf8_lossy(&response.body)),
                Err(e) => seen.push_str(&format!("{e:?}")),
            }
            log::emit(log::Level::Info, &seen);
        }
    }

    fn rebind(_service_id: String, _licence_id: String) -> Result<(), types::OrderError> {
        Ok(())
    }

    fn renew(
        _service_id: String,
        _period: types::Months,
    ) -> Result<orders::Renewed, types::OrderError> {
        Ok(orders::Renewed { expires: None })
    }

    fn quote_renewal(
        _service_id: String,
        _period: types::Months,
    ) -> Result<orders::RenewalQuote, types::OrderError> {
        Err(types::OrderError::Other("no quotes here".to_owned()))
    }

    fn suspend(_service_id: String) -> Result<(), types::OrderError> {
        Ok(())
    }

    fn resume(_service_id: String) -> Result<(), types::OrderError> {
        Ok(())
    }

    fn remove(_service_id: String) -> Result<(), types::OrderError> {
        Ok(())
    }

    fn service(service_id: String) -> Result<orders::UpstreamService, types::OrderError> {
        Err(types::OrderError::Other(format!("no service {service_id}")))
    }

    fn services() -> Result<Vec<orders::UpstreamService>, types::OrderError> {
        Ok(Vec::new())
    }

    fn balance() -> Result<types::Money, types::OrderError> {
        Err(types::OrderError::Other("no balance here".to_owned()))
    }

    fn upstream_costs() -> Result<Vec<orders::UpstreamOffer>, types::OrderError> {
        Ok(Vec::new())
    }
}
