//! An event as an e-mail (RFC 5322, MIME text/plain): what `health.notify`'s `{type: email}`
//! sends. Pure: `autogit_drivers::smtp` hands the text to the server.
//!
//! Event text is free text (a mirror's error may hold anything a remote sent): no field of
//! an event can start a header. Header values are cut at control characters (CR and LF
//! become spaces) and non-ASCII text is an RFC 2047 encoded word; the body's line ends are
//! all CRLF, and a body that is not short ASCII lines is base64.

use crate::chat::Message;
use crate::diagnose::base64;

/// The Subject: the chat notifiers' title line (`autogit error: mirror_failed (docs)`).
pub fn subject(m: &Message) -> String {
    one_line(&m.title(), 200)
}

/// `s` on one line: every control character (CR, LF, tab, …) a space, at most `max`
/// characters.
fn one_line(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    if s.chars().count() > max {
        out.pop();
        out.push('…');
    }
    out
}

/// An unstructured header's value (RFC 5322 §3.2.5): printable ASCII as it is, anything else
/// as RFC 2047 `=?UTF-8?B?…?=` words, each at most 75 characters, folded onto their own
/// lines. `s` has no control characters (see [`one_line`]).
fn header_text(s: &str) -> String {
    if s.chars().all(|c| c.is_ascii() && !c.is_ascii_control()) {
        return s.to_owned();
    }
    // 75 - len("=?UTF-8?B?") - len("?=") = 63 base64 characters: 45 bytes a word, cut at a
    // character boundary.
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in s.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(format!("=?UTF-8?B?{}?=", base64(chunk.as_bytes())));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(format!("=?UTF-8?B?{}?=", base64(chunk.as_bytes())));
    }
    words.join("\r\n ")
}

/// The plain-text body: the summary, then what kind of event it was.
pub fn body(m: &Message) -> String {
    let mut b = String::new();
    b.push_str(&m.summary);
    b.push_str("\n\n");
    b.push_str(&format!("event: {}\nseverity: {}\n", m.kind, m.severity));
    if let Some(s) = &m.subject {
        b.push_str(&format!("about: {s}\n"));
    }
    b.push_str("-- \nSent by autogit (health.notify).\n");
    b
}

/// Every line end (CRLF, CR, LF) as CRLF; the text ends with one.
fn crlf(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push_str("\r\n");
            }
            '\n' => out.push_str("\r\n"),
            c => out.push(c),
        }
    }
    if !out.ends_with("\r\n") {
        out.push_str("\r\n");
    }
    out
}

