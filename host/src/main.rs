//! `reseller`: serves the partner's ispmanager module prices to ispmanager panels through a
//! sandboxed plugin, and prints them.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use reseller_host::bindings::pricing;
use reseller_host::config::Config;
use reseller_host::runtime::Runtime;
use reseller_host::{Reseller, http};
use tracing_subscriber::EnvFilter;

/// Resell ispmanager modules from your own billing: answers the panel's `pricelist.export`
/// with your prices, computed by a sandboxed wasm plugin.
///
/// Without --config, the embedded defaults serve: the documented module catalogue, sample
/// upstream costs and a sample markup, priced by the built-in plugin.
#[derive(Parser)]
#[command(name = "reseller", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the partner endpoints (`GET`/`POST /billmgr?func=pricelist.export…`) over HTTP.
    Serve {
        /// Configuration file (TOML); the embedded defaults when absent.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Address to listen on, instead of the configuration's `server.listen`
        /// (default 127.0.0.1:8080). Port 0 picks a free port; the log says which.
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
    },
    /// Print the price list the server would answer, to stdout.
    Pricelist {
        /// Configuration file (TOML); the embedded defaults when absent.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Document format.
        #[arg(long, value_enum, default_value_t = Out::Xml)]
        out: Out,
        /// Only the module with this tariff ID.
        #[arg(long, value_name = "ID")]
        pricelist: Option<u64>,
        /// Include modules that cannot be ordered now (no `onlyavailable` filter).
        #[arg(long)]
        all: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Out {
    Xml,
    Json,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The chain of contexts, without a backtrace.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(config: Option<PathBuf>) -> anyhow::Result<Reseller> {
    let config = Config::load(config.as_deref())?;
    let runtime = Runtime::new()?;
    Ok(Reseller::new(&runtime, config)?)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config, listen } => {
            let reseller = Arc::new(load(config)?);
            tracing::info!(
                plugin = %reseller.plugin().name(),
                modules = reseller.config().catalogue.modules.len(),
                "price list ready"
            );
            let addr = listen.unwrap_or(reseller.config().server.listen);
            let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            rt.block_on(async move {
                let listener = http::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr}"))?;
                http::serve(listener, reseller, shutdown_signal())
                    .await
                    .context("the server failed")
            })
        }
        Command::Pricelist {
            config,
            out,
            pricelist,
            all,
        } => {
            let reseller = load(config)?;
            let query = pricing::Query {
                itemtype: "addition".to_owned(),
                only_available: !all,
                pricelist,
                format: match out {
                    Out::Xml => pricing::Format::Xml,
                    Out::Json => pricing::Format::Json,
                },
                lang: None,
            };
            let doc = reseller.export_prices(&query)?;
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&doc.body)?;
            stdout.write_all(b"\n")?;
            Ok(())
        }
    }
}

/// Completes on Ctrl-C or SIGTERM, so that requests in flight finish before the process ends.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}
