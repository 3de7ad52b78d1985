//! Serving a router over TCP with every peer bounded: how long it may take to send a request's
//! head (and so how long an idle connection stays open) and body, how many connections are
//! served at once, and how long a shutdown waits for the connections still open.
//!
//! Connections are served by hyper's HTTP/1.1 server, which reads request heads into a bounded
//! buffer and times them out; the handlers read bodies through [`read_body`], which refuses a
//! body larger than the route takes before reading a byte of it, and times it out as a whole.
//! A request hyper cannot parse (not HTTP, a head too large, a target too long) is answered by
//! hyper itself with an empty body; [`Answering`] replaces that answer with the protocol's own
//! error document, BILLmanager's or the API's, since the router never sees such a request.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::billmgr::BillmgrError;
use crate::bindings::pricing::Format;
use crate::config::Server;
use crate::metrics;

/// The largest request head read, in bytes; a larger one is answered 431 (or 414 when its
/// target alone passes 65,534 bytes).
pub const MAX_HEAD_BYTES: usize = 80 * 1024;

/// How often, at most, reaching the connection cap is logged.
const CAP_LOG_EVERY: Duration = Duration::from_secs(60);

/// The bounds of [`serve`], from `[server]`.
#[derive(Clone, Debug)]
pub struct Limits {
    /// From a connection's start, or its previous answer, to the end of a request's head.
    pub header_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// How long a shutdown waits for open connections.
    pub shutdown_timeout: Duration,
}

