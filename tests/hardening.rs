//! Hostile peers over raw sockets: bodies sent without a token, slow or idle connections, more
//! connections than allowed, a shutdown with a half-sent request, requests hyper cannot parse;
//! and the health, readiness and metrics endpoints.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::{Server, get, xml_error};

const TOKEN: &str = "hardening-token-0123456789";
const ORDER: &str = "01JQ3V6K8Z9X4N2B7C5D0E1F2G";
/// A failsafe only: a socket read that waits longer than this fails the test instead of
/// hanging it. Nothing is asserted about how long anything takes.
const FAILSAFE: Duration = Duration::from_secs(120);

/// Writes the embedded defaults plus `extra` as `reseller.toml` in `dir`.
fn config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("reseller.toml");
    let defaults = include_str!("../host/src/defaults.toml");
    // The defaults' own [server] table takes the extra server keys.
    let text = defaults.replace("[server]\n", &format!("[server]\n{extra}\n"));
    std::fs::write(&path, text).expect("write the configuration");
    path
}

fn with_api(dir: &Path, server: &str) -> PathBuf {
    let path = config(dir, server);
    let mut text = std::fs::read_to_string(&path).expect("read");
    text.push_str(&format!("\n[api]\ntoken = \"{TOKEN}\"\n"));
    std::fs::write(&path, text).expect("write");
    path
}

fn connect(server: &Server) -> TcpStream {
    let stream = TcpStream::connect(server.base.trim_start_matches("http://")).expect("connect");
    stream.set_read_timeout(Some(FAILSAFE)).expect("timeout");
    stream.set_write_timeout(Some(FAILSAFE)).expect("timeout");
    stream
}

/// An answer read off a socket to its end: status, lower-cased head, body.
struct Raw {
    status: u16,
    head: String,
    body: String,
}

