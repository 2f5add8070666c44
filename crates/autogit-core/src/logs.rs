//! Log lines, before they are stored and when they are searched: the spec's log enricher
//! (level, error class, stack traces, HTTP status, addresses, URLs, correlation ids), the
//! scrubbing of personal data and secrets (done first: nothing unscrubbed is ever kept), and
//! the search query language. Pure: the store (`drivers::logstore`) and the follower
//! (`app::logs`) do the I/O.
//!
//! The scanner works on whitespace-separated words with their surrounding punctuation
//! trimmed, in one pass, without regular expressions: it has to keep up with a busy
//! GitLab's log (the benchmark asks for 200 000 lines/s per core).

use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// Severity, from the line's own words or fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
    /// Nothing in the line says.
    Unknown,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Level> {
        Some(match s.to_ascii_lowercase().as_str() {
            "debug" | "trace" | "dbug" => Level::Debug,
            "info" | "information" | "notice" | "inf" => Level::Info,
            "warn" | "warning" | "wrn" => Level::Warn,
            "error" | "err" | "fatal" | "crit" | "critical" | "panic" | "emerg" | "alert"
            | "severe" => Level::Error,
            "unknown" => Level::Unknown,
            _ => return None,
        })
    }
}

/// A line after enrichment and scrubbing: what the store keeps.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Enriched {
    /// The line with personal data and secrets replaced (`<email>`, `<redacted>`, `<jwt>`).
    pub message: String,
    pub level: Option<Level>,
    /// `NoMethodError`, `java.lang.NullPointerException`, `ActiveRecord::RecordNotFound`.
    pub error_class: Option<String>,
    /// A line of a stack trace (`at …`, `File "…", line …`, `Traceback`, `from …:in`).
    pub stack: bool,
    pub http_status: Option<u16>,
    pub ips: Vec<String>,
    /// URLs, with credentials and query strings dropped.
    pub urls: Vec<String>,
    pub request_id: Option<String>,
    pub trace_id: Option<String>,
    pub job_id: Option<String>,
    /// How many spans were scrubbed.
    pub scrubbed: u32,
}

/// Keys whose value is a secret, in `key=value`, `key: value` or JSON.
const SECRET_KEYS: [&str; 17] = [
    "password",
    "passwd",
    "pwd",
    "pass",
    "secret",
    "token",
    "api_key",
    "apikey",
    "access_token",
    "refresh_token",
    "private_token",
    "private-token",
    "authorization",
    "client_secret",
    "auth",
    "key",
    "credentials",
];

/// Prefixes of well-known credentials (GitLab, GitHub, autogit, Slack, OpenAI-style, AWS).
const TOKEN_PREFIXES: [&str; 14] = [
    "glpat-",
    "glrt-",
    "gldt-",
    "glptt-",
    "glcbt-",
    "ghp_",
    "gho_",
    "ghs_",
    "ghu_",
    "ghr_",
    "github_pat_",
    "agk_",
    "xoxb-",
    "sk-",
];

const REQUEST_KEYS: [&str; 7] = [
    "request_id",
    "requestid",
    "request-id",
    "x-request-id",
    "correlation_id",
    "correlation-id",
    "rid",
];
const TRACE_KEYS: [&str; 4] = ["trace_id", "traceid", "trace-id", "traceparent"];
const JOB_KEYS: [&str; 3] = ["job_id", "jobid", "job-id"];

/// `k` is one of `keys` (lower case), whatever its case: no lower-cased copy per word.
fn key_in(k: &str, keys: &[&str]) -> bool {
    keys.iter().any(|s| k.eq_ignore_ascii_case(s))
}

