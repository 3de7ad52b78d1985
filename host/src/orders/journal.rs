//! What the host itself saw of the upstream calls an order hook made.
//!
//! A [`Journal`] stands between the plugin and the real upstream client for one hook call. It
//! records every call in the order's history *as it happens* (so that a crash leaves evidence)
//! and keeps its own reading of each answer: whether the request may have reached upstream,
//! and whether upstream answered with a BILLmanager document, an error document, or something
//! unreadable. The settlement ([`super::settle`]) weighs the plugin's verdict against this
//! reading, so that a plugin cannot turn a call that may have charged the partner into a
//! retry.
//!
//! Before each write leaves, the journal records that it is about to ([`SendMarker`]): a
//! crash before that record provably sent nothing. Which calls are writes is the host's call,
//! not the plugin's: every call is a write except the functions configured as reads
//! (`upstream.read_functions`) and the forms configured as such (`upstream.form_functions`)
//! when they carry no `sok` (BILLmanager shows a form without `sok` and changes nothing).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use quick_xml::Reader;
use quick_xml::events::Event;

use super::store::{Backend, SendMarker};
use super::{CallOutcome, OrderId, UpstreamCall};
use crate::bindings::upstream::{CallError, Response};
use crate::capabilities::upstream::UpstreamClient;
use crate::config::UpstreamConfig;

/// The longest excerpt of an answer kept in a call's record, in bytes.
const EXCERPT_BYTES: usize = 300;

/// Which upstream calls only read; see the [module documentation](self).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reads {
    functions: BTreeSet<String>,
    forms: BTreeSet<String>,
}

impl Reads {
    /// The configured reads.
    pub fn from_config(config: &UpstreamConfig) -> Reads {
        Reads {
            functions: config.read_functions.iter().cloned().collect(),
            forms: config.form_functions.iter().cloned().collect(),
        }
    }

    /// Whether `func` with `params` changes nothing upstream.
    pub fn is_read(&self, func: &str, params: &[(String, String)]) -> bool {
        self.functions.contains(func)
            || (self.forms.contains(func) && !params.iter().any(|(name, _)| name == "sok"))
    }
}

/// How one call ended, as the host read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// The BILLmanager function.
    pub func: String,
    /// Whether it could change something upstream.
    pub write: bool,
    /// The host's reading of the outcome.
    pub outcome: CallOutcome,
}

/// Records the upstream calls of one hook call; see the [module documentation](self).
pub struct Journal {
    inner: Arc<dyn UpstreamClient>,
    store: Arc<dyn Backend>,
    order: Option<OrderId>,
    marker: Option<SendMarker>,
    reads: Reads,
    seen: Mutex<Vec<Seen>>,
}

impl Journal {
    /// A journal over `inner`, recording into `order`'s history when there is an order, and
    /// marking `marker` about to send before each write.
    pub fn new(
        inner: Arc<dyn UpstreamClient>,
        store: Arc<dyn Backend>,
        order: Option<OrderId>,
        marker: Option<SendMarker>,
        reads: Reads,
    ) -> Arc<Journal> {
        Arc::new(Journal {
            inner,
            store,
            order,
            marker,
            reads,
            seen: Mutex::new(Vec::new()),
        })
    }

