//! The partner-facing HTTP endpoints. `GET` or `POST /billmgr` dispatches on `func`, as
//! BILLmanager does; every failure is answered with a BILLmanager error document.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, FromRef, Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use tokio::net::TcpListener;

use crate::billmgr::{BillmgrError, Params, content_type_matches};
use crate::bindings::pricing::Format;
use crate::config::{PANEL_PATHS, PanelErrors};
use crate::convert::pricing_error;
use crate::orders::buy::{BuyRequest, checkout_url};
use crate::orders::page::{FormField, OrderForm, error_page, order_page};
use crate::orders::{DeskError, OrderDesk, OrderId};
use crate::reseller::{ExportError, Reseller};
use crate::serve::{BodyError, read_body};

/// What every handler shares: the host and, when orders are kept, the order desk.
#[derive(Clone)]
pub struct AppState {
    /// The host: its configuration and plugin in force.
    pub reseller: Arc<Reseller>,
    /// The orders; without them the Buy redirect and the order API answer "unavailable".
    pub orders: Option<Arc<OrderDesk>>,
    /// How many Buys a client address and a licence may make.
    pub buy_limits: Arc<BuyLimits>,
    /// The operator console's sessions.
    pub console: Arc<crate::console::Console>,
}

impl AppState {
    /// The state of every route over `reseller` and, when orders are kept, `orders`.
    pub fn new(reseller: Arc<Reseller>, orders: Option<Arc<OrderDesk>>) -> AppState {
        let limits = BuyLimits::new(&reseller.active().config().orders);
        AppState {
            reseller,
            orders,
            buy_limits: Arc::new(limits),
            console: Arc::new(crate::console::Console::new()),
        }
    }
}

impl FromRef<AppState> for Arc<crate::console::Console> {
    fn from_ref(state: &AppState) -> Self {
        state.console.clone()
    }
}

/// Rate limits on Buy redirects, per client address and per licence (`orders.buys_per_…`), so
/// that one client cannot fill the order database.
pub struct BuyLimits {
    by_address: Option<governor::DefaultKeyedRateLimiter<IpAddr>>,
    by_licence: Option<governor::DefaultKeyedRateLimiter<String>>,
}

impl BuyLimits {
    fn new(orders: &crate::config::OrdersConfig) -> BuyLimits {
        let quota = |n: u32| {
            std::num::NonZeroU32::new(n).map(|n| governor::Quota::per_minute(n).allow_burst(n))
        };
        BuyLimits {
            by_address: quota(orders.buys_per_address_per_minute).map(governor::RateLimiter::keyed),
            by_licence: quota(orders.buys_per_licence_per_minute).map(governor::RateLimiter::keyed),
        }
    }

    /// Takes one Buy from the client's and the licence's allowance, or says which is spent.
    fn check(&self, client: Option<IpAddr>, licence: &str) -> Result<(), Limited> {
        if let (Some(limiter), Some(ip)) = (&self.by_address, client)
            && limiter.check_key(&ip).is_err()
        {
            return Err(Limited::Address(ip));
        }
        if let Some(limiter) = &self.by_licence
            && limiter.check_key(&licence.to_owned()).is_err()
        {
            return Err(Limited::Licence(licence.to_owned()));
        }
        // Keep the tables bounded under many addresses and licences.
        for len in [
            self.by_address.as_ref().map(|l| l.len()),
            self.by_licence.as_ref().map(|l| l.len()),
        ]
        .into_iter()
        .flatten()
        {
            if len > 100_000 {
                if let Some(l) = &self.by_address {
                    l.retain_recent();
                }
                if let Some(l) = &self.by_licence {
                    l.retain_recent();
                }
            }
        }
        Ok(())
    }
}

/// Which Buy allowance is spent.
#[derive(Debug, thiserror::Error)]
enum Limited {
    #[error("too many Buys from {0}")]
    Address(IpAddr),
    #[error("too many Buys for licence {0}")]
    Licence(String),
}

impl FromRef<AppState> for Arc<Reseller> {
    fn from_ref(state: &AppState) -> Self {
        state.reseller.clone()
    }
}