/// `k` ends with `suffix` (lower case), whatever its case.
fn ends_with_ci(k: &str, suffix: &str) -> bool {
    k.len() >= suffix.len()
        && k.as_bytes()[k.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

fn is_secret_key(k: &str) -> bool {
    key_in(k, &SECRET_KEYS)
        || ends_with_ci(k, "_token")
        || ends_with_ci(k, "_password")
        || ends_with_ci(k, "_secret")
}

fn trim_punct(w: &str) -> &str {
    w.trim_matches(|c: char| {
        matches!(
            c,
            '"' | '\'' | '(' | ')' | '[' | ']' | '{' | '}' | '<' | '>' | ',' | ';' | '`'
        )
    })
}

/// `user@host.tld` (a dot after the `@`, letters around it).
fn is_email(w: &str) -> bool {
    let Some((user, host)) = w.split_once('@') else {
        return false;
    };
    !user.is_empty()
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._%+-".contains(&b))
        && host.contains('.')
        && !host.starts_with('.')
        && !host.ends_with('.')
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-".contains(&b))
        && host
            .rsplit('.')
            .next()
            .is_some_and(|tld| tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic()))
}

/// A JWT: three base64url parts, the first two starting with `eyJ` (`{"`).
fn is_jwt(w: &str) -> bool {
    if !w.starts_with("eyJ") {
        return false;
    }
    let mut parts = w.split('.');
    let (Some(a), Some(b), Some(c), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    a.starts_with("eyJ")
        && b.starts_with("eyJ")
        && !c.is_empty()
        && w.bytes()
            .all(|x| x.is_ascii_alphanumeric() || b"-_.".contains(&x))
}

fn is_token(w: &str) -> bool {
    TOKEN_PREFIXES
        .iter()
        .any(|p| w.starts_with(p) && w.len() >= p.len() + 8)
        || (w.len() == 20
            && (w.starts_with("AKIA") || w.starts_with("ASIA"))
            && w.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()))
        || is_jwt(w)
        || w.starts_with("-----BEGIN")
}

/// `java.lang.NullPointerException`, `NoMethodError`, `ActiveRecord::RecordNotFound`,
/// `ValueError:` (the trailing colon trimmed by the caller).
fn error_class(w: &str) -> Option<&str> {
    let w = w.trim_end_matches(':');
    let last = w.rsplit(['.', ':']).next()?;
    let first = last.chars().next()?;
    let looks = first.is_ascii_uppercase()
        && last.len() > 5
        && last.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && [
            "Error",
            "Exception",
            "Fault",
            "NotFound",
            "Invalid",
            "Timeout",
        ]
        .iter()
        .any(|s| {
            (last.ends_with(s) || (last.starts_with(s) && *s == "Invalid")) && last.len() > s.len()
        });
    let whole_ok = || {
        w.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == ':')
    };
    (looks && whole_ok()).then_some(w)
}

fn strip_url(u: &str) -> String {
    // scheme://[userinfo@]host/path?query#fragment → scheme://host/path
    let (scheme, rest) = u.split_once("://").unwrap_or(("", u));
    let rest = rest.split(['?', '#']).next().unwrap_or(rest);
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let host = authority.rsplit('@').next().unwrap_or(authority);
    if path.is_empty() {
        format!("{scheme}://{host}")
    } else {
        format!("{scheme}://{host}/{path}")
    }
}

fn scrub_url(u: &str) -> (String, bool) {
    let Some((scheme, rest)) = u.split_once("://") else {
        return (u.to_owned(), false);
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let mut changed = false;
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => {
            changed = true;
            format!("<redacted>@{host}")
        }
        None => authority.to_owned(),
    };
    // Secret-looking query parameters.
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let q: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if is_secret_key(k) => {
                        changed = true;
                        format!("{k}=<redacted>")
                    }
                    _ => kv.to_owned(),
                })
                .collect();
            format!("{path}?{}", q.join("&"))
        }
        None => tail.to_owned(),
    };
    (format!("{scheme}://{authority}{tail}"), changed)
}

fn set_once(slot: &mut Option<String>, v: &str) {
    let v = trim_punct(v).trim_end_matches([':', '.']);
    if slot.is_none() && !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic())
    {
        *slot = Some(v.to_owned());
    }
}

/// The configured extra scrub patterns (`logs.scrub`), compiled once: every match becomes
/// `<redacted>` before the built-in scrubbing and the enrichment read the line.
#[derive(Clone, Debug, Default)]
pub struct ScrubPatterns(Vec<regex::Regex>);

impl ScrubPatterns {
    /// Largest compiled pattern (the `regex` crate's own measure): a pattern is matched in
    /// time linear in the line whatever it is, and this bounds its memory.
    const SIZE_LIMIT: usize = 1 << 20;

    /// One pattern, or why it is refused: it must compile within the size limit and must not
    /// match the empty string (it would match everywhere).
    pub fn compile_one(pattern: &str) -> Result<regex::Regex, String> {
        let re = regex::RegexBuilder::new(pattern)
            .size_limit(Self::SIZE_LIMIT)
            .build()
            .map_err(|e| match e {
                regex::Error::CompiledTooBig(_) => {
                    "the pattern is too large; split it or make it simpler".to_owned()
                }
                // The parser's message draws the pattern over several lines; its last line
                // says what is wrong.
                other => other
                    .to_string()
                    .lines()
                    .last()
                    .unwrap_or("")
                    .trim_start_matches("error: ")
                    .to_owned(),
            })?;
        if re.is_match("") {
            return Err(
                "it matches the empty string, so it would match everywhere; require at least one character (`+` rather than `*`)".to_owned(),
            );
        }
        Ok(re)
    }

