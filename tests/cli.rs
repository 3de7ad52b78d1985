//! The `reseller` command line: the printed price list, help, and refusals of bad configuration.

use std::path::Path;
use std::process::Output;

use crate::common::{Server, fixture, get, reseller};

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("utf-8")
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("utf-8")
}

#[test]
fn pricelist_prints_what_the_server_answers() {
    let config = fixture("catalogue.toml");
    let server = Server::start(Some(&config));
    let config = config.to_str().expect("utf-8 path");
    let cases = [
        (
            vec![],
            "func=pricelist.export&itemtype=addition&onlyavailable=on",
        ),
        (
            vec!["--out", "json"],
            "func=pricelist.export&itemtype=addition&onlyavailable=on&out=json",
        ),
        (vec!["--all"], "func=pricelist.export&itemtype=addition"),
        (
            vec!["--pricelist", "55390", "--out", "xml"],
            "func=pricelist.export&itemtype=addition&onlyavailable=on&pricelist=55390",
        ),
    ];
    for (args, query) in cases {
        let mut all = vec!["pricelist", "--config", config];
        all.extend(&args);
        let out = reseller(&all);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let served = get(&server.url(&format!("/billmgr?{query}")));
        assert_eq!(served.status, 200);
        assert_eq!(stdout(&out).trim_end(), served.body, "{args:?}");
    }
}

#[test]
fn pricelist_runs_on_the_embedded_defaults() {
    let out = reseller(&["pricelist"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let doc = roxmltree::Document::parse(text.trim_end()).expect("XML");
    assert_eq!(
        doc.descendants()
            .filter(|n| n.has_tag_name("pricelist"))
            .count(),
        5
    );
}

#[test]
fn help_explains_both_commands() {
    let out = reseller(&["--help"]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(
        text.contains("serve") && text.contains("pricelist"),
        "{text}"
    );
    let serve = stdout(&reseller(&["serve", "--help"]));
    assert!(
        serve.contains("--listen") && serve.contains("127.0.0.1:8080"),
        "{serve}"
    );
    let pricelist = stdout(&reseller(&["pricelist", "--help"]));
    for flag in ["--config", "--out", "--pricelist", "--all"] {
        assert!(pricelist.contains(flag), "{flag}: {pricelist}");
    }
}

/// Writes `config` to a file in `dir` and runs `pricelist` with it; returns stderr.
fn refused(dir: &Path, config: &str) -> (String, String) {
    let path = dir.join("reseller.toml");
    std::fs::write(&path, config).expect("write config");
    let out = reseller(&["pricelist", "--config", path.to_str().expect("utf-8")]);
    assert!(!out.status.success(), "accepted:\n{config}");
    assert!(out.stdout.is_empty());
    (stderr(&out), path.display().to_string())
}

#[test]
fn bad_configuration_is_refused_naming_the_file_and_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = std::fs::read_to_string(fixture("catalogue.toml")).expect("fixture");
    std::fs::write(dir.path().join("core.wasm"), b"\0asm\x01\0\0\0").expect("write");
    std::fs::write(dir.path().join("text.wasm"), b"hello").expect("write");
    let other_world = wat::parse_str("(component)").expect("wat");
    std::fs::write(dir.path().join("other.wasm"), other_world).expect("write");
    let cases = [
        (
            good.replace("[server]", "[server]\nthreads = 4"),
            "server.threads",
            "unknown field",
        ),
        (
            good.replace("\"913.9286\"", "\"-913.9286\""),
            "catalogue.modules[1].cost.month",
            "negative",
        ),
        (
            good.replace("\"913.9286\"", "913.9286"),
            "catalogue.modules[1].cost.month",
            "float",
        ),
        (
            format!("{good}\n[plugin]\npath = \"missing.wasm\""),
            "plugin.path",
            "cannot read",
        ),
        (
            format!("{good}\n[plugin]\npath = \"core.wasm\""),
            "plugin.path",
            "not a component",
        ),
        (
            format!("{good}\n[plugin]\npath = \"text.wasm\""),
            "plugin.path",
            "not a WebAssembly file",
        ),
        (
            good.replace("markup_percent = \"25\"", "markup_percent = \"-150\""),
            "pricing.markup_percent",
            "above -100",
        ),
        (
            good.replace("rounding_step = \"10\"", "rounding_step = \"0\""),
            "pricing.rounding_step",
            "positive",
        ),
        (
            good.replace("periods = [1, 12]", "periods = [12]"),
            "pricing.periods",
            "mandatory",
        ),
        (
            good.replace("[pricing]", "[pricing]\ndiscount = \"5\""),
            "pricing.discount",
            "unknown field",
        ),
        (
            good.replace("month = \"149.00\"", "month = \"-1\""),
            "pricing.fixed.drweb-lite.RUB.month",
            "negative",
        ),
    ];
    for (config, key, words) in cases {
        let (err, file) = refused(dir.path(), &config);
        assert!(err.contains(&file), "names the file: {err}");
        assert!(err.contains(&format!(": {key}: ")), "names {key}: {err}");
        assert!(err.contains(words), "says {words}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("backtrace"),
            "{err}"
        );
    }
    let missing = reseller(&["pricelist", "--config", "/nonexistent/reseller.toml"]);
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("/nonexistent/reseller.toml"));
}

#[test]
fn serve_refuses_an_address_it_cannot_bind() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = reseller(&["serve", "--listen", &addr]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("cannot listen on {addr}")),
        "{}",
        stderr(&out)
    );
}
