//! `billing:reseller/upstream`: BILLmanager calls made by the host on the plugin's behalf.
//!
//! The plugin names a function and its parameters; the host checks the function against its
//! policy and hands the call to an [`UpstreamClient`], which adds the credentials, sends it to
//! the configured URL only and gives up after the time it is given. The plugin never sees any
//! of that. Only order hooks may call upstream, within their limits on calls and time.

pub mod http;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Budget, Hook};
use crate::bindings::upstream::{CallError, Host, Request, Response};
use crate::config::DEFAULT_FUNCTIONS;
use crate::limits::{Limit, LimitHit};
use crate::metrics;

/// Parameters the host sets itself; a plugin may not.
const RESERVED_PARAMS: &[&str] = &["authinfo", "out", "func", "auth", "username", "password"];

/// Something that can send a BILLmanager call upstream.
pub trait UpstreamClient: Send + Sync {
    /// Sends `func` with `params`, giving up after `timeout`; the client adds credentials and
    /// `out=xml`.
    fn call(
        &self,
        func: &str,
        params: &[(String, String)],
        timeout: Duration,
    ) -> Result<Response, CallError>;
}

/// The client when no upstream is configured: every call is refused before it leaves the host.
pub struct NotConfigured;

impl UpstreamClient for NotConfigured {
    fn call(&self, func: &str, _: &[(String, String)], _: Duration) -> Result<Response, CallError> {
        Err(CallError::NotAllowed(format!(
            "no upstream is configured, so `{func}` cannot be sent"
        )))
    }
}

/// Which functions reach which client.
pub struct UpstreamPolicy {
    functions: BTreeSet<String>,
    client: Arc<dyn UpstreamClient>,
}

impl UpstreamPolicy {
    /// Allows `functions` through `client`.
    pub fn new(
        functions: impl IntoIterator<Item = String>,
        client: Arc<dyn UpstreamClient>,
    ) -> Self {
        UpstreamPolicy {
            functions: functions.into_iter().collect(),
            client,
        }
    }

    /// The default functions over a client that is not configured.
    pub fn not_configured() -> Self {
        UpstreamPolicy::new(
            DEFAULT_FUNCTIONS.iter().map(|f| (*f).to_owned()),
            Arc::new(NotConfigured),
        )
    }

    /// The client calls go through.
    pub fn client(&self) -> &Arc<dyn UpstreamClient> {
        &self.client
    }