    /// The patterns of `logs.scrub` (already checked when the configuration was read).
    pub fn compile(patterns: &[String]) -> Result<Self, String> {
        patterns
            .iter()
            .map(|p| Self::compile_one(p).map_err(|e| format!("logs.scrub `{p}`: {e}")))
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Enriches and scrubs one line. `extra_secrets` are literal strings (configured values,
/// for example the platform's own tokens) that are replaced wherever they appear.
pub fn enrich(line: &str, extra_secrets: &[&str]) -> Enriched {
    enrich_with(line, extra_secrets, &ScrubPatterns::default())
}

/// [`enrich`] with the configured extra scrub patterns applied first.
pub fn enrich_with(line: &str, extra_secrets: &[&str], patterns: &ScrubPatterns) -> Enriched {
    let mut e = Enriched::default();
    let mut text = std::borrow::Cow::Borrowed(line);
    for re in &patterns.0 {
        let n = re.find_iter(&text).count();
        if n > 0 {
            text = std::borrow::Cow::Owned(re.replace_all(&text, "<redacted>").into_owned());
            e.scrubbed += u32::try_from(n).unwrap_or(u32::MAX);
        }
    }
    for s in extra_secrets.iter().filter(|s| s.len() >= 6) {
        if text.contains(s) {
            text = std::borrow::Cow::Owned(text.replace(s, "<redacted>"));
            e.scrubbed += 1;
        }
    }
    let line: &str = &text;
    let trimmed = line.trim_start();
    // Stack trace lines.
    if trimmed.starts_with("at ")
        || trimmed.starts_with("File \"")
        || trimmed.starts_with("Traceback (most recent call last)")
        || (trimmed.starts_with("from ") && trimmed.contains(":in "))
        || trimmed.starts_with("goroutine ")
        || line.starts_with("thread '") && line.contains("panicked at")
    {
        e.stack = true;
        e.level = Some(Level::Error);
    }
    // JSON lines (GitLab's and most services' structured logs), parsed once: fields first.
    let json = trimmed
        .starts_with('{')
        .then(|| serde_json::from_str::<serde_json::Value>(trimmed).ok())
        .flatten();
    if let Some(serde_json::Value::Object(map)) = &json {
        for (k, v) in map {
            // Lower-cased only when it has capitals (GitLab's keys have none).
            let kl = if k.bytes().any(|b| b.is_ascii_uppercase()) {
                std::borrow::Cow::Owned(k.to_ascii_lowercase())
            } else {
                std::borrow::Cow::Borrowed(k.as_str())
            };
            let text = match v {
                serde_json::Value::String(s) => std::borrow::Cow::Borrowed(s.as_str()),
                serde_json::Value::Number(n) => std::borrow::Cow::Owned(n.to_string()),
                _ => continue,
            };
            match kl.as_ref() {
                "level" | "severity" | "lvl" | "log.level" => {
                    if let Some(l) = Level::parse(&text) {
                        e.level = Some(l);
                    }
                }
                "status" | "status_code" | "http_status" | "response_code" => {
                    if let Ok(n) = text.parse::<u16>()
                        && (100..=599).contains(&n)
                    {
                        e.http_status = Some(n);
                    }
                }
                "exception.class" | "exception_class" | "error_class" | "exception" => {
                    if let Some(c) = error_class(&text) {
                        e.error_class = Some(c.to_owned());
                    }
                }
                _ if REQUEST_KEYS.contains(&kl.as_ref()) => set_once(&mut e.request_id, &text),
                _ if TRACE_KEYS.contains(&kl.as_ref()) => set_once(&mut e.trace_id, &text),
                _ if JOB_KEYS.contains(&kl.as_ref()) => set_once(&mut e.job_id, &text),
                _ => {}
            }
        }
    }
    // Compact JSON has no spaces between fields: scrub its string values one by one.
    let mut json_scrubbed = None;
    if let Some(v) = &json {
        let mut strings = Vec::new();
        collect_strings(v, 0, &mut strings);
        let mut text = line.to_owned();
        for s in strings {
            let mut tmp = Enriched::default();
            let clean = scan_words(s, &mut tmp);
            if tmp.scrubbed > 0 {
                e.scrubbed += tmp.scrubbed;
                let from = serde_json::to_string(s).unwrap_or_default();
                let to = serde_json::to_string(&clean).unwrap_or_default();
                text = text.replace(&from, &to);
            }
        }
        json_scrubbed = Some(text);
    }
    let line: &str = json_scrubbed.as_deref().unwrap_or(line);
    let out = scan_words(line, &mut e);
    e.message = out;
    e
}

/// The string values of a JSON document (nested up to 8 levels, at most 256).
fn collect_strings<'a>(v: &'a serde_json::Value, depth: usize, out: &mut Vec<&'a str>) {
    if depth > 8 || out.len() >= 256 {
        return;
    }
    match v {
        serde_json::Value::String(s) => out.push(s),
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_strings(x, depth + 1, out)),
        serde_json::Value::Object(m) => m.values().for_each(|x| collect_strings(x, depth + 1, out)),
        _ => {}
    }
}

/// Scans the whitespace-separated words of `line` into `e`; returns the scrubbed line.
fn scan_words(line: &str, e: &mut Enriched) -> String {
    let mut out = String::with_capacity(line.len());
    let mut redact_next = false;
    let mut prev_http = false;
    let mut start = 0;
    let bytes = line.as_bytes();
    for i in 0..=bytes.len() {
        let at_end = i == bytes.len();
        if at_end || bytes[i].is_ascii_whitespace() {
            if start < i {
                scan_word(
                    &line[start..i],
                    e,
                    &mut out,
                    &mut redact_next,
                    &mut prev_http,
                );
            }
            if !at_end {
                out.push(bytes[i] as char);
            }
            start = i + 1;
        }
    }
    out
}

fn scan_word(
    word: &str,
    e: &mut Enriched,
    out: &mut String,
    redact_next: &mut bool,
    prev_http: &mut bool,
) {
    let core = trim_punct(word);
    // `core` is a slice of `word`: where it starts is pointer arithmetic, not a search.
    let (lead, trail) = word.split_at(core.as_ptr() as usize - word.as_ptr() as usize);
    let trail = &trail[core.len().min(trail.len())..];
    let emit = |text: &str, out: &mut String| {
        out.push_str(lead);
        out.push_str(text);
        out.push_str(trail);
    };
    // `Bearer <token>`, `Authorization: Basic <value>`, `password: <value>`.
    if core.eq_ignore_ascii_case("bearer") || core.eq_ignore_ascii_case("basic") {
        *redact_next = true;
        emit(core, out);
        return;
    }
    if *redact_next && !core.is_empty() {
        *redact_next = false;
        e.scrubbed += 1;
        emit("<redacted>", out);
        return;
    }
    if let Some(k) = core.strip_suffix(':').or_else(|| core.strip_suffix('='))
        && is_secret_key(trim_punct(k))
    {
        *redact_next = true;
        emit(core, out);
        return;
    }
    // key=value and key:value inside the word.
    if let Some(pos) = core.find(['=', ':'])
        && !core[pos..].starts_with("://")
    {
        let (k, v) = (&core[..pos], &core[pos + 1..]);
        let kt = trim_punct(k);
        if is_secret_key(kt) && !v.is_empty() {
            e.scrubbed += 1;
            emit(&format!("{k}{}<redacted>", &core[pos..=pos]), out);
            return;
        }
        // `"user":"a@b.example"`, `email=a@b.example`, `author:glpat-…`.
        let value = trim_punct(v);
        if !value.is_empty() && (is_email(value) || is_token(value)) {
            e.scrubbed += 1;
            let with = if is_email(value) {
                "<email>"
            } else {
                "<redacted>"
            };
            emit(
                &format!("{k}{}{}", &core[pos..=pos], v.replacen(value, with, 1)),
                out,
            );
            return;
        }
        if key_in(kt, &REQUEST_KEYS) {
            set_once(&mut e.request_id, v);
        } else if key_in(kt, &TRACE_KEYS) {
            set_once(&mut e.trace_id, v);
        } else if key_in(kt, &JOB_KEYS) {
            set_once(&mut e.job_id, v);
        } else if key_in(kt, &["status", "status_code", "code", "http_status"])
            && let Ok(n) = trim_punct(v).parse::<u16>()
            && (100..=599).contains(&n)
        {
            e.http_status.get_or_insert(n);
        } else if key_in(kt, &["level", "severity", "lvl"])
            && let Some(l) = Level::parse(trim_punct(v))
        {
            e.level.get_or_insert(l);
        }
    }
    // Whole-word secrets and personal data.
    if is_email(core) {
        e.scrubbed += 1;
        emit("<email>", out);
        return;
    }
    if is_token(core) {
        e.scrubbed += 1;
        emit(if is_jwt(core) { "<jwt>" } else { "<redacted>" }, out);
        return;
    }
    if core.starts_with("http://") || core.starts_with("https://") {
        let (scrubbed, changed) = scrub_url(core);
        if changed {
            e.scrubbed += 1;
        }
        if e.urls.len() < 8 {
            e.urls.push(strip_url(&scrubbed));
        }
        emit(&scrubbed, out);
        return;
    }
    // Addresses: `1.2.3.4`, `1.2.3.4:8080`, `[2001:db8::1]:443`, `::1`. An address starts
    // with a hex digit or `:`; most words are ruled out by their first byte.
    let addr = core.trim_start_matches('[');
    let addr = if addr
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_hexdigit() || b == b':')
    {
        addr.split(']').next().unwrap_or(core)
    } else {
        ""
    };
    let addr = if addr.matches(':').count() == 1 && addr.contains('.') {
        addr.split(':').next().unwrap_or(addr)
    } else {
        addr
    };
    if (addr.contains('.') || addr.contains(':'))
        && addr.parse::<std::net::IpAddr>().is_ok()
        && e.ips.len() < 8
        && !e.ips.iter().any(|x| x == addr)
    {
        e.ips.push(addr.to_owned());
    }
    // Level words.
    if e.level.is_none() || e.level == Some(Level::Info) {
        let bare = core.trim_end_matches(':');
        let candidate = match bare {
            "ERROR" | "Error" | "error" | "ERR" | "FATAL" | "Fatal" | "fatal" | "CRITICAL"
            | "PANIC" | "panic" | "panicked" | "E," => Some(Level::Error),
            "WARN" | "WARNING" | "Warning" | "warning" | "W," => Some(Level::Warn),
            "INFO" | "Info" | "I," => Some(Level::Info),
            "DEBUG" | "Debug" | "D," => Some(Level::Debug),
            _ => None,
        };
        if let Some(c) = candidate
            && (e.level.is_none() || c > Level::Info && c != Level::Unknown)
        {
            e.level = Some(c);
        }
    }
    if let Some(c) = error_class(core) {
        if e.error_class.is_none() {
            e.error_class = Some(c.to_owned());
        }
        if e.level.is_none() || e.level < Some(Level::Error) {
            e.level = Some(Level::Error);
        }
    }
    // Access logs: `"GET /x HTTP/1.1" 500`.
    if *prev_http
        && let Ok(n) = core.parse::<u16>()
        && (100..=599).contains(&n)
    {
        e.http_status.get_or_insert(n);
    }
    *prev_http = core.starts_with("HTTP/")
        || word.ends_with("HTTP/1.1\"")
        || word.ends_with("HTTP/2.0\"")
        || word.ends_with("HTTP/2\"");
    emit(core, out);
}

