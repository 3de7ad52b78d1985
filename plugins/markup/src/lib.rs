//! The built-in pricing policy as a component of the `pricing-policy` world: a markup over the
//! upstream cost, rounded to a step, with per-currency overrides and fixed prices
//! ([`reseller_plugin::policy::Settings`] documents the settings). The host joins it to the
//! built-in protocol when no other policy is configured.

reseller_plugin::export_policy!(reseller_plugin::Markup);
