//! Start-up: from process start to the first correct price list, with and without the
//! compiled-code cache. `cargo bench -p reseller-host --bench startup` (medians of 15 runs; one
//! run of each when built as a test).

#![expect(
    clippy::print_stdout,
    reason = "a benchmark reports its figures on stdout"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_reseller");
const QUERY: &str = "/billmgr?func=pricelist.export&itemtype=addition&onlyavailable=on&out=xml";

/// Starts the server and returns the time until it answered the panel's query with a price list.
fn first_answer(config: &std::path::Path) -> Duration {
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start reseller");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the server logs where it listens")
            .expect("a line");
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split('/').next().unwrap_or_default().to_owned();
        }
    };
    let mut stream = TcpStream::connect(&addr).expect("connect");
    write!(
        stream,
        "GET {QUERY} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    let elapsed = started.elapsed();
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains("<pricelist>"),
        "{answer}"
    );
    let _ = child.kill();
    let _ = child.wait();
    elapsed
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let runs = if std::env::args().any(|a| a == "--bench") {
        15
    } else {
        1
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let catalogue = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../bench/catalogue.sh"
        ))
        .output()
        .expect("catalogue.sh");
    let catalogue = String::from_utf8(catalogue.stdout).expect("utf-8");
    let cold = dir.path().join("cold.toml");
    std::fs::write(&cold, format!("{catalogue}\n[plugin]\ncache = false\n")).expect("write");
    let warm = dir.path().join("warm.toml");
    std::fs::write(
        &warm,
        format!("{catalogue}\n[plugin]\ncache_dir = \"cache\"\n"),
    )
    .expect("write");
    first_answer(&warm); // fills the cache

    let without: Vec<Duration> = (0..runs).map(|_| first_answer(&cold)).collect();
    let with: Vec<Duration> = (0..runs).map(|_| first_answer(&warm)).collect();
    let (without, with) = (median(without), median(with));
    println!("start-up to first price list, median of {runs}:");
    println!(
        "  without the code cache  {:>8.1} ms",
        without.as_secs_f64() * 1e3
    );
    println!(
        "  with the code cache     {:>8.1} ms",
        with.as_secs_f64() * 1e3
    );
    println!(
        "  ratio                   {:>8.3} (target <= 0.1)",
        with.as_secs_f64() / without.as_secs_f64()
    );
}
