//! Starting the real `reseller` binary on a loopback port, and talking to it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_reseller");

/// A file of the test fixtures.
/// Runs the `reseller` command line with `args`, in a fresh working directory (`serve` on the
/// defaults keeps its order database there), without backtraces in its output.
pub fn reseller(args: &[&str]) -> std::process::Output {
    let workdir = tempfile::tempdir().expect("a working directory");
    Command::new(BIN)
        .current_dir(workdir.path())
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run reseller")
}

/// Output as text, invalid UTF-8 replaced.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

/// A running server, killed when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// What the server logged so far.
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
    _workdir: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts `reseller serve` on an ephemeral loopback port with `config` (or the defaults)
    /// and waits until it says where it listens. It runs in a fresh working directory, where
    /// the defaults keep their order database.
    pub fn start(config: Option<&Path>) -> Server {
        let workdir = tempfile::tempdir().expect("a working directory");
        // A shared fixture would keep its order database beside it: run a copy instead.
        let copy = config.filter(|c| c.starts_with(fixture(""))).map(|c| {
            let copy = workdir.path().join(c.file_name().expect("a file name"));
            std::fs::copy(c, &copy).expect("copy the fixture");
            copy
        });
        let config = copy.as_deref().or(config);
        let mut server = Server::start_in(workdir.path(), config);
        server._workdir = Some(workdir);
        server
    }

    /// Starts `reseller serve` in working directory `dir`.
    pub fn start_in(dir: &Path, config: Option<&Path>) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(dir);
        cmd.args(["serve", "--listen", "127.0.0.1:0"]);
        if let Some(config) = config {
            cmd.arg("--config").arg(config);
        }
        let mut child = cmd
            .env("RUST_LOG", "info")
            .env_remove("RUST_BACKTRACE")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start reseller");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = log.clone();
        // Keep draining stderr so that the server never blocks on a full pipe.
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut log) = sink.lock() {
                    log.push_str(&line);
                    log.push('\n');
                }
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest.split('/').next().unwrap_or_default().to_owned();
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the server says where it listens");
        Server {
            child,
            base: format!("http://{addr}"),
            log,
            _workdir: None,
        }
    }

    /// Kills the server at once (SIGKILL): nothing of it runs after this returns.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the server to exit by itself, and says how it ended.
    pub fn wait(mut self) -> std::process::ExitStatus {
        self.child.wait().expect("wait for the server")
    }

    /// The server's process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The URL of `path_and_query` on this server.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An answer: status, content type and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

fn answer(r: reqwest::blocking::Response) -> Answer {
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Answer {
        status,
        content_type,
        body: r.text().expect("body"),
    }
}

/// `GET url`.
pub fn get(url: &str) -> Answer {
    answer(reqwest::blocking::get(url).expect("GET"))
}

/// `POST url` with a form body.
pub fn post_form(url: &str, form: &str) -> Answer {
    let client = reqwest::blocking::Client::new();
    let r = client
        .post(url)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(form.to_owned())
        .send()
        .expect("POST");
    answer(r)
}

/// Any method.
pub fn request(method: &str, url: &str) -> Answer {
    let client = reqwest::blocking::Client::new();
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    answer(client.request(method, url).send().expect("request"))
}

/// The `<error>` of a BILLmanager error document: (type, object, value, msg).
pub fn xml_error(body: &str) -> (String, String, Option<String>, String) {
    let doc = roxmltree::Document::parse(body).expect("a well-formed XML document");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "doc");
    let error = root
        .children()
        .find(|n| n.has_tag_name("error"))
        .expect("an <error>");
    let value = error
        .children()
        .find(|n| n.has_tag_name("param") && n.attribute("name") == Some("value"))
        .and_then(|n| n.text())
        .map(str::to_owned);
    let msg = error
        .children()
        .find(|n| n.has_tag_name("msg"))
        .and_then(|n| n.text())
        .unwrap_or_default();
    (
        error.attribute("type").unwrap_or_default().to_owned(),
        error.attribute("object").unwrap_or_default().to_owned(),
        value,
        msg.to_owned(),
    )
}
