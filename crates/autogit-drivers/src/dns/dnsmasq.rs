//! dnsmasq (homelab DNS): autogit's records as lines of a dnsmasq configuration file
//! (`DNSMASQ_CONFIG_PATH`, included by dnsmasq with `conf-file=` or placed in `conf-dir`),
//! between two marker comments; everything outside the markers is the user's and kept as it is.
//!
//! ```text
//! # BEGIN autogit: managed by `autogit dns sync`; lines up to END are rewritten
//! address=/*.example.com/203.0.113.7
//! host-record=example.com,203.0.113.7,300
//! # ttl 300
//! txt-record=_autogit.example.com,"heritage=autogit,owner=autogit"
//! # END autogit
//! ```
//!
//! - A wildcard `*.zone` is `address=/*.zone/ip` (dnsmasq answers every name below the zone,
//!   not the zone itself); an exact name is `host-record=name,ip,ttl` (exactly that name:
//!   `address=/name/` would answer every name below it too); TXT is `txt-record=name,"value"`.
//!   `address=` and `txt-record=` carry no TTL, so it is kept in a `# ttl N` comment above them.
//! - `list` reads the whole file: records outside the markers are listed too (so `dns_plan`
//!   sees them as records autogit does not own), but only lines between the markers are ever
//!   changed; a change to a record outside them is refused.
//! - `apply` writes the whole file atomically (temp file, fsync, rename; the file's mode is
//!   kept) and then runs the reload command (`DNSMASQ_RELOAD_COMMAND`, through `sh -c`), which
//!   must restart dnsmasq: dnsmasq reads `address=`, `host-record=` and `txt-record=` only at
//!   start (SIGHUP re-reads hosts files, not these; checked with dnsmasq 2.90).

use super::wire::{quote_txt, split_txt};
use super::{DnsProvider, DnsProviderError};
use crate::fsx::{FsError, read_bounded, write_atomic};
use autogit_core::dns::{Change, Record, RecordType, canonical_name};
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const BEGIN: &str = "# BEGIN autogit";
pub const END: &str = "# END autogit";
const BEGIN_LINE: &str =
    "# BEGIN autogit: managed by `autogit dns sync`; lines up to END are rewritten";
/// Largest configuration file read.
const MAX_FILE: u64 = 4 * 1024 * 1024;

/// Settings from DNSMASQ_CONFIG_PATH, DNSMASQ_RELOAD_COMMAND and DNS_TTL.
#[derive(Clone, Debug)]
pub struct DnsmasqConfig {
    pub path: PathBuf,
    /// Run through `sh -c` after each change; must make dnsmasq load the file (a restart).
    pub reload_command: Option<String>,
    /// TTL reported for records whose line carries none (written by hand).
    pub default_ttl: u32,
    /// For the reload command.
    pub timeout: Duration,
}

/// The dnsmasq provider for one configuration file.
#[derive(Clone, Debug)]
pub struct Dnsmasq {
    config: DnsmasqConfig,
}

/// The file split at the markers.
#[derive(Debug, Default)]
struct Layout {
    before: Vec<String>,
    block: Vec<Record>,
    after: Vec<String>,
    /// Records outside the markers.
    foreign: Vec<Record>,
}

