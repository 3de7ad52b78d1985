//! The `orders`, `balance` and `prices` commands: the order desk from a shell. Every command
//! prints JSON (or TOML for `prices import`); each is safe beside a running server on the same
//! database.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use reseller_host::config::OrderMode;
use reseller_host::money::Months;
use reseller_host::orders::lifecycle::{Finding, Performed};
use reseller_host::orders::placement::Attempt;
use reseller_host::orders::postgres::{PgOptions, redacted};
use reseller_host::orders::reconcile::Options;
use reseller_host::orders::{ListFilter, Order, OrderDesk, OrderId, OrderState, PgStore};
use serde_json::{Value, json};

/// Who the order history says acted.
const ACTOR: &str = "cli";

#[derive(Subcommand)]
pub enum OrdersCommand {
    /// List orders, newest first, with their expiry dates.
    List {
        /// Only orders in this state (new, paid, placing, placed, suspended, failed, in_doubt,
        /// cancelled, removed).
        #[arg(long)]
        state: Option<OrderState>,
        /// Only orders for this licence.
        #[arg(long)]
        licence: Option<String>,
        /// Only orders of this tariff.
        #[arg(long)]
        tariff: Option<u64>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Skip this many first.
        #[arg(long, default_value_t = 0)]
        offset: u32,
    },
    /// Show an order, its history (transitions and upstream calls) and its operations.
    Show {
        /// The order ID.
        id: OrderId,
    },
    /// Modules whose renewal is due: placed or suspended, expiring within the days given.
    Due {
        /// Days ahead.
        #[arg(long, default_value_t = 7)]
        within_days: u32,
    },
    /// The user paid: mark the order paid. In automatic mode it is placed now, or by the
    /// running server.
    Paid {
        /// The order ID.
        id: OrderId,
    },
    /// Change what an unpaid order asks for (its period), or give the module's order fields.
    Details {
        /// The order ID.
        id: OrderId,
        /// Months.
        #[arg(long)]
        period: Option<Months>,
        /// An order field, `name=value`; may be repeated.
        #[arg(long = "field", value_name = "NAME=VALUE")]
        fields: Vec<String>,
    },
    /// An operator placed the order by hand, or found an in-doubt order upstream.
    Placed {
        /// The order ID.
        id: OrderId,
        /// The module's service ID upstream.
        service_id: String,
    },
    /// Renew a module the customer paid a renewal for (`service.prolong`).
    Renew {
        /// The order ID.
        id: OrderId,
        /// Months; the order's period when absent.
        #[arg(long)]
        period: Option<Months>,
        /// The billing system's name for this renewal (its invoice ID): the same key again
        /// renews once.
        #[arg(long)]
        key: Option<String>,
        /// Manual mode: the new expiry date (YYYY-MM-DD) of a renewal done by hand.
        #[arg(long)]
        expires: Option<String>,
    },
    /// What a renewal would cost and give, asked of upstream without renewing.
    Quote {
        /// The order ID.
        id: OrderId,
        /// Months; the order's period when absent.
        #[arg(long)]
        period: Option<Months>,
    },
    /// Suspend a placed module (the customer stopped paying).
    Suspend {
        /// The order ID.
        id: OrderId,
        /// An idempotency key.
        #[arg(long)]
        key: Option<String>,
    },
    /// Resume a suspended module.
    Resume {
        /// The order ID.
        id: OrderId,
        /// An idempotency key.
        #[arg(long)]
        key: Option<String>,
    },
    /// Remove a placed or suspended module upstream.
    Remove {
        /// The order ID.
        id: OrderId,
        /// An idempotency key.
        #[arg(long)]
        key: Option<String>,
    },
    /// Bind a placed module to another licence.
    Rebind {
        /// The order ID.
        id: OrderId,
        /// The new licence ID.
        licence: String,
        /// The new licence's IP.
        #[arg(long)]
        ip: Option<std::net::IpAddr>,
        /// An idempotency key.
        #[arg(long)]
        key: Option<String>,
    },
    /// Settle an operation in doubt once you have checked upstream.
    Resolve {
        /// The order ID.
        id: OrderId,
        /// The operation's number (see `orders show`).
        operation: i64,
        /// Upstream did it.
        #[arg(
            long,
            conflicts_with = "not_done",
            required_unless_present = "not_done"
        )]
        done: bool,
        /// Upstream did not do it.
        #[arg(long)]
        not_done: bool,
        /// For a renewal found done: the new expiry date (YYYY-MM-DD).
        #[arg(long)]
        expires: Option<String>,
    },
    /// Cancel an order that is not placed (unpaid, paid and waiting, or failed).
    Cancel {
        /// The order ID.
        id: OrderId,
    },
    /// Queue a failed order again, or an in-doubt one once you have checked upstream.
    Retry {
        /// The order ID.
        id: OrderId,
        /// You checked upstream: the module was not ordered. Required for an in-doubt order.
        #[arg(long)]
        absent_upstream: bool,
    },
    /// Try to place a paid order now (automatic mode; refused while a server places the
    /// orders of this database, since it does that itself).
    Place {
        /// The order ID.
        id: OrderId,
    },
    /// Compare the orders with the modules upstream lists (read-only unless asked): in-doubt
    /// orders and operations with their evidence, unknown modules, differences.
    Reconcile {
        /// Resolve what the evidence says, recorded as done by the CLI.
        #[arg(long)]
        apply: bool,
        /// Import the modules upstream lists that no order knows.
        #[arg(long)]
        import: bool,
    },
    /// The events recorded for the billing system, oldest first.
    Events {
        /// Only events after this ID.
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Copy a SQLite order database into an empty PostgreSQL one, all or nothing: orders,
    /// their history and upstream calls, operations, events, upstream's prices and balance.
    /// Stop the hosts using the file first. Needs no configuration.
    Migrate {
        /// The SQLite database file.
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        /// The PostgreSQL database: `postgres://user@host/db`.
        #[arg(long, value_name = "URL")]
        to: String,
        /// The name of an environment variable holding the PostgreSQL password, when the URL
        /// has none.
        #[arg(long, value_name = "VAR")]
        password_env: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum PricesCommand {
    /// Fetch upstream's prices (`pricelist.export` upstream, through the plugin) and make the
    /// catalogue's costs follow them; kept in the order database for later starts.
    Refresh,
    /// Print catalogue entries (TOML) for the tariffs upstream lists and the catalogue lacks,
    /// with upstream's names and costs, to add to the configuration. Uses the prices last
    /// fetched; `--fetch` fetches them first.
    Import {
        /// Fetch upstream's prices first.
        #[arg(long)]
        fetch: bool,
    },
}

fn performed(p: Performed) -> Value {
    json!({"order": p.order, "operation": p.operation, "replayed": p.replayed})
}

fn date(text: Option<String>) -> anyhow::Result<Option<time::Date>> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    text.map(|t| {
        time::Date::parse(t.trim(), format)
            .map_err(|_| anyhow::anyhow!("`{t}` is not a date (YYYY-MM-DD)"))
    })
    .transpose()
}

/// Runs one `orders` command.
pub fn orders(desk: &OrderDesk, command: OrdersCommand) -> anyhow::Result<Value> {
    let one = |order: Order| json!({ "order": order });
    Ok(match command {
        OrdersCommand::List {
            state,
            licence,
            tariff,
            limit,
            offset,
        } => {
            let filter = ListFilter {
                state,
                licence_id: licence,
                tariff_id: tariff,
                limit,
                offset,
                ..ListFilter::default()
            };
            json!({ "orders": desk.list(&filter)? })
        }
        OrdersCommand::Show { id } => json!({
            "order": desk.get(&id)?,
            "history": desk.history(&id)?,
            "operations": desk.operations(&id)?,
        }),
        OrdersCommand::Due { within_days } => {
            json!({ "within_days": within_days, "orders": desk.renewals_due(within_days)? })
        }
        OrdersCommand::Paid { id } => {
            let marked = desk.mark_paid(&id, ACTOR)?;
            // Placed now unless a running server places the orders of this database: then its
            // worker takes it within orders.poll_ms.
            let order = if marked.changed
                && desk.mode() == OrderMode::Automatic
                && desk.become_placer().is_ok()
            {
                attempted(desk.place(&id, ACTOR)?)
            } else {
                marked.order
            };
            json!({"order": order, "changed": marked.changed})
        }
        OrdersCommand::Details { id, period, fields } => {
            let fields: Vec<(String, String)> = fields
                .iter()
                .map(|f| {
                    f.split_once('=')
                        .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
                        .ok_or_else(|| anyhow::anyhow!("--field {f}: expected NAME=VALUE"))
                })
                .collect::<anyhow::Result<_>>()?;
            let fields = (!fields.is_empty()).then_some(fields.as_slice());
            one(desk.set_details(&id, period, fields, ACTOR)?)
        }
        OrdersCommand::Placed { id, service_id } => {
            one(desk.mark_placed(&id, &service_id, ACTOR)?)
        }
        OrdersCommand::Renew {
            id,
            period,
            key,
            expires,
        } => performed(desk.renew(&id, period, key.as_deref(), date(expires)?, ACTOR)?),
        OrdersCommand::Quote { id, period } => json!({ "quote": desk.quote_renewal(&id, period)? }),
        OrdersCommand::Suspend { id, key } => {
            performed(desk.suspend(&id, key.as_deref(), ACTOR)?)
        }
        OrdersCommand::Resume { id, key } => performed(desk.resume(&id, key.as_deref(), ACTOR)?),
        OrdersCommand::Remove { id, key } => performed(desk.remove(&id, key.as_deref(), ACTOR)?),
        OrdersCommand::Rebind {
            id,
            licence,
            ip,
            key,
        } => performed(desk.rebind(&id, &licence, ip, key.as_deref(), ACTOR)?),
        OrdersCommand::Resolve {
            id,
            operation,
            done,
            not_done: _,
            expires,
        } => {
            let finding = if done {
                Finding::Done(date(expires)?)
            } else {
                Finding::NotDone
            };
            performed(desk.resolve_operation(&id, operation, finding, ACTOR)?)
        }
        OrdersCommand::Cancel { id } => one(desk.cancel(&id, ACTOR)?),
        OrdersCommand::Retry {
            id,
            absent_upstream,
        } => one(desk.retry(&id, absent_upstream, ACTOR)?),
        OrdersCommand::Place { id } => {
            desk.become_placer()?;
            one(attempted(desk.place(&id, ACTOR)?))
        }
        OrdersCommand::Reconcile { apply, import } => {
            let options = Options {
                apply,
                import,
                unambiguous_only: false,
                resolve_doubts: false,
            };
            json!({ "report": desk.reconcile(options, ACTOR)? })
        }
        OrdersCommand::Events { after, limit } => {
            json!({ "events": desk.backend().events_after(after, limit.clamp(1, 1000))? })
        }
        OrdersCommand::Migrate { from, to, .. } => {
            // Handled without a desk: see `migrate`.
            anyhow::bail!(
                "migrate {} to {} needs no order database of its own",
                from.display(),
                redacted(&to)
            )
        }
    })
}

fn attempted(attempt: Attempt) -> Order {
    match attempt {
        Attempt::Settled { order, .. } | Attempt::NotClaimed(order) | Attempt::Waiting(order) => {
            order
        }
    }
}

/// The balance: the last reading, or a fresh one.
pub fn balance(desk: &OrderDesk, fresh: bool) -> anyhow::Result<Value> {
    let balance = match desk.stored_balance()? {
        Some(b) if !fresh => b,
        _ => desk.read_balance()?,
    };
    Ok(json!({ "balance": balance }))
}

/// What a `prices` command prints.
pub enum Printed {
    /// A JSON answer.
    Json(Value),
    /// Catalogue entries, in TOML.
    Toml(String),
}

/// Runs one `prices` command; `Import` answers TOML.
pub fn prices(desk: &OrderDesk, command: PricesCommand) -> anyhow::Result<Printed> {
    Ok(match command {
        PricesCommand::Refresh => Printed::Json(serde_json::to_value(desk.refresh_prices()?)?),
        PricesCommand::Import { fetch } => {
            if fetch {
                desk.refresh_prices()?;
            }
            let (upstream, _) = desk.backend().upstream()?.ok_or_else(|| {
                anyhow::anyhow!("upstream's prices were never fetched: run with --fetch")
            })?;
            let active = desk.reseller().active();
            Printed::Toml(reseller_host::catalogue::import_entries(
                active.config(),
                &upstream,
            ))
        }
    })
}

/// `orders migrate`: copies the SQLite database `from` into the PostgreSQL database `to`.
pub fn migrate(from: &Path, to: &str, password_env: Option<&str>) -> anyhow::Result<Value> {
    let mut options = PgOptions::new(to);
    if let Some(var) = password_env {
        options.password = Some(
            std::env::var(var).map_err(|_| anyhow::anyhow!("--password-env: {var} is not set"))?,
        );
    }
    let shown = redacted(to);
    let store = PgStore::open(&options).with_context(|| format!("cannot open {shown}"))?;
    let copied = store
        .import_sqlite(from)
        .with_context(|| format!("cannot migrate {} to {shown}", from.display()))?;
    Ok(json!({ "from": from.display().to_string(), "to": shown, "copied": copied }))
}
