//! A complete `dns` extension in Rust: the zone read by AXFR with `dig` and changed with
//! `nsupdate`, both signed with a TSIG key (BIND, Knot, PowerDNS...). The same provider as
//! `sdk/python/examples/nsupdate_dns.py`.
//!
//! Build it (`cargo build --release -p autogit-extension-sdk --example nsupdate_dns`), copy
//! `target/release/examples/nsupdate_dns` to `<data dir>/extensions/nsupdate-dns-rs`, and set
//! in `.env`:
//!
//! ```text
//! EXTENSIONS_ENABLED=nsupdate-dns-rs
//! DNS_PROVIDER=nsupdate-dns-rs
//! NSUPDATE_SERVER=10.0.0.2:53
//! NSUPDATE_KEY_NAME=autogit
//! NSUPDATE_KEY_SECRET_FILE=/etc/autogit/tsig.secret
//! ```
//!
//! The secret arrives in `initialize` only; it is written to a 0600 key file in a 0700
//! directory for `dig -k`/`nsupdate -k` (never argv) and removed at shutdown. `dns.apply` is one
//! UPDATE message conditional on the SOA `dns.list` read: all or nothing.

use autogit_extension_sdk::{Change, DnsProvider, Error, Extension, Health, Init, Record, Setting};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};

const TIMEOUT_SECS: u32 = 10;

#[derive(Default)]
struct NsupdateDns {
    host: String,
    port: u16,
    zone: String,
    dir: Option<PathBuf>,
    soa: Option<String>,
}

/// `host`, `host:port`, `[v6]:port`.
fn split_server(s: &str) -> Result<(String, u16), Error> {
    let bad = || Error::config(format!("NSUPDATE_SERVER `{s}` is not host[:port]"));
    if let Some(rest) = s.strip_prefix('[') {
        let (host, port) = rest.split_once(']').ok_or_else(bad)?;
        let port = port.trim_start_matches(':');
        let port = if port.is_empty() {
            53
        } else {
            port.parse().map_err(|_| bad())?
        };
        return Ok((host.to_owned(), port));
    }
    match s.split_once(':') {
        Some((h, p)) if !p.contains(':') => Ok((h.to_owned(), p.parse().map_err(|_| bad())?)),
        _ => Ok((s.to_owned(), 53)),
    }
}

/// The unquoted value of TXT rdata as dig prints it (`"a" "b"` → `ab`).
fn txt_value(rdata: &str) -> String {
    let mut out = String::new();
    let mut chars = rdata.chars();
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => out.extend(chars.next()),
                c => out.push(c),
            }
        }
    }
    out
}

/// A TXT value as nsupdate reads it: quoted strings of at most 255 bytes.
fn txt_rdata(value: &str) -> String {
    let bytes = value.as_bytes();
    let chunks: Vec<String> = if bytes.is_empty() {
        vec![String::new()]
    } else {
        bytes
            .chunks(255)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect()
    };
    chunks
        .iter()
        .map(|c| format!("\"{}\"", c.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect::<Vec<_>>()
        .join(" ")
}

fn rdata(r: &Record) -> String {
    if r.kind == "TXT" {
        txt_rdata(&r.value)
    } else {
        r.value.clone()
    }
}

/// What an error text of dig or nsupdate means.
fn failure(text: &str, fallback: fn(String) -> Error, what: String) -> Error {
    for (word, make) in [
        ("NOTAUTH", Error::config as fn(String) -> Error),
        ("REFUSED", Error::auth),
        ("BADKEY", Error::auth),
        ("BADSIG", Error::auth),
        ("BADTIME", Error::auth),
        ("NXRRSET", Error::zone_changed),
        ("YXRRSET", Error::zone_changed),
    ] {
        if text.contains(word) {
            return make(what);
        }
    }
    fallback(what)
}

impl NsupdateDns {
    fn keyfile(&self) -> PathBuf {
        self.dir.as_ref().expect("initialized").join("tsig.key")
    }

    fn run(
        &self,
        program: &str,
        args: &[String],
        stdin: Option<&str>,
    ) -> Result<(bool, String), Error> {
        let mut child = Command::new(program)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                Error::config(format!(
                    "cannot run {program}: {e} (install bind9-dnsutils)"
                ))
            })?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes())
                .map_err(|e| Error::unavailable(format!("{program}: {e}")))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| Error::unavailable(format!("{program}: {e}")))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok((out.status.success(), text))
    }

    fn dig(&self, args: &[&str]) -> Result<(bool, String), Error> {
        let mut argv: Vec<String> = vec![
            "-k".into(),
            self.keyfile().display().to_string(),
            "-p".into(),
            self.port.to_string(),
            format!("@{}", self.host),
            "+tcp".into(),
            format!("+time={TIMEOUT_SECS}"),
            "+tries=1".into(),
            "+noall".into(),
            "+answer".into(),
            "+comments".into(),
        ];
        argv.extend(args.iter().map(|s| (*s).to_owned()));
        self.run("dig", &argv, None)
    }
}

/// The first `n` blank-separated fields of `line` and the rest (trimmed), as dig prints a
/// record: `name ttl class type rdata...`.
fn split_fields(line: &str, n: usize) -> Option<(Vec<&str>, &str)> {
    let mut fields = Vec::new();
    let mut rest = line.trim_start();
    while fields.len() < n {
        let end = rest.find(char::is_whitespace)?;
        fields.push(&rest[..end]);
        rest = rest[end..].trim_start();
    }
    (!rest.is_empty()).then_some((fields, rest.trim_end()))
}

fn tail(text: &str) -> &str {
    let t = text.trim();
    let start = t.char_indices().rev().nth(299).map_or(0, |(i, _)| i);
    &t[start..]
}

