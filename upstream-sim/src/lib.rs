//! A faithful simulator of ispmanager's upstream BILLmanager API, for testing a partner's
//! integration without a real account or real money.
//!
//! It keeps a partner's account (credentials, balance, licences, module tariffs, ordered
//! services) and answers `/billmgr` as BILLmanager does: `pricelist.export`,
//! `addition.order.param`, `addition.edit`, `service.prolong` and `addition.delete`, in XML (or
//! JSON with `out=json`), with BILLmanager's error documents on HTTP 200. A JSON control API
//! under `/sim/` (and the same operations on [`Simulator`]) shows the state and every call
//! received, and arms faults for the next calls: a delay, a 5xx page, an HTML page, a truncated
//! or empty body, or a connection closed without an answer, each with or without the call taking
//! effect first.
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
mod doc;
mod faults;
mod http;
mod server;
mod sim;
mod state;

pub use faults::{Fault, FaultError, FaultSpec};
pub use server::{Handle, StartError};
pub use sim::{Call, Outcome, Simulator};
pub use state::{Account, Amount, AmountError, Price, Service, State, StateError, Tariff};
