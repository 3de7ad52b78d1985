//! The end-to-end tests, one binary: the real `reseller` binary and the real components, over
//! real sockets on loopback, and the library's sandbox with the test plugins.

mod common;

mod cli;
mod console;
mod hostile;
mod hosts;
mod life;
mod orders;
mod pricelist;
mod sandbox;
mod swap;
mod upstream;
