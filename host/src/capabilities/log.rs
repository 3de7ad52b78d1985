//! `billing:reseller/log`: the plugin's messages, in the host's log under the target `plugin`.
//!
//! A plugin is untrusted: each message is cut to [`MAX_MESSAGE_BYTES`] and a call may emit at
//! most [`MAX_MESSAGES_PER_CALL`]; the rest are counted and reported once.

use std::sync::Arc;

use super::Budget;
use crate::bindings::log::{Host, Level};

/// The longest message kept, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 1024;
/// The most messages one call may log.
pub const MAX_MESSAGES_PER_CALL: u32 = 64;

/// One call's log sink.
pub struct LogCap {
    plugin: Arc<str>,
    budget: Arc<Budget>,
    emitted: u32,
}

impl LogCap {
    /// A sink that marks messages with the plugin's name, counting each against `budget`.
    pub fn new(plugin: Arc<str>, budget: Arc<Budget>) -> Self {
        LogCap {
            plugin,
            budget,
            emitted: 0,
        }
    }

    /// How many messages this call has asked to log.
    pub fn emitted(&self) -> u32 {
        self.emitted
    }
}

/// Cuts `message` to at most `max` bytes on a character boundary.
fn cut(message: &str, max: usize) -> &str {
    &message[..message.floor_char_boundary(max)]
}

/// `message` with control characters escaped: a plugin may not forge log lines.
fn printable(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for c in message.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

impl Host for LogCap {
    fn emit(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        self.budget.host_call(message.len())?;
        self.emitted = self.emitted.saturating_add(1);
        if self.emitted > MAX_MESSAGES_PER_CALL {
            if self.emitted == MAX_MESSAGES_PER_CALL + 1 {
                tracing::warn!(target: "plugin", plugin = %self.plugin, "further messages of this call dropped");
            }
            return Ok(());
        }
        let message = printable(cut(&message, MAX_MESSAGE_BYTES));
        let plugin = &*self.plugin;
        match level {
            Level::Debug => tracing::debug!(target: "plugin", plugin, "{message}"),
            Level::Info => tracing::info!(target: "plugin", plugin, "{message}"),
            Level::Warn => tracing::warn!(target: "plugin", plugin, "{message}"),
            Level::Error => tracing::error!(target: "plugin", plugin, "{message}"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;

    #[test]
    fn cuts_on_a_character_boundary() {
        assert_eq!(cut("abc", 10), "abc");
        assert_eq!(cut("Щит", 3), "Щ");
        assert_eq!(cut("Щит", 4), "Щи");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            printable("ok\nfake INFO line\u{1b}[31m — Щ"),
            "ok\\nfake INFO line\\u{1b}[31m — Щ"
        );
    }

    #[test]
    fn counts_messages_past_the_bound() {
        let mut cap = LogCap::new("p".into(), Budget::new(Limits::default()));
        for _ in 0..MAX_MESSAGES_PER_CALL + 10 {
            cap.emit(Level::Info, "x".repeat(MAX_MESSAGE_BYTES * 2))
                .expect("within the budget");
        }
        assert_eq!(cap.emitted(), MAX_MESSAGES_PER_CALL + 10);
    }
}
