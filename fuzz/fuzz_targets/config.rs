//! The configuration loader: any text is a configuration or an error naming a key, never a
//! panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use reseller_host::config::{Config, Source};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text, Source::Embedded) {
        Ok(config) => {
            // What was accepted holds together.
            for module in &config.catalogue.modules {
                assert!(config.module(config.tariff_id(module)).is_some());
            }
            assert!(config.server.max_connections > 0);
            let _ = config.pricing_json();
        }
        Err(e) => assert!(!e.key.is_empty()),
    }
});