/// Reads whatever the server sends until it closes the connection.
fn read_answer(stream: &mut TcpStream) -> Raw {
    let mut bytes = Vec::new();
    let mut chunk = [0_u8; 8192];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            // A reset after the answer arrived is a close too.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !bytes.is_empty() => {
                break;
            }
            Err(e) => panic!("reading the answer: {e} (read so far: {bytes:?})"),
        }
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("an HTTP answer: {text:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {head:?}"));
    Raw {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

/// Sends `request` on a new connection and reads the answer to the connection's end.
fn exchange(server: &Server, request: &[u8]) -> Raw {
    let mut stream = connect(server);
    stream.write_all(request).expect("send");
    read_answer(&mut stream)
}

fn json(raw: &Raw) -> serde_json::Value {
    assert!(
        raw.head.contains("content-type: application/json"),
        "{}",
        raw.head
    );
    serde_json::from_str(&raw.body).unwrap_or_else(|e| panic!("{e}: {}", raw.body))
}

fn xml(raw: &Raw) -> (String, String) {
    assert!(raw.head.contains("content-type: text/xml"), "{}", raw.head);
    let (kind, object, _, _) = xml_error(&raw.body);
    (kind, object)
}

/// The server's resident memory, in KiB.
fn rss_kib(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid()))
        .expect("the server's status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Waits until the server's log says `words`.
fn wait_for_log(server: &Server, words: &str) {
    let started = Instant::now();
    while !server.log.lock().expect("log").contains(words) {
        assert!(
            started.elapsed() < FAILSAFE,
            "the log never said {words:?}:\n{}",
            server.log.lock().expect("log")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn bodies_without_a_token_are_refused_unread_and_memory_stays_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(Some(&with_api(dir.path(), "")));
    let _warm = get(&server.url("/healthz"));
    let before = rss_kib(&server);
    // 300 clients, each announcing 2 MiB and sending the first 64 KiB of it, with a wrong
    // token or none: each is answered from the head alone, and its connection closed.
    let clients: Vec<_> = (0..300)
        .map(|i| {
            let addr = server.base.trim_start_matches("http://").to_owned();
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(addr).expect("connect");
                stream.set_read_timeout(Some(FAILSAFE)).expect("timeout");
                let auth = if i % 2 == 0 {
                    "Authorization: Bearer wrong-token-0123456789\r\n"
                } else {
                    ""
                };
                let head = format!(
                    "POST /api/v1/orders/{ORDER}/paid HTTP/1.1\r\nHost: x\r\n{auth}\
                     Content-Length: 2097152\r\n\r\n"
                );
                stream.write_all(head.as_bytes()).expect("head");
                let _ = stream.write_all(&[b'{'; 65_536]);
                let answer = read_answer(&mut stream);
                // Closed: the rest of the body cannot be sent.
                let refused = (0..64).any(|_| stream.write_all(&[b' '; 65_536]).is_err());
                (answer, refused)
            })
        })
        .collect();
    for client in clients {
        let (answer, refused) = client.join().expect("a client");
        assert_eq!(answer.status, 401, "{}", answer.body);
        assert_eq!(json(&answer)["error"]["code"], "unauthorized");
        assert!(refused, "the connection stayed open for the body");
    }
    let after = rss_kib(&server);
    // 300 × 2 MiB were announced; the server grew by a small fraction of that.
    assert!(
        after.saturating_sub(before) < 64 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    eprintln!("RSS before {before} KiB, after 300 clients {after} KiB");

    // With the token: a body longer than the API takes is refused before it is read, and a
    // slow one is timed out, each in the API's shape.
    let too_long = exchange(
        &server,
        format!(
            "POST /api/v1/orders/{ORDER}/paid HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Length: 2097152\r\n\r\n{{"
        )
        .as_bytes(),
    );
    assert_eq!(too_long.status, 413, "{}", too_long.body);
    assert_eq!(json(&too_long)["error"]["code"], "body_too_large");
}

#[test]
fn slow_bodies_and_idle_or_slow_heads_are_cut_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(Some(&with_api(
        dir.path(),
        "header_timeout_ms = 300\nbody_timeout_ms = 300",
    )));
    // A body that stops: the API's 408, then the connection is closed.
    let mut slow = connect(&server);
    slow.write_all(
        format!(
            "POST /api/v1/orders/{ORDER}/paid HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Length: 100\r\n\r\n{{\"a\""
        )
        .as_bytes(),
    )
    .expect("send");
    let answer = read_answer(&mut slow);
    assert_eq!(answer.status, 408, "{}", answer.body);
    assert_eq!(json(&answer)["error"]["code"], "body_timeout");
    // The same for the panel's form: BILLmanager's document.
    let mut slow = connect(&server);
    slow.write_all(
        b"POST /billmgr HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
          Content-Length: 100\r\n\r\nfunc=pricelist",
    )
    .expect("send");
    let answer = read_answer(&mut slow);
    assert_eq!(answer.status, 408, "{}", answer.body);
    assert_eq!(xml(&answer), ("value".to_owned(), "body".to_owned()));

    // Idle connections, and heads that never finish: every one is closed by the server.
    let mut idle: Vec<TcpStream> = (0..50).map(|_| connect(&server)).collect();
    let mut dripping: Vec<TcpStream> = (0..50).map(|_| connect(&server)).collect();
    for stream in &mut dripping {
        stream
            .write_all(b"GET /billmgr?func=pri")
            .expect("part of a head");
    }
    for stream in idle.iter_mut().chain(dripping.iter_mut()) {
        let mut rest = Vec::new();
        // Read to the end: the server closes; a failsafe time-out would fail here instead.
        stream.read_to_end(&mut rest).expect("closed by the server");
    }
    // A keep-alive connection left idle after an answer is closed too.
    let mut kept = connect(&server);
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let mut all = Vec::new();
    kept.read_to_end(&mut all).expect("closed after the answer");
    assert!(String::from_utf8_lossy(&all).starts_with("HTTP/1.1 200"));
}

#[test]
fn past_the_connection_cap_new_connections_wait_and_the_log_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(Some(&config(
        dir.path(),
        "max_connections = 4\nheader_timeout_ms = 600000",
    )));
    let mut held: Vec<TcpStream> = (0..4).map(|_| connect(&server)).collect();
    let mut waiting = connect(&server);
    waiting
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("send");
    wait_for_log(&server, "connection cap reached: 4 connections are open");
    // Not accepted, so not answered.
    waiting.set_nonblocking(true).expect("non-blocking");
    let mut byte = [0_u8; 1];
    assert_eq!(
        waiting.read(&mut byte).map_err(|e| e.kind()).err(),
        Some(std::io::ErrorKind::WouldBlock)
    );
    waiting.set_nonblocking(false).expect("blocking");
    // One closes: the waiting one is served.
    drop(held.pop());
    let answer = read_answer(&mut waiting);
    assert_eq!(answer.status, 200);
}

