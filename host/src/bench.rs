//! Benchmark-only servers (feature `bench`): the same HTTP stack answering `pricelist.export`
//! with the built-in plugin's logic compiled natively, or with constant bytes, so that the
//! plugin path can be measured against both. Never part of a production build.

use std::sync::Arc;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use reseller_plugin::PricingPolicy;
use reseller_plugin::model::{self, Offer};
use reseller_plugin::policy::Markup;

use crate::billmgr::{BillmgrError, Params};
use crate::bindings::pricing;
use crate::config::Config;
use crate::convert::{panel_query, snapshot};
use crate::http::{answer_error, document};
use crate::reseller::Reseller;

/// Which server to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Handler {
    /// The real one: the plugin in its sandbox.
    Plugin,
    /// The built-in plugin's logic compiled natively, on the same blocking threads.
    Native,
    /// The panel's answer as constant bytes: the ceiling of the HTTP stack.
    Constant,
}

/// The catalogue and settings the native logic prices, the prices it gave today, and the server
/// whose turns it takes.
struct Native {
    offers: Vec<Offer>,
    settings: String,
    reseller: Arc<Reseller>,
    prices: std::sync::Mutex<Option<(model::Date, Arc<Vec<model::OfferPrices>>)>>,
}

impl Native {
    /// The policy's prices for `today`: computed once per day, as the host keeps its policy's
    /// answer, so that both servers render from prices at hand.
    fn prices(
        &self,
        today: model::Date,
    ) -> Result<Arc<Vec<model::OfferPrices>>, model::PricingError> {
        let mut kept = self
            .prices
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((day, prices)) = &*kept
            && *day == today
        {
            return Ok(prices.clone());
        }
        let prices = Arc::new(Markup::prices(&self.offers, &self.settings, today)?);
        *kept = Some((today, prices.clone()));
        Ok(prices)
    }
}

/// The router for `handler`.
pub fn router(
    reseller: Arc<Reseller>,
    orders: Option<Arc<crate::orders::OrderDesk>>,
    handler: Handler,
) -> Router {
    let config = reseller.active().config().clone();
    match handler {
        Handler::Plugin => crate::http::app(reseller, orders),
        Handler::Native => {
            let native = native_catalogue(&config, reseller);
            Router::new()
                .route("/billmgr", get(native_export))
                .with_state(Arc::new(native))
        }
        Handler::Constant => {
            let doc = reseller
                .export_prices(&panel_query(None, true))
                .map(|d| d.body)
                .unwrap_or_default();
            let body = Arc::new(doc);
            Router::new().route(
                "/billmgr",
                get(move || {
                    let body = body.clone();
                    async move { document(StatusCode::OK, crate::billmgr::XML, body.to_vec()) }
                }),
            )
        }
    }
}

fn native_catalogue(config: &Config, reseller: Arc<Reseller>) -> Native {
    let (offers, settings) = native_offers(config);
    Native {
        offers,
        settings,
        reseller,
        prices: std::sync::Mutex::new(None),
    }
}

/// The configuration's catalogue and pricing settings as the native logic takes them.
pub fn native_offers(config: &Config) -> (Vec<Offer>, String) {
    let snapshot = snapshot(config, 1);
    let offers = snapshot
        .offers
        .into_iter()
        .map(|o| Offer {
            tariff_id: o.tariff_id,
            intname: o.intname,
            additionintname: o.additionintname,
            name: o.name,
            upstream_costs: o
                .upstream_costs
                .into_iter()
                .map(|c| model::PeriodCost {
                    months: c.months,
                    cost: model::Money {
                        units: c.cost.units,
                        currency: c.cost.currency,
                    },
                })
                .collect(),
            orderable: o.orderable,
        })
        .collect();
    (offers, snapshot.settings)
}

/// Like the plugin path: the query parsed the same way, the prices computed once a day, one
/// price list rendered per core at once, on a blocking thread; only the sandbox is missing.
async fn native_export(State(native): State<Arc<Native>>, RawQuery(query): RawQuery) -> Response {
    let query = query.unwrap_or_default();
    let params = Params::parse(&[query.as_bytes()]);
    let q = match params.price_query() {
        Ok(q) => q,
        Err(e) => return answer_error(&e, pricing::Format::Xml),
    };
    let q = model::Query {
        itemtype: q.itemtype,
        only_available: q.only_available,
        pricelist: q.pricelist,
        format: match q.format {
            pricing::Format::Xml => model::Format::Xml,
            pricing::Format::Json => model::Format::Json,
        },
    };
    let server = native.reseller.clone();
    let _turn = server.pricing_turn().await;
    let answer = tokio::task::spawn_blocking(move || {
        let day = crate::capabilities::calendar::today();
        let today = model::Date {
            year: u16::try_from(day.year()).unwrap_or(u16::MAX),
            month: u8::from(day.month()),
            day: day.day(),
        };
        let prices = native.prices(today)?;
        reseller_plugin::price_list(&native.offers, &prices, &q)
    })
    .await;
    match answer {
        Ok(Ok(doc)) => document(StatusCode::OK, doc.content_type, doc.body),
        _ => answer_error(&BillmgrError::internal(), pricing::Format::Xml),
    }
}
