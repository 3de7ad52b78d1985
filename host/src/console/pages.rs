//! The console's pages and actions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::session::{CSRF_REFUSED, Console, NoOperator, Operator, over_tls, set_cookie};
use super::{BASE, page, to};
use crate::billmgr::Params;
use crate::convert::panel_query;
use crate::money::Months;
use crate::orders::lifecycle::Finding;
use crate::orders::operation::{Operation, OperationState};
use crate::orders::reconcile::Options;
use crate::orders::store::{HistoryEntry, MAX_LIST_LIMIT};
use crate::orders::{DeskError, ListFilter, Order, OrderDesk, OrderId, OrderState};
use crate::reseller::Reseller;

/// What every page's frame shows.
pub struct Frame {
    title: String,
    base: &'static str,
    who: Option<String>,
    csrf: String,
    nav: &'static str,
    doubts: u64,
    notice: Option<String>,
    problem: Option<String>,
}

impl Frame {
    fn new(title: impl Into<String>, nav: &'static str, op: Option<&Operator>) -> Frame {
        Frame {
            title: title.into(),
            base: BASE,
            who: op.map(|o| o.who.clone()),
            csrf: op.map(|o| o.csrf.clone()).unwrap_or_default(),
            nav,
            doubts: 0,
            notice: None,
            problem: None,
        }
    }

    /// The frame with the count of what is in doubt (orders and operations).
    fn with_doubts(mut self, desk: Option<&OrderDesk>) -> Frame {
        if let Some(desk) = desk {
            let orders = desk
                .backend()
                .counts()
                .ok()
                .and_then(|c| c.get(&OrderState::InDoubt).copied())
                .unwrap_or(0);
            let operations = desk
                .backend()
                .operations_in(OperationState::InDoubt)
                .map(|o| u64::try_from(o.len()).unwrap_or(u64::MAX))
                .unwrap_or(0);
            self.doubts = orders + operations;
        }
        self
    }
}

#[derive(Template)]
#[template(path = "console/message.html")]
struct MessagePage {
    f: Frame,
    text: String,
    back: String,
}

/// A page that only says something.
pub(super) fn message(status: StatusCode, title: &str, text: &str) -> Response {
    render(
        status,
        &MessagePage {
            f: Frame::new(title, "", None),
            text: text.to_owned(),
            back: format!("{BASE}/"),
        },
    )
}

/// A request without an operator: the sign-in, or why not.
impl IntoResponse for NoOperator {
    fn into_response(self) -> Response {
        match self {
            NoOperator::Off => message(
                StatusCode::NOT_FOUND,
                "The console is off",
                "Configure api.token or console.password to use it.",
            ),
            NoOperator::SignIn => to("/signin"),
            NoOperator::Refused => message(
                StatusCode::UNAUTHORIZED,
                "Sign in first",
                "This needs a console session.",
            ),
        }
    }
}

pub(super) fn not_found() -> Response {
    message(StatusCode::NOT_FOUND, "Not found", "No such console page.")
}

fn render(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(body) => page(status, body),
        Err(e) => {
            tracing::error!("rendering a console page: {e}");
            page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "<!DOCTYPE html><title>Error</title><p>The page could not be shown.</p>".to_owned(),
            )
        }
    }
}

/// Runs blocking work (the database, the plugin, upstream) off the event loop.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DeskError> + Send + 'static,
) -> Result<T, DeskError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DeskError::Internal(format!("a console task failed: {e}")))?
}

/// A request refused, shown as a page that says why.
pub(super) struct Refusal {
    status: StatusCode,
    title: &'static str,
    text: &'static str,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        message(self.status, self.title, self.text)
    }
}

/// The order desk, or a page saying there is none.
fn desk_or_page(desk: Option<Arc<OrderDesk>>) -> Result<Arc<OrderDesk>, Refusal> {
    desk.ok_or(Refusal {
        status: StatusCode::SERVICE_UNAVAILABLE,
        title: "No orders here",
        text: "This server keeps no orders.",
    })
}

/// A form's fields, with its CSRF token checked.
fn form(op: &Operator, body: &Bytes) -> Result<Params, Refusal> {
    if body.len() > 16 * 1024 {
        return Err(Refusal {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            title: "Too much",
            text: "The form is too large.",
        });
    }
    let params = Params::parse(&[body]);
    if !op.csrf_ok(params.get("csrf")) {
        return Err(Refusal {
            status: CSRF_REFUSED,
            title: "Refused",
            text: "The form did not come from this session. Go back, reload the page and try \
                   again.",
        });
    }
    Ok(params)
}

pub(super) async fn home(_: Operator) -> Response {
    to("/orders")
}

#[derive(Template)]
#[template(path = "console/signin.html")]
struct SigninPage {
    f: Frame,
}

pub(super) async fn signin_form(State(reseller): State<Arc<Reseller>>) -> Response {
    if !reseller.active().config().console_enabled() {
        return NoOperator::Off.into_response();
    }
    render(
        StatusCode::OK,
        &SigninPage {
            f: Frame::new("Sign in", "", None),
        },
    )
}

