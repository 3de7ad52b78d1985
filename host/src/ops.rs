//! Running the server: `GET /healthz` (the process answers), `GET /readyz` (it can do its
//! work: the plugin prices, the order database takes writes, upstream is reachable when orders
//! are placed automatically) and `GET /metrics` (the Prometheus text of [`crate::metrics`]),
//! and the middleware that counts every request by route and status.
//!
//! On the main address `/metrics` needs the API token; `server.metrics_listen` serves all three
//! on a second address without one, for a scraper on a private network.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{FromRef, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};

use crate::api::Authorized;
use crate::config::OrderMode;
use crate::convert::panel_query;
use crate::limits::Limit;
use crate::metrics;
use crate::orders::{OrderDesk, OrderState};
use crate::reseller::Reseller;

/// How long a readiness check waits for the database or upstream.
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// `/healthz`, `/readyz` and `/metrics` (behind the API token), for the main router.
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<Reseller>: FromRef<S>,
    Option<Arc<OrderDesk>>: FromRef<S>,
{
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route(
            "/metrics",
            get(
                |_: Authorized,
                 State(r): State<Arc<Reseller>>,
                 State(o): State<Option<Arc<OrderDesk>>>| { metrics_text(r, o) },
            ),
        )
}

/// The router of `server.metrics_listen`: the same three routes, without a token.
pub fn metrics_app(reseller: Arc<Reseller>, orders: Option<Arc<OrderDesk>>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route(
            "/metrics",
            get(
                |State(r): State<Arc<Reseller>>, State(o): State<Option<Arc<OrderDesk>>>| {
                    metrics_text(r, o)
                },
            ),
        )
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                axum::Json(json!({"error": {"code": "not_found", "message": "this address serves /metrics, /healthz and /readyz"}})),
            )
        })
        .with_state(OpsState { reseller, orders })
}

/// The state of [`metrics_app`]: the host and, when orders are kept, the order desk.
#[derive(Clone)]
struct OpsState {
    reseller: Arc<Reseller>,
    orders: Option<Arc<OrderDesk>>,
}

impl FromRef<OpsState> for Arc<Reseller> {
    fn from_ref(state: &OpsState) -> Self {
        state.reseller.clone()
    }
}

impl FromRef<OpsState> for Option<Arc<OrderDesk>> {
    fn from_ref(state: &OpsState) -> Self {
        state.orders.clone()
    }
}

/// Serves [`metrics_app`] on `addr` until `shutdown` completes.
pub async fn serve_metrics(
    addr: SocketAddr,
    reseller: Arc<Reseller>,
    orders: Option<Arc<OrderDesk>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = crate::serve::bind(addr, "metrics and health").await?;
    let limits = crate::serve::Limits::of(&reseller.active().config().server);
    crate::serve::serve(listener, metrics_app(reseller, orders), limits, shutdown).await
}

async fn healthz() -> axum::Json<Value> {
    axum::Json(json!({"status": "ok"}))
}

/// Every check, each `ok` or why not; 200 when all pass, 503 otherwise.
async fn readyz(
    State(reseller): State<Arc<Reseller>>,
    State(orders): State<Option<Arc<OrderDesk>>>,
) -> Response {
    let active = reseller.active();
    let mut checks = Map::new();
    let priced = {
        let active = active.clone();
        tokio::task::spawn_blocking(move || active.export_prices(&panel_query(None, true))).await
    };
    checks.insert(
        "plugin".to_owned(),
        json!(match priced {
            Ok(Ok(_)) => "ok".to_owned(),
            Ok(Err(e)) => {
                tracing::warn!("readiness: the plugin cannot price: {e}");
                "the plugin cannot price the catalogue".to_owned()
            }
            Err(_) => "the check failed".to_owned(),
        }),
    );
    if let Some(desk) = orders.clone() {
        let writable = tokio::task::spawn_blocking(move || desk.backend().check_writable()).await;
        checks.insert(
            "database".to_owned(),
            json!(match writable {
                Ok(Ok(())) => "ok".to_owned(),
                Ok(Err(e)) => {
                    tracing::warn!("readiness: the order database: {e}");
                    "the order database does not take writes".to_owned()
                }
                Err(_) => "the check failed".to_owned(),
            }),
        );
    }
    if orders.is_some() && active.config().order_mode() == OrderMode::Automatic {
        let url = active.config().upstream.url.clone().unwrap_or_default();
        checks.insert(
            "upstream".to_owned(),
            json!(match reachable(&url).await {
                Ok(()) => "ok".to_owned(),
                Err(e) => {
                    tracing::warn!("readiness: upstream: {e}");
                    format!(
                        "upstream is not reachable within {} ms",
                        READY_TIMEOUT.as_millis()
                    )
                }
            }),
        );
    }
    let ready = checks.values().all(|v| v == "ok");
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(json!({"ready": ready, "checks": checks})),
    )
        .into_response()
}

