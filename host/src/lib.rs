//! The ispmanager-reseller host, as a library: it runs a partner's pricing and order plugin (a
//! wasm component of the `billing:reseller` world) in a sandbox, answers the ispmanager panel's
//! price export and Buy redirect, keeps the orders, and places them upstream.
//!
//! The entry points are [`Reseller`] (the configuration and plugin in force, swappable while it
//! serves; price exports) and [`orders::OrderDesk`] (every order operation over an order
//! store). [`http::app`] serves both as an axum router; the `reseller` binary is a thin CLI over
//! the same calls.
//!
//! The four lifetimes of running a plugin are kept apart: the process ([`runtime::Runtime`]:
//! engines, the epoch ticker, the code cache), a plugin version ([`runtime::LoadedPlugin`]:
//! compiled and linked once, swapped atomically by [`Reseller`]), one call (a fresh store
//! within [`limits::Limits`]), and each capability granted to it ([`capabilities`]).
//! [`bindings`] is the one place the contract's types are generated, and [`convert`] the one
//! place they meet the host's own.
pub mod api;
#[cfg(feature = "bench")]
pub mod bench;
pub mod billmgr;
pub mod bindings;
pub mod capabilities;
pub mod catalogue;
pub mod check;
pub mod config;
pub mod console;
pub mod convert;
pub mod dates;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod money;
pub mod native;
pub mod ops;
pub mod orders;
pub mod reseller;
pub mod runtime;
pub mod serve;
pub mod shadow;

pub use reseller::{Active, ExportError, Reseller};