// ---- queries ---------------------------------------------------------------------------------

/// A field a query can filter on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    Service,
    Level,
    Status,
    Class,
    Ip,
    Url,
    Request,
    Trace,
    Job,
}

impl Field {
    pub const ALL: [(&'static str, Field); 12] = [
        ("service", Field::Service),
        ("level", Field::Level),
        ("status", Field::Status),
        ("class", Field::Class),
        ("exception", Field::Class),
        ("ip", Field::Ip),
        ("url", Field::Url),
        ("request", Field::Request),
        ("request_id", Field::Request),
        ("trace", Field::Trace),
        ("trace_id", Field::Trace),
        ("job", Field::Job),
    ];

    pub fn parse(s: &str) -> Option<Field> {
        Self::ALL
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(s))
            .map(|(_, f)| *f)
    }
}

/// A parsed search: free words and phrases (full text, all must match, ranked by BM25),
/// field filters, words that must not appear.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Query {
    pub words: Vec<String>,
    pub phrases: Vec<String>,
    pub not: Vec<String>,
    pub filters: Vec<(Field, String)>,
}

/// Why a query was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("the query is empty: give words, a \"phrase\" or a field (service:gitlab level:error)")]
    Empty,
    #[error("unknown field `{0}:`; the fields are {fields}", fields = field_names())]
    UnknownField(String),
    #[error("`{0}:` needs a value")]
    NoValue(String),
    #[error("a \"phrase\" is not closed")]
    Unclosed,
    #[error("level `{0}` is not one of debug, info, warn, error, unknown")]
    BadLevel(String),
    #[error("status `{0}` is not an HTTP status (100-599, or 5xx)")]
    BadStatus(String),
    #[error("the query is longer than 1000 characters")]
    TooLong,
}

