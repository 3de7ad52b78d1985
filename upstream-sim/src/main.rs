//! `upstream-sim`: serves the simulated upstream BILLmanager API until interrupted.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;
use upstream_sim::{Simulator, State};

/// A simulator of ispmanager's upstream BILLmanager API, with fault injection, for tests.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: String,
    /// The account to simulate, as a JSON or TOML (`.toml`) file; the built-in default otherwise.
    #[arg(long)]
    state: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let state = match &args.state {
        Some(path) => State::load(path).with_context(|| format!("loading {}", path.display()))?,
        None => State::default(),
    };
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    tracing::info!(
        user = %state.account.user,
        balance = %state.account.balance,
        currency = %state.account.currency,
        today = %state.today,
        "listening on http://{addr}/billmgr"
    );
    let shutdown = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot wait for Ctrl-C; serving until killed");
            std::future::pending::<()>().await;
        }
        tracing::info!("stopping");
    };
    Simulator::new(state).serve(listener, shutdown).await;
    Ok(())
}
