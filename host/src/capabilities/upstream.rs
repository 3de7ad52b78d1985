//! `billing:reseller/upstream`: BILLmanager calls made by the host on the plugin's behalf.
//!
//! The plugin names a function and its parameters; the host checks the function against its
//! policy and hands the call to an [`UpstreamClient`], which adds the credentials, sends it to
//! the configured URL only and bounds its time and size. The plugin never sees any of that.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::bindings::upstream::{CallError, Host, Request, Response};

/// The functions a plugin may call when the configuration names none: the order flow's.
pub const DEFAULT_FUNCTIONS: &[&str] = &[
    "addition.order.param",
    "addition.edit",
    "service.prolong",
    "addition.delete",
    "pricelist.export",
];

/// Parameters the host sets itself; a plugin may not.
const RESERVED_PARAMS: &[&str] = &["authinfo", "out", "func", "auth", "username", "password"];

/// Something that can send a BILLmanager call upstream.
pub trait UpstreamClient: Send + Sync {
    /// Sends `func` with `params`; the client adds credentials and `out=xml`.
    fn call(&self, func: &str, params: &[(String, String)]) -> Result<Response, CallError>;
}

/// The client when no upstream is configured: every call is refused before it leaves the host.
pub struct NotConfigured;

impl UpstreamClient for NotConfigured {
    fn call(&self, func: &str, _params: &[(String, String)]) -> Result<Response, CallError> {
        Err(CallError::NotAllowed(format!(
            "no upstream is configured, so `{func}` cannot be sent"
        )))
    }
}

/// The capability: the policy and the client it guards.
#[derive(Clone)]
pub struct UpstreamCap {
    functions: Arc<BTreeSet<String>>,
    client: Arc<dyn UpstreamClient>,
}

impl UpstreamCap {
    /// Allows `functions` through `client`.
    pub fn new(
        functions: impl IntoIterator<Item = String>,
        client: Arc<dyn UpstreamClient>,
    ) -> Self {
        UpstreamCap {
            functions: Arc::new(functions.into_iter().collect()),
            client,
        }
    }

    /// The default policy over a client that is not configured.
    pub fn not_configured() -> Self {
        UpstreamCap::new(
            DEFAULT_FUNCTIONS.iter().map(|f| (*f).to_owned()),
            Arc::new(NotConfigured),
        )
    }

    fn check(&self, request: &Request) -> Result<(), CallError> {
        if !self.functions.contains(&request.func) {
            return Err(CallError::NotAllowed(format!(
                "the function `{}` is not allowed to this plugin",
                request.func
            )));
        }
        if let Some((name, _)) = request
            .params
            .iter()
            .find(|(name, _)| RESERVED_PARAMS.contains(&name.as_str()))
        {
            return Err(CallError::NotAllowed(format!(
                "the parameter `{name}` is set by the host, not by a plugin"
            )));
        }
        Ok(())
    }
}

impl Host for UpstreamCap {
    fn call(&mut self, request: Request) -> Result<Response, CallError> {
        self.check(&request)?;
        self.client.call(&request.func, &request.params)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Records calls and answers each with an empty document.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl UpstreamClient for Recorder {
        fn call(&self, func: &str, _: &[(String, String)]) -> Result<Response, CallError> {
            self.0
                .lock()
                .map_err(|_| CallError::NotSent("poisoned".into()))?
                .push(func.to_owned());
            Ok(Response {
                status: 200,
                body: b"<doc/>".to_vec(),
                truncated: false,
            })
        }
    }

    fn request(func: &str, params: &[(&str, &str)]) -> Request {
        Request {
            func: func.to_owned(),
            params: params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn only_allowed_functions_reach_the_client() {
        let recorder = Arc::new(Recorder::default());
        let mut cap = UpstreamCap::new(["pricelist.export".to_owned()], recorder.clone());
        assert!(
            cap.call(request("pricelist.export", &[("itemtype", "addition")]))
                .is_ok()
        );
        assert!(matches!(
            cap.call(request("user.edit", &[])),
            Err(CallError::NotAllowed(_))
        ));
        let sneaky = request("pricelist.export", &[("authinfo", "other:account")]);
        assert!(matches!(cap.call(sneaky), Err(CallError::NotAllowed(_))));
        assert_eq!(*recorder.0.lock().expect("lock"), ["pricelist.export"]);
    }

    #[test]
    fn nothing_leaves_without_an_upstream() {
        let mut cap = UpstreamCap::not_configured();
        let err = cap
            .call(request("pricelist.export", &[]))
            .expect_err("refused");
        assert!(matches!(err, CallError::NotAllowed(m) if m.contains("no upstream")));
    }
}