impl Dnsmasq {
    pub fn new(config: &DnsmasqConfig) -> Result<Self, DnsProviderError> {
        if !config.path.is_absolute() {
            return Err(DnsProviderError::Config(format!(
                "DNSMASQ_CONFIG_PATH `{}` must be an absolute path",
                config.path.display()
            )));
        }
        Ok(Self {
            config: config.clone(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.config.path
    }

    /// Whether a reload command is configured (without one, dnsmasq must be restarted by hand).
    pub fn reloads(&self) -> bool {
        self.config.reload_command.is_some()
    }

    fn file_error(&self, what: &str, e: impl std::fmt::Display) -> DnsProviderError {
        DnsProviderError::Config(format!(
            "{what} {} (DNSMASQ_CONFIG_PATH): {e}",
            self.config.path.display()
        ))
    }

    fn read(&self) -> Result<Layout, DnsProviderError> {
        let text = match read_bounded(&self.config.path, MAX_FILE) {
            Ok(b) => String::from_utf8(b).map_err(|_| self.file_error("reading", "not UTF-8"))?,
            Err(FsError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                String::new()
            }
            Err(e) => return Err(self.file_error("reading", e)),
        };
        let mut layout = Layout::default();
        let mut state = 0; // 0 before, 1 inside, 2 after
        let mut ttl: Option<u32> = None;
        for (i, line) in text.lines().enumerate() {
            let t = line.trim();
            if t.starts_with(BEGIN) {
                if state != 0 {
                    return Err(self.file_error(
                        "reading",
                        format!("a second `{BEGIN}` marker on line {}", i + 1),
                    ));
                }
                state = 1;
                continue;
            }
            if t.starts_with(END) {
                if state != 1 {
                    return Err(self.file_error(
                        "reading",
                        format!("`{END}` without `{BEGIN}` on line {}", i + 1),
                    ));
                }
                state = 2;
                continue;
            }
            if let Some(n) = t.strip_prefix("# ttl ") {
                ttl = n.trim().parse().ok();
            }
            let parsed = parse_line(t, ttl.unwrap_or(self.config.default_ttl));
            if !t.starts_with('#') {
                ttl = None;
            }
            match state {
                0 | 2 => {
                    layout.foreign.extend(parsed);
                    if state == 0 {
                        layout.before.push(line.to_owned());
                    } else {
                        layout.after.push(line.to_owned());
                    }
                }
                _ => layout.block.extend(parsed),
            }
        }
        if state == 1 {
            return Err(self.file_error(
                "reading",
                format!("`{BEGIN}` without `{END}`: fix the file by hand"),
            ));
        }
        Ok(layout)
    }

    fn render(layout: &Layout) -> Result<String, DnsProviderError> {
        let mut out = String::new();
        for l in &layout.before {
            out.push_str(l);
            out.push('\n');
        }
        out.push_str(BEGIN_LINE);
        out.push('\n');
        for r in &layout.block {
            out.push_str(&render_record(r)?);
        }
        out.push_str(END);
        out.push('\n');
        for l in &layout.after {
            out.push_str(l);
            out.push('\n');
        }
        Ok(out)
    }

    async fn reload(&self) -> Result<(), DnsProviderError> {
        let Some(cmd) = &self.config.reload_command else {
            return Ok(());
        };
        let run = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(self.config.timeout, run)
            .await
            .map_err(|_| {
                DnsProviderError::Config(format!(
                    "DNSMASQ_RELOAD_COMMAND `{cmd}` did not finish within {:?}",
                    self.config.timeout
                ))
            })?
            .map_err(|e| {
                DnsProviderError::Config(format!("cannot run DNSMASQ_RELOAD_COMMAND `{cmd}`: {e}"))
            })?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err.lines().last().unwrap_or("").trim();
            return Err(DnsProviderError::Config(format!(
                "DNSMASQ_RELOAD_COMMAND `{cmd}` failed ({}){}; the records are written in {} but dnsmasq may not serve them yet",
                out.status,
                if last.is_empty() {
                    String::new()
                } else {
                    format!(": {last}")
                },
                self.config.path.display()
            )));
        }
        Ok(())
    }
}

/// Records of one configuration line (`address=`, `host-record=`, `txt-record=`,
/// `cname=`); other lines give none.
fn parse_line(line: &str, ttl: u32) -> Vec<Record> {
    let Some((key, value)) = line.split_once('=') else {
        return Vec::new();
    };
    let ip_kind = |ip: &IpAddr| match ip {
        IpAddr::V4(_) => RecordType::A,
        IpAddr::V6(_) => RecordType::Aaaa,
    };
    match key.trim() {
        "address" => {
            // address=/d1/d2/ip: each domain and every name below it.
            let parts: Vec<&str> = value.trim().trim_start_matches('/').split('/').collect();
            let Some((ip, domains)) = parts.split_last() else {
                return Vec::new();
            };
            let Ok(ip) = ip.parse::<IpAddr>() else {
                return Vec::new();
            };
            domains
                .iter()
                .filter(|d| !d.is_empty())
                .map(|d| Record::new(d, ip_kind(&ip), ip.to_string(), ttl))
                .collect()
        }
        "host-record" => {
            let fields: Vec<&str> = value.split(',').map(str::trim).collect();
            let (ttl, fields) = match fields.split_last() {
                Some((last, rest)) if last.parse::<u32>().is_ok() => {
                    (last.parse().unwrap_or(ttl), rest)
                }
                _ => (ttl, fields.as_slice()),
            };
            let ips: Vec<IpAddr> = fields.iter().filter_map(|f| f.parse().ok()).collect();
            fields
                .iter()
                .filter(|f| f.parse::<IpAddr>().is_err() && !f.is_empty())
                .flat_map(|n| {
                    ips.iter()
                        .map(move |ip| Record::new(n, ip_kind(ip), ip.to_string(), ttl))
                })
                .collect()
        }
        "txt-record" => {
            let Some((name, rest)) = value.split_once(',') else {
                return vec![Record::new(value.trim(), RecordType::Txt, "", ttl)];
            };
            vec![Record::new(
                name.trim(),
                RecordType::Txt,
                unquote(rest.trim()),
                ttl,
            )]
        }
        "cname" => {
            let fields: Vec<&str> = value.split(',').map(str::trim).collect();
            match fields.split_first() {
                Some((name, rest)) => vec![Record::new(
                    name,
                    RecordType::Cname,
                    rest.first().copied().unwrap_or(""),
                    ttl,
                )],
                None => Vec::new(),
            }
        }
        _ => Vec::new(),
    }
}

/// `"a","b"` (dnsmasq's several strings) or `"a"` or `a`, joined.
fn unquote(s: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    let mut quoted = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (inside, c) {
            (false, '"') => {
                inside = true;
                quoted = true;
            }
            (true, '"') => inside = false,
            (true, '\\') => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            (true, c) => out.push(c),
            (false, ',') if quoted => {}
            (false, c) if !quoted => out.push(c),
            _ => {}
        }
    }
    out
}

fn render_record(r: &Record) -> Result<String, DnsProviderError> {
    let bad = |why: &str| {
        Err(DnsProviderError::Config(format!(
            "dnsmasq cannot hold {} `{}`: {why}",
            r.kind, r.name
        )))
    };
    if r.name.is_empty() || r.name.contains(['/', ',', '"', '\n', ' ', '#']) {
        return bad("the name has characters a dnsmasq line cannot carry");
    }
    match r.kind {
        RecordType::A | RecordType::Aaaa => {
            let Ok(ip) = r.value.parse::<IpAddr>() else {
                return bad("not an IP address");
            };
            match r.name.strip_prefix("*.") {
                Some(base) => Ok(format!("# ttl {}\naddress=/*.{base}/{ip}\n", r.ttl)),
                None if r.name.contains('*') => bad("`*` only as the first label"),
                None => Ok(format!("host-record={},{ip},{}\n", r.name, r.ttl)),
            }
        }
        RecordType::Txt => {
            if r.value.contains('\n') {
                return bad("a TXT value with a newline");
            }
            // dnsmasq's TXT strings are at most 255 bytes; longer values are split.
            let quoted: Vec<String> = split_txt(&r.value).iter().map(|p| quote_txt(p)).collect();
            Ok(format!(
                "# ttl {}\ntxt-record={},{}\n",
                r.ttl,
                r.name,
                quoted.join(",")
            ))
        }
        _ => bad("autogit writes only A, AAAA and TXT records"),
    }
}

#[async_trait::async_trait]
impl DnsProvider for Dnsmasq {
    fn describe(&self) -> String {
        format!("dnsmasq {}", self.config.path.display())
    }