impl DnsProvider for NsupdateDns {
    fn settings(&self) -> Vec<Setting> {
        vec![
            Setting::new("NSUPDATE_SERVER")
                .required()
                .describe("the zone's primary, host[:port]"),
            Setting::new("NSUPDATE_KEY_NAME")
                .required()
                .describe("the TSIG key's name"),
            Setting::new("NSUPDATE_KEY_ALGORITHM")
                .describe("hmac-sha256 (default), hmac-sha512, ..."),
            Setting::new("NSUPDATE_KEY_SECRET")
                .secret()
                .required()
                .describe("the TSIG key (base64)"),
        ]
    }

    fn initialize(&mut self, init: &Init) -> Result<(), Error> {
        let server = init.setting("NSUPDATE_SERVER").unwrap_or_default();
        (self.host, self.port) = split_server(&server)?;
        self.zone = init.zone().trim_end_matches('.').to_ascii_lowercase();
        let key = init.setting("NSUPDATE_KEY_NAME").unwrap_or_default();
        let algorithm = init
            .setting("NSUPDATE_KEY_ALGORITHM")
            .unwrap_or_else(|| "hmac-sha256".to_owned());
        let secret = init
            .secrets
            .get("NSUPDATE_KEY_SECRET")
            .ok_or_else(|| Error::config("NSUPDATE_KEY_SECRET is not set"))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!("nsupdate-dns-{}-{nanos}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Error::failed(format!("{}: {e}", dir.display())))?;
        self.dir = Some(dir);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(self.keyfile())
            .map_err(|e| Error::failed(format!("key file: {e}")))?;
        write!(
            f,
            "key \"{key}\" {{\n  algorithm {algorithm};\n  secret \"{secret}\";\n}};\n"
        )
        .map_err(|e| Error::failed(format!("key file: {e}")))?;
        Ok(())
    }

    fn list(&mut self, _names: &[String]) -> Result<Vec<Record>, Error> {
        let (ok, text) = self.dig(&[&self.zone.clone(), "AXFR"])?;
        if !ok || text.contains("Transfer failed") || text.contains("communications error") {
            return Err(failure(
                &text,
                Error::unavailable,
                format!(
                    "AXFR of {} from {} failed: {}",
                    self.zone,
                    self.host,
                    tail(&text)
                ),
            ));
        }
        let mut records = Vec::new();
        let mut soa = None;
        for line in text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with(';'))
        {
            let Some((fields, rdata)) = split_fields(line, 4) else {
                continue;
            };
            let [name, ttl, class, kind] = [fields[0], fields[1], fields[2], fields[3]];
            if class != "IN" {
                continue;
            }
            if kind == "SOA" {
                soa = Some(rdata.to_owned());
                continue;
            }
            let value = match kind {
                "TXT" => txt_value(rdata),
                "CNAME" => rdata.trim_end_matches('.').to_owned(),
                _ => rdata.to_owned(),
            };
            records.push(Record {
                name: name.trim_end_matches('.').to_ascii_lowercase(),
                kind: kind.to_owned(),
                value,
                ttl: ttl.parse().unwrap_or(0),
            });
        }
        self.soa = Some(soa.ok_or_else(|| {
            Error::unavailable(format!(
                "the AXFR of {} from {} had no SOA",
                self.zone, self.host
            ))
        })?);
        Ok(records)
    }

    fn apply(&mut self, changes: &[Change]) -> Result<(), Error> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut script = format!("server {} {}\nzone {}.\n", self.host, self.port, self.zone);
        if let Some(soa) = &self.soa {
            // Only if the zone is as dns.list read it: one message, all or nothing.
            script.push_str(&format!("prereq yxrrset {}. SOA {soa}\n", self.zone));
        }
        let add = |r: &Record| {
            format!(
                "update add {}. {} IN {} {}\n",
                r.name,
                r.ttl,
                r.kind,
                rdata(r)
            )
        };
        let del = |r: &Record| format!("update delete {}. IN {} {}\n", r.name, r.kind, rdata(r));
        for c in changes {
            match c {
                Change::Create { record } => script.push_str(&add(record)),
                Change::Delete { record } => script.push_str(&del(record)),
                Change::Update { from, to } => {
                    script.push_str(&del(from));
                    script.push_str(&add(to));
                }
            }
        }
        script.push_str("send\n");
        let args = vec![
            "-v".to_owned(),
            "-t".to_owned(),
            TIMEOUT_SECS.to_string(),
            "-k".to_owned(),
            self.keyfile().display().to_string(),
        ];
        let (ok, text) = self.run("nsupdate", &args, Some(&script))?;
        if !ok {
            let unknown = text.contains("timed out")
                || text.contains("communications error")
                || text.contains("could not");
            return Err(failure(
                &text,
                if unknown {
                    Error::unavailable
                } else {
                    Error::failed
                },
                format!("nsupdate to {} failed: {}", self.host, tail(&text)),
            ));
        }
        eprintln!("applied {} change(s) to {}", changes.len(), self.zone);
        Ok(())
    }

    fn health(&mut self) -> Result<Health, Error> {
        let (ok, text) = self.dig(&[&self.zone.clone(), "SOA"])?;
        Ok(if ok && text.contains("status: NOERROR") {
            Health::ok(format!("{} answers for {}", self.host, self.zone))
        } else {
            Health::failing(tail(&text).to_owned())
        })
    }

    fn shutdown(&mut self) {
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn main() -> std::io::Result<()> {
    Extension::new("nsupdate-dns-rs", "1.0.0")
        .description("RFC 2136 updates with nsupdate, AXFR with dig (TSIG); Rust")
        .env(&["PATH"])
        .dns(NsupdateDns::default())
        .run()
}
