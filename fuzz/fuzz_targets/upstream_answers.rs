//! The plugin's readers of upstream answers (order, price list, service, balance, error
//! documents): any answer is read without a panic, and an answer to a write that cannot be
//! read is in doubt, never "not sent" (which would make the host send the order again).

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use reseller_plugin::orders::{self, CallError, Order, OrderError, Response, Upstream};

#[derive(Arbitrary, Debug)]
struct Input {
    hook: u8,
    status: u16,
    truncated: bool,
    body: Vec<u8>,
}

/// Answers the first call with the input, and says any later one was not sent.
struct Canned {
    answer: Option<Response>,
    calls: usize,
}

impl Upstream for Canned {
    fn call(&mut self, _: &str, _: &[(&str, &str)]) -> Result<Response, CallError> {
        self.calls += 1;
        self.answer
            .take()
            .ok_or_else(|| CallError::NotSent("one answer only".to_owned()))
    }
}

fuzz_target!(|input: Input| {
    let mut up = Canned {
        answer: Some(Response {
            status: input.status,
            body: input.body,
            truncated: input.truncated,
        }),
        calls: 0,
    };
    let order = Order {
        id: "01JQ3V6K8Z9X4N2B7C5D0E1F2G".to_owned(),
        licence_id: "184431".to_owned(),
        tariff_id: 55361,
        period: 1,
        autoprolong: false,
        fields: vec![],
    };
    // A write's outcome when its one answer is whatever upstream sent.
    let write = |result: Result<(), OrderError>, calls: usize| {
        assert_eq!(calls, 1);
        assert!(
            !matches!(
                result,
                Err(OrderError::NotSent(_) | OrderError::MalformedAnswer(_) | OrderError::Other(_))
            ),
            "{result:?}"
        );
    };
    match input.hook % 8 {
        0 => {
            let placed = orders::place(&mut up, &order);
            if let Ok(p) = &placed {
                assert!(!p.service_id.trim().is_empty());
            }
            write(placed.map(drop), up.calls);
        }
        1 => write(orders::rebind(&mut up, "100001", "184432"), up.calls),
        2 => write(orders::remove(&mut up, "100001"), up.calls),
        3 => {
            if let Ok(offers) = orders::upstream_costs(&mut up) {
                for offer in offers {
                    assert!(
                        offer
                            .costs
                            .iter()
                            .all(|c| c.months > 0 && c.cost.units >= 0)
                    );
                }
            }
        }
        4 => drop(orders::service(&mut up, "100001")),
        5 => drop(orders::services(&mut up)),
        6 => drop(orders::balance(&mut up)),
        _ => drop(orders::quote_renewal(&mut up, "100001", 1)),
    }
});