/// The whole message, CRLF line ends, ready for SMTP's DATA (the transport dot-stuffs it).
/// `from` and `to` are addresses the configuration checked (no spaces, controls, commas or
/// angle brackets); `message_id` is a unique left part (`<message_id@from's domain>`).
pub fn message(m: &Message, from: &str, to: &[String], date: u64, message_id: &str) -> String {
    let domain = from.rsplit_once('@').map_or("autogit.invalid", |(_, d)| d);
    let text = crlf(&body(m));
    let plain = text
        .chars()
        .all(|c| matches!(c, '\r' | '\n' | '\t' | ' '..='~'))
        && text.split("\r\n").all(|l| l.len() <= 998);
    let id: String = message_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        .take(64)
        .collect();
    let mut h = String::new();
    h.push_str(&format!("From: autogit <{from}>\r\n"));
    h.push_str(&format!("To: {}\r\n", to.join(", ")));
    h.push_str(&format!("Subject: {}\r\n", header_text(&subject(m))));
    h.push_str(&format!("Date: {}\r\n", crate::civil::rfc5322_utc(date)));
    let id = if id.is_empty() { "autogit" } else { &id };
    h.push_str(&format!("Message-ID: <{id}@{domain}>\r\n"));
    h.push_str("Auto-Submitted: auto-generated\r\n");
    h.push_str("MIME-Version: 1.0\r\n");
    h.push_str("Content-Type: text/plain; charset=utf-8\r\n");
    if plain {
        h.push_str("Content-Transfer-Encoding: 7bit\r\n\r\n");
        h.push_str(&text);
    } else {
        h.push_str("Content-Transfer-Encoding: base64\r\n\r\n");
        let b = base64(text.as_bytes());
        for line in b.as_bytes().chunks(76) {
            h.push_str(std::str::from_utf8(line).unwrap_or_default());
            h.push_str("\r\n");
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn msg(subject: &str, summary: &str) -> Message {
        Message {
            kind: "mirror_failed".into(),
            severity: "error".into(),
            subject: Some(subject.into()),
            summary: summary.into(),
        }
    }

    /// The header names of a message (up to its blank line), folded lines joined.
    fn headers(text: &str) -> Vec<String> {
        let head = text.split("\r\n\r\n").next().unwrap();
        head.split("\r\n")
            .filter(|l| !l.starts_with(' '))
            .map(|l| l.split(':').next().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn a_plain_message() {
        let m = message(
            &msg("docs", "docs: mirror failed: timeout"),
            "autogit@example.org",
            &["ops@example.org".into(), "b@example.org".into()],
            0,
            "abc123",
        );
        assert!(m.starts_with(
            "From: autogit <autogit@example.org>\r\nTo: ops@example.org, b@example.org\r\n\
             Subject: autogit error: mirror_failed (docs)\r\nDate: Thu, 01 Jan 1970 00:00:00 +0000\r\n\
             Message-ID: <abc123@example.org>\r\n"
        ), "{m}");
        assert!(m.contains("\r\n\r\ndocs: mirror failed: timeout\r\n\r\nevent: mirror_failed\r\n"));
        assert!(m.contains("Content-Transfer-Encoding: 7bit"));
        assert!(!m.replace("\r\n", "").contains('\n'), "only CRLF line ends");
    }

    #[test]
    fn line_breaks_in_event_text_cannot_add_headers() {
        let m = message(
            &msg(
                "docs\r\nBcc: victim@example.com",
                "x\r\n\r\nBcc: b@x\nSubject: spoof",
            ),
            "a@example.org",
            &["ops@example.org".into()],
            0,
            "id\r\nX-Evil: 1",
        );
        assert_eq!(
            headers(&m),
            [
                "From",
                "To",
                "Subject",
                "Date",
                "Message-ID",
                "Auto-Submitted",
                "MIME-Version",
                "Content-Type",
                "Content-Transfer-Encoding"
            ]
        );
        assert!(
            m.contains("Subject: autogit error: mirror_failed (docs  Bcc: victim@example.com)\r\n")
        );
    }

    #[test]
    fn non_ascii_is_encoded() {
        let m = message(
            &msg("dépôt", &"é".repeat(600)),
            "a@example.org",
            &["ops@example.org".into()],
            0,
            "x",
        );
        assert!(m.contains("Subject: =?UTF-8?B?"), "{m}");
        assert!(m.contains("Content-Transfer-Encoding: base64"));
        for line in m.split("\r\n") {
            assert!(line.len() <= 78, "{line}");
            assert!(line.is_ascii());
        }
    }

    proptest! {
        /// Whatever an event says, the header section has exactly the headers autogit
        /// writes, every line is ASCII and at most 998 characters, and every line end is CRLF.
        #[test]
        fn any_event_text_keeps_the_headers(subject in "\\PC{0,300}", summary in "(\\PC|\r|\n){0,2000}", raw in any::<Vec<char>>()) {
            let noise: String = raw.into_iter().take(200).collect();
            let m = message(&msg(&format!("{subject}{noise}"), &format!("{summary}{noise}")), "a@example.org", &["o@example.org".into()], 1, &noise);
            prop_assert_eq!(headers(&m).len(), 9);
            prop_assert!(!m.replace("\r\n", "").contains(['\r', '\n']));
            for line in m.split("\r\n") {
                prop_assert!(line.len() <= 998);
            }
            let head = m.split("\r\n\r\n").next().unwrap();
            prop_assert!(head.is_ascii());
        }
    }
}