impl Limits {
    /// The bounds `server` configures.
    pub fn of(server: &Server) -> Limits {
        Limits {
            header_timeout: Duration::from_millis(server.header_timeout_ms),
            max_connections: server.max_connections.max(1),
            shutdown_timeout: Duration::from_millis(server.shutdown_timeout_ms),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::of(&Server::default())
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` completes; then stops
/// accepting, lets the requests in flight finish, closes idle connections, and returns once
/// every connection is closed or `limits.shutdown_timeout` has passed. Handlers can extract
/// `ConnectInfo<SocketAddr>`, the peer's address.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    let mut last_warned: Option<Instant> = None;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                metrics::global().connection_cap_reached.inc();
                if last_warned.is_none_or(|t| t.elapsed() >= CAP_LOG_EVERY) {
                    tracing::warn!(
                        "connection cap reached: {} connections are open (server.max_connections); \
                         new connections wait until one closes",
                        limits.max_connections
                    );
                    last_warned = Some(Instant::now());
                }
                tokio::select! {
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = router
            .clone()
            .map_request(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            });
        let connection = http.serve_connection(
            TokioIo::new(Answering::new(stream)),
            TowerToHyperService::new(service),
        );
        let connection = graceful.watch(connection);
        let open = Open::new();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, "connection closed: {e}");
            }
            drop(open);
            drop(slot);
        });
    }
    drop(listener);
    tracing::info!("no longer accepting connections; finishing the requests in flight");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("every connection is closed"),
        () = tokio::time::sleep(limits.shutdown_timeout) => tracing::warn!(
            "connections still open after {} ms (server.shutdown_timeout_ms); closing them",
            limits.shutdown_timeout.as_millis()
        ),
    }
    Ok(())
}

/// Counts an open connection for as long as it lives.
struct Open;

impl Open {
    fn new() -> Open {
        metrics::global().connections_open.inc();
        Open
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        metrics::global().connections_open.dec();
    }
}

/// A failed `accept`: a peer that left is nothing; running out of file descriptors waits a
/// little, so that connections closing can free some, instead of spinning.
async fn accept_failed(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    ) {
        return;
    }
    tracing::error!("cannot accept a connection: {e}");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Why a request's body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Larger than the route takes (said by its length, or found while reading).
    #[error("the body is larger than {0} bytes")]
    TooLarge(usize),
    /// Not received within the time allowed.
    #[error("the body did not arrive within {} ms", .0.as_millis())]
    TimedOut(Duration),
    /// The connection failed while reading it.
    #[error("the body cannot be read: {0}")]
    Failed(String),
}

/// Reads a request's body whole: at most `max` bytes (a larger declared length is refused
/// before a byte is read) within `timeout` for all of it.
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    max: usize,
    timeout: Duration,
) -> Result<Bytes, BodyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge(max));
    }
    match tokio::time::timeout(timeout, Limited::new(body, max).collect()).await {
        Err(_) => Err(BodyError::TimedOut(timeout)),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(BodyError::TooLarge(max)),
        Ok(Err(e)) => Err(BodyError::Failed(e.to_string())),
    }
}

/// How much of a request's start is kept to tell which protocol it spoke.
const START_BYTES: usize = 64;

/// A connection that answers the requests hyper refuses itself (400, 414, 431, sent with an
/// empty body before the router sees the request) with the protocol's error document: the
/// API's JSON for a target under `/api/`, BILLmanager's XML for any other.
///
/// It keeps the first bytes of each request (those read after the previous answer) and checks
/// the first write after them: hyper's own refusal is a 400, 414 or 431 head with
/// `content-length: 0` and nothing else, which the router never sends.
pub struct Answering {
    stream: TcpStream,
    /// The start of the request being read.
    start: Vec<u8>,
    /// Whether the next bytes read begin a request.
    between: bool,
    /// The answer sent instead of hyper's, and how much of it is sent.
    replacement: Option<(Vec<u8>, usize)>,
}

impl Answering {
    /// Serves `stream`.
    pub fn new(stream: TcpStream) -> Answering {
        Answering {
            stream,
            start: Vec::with_capacity(START_BYTES),
            between: true,
            replacement: None,
        }
    }

    /// Sends what is left of the replacement answer.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some((bytes, sent)) = &mut self.replacement {
            while *sent < bytes.len() {
                let n = ready!(Pin::new(&mut self.stream).poll_write(cx, &bytes[*sent..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                *sent += n;
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Answering {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.stream).poll_read(cx, buf))?;
        let new = &buf.filled()[before..];
        if !new.is_empty() {
            if this.between {
                this.start.clear();
                this.between = false;
            }
            let room = START_BYTES - this.start.len();
            this.start.extend_from_slice(&new[..new.len().min(room)]);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Answering {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.replacement.is_none()
            && !this.between
            && let Some(status) = refusal(buf)
        {
            let api = is_api(&this.start);
            this.replacement = Some((answer(status, api), 0));
        }
        this.between = true;
        if this.replacement.is_some() {
            ready!(this.poll_replacement(cx))?;
            // hyper's own answer is not sent.
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_replacement(cx))?;
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_replacement(cx))?;
        Pin::new(&mut this.stream).poll_shutdown(cx)
    }
}

/// The status of hyper's own refusal of a request it could not parse, if `written` is one: a
/// whole 400, 414 or 431 head with `content-length: 0` and nothing after it.
fn refusal(written: &[u8]) -> Option<u16> {
    let mut headers = [httparse::EMPTY_HEADER; 8];
    let mut response = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(head)) = response.parse(written) else {
        return None;
    };
    let empty = response
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("content-length") && h.value == b"0");
    let status = response.code?;
    (matches!(status, 400 | 414 | 431) && empty && head == written.len()).then_some(status)
}

/// Whether a request starting with `start` is for the API: its target begins with `/api/`.
fn is_api(start: &[u8]) -> bool {
    start
        .split(|b| *b == b' ')
        .nth(1)
        .is_some_and(|target| target.starts_with(b"/api/"))
}

/// The whole HTTP answer to a request refused with `status` before routing.
fn answer(status: u16, api: bool) -> Vec<u8> {
    let (object, code, message) = match status {
        414 => (
            "query",
            "uri_too_long",
            "The request's target is longer than 65534 bytes",
        ),
        431 => (
            "headers",
            "headers_too_large",
            "The request's head is larger than the server reads",
        ),
        _ => (
            "request",
            "bad_request",
            "The request is not valid HTTP/1.1",
        ),
    };
    let (content_type, body) = if api {
        let body = serde_json::json!({"error": {"code": code, "message": message}});
        ("application/json", body.to_string().into_bytes())
    } else {
        let error = BillmgrError {
            status,
            kind: "value",
            object: object.to_owned(),
            value: None,
            message: message.to_owned(),
        };
        error.render(Format::Xml)
    };
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
         x-content-type-options: nosniff\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// Binds `addr`, logging the address actually bound (useful with port 0) under `what`.
pub async fn bind(addr: SocketAddr, what: &str) -> io::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!("{what} on http://{}", listener.local_addr()?);
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_empty_refusals_are_replaced() {
        let hyper = |status: &str| {
            format!(
                "HTTP/1.1 {status}\r\ncontent-length: 0\r\ndate: Wed, 02 Dec 2026 13:00:00 GMT\r\n\r\n"
            )
        };
        assert_eq!(refusal(hyper("400 Bad Request").as_bytes()), Some(400));
        assert_eq!(refusal(hyper("414 URI Too Long").as_bytes()), Some(414));
        assert_eq!(
            refusal(hyper("431 Request Header Fields Too Large").as_bytes()),
            Some(431)
        );
        // Answers of the router: with a body, or another status.
        assert_eq!(refusal(hyper("404 Not Found").as_bytes()), None);
        let with_body = "HTTP/1.1 400 Bad Request\r\ncontent-length: 5\r\n\r\nhello";
        assert_eq!(refusal(with_body.as_bytes()), None);
        let followed = format!("{}x", hyper("400 Bad Request"));
        assert_eq!(refusal(followed.as_bytes()), None);
        assert_eq!(refusal(b"HTTP/1.1 400 Bad"), None);
    }

    #[test]
    fn the_target_says_which_protocol() {
        assert!(is_api(b"POST /api/v1/orders/x/paid HTTP/1.1\r\n"));
        assert!(!is_api(b"GET /billmgr?func=x HTTP/1.1\r\n"));
        assert!(!is_api(b"\x00\x01garbage"));
        assert!(!is_api(b"GET /apix HTTP/1.1"));
    }

    #[test]
    fn refusals_carry_the_protocols_document() {
        for status in [400, 414, 431] {
            let text = String::from_utf8(answer(status, false)).expect("UTF-8");
            let (head, body) = text.split_once("\r\n\r\n").expect("a head");
            assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{head}");
            assert!(head.contains("content-type: text/xml"), "{head}");
            assert!(head.contains(&format!("content-length: {}", body.len())));
            let doc = roxmltree::Document::parse(body).expect("well-formed");
            assert!(doc.descendants().any(|n| n.has_tag_name("error")));

            let text = String::from_utf8(answer(status, true)).expect("UTF-8");
            let (head, body) = text.split_once("\r\n\r\n").expect("a head");
            assert!(head.contains("content-type: application/json"), "{head}");
            let v: serde_json::Value = serde_json::from_str(body).expect("JSON");
            assert!(v["error"]["code"].is_string(), "{body}");
        }
    }
}
