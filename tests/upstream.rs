//! The upstream capability against real sockets: the built-in plugin places an order in the
//! simulated client area through the host, and the partner's credentials never reach the
//! plugin, the log, or an error message.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use reseller_host::bindings::catalogue::Snapshot;
use reseller_host::bindings::orders::Order;
use reseller_host::bindings::types::{Money, OrderError};
use reseller_host::capabilities::Grants;
use reseller_host::capabilities::upstream::UpstreamPolicy;
use reseller_host::capabilities::upstream::http::HttpUpstream;
use reseller_host::config::{Secret, UpstreamConfig};
use reseller_host::limits::Limits;
use reseller_host::reseller::BUILTIN_PROTOCOL;
use reseller_host::runtime::{Fault, LoadedPlugin, Runtime};
use upstream_sim::{Fault as SimFault, FaultSpec, Simulator, State};

const PASSWORD: &str = "pw-Zx81/distinct&secret";
const HOSTILE: &[u8] = reseller_test_artifacts::HOSTILE;

fn upstream_config(url: String) -> UpstreamConfig {
    UpstreamConfig {
        url: Some(url),
        user: Some("partner".to_owned()),
        password: Some(Secret(PASSWORD.to_owned())),
        timeout_ms: 2_000,
        ..UpstreamConfig::default()
    }
}

fn grants(client: HttpUpstream, settings: &str) -> Grants {
    Grants {
        plugin: "test".into(),
        catalogue: Arc::new(Snapshot {
            version: 1,
            offers: Vec::new(),
            settings: settings.to_owned(),
        }),
        upstream: Arc::new(UpstreamPolicy::new(
            [
                "addition.order.param".to_owned(),
                "pricelist.export".to_owned(),
            ],
            Arc::new(client),
        )),
        policy: None,
    }
}

fn simulator() -> upstream_sim::Handle {
    log();
    let mut state = State::default();
    state.account.password = PASSWORD.to_owned();
    Simulator::start("127.0.0.1:0", state).expect("simulator")
}

fn order(licence: &str, tariff: u64) -> Order {
    Order {
        id: "o-1".to_owned(),
        licence_id: licence.to_owned(),
        licence_ip: None,
        tariff_id: tariff,
        period: 1,
        autoprolong: false,
        price: Money {
            units: 120_000,
            currency: "EUR".to_owned(),
        },
        fields: Vec::new(),
    }
}

/// Everything this test binary logs, from every test. Installed before any test logs, so that
/// no log call site is ever cached as uninteresting.
fn log() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let writer = {
            let log = log.clone();
            move || LogWriter(log.clone())
        };
        let subscriber = tracing_subscriber::fmt()
            .with_writer(writer)
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        log
    })
    .clone()
}

fn client(url: String) -> HttpUpstream {
    log();
    HttpUpstream::from_config(&upstream_config(url))
        .expect("client")
        .expect("configured")
}

#[test]
fn the_built_in_plugin_places_exactly_one_order_upstream() {
    let sim = simulator();
    let plugin = LoadedPlugin::load(
        &Runtime::new(),
        "builtin",
        BUILTIN_PROTOCOL,
        Limits::default(),
    )
    .expect("loads");
    let before = sim.sim().balance();
    let placed = plugin
        .place(
            &grants(client(sim.billmgr_url()), "{}"),
            &order("184431", 55361),
        )
        .0
        .expect("no fault")
        .expect("placed");
    assert_eq!(sim.sim().count("addition.order.param"), 1);
    let services = sim.sim().services();
    assert_eq!(services.len(), 1);
    assert_eq!(placed.service_id, services[0].id.to_string());
    assert_eq!(
        (services[0].licence.as_str(), services[0].tariff),
        ("184431", 55361)
    );
    assert_ne!(
        sim.sim().balance(),
        before,
        "paid from the partner's balance"
    );
    let call = &sim.sim().calls()[0];
    assert!(
        call.params.iter().all(|(k, _)| k != "authinfo"),
        "the simulator records no credentials"
    );
}