/// Whether upstream's host takes a TCP connection within [`READY_TIMEOUT`]. Nothing is sent:
/// readiness probes must not call the partner's account.
async fn reachable(url: &str) -> Result<(), Unreachable> {
    let url = url::Url::parse(url)?;
    let host = url.host_str().ok_or(Unreachable::NoHost)?.to_owned();
    let port = url.port_or_known_default().ok_or(Unreachable::NoPort)?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    match tokio::time::timeout(READY_TIMEOUT, tokio::net::TcpStream::connect((host, port))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(Unreachable::Connect(e)),
        Err(_) => Err(Unreachable::TimedOut),
    }
}

/// Why upstream's host is not reachable.
#[derive(Debug, thiserror::Error)]
enum Unreachable {
    #[error("upstream.url: {0}")]
    Url(#[from] url::ParseError),
    #[error("upstream.url names no host")]
    NoHost,
    #[error("upstream.url names no port")]
    NoPort,
    #[error("{0}")]
    Connect(std::io::Error),
    #[error("timed out")]
    TimedOut,
}

async fn metrics_text(reseller: Arc<Reseller>, orders: Option<Arc<OrderDesk>>) -> Response {
    let text = tokio::task::spawn_blocking(move || {
        let active = reseller.active();
        let counts = orders.and_then(|desk| match desk.backend().counts() {
            Ok(counts) => Some(
                OrderState::ALL
                    .iter()
                    .map(|s| {
                        let n = counts.get(s).copied().unwrap_or(0);
                        (s.as_str().to_owned(), i64::try_from(n).unwrap_or(i64::MAX))
                    })
                    .collect::<Vec<_>>(),
            ),
            Err(e) => {
                tracing::warn!("metrics: cannot count the orders: {e}");
                None
            }
        });
        let mut harnesses: Vec<(&str, &crate::runtime::Harness)> =
            vec![("plugin", active.plugin())];
        if let Some(policy) = active.policy() {
            harnesses.push(("policy", policy));
        }
        let components: Vec<metrics::ComponentCounters<'_>> = harnesses
            .iter()
            .map(|(component, harness)| {
                let stats = harness.stats();
                metrics::ComponentCounters {
                    component,
                    name: harness.name(),
                    calls: stats.calls(),
                    faults: stats.faults(),
                    limit_hits: Limit::ALL
                        .iter()
                        .map(|l| (*l, stats.limit_hits(*l)))
                        .collect(),
                }
            })
            .collect();
        metrics::global().render(&components, counts.as_deref())
    })
    .await
    .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(metrics::CONTENT_TYPE),
        )],
        text,
    )
        .into_response()
}

/// The route a request matched, kept on its answer for [`count_request`].
#[derive(Clone)]
struct Route(MatchedPath);

/// Marks an answer with the route its request matched (a `route_layer`, run after routing).
pub async fn route_of(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().cloned();
    let mut response = next.run(request).await;
    if let Some(route) = route {
        response.extensions_mut().insert(Route(route));
    }
    response
}

/// Counts a request by route (`unmatched` for the fallback) and status, and times it.
pub async fn count_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let response = next.run(request).await;
    let route = response
        .extensions()
        .get::<Route>()
        .map_or("unmatched", |r| r.0.as_str());
    metrics::global().http_request(route, response.status().as_u16(), started.elapsed());
    response
}