fn field_names() -> String {
    Field::ALL
        .iter()
        .map(|(n, _)| format!("{n}:"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses `error "connection refused" service:gitlab level:error -debug status:5xx`.
pub fn parse_query(q: &str) -> Result<Query, QueryError> {
    if q.chars().count() > 1000 {
        return Err(QueryError::TooLong);
    }
    let mut out = Query::default();
    let mut rest = q.trim();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('"') {
            let end = r.find('"').ok_or(QueryError::Unclosed)?;
            let phrase = r[..end].trim();
            if !phrase.is_empty() {
                out.phrases.push(phrase.to_owned());
            }
            rest = r[end + 1..].trim_start();
            continue;
        }
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let token = &rest[..end];
        rest = rest[end..].trim_start();
        if let Some(w) = token.strip_prefix('-')
            && !w.is_empty()
        {
            out.not.push(w.to_owned());
            continue;
        }
        match token.split_once(':') {
            Some((k, v)) if !k.is_empty() && !k.contains('/') && Field::parse(k).is_some() => {
                let field = Field::parse(k).expect("checked");
                let v = v.trim_matches('"');
                if v.is_empty() {
                    return Err(QueryError::NoValue(k.to_owned()));
                }
                match field {
                    Field::Level => {
                        Level::parse(v).ok_or_else(|| QueryError::BadLevel(v.to_owned()))?;
                    }
                    Field::Status => {
                        status_range(v).ok_or_else(|| QueryError::BadStatus(v.to_owned()))?;
                    }
                    _ => {}
                }
                out.filters.push((field, v.to_owned()));
            }
            Some((k, _))
                if !k.is_empty()
                    && k.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_')
                    && !token.contains("://") =>
            {
                return Err(QueryError::UnknownField(k.to_owned()));
            }
            _ => out.words.push(token.to_owned()),
        }
    }
    if out.words.is_empty() && out.phrases.is_empty() && out.filters.is_empty() {
        return Err(QueryError::Empty);
    }
    Ok(out)
}

/// `500` → 500..=500, `5xx` → 500..=599.
pub fn status_range(v: &str) -> Option<(u16, u16)> {
    let v = v.to_ascii_lowercase();
    if let Some(d) = v.strip_suffix("xx")
        && let Ok(n) = d.parse::<u16>()
        && (1..=5).contains(&n)
    {
        return Some((n * 100, n * 100 + 99));
    }
    let n = v.parse::<u16>().ok()?;
    (100..=599).contains(&n).then_some((n, n))
}

/// An FTS5 string literal.
fn fts_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

impl Query {
    /// The FTS5 `MATCH` expression for the words and phrases (`None`: filters only).
    /// Every term is quoted, so no user text is read as FTS5 syntax.
    pub fn fts(&self) -> Option<String> {
        let mut parts: Vec<String> = self
            .words
            .iter()
            .chain(&self.phrases)
            .map(|w| fts_quote(w))
            .collect();
        if parts.is_empty() {
            return None;
        }
        let mut s = parts.remove(0);
        for p in parts {
            let _ = write!(s, " AND {p}");
        }
        for n in &self.not {
            let _ = write!(s, " NOT {}", fts_quote(n));
        }
        Some(s)
    }
}

/// `15m`, `24h`, `7d`, `90s`, `2w` → seconds (at most a year).
pub fn parse_range(s: &str) -> Option<u64> {
    let s = s.trim();
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    // At most 8 digits (a year in seconds is 8): what the API's schema says.
    if n.is_empty() || n.len() > 8 {
        return None;
    }
    let n: u64 = n.parse().ok()?;
    let secs = n.checked_mul(match unit {
        "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return None,
    })?;
    (secs > 0 && secs <= 366 * 86_400).then_some(secs)
}

// ---- semantic search -------------------------------------------------------------------------

/// How a search ranks: full text (BM25), meaning (cosine similarity of sentence embeddings), or
/// both fused by reciprocal rank ([`fuse`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    Lexical,
    Semantic,
    Hybrid,
}

impl SearchMode {
    pub const ALL: [SearchMode; 3] = [
        SearchMode::Hybrid,
        SearchMode::Lexical,
        SearchMode::Semantic,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SearchMode::Lexical => "lexical",
            SearchMode::Semantic => "semantic",
            SearchMode::Hybrid => "hybrid",
        }
    }

    /// `hybrid`, `lexical` or `semantic` (any case).
    pub fn parse(s: &str) -> Option<SearchMode> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(s.trim()))
    }

    /// Whether this mode needs the embedding model.
    pub fn semantic(self) -> bool {
        self != SearchMode::Lexical
    }
}

