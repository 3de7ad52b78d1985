//! A simulator on a loopback socket, a real HTTP client, and a real XML parser for its answers.

#![allow(dead_code, reason = "each test binary uses a different part")]

use std::time::Duration;

use reqwest::blocking::Client;
use upstream_sim::{Handle, Simulator, State};

/// The default credentials, as `authinfo`.
pub const AUTHINFO: &str = "partner:secret";

/// A simulator serving on `127.0.0.1:0`, and a client for it.
pub struct Upstream {
    /// The running simulator.
    pub handle: Handle,
    client: Client,
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`, empty when missing.
    pub content_type: String,
    /// `Location`, empty when missing.
    pub location: String,
    /// The body.
    pub body: String,
}

/// The content of a `<doc><error>`.
#[derive(Debug, PartialEq, Eq)]
pub struct ErrorDoc {
    /// `type`.
    pub kind: String,
    /// `object`.
    pub object: String,
    /// `<param name="value">`.
    pub value: Option<String>,
    /// `<msg>`.
    pub msg: String,
}

impl Upstream {
    /// The default state.
    pub fn start() -> Upstream {
        Upstream::with(State::default())
    }

    /// A given state.
    pub fn with(state: State) -> Upstream {
        let handle = Simulator::start("127.0.0.1:0", state).expect("simulator starts");
        // Redirects are answers to look at, not to follow (one fault answers 302).
        let client = Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Upstream { handle, client }
    }

    /// `GET /billmgr?authinfo=partner:secret&func=FUNC&PARAMS`.
    pub fn call(&self, func: &str, params: &[(&str, &str)]) -> Answer {
        self.try_call(Some(AUTHINFO), func, params)
            .expect("an HTTP answer")
    }

    /// `GET /billmgr` with the given credentials, or none; the client's error if no answer.
    pub fn try_call(
        &self,
        authinfo: Option<&str>,
        func: &str,
        params: &[(&str, &str)],
    ) -> reqwest::Result<Answer> {
        let mut query = vec![("func", func)];
        query.extend(authinfo.map(|a| ("authinfo", a)));
        query.extend_from_slice(params);
        if params.iter().all(|(name, _)| *name != "out") {
            query.push(("out", "xml"));
        }
        let response = self
            .client
            .get(self.handle.billmgr_url())
            .query(&query)
            .send()?;
        answer(response)
    }

    /// `POST PATH` with a form.
    pub fn post_form(&self, path: &str, form: &[(&str, &str)]) -> Answer {
        let response = self
            .client
            .post(format!("{}{path}", self.handle.base_url()))
            .form(form)
            .send()
            .expect("an HTTP answer");
        answer(response).expect("a body")
    }

    /// A control API call with an optional JSON body.
    pub fn control(&self, method: reqwest::Method, path: &str, body: Option<&str>) -> Answer {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.handle.base_url()));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        answer(request.send().expect("an HTTP answer")).expect("a body")
    }

    /// The simulator's balance as text.
    pub fn balance(&self) -> String {
        self.handle.sim().balance().to_string()
    }
}

fn answer(response: reqwest::blocking::Response) -> reqwest::Result<Answer> {
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let content_type = header("content-type");
    let location = header("location");
    let body = response.text()?;
    Ok(Answer {
        status,
        content_type,
        location,
        body,
    })
}

/// Parses a BILLmanager document and checks that its root is `<doc>`.
pub fn doc(body: &str) -> roxmltree::Document<'_> {
    let doc = roxmltree::Document::parse(body).expect("well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "doc", "{body}");
    doc
}

/// The text of the root's child `name`.
pub fn child_text(body: &str, name: &str) -> Option<String> {
    let doc = doc(body);
    doc.root_element()
        .children()
        .find(|n| n.has_tag_name(name))
        .map(|n| n.text().unwrap_or_default().to_owned())
}

/// The `<error>` of a document, if it is one.
pub fn error_of(body: &str) -> Option<ErrorDoc> {
    let doc = doc(body);
    let error = doc
        .root_element()
        .children()
        .find(|n| n.has_tag_name("error"))?;
    let param = |name: &str| {
        error
            .children()
            .find(|n| n.has_tag_name("param") && n.attribute("name") == Some(name))
    };
    let object = error.attribute("object").unwrap_or_default().to_owned();
    if let Some(p) = param("object") {
        assert_eq!(p.attribute("type"), Some("msg"), "{body}");
        assert_eq!(p.attribute("msg"), Some(object.as_str()), "{body}");
        assert_eq!(p.text(), Some(object.as_str()), "{body}");
    }
    Some(ErrorDoc {
        kind: error.attribute("type").unwrap_or_default().to_owned(),
        object,
        value: param("value").map(|p| p.text().unwrap_or_default().to_owned()),
        msg: error
            .children()
            .find(|n| n.has_tag_name("msg"))
            .and_then(|n| n.text())
            .unwrap_or_default()
            .to_owned(),
    })
}

/// `(type, object)` of an answer that must be an error document sent with HTTP 200.
pub fn refusal(answer: &Answer) -> (String, String) {
    assert_eq!(answer.status, 200, "{answer:?}");
    let error = error_of(&answer.body).expect("an error document");
    (error.kind, error.object)
}

/// The answer's body as it must be: the XML declaration, then `doc`.
pub fn xml(doc: &str) -> String {
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{doc}")
}

/// `(type, object)` as owned strings, to compare with [`refusal`].
pub fn pair(kind: &str, object: &str) -> (String, String) {
    (kind.to_owned(), object.to_owned())
}