    /// The calls made so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl UpstreamClient for Journal {
    fn call(
        &self,
        func: &str,
        params: &[(String, String)],
        timeout: Duration,
    ) -> Result<Response, CallError> {
        let write = !self.reads.is_read(func, params);
        // A hook sends each write once: a second `addition.order.param` in one placement could
        // be a second order, whatever the plugin meant by it.
        let repeated_write = write
            && self
                .seen
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .any(|s| s.write && s.func == func);
        let started = Instant::now();
        let answer = if repeated_write {
            Err(CallError::NotAllowed(format!(
                "`{func}` is sent at most once per hook call"
            )))
        } else if let Some(marker) = self.marker.as_ref().filter(|_| write)
            && let Err(e) = self.store.mark_sending(marker)
        {
            Err(CallError::NotSent(format!(
                "the host could not record that it is about to send it: {e}"
            )))
        } else {
            self.inner.call(func, params, timeout)
        };
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (outcome, http_status, detail) = match &answer {
            Ok(response) => {
                let (outcome, detail) = read_answer(response);
                (outcome, Some(response.status), detail)
            }
            Err(e) => {
                let (outcome, detail) = call_error_outcome(e);
                (outcome, None, detail)
            }
        };
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Seen {
                func: func.to_owned(),
                write,
                outcome,
            });
        tracing::info!(
            order = self.order.as_ref().map(OrderId::as_str),
            func,
            status = http_status,
            duration_ms,
            outcome = outcome.as_str(),
            "upstream call"
        );
        if let Some(order) = &self.order {
            let call = UpstreamCall {
                func: func.to_owned(),
                params: params.to_vec(),
                http_status,
                duration_ms,
                outcome,
                detail,
            };
            if let Err(e) = self.store.record_upstream_call(order, call) {
                // The call was made; the settlement still records the order's outcome.
                tracing::error!(order = %order, "cannot record an upstream call: {e}");
            }
        }
        answer
    }
}

/// How a call that got no answer ended, as the host records it: a refusal by the host or a
/// request that never left is not sent; anything else may have reached upstream.
fn call_error_outcome(e: &CallError) -> (CallOutcome, String) {
    match e {
        CallError::NotAllowed(m) => (CallOutcome::NotSent, format!("refused by the host: {m}")),
        CallError::NotSent(m) => (CallOutcome::NotSent, format!("not sent: {m}")),
        CallError::InDoubt(m) => (CallOutcome::Unknown, format!("in doubt: {m}")),
    }
}

/// The host's own reading of an upstream answer: a BILLmanager document (`Succeeded`), an
/// error document (`Refused`), or anything else (`Unknown`: an HTML page, a 5xx, a truncated or
/// empty body — the request may still have taken effect).
pub fn read_answer(response: &Response) -> (CallOutcome, String) {
    let excerpt = excerpt(&response.body);
    let head = format!("HTTP {}, {} bytes", response.status, response.body.len());
    if response.truncated {
        return (
            CallOutcome::Unknown,
            format!("{head}, cut at the size limit: {excerpt}"),
        );
    }
    if (300..400).contains(&response.status) {
        // A redirect comes from whatever stands before BILLmanager (http → https, another
        // path): the function did not run. `upstream.url` needs fixing.
        return (
            CallOutcome::NotSent,
            format!("{head}: redirected, so nothing ran upstream; check upstream.url"),
        );
    }
    if !(200..300).contains(&response.status) {
        return (CallOutcome::Unknown, format!("{head}: {excerpt}"));
    }
    match scan_document(&response.body) {
        Some(Scan::Document) => (CallOutcome::Succeeded, format!("{head}: {excerpt}")),
        Some(Scan::Error { kind, message }) => (
            CallOutcome::Refused,
            format!("{head}: error type `{kind}`: {message}"),
        ),
        None => (
            CallOutcome::Unknown,
            format!("{head}, not a BILLmanager document: {excerpt}"),
        ),
    }
}

enum Scan {
    Document,
    Error { kind: String, message: String },
}