impl Query {
    /// The text whose meaning a semantic search looks for: the words and phrases (`None`: the
    /// query has only filters).
    pub fn text(&self) -> Option<String> {
        let parts: Vec<&str> = self
            .words
            .iter()
            .chain(&self.phrases)
            .map(String::as_str)
            .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    }
}

/// Characters of a template kept (the model reads at most 256 tokens anyway).
const TEMPLATE_CHARS: usize = 512;

/// A message's template: what is embedded once for every line that shares it. Lowercased (the
/// model is uncased), whitespace collapsed, in every run of letters and digits: a run of 6 or
/// more characters that goes from letters to digits and back at least twice becomes `<id>`
/// (commit ids, request ids), else every run of digits is one `0` (`took 12ms` and `took
/// 34000ms` are one template); cut to 512 characters.
pub fn template(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(TEMPLATE_CHARS));
    for word in message.split_whitespace() {
        if out.len() >= TEMPLATE_CHARS {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        let mut rest = word;
        while let Some(first) = rest.chars().next() {
            let end = rest
                .find(|c: char| !c.is_alphanumeric())
                .unwrap_or(rest.len());
            if end == 0 {
                out.extend(first.to_lowercase());
                rest = &rest[first.len_utf8()..];
                continue;
            }
            let run = &rest[..end];
            rest = &rest[end..];
            let switches = run
                .as_bytes()
                .windows(2)
                .filter(|w| w[0].is_ascii_digit() != w[1].is_ascii_digit())
                .count();
            if switches >= 2 && run.len() >= 6 {
                out.push_str("<id>");
                continue;
            }
            let mut in_digits = false;
            for c in run.chars() {
                if c.is_ascii_digit() {
                    if !in_digits {
                        out.push('0');
                    }
                    in_digits = true;
                } else {
                    in_digits = false;
                    out.extend(c.to_lowercase());
                }
            }
        }
    }
    if out.len() > TEMPLATE_CHARS {
        let mut cut = TEMPLATE_CHARS;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

/// Reciprocal rank fusion's constant (Cormack, Clarke and Büttcher, SIGIR 2009: k = 60).
pub const RRF_K: f64 = 60.0;

/// Reciprocal rank fusion of ranked lists of ids (best first): each id scores the sum of
/// 1 / (k + rank) over the lists it is in (rank from 1). Best first; equal scores newest (the
/// larger id) first.
pub fn fuse(lists: &[&[i64]], k: f64) -> Vec<(i64, f64)> {
    let mut score: std::collections::HashMap<i64, f64> = std::collections::HashMap::new();
    for list in lists {
        for (rank, id) in list.iter().enumerate() {
            *score.entry(*id).or_default() += 1.0 / (k + rank as f64 + 1.0);
        }
    }
    let mut out: Vec<(i64, f64)> = score.into_iter().collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(b.0.cmp(&a.0)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fold_numbers_and_ids_but_keep_words() {
        for (a, b) in [
            ("Completed 200 OK in 12ms", "completed 0 ok in 0ms"),
            ("Completed 500 OK in 340ms", "completed 0 ok in 0ms"),
            ("commit 3f2a9c1d0e pushed", "commit <id> pushed"),
            ("jid=01J9E3779B1 done", "jid=<id> done"),
            ("  GET  /api/v4/projects/42  ", "get /api/v0/projects/0"),
            ("(deadbe3f12),", "(<id>),"),
            ("took 34000ms for user123", "took 0ms for user0"),
            ("Connection REFUSED", "connection refused"),
            ("cafebabe", "cafebabe"),
        ] {
            assert_eq!(template(a), b, "{a}");
        }
        let long = "word ".repeat(500);
        assert!(template(&long).len() <= 512);
        let wide = "é".repeat(600);
        assert!(template(&wide).len() <= 512);
    }

    #[test]
    fn reciprocal_rank_fusion_rewards_agreement() {
        // 3 is second in both lists and beats 1 and 7, each first in one.
        let f = fuse(&[&[1, 3, 5], &[7, 3]], RRF_K);
        assert_eq!(f[0].0, 3);
        assert!((f[0].1 - 2.0 / 62.0).abs() < 1e-12);
        // 1 and 7 tie (1/61 each): the newer (larger id) first.
        assert_eq!((f[1].0, f[2].0), (7, 1));
        assert_eq!(f.len(), 4);
        assert!(fuse(&[], RRF_K).is_empty());
    }

    #[test]
    fn modes_and_query_text() {
        assert_eq!(SearchMode::parse("Hybrid"), Some(SearchMode::Hybrid));
        assert_eq!(SearchMode::parse("fuzzy"), None);
        assert!(!SearchMode::Lexical.semantic());
        let q = parse_query(r#"disk "out of space" service:gitlab -debug"#).unwrap();
        assert_eq!(q.text().as_deref(), Some("disk out of space"));
        assert_eq!(parse_query("level:error").unwrap().text(), None);
    }

    #[test]
    fn configured_patterns_are_scrubbed_first_and_everywhere() {
        let p =
            ScrubPatterns::compile(&[r"cust-\d{6}".to_owned(), "Acme Corp".to_owned()]).unwrap();
        let e = enrich_with(
            r#"{"level":"error","msg":"cust-123456 and cust-654321 of Acme Corp","request_id":"r1"}"#,
            &[],
            &p,
        );
        assert!(
            !e.message.contains("cust-") && !e.message.contains("Acme"),
            "{}",
            e.message
        );
        assert_eq!(e.scrubbed, 3);
        // The line stays JSON: its fields are still read.
        assert_eq!(e.level, Some(Level::Error));
        assert_eq!(e.request_id.as_deref(), Some("r1"));
        for bad in ["(unclosed", "x*", "", "a|"] {
            assert!(ScrubPatterns::compile_one(bad).is_err(), "{bad}");
        }
        let huge = format!("(\\w{{100}}){{{}}}", 1000);
        let why = ScrubPatterns::compile_one(&huge).unwrap_err();
        assert!(why.contains("too large"), "{why}");
    }

    #[test]
    fn scrubs_personal_data_and_secrets_and_keeps_the_rest() {
        let cases = [
            ("user alice@example.com logged in", "user <email> logged in"),
            (
                "Authorization: Bearer abc.def.ghi ok",
                "Authorization: Bearer <redacted> ok",
            ),
            ("password=hunter2 next", "password=<redacted> next"),
            ("token: s3cr3tvalue", "token: <redacted>"),
            (
                "push glpat-abcdefghij1234567890 done",
                "push <redacted> done",
            ),
            (
                "clone https://oauth2:glpat-xyzxyzxyz@gitlab.example.com/g/p.git",
                "clone https://<redacted>@gitlab.example.com/g/p.git",
            ),
            (
                "GET https://h.example/api?private_token=abc&page=2",
                "GET https://h.example/api?private_token=<redacted>&page=2",
            ),
            (
                "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl here",
                "jwt <jwt> here",
            ),
            ("key AKIAIOSFODNN7EXAMPLE", "key <redacted>"),
            ("(mail: bob.smith+x@mail.example.org)", "(mail: <email>)"),
        ];
        for (input, want) in cases {
            let e = enrich(input, &[]);
            assert_eq!(e.message, want, "{input}");
            assert!(e.scrubbed > 0, "{input}");
        }
        let plain = "GET /users/sign_in 200 12ms";
        assert_eq!(enrich(plain, &[]).message, plain);
        assert_eq!(
            enrich("the root password is abcdef123 yes", &["abcdef123"]).message,
            "the root password is <redacted> yes"
        );
    }

    #[test]
    fn finds_levels_classes_statuses_addresses_and_ids() {
        let e = enrich(
            "2026-12-06T10:00:00Z ERROR NoMethodError: undefined method `x' request_id=01HX7 from 10.0.0.5:4432",
            &[],
        );
        assert_eq!(e.level, Some(Level::Error));
        assert_eq!(e.error_class.as_deref(), Some("NoMethodError"));
        assert_eq!(e.request_id.as_deref(), Some("01HX7"));
        assert_eq!(e.ips, ["10.0.0.5"]);
        let e = enrich(
            r#"10.1.2.3 - - [06/Dec/2026:10:00:00 +0000] "GET /api/v4/projects HTTP/1.1" 502 157"#,
            &[],
        );
        assert_eq!(e.http_status, Some(502));
        assert_eq!(e.ips, ["10.1.2.3"]);
        let e = enrich(
            "Exception in thread \"main\" java.lang.NullPointerException: boom",
            &[],
        );
        assert_eq!(
            e.error_class.as_deref(),
            Some("java.lang.NullPointerException")
        );
        assert!(enrich("    at com.example.Foo.bar(Foo.java:12)", &[]).stack);
        assert!(enrich("  File \"/app/x.py\", line 3, in <module>", &[]).stack);
        let e = enrich(
            r#"{"severity":"ERROR","correlation_id":"c0ffee","status":500,"exception.class":"ActiveRecord::RecordNotFound","message":"x","user":"a@b.example"}"#,
            &[],
        );
        assert_eq!(e.level, Some(Level::Error));
        assert_eq!(e.request_id.as_deref(), Some("c0ffee"));
        assert_eq!(e.http_status, Some(500));
        assert_eq!(
            e.error_class.as_deref(),
            Some("ActiveRecord::RecordNotFound")
        );
        assert!(e.message.contains("<email>") && !e.message.contains("a@b.example"));
        assert_eq!(
            enrich("WARNING: disk 91% full", &[]).level,
            Some(Level::Warn)
        );
        assert_eq!(enrich("all good", &[]).level, None);
        assert_eq!(
            enrich("see https://u:p@x.example/a?b=c#d", &[]).urls,
            ["https://x.example/a"]
        );
        assert_eq!(
            enrich("trace_id=4bf92f35 job_id=job-7", &[])
                .job_id
                .as_deref(),
            Some("job-7")
        );
    }

    #[test]
    fn queries_parse_into_quoted_terms_and_filters() {
        let q = parse_query(
            r#"timeout "connection refused" service:gitlab level:error -debug status:5xx"#,
        )
        .unwrap();
        assert_eq!(q.words, ["timeout"]);
        assert_eq!(q.phrases, ["connection refused"]);
        assert_eq!(q.not, ["debug"]);
        assert_eq!(
            q.filters,
            [
                (Field::Service, "gitlab".to_owned()),
                (Field::Level, "error".to_owned()),
                (Field::Status, "5xx".to_owned())
            ]
        );
        assert_eq!(
            q.fts().unwrap(),
            r#""timeout" AND "connection refused" NOT "debug""#
        );
        // User text is never FTS5 syntax.
        assert_eq!(
            parse_query(r#"a"b OR c*"#).unwrap().fts().unwrap(),
            r#""a""b" AND "OR" AND "c*""#
        );
        assert_eq!(parse_query(r#""abc"#).unwrap_err(), QueryError::Unclosed);
        assert_eq!(
            parse_query("NEAR(x y) OR *").unwrap().fts().unwrap(),
            r#""NEAR(x" AND "y)" AND "OR" AND "*""#
        );
        assert_eq!(parse_query("  ").unwrap_err(), QueryError::Empty);
        assert_eq!(
            parse_query("colour:red").unwrap_err(),
            QueryError::UnknownField("colour".into())
        );
        assert_eq!(
            parse_query("level:loud").unwrap_err(),
            QueryError::BadLevel("loud".into())
        );
        assert!(parse_query("https://x.example/a").unwrap().fts().is_some());
        assert_eq!(status_range("5xx"), Some((500, 599)));
        assert_eq!(status_range("404"), Some((404, 404)));
        assert_eq!(status_range("700"), None);
        assert_eq!(parse_range("15m"), Some(900));
        assert_eq!(parse_range("7d"), Some(7 * 86_400));
        assert_eq!(parse_range("0h"), None);
        assert_eq!(parse_range("soon"), None);
        assert_eq!(parse_range("31622400s"), Some(31_622_400));
        assert_eq!(
            parse_range("000000001h"),
            None,
            "more digits than the schema allows"
        );
    }
}
