//! A faithful simulator of ispmanager's upstream BILLmanager API, for testing a partner's
//! integration without a real account or real money.
//!
//! It keeps a partner's account (credentials, balance, licences, module tariffs, ordered
//! services and their expiry) on a simulated clock, and answers `/billmgr` as BILLmanager does:
//! `pricelist.export`, `addition` (the service list), `addition.order.param`, `addition.edit`,
//! `addition.suspend`, `addition.resume`, `service.prolong`, `addition.delete` and
//! `dashboard.info`, in XML (or JSON with `out=json`), with BILLmanager's error documents on
//! HTTP 200. When the clock reaches a service's expiry, the service is renewed from the balance
//! (with `autoprolong`) or suspended. A JSON control API under `/sim/` (and the same operations
//! on [`Simulator`]) shows the state and every call received, moves the clock, and arms faults
//! for the next calls: a delay, a 5xx page, an HTML page, a login page, a redirect, a truncated
//! or empty body, or a connection closed without an answer, each with or without the call
//! taking effect first.
//!
//! ```no_run
//! use upstream_sim::{Fault, FaultSpec, Simulator, State};
//!
//! let upstream = Simulator::start("127.0.0.1:0", State::default())?;
//! upstream.sim().arm(FaultSpec::new(Fault::Cut).on("addition.order.param").applied())?;
//! // … point the client at `upstream.billmgr_url()`, order, then:
//! assert_eq!(upstream.sim().count("addition.order.param"), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod billmgr;
mod clock;
mod date;
mod doc;
mod faults;
mod http;
mod server;
mod sim;
mod state;

pub use clock::ClockReport;
pub use date::{Date, DateError};
pub use faults::{Fault, FaultError, FaultSpec};
pub use server::{Handle, StartError};
pub use sim::{Call, Outcome, Simulator};
pub use state::{
    Account, Amount, AmountError, CurrencyPrices, DEFAULT_TODAY, Price, Service, ServiceStatus,
    State, StateError, Tariff,
};
