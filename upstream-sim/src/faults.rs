//! Faults a test arms for the next calls: how upstream misbehaves, and whether the call still
//! takes effect behind the misbehaviour.

use serde::{Deserialize, Serialize};

/// One way for upstream to misbehave.
///
/// In JSON, tagged by `kind`: `{"kind": "delay", "ms": 500}`, `{"kind": "status", "code": 503}`,
/// `{"kind": "html"}`, `{"kind": "login"}`, `{"kind": "redirect"}`, `{"kind": "truncated"}`,
/// `{"kind": "empty"}`, `{"kind": "cut"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Fault {
    /// Waits, then answers normally.
    Delay {
        /// Milliseconds to wait.
        ms: u64,
    },
    /// Answers an HTTP 5xx status with a small HTML page.
    Status {
        /// The status, 500 to 599.
        #[serde(default = "bad_gateway")]
        code: u16,
    },
    /// Answers HTTP 200 with an HTML error page instead of a document.
    Html,
    /// Answers HTTP 200 with BILLmanager's HTML login page (`text/html`), as a misconfigured
    /// upstream URL or a session-only account gets instead of a document.
    Login,
    /// Answers HTTP 302 to `https://example.invalid/billmgr` with an empty body, as a front
    /// proxy does for a URL it moved (http to https, another path).
    Redirect,
    /// Answers the right document, cut in half.
    Truncated,
    /// Answers HTTP 200 with an empty body.
    Empty,
    /// Reads the request, then closes the connection without any answer.
    ///
    /// Needs the simulator's own server ([`crate::Simulator::serve`] or
    /// [`crate::Simulator::start`]); through a bare router it answers an empty body.
    Cut,
}

/// A fault armed for the next calls of one `func`, or of any.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultSpec {
    /// The `func` it hits; any when `None`.
    #[serde(default)]
    pub func: Option<String>,
    /// How many calls it hits.
    #[serde(default = "once")]
    pub times: u32,
    /// Whether the call takes effect before the fault: with `true`, an order is placed and
    /// paid and only then is the answer spoiled. For [`Fault::Delay`] the call always takes
    /// effect: before the wait with `true`, after it with `false`.
    #[serde(default)]
    pub apply: bool,
    /// The misbehaviour.
    #[serde(flatten)]
    pub fault: Fault,
}

/// Why a fault cannot be armed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FaultError {
    /// `status` with a code that is not a server error.
    #[error("status {0} is not a server error (500 to 599)")]
    NotServerError(u16),
    /// `times` of zero.
    #[error("a fault must hit at least one call")]
    NoCalls,
}

impl FaultSpec {
    /// `fault` for the next call of any `func`, which does not take effect.
    pub fn new(fault: Fault) -> FaultSpec {
        FaultSpec {
            func: None,
            times: 1,
            apply: false,
            fault,
        }
    }

    /// Hits only calls of `func`.
    pub fn on(mut self, func: &str) -> FaultSpec {
        self.func = Some(func.to_owned());
        self
    }

    /// Hits the next `n` matching calls.
    pub fn times(mut self, n: u32) -> FaultSpec {
        self.times = n;
        self
    }

    /// Lets the call take effect before the fault.
    pub fn applied(mut self) -> FaultSpec {
        self.apply = true;
        self
    }

    /// Refuses specs that cannot be honoured.
    pub fn validate(&self) -> Result<(), FaultError> {
        if self.times == 0 {
            return Err(FaultError::NoCalls);
        }
        match self.fault {
            Fault::Status { code } if !(500..=599).contains(&code) => {
                Err(FaultError::NotServerError(code))
            }
            _ => Ok(()),
        }
    }

    fn hits(&self, func: &str) -> bool {
        self.func.as_deref().is_none_or(|f| f == func)
    }
}

/// The armed faults, first armed first used.
#[derive(Clone, Debug, Default)]
pub(crate) struct Faults {
    armed: Vec<FaultSpec>,
}

impl Faults {
    /// Arms `spec` after those already armed.
    pub(crate) fn arm(&mut self, spec: FaultSpec) -> Result<(), FaultError> {
        spec.validate()?;
        self.armed.push(spec);
        Ok(())
    }

    /// The fault for a call of `func`, used up by it.
    pub(crate) fn take(&mut self, func: &str) -> Option<FaultSpec> {
        let index = self.armed.iter().position(|s| s.hits(func))?;
        let spec = &mut self.armed[index];
        spec.times = spec.times.saturating_sub(1);
        let taken = FaultSpec {
            times: 1,
            ..spec.clone()
        };
        if spec.times == 0 {
            self.armed.remove(index);
        }
        Some(taken)
    }

    /// What is still armed.
    pub(crate) fn pending(&self) -> Vec<FaultSpec> {
        self.armed.clone()
    }

    /// Disarms everything.
    pub(crate) fn clear(&mut self) {
        self.armed.clear();
    }
}

fn bad_gateway() -> u16 {
    502
}

fn once() -> u32 {
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_hit_their_func_the_given_number_of_times() {
        let mut faults = Faults::default();
        faults
            .arm(FaultSpec::new(Fault::Empty).on("addition.edit").times(2))
            .expect("armed");
        faults.arm(FaultSpec::new(Fault::Cut)).expect("armed");
        assert_eq!(
            faults.take("addition.edit").map(|s| s.fault),
            Some(Fault::Empty)
        );
        assert_eq!(
            faults.take("pricelist.export").map(|s| s.fault),
            Some(Fault::Cut)
        );
        assert_eq!(faults.take("pricelist.export"), None);
        assert_eq!(
            faults.take("addition.edit").map(|s| s.fault),
            Some(Fault::Empty)
        );
        assert_eq!(faults.take("addition.edit"), None);
        assert!(faults.pending().is_empty());
    }

    #[test]
    fn specs_read_from_flat_json() {
        let spec: FaultSpec = serde_json::from_str(
            r#"{"func": "addition.order.param", "kind": "cut", "apply": true}"#,
        )
        .expect("spec");
        assert_eq!(
            spec,
            FaultSpec::new(Fault::Cut)
                .on("addition.order.param")
                .applied()
        );
        let status: FaultSpec = serde_json::from_str(r#"{"kind": "status"}"#).expect("spec");
        assert_eq!(status.fault, Fault::Status { code: 502 });
        let delay: FaultSpec =
            serde_json::from_str(r#"{"kind": "delay", "ms": 5, "times": 3}"#).expect("spec");
        assert_eq!(delay, FaultSpec::new(Fault::Delay { ms: 5 }).times(3));
        assert!(serde_json::from_str::<FaultSpec>(r#"{"kind": "explode"}"#).is_err());
    }

    #[test]
    fn impossible_specs_are_refused() {
        let mut faults = Faults::default();
        assert_eq!(
            faults.arm(FaultSpec::new(Fault::Status { code: 404 })),
            Err(FaultError::NotServerError(404))
        );
        assert_eq!(
            faults.arm(FaultSpec::new(Fault::Html).times(0)),
            Err(FaultError::NoCalls)
        );
        assert!(faults.pending().is_empty());
    }
}
