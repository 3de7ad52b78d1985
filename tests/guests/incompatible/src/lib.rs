//! A plugin built against `billing:reseller@1.0.0`, a major version this host does not serve.

#![cfg(target_arch = "wasm32")]
#![expect(
    unsafe_code,
    reason = "the generated bindings export functions by symbol name"
)]

wit_bindgen::generate!({ world: "plugin", path: "wit" });

struct Incompatible;

export!(Incompatible);

impl exports::billing::reseller::pricing::Guest for Incompatible {
    fn export_prices(currency: String) -> Vec<u8> {
        currency.into_bytes()
    }
}
