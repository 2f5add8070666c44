//! Helpers shared by the providers: TXT values split into 255-byte strings and in zone-file
//! quoting (as Cloudflare, Route 53, Cloud DNS and dnsmasq write them), record sets, the HTTP
//! client, record types by name, and error chains for messages.

use autogit_core::dns::{Record, RecordType};

/// A TXT content as the APIs show it: plain, or one or more quoted strings (`"a" "b"`, with
/// `\"` and `\\` escapes), which are joined.
pub fn unquote_txt(content: &str) -> String {
    let t = content.trim();
    if !(t.len() >= 2 && t.starts_with('"') && t.ends_with('"')) {
        return content.to_owned();
    }
    let mut out = String::new();
    let mut chars = t.chars();
    let mut inside = false;
    while let Some(c) = chars.next() {
        match (inside, c) {
            (false, '"') => inside = true,
            (false, _) => {}
            (true, '"') => inside = false,
            (true, '\\') => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            (true, c) => out.push(c),
        }
    }
    out
}

/// A record's value as zone-file text: TXT as quoted strings of at most 255 bytes each,
/// addresses as they are.
pub fn wire_value(r: &Record) -> String {
    if r.kind != RecordType::Txt {
        return r.value.clone();
    }
    split_txt(&r.value)
        .iter()
        .map(|p| quote_txt(p))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A TXT value as the character-strings DNS carries: at most 255 bytes each, split on
/// character boundaries.
pub fn split_txt(value: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    for c in value.chars() {
        if cur.len() + c.len_utf8() > 255 {
            parts.push(std::mem::take(&mut cur));
        }
        cur.push(c);
    }
    parts.push(cur);
    parts
}

/// One character-string in zone-file quoting (`"…"` with `\"` and `\\` escapes).
pub fn quote_txt(part: &str) -> String {
    format!("\"{}\"", part.replace('\\', "\\\\").replace('"', "\\\""))
}

/// One RRset as the record-set providers (Route 53, Cloud DNS) hold it: TTL and values as
/// on the wire (TXT quoted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RrSet {
    pub ttl: u32,
    pub values: Vec<String>,
}

/// The HTTP client of the HTTP providers: their timeout and autogit's user agent.
pub fn http_client(timeout: std::time::Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("autogit/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("HTTP client: {e}"))
}

/// A zone-file value as a core value (TXT unquoted).
pub fn core_value(kind: RecordType, wire: &str) -> String {
    match kind {
        RecordType::Txt => unquote_txt(wire),
        _ => wire.to_owned(),
    }
}

/// An error and its sources, joined by `: `.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_quoting_round_trips() {
        assert_eq!(unquote_txt("plain value"), "plain value");
        assert_eq!(unquote_txt("\"quoted\""), "quoted");
        assert_eq!(unquote_txt("\"a\" \"b\""), "ab");
        assert_eq!(unquote_txt("\"with \\\" quote\""), "with \" quote");
        for v in ["a \"q\" b\\", &"x".repeat(600)] {
            let r = Record::new("t.example", RecordType::Txt, v, 60);
            assert_eq!(core_value(RecordType::Txt, &wire_value(&r)), v);
        }
    }
}