#[test]
fn sigterm_with_a_half_sent_request_still_exits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(Some(&config(
        dir.path(),
        "header_timeout_ms = 600000\nshutdown_timeout_ms = 300",
    )));
    let mut half = connect(&server);
    half.write_all(b"POST /billmgr HTTP/1.1\r\nHost: x\r\nContent-Le")
        .expect("half a head");
    let mut body = connect(&server);
    body.write_all(b"POST /billmgr HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\nfunc=")
        .expect("half a body");
    let _ = get(&server.url("/healthz"));
    let term = std::process::Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .expect("kill");
    assert!(term.success());
    let status = server.wait();
    assert!(status.success(), "{status}");
    let mut rest = Vec::new();
    half.read_to_end(&mut rest).expect("closed");
}

#[test]
fn requests_hyper_cannot_parse_get_the_protocols_document() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(Some(&with_api(dir.path(), "")));
    let many_headers: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let long_target = "a".repeat(70_000);
    let cases: Vec<(String, u16)> = vec![
        ("GARBAGE\r\n\r\n".to_owned(), 400),
        (
            "GET /billmgr HTTP/1.1\r\nBad Header\r\n\r\n".to_owned(),
            400,
        ),
        (
            format!("GET /billmgr HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n"),
            431,
        ),
        (
            format!("GET /billmgr?x={long_target} HTTP/1.1\r\n\r\n"),
            414,
        ),
    ];
    for (request, status) in &cases {
        let answer = exchange(&server, request.as_bytes());
        assert_eq!(answer.status, *status, "{}", &request[..20]);
        assert_eq!(xml(&answer).0, "value");
        assert!(answer.head.contains("connection: close"));
        let api = request.replacen("/billmgr", "/api/v1/plugin", 1);
        let answer = exchange(&server, api.as_bytes());
        if request.starts_with("GARBAGE") {
            continue;
        }
        assert_eq!(answer.status, *status, "{}", &api[..20]);
        assert!(
            json(&answer)["error"]["code"].is_string(),
            "{}",
            answer.body
        );
    }
    // What the router refuses is in the same shapes.
    let long_form = format!(
        "POST /billmgr HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n{}",
        "a".repeat(5000)
    );
    let answer = exchange(&server, long_form.as_bytes());
    assert_eq!(answer.status, 414);
    assert_eq!(xml(&answer), ("value".to_owned(), "query".to_owned()));
    let dup = format!(
        "POST /api/v1/orders/{ORDER}/renew HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Length: 24\r\nConnection: close\r\n\r\n{{\"period\":1,\"period\":12}}"
    );
    let answer = exchange(&server, dup.as_bytes());
    assert_eq!(answer.status, 400, "{}", answer.body);
    let v = json(&answer);
    assert_eq!(v["error"]["code"], "invalid_json");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("`period` is given twice")),
        "{v}"
    );
    // Control characters leave the panel's documents well-formed (with HTTP 200 by default,
    // as BILLmanager answers its errors).
    for raw in ["%00", "%01", "%1B", "%EF%BF%BE"] {
        for query in [
            format!("func=pricelist.export&itemtype={raw}"),
            format!("func={raw}"),
            format!("func=pricelist.export&itemtype=addition&pricelist={raw}"),
            format!("func=pricelist.export&itemtype=addition&out={raw}"),
        ] {
            let answer = get(&server.url(&format!("/billmgr?{query}")));
            assert_eq!(answer.status, 200, "{query}");
            let (kind, _, _, _) = xml_error(&answer.body);
            assert_eq!(kind, "value", "{query}");
        }
    }
}

