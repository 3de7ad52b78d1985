//! The end-to-end tests, one binary: the real `reseller` binary and the real components, over
//! real sockets on loopback, and the library's sandbox with the test plugins.

mod common;

mod cli;
mod console;
mod hardening;
mod hostile;
mod hosts;
mod life;
mod native;
mod orders;
mod polyglot;
mod pricelist;
mod sandbox;
mod shadow;
mod swap;
mod upstream;
