//! The Buy redirect's parameters: parsing never panics, and what passes is what the rules say.

#![no_main]

use libfuzzer_sys::fuzz_target;
use reseller_host::billmgr::Params;
use reseller_host::orders::buy::{BuyRequest, is_licence_id};

fuzz_target!(|data: &[u8]| {
    let params = Params::parse(&[data]);
    match BuyRequest::parse(|name| params.get(name)) {
        Ok(request) => {
            assert!(!request.module.is_empty());
            assert!(!request.module.chars().any(char::is_control));
            assert!(is_licence_id(&request.licence_id));
            assert!(request.tariff_id > 0 && i64::try_from(request.tariff_id).is_ok());
            // The number given, whatever its spelling (`00738` is tariff 738).
            assert_eq!(
                params
                    .get("module_id")
                    .and_then(|id| id.trim().parse::<u64>().ok()),
                Some(request.tariff_id)
            );
        }
        Err(e) => {
            assert!(["module", "license", "ip", "module_id"].contains(&e.field));
        }
    }
});