impl FromRef<AppState> for Option<Arc<OrderDesk>> {
    fn from_ref(state: &AppState) -> Self {
        state.orders.clone()
    }
}

/// The price routes alone, over a shared [`Reseller`]: no orders are taken.
pub fn router(reseller: Arc<Reseller>) -> Router {
    app(reseller, None)
}

/// Every route: prices, the Buy redirect and order pages, and the billing system's API.
///
/// The panel is served on `/`, `/billmgr`, `/manager/billmgr` and every path of
/// `server.paths`: whatever URL the partner registers with ispmanager works. Each path's order
/// pages are beside it (`/billing/isp` → `/billing/order/ID`), where the Buy's relative
/// redirect leads.
pub fn app(reseller: Arc<Reseller>, orders: Option<Arc<OrderDesk>>) -> Router {
    let config = reseller.active().config().clone();
    let mut router = Router::new();
    let mut order_pages = std::collections::BTreeSet::new();
    let configured = config.server.paths.iter().map(String::as_str);
    let paths: std::collections::BTreeSet<&str> =
        PANEL_PATHS.iter().copied().chain(configured).collect();
    for path in paths {
        router = router.route(path, any(billmgr));
        let dir = &path[..=path.rfind('/').unwrap_or_default()];
        order_pages.insert(format!("{dir}order/{{id}}"));
    }
    for page in order_pages {
        router = router.route(&page, get(order).post(order_update));
    }
    router
        .nest("/api/v1", crate::api::routes::<AppState>())
        .nest(crate::console::BASE, crate::console::routes::<AppState>())
        .merge(crate::ops::routes::<AppState>())
        .fallback(not_found)
        .with_state(AppState::new(reseller, orders))
        .route_layer(axum::middleware::from_fn(crate::ops::route_of))
        .layer(axum::middleware::from_fn(crate::ops::count_request))
}

/// A path that serves nothing: a plain 404 whatever `server.panel_errors` says, since no panel
/// reads it (the panel's own paths answer BILLmanager's way).
async fn not_found() -> Response {
    answer_error(&BillmgrError::not_found(), Format::Xml)
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    reseller: Arc<Reseller>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_router(listener, router(reseller), shutdown).await
}

/// Serves any `router` on `listener` until `shutdown` completes, within the default
/// [`crate::serve::Limits`].
pub async fn serve_router(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::serve::serve(listener, router, crate::serve::Limits::default(), shutdown).await
}

/// Binds `addr`, logging the address actually bound (useful with port 0).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!("listening on http://{}/billmgr", listener.local_addr()?);
    Ok(listener)
}