pub(super) async fn signin(
    State(reseller): State<Arc<Reseller>>,
    State(console): State<Arc<Console>>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let active = reseller.active();
    let config = active.config();
    if !config.console_enabled() {
        return NoOperator::Off.into_response();
    }
    let client = extensions
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let refused = |status, problem: &str| {
        let mut f = Frame::new("Sign in", "", None);
        f.problem = Some(problem.to_owned());
        render(status, &SigninPage { f })
    };
    if !console.may_try(client) {
        return refused(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts from this address: wait a minute.",
        );
    }
    let params = Params::parse(&[&body]);
    let Some(who) = Console::who(config, params.get("secret").unwrap_or_default()) else {
        tracing::warn!(client = ?client, "console sign-in refused");
        return refused(
            StatusCode::UNAUTHORIZED,
            "That is not the token or the password.",
        );
    };
    let lifetime = Duration::from_secs(config.console.session_minutes.saturating_mul(60));
    let Ok(id) = console.start(who, lifetime) else {
        return message(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Sign-in failed",
            "No randomness for a session: see the host's log.",
        );
    };
    tracing::info!(who, client = ?client, "console sign-in");
    let mut response = to("/orders");
    let cookie = set_cookie(&id, over_tls(config, &headers), lifetime);
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

pub(super) async fn signout(
    op: Operator,
    State(reseller): State<Arc<Reseller>>,
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refused) = form(&op, &body) {
        return refused.into_response();
    }
    console.end(&op.session);
    let mut response = to("/signin");
    let secure = over_tls(reseller.active().config(), &headers);
    if let Ok(value) = HeaderValue::from_str(&set_cookie("", secure, Duration::ZERO)) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// An order as a row of the list.
struct Row {
    id: String,
    state: &'static str,
    licence: String,
    module: String,
    period: String,
    price: String,
    expires: String,
    created: String,
}

fn when(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
            ))
            .unwrap_or_default()
        })
        .unwrap_or_default()
}

fn months(m: Months) -> String {
    if m == Months::MONTH {
        "1 month".to_owned()
    } else {
        format!("{m} months")
    }
}

impl Row {
    fn of(o: &Order) -> Row {
        Row {
            id: o.id.to_string(),
            state: o.state.as_str(),
            licence: o.licence_id.clone(),
            module: o.service_name.clone(),
            period: months(o.period),
            price: o.price.to_string(),
            expires: crate::dates::opt(o.expires_on).unwrap_or_default(),
            created: when(o.created_ms),
        }
    }
}

/// The list's filters, as given.
#[derive(Default)]
struct Filter {
    state: String,
    licence: String,
    tariff: String,
    from: String,
    to: String,
}

#[derive(Template)]
#[template(path = "console/orders.html")]
struct OrdersPage {
    f: Frame,
    counts: Vec<(&'static str, u64)>,
    states: Vec<&'static str>,
    modules: Vec<(u64, String)>,
    filter: Filter,
    orders: Vec<Row>,
    prev: Option<String>,
    next: Option<String>,
}

const PAGE: u32 = 50;

pub(super) async fn orders(
    op: Operator,
    State(reseller): State<Arc<Reseller>>,
    State(desk): State<Option<Arc<OrderDesk>>>,
    RawQuery(query): RawQuery,
) -> Response {
    let desk = match desk_or_page(desk) {
        Ok(d) => d,
        Err(refusal) => return refusal.into_response(),
    };
    let query = query.unwrap_or_default();
    let params = Params::parse(&[query.as_bytes()]);
    let get = |k: &str| params.get(k).unwrap_or_default().trim().to_owned();
    let filter = Filter {
        state: get("state"),
        licence: get("licence"),
        tariff: get("tariff"),
        from: get("from"),
        to: get("to"),
    };
    let page_no: u32 = get("page").parse().unwrap_or(0).min(MAX_LIST_LIMIT / PAGE);
    let mut problem = None;
    let date = |text: &str, problem: &mut Option<String>| -> Option<i64> {
        if text.is_empty() {
            return None;
        }
        let format = time::macros::format_description!("[year]-[month]-[day]");
        match time::Date::parse(text, format) {
            Ok(d) => Some(d.midnight().assume_utc().unix_timestamp() * 1000),
            Err(_) => {
                *problem = Some(format!("“{text}” is not a date; it is ignored."));
                None
            }
        }
    };
    let list = ListFilter {
        state: filter.state.parse().ok(),
        licence_id: (!filter.licence.is_empty()).then(|| filter.licence.clone()),
        tariff_id: filter.tariff.parse().ok(),
        created_from_ms: date(&filter.from, &mut problem),
        created_to_ms: date(&filter.to, &mut problem).map(|ms| ms + 86_400_000),
        offset: page_no * PAGE,
        limit: PAGE + 1,
        ..ListFilter::default()
    };
    let task_desk = desk.clone();
    let found = blocking(move || {
        let orders = task_desk.list(&list)?;
        let counts = task_desk.backend().counts()?;
        Ok((orders, counts))
    })
    .await;
    let (mut orders, counts) = match found {
        Ok(found) => found,
        Err(e) => return failed(&e),
    };
    let more = orders.len() > PAGE as usize;
    orders.truncate(PAGE as usize);
    let link = |page: u32| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("state", &filter.state),
            ("licence", &filter.licence),
            ("tariff", &filter.tariff),
            ("from", &filter.from),
            ("to", &filter.to),
        ] {
            if !v.is_empty() {
                q.append_pair(k, v);
            }
        }
        q.append_pair("page", &page.to_string());
        q.finish()
    };
    let active = reseller.active();
    let config = active.config();
    let mut f = Frame::new("Orders", "orders", Some(&op)).with_doubts(Some(&desk));
    f.problem = problem;
    let template = OrdersPage {
        f,
        counts: counts.iter().map(|(s, n)| (s.as_str(), *n)).collect(),
        states: OrderState::ALL.iter().map(|s| s.as_str()).collect(),
        modules: config
            .catalogue
            .modules
            .iter()
            .map(|m| (config.tariff_id(m), m.name.clone()))
            .collect(),
        orders: orders.iter().map(Row::of).collect(),
        prev: page_no.checked_sub(1).map(link),
        next: more.then(|| link(page_no + 1)),
        filter,
    };
    render(StatusCode::OK, &template)
}