    fn after_sync_hint(&self) -> Option<String> {
        (!self.reloads()).then(|| format!(
            "dnsmasq reads {} only when it starts: restart it (systemctl restart dnsmasq), or set DNSMASQ_RELOAD_COMMAND so that `dns sync` does",
            self.config.path.display()
        ))
    }

    /// Every record of the file (inside and outside autogit's markers).
    async fn list(&self, _names: &[String]) -> Result<Vec<Record>, DnsProviderError> {
        let layout = self.read()?;
        let mut out = layout.block;
        out.extend(layout.foreign);
        out.sort();
        out.dedup();
        Ok(out)
    }

    async fn apply(&self, changes: &[Change]) -> Result<(), DnsProviderError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut layout = self.read()?;
        let same = |a: &Record, b: &Record| {
            canonical_name(&a.name) == canonical_name(&b.name)
                && a.kind == b.kind
                && a.value == b.value
        };
        let outside = |r: &Record, layout: &Layout| {
            DnsProviderError::Config(format!(
                "{r} is outside autogit's `{BEGIN}` ... `{END}` lines in {}{}; change it by hand",
                self.config.path.display(),
                if layout.foreign.iter().any(|f| same(f, r)) {
                    ""
                } else {
                    " (or not in the file at all)"
                }
            ))
        };
        for c in changes {
            match c {
                Change::Create { record } => {
                    render_record(record)?;
                    if !layout.block.iter().any(|r| same(r, record)) {
                        layout.block.push(record.clone());
                    }
                }
                Change::Delete { record } => {
                    let before = layout.block.len();
                    layout.block.retain(|r| !same(r, record));
                    if layout.block.len() == before
                        && layout.foreign.iter().any(|f| same(f, record))
                    {
                        return Err(outside(record, &layout));
                    }
                }
                Change::Update { from, to } => {
                    render_record(to)?;
                    let Some(i) = layout.block.iter().position(|r| same(r, from)) else {
                        return Err(outside(from, &layout));
                    };
                    layout.block[i] = to.clone();
                }
            }
        }
        let text = Self::render(&layout)?;
        let mode = std::fs::metadata(&self.config.path)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0o644);
        write_atomic(&self.config.path, text.as_bytes(), mode)
            .map_err(|e| self.file_error("writing", e))?;
        self.reload().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        let records = [
            Record::new("*.example.com", RecordType::A, "203.0.113.7", 300),
            Record::new("example.com", RecordType::Aaaa, "2001:db8::7", 120),
            Record::new("_autogit.example.com", RecordType::Txt, "a \"q\" b", 60),
            Record::new("long.example.com", RecordType::Txt, "x".repeat(300), 60),
        ];
        for r in &records {
            let text = render_record(r).unwrap();
            let mut ttl = None;
            let mut got = Vec::new();
            for l in text.lines() {
                if let Some(n) = l.strip_prefix("# ttl ") {
                    ttl = n.parse().ok();
                }
                got.extend(parse_line(l, ttl.unwrap_or(1)));
            }
            assert_eq!(got, vec![r.clone()], "{text}");
        }
        assert!(render_record(&Record::new("a/b", RecordType::A, "1.2.3.4", 1)).is_err());
        assert!(render_record(&Record::new("a.b", RecordType::Cname, "x", 1)).is_err());
        assert_eq!(
            parse_line("address=/a.test/b.test/10.0.0.1", 5),
            [
                Record::new("a.test", RecordType::A, "10.0.0.1", 5),
                Record::new("b.test", RecordType::A, "10.0.0.1", 5)
            ]
        );
    }
}
