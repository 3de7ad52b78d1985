//! The Buy redirect's parameters: parsing never panics, and what passes is what the rules say.

#![no_main]

use libfuzzer_sys::fuzz_target;
use reseller_host::billmgr::Params;
use reseller_host::orders::buy::{BuyRequest, is_licence_id};

/// Parameters the Buy reads itself; every other one is kept as a possible order field.
const OWN: [&str; 6] = ["module", "license", "ip", "module_id", "period", "func"];

fuzz_target!(|data: &[u8]| {
    let params = Params::parse(&[data]);
    let first = |name: &str| {
        params
            .pairs()
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
    };
    match BuyRequest::parse(params.pairs()) {
        Ok(request) => {
            // `module` is kept as given, cut and without control characters, or absent.
            if let Some(module) = &request.module {
                assert!(!module.is_empty());
                assert!(!module.chars().any(char::is_control));
            }
            assert!(is_licence_id(&request.licence_id));
            assert!(request.tariff_id > 0 && i64::try_from(request.tariff_id).is_ok());
            // The number given, whatever its spelling (`00738` is tariff 738).
            assert_eq!(
                first("module_id").and_then(|id| id.parse::<u64>().ok()),
                Some(request.tariff_id)
            );
            // Every extra parameter once, none of the Buy's own.
            for (i, (name, _)) in request.extra.iter().enumerate() {
                assert!(!OWN.contains(&name.as_str()));
                assert!(request.extra[..i].iter().all(|(n, _)| n != name));
            }
        }
        Err(e) => {
            assert!(["license", "ip", "module_id", "period"].contains(&e.field));
        }
    }
});
