//! A client of a running server's API, for the command-line calls that act on that server
//! (`reseller shadow …`): the address and the token come from the server's configuration.

use reqwest::Method;
use serde_json::Value;

use crate::config::Config;

/// Why a call to the server's API has no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The configuration has no token: the server's API is off.
    #[error("api.token is not set: the server's API is off")]
    NoToken,
    /// The server could not be reached.
    #[error("cannot reach the server at {url}: {reason}")]
    Unreachable {
        /// Where it was looked for.
        url: String,
        /// Why not.
        reason: String,
    },
    /// The server answered something that is not JSON.
    #[error("the server's answer ({status}) is not JSON")]
    NotJson {
        /// The HTTP status.
        status: u16,
    },
    /// The server refused the call.
    #[error("the server refused ({status} {code}): {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The API's error code.
        code: String,
        /// The API's message.
        message: String,
    },
}

/// The base URL of the server `config` configures: `url` when given, otherwise its
/// `server.listen` (an unspecified address asked on loopback).
pub fn base_url(config: &Config, url: Option<&str>) -> String {
    if let Some(url) = url {
        return url.trim_end_matches('/').to_owned();
    }
    let mut addr = config.server.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    format!("http://{addr}")
}

/// Calls `method path` (under `/api/v1`) on the server `config` configures, with `body` as JSON
/// when given, and returns its JSON answer.
pub fn call(
    config: &Config,
    url: Option<&str>,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, ClientError> {
    let token = config
        .api
        .token
        .as_ref()
        .map(|t| t.0.as_str())
        .ok_or(ClientError::NoToken)?;
    let base = base_url(config, url);
    let mut request = reqwest::blocking::Client::new()
        .request(method, format!("{base}/api/v1{path}"))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
    }
    let response = request.send().map_err(|e| ClientError::Unreachable {
        url: base.clone(),
        reason: e.to_string(),
    })?;
    let status = response.status();
    let answer: Value = response.json().map_err(|_| ClientError::NotJson {
        status: status.as_u16(),
    })?;
    if status.is_success() {
        return Ok(answer);
    }
    let field = |name: &str| {
        answer["error"][name]
            .as_str()
            .unwrap_or("no message")
            .to_owned()
    };
    Err(ClientError::Refused {
        status: status.as_u16(),
        code: field("code"),
        message: field("message"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Source;

    fn config(listen: &str) -> Config {
        let text = format!(
            "[server]\nlisten = \"{listen}\"\n[catalogue]\nregion = \"eu\"\ncurrency = \"EUR\"\n"
        );
        Config::parse(&text, Source::Embedded).expect("config")
    }

    #[test]
    fn the_server_is_asked_where_it_listens_on_loopback_when_it_listens_everywhere() {
        assert_eq!(
            base_url(&config("10.0.0.5:8080"), None),
            "http://10.0.0.5:8080"
        );
        assert_eq!(
            base_url(&config("0.0.0.0:8080"), None),
            "http://127.0.0.1:8080"
        );
        assert_eq!(base_url(&config("[::]:9000"), None), "http://[::1]:9000");
        assert_eq!(
            base_url(&config("0.0.0.0:8080"), Some("https://reseller.example/")),
            "https://reseller.example"
        );
    }

    #[test]
    fn without_a_token_nothing_is_sent() {
        let answer = call(&config("127.0.0.1:9"), None, Method::GET, "/plugin", None);
        assert!(matches!(answer, Err(ClientError::NoToken)), "{answer:?}");
    }
}
