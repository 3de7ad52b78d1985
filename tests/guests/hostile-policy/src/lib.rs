//! A pricing policy that misbehaves on purpose. Its settings choose how: `{"mode": "..."}` with
//! one of the modes below. The host's tests run it as a shadow candidate beside a live policy, to
//! show that whatever it does never reaches the live answers.
//!
//! - `loop`: never returns.
//! - `memory`: allocates until something stops it.
//! - `panic`: panics with a message.
//! - `refuse`: refuses the settings.
//! - anything else: every period at twice its upstream cost, and a module the catalogue does
//!   not have.

use reseller_plugin::PricingPolicy;
use reseller_plugin::model::{
    Date, FieldError, Money, Offer, OfferPrices, PeriodPrice, PricingError,
};

/// The misbehaving policy.
pub struct Hostile;

fn mode(settings: &str) -> &str {
    settings
        .split("\"mode\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
}

impl PricingPolicy for Hostile {
    fn prices(
        offers: &[Offer],
        settings_json: &str,
        _today: Date,
    ) -> Result<Vec<OfferPrices>, PricingError> {
        match mode(settings_json) {
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
            "panic" => panic!("hostile policy panics on purpose"),
            "refuse" => Err(PricingError::InvalidSettings(FieldError {
                field: "pricing.mode".to_owned(),
                value: "refuse".to_owned(),
                message: "this policy refuses on purpose".to_owned(),
            })),
            _ => {
                let mut priced: Vec<OfferPrices> = offers
                    .iter()
                    .map(|offer| OfferPrices {
                        tariff_id: offer.tariff_id,
                        prices: offer
                            .upstream_costs
                            .iter()
                            .map(|c| PeriodPrice {
                                months: c.months,
                                price: Money {
                                    units: c.cost.units.saturating_mul(2),
                                    currency: c.cost.currency.clone(),
                                },
                            })
                            .collect(),
                    })
                    .collect();
                priced.push(OfferPrices {
                    tariff_id: u64::MAX,
                    prices: vec![PeriodPrice {
                        months: 1,
                        price: Money {
                            units: 1,
                            currency: "EUR".to_owned(),
                        },
                    }],
                });
                Ok(priced)
            }
        }
    }
}

reseller_plugin::export_policy!(Hostile);