#[test]
fn upstream_errors_reach_the_plugin_typed() {
    let sim = simulator();
    let plugin = LoadedPlugin::load(
        &Runtime::new(),
        "builtin",
        BUILTIN_PROTOCOL,
        Limits::default(),
    )
    .expect("loads");
    let unknown = plugin
        .place(
            &grants(client(sim.billmgr_url()), "{}"),
            &order("999", 55361),
        )
        .0
        .expect("no fault");
    assert!(
        matches!(&unknown, Err(OrderError::InvalidValue(f)) if f.field == "item"),
        "{unknown:?}"
    );

    let wrong = HttpUpstream::from_config(&UpstreamConfig {
        password: Some(Secret("wrong".to_owned())),
        ..upstream_config(sim.billmgr_url())
    })
    .expect("client")
    .expect("configured");
    let refused = plugin
        .place(&grants(wrong, "{}"), &order("184431", 55361))
        .0
        .expect("no fault");
    assert!(matches!(refused, Err(OrderError::Auth(_))), "{refused:?}");
    assert!(sim.sim().services().is_empty());
}

#[test]
fn a_refused_connection_is_not_sent_and_a_cut_one_is_in_doubt() {
    let plugin = LoadedPlugin::load(
        &Runtime::new(),
        "builtin",
        BUILTIN_PROTOCOL,
        Limits::default(),
    )
    .expect("loads");
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/billmgr", closed.local_addr().expect("addr"));
    drop(closed);
    let outcome = plugin
        .place(&grants(client(url), "{}"), &order("184431", 55361))
        .0
        .expect("no fault");
    match outcome {
        Err(OrderError::NotSent(m)) => {
            assert!(!m.contains(PASSWORD) && !m.contains("127.0.0.1"), "{m}")
        }
        other => panic!("{other:?}"),
    }

    let sim = simulator();
    sim.sim()
        .arm(
            FaultSpec::new(SimFault::Cut)
                .on("addition.order.param")
                .applied(),
        )
        .expect("arm");
    let outcome = plugin
        .place(
            &grants(client(sim.billmgr_url()), "{}"),
            &order("184431", 55361),
        )
        .0
        .expect("no fault");
    assert!(
        matches!(outcome, Err(OrderError::InDoubt(_))),
        "{outcome:?}"
    );
    assert_eq!(
        sim.sim().services().len(),
        1,
        "upstream did place it: exactly why it is in doubt"
    );

    sim.sim()
        .arm(FaultSpec::new(SimFault::Delay { ms: 3_000 }).on("addition.order.param"))
        .expect("arm");
    let slow = plugin
        .place(
            &grants(client(sim.billmgr_url()), "{}"),
            &order("184431", 55361),
        )
        .0
        .expect("no fault");
    assert!(
        matches!(&slow, Err(OrderError::InDoubt(m)) if m.contains("in time")),
        "{slow:?}"
    );
}

/// Answers every request with the request itself, as some error pages echo what they got.
fn echo_server(seen: Arc<Mutex<Vec<u8>>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming().take(8) {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_millis(300)));
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            seen.lock().expect("lock").extend_from_slice(&request);
            let head = format!(
                "HTTP/1.1 500 Oops\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                request.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&request);
        }
    });
    format!("http://{addr}/billmgr")
}

#[test]
fn credentials_never_reach_the_plugin_the_log_or_an_error() {
    let received = Arc::new(Mutex::new(Vec::new()));
    let url = echo_server(received.clone());
    log();
    let plugin = LoadedPlugin::load(
        &Runtime::new(),
        "hostile",
        HOSTILE,
        Limits {
            upstream_calls: 2,
            ..Limits::default()
        },
    )
    .expect("loads");

    let log = log();
    // The hostile plugin calls upstream and logs every answer it is given, until its limit.
    let fault = plugin
        .place(&grants(client(url), "{}"), &order("184431", 55361))
        .0
        .expect_err("stopped at its limit");

    let upstream_saw = String::from_utf8_lossy(&received.lock().expect("lock")).into_owned();
    let encoded: String = form_urlencoded::byte_serialize(PASSWORD.as_bytes()).collect();
    assert!(
        upstream_saw.contains(&encoded),
        "the host did send the credentials upstream"
    );
    assert!(
        !upstream_saw
            .lines()
            .next()
            .unwrap_or_default()
            .contains(&encoded),
        "not in the URL"
    );

    let logged = String::from_utf8_lossy(&log.lock().expect("lock")).into_owned();
    assert!(
        logged.contains("[redacted]"),
        "the plugin received the echoed request, scrubbed: {logged}"
    );
    for secret in [PASSWORD, encoded.as_str(), "pw-Zx81"] {
        assert!(!logged.contains(secret), "the log holds a credential");
        assert!(
            !fault.to_string().contains(secret),
            "the error holds a credential"
        );
        assert!(
            !format!("{fault:?}").contains(secret),
            "the error holds a credential"
        );
    }
    assert!(matches!(fault, Fault::Limit(_)), "{fault}");
}

/// A log writer into a shared buffer.
struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
