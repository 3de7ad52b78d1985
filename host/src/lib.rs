//! The ispmanager-reseller host.
pub mod api;
#[cfg(feature = "bench")]
pub mod bench;
pub mod billmgr;
pub mod bindings;
pub mod capabilities;
pub mod check;
pub mod config;
pub mod http;
pub mod orders;
pub mod runtime;
pub mod service;

pub use service::{Active, ExportError, Reseller};