async fn billmgr(
    State(state): State<AppState>,
    extensions: axum::http::Extensions,
    method: axum::http::Method,
    RawQuery(query): RawQuery,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Response {
    let (max, body_timeout_ms, style) = {
        let active = state.reseller.active();
        let server = &active.config().server;
        (
            server.max_query_bytes,
            server.body_timeout_ms,
            server.panel_errors,
        )
    };
    // What HTTP itself refuses (size, time, method) keeps its status whatever
    // `server.panel_errors` says, as a front server would answer it; the document is BILLmanager's.
    let query = query.unwrap_or_default();
    if query.len() > max {
        return answer_error(&BillmgrError::too_long(max), Format::Xml);
    }
    let form = match method {
        axum::http::Method::GET | axum::http::Method::HEAD => Bytes::new(),
        axum::http::Method::POST => {
            let timeout = std::time::Duration::from_millis(body_timeout_ms);
            match read_body(&headers, body, max.saturating_sub(query.len()), timeout).await {
                Ok(form) => form,
                Err(BodyError::TooLarge(_)) => {
                    return answer_error(&BillmgrError::too_long(max), Format::Xml);
                }
                Err(e) => {
                    let error = BillmgrError {
                        status: if matches!(e, BodyError::TimedOut(_)) {
                            408
                        } else {
                            400
                        },
                        kind: "value",
                        object: "body".to_owned(),
                        value: None,
                        message: format!("The form was not read: {e}"),
                    };
                    return answer_error(&error, Format::Xml);
                }
            }
        }
        _ => {
            let mut response = answer_error(
                &BillmgrError {
                    status: 405,
                    ..BillmgrError::value("method", method.as_str(), "use GET or POST")
                },
                Format::Xml,
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
            return response;
        }
    };
    let params = Params::parse(&[query.as_bytes(), &form]);
    // The panel's Buy button: a browser, not a BILLmanager client.
    if params.get("func").is_none()
        && (params.has("module") || params.has("license") || params.has("module_id"))
    {
        let client = extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        return buy(state, client, &params).await;
    }
    let format = params.format().unwrap_or(Format::Xml);
    match dispatch(state.reseller, &params).await {
        Ok(response) => response,
        Err(e) => panel_error(&e, format, style),
    }
}

async fn dispatch(reseller: Arc<Reseller>, params: &Params) -> Result<Response, BillmgrError> {
    match params.get("func") {
        Some("pricelist.export") => price_export(reseller, params).await,
        Some(other) => Err(BillmgrError::unknown_func(other)),
        None => Err(BillmgrError::missed("func")),
    }
}

async fn price_export(reseller: Arc<Reseller>, params: &Params) -> Result<Response, BillmgrError> {
    let query = params.price_query()?;
    let format = query.format;
    let active = reseller.active();
    let answer = match active.cached_answer(&query) {
        Some(doc) => Ok(doc),
        None => {
            let _turn = reseller.pricing_turn().await;
            tokio::task::spawn_blocking(move || active.export_prices(&query))
                .await
                .map_err(|e| {
                    tracing::error!("the price export task failed: {e}");
                    BillmgrError::internal()
                })?
        }
    };
    match answer {
        // A plugin may not choose what a browser would make of the partner's page.
        Ok(doc) if !content_type_matches(format, &doc.content_type) => {
            tracing::error!(
                "the plugin answered `{}` to a {format:?} price export",
                doc.content_type.escape_debug()
            );
            Err(BillmgrError::plugin())
        }
        Ok(doc) => Ok(document(StatusCode::OK, &doc.content_type, doc.body)),
        Err(ExportError::Pricing(e)) => Err(pricing_error(&e)),
        // Whose fault it was reaches the panel: the plugin's, or the host's.
        Err(ExportError::Fault(fault)) => {
            tracing::error!("{fault}");
            Err(if fault.is_guest() {
                BillmgrError::plugin()
            } else {
                BillmgrError::internal()
            })
        }
    }
}

/// The Buy redirect: records the order and sends the browser on to the checkout. A refused
/// Buy is counted and logged with its reason and parameters.
async fn buy(state: AppState, client: Option<IpAddr>, params: &Params) -> Response {
    let Some(desk) = state.orders else {
        return html(
            StatusCode::SERVICE_UNAVAILABLE,
            error_page(
                "Ordering is not available",
                "This server does not take orders.",
            ),
        );
    };
    let request = match BuyRequest::parse(params.pairs()) {
        Ok(request) => request,
        Err(e) => {
            let message = format!("The parameter `{}` is {}.", e.field, e.message);
            desk.refused_buy(&format!("invalid:{}", e.field), &message, params.pairs());
            return html(
                StatusCode::BAD_REQUEST,
                error_page("This order link is not valid", &message),
            );
        }
    };
    if let Err(limited) = state.buy_limits.check(client, &request.licence_id) {
        desk.refused_buy("rate_limited", &limited.to_string(), params.pairs());
        let mut response = html(
            StatusCode::TOO_MANY_REQUESTS,
            error_page("Too many orders at once", "Please try again in a minute."),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        return response;
    }
    let task_desk = desk.clone();
    let created = tokio::task::spawn_blocking(move || task_desk.buy(&request)).await;
    let created = match created {
        Ok(Ok(created)) => created,
        Ok(Err(DeskError::Invalid(m))) => {
            return html(
                StatusCode::BAD_REQUEST,
                error_page("This order link is not valid", &m),
            );
        }
        Ok(Err(DeskError::Unavailable(m))) => {
            return html(
                StatusCode::CONFLICT,
                error_page("This module cannot be ordered now", &m),
            );
        }
        Ok(Err(e)) => {
            tracing::error!("recording a Buy redirect: {e}");
            return failed_page();
        }
        Err(e) => {
            tracing::error!("the Buy redirect task failed: {e}");
            return failed_page();
        }
    };
    let order = &created.order;
    tracing::info!(
        order = %order.id,
        licence = order.licence_id,
        tariff = order.tariff_id,
        price = %order.price,
        reused = created.reused,
        "Buy redirect"
    );
    let location = match &desk.reseller().active().config().orders.checkout_url {
        Some(template) => checkout_url(template, order),
        // Relative, so that it works under any prefix: `/billmgr` → `/order/ID`.
        None => format!("order/{}", order.id),
    };
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The host's own order page: what was ordered and where it stands; while unpaid (or waiting
/// for them), a form for the period and the module's order fields.
async fn order(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let (Some(desk), Ok(id)) = (state.orders, OrderId::parse(&id)) else {
        return order_not_found();
    };
    match tokio::task::spawn_blocking(move || order_view(&desk, &id)).await {
        Ok(Ok(page)) => html(StatusCode::OK, page),
        Ok(Err(DeskError::NotFound)) => order_not_found(),
        Ok(Err(e)) => {
            tracing::error!("showing an order: {e}");
            failed_page()
        }
        Err(e) => {
            tracing::error!("the order page task failed: {e}");
            failed_page()
        }
    }
}

fn order_view(desk: &OrderDesk, id: &OrderId) -> Result<String, DeskError> {
    let order = desk.get(id)?;
    let form = order_form(desk, &order);
    Ok(order_page(&order, form.as_ref(), None))
}

/// The choices the order page offers for `order`, if it offers any.
fn order_form(desk: &OrderDesk, order: &crate::orders::Order) -> Option<OrderForm> {
    use crate::orders::OrderState;
    let active = desk.reseller().active();
    let config = active.config();
    let module = config.module(order.tariff_id)?;
    let fields = matches!(order.state, OrderState::New | OrderState::Paid).then(|| {
        module
            .fields
            .iter()
            .map(|f| FormField {
                name: f.name.clone(),
                label: f.label.clone(),
                value: order.fields.get(&f.name).cloned().unwrap_or_default(),
                required: f.required,
            })
            .collect::<Vec<_>>()
    });
    let periods = if order.state == OrderState::New {
        let doc = active
            .export_prices(&crate::convert::panel_query(Some(order.tariff_id), true))
            .ok()?;
        (1..=120)
            .filter_map(|m| crate::money::Months::new(m).ok())
            .filter_map(|m| {
                crate::orders::buy::price_in_list(&doc.body, order.tariff_id, m).map(|p| (m, p))
            })
            .collect()
    } else {
        Vec::new()
    };
    let fields = fields.unwrap_or_default();
    (!fields.is_empty() || periods.len() > 1).then_some(OrderForm { periods, fields })
}

/// The order page's form: the buyer chooses a period and gives the module's order fields.
async fn order_update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (Some(desk), Ok(id)) = (state.orders, OrderId::parse(&id)) else {
        return order_not_found();
    };
    if body.len() > 16 * 1024 {
        return html(
            StatusCode::PAYLOAD_TOO_LARGE,
            error_page("Too much", "The form is too large."),
        );
    }
    let params = Params::parse(&[&body]);
    let task = tokio::task::spawn_blocking(move || {
        let period = match params.get("period").filter(|p| !p.is_empty()) {
            Some(p) => Some(p.parse::<crate::money::Months>().map_err(|_| {
                DeskError::Invalid("period: a number of months, 1 to 120".to_owned())
            })?),
            None => None,
        };
        let fields: Vec<(String, String)> = params
            .pairs()
            .iter()
            .filter(|(k, _)| k != "period")
            .cloned()
            .collect();
        match desk.set_details(&id, period, Some(&fields), "buyer") {
            Ok(order) => Ok(Ok(order)),
            Err(DeskError::Invalid(m)) => {
                let order = desk.get(&id)?;
                let form = order_form(&desk, &order);
                Ok(Err(order_page(&order, form.as_ref(), Some(&m))))
            }
            Err(e) => Err(e),
        }
    })
    .await;
    match task {
        Ok(Ok(Ok(order))) => {
            let mut response = StatusCode::SEE_OTHER.into_response();
            if let Ok(value) = HeaderValue::from_str(order.id.as_str()) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            response
        }
        Ok(Ok(Err(page))) => html(StatusCode::BAD_REQUEST, page),
        Ok(Err(DeskError::NotFound)) => order_not_found(),
        Ok(Err(DeskError::Conflict { message, .. })) => html(
            StatusCode::CONFLICT,
            error_page("This order cannot change now", &message),
        ),
        Ok(Err(e)) => {
            tracing::error!("changing an order: {e}");
            failed_page()
        }
        Err(e) => {
            tracing::error!("the order form task failed: {e}");
            failed_page()
        }
    }
}

fn order_not_found() -> Response {
    html(
        StatusCode::NOT_FOUND,
        error_page("No such order", "Check the link you followed."),
    )
}

/// The page for a failure of the host: the details are in its log only.
fn failed_page() -> Response {
    html(
        StatusCode::INTERNAL_SERVER_ERROR,
        error_page("Something went wrong", "Please try again later."),
    )
}

/// An HTML page for a browser: never cached, never framed, nothing loaded from elsewhere.
fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        ],
        body,
    )
        .into_response()
}

