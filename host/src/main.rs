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
use reseller_host::convert::panel_query;
use reseller_host::orders::{OrderDesk, worker};
use reseller_host::runtime::Runtime;
use reseller_host::{Reseller, check, http, ops, serve};
use tracing_subscriber::EnvFilter;

mod cli;
use cli::{OrdersCommand, PricesCommand};

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
        /// Benchmarks only: answer through the plugin, its logic compiled natively, or
        /// constant bytes.
        #[cfg(feature = "bench")]
        #[arg(long, value_enum, default_value_t = reseller_host::bench::Handler::Plugin)]
        handler: reseller_host::bench::Handler,
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
    /// Check a plugin before deploying it: load it as the server would, list its imports and
    /// exports, run sample price exports and order hooks in the sandbox (against a canned
    /// upstream), and print what each call used. Exits non-zero if the plugin does not load or
    /// any call faults.
    Check {
        /// The component file.
        plugin: PathBuf,
        /// Configuration whose catalogue, pricing settings and limits to check with; the
        /// embedded defaults when absent.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Work with the orders in the order database (`orders.database`): list, show, and every
    /// operation of the API. Prints JSON. Safe beside a running server on the same database.
    Orders {
        /// Configuration file (TOML); the embedded defaults when absent.
        #[arg(long, value_name = "FILE", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: OrdersCommand,
    },
    /// The partner's balance upstream: the last reading, or a fresh one.
    Balance {
        /// Configuration file (TOML); the embedded defaults when absent.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Read it from upstream now.
        #[arg(long)]
        fresh: bool,
    },
    /// Upstream's prices: what the catalogue's costs are marked up from.
    Prices {
        /// Configuration file (TOML); the embedded defaults when absent.
        #[arg(long, value_name = "FILE", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: PricesCommand,
    },
    /// A candidate pricing policy (`[plugin.candidate]`) prices beside the live one on a running
    /// server: its report, and its promotion to the live policy.
    Shadow {
        #[command(subcommand)]
        command: ShadowCommand,
    },
    /// Make a running server read its configuration again and swap in its plugin, without a
    /// restart (the same as sending it SIGHUP). The old plugin keeps serving if the new one
    /// fails to load or to pass its check.
    Reload {
        /// The server's configuration: its `server.listen` and `api.token` are used.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The server's base URL, instead of one derived from `server.listen`.
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
}

#[derive(Subcommand)]
enum ShadowCommand {
    /// Print the running server's shadow report: what the candidate priced, where its prices
    /// differ from the live policy's and by how much, its faults and limit hits.
    Report {
        /// The server's configuration: its `server.listen` and `api.token` are used.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The server's base URL, instead of one derived from `server.listen`.
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
    /// Make the candidate the running server's live policy, swapped in as a reload is (the
    /// configuration file is not edited: the answer says what to write there). Refused when
    /// the candidate has not priced yet, or faulted or refused to, unless --force.
    Promote {
        /// The server's configuration: its `server.listen` and `api.token` are used.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The server's base URL, instead of one derived from `server.listen`.
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// Promote a candidate that faulted, refused, or has not priced yet.
        #[arg(long)]
        force: bool,
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

fn runtime(config: &Config) -> Runtime {
    let runtime = match config.plugin.cache_dir(&config.source) {
        Some(dir) => Runtime::with_cache(dir),
        None => Runtime::new(),
    };
    if config.plugin.pooling {
        runtime
    } else {
        runtime.without_pooling()
    }
}

fn load(config: Option<PathBuf>) -> anyhow::Result<Reseller> {
    let config = Config::load(config.as_deref())?;
    Ok(Reseller::new(runtime(&config), config)?)
}

/// The order desk over the configured database, and the host it loaded.
fn open_desk(config: Option<PathBuf>) -> anyhow::Result<Arc<OrderDesk>> {
    let config = Config::load(config.as_deref())?;
    Ok(OrderDesk::open(runtime(&config), config)?)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve {
            config,
            listen,
            #[cfg(feature = "bench")]
            handler,
        } => {
            let desk = open_desk(config)?;
            let reseller = desk.reseller().clone();
            let active = reseller.active();
            tracing::info!(
                plugin = %active.plugin().name(),
                sha256 = active.plugin().sha256(),
                cache = ?active.plugin().cache_outcome(),
                modules = active.config().catalogue.modules.len(),
                "price list ready"
            );
            let addr = listen.unwrap_or(active.config().server.listen);
            let limits = serve::Limits::of(&active.config().server);
            let metrics_listen = active.config().server.metrics_listen;
            let database = active.config().order_database_shown();
            let mode = active.config().order_mode();
            drop(active);
            // The one placer of a SQLite database, or one of several on PostgreSQL; what a
            // stopped one left is settled first.
            let interrupted = desk.become_placer()?;
            tracing::info!(
                database = %database,
                shared = desk.shares_placement(),
                ?mode,
                in_doubt = interrupted.in_doubt.len() + interrupted.operations_in_doubt.len(),
                requeued = interrupted.requeued.len(),
                "orders ready"
            );
            let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            let served = rt.block_on(async move {
                let listener = http::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr}"))?;
                reload_on_hangup(reseller.clone());
                tokio::spawn(worker::run(desk.clone()));
                tokio::spawn(worker::run_price_refresh(desk.clone()));
                tokio::spawn(worker::run_lifecycle(desk.clone()));
                worker::run_webhooks(desk.clone());
                let (stop, stopped) = tokio::sync::watch::channel(false);
                if let Some(addr) = metrics_listen {
                    let mut stopped = stopped.clone();
                    let served = ops::serve_metrics(
                        addr,
                        reseller.clone(),
                        Some(desk.clone()),
                        async move {
                            let _ = stopped.wait_for(|s| *s).await;
                        },
                    );
                    tokio::spawn(async move {
                        if let Err(e) = served.await {
                            tracing::error!("cannot serve metrics on {addr}: {e}");
                        }
                    });
                }
                #[cfg(feature = "bench")]
                let app = reseller_host::bench::router(reseller, Some(desk), handler);
                #[cfg(not(feature = "bench"))]
                let app = http::app(reseller, Some(desk));
                let shutdown = async move {
                    shutdown_signal().await;
                    let _ = stop.send(true);
                };
                serve::serve(listener, app, limits, shutdown)
                    .await
                    .context("the server failed")
            });
            // A placement under way gets a moment to finish, not more: one stuck on upstream
            // would hold the stop for as long as upstream takes.
            rt.shutdown_timeout(SHUTDOWN_GRACE);
            served
        }
        Command::Pricelist {
            config,
            out,
            pricelist,
            all,
        } => {
            let reseller = load(config)?;
            let query = pricing::Query {
                format: match out {
                    Out::Xml => pricing::Format::Xml,
                    Out::Json => pricing::Format::Json,
                },
                ..panel_query(pricelist, !all)
            };
            let doc = reseller.export_prices(&query)?;
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&doc.body)?;
            stdout.write_all(b"\n")?;
            Ok(())
        }
        Command::Check { plugin, config } => {
            let config = Config::load(config.as_deref())?;
            let bytes = std::fs::read(&plugin)
                .with_context(|| format!("cannot read {}", plugin.display()))?;
            let name = plugin.display().to_string();
            let report = check::check(&runtime(&config), &name, &bytes, &config)
                .with_context(|| format!("{name} cannot be loaded"))?;
            writeln!(std::io::stdout().lock(), "{report}")?;
            anyhow::ensure!(report.passed(), "{name}: a sample call faulted");
            Ok(())
        }
        Command::Orders {
            command:
                OrdersCommand::Migrate {
                    from,
                    to,
                    password_env,
                },
            ..
        } => print_json(&cli::migrate(&from, &to, password_env.as_deref())?),
        Command::Orders { config, command } => {
            let desk = open_desk(config)?;
            print_json(&cli::orders(&desk, command)?)
        }
        Command::Balance { config, fresh } => {
            let desk = open_desk(config)?;
            print_json(&cli::balance(&desk, fresh)?)
        }
        Command::Prices { config, command } => {
            let desk = open_desk(config)?;
            match cli::prices(&desk, command)? {
                cli::Printed::Json(json) => print_json(&json),
                cli::Printed::Toml(toml) => {
                    std::io::stdout().lock().write_all(toml.as_bytes())?;
                    Ok(())
                }
            }
        }
        Command::Shadow { command } => {
            let (config, url, method, path, body) = match command {
                ShadowCommand::Report { config, url } => {
                    (config, url, reqwest::Method::GET, "/plugin/shadow", None)
                }
                ShadowCommand::Promote { config, url, force } => (
                    config,
                    url,
                    reqwest::Method::POST,
                    "/plugin/shadow/promote",
                    Some(serde_json::json!({ "force": force })),
                ),
            };
            let config = Config::from_file(&config)?;
            let answer = reseller_host::api::client::call(
                &config,
                url.as_deref(),
                method,
                path,
                body.as_ref(),
            )?;
            print_json(&answer)
        }
        Command::Reload { config, url } => {
            let config = Config::from_file(&config)?;
            let answer = reseller_host::api::client::call(
                &config,
                url.as_deref(),
                reqwest::Method::POST,
                "/plugin/reload",
                None,
            )?;
            print_json(&answer)
        }
    }
}

fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    writeln!(
        std::io::stdout().lock(),
        "{}",
        serde_json::to_string_pretty(value)?
    )?;
    Ok(())
}

/// Reloads the configuration on SIGHUP.
fn reload_on_hangup(reseller: Arc<Reseller>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reload through the API instead");
            return;
        };
        while hangups.recv().await.is_some() {
            let reseller = reseller.clone();
            match tokio::task::spawn_blocking(move || reseller.reload()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!("reload refused, the previous configuration keeps serving: {e}")
                }
                Err(e) => tracing::error!("the reload task failed: {e}"),
            }
        }
    });
    #[cfg(not(unix))]
    drop(reseller);
}

/// How long a stopping server waits for the work under way.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

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