    /// The same functions through another client (one that records what it sends, say).
    pub fn with_client(&self, client: Arc<dyn UpstreamClient>) -> Self {
        UpstreamPolicy {
            functions: self.functions.clone(),
            client,
        }
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

/// One call's access to upstream.
pub struct UpstreamCap {
    policy: Arc<UpstreamPolicy>,
    hook: Hook,
    budget: Arc<Budget>,
    calls: u32,
    spent: Duration,
}

impl UpstreamCap {
    /// Access under `policy` for a call of `hook`, counted against `budget`.
    pub fn new(policy: Arc<UpstreamPolicy>, hook: Hook, budget: Arc<Budget>) -> Self {
        UpstreamCap {
            policy,
            hook,
            budget,
            calls: 0,
            spent: Duration::ZERO,
        }
    }
}

impl Host for UpstreamCap {
    fn call(&mut self, request: Request) -> wasmtime::Result<Result<Response, CallError>> {
        let bytes = request.func.len()
            + request
                .params
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
        self.budget.host_call(bytes)?;
        if self.hook == Hook::Pricing {
            return Ok(Err(CallError::NotAllowed(
                "upstream calls are not allowed while pricing".to_owned(),
            )));
        }
        if let Err(refused) = self.policy.check(&request) {
            // Not by the function's name: a plugin could invent any number of them.
            metrics::global().upstream_call("(refused)", "not_allowed", Duration::ZERO);
            return Ok(Err(refused));
        }
        let limits = self.budget.limits();
        if self.calls >= limits.upstream_calls {
            let asked = u64::from(self.calls) + 1;
            return Err(wasmtime::Error::new(LimitHit::new(
                Limit::UpstreamCalls,
                limits,
                Some(asked),
            )));
        }
        let remaining = limits.upstream_time().saturating_sub(self.spent);
        if remaining.is_zero() {
            return Err(wasmtime::Error::new(LimitHit::new(
                Limit::UpstreamTime,
                limits,
                None,
            )));
        }
        self.calls += 1;
        let started = Instant::now();
        let answer = self
            .policy
            .client
            .call(&request.func, &request.params, remaining);
        self.spent += started.elapsed();
        let outcome = match &answer {
            Ok(_) => "answered",
            Err(CallError::NotAllowed(_)) => "not_allowed",
            Err(CallError::NotSent(_)) => "not_sent",
            Err(CallError::InDoubt(_)) => "in_doubt",
        };
        metrics::global().upstream_call(&request.func, outcome, started.elapsed());
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::limits::Limits;

    /// Records calls with their time-outs and answers each with an empty document.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<(String, Duration)>>);

    impl UpstreamClient for Recorder {
        fn call(
            &self,
            func: &str,
            _: &[(String, String)],
            timeout: Duration,
        ) -> Result<Response, CallError> {
            self.0
                .lock()
                .map_err(|_| CallError::NotSent("poisoned".into()))?
                .push((func.to_owned(), timeout));
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

    fn cap(recorder: Arc<Recorder>, hook: Hook, limits: Limits) -> UpstreamCap {
        let policy = UpstreamPolicy::new(["pricelist.export".to_owned()], recorder);
        UpstreamCap::new(Arc::new(policy), hook, Budget::new(limits))
    }

    #[test]
    fn only_allowed_functions_reach_the_client() {
        let recorder = Arc::new(Recorder::default());
        let mut cap = cap(recorder.clone(), Hook::Orders, Limits::default());
        assert!(matches!(
            cap.call(request("pricelist.export", &[("itemtype", "addition")])),
            Ok(Ok(_))
        ));
        assert!(matches!(
            cap.call(request("user.edit", &[])),
            Ok(Err(CallError::NotAllowed(_)))
        ));
        let sneaky = request("pricelist.export", &[("authinfo", "other:account")]);
        assert!(matches!(
            cap.call(sneaky),
            Ok(Err(CallError::NotAllowed(_)))
        ));
        let calls = recorder.0.lock().expect("lock");
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].0, "pricelist.export");
        assert!(calls[0].1 <= Limits::default().upstream_time());
    }

    #[test]
    fn calls_are_counted_by_function_and_outcome() {
        let counter = |function: &str, outcome: &str| {
            metrics::global()
                .upstream_calls
                .with_label_values(&[function, outcome])
                .get()
        };
        let (answered, refused) = (
            counter("pricelist.export", "answered"),
            counter("(refused)", "not_allowed"),
        );
        let mut cap = cap(
            Arc::new(Recorder::default()),
            Hook::Orders,
            Limits::default(),
        );
        for _ in 0..3 {
            let _ = cap.call(request("pricelist.export", &[]));
        }
        let _ = cap.call(request("invented.function", &[]));
        // Other tests count too, in parallel: at least these calls.
        assert!(counter("pricelist.export", "answered") >= answered + 3);
        assert!(counter("(refused)", "not_allowed") > refused);
        assert_eq!(counter("invented.function", "not_allowed"), 0);
    }

    #[test]
    fn pricing_never_calls_upstream() {
        let recorder = Arc::new(Recorder::default());
        let mut cap = cap(recorder.clone(), Hook::Pricing, Limits::default());
        let answer = cap.call(request("pricelist.export", &[])).expect("no trap");
        assert!(matches!(answer, Err(CallError::NotAllowed(m)) if m.contains("pricing")));
        assert!(recorder.0.lock().expect("lock").is_empty());
    }

    #[test]
    fn calls_past_the_limit_are_the_guests_fault() {
        let recorder = Arc::new(Recorder::default());
        let mut cap = cap(
            recorder.clone(),
            Hook::Orders,
            Limits {
                upstream_calls: 2,
                ..Limits::default()
            },
        );
        for _ in 0..2 {
            assert!(matches!(
                cap.call(request("pricelist.export", &[])),
                Ok(Ok(_))
            ));
        }
        let err = cap
            .call(request("pricelist.export", &[]))
            .expect_err("a trap");
        let hit = err.downcast_ref::<LimitHit>().expect("a limit hit");
        assert_eq!(
            (hit.limit, hit.figure, hit.asked),
            (Limit::UpstreamCalls, 2, Some(3))
        );
        assert_eq!(recorder.0.lock().expect("lock").len(), 2);
    }

    #[test]
    fn nothing_leaves_without_an_upstream() {
        let policy = Arc::new(UpstreamPolicy::not_configured());
        let mut cap = UpstreamCap::new(policy, Hook::Orders, Budget::new(Limits::default()));
        let answer = cap.call(request("pricelist.export", &[])).expect("no trap");
        assert!(matches!(answer, Err(CallError::NotAllowed(m)) if m.contains("no upstream")));
    }
}