#[test]
fn health_readiness_and_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(Some(&with_api(dir.path(), "")));
    let health = get(&server.url("/healthz"));
    assert_eq!(health.status, 200);
    let ready = get(&server.url("/readyz"));
    assert_eq!(ready.status, 200, "{}", ready.body);
    let v: serde_json::Value = serde_json::from_str(&ready.body).expect("JSON");
    assert_eq!(v["checks"]["plugin"], "ok");
    assert_eq!(v["checks"]["database"], "ok");
    assert!(v["checks"].get("upstream").is_none(), "manual mode: {v}");

    let panel = "/billmgr?func=pricelist.export&itemtype=addition&onlyavailable=on";
    for _ in 0..3 {
        assert_eq!(get(&server.url(panel)).status, 200);
    }
    assert_eq!(get(&server.url("/nowhere")).status, 404);
    let buy = "/billmgr?module=ddos-guard&license=184431&module_id=23221";
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    assert_eq!(
        client.get(server.url(buy)).send().expect("Buy").status(),
        303
    );

    // Behind the token.
    let metrics = |token: Option<&str>| {
        let mut r = client.get(server.url("/metrics"));
        if let Some(token) = token {
            r = r.bearer_auth(token);
        }
        let r = r.send().expect("GET /metrics");
        (r.status().as_u16(), r.text().expect("text"))
    };
    assert_eq!(metrics(None).0, 401);
    let (status, text) = metrics(Some(TOKEN));
    assert_eq!(status, 200);
    for line in [
        "reseller_http_requests_total{route=\"/billmgr\",status=\"200\"} 3",
        "reseller_http_requests_total{route=\"unmatched\",status=\"404\"} 1",
        "reseller_http_request_duration_seconds_count{route=\"/billmgr\"} 4",
        "reseller_orders{state=\"new\"} 1",
        "reseller_orders{state=\"placed\"} 0",
        "reseller_plugin_calls_total{component=\"plugin\",name=\"builtin\",outcome=\"fault\"} 0",
        "reseller_plugin_limit_hits_total{component=\"plugin\",limit=\"fuel\",name=\"builtin\"} 0",
        "reseller_answer_cache_lookups_total{outcome=\"hit\"}",
        "reseller_webhook_deliveries_total{outcome=\"delivered\"} 0",
        "reseller_buys_total{outcome=\"accepted\",reason=\"\"} 1",
        "# TYPE reseller_partner_balance_read_seconds gauge",
        "reseller_connections_open",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }

    // The database gone: not ready, and says which check failed.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.path().join(format!("reseller-orders.sqlite3{suffix}")));
    }
    let ready = get(&server.url("/readyz"));
    assert_eq!(ready.status, 503, "{}", ready.body);
    let v: serde_json::Value = serde_json::from_str(&ready.body).expect("JSON");
    assert_eq!(v["ready"], false);
    assert_eq!(v["checks"]["plugin"], "ok");
    assert_ne!(v["checks"]["database"], "ok");
}

#[test]
fn metrics_on_their_own_address_and_upstream_readiness() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Automatic mode with an upstream nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let upstream = closed.local_addr().expect("addr");
    drop(closed);
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a port")
        .local_addr()
        .expect("addr");
    let path = config(dir.path(), &format!("metrics_listen = \"{metrics_port}\""));
    let mut text = std::fs::read_to_string(&path).expect("read");
    text.push_str(&format!(
        "\n[upstream]\nurl = \"http://{upstream}/billmgr\"\nuser = \"u\"\npassword = \"p\"\n"
    ));
    std::fs::write(&path, text).expect("write");
    let server = Server::start(Some(&path));
    wait_for_log(&server, "metrics and health on http://");
    let base = format!("http://{metrics_port}");
    let metrics = get(&format!("{base}/metrics"));
    assert_eq!(metrics.status, 200);
    assert!(metrics.body.contains("reseller_orders{state=\"new\"} 0"));
    let ready = get(&format!("{base}/readyz"));
    assert_eq!(ready.status, 503, "{}", ready.body);
    let v: serde_json::Value = serde_json::from_str(&ready.body).expect("JSON");
    assert_eq!(v["checks"]["database"], "ok");
    assert_ne!(v["checks"]["upstream"], "ok");
    // Upstream comes up: ready.
    let listening = std::net::TcpListener::bind(upstream).expect("the upstream port");
    let ready = get(&format!("{base}/readyz"));
    assert_eq!(ready.status, 200, "{}", ready.body);
    drop(listening);
    // The main address keeps its token: the API is off here, so /metrics is too.
    assert_eq!(get(&server.url("/metrics")).status, 404);
    assert_eq!(get(&format!("{base}/billmgr")).status, 404);
}