/// An error document for the panel, with the status `style` says.
pub(crate) fn panel_error(e: &BillmgrError, format: Format, style: PanelErrors) -> Response {
    match style {
        PanelErrors::Http => answer_error(e, format),
        PanelErrors::Billmanager => {
            let (content_type, body) = e.render(format);
            document(StatusCode::OK, content_type, body)
        }
    }
}

/// An error document with the HTTP status of its kind.
pub(crate) fn answer_error(e: &BillmgrError, format: Format) -> Response {
    let (content_type, body) = e.render(format);
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    document(status, content_type, body)
}

pub(crate) fn document(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response {
    let content_type = HeaderValue::from_str(content_type)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    let nosniff = HeaderValue::from_static("nosniff");
    (
        status,
        [
            (header::CONTENT_TYPE, content_type),
            (header::X_CONTENT_TYPE_OPTIONS, nosniff),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    //! The router in process: every error shape, method and limit the panel or the billing
    //! system can meet, without a socket.

    use std::sync::OnceLock;

    use axum::body::to_bytes;
    use axum::http::Request;
    use serde_json::Value;
    use tower::ServiceExt;

    use super::*;
    use crate::config::{Config, DEFAULTS, Source};
    use crate::runtime::Runtime;

    const TOKEN: &str = "router-token-0123456789";

    /// One host for every test: loading the plugin is the slow part. Its panel errors carry
    /// HTTP statuses, so that each refusal's kind shows.
    fn reseller(api: bool) -> Arc<Reseller> {
        static WITH: OnceLock<Arc<Reseller>> = OnceLock::new();
        static WITHOUT: OnceLock<Arc<Reseller>> = OnceLock::new();
        let load = |extra: &str| {
            let http = DEFAULTS.replace("[server]\n", "[server]\npanel_errors = \"http\"\n");
            let text = format!("{http}\n{extra}");
            let config = Config::parse(&text, Source::Embedded).expect("config");
            Arc::new(Reseller::new(Runtime::new(), config).expect("reseller"))
        };
        if api {
            WITH.get_or_init(|| load(&format!("[api]\ntoken = \"{TOKEN}\"\n")))
                .clone()
        } else {
            WITHOUT.get_or_init(|| load("")).clone()
        }
    }

    struct Reply {
        status: StatusCode,
        headers: axum::http::HeaderMap,
        body: Vec<u8>,
    }

    async fn send(app: Router, request: Request<Body>) -> Reply {
        let response = app.oneshot(request).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body")
            .to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    fn get(uri: &str) -> Request<Body> {
        Request::get(uri).body(Body::empty()).expect("request")
    }

    /// The `<error>`'s `type` and `object` of a BILLmanager XML error document.
    fn xml_error(body: &[u8]) -> (String, String) {
        let text = std::str::from_utf8(body).expect("UTF-8");
        let doc = roxmltree::Document::parse(text).expect("well-formed XML");
        let error = doc
            .root_element()
            .children()
            .find(|n| n.has_tag_name("error"))
            .expect("an <error>");
        let attr = |name| error.attribute(name).unwrap_or_default().to_owned();
        (attr("type"), attr("object"))
    }

    #[tokio::test]
    async fn panel_errors_are_billmanager_documents_in_the_asked_format() {
        let app = || app(reseller(false), None);
        let cases: &[(&str, u16, &str, &str)] = &[
            ("/billmgr?itemtype=addition", 400, "missed", "func"),
            ("/billmgr?func=nope", 404, "value", "func"),
            (
                "/billmgr?func=pricelist.export&itemtype=soft",
                400,
                "value",
                "itemtype",
            ),
            (
                "/billmgr?func=pricelist.export&itemtype=addition&out=html",
                400,
                "value",
                "out",
            ),
            (
                "/billmgr?func=pricelist.export&itemtype=addition&pricelist=x",
                400,
                "value",
                "pricelist",
            ),
            ("/elsewhere", 404, "missed", "path"),
        ];
        for (uri, status, kind, object) in cases {
            let reply = send(app(), get(uri)).await;
            assert_eq!(reply.status.as_u16(), *status, "{uri}");
            assert_eq!(
                reply.headers[header::CONTENT_TYPE],
                crate::billmgr::XML,
                "{uri}"
            );
            assert_eq!(
                xml_error(&reply.body),
                ((*kind).to_owned(), (*object).to_owned()),
                "{uri}"
            );
        }
        // The same refusal in JSON when JSON was asked for.
        let reply = send(
            app(),
            get("/billmgr?func=pricelist.export&itemtype=soft&out=json"),
        )
        .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert_eq!(reply.headers[header::CONTENT_TYPE], crate::billmgr::JSON);
        let v: Value = serde_json::from_slice(&reply.body).expect("JSON");
        assert_eq!(v["doc"]["error"]["$type"], "value");
        assert_eq!(v["doc"]["error"]["$object"], "itemtype");
    }

    #[tokio::test]
    async fn by_default_errors_come_with_200_as_billmanager_sends_them() {
        let config = Config::parse(
            &DEFAULTS.replace("[server]\n", "[server]\npaths = [\"/billing/isp\"]\n"),
            Source::Embedded,
        )
        .expect("config");
        assert_eq!(config.server.panel_errors, PanelErrors::Billmanager);
        let host = Arc::new(Reseller::new(Runtime::new(), config).expect("reseller"));
        for uri in ["/billmgr?func=nope", "/?func=pricelist.export&out=html"] {
            let reply = send(app(host.clone(), None), get(uri)).await;
            assert_eq!(reply.status, StatusCode::OK, "{uri}");
            assert!(!xml_error(&reply.body).0.is_empty(), "{uri}");
        }
        // A path no panel reads is a plain 404, still as a BILLmanager document.
        let reply = send(app(host.clone(), None), get("/elsewhere")).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND);
        assert_eq!(xml_error(&reply.body).1, "path");
        // The panel's query on every path a partner may register.
        for path in ["/", "/billmgr", "/manager/billmgr", "/billing/isp"] {
            let uri = format!(
                "{path}?func=pricelist.export&itemtype=addition&onlyavailable=on&lang=ru_RU"
            );
            let reply = send(app(host.clone(), None), get(&uri)).await;
            let text = String::from_utf8(reply.body).expect("UTF-8");
            assert!(text.contains("<pricelist><id>55361</id>"), "{uri}: {text}");
        }
        let reply = send(app(host.clone(), None), get("/billing/other")).await;
        assert_eq!(xml_error(&reply.body).1, "path");
    }

    #[tokio::test]
    async fn methods_and_sizes_are_bounded() {
        let app = || app(reseller(false), None);
        let put = Request::put("/billmgr?func=pricelist.export&itemtype=addition")
            .body(Body::empty())
            .expect("request");
        let reply = send(app(), put).await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(reply.headers[header::ALLOW], "GET, POST");
        assert_eq!(xml_error(&reply.body).1, "method");

        let long = format!("/billmgr?func=pricelist.export&x={}", "a".repeat(5000));
        let reply = send(app(), get(&long)).await;
        assert_eq!(reply.status, StatusCode::URI_TOO_LONG);
        assert_eq!(xml_error(&reply.body).1, "query");

        let form = Request::post("/billmgr")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!(
                "func=pricelist.export&x={}",
                "a".repeat(5000)
            )))
            .expect("request");
        let reply = send(app(), form).await;
        assert_eq!(reply.status, StatusCode::URI_TOO_LONG);

        // A form body is read like a query string.
        let form = Request::post("/manager/billmgr")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(
                "func=pricelist.export&itemtype=addition&pricelist=23221",
            ))
            .expect("request");
        let reply = send(app(), form).await;
        assert_eq!(reply.status, StatusCode::OK);
        let text = String::from_utf8(reply.body).expect("UTF-8");
        assert!(text.contains("<id>23221</id>"), "{text}");
    }

    #[tokio::test]
    async fn the_api_authorises_before_anything_else() {
        let off = send(app(reseller(false), None), get("/api/v1/plugin")).await;
        assert_eq!(off.status, StatusCode::NOT_FOUND);
        let v: Value = serde_json::from_slice(&off.body).expect("JSON");
        assert_eq!(v["error"]["code"], "api_disabled");

        let app = || app(reseller(true), None);
        let with = |uri: &str, token: Option<&str>| {
            let mut r = Request::get(uri);
            if let Some(token) = token {
                r = r.header(header::AUTHORIZATION, format!("Bearer {token}"));
            }
            r.body(Body::empty()).expect("request")
        };
        for token in [None, Some("wrong"), Some("")] {
            let reply = send(app(), with("/api/v1/plugin", token)).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{token:?}");
            assert_eq!(reply.headers[header::WWW_AUTHENTICATE], "Bearer");
            let v: Value = serde_json::from_slice(&reply.body).expect("JSON");
            assert_eq!(v["error"]["code"], "unauthorized");
        }
        // A body is not even looked at without the token.
        let post = Request::post("/api/v1/orders/01JQ3V6K8Z9X4N2B7C5D0E1F2G/paid")
            .body(Body::from("{not json"))
            .expect("request");
        let reply = send(app(), post).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);

        let reply = send(app(), with("/api/v1/plugin", Some(TOKEN))).await;
        assert_eq!(reply.status, StatusCode::OK);
        let v: Value = serde_json::from_slice(&reply.body).expect("JSON");
        assert_eq!(v["modules"], 5);
        assert_eq!(v["plugin"]["name"], "builtin");

        let cases: &[(&str, &str, StatusCode, &str)] = &[
            ("GET", "/api/v1/nowhere", StatusCode::NOT_FOUND, "not_found"),
            (
                "DELETE",
                "/api/v1/plugin",
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
            ),
            (
                "GET",
                "/api/v1/orders",
                StatusCode::SERVICE_UNAVAILABLE,
                "orders_unavailable",
            ),
            (
                "POST",
                "/api/v1/prices/refresh",
                StatusCode::SERVICE_UNAVAILABLE,
                "orders_unavailable",
            ),
        ];
        for (method, uri, status, code) in cases {
            let request = Request::builder()
                .method(*method)
                .uri(*uri)
                .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
                .body(Body::empty())
                .expect("request");
            let reply = send(app(), request).await;
            assert_eq!(reply.status, *status, "{method} {uri}");
            assert_eq!(
                reply.headers[header::CONTENT_TYPE],
                "application/json",
                "{method} {uri}"
            );
            let v: Value = serde_json::from_slice(&reply.body).expect("JSON");
            assert_eq!(v["error"]["code"], *code, "{method} {uri}");
        }
    }

    #[tokio::test]
    async fn buys_need_orders() {
        let reply = send(
            app(reseller(false), None),
            get("/billmgr?module=ddos-guard&license=1&module_id=23221"),
        )
        .await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            reply.headers[header::CONTENT_TYPE]
                .to_str()
                .is_ok_and(|ct| ct.starts_with("text/html"))
        );
        assert_eq!(
            reply.headers[header::CONTENT_SECURITY_POLICY],
            "default-src 'none'; style-src 'unsafe-inline'"
        );
    }
}