/// An order's facts as the page shows them.
struct Facts {
    id: String,
    state: &'static str,
    licence: String,
    ip: String,
    module: String,
    raw_module: String,
    tariff: u64,
    period: String,
    price: String,
    service: String,
    expires: String,
    upstream_status: String,
    fields: String,
    waiting: String,
    attempts: u32,
    last_error: String,
}

impl Facts {
    fn of(o: &Order) -> Facts {
        Facts {
            id: o.id.to_string(),
            state: o.state.as_str(),
            licence: o.licence_id.clone(),
            ip: o.licence_ip.map(|ip| format!("({ip})")).unwrap_or_default(),
            module: o.service_name.clone(),
            raw_module: o.module.clone().unwrap_or_default(),
            tariff: o.tariff_id,
            period: months(o.period),
            price: o.price.to_string(),
            service: o
                .upstream_service_id
                .clone()
                .unwrap_or_else(|| "none yet".to_owned()),
            expires: crate::dates::opt(o.expires_on).unwrap_or_else(|| "unknown".to_owned()),
            upstream_status: o
                .upstream_status
                .as_ref()
                .map(|s| format!("(upstream: {s})"))
                .unwrap_or_default(),
            fields: if o.fields.is_empty() {
                "none".to_owned()
            } else {
                o.fields
                    .iter()
                    .map(|(k, v)| format!("{k} = {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            waiting: o.waiting.clone().unwrap_or_default(),
            attempts: o.attempts,
            last_error: o.last_error.clone().unwrap_or_default(),
        }
    }
}

/// An input of an action's form.
struct Input {
    name: &'static str,
    label: &'static str,
    kind: &'static str,
    required: bool,
}

/// An action the order's state allows.
struct Action {
    name: &'static str,
    label: String,
    confirm: String,
    fields: Vec<Input>,
    operation: Option<i64>,
}

fn action(name: &'static str, label: &str, confirm: &str, fields: Vec<Input>) -> Action {
    Action {
        name,
        label: label.to_owned(),
        confirm: confirm.to_owned(),
        fields,
        operation: None,
    }
}

fn input(name: &'static str, label: &'static str, kind: &'static str, required: bool) -> Input {
    Input {
        name,
        label,
        kind,
        required,
    }
}

/// The actions `order`'s state (and its operations) allow.
fn actions(order: &Order, operations: &[Operation]) -> Vec<Action> {
    let key = || {
        input(
            "key",
            "Idempotency key (optional, e.g. the invoice)",
            "text",
            false,
        )
    };
    let mut list = match order.state {
        OrderState::New => vec![
            action("paid", "Mark paid", "The customer paid", vec![]),
            action("cancel", "Cancel", "Cancel this unpaid order", vec![]),
        ],
        OrderState::Paid => vec![
            action(
                "placed",
                "Record as placed",
                "I ordered it upstream by hand",
                vec![input("service_id", "Service ID upstream", "text", true)],
            ),
            action("cancel", "Cancel", "Cancel and refund it", vec![]),
        ],
        OrderState::Failed => vec![
            action("retry", "Retry", "Order it upstream again", vec![]),
            action("cancel", "Cancel", "Cancel and refund it", vec![]),
        ],
        OrderState::InDoubt => vec![
            action(
                "placed",
                "Found upstream",
                "I found the module upstream; record its service ID",
                vec![input("service_id", "Service ID upstream", "text", true)],
            ),
            action(
                "retry",
                "Absent upstream: order again",
                "I checked upstream: the module was not ordered",
                vec![],
            ),
        ],
        OrderState::Placed | OrderState::Suspended => {
            let renew = || {
                action(
                    "renew",
                    "Renew",
                    "The customer paid for the renewal",
                    vec![input("period", "Months", "number", false), key()],
                )
            };
            let remove = || {
                action(
                    "remove",
                    "Remove",
                    "Remove the module upstream",
                    vec![key()],
                )
            };
            if order.state == OrderState::Suspended {
                vec![
                    action(
                        "resume",
                        "Resume",
                        "Resume the module upstream",
                        vec![key()],
                    ),
                    renew(),
                    remove(),
                ]
            } else {
                vec![
                    action(
                        "quote",
                        "Quote a renewal",
                        "Ask upstream (nothing is renewed)",
                        vec![input("period", "Months", "number", false)],
                    ),
                    renew(),
                    action(
                        "suspend",
                        "Suspend",
                        "Suspend the module upstream",
                        vec![key()],
                    ),
                    action(
                        "rebind",
                        "Move to another licence",
                        "Bind the module to the licence given",
                        vec![
                            input("licence", "Licence", "text", true),
                            input("ip", "IP (optional)", "text", false),
                            key(),
                        ],
                    ),
                    remove(),
                ]
            }
        }
        OrderState::Placing | OrderState::Cancelled | OrderState::Removed => vec![],
    };
    for op in operations
        .iter()
        .filter(|o| o.state == OperationState::InDoubt)
    {
        list.push(Action {
            operation: Some(op.id),
            ..action(
                "resolve-done",
                &format!("Operation {} ({}) was done upstream", op.id, op.kind),
                "I checked upstream: it was done",
                vec![input("expires", "New expiry (a renewal)", "date", false)],
            )
        });
        list.push(Action {
            operation: Some(op.id),
            ..action(
                "resolve-not-done",
                &format!("Operation {} ({}) was not done", op.id, op.kind),
                "I checked upstream: it was not done",
                vec![],
            )
        });
    }
    list
}

/// An operation as a row.
struct OpRow {
    id: i64,
    kind: &'static str,
    request: String,
    key: String,
    state: &'static str,
    actor: String,
    at: String,
    outcome: String,
}

/// One line of the history.
struct Line {
    at: String,
    text: String,
}

fn history_line(entry: &HistoryEntry) -> Line {
    match entry {
        HistoryEntry::Transition(t) => {
            let what = match t.from {
                Some(from) if from == t.to => format!("{} ({})", t.to, "changed"),
                Some(from) => format!("{from} → {}", t.to),
                None => format!("created, {}", t.to),
            };
            let mut text = format!("{what} by {}", t.actor);
            for extra in [&t.note, &t.error, &t.service_id].into_iter().flatten() {
                text.push_str(" — ");
                text.push_str(extra);
            }
            Line {
                at: when(t.at_ms),
                text,
            }
        }
        HistoryEntry::UpstreamCall(c) => Line {
            at: when(c.at_ms),
            text: format!(
                "upstream {} ({}): {}",
                c.call.func,
                c.call.outcome.as_str(),
                c.call.detail
            ),
        },
    }
}

#[derive(Template)]
#[template(path = "console/order.html")]
struct OrderPage {
    f: Frame,
    order: Facts,
    actions: Vec<Action>,
    operations: Vec<OpRow>,
    history: Vec<Line>,
}

async fn order_page(
    op: &Operator,
    desk: Arc<OrderDesk>,
    id: OrderId,
    notice: Option<String>,
    problem: Option<(StatusCode, String)>,
) -> Response {
    let task_desk = desk.clone();
    let found = blocking(move || {
        Ok((
            task_desk.get(&id)?,
            task_desk.history(&id)?,
            task_desk.operations(&id)?,
        ))
    })
    .await;
    let (order, history, operations) = match found {
        Ok(found) => found,
        Err(DeskError::NotFound) => {
            return message(StatusCode::NOT_FOUND, "No such order", "Check the link.");
        }
        Err(e) => return failed(&e),
    };
    let mut f =
        Frame::new(format!("Order {}", order.id), "orders", Some(op)).with_doubts(Some(&desk));
    f.notice = notice;
    let status = problem.as_ref().map_or(StatusCode::OK, |(s, _)| *s);
    f.problem = problem.map(|(_, p)| p);
    let template = OrderPage {
        f,
        actions: actions(&order, &operations),
        order: Facts::of(&order),
        operations: operations
            .iter()
            .map(|o| OpRow {
                id: o.id,
                kind: o.kind.as_str(),
                request: if o.request.as_object().is_some_and(|m| m.is_empty()) {
                    String::new()
                } else {
                    o.request.to_string()
                },
                key: o.key.clone().unwrap_or_default(),
                state: o.state.as_str(),
                actor: match &o.settled_by {
                    Some(by) => format!("{}, settled by {by}", o.actor),
                    None => o.actor.clone(),
                },
                at: when(o.updated_ms),
                outcome: o
                    .error
                    .clone()
                    .or_else(|| o.result.as_ref().map(ToString::to_string))
                    .unwrap_or_default(),
            })
            .collect(),
        history: history.iter().map(history_line).collect(),
    };
    render(status, &template)
}

pub(super) async fn order(
    op: Operator,
    State(desk): State<Option<Arc<OrderDesk>>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let desk = match desk_or_page(desk) {
        Ok(d) => d,
        Err(refusal) => return refusal.into_response(),
    };
    let Ok(id) = OrderId::parse(&id) else {
        return message(StatusCode::NOT_FOUND, "No such order", "Check the link.");
    };
    let query = query.unwrap_or_default();
    let notice = Params::parse(&[query.as_bytes()])
        .get("done")
        .map(|d| format!("Done: {}.", d.chars().take(80).collect::<String>()));
    order_page(&op, desk, id, notice, None).await
}

/// Runs an action of the order page, then shows the order again.
pub(super) async fn act(
    op: Operator,
    State(desk): State<Option<Arc<OrderDesk>>>,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let desk = match desk_or_page(desk) {
        Ok(d) => d,
        Err(refusal) => return refusal.into_response(),
    };
    let params = match form(&op, &body) {
        Ok(p) => p,
        Err(refused) => return refused.into_response(),
    };
    let Ok(id) = OrderId::parse(&id) else {
        return message(StatusCode::NOT_FOUND, "No such order", "Check the link.");
    };
    if params.get("confirm") != Some("yes") {
        let problem = "Tick the confirmation to do that.".to_owned();
        return order_page(
            &op,
            desk,
            id,
            None,
            Some((StatusCode::BAD_REQUEST, problem)),
        )
        .await;
    }
    let actor = op.actor();
    let get = |k: &str| {
        params
            .get(k)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let (key, period, expires) = (get("key"), get("period"), get("expires"));
    let (service_id, licence, ip, operation) = (
        get("service_id"),
        get("licence"),
        get("ip"),
        get("operation"),
    );
    let task_desk = desk.clone();
    let task_id = id.clone();
    let label = action.clone();
    let done = blocking(move || {
        let desk = task_desk;
        let id = task_id;
        let invalid = |m: &str| DeskError::Invalid(m.to_owned());
        let period = period
            .map(|p| p.parse::<Months>().map_err(|_| invalid("months: 1 to 120")))
            .transpose()?;
        let date = |d: Option<String>| {
            d.map(|d| {
                time::Date::parse(
                    &d,
                    time::macros::format_description!("[year]-[month]-[day]"),
                )
                .map_err(|_| invalid("a date is YYYY-MM-DD"))
            })
            .transpose()
        };
        let key = key.as_deref();
        match action.as_str() {
            "quote" => {
                let q = desk.quote_renewal(&id, period)?;
                let cost = q
                    .cost
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "not said".into());
                let until = crate::dates::opt(q.new_expires_at).unwrap_or_else(|| "?".into());
                return Ok(Some(format!(
                    "a renewal for {} would cost {cost} and run until {until}",
                    months(q.period_months)
                )));
            }
            "paid" => desk.mark_paid(&id, &actor).map(drop),
            "cancel" => desk.cancel(&id, &actor).map(drop),
            "placed" => {
                let service = service_id.ok_or_else(|| invalid("the service ID is needed"))?;
                desk.mark_placed(&id, &service, &actor).map(drop)
            }
            "retry" => {
                let absent = desk.get(&id)?.state == OrderState::InDoubt;
                desk.retry(&id, absent, &actor).map(drop)
            }
            "renew" => desk
                .renew(&id, period, key, date(expires)?, &actor)
                .map(drop),
            "suspend" => desk.suspend(&id, key, &actor).map(drop),
            "resume" => desk.resume(&id, key, &actor).map(drop),
            "remove" => desk.remove(&id, key, &actor).map(drop),
            "rebind" => {
                let licence = licence.ok_or_else(|| invalid("the licence is needed"))?;
                let ip = ip
                    .map(|ip| ip.parse().map_err(|_| invalid("not an IP address")))
                    .transpose()?;
                desk.rebind(&id, &licence, ip, key, &actor).map(drop)
            }
            "resolve-done" | "resolve-not-done" => {
                let operation: i64 = operation
                    .and_then(|o| o.parse().ok())
                    .ok_or_else(|| invalid("which operation?"))?;
                let finding = if action == "resolve-done" {
                    Finding::Done(date(expires)?)
                } else {
                    Finding::NotDone
                };
                desk.resolve_operation(&id, operation, finding, &actor)
                    .map(drop)
            }
            _ => Err(DeskError::NotFound),
        }
        .map(|()| None)
    })
    .await;
    match done {
        Ok(Some(told)) => order_page(&op, desk, id, Some(told), None).await,
        Ok(None) => {
            tracing::info!(order = %id, action = label, who = op.who, "console action");
            let done: String = form_urlencoded::byte_serialize(label.as_bytes()).collect();
            to(&format!("/orders/{id}?done={done}"))
        }
        Err(DeskError::NotFound) if OrderId::parse(id.as_str()).is_ok() => message(
            StatusCode::NOT_FOUND,
            "No such action",
            "Go back to the order.",
        ),
        Err(e) => {
            let status = match &e {
                DeskError::Invalid(_) => StatusCode::BAD_REQUEST,
                DeskError::Conflict { .. }
                | DeskError::OperationOpen { .. }
                | DeskError::Unavailable(_) => StatusCode::CONFLICT,
                DeskError::Upstream { .. } => StatusCode::BAD_GATEWAY,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            if status == StatusCode::INTERNAL_SERVER_ERROR {
                tracing::error!(order = %id, "console action {label}: {e}");
            }
            order_page(&op, desk, id, None, Some((status, e.to_string()))).await
        }
    }
}

/// A failure of the host: the details stay in its log.
fn failed(e: &DeskError) -> Response {
    tracing::error!("console: {e}");
    message(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "See the host's log.",
    )
}

/// A component as the plugin page shows it.
struct Component {
    role: &'static str,
    name: String,
    sha256: String,
    contract: String,
    calls: u64,
    faults: u64,
    limit_hits: String,
    limits: String,
}

#[derive(Template)]
#[template(path = "console/plugin.html")]
struct PluginPage {
    f: Frame,
    components: Vec<Component>,
    modules: usize,
    cache: String,
    source: String,
    shadow: String,
}

fn component(role: &'static str, h: &crate::runtime::Harness) -> Component {
    let stats = h.stats();
    let hits: Vec<String> = crate::limits::Limit::ALL
        .iter()
        .filter(|l| stats.limit_hits(**l) > 0)
        .map(|l| format!("{}: {}", l.key(), stats.limit_hits(*l)))
        .collect();
    let limits = h.limits();
    Component {
        role,
        name: h.name().to_string(),
        sha256: h.sha256().to_owned(),
        contract: h.contract_version().to_owned(),
        calls: stats.calls(),
        faults: stats.faults(),
        limit_hits: if hits.is_empty() {
            "none".to_owned()
        } else {
            hits.join(", ")
        },
        limits: format!(
            "{} instructions, {} ms, {} KiB of memory",
            limits.fuel,
            limits.deadline_ms,
            limits.memory_bytes / 1024
        ),
    }
}

fn plugin_page(op: &Operator, reseller: &Reseller, desk: Option<&OrderDesk>) -> PluginPage {
    let active = reseller.active();
    let mut components = vec![component("Plugin", active.plugin())];
    if let Some(policy) = active.policy() {
        components.push(component("Pricing policy", policy));
    }
    let shadow = active.shadow().map(|shadow| {
        components.push(component("Candidate policy", shadow.candidate()));
        serde_json::to_string_pretty(&shadow.report()).unwrap_or_default()
    });
    let config = active.config();
    PluginPage {
        f: Frame::new("Plugin", "plugin", Some(op)).with_doubts(desk),
        components,
        modules: config.catalogue.modules.len(),
        cache: match config.server.answer_cache {
            0 => "off".to_owned(),
            n => format!("up to {n} rendered price lists"),
        },
        source: config.source.name(),
        shadow: shadow.unwrap_or_default(),
    }
}

pub(super) async fn plugin(
    op: Operator,
    State(reseller): State<Arc<Reseller>>,
    State(desk): State<Option<Arc<OrderDesk>>>,
) -> Response {
    render(
        StatusCode::OK,
        &plugin_page(&op, &reseller, desk.as_deref()),
    )
}

pub(super) async fn reload(
    op: Operator,
    State(reseller): State<Arc<Reseller>>,
    State(desk): State<Option<Arc<OrderDesk>>>,
    body: Bytes,
) -> Response {
    let params = match form(&op, &body) {
        Ok(p) => p,
        Err(refused) => return refused.into_response(),
    };
    let mut outcome = (None, None);
    if params.get("confirm") == Some("yes") {
        let task = reseller.clone();
        outcome = match tokio::task::spawn_blocking(move || task.reload()).await {
            Ok(Ok(_)) => {
                tracing::info!(who = op.who, "console reload");
                (
                    Some("Reloaded: the new configuration serves.".to_owned()),
                    None,
                )
            }
            Ok(Err(e)) => (
                None,
                Some(format!(
                    "Refused; the previous configuration keeps serving: {}: {}",
                    e.key, e.message
                )),
            ),
            Err(e) => (None, Some(format!("The reload failed: {e}"))),
        };
    } else {
        outcome.1 = Some("Tick the confirmation to reload.".to_owned());
    }
    let mut page = plugin_page(&op, &reseller, desk.as_deref());
    page.f.notice = outcome.0;
    let status = if outcome.1.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    page.f.problem = outcome.1;
    render(status, &page)
}

/// One line of the prices table.
struct PriceRow {
    module: String,
    tariff: u64,
    period: String,
    cost: String,
    price: String,
    margin: String,
    /// The candidate policy's price, by its last shadow run; empty without a candidate.
    candidate: String,
}

#[derive(Template)]
#[template(path = "console/prices.html")]
struct PricesPage {
    f: Frame,
    rows: Vec<PriceRow>,
    balance: String,
    /// A candidate policy is configured: its column is shown.
    candidate: bool,
}

/// The prices page, with `said` (what an action did) on it.
pub(super) async fn prices(
    op: Operator,
    State(reseller): State<Arc<Reseller>>,
    State(desk): State<Option<Arc<OrderDesk>>>,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    let said = Params::parse(&[query.as_bytes()])
        .get("said")
        .map(|s| s.chars().take(200).collect::<String>());
    prices_page(op, reseller, desk, said).await
}

async fn prices_page(
    op: Operator,
    reseller: Arc<Reseller>,
    desk: Option<Arc<OrderDesk>>,
    said: Option<String>,
) -> Response {
    let task = reseller.clone();
    let task_desk = desk.clone();
    let built = tokio::task::spawn_blocking(move || {
        let active = task.active();
        let config = active.config();
        let doc = active.export_prices(&panel_query(None, false));
        // The candidate's prices where its last shadow run differed; the live ones elsewhere.
        let compared = active.shadow().map(|s| s.last_comparison());
        let candidate_price = |tariff: u64, months: Months, live: &str| match &compared {
            None => String::new(),
            Some(None) => "not compared yet".to_owned(),
            Some(Some(c)) => match c
                .differences
                .iter()
                .find(|d| d.tariff_id == tariff && d.months == months.get())
            {
                None => format!("{live} (same)"),
                Some(d) => match (&d.candidate, d.by_how_much()) {
                    (Some(m), Some((delta, _))) => format!(
                        "{} {} ({delta:+})",
                        rust_decimal::Decimal::new(m.units, 4),
                        m.currency
                    ),
                    (Some(m), None) => {
                        format!("{} {}", rust_decimal::Decimal::new(m.units, 4), m.currency)
                    }
                    (None, _) => "not offered".to_owned(),
                },
            },
        };
        let mut rows = Vec::new();
        let mut problem = None;
        match doc {
            Ok(doc) => {
                for module in &config.catalogue.modules {
                    let tariff = config.tariff_id(module);
                    for (months, cost) in module.cost.iter() {
                        let Some(price) =
                            crate::orders::buy::price_in_list(&doc.body, tariff, months)
                        else {
                            continue;
                        };
                        let currency = config.currency_of(module);
                        let margin = if &price.currency == currency {
                            let m = price.amount.decimal() - cost.decimal();
                            format!("{m} {currency}")
                        } else {
                            "—".to_owned()
                        };
                        rows.push(PriceRow {
                            module: module.name.clone(),
                            tariff,
                            period: self::months(months),
                            cost: format!("{cost} {currency}"),
                            candidate: candidate_price(tariff, months, &price.to_string()),
                            price: price.to_string(),
                            margin,
                        });
                    }
                }
            }
            Err(e) => problem = Some(format!("The price list cannot be computed: {e}")),
        }
        let balance = match task_desk.as_ref().map(|d| d.stored_balance()) {
            Some(Ok(Some(b))) => format!(
                "{} (read {}){}",
                b.balance,
                when(b.read_ms),
                if b.low { " — below the alert" } else { "" }
            ),
            Some(Ok(None)) => "not read yet".to_owned(),
            Some(Err(e)) => format!("unknown: {e}"),
            None => "no orders are kept here".to_owned(),
        };
        (rows, balance, problem, compared.is_some())
    })
    .await;
    let (rows, balance, problem, candidate) = match built {
        Ok(b) => b,
        Err(e) => {
            tracing::error!("the prices page task failed: {e}");
            return message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "See the host's log.",
            );
        }
    };
    let mut f = Frame::new("Prices", "prices", Some(&op)).with_doubts(desk.as_deref());
    f.problem = problem;
    f.notice = said;
    render(
        StatusCode::OK,
        &PricesPage {
            f,
            rows,
            balance,
            candidate,
        },
    )
}

/// A reconciliation's report as the page shows it.
struct Summary {
    doubts: Vec<(String, String)>,
    unknown: Vec<String>,
    differences: Vec<String>,
}

#[derive(Template)]
#[template(path = "console/reconcile.html")]
struct ReconcilePage {
    f: Frame,
    report: Option<Summary>,
}

pub(super) async fn reconcile_form(
    op: Operator,
    State(desk): State<Option<Arc<OrderDesk>>>,
) -> Response {
    let f = Frame::new("Reconcile", "reconcile", Some(&op)).with_doubts(desk.as_deref());
    render(StatusCode::OK, &ReconcilePage { f, report: None })
}

pub(super) async fn reconcile(
    op: Operator,
    State(desk): State<Option<Arc<OrderDesk>>>,
    body: Bytes,
) -> Response {
    let desk = match desk_or_page(desk) {
        Ok(d) => d,
        Err(refusal) => return refusal.into_response(),
    };
    let params = match form(&op, &body) {
        Ok(p) => p,
        Err(refused) => return refused.into_response(),
    };
    let apply = params.get("mode") == Some("apply");
    let mut f = Frame::new("Reconcile", "reconcile", Some(&op));
    if apply && params.get("confirm") != Some("yes") {
        f.problem = Some("Tick the confirmation to apply.".to_owned());
        let f = f.with_doubts(Some(&desk));
        return render(StatusCode::BAD_REQUEST, &ReconcilePage { f, report: None });
    }
    let options = Options {
        apply,
        import: false,
        unambiguous_only: false,
        resolve_doubts: false,
    };
    let actor = op.actor();
    let task_desk = desk.clone();
    let report = blocking(move || task_desk.reconcile(options, &actor)).await;
    let (status, report) = match report {
        Ok(r) => (StatusCode::OK, Some(r)),
        Err(e) => {
            f.problem = Some(e.to_string());
            (StatusCode::BAD_GATEWAY, None)
        }
    };
    let summary = report.map(|r| {
        let mut doubts: Vec<(String, String)> = r
            .in_doubt
            .iter()
            .map(|d| {
                let resolved = d
                    .resolved
                    .as_deref()
                    .map(|r| format!(" → {r}"))
                    .unwrap_or_default();
                (d.order_id.to_string(), format!("{}{resolved}", d.evidence))
            })
            .collect();
        doubts.extend(r.operations_in_doubt.iter().map(|d| {
            let resolved = d
                .resolved
                .as_deref()
                .map(|r| format!(" → {r}"))
                .unwrap_or_default();
            (
                d.order_id.to_string(),
                format!(
                    "operation {} ({}): {}{resolved}",
                    d.operation, d.kind, d.evidence
                ),
            )
        }));
        let service = |s: &crate::orders::reconcile::Service| {
            let mut fields = BTreeMap::new();
            fields.insert("licence", s.licence_id.clone().unwrap_or_default());
            fields.insert(
                "tariff",
                s.tariff_id.map(|t| t.to_string()).unwrap_or_default(),
            );
            fields.insert("status", s.status.to_owned());
            format!(
                "service {} ({})",
                s.service_id,
                fields
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        Summary {
            doubts,
            unknown: r
                .unknown_upstream
                .iter()
                .map(|u| service(&u.service))
                .collect(),
            differences: r
                .differences
                .iter()
                .map(|d| {
                    format!(
                        "order {}: {} is {} here, {} upstream{}",
                        d.order_id,
                        d.field,
                        d.ours,
                        d.upstream,
                        if d.updated { " (now followed)" } else { "" }
                    )
                })
                .collect(),
        }
    });
    if apply {
        f.notice = Some("Applied what the evidence says.".to_owned());
    }
    let f = f.with_doubts(Some(&desk));
    render(status, &ReconcilePage { f, report: summary })
}

/// Fetches upstream's prices now.
pub(super) async fn refresh_prices(
    op: Operator,
    State(desk): State<Option<Arc<OrderDesk>>>,
    body: Bytes,
) -> Response {
    prices_action(op, desk, body, |desk| {
        let r = desk.refresh_prices()?;
        Ok(format!(
            "upstream's prices fetched: {} modules changed",
            r.modules_updated
        ))
    })
    .await
}

/// Reads the balance upstream now.
pub(super) async fn read_balance(
    op: Operator,
    State(desk): State<Option<Arc<OrderDesk>>>,
    body: Bytes,
) -> Response {
    prices_action(op, desk, body, |desk| {
        let b = desk.read_balance()?;
        Ok(format!("the balance upstream is {}", b.balance))
    })
    .await
}

async fn prices_action(
    op: Operator,
    desk: Option<Arc<OrderDesk>>,
    body: Bytes,
    run: impl FnOnce(&OrderDesk) -> Result<String, DeskError> + Send + 'static,
) -> Response {
    let desk = match desk_or_page(desk) {
        Ok(d) => d,
        Err(refusal) => return refusal.into_response(),
    };
    if let Err(refused) = form(&op, &body) {
        return refused.into_response();
    }
    let task = desk.clone();
    let outcome = blocking(move || run(&task)).await;
    let (notice, problem) = match outcome {
        Ok(told) => (Some(told), None),
        Err(e) => (None, Some(e.to_string())),
    };
    // The page again, with what happened said on it.
    let text = notice.or(problem).unwrap_or_default();
    let said: String = form_urlencoded::byte_serialize(text.as_bytes()).collect();
    to(&format!("/prices?said={said}"))
}

#[derive(Template)]
#[template(path = "console/events.html")]
struct EventsPage {
    f: Frame,
    webhook: String,
    events: Vec<(i64, String, &'static str, String)>,
}

pub(super) async fn events(
    op: Operator,
    State(reseller): State<Arc<Reseller>>,
    State(desk): State<Option<Arc<OrderDesk>>>,
) -> Response {
    let desk = match desk_or_page(desk) {
        Ok(d) => d,
        Err(refusal) => return refusal.into_response(),
    };
    let task = desk.clone();
    let found = blocking(move || {
        let backend = task.backend();
        let (undelivered, _) = backend.undelivered()?;
        // The newest hundred: find where they start.
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let batch = backend.events_after(after, 1000)?;
            let Some(last) = batch.last() else { break };
            after = last.id;
            all.extend(batch);
            if all.len() > 10_000 {
                all.drain(..all.len() - 100);
            }
        }
        let start = all.len().saturating_sub(100);
        Ok((all.split_off(start), undelivered))
    })
    .await;
    let (events, undelivered) = match found {
        Ok(f) => f,
        Err(e) => return failed(&e),
    };
    let webhook = match &reseller.active().config().events.webhook_url {
        Some(_) => format!("configured, {undelivered} waiting for delivery"),
        None => "none; the billing system polls /api/v1/events".to_owned(),
    };
    let f = Frame::new("Events", "events", Some(&op)).with_doubts(Some(&desk));
    let events = events
        .iter()
        .rev()
        .map(|e| {
            (
                e.id,
                when(e.at_ms),
                e.kind.as_str(),
                e.order_id
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            )
        })
        .collect();
    render(StatusCode::OK, &EventsPage { f, webhook, events })
}
