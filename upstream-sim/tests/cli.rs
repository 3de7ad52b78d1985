//! The `upstream-sim` binary: a state file, a listening address, and logs without the password.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

const STATE: &str = r#"
[account]
user = "cli-partner"
password = "hunter2-very-secret"
balance = "20.0000"
currency = "USD"

[licences]
"5001" = "203.0.113.50"

[[tariffs]]
id = 777
intname = "softaculous"
name = "Softaculous"
additionintname = "Softaculous"
prices = [{ months = 1, cost = "2.0000" }, { months = 12, cost = "20.0000" }]
"#;

#[test]
fn the_binary_serves_a_state_file_and_never_logs_the_password() {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("upstream-sim-cli-state.toml");
    std::fs::write(&path, STATE).expect("state file written");
    let mut child = Command::new(env!("CARGO_BIN_EXE_upstream-sim"))
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--state")
        .arg(&path)
        .env("RUST_LOG", "debug")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the simulator starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    let logs = thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let addr = rest.split('/').next().unwrap_or_default().to_owned();
                let _ = tx.send(addr);
            }
            lines.push(line);
        }
        lines
    });
    let addr = rx.recv_timeout(Duration::from_secs(60));

    let outcome = addr.map(|addr| {
        let url = format!("http://{addr}/billmgr");
        let client = reqwest::blocking::Client::new();
        let get = |query: &[(&str, &str)]| {
            client
                .get(&url)
                .query(query)
                .send()
                .and_then(|r| r.text())
                .expect("an answer")
        };
        let prices = get(&[
            ("authinfo", "cli-partner:hunter2-very-secret"),
            ("func", "pricelist.export"),
            ("itemtype", "addition"),
        ]);
        let refused = get(&[
            ("authinfo", "cli-partner:hunter2-very-secret-not"),
            ("func", "pricelist.export"),
        ]);
        (prices, refused)
    });
    let _ = child.kill();
    let _ = child.wait();
    let logs = logs.join().expect("logs read");
    let (prices, refused) = outcome.expect("the simulator says where it listens");

    let doc = roxmltree::Document::parse(&prices).expect("XML");
    let period = doc
        .descendants()
        .find(|n| n.has_tag_name("period"))
        .expect("a period");
    assert_eq!(period.attribute("cost"), Some("2.0000"));
    assert!(prices.contains("<id>777</id>") && prices.contains("currency=\"USD\""));
    assert!(refused.contains("type=\"auth\""), "{refused}");

    assert!(logs.iter().any(|l| l.contains("billmgr call")), "{logs:#?}");
    assert!(
        logs.iter().all(|l| !l.contains("hunter2")),
        "the password leaked into the logs: {logs:#?}"
    );
}

#[test]
fn the_binary_refuses_a_broken_state_file() {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("upstream-sim-broken-state.json");
    std::fs::write(
        &path,
        r#"{"account": {"user": "u", "password": "p", "balance": 1.5, "currency": "EUR"}}"#,
    )
    .expect("state file written");
    let output = Command::new(env!("CARGO_BIN_EXE_upstream-sim"))
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--state")
        .arg(&path)
        .output()
        .expect("the simulator runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not a state in JSON"), "{stderr}");
}
