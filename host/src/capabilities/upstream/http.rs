//! The real upstream: ispmanager's BILLmanager API over HTTP(S).
//!
//! Each call is a form-encoded `POST` to the configured URL with the plugin's parameters, then
//! `func`, `out=xml` and the partner's `authinfo`: credentials travel in the body, never in a
//! URL that an error page or a log could echo. Redirects are not followed (a 307 would resend
//! the credentials elsewhere). The answer is read up to a size bound, and every trace of the
//! credentials is scrubbed from it before the plugin sees it. Failures are told apart by
//! whether the request can have reached upstream: a refused connection is safe to retry, a
//! time-out or a cut connection after sending is in doubt.

use std::io::Read;
use std::time::Duration;

use memchr::memmem;

use super::UpstreamClient;
use crate::bindings::upstream::{CallError, Response};
use crate::config::{PasswordError, UpstreamConfig};

/// Why the upstream client cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The password cannot be had.
    #[error(transparent)]
    Password(#[from] PasswordError),
    /// The HTTP client cannot be built (TLS roots, for instance).
    #[error("cannot build the HTTP client: {0}")]
    Http(#[source] reqwest::Error),
}

/// What replaces a credential wherever it appears in an answer.
pub const REDACTED: &str = "[redacted]";

/// A BILLmanager API client holding the partner's credentials.
pub struct HttpUpstream {
    client: reqwest::blocking::Client,
    url: String,
    authinfo: String,
    secrets: Vec<String>,
    timeout: Duration,
    max_answer_bytes: usize,
}

impl HttpUpstream {
    /// A client for the configured upstream; `None` when no URL is configured.
    pub fn from_config(config: &UpstreamConfig) -> Result<Option<HttpUpstream>, ClientError> {
        let Some(url) = &config.url else {
            return Ok(None);
        };
        let user = config.user.as_deref().unwrap_or_default();
        let password = config.password()?;
        let client = reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .build()
            .map_err(ClientError::Http)?;
        let authinfo = format!("{user}:{password}");
        let encoded: String = form_urlencoded::byte_serialize(authinfo.as_bytes()).collect();
        let encoded_password: String =
            form_urlencoded::byte_serialize(password.as_bytes()).collect();
        // The longest first, so that a shorter secret inside a longer one is not left half-done.
        let mut secrets: Vec<String> = [
            authinfo.clone(),
            encoded,
            password.clone(),
            encoded_password,
        ]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Ok(Some(HttpUpstream {
            client,
            url: url.clone(),
            authinfo,
            secrets,
            timeout: Duration::from_millis(config.timeout_ms),
            max_answer_bytes: config.max_answer_bytes,
        }))
    }

    /// `text` with every credential replaced by [`REDACTED`].
    pub fn scrub(&self, text: &[u8]) -> Vec<u8> {
        let mut out = text.to_vec();
        for secret in &self.secrets {
            out = replace(&out, secret.as_bytes(), REDACTED.as_bytes());
        }
        out
    }
}

fn replace(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    if needle.is_empty() {
        return haystack.to_vec();
    }
    let mut out = Vec::with_capacity(haystack.len());
    let mut rest = 0;
    for at in memmem::find_iter(haystack, needle) {
        // Matches do not overlap: find_iter resumes after each one.
        out.extend_from_slice(&haystack[rest..at]);
        out.extend_from_slice(with);
        rest = at + needle.len();
    }
    out.extend_from_slice(&haystack[rest..]);
    out
}

impl UpstreamClient for HttpUpstream {
    fn call(
        &self,
        func: &str,
        params: &[(String, String)],
        timeout: Duration,
    ) -> Result<Response, CallError> {
        let mut form: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        form.extend([
            ("func", func),
            ("out", "xml"),
            ("authinfo", self.authinfo.as_str()),
        ]);
        let response = self
            .client
            .post(&self.url)
            .timeout(timeout.min(self.timeout))
            .form(&form)
            .send()
            .map_err(|e| classify(&e))?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        let limit = u64::try_from(self.max_answer_bytes)
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        response.take(limit).read_to_end(&mut body).map_err(|e| {
            CallError::InDoubt(format!(
                "the connection broke while reading the answer ({})",
                e.kind()
            ))
        })?;
        let truncated = body.len() > self.max_answer_bytes;
        body.truncate(self.max_answer_bytes);
        Ok(Response {
            status,
            body: self.scrub(&body),
            truncated,
        })
    }
}

/// Tells a request that never left from one that may have reached upstream. The messages name
/// no URL and no credential.
fn classify(e: &reqwest::Error) -> CallError {
    if e.is_connect() {
        CallError::NotSent("could not connect to upstream".to_owned())
    } else if e.is_builder() {
        CallError::NotSent("the request could not be built".to_owned())
    } else if e.is_timeout() {
        CallError::InDoubt("upstream did not answer in time".to_owned())
    } else {
        CallError::InDoubt("the connection to upstream broke before an answer came".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_replaces_every_occurrence() {
        assert_eq!(replace(b"a-secret-b-secret", b"secret", b"X"), b"a-X-b-X");
        assert_eq!(replace(b"abc", b"", b"X"), b"abc");
        assert_eq!(replace(b"ab", b"abc", b"X"), b"ab");
        assert_eq!(replace(b"aaaa", b"aa", b"X"), b"XX");
    }
}