/// Reads a whole `<doc>`; `None` when it is not one (or not well-formed to its end).
fn scan_document(body: &[u8]) -> Option<Scan> {
    let text = std::str::from_utf8(body).ok()?;
    let mut reader = Reader::from_str(text);
    let mut depth = 0usize;
    let mut root_seen = false;
    let mut error: Option<(String, String)> = None;
    let mut in_error_msg = false;
    loop {
        let event = reader.read_event().ok()?;
        match &event {
            Event::Start(e) | Event::Empty(e) => {
                let opens = matches!(event, Event::Start(_));
                let name = e.name().0;
                if depth == 0 {
                    if root_seen || name != "doc" {
                        return None;
                    }
                    root_seen = true;
                } else if depth == 1 && name == "error" && error.is_none() {
                    let kind = e
                        .try_get_attribute("type")
                        .ok()
                        .flatten()
                        .map(|a| a.value.into_owned())
                        .unwrap_or_default();
                    error = Some((kind, String::new()));
                } else if depth == 2 && opens && name == "msg" {
                    in_error_msg = error.is_some();
                }
                if opens {
                    depth += 1;
                }
            }
            Event::Text(t) if in_error_msg => {
                if let Some((_, msg)) = error.as_mut() {
                    msg.push_str(&t.xml10_content());
                }
            }
            Event::End(_) => {
                depth = depth.checked_sub(1)?;
                in_error_msg = false;
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !root_seen || depth != 0 {
        return None;
    }
    Some(match error {
        Some((kind, message)) => Scan::Error {
            kind,
            message: message.trim().to_owned(),
        },
        None => Scan::Document,
    })
}

/// The start of a body, one line, for the record.
fn excerpt(body: &[u8]) -> String {
    let end = body.len().min(EXCERPT_BYTES);
    let text = String::from_utf8_lossy(&body[..end]);
    let mut line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if body.len() > end {
        line.push('…');
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Response {
        Response {
            status,
            body: body.as_bytes().to_vec(),
            truncated: false,
        }
    }

    #[test]
    fn documents_errors_and_the_rest_are_told_apart() {
        let (o, d) = read_answer(&answer(200, "<doc><id>100001</id></doc>"));
        assert_eq!(o, CallOutcome::Succeeded, "{d}");
        let (o, d) = read_answer(&answer(
            200,
            "<?xml version=\"1.0\"?>\n<doc><error type=\"balance\" object=\"x\">\
             <param name=\"value\">1</param><msg>Not enough money</msg></error></doc>",
        ));
        assert_eq!(o, CallOutcome::Refused);
        assert!(d.contains("`balance`: Not enough money"), "{d}");
        let (o, _) = read_answer(&answer(200, "<doc><error type=\"auth\"/></doc>"));
        assert_eq!(o, CallOutcome::Refused);
        for unreadable in [
            "",
            "<html><body>Bad gateway</body></html>",
            "<doc><id>1000",
            "<doc/><doc/>",
            "not xml at all",
        ] {
            let (o, d) = read_answer(&answer(200, unreadable));
            assert_eq!(o, CallOutcome::Unknown, "{unreadable:?}: {d}");
        }
        let (o, _) = read_answer(&answer(502, "<doc/>"));
        assert_eq!(o, CallOutcome::Unknown);
        let (o, d) = read_answer(&answer(302, ""));
        assert_eq!(o, CallOutcome::NotSent, "{d}");
        let (o, d) = read_answer(&Response {
            status: 200,
            body: b"<doc/>".to_vec(),
            truncated: true,
        });
        assert_eq!(o, CallOutcome::Unknown, "{d}");
    }

    #[test]
    fn reads_are_what_the_configuration_says() {
        let reads = Reads::from_config(&UpstreamConfig::default());
        let p = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert!(reads.is_read("pricelist.export", &p(&[])));
        assert!(reads.is_read("addition", &p(&[])));
        assert!(reads.is_read("addition.edit", &p(&[("elid", "1")])));
        assert!(!reads.is_read("addition.edit", &p(&[("elid", "1"), ("sok", "ok")])));
        assert!(reads.is_read("service.prolong", &p(&[("elid", "1")])));
        assert!(!reads.is_read("service.prolong", &p(&[("sok", "ok")])));
        assert!(!reads.is_read("addition.order.param", &p(&[])));
        assert!(!reads.is_read("addition.delete", &p(&[])));
        assert!(!reads.is_read("anything.else", &p(&[])));
    }

    #[test]
    fn excerpts_are_short_single_lines() {
        let long = format!("<doc>\n{}</doc>", "é".repeat(400));
        let e = excerpt(long.as_bytes());
        assert!(!e.contains('\n'));
        assert!(e.ends_with('…'));
        assert!(e.len() <= EXCERPT_BYTES + 8);
    }
}
