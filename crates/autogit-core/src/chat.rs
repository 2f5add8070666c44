//! Notifications to chat services: the request body each documented webhook API takes for one
//! autogit event. Pure: `autogit_drivers::notify` posts them.
//!
//! Event text is free text (a mirror's error, a service name): it is escaped for each
//! service's markup, and mentions are turned off, so an event can neither ping a channel
//! (`<!channel>`, `@everyone`) nor inject links.

use serde_json::{Value, json};

/// One event as a notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The event's kind (`mirror_failed`).
    pub kind: String,
    /// `info`, `warning` or `error`.
    pub severity: String,
    /// What it is about (a service, mirror, host), if anything.
    pub subject: Option<String>,
    /// One line saying what happened.
    pub summary: String,
}

impl Message {
    /// `autogit <severity>: <kind> (<subject>)`: the first line of every notifier's message.
    pub fn title(&self) -> String {
        match &self.subject {
            Some(s) => format!("autogit {}: {} ({s})", self.severity, self.kind),
            None => format!("autogit {}: {}", self.severity, self.kind),
        }
    }
}

/// Cuts `s` to at most `max` characters, marking the cut.
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Slack's control characters in text (`&`, `<`, `>`), escaped as its docs require.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A Slack incoming webhook's body: `{"text": ...}` (Slack cuts messages at 40 000
/// characters; autogit sends at most 3 000).
pub fn slack_body(m: &Message) -> Value {
    let text = format!(
        "*{}*\n{}",
        slack_escape(&m.title()),
        slack_escape(&clip(&m.summary, 3000))
    );
    json!({ "text": text })
}

/// Discord's markdown characters, escaped with a backslash.
fn discord_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(
            c,
            '\\' | '*' | '_' | '~' | '`' | '|' | '>' | '#' | '[' | ']' | '@' | '<'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A Discord webhook's body: `content` (at most 2 000 characters), no mentions parsed.
pub fn discord_body(m: &Message) -> Value {
    let title = discord_escape(&m.title());
    let room = 2000usize.saturating_sub(title.chars().count() + 6);
    let content = format!("**{title}**\n{}", clip(&discord_escape(&m.summary), room));
    json!({
        "content": content,
        "username": "autogit",
        "allowed_mentions": { "parse": [] },
    })
}

/// ntfy's JSON publishing body (POST to the server's root URL): topic, title, message,
/// priority (5 for errors, 4 for warnings, 3 otherwise) and a tag.
pub fn ntfy_body(m: &Message, topic: &str) -> Value {
    let (priority, tag) = match m.severity.as_str() {
        "error" => (5, "rotating_light"),
        "warning" => (4, "warning"),
        _ => (3, "information_source"),
    };
    json!({
        "topic": topic,
        "title": clip(&m.title(), 250),
        "message": clip(&m.summary, 4000),
        "priority": priority,
        "tags": [tag, m.kind],
        "markdown": false,
    })
}

/// A Matrix `m.room.message` event's content (client-server API, `PUT
/// /_matrix/client/v3/rooms/{roomId}/send/m.room.message/{txnId}`): an `m.notice` (clients and
/// bots treat it as automated), plain text only, and `m.mentions` empty so that `@room` or a
/// user id in the text pings nobody (intentional mentions, spec v1.7).
pub fn matrix_body(m: &Message) -> Value {
    json!({
        "msgtype": "m.notice",
        "body": format!("{}\n{}", clip(&m.title(), 250), clip(&m.summary, 4000)),
        "m.mentions": {},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(summary: &str) -> Message {
        Message {
            kind: "mirror_failed".into(),
            severity: "error".into(),
            subject: Some("docs".into()),
            summary: summary.into(),
        }
    }

    #[test]
    fn slack_text_cannot_mention_or_link() {
        let b = slack_body(&msg("<!channel> see <https://evil|here> & more"));
        assert_eq!(
            b["text"],
            "*autogit error: mirror_failed (docs)*\n&lt;!channel&gt; see &lt;https://evil|here&gt; &amp; more"
        );
    }

    #[test]
    fn discord_content_is_escaped_capped_and_mentions_off() {
        let b = discord_body(&msg("@everyone **bold** [x](https://evil)"));
        assert_eq!(
            b["content"],
            "**autogit error: mirror\\_failed (docs)**\n\\@everyone \\*\\*bold\\*\\* \\[x\\](https://evil)"
        );
        assert_eq!(b["allowed_mentions"]["parse"], json!([]));
        let long = discord_body(&msg(&"é".repeat(5000)));
        assert!(long["content"].as_str().unwrap().chars().count() <= 2000);
    }

    #[test]
    fn matrix_is_a_plain_notice_that_mentions_nobody() {
        let b = matrix_body(&msg("@room <b>x</b>"));
        assert_eq!(
            b,
            json!({"msgtype": "m.notice",
                   "body": "autogit error: mirror_failed (docs)\n@room <b>x</b>",
                   "m.mentions": {}})
        );
        assert!(b.get("format").is_none(), "no HTML body");
    }

    #[test]
    fn ntfy_priority_follows_severity() {
        let b = ntfy_body(&msg("unreachable"), "alerts");
        assert_eq!(
            (
                b["topic"].as_str(),
                b["priority"].as_i64(),
                b["tags"][1].as_str()
            ),
            (Some("alerts"), Some(5), Some("mirror_failed"))
        );
        let mut w = msg("x");
        w.severity = "warning".into();
        assert_eq!(ntfy_body(&w, "t")["priority"], 4);
    }
}
