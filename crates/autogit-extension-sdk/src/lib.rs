//! Write an autogit extension in Rust.
//!
//! An extension is an executable speaking autogit's extension protocol: JSON-RPC 2.0, one
//! message per line, on stdin/stdout (`docs/extensions.md` in autogit's repository). This
//! crate does the protocol; you write the provider:
//!
//! ```no_run
//! use autogit_extension_sdk::{DnsProvider, Error, Extension, Init, Record, Change, Setting};
//!
//! struct MyDns;
//! impl DnsProvider for MyDns {
//!     fn settings(&self) -> Vec<Setting> {
//!         vec![Setting::new("MYDNS_URL").required(), Setting::new("MYDNS_TOKEN").secret().required()]
//!     }
//!     fn initialize(&mut self, init: &Init) -> Result<(), Error> { Ok(()) }
//!     fn list(&mut self, _names: &[String]) -> Result<Vec<Record>, Error> { Ok(vec![]) }
//!     fn apply(&mut self, _changes: &[Change]) -> Result<(), Error> { Ok(()) }
//! }
//!
//! fn main() -> std::io::Result<()> {
//!     Extension::new("my-dns", "1.0.0").dns(MyDns).run()
//! }
//! ```
//!
//! The other provider types work the same way: [`NotifyProvider`], [`StorageProvider`],
//! [`AuthProvider`] (`auth.login`), [`SslProvider`] (`ssl.issue`) and [`ComputeProvider`]
//! (`compute.exec`: runner hosts reached without SSH); `examples/` holds a
//! complete extension of `dns`, `auth` and `ssl`.
//!
//! Log with `eprintln!`: autogit puts each stderr line in its log. Never write to stdout: it
//! is the protocol's channel.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// JSON-RPC error codes autogit gives a meaning to.
pub mod code {
    /// Any other failure of the call (for an atomic provider: nothing was applied).
    pub const FAILED: i64 = -32000;
    pub const CONFIG: i64 = -32001;
    pub const AUTH: i64 = -32002;
    pub const ZONE_CHANGED: i64 = -32003;
    pub const UNAVAILABLE: i64 = -32004;
    /// `storage.get` / `storage.delete`: no object of that name.
    pub const NOT_FOUND: i64 = -32005;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const PARSE: i64 = -32700;
}

/// An error answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub code: i64,
    pub message: String,
}

impl Error {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
    /// The call failed (an atomic provider applied nothing).
    pub fn failed(m: impl Into<String>) -> Self {
        Self::new(code::FAILED, m)
    }
    /// A setting is wrong.
    pub fn config(m: impl Into<String>) -> Self {
        Self::new(code::CONFIG, m)
    }
    /// The backend refused the credentials.
    pub fn auth(m: impl Into<String>) -> Self {
        Self::new(code::AUTH, m)
    }
    /// `dns.apply`: the zone changed since `dns.list`; nothing was applied.
    pub fn zone_changed(m: impl Into<String>) -> Self {
        Self::new(code::ZONE_CHANGED, m)
    }
    /// The backend did not answer: the outcome is unknown.
    pub fn unavailable(m: impl Into<String>) -> Self {
        Self::new(code::UNAVAILABLE, m)
    }
    /// `storage.get` / `storage.delete`: no object of that name.
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(code::NOT_FOUND, m)
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for Error {}

/// A setting the provider reads from autogit's `.env` or environment (an upper-case key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Setting {
    pub key: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub required: bool,
    pub secret: bool,
    pub description: String,
}

impl Setting {
    pub fn new(key: &str) -> Self {
        Self {
            key: key.to_owned(),
            kind: "string",
            required: false,
            secret: false,
            description: String::new(),
        }
    }
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }
    /// Its value reaches [`Init::secrets`], never [`Init::config`].
    pub fn secret(mut self) -> Self {
        self.secret = true;
        self
    }
    pub fn integer(mut self) -> Self {
        self.kind = "integer";
        self
    }
    pub fn boolean(mut self) -> Self {
        self.kind = "boolean";
        self
    }
    pub fn describe(mut self, d: &str) -> Self {
        self.description = d.to_owned();
        self
    }
}

/// What `initialize` gives the provider.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Init {
    /// The plain settings that are set, typed as declared.
    #[serde(default)]
    pub config: Map<String, Value>,
    /// The secret settings that are set.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// What the provider type adds (`dns`: `{"zone": ..., "ttl": ...}`).
    #[serde(default)]
    pub context: Value,
}

impl Init {
    /// A plain setting as text (strings as they are, numbers and booleans written out).
    pub fn setting(&self, key: &str) -> Option<String> {
        self.config.get(key).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }
    /// `dns`: the zone autogit manages.
    pub fn zone(&self) -> &str {
        self.context
            .get("zone")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
}

/// A DNS record: name lower-case without the trailing dot, a TXT value unquoted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
    pub ttl: u32,
}

/// One change of `dns.apply`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Change {
    /// Add the record (other values at the name stay).
    Create { record: Record },
    /// Replace exactly `from` with `to`.
    Update { from: Record, to: Record },
    /// Remove exactly this record.
    Delete { record: Record },
}

/// The answer to `health`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Health {
    /// `ok`, `degraded` or `failing`.
    pub status: &'static str,
    pub detail: String,
}

impl Health {
    pub fn ok(detail: impl Into<String>) -> Self {
        Self {
            status: "ok",
            detail: detail.into(),
        }
    }
    pub fn failing(detail: impl Into<String>) -> Self {
        Self {
            status: "failing",
            detail: detail.into(),
        }
    }
}

/// A `dns` provider.
pub trait DnsProvider {
    /// The settings it reads.
    fn settings(&self) -> Vec<Setting>;
    /// Whether [`DnsProvider::apply`] is all or nothing.
    fn atomic(&self) -> bool {
        true
    }
    fn initialize(&mut self, init: &Init) -> Result<(), Error>;
    /// The zone's records (all of them if you can: autogit finds what it owns).
    fn list(&mut self, names: &[String]) -> Result<Vec<Record>, Error>;
    /// Apply every change; all or nothing if [`DnsProvider::atomic`].
    fn apply(&mut self, changes: &[Change]) -> Result<(), Error>;
    fn health(&mut self) -> Result<Health, Error> {
        Ok(Health::ok(""))
    }
    /// Called before the process ends (also when `initialize` never ran).
    fn shutdown(&mut self) {}
}

/// One event autogit notifies about (`notify.send`).
#[derive(Clone, Debug, Deserialize)]
pub struct Notification {
    /// The event's kind (`mirror_failed`).
    pub kind: String,
    /// `info`, `warning` or `error`.
    pub severity: String,
    /// What it is about (a service, mirror, host), if anything.
    #[serde(default)]
    pub subject: Option<String>,
    /// One line saying what happened.
    pub summary: String,
    /// The whole event as autogit publishes it.
    #[serde(default)]
    pub event: Value,
}

/// A `notify` provider.
pub trait NotifyProvider {
    /// The settings it reads.
    fn settings(&self) -> Vec<Setting>;
    fn initialize(&mut self, init: &Init) -> Result<(), Error>;
    /// Deliver one notification ([`Error::unavailable`] when the service did not answer).
    fn send(&mut self, n: &Notification) -> Result<(), Error>;
    fn health(&mut self) -> Result<Health, Error> {
        Ok(Health::ok(""))
    }
    fn shutdown(&mut self) {}
}

/// One object on a storage backend (`storage.list`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StoredObject {
    pub name: String,
    pub size: u64,
}

/// A `storage` provider: a place autogit copies backup archives to. Names are flat;
/// archives never travel through the protocol: `put` reads the local file `path`, `get`
/// writes it. autogit verifies every copy by reading it back and keeps the SHA-256 as an
/// object `<name>.sha256` of its own.
pub trait StorageProvider {
    fn settings(&self) -> Vec<Setting>;
    fn initialize(&mut self, init: &Init) -> Result<(), Error>;
    /// Store the file `path` as `name`, replacing an object of that name.
    fn put(&mut self, name: &str, path: &str) -> Result<(), Error>;
    /// Write object `name` to the file `path` ([`Error::not_found`] if there is none).
    fn get(&mut self, name: &str, path: &str) -> Result<(), Error>;
    fn list(&mut self) -> Result<Vec<StoredObject>, Error>;
    /// Delete object `name` (one that is not there: `Ok` or [`Error::not_found`]).
    fn delete(&mut self, name: &str) -> Result<(), Error>;
    fn health(&mut self) -> Result<Health, Error> {
        Ok(Health::ok(""))
    }
    fn shutdown(&mut self) {}
}

/// A role autogit's API and dashboard give a signed-in user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    /// `viewer`, `operator` or `admin`.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// Who an `auth.login` signed in: the session is `user:<name>@<extension>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct User {
    pub name: String,
    pub role: Role,
}

/// An `auth` provider: a login method for autogit's API and dashboard (`"provider":
/// "<extension name>"` in a login, or `alice@<extension name>`). autogit starts the
/// extension for each login, sends one `auth.login`, then `shutdown`.
pub trait AuthProvider {
    fn settings(&self) -> Vec<Setting>;
    fn initialize(&mut self, init: &Init) -> Result<(), Error>;
    /// `Some` for right credentials, `None` for wrong ones (unknown users too: take as long
    /// as for a known one). [`Error::unavailable`] when the backend did not answer. Never log
    /// or return the password.
    fn login(&mut self, username: &str, password: &str) -> Result<Option<User>, Error>;
    fn health(&mut self) -> Result<Health, Error> {
        Ok(Health::ok(""))
    }
    fn shutdown(&mut self) {}
}

/// What `ssl.issue` answers: PEM certificates (the server's first) and its PEM private key.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct Issued {
    pub chain: String,
    pub key: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("chain", &self.chain)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// An `ssl` provider: a certificate source (`TLS_SOURCE=extension:<name>` in `.env`).
/// autogit starts the extension when the platform certificate is due, sends one `ssl.issue`
/// with the names it must cover (`*.BASE_DOMAIN` and `BASE_DOMAIN`), checks the answer (the
/// key is the leaf's, every name covered, valid now) and installs it.
pub trait SslProvider {
    fn settings(&self) -> Vec<Setting>;
    fn initialize(&mut self, init: &Init) -> Result<(), Error>;
    /// A certificate for every one of `names` and its key. [`Error::unavailable`] when the CA
    /// did not answer. Never log the key.
    fn issue(&mut self, names: &[String]) -> Result<Issued, Error>;
    fn health(&mut self) -> Result<Health, Error> {
        Ok(Health::ok(""))
    }
    fn shutdown(&mut self) {}
}

/// What a command run by `compute.exec` did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Ran {
    /// Its exit status; `None` when a signal ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// A `compute` provider: how autogit runs commands on runner hosts it does not reach over
/// SSH. A runner whose `host` is `extension:<name>/<host>` is reached with
/// [`ComputeProvider::exec`]; autogit's inventory probe, scheduler, leases, health checks and
/// routes then work on it as on an SSH host.
pub trait ComputeProvider {
    fn settings(&self) -> Vec<Setting>;
    fn initialize(&mut self, init: &Init) -> Result<(), Error>;
    /// Run `argv` (never through a shell) on `host` with `stdin` on its standard input.
    /// [`Error::not_found`] for a host this provider does not serve, [`Error::unavailable`]
    /// when the host cannot be reached or the command did not finish.
    fn exec(&mut self, host: &str, argv: &[String], stdin: &[u8]) -> Result<Ran, Error>;
    fn health(&mut self) -> Result<Health, Error> {
        Ok(Health::ok(""))
    }
    fn shutdown(&mut self) {}
}

/// Standard base64 (RFC 4648, padded), as `compute.exec` carries standard input.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (i, chunk) in bytes.chunks(4).enumerate() {
        let last = i + 1 == bytes.len() / 4;
        let pad = chunk.iter().rev().take_while(|b| **b == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = (n << 6) | value(c)?;
        }
        n <<= 6 * pad as u32;
        let three = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&three[..3 - pad]);
    }
    Some(out)
}

/// An extension: its name (its file name in the extensions directory), version, the
/// environment variables it inherits from autogit, its dependencies, its providers.
pub struct Extension {
    name: String,
    version: String,
    description: String,
    env: Vec<String>,
    dependencies: Vec<String>,
    dns: Option<Box<dyn DnsProvider>>,
    notify: Option<Box<dyn NotifyProvider>>,
    storage: Option<Box<dyn StorageProvider>>,
    auth: Option<Box<dyn AuthProvider>>,
    ssl: Option<Box<dyn SslProvider>>,
    compute: Option<Box<dyn ComputeProvider>>,
    /// The provider type `initialize` chose.
    active: Option<&'static str>,
}

impl std::fmt::Debug for Extension {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extension")
            .field("name", &self.name)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Request {
    id: Value,
    method: String,
    #[serde(default)]
    params: Value,
}

impl Extension {
    pub fn new(name: &str, version: &str) -> Self {
        Self {
            name: name.to_owned(),
            version: version.to_owned(),
            description: String::new(),
            env: Vec::new(),
            dependencies: Vec::new(),
            dns: None,
            notify: None,
            storage: None,
            auth: None,
            ssl: None,
            compute: None,
            active: None,
        }
    }
    pub fn description(mut self, d: &str) -> Self {
        self.description = d.to_owned();
        self
    }
    /// Variables of autogit's environment it runs with (`PATH`, `LANG`...).
    pub fn env(mut self, names: &[&str]) -> Self {
        self.env = names.iter().map(|s| (*s).to_owned()).collect();
        self
    }
    /// Extensions that must start before it.
    pub fn depends_on(mut self, names: &[&str]) -> Self {
        self.dependencies = names.iter().map(|s| (*s).to_owned()).collect();
        self
    }
    pub fn dns(mut self, provider: impl DnsProvider + 'static) -> Self {
        self.dns = Some(Box::new(provider));
        self
    }
    pub fn storage(mut self, provider: impl StorageProvider + 'static) -> Self {
        self.storage = Some(Box::new(provider));
        self
    }

    pub fn notify(mut self, provider: impl NotifyProvider + 'static) -> Self {
        self.notify = Some(Box::new(provider));
        self
    }

    pub fn auth(mut self, provider: impl AuthProvider + 'static) -> Self {
        self.auth = Some(Box::new(provider));
        self
    }

    pub fn ssl(mut self, provider: impl SslProvider + 'static) -> Self {
        self.ssl = Some(Box::new(provider));
        self
    }

    pub fn compute(mut self, provider: impl ComputeProvider + 'static) -> Self {
        self.compute = Some(Box::new(provider));
        self
    }

    /// The answer to `handshake`.
    pub fn manifest(&self) -> Value {
        let mut providers = Vec::new();
        let mut secrets: Vec<String> = Vec::new();
        let mut declare = |kind: &str, settings: Vec<Setting>| {
            for s in settings.iter().filter(|s| s.secret) {
                if !secrets.contains(&s.key) {
                    secrets.push(s.key.clone());
                }
            }
            json!({"type": kind, "config": settings})
        };
        if let Some(p) = &self.dns {
            let mut d = declare("dns", p.settings());
            d["atomic"] = json!(p.atomic());
            providers.push(d);
        }
        if let Some(p) = &self.notify {
            providers.push(declare("notify", p.settings()));
        }
        if let Some(p) = &self.storage {
            providers.push(declare("storage", p.settings()));
        }
        if let Some(p) = &self.auth {
            providers.push(declare("auth", p.settings()));
        }
        if let Some(p) = &self.ssl {
            providers.push(declare("ssl", p.settings()));
        }
        if let Some(p) = &self.compute {
            providers.push(declare("compute", p.settings()));
        }
        json!({
            "name": self.name,
            "version": self.version,
            "protocol_version": PROTOCOL_VERSION,
            "description": self.description,
            "providers": providers,
            "secrets": secrets,
            "env": self.env,
            "dependencies": self.dependencies,
        })
    }

    fn dns_provider(&mut self) -> Result<&mut Box<dyn DnsProvider>, Error> {
        match self.active {
            None => Err(Error::failed("initialize first")),
            Some("dns") => Ok(self.dns.as_mut().expect("initialized as dns")),
            Some(other) => Err(Error::failed(format!("initialized as `{other}`, not dns"))),
        }
    }

    fn notify_provider(&mut self) -> Result<&mut Box<dyn NotifyProvider>, Error> {
        match self.active {
            None => Err(Error::failed("initialize first")),
            Some("notify") => Ok(self.notify.as_mut().expect("initialized as notify")),
            Some(other) => Err(Error::failed(format!(
                "initialized as `{other}`, not notify"
            ))),
        }
    }

    fn storage_provider(&mut self) -> Result<&mut Box<dyn StorageProvider>, Error> {
        match self.active {
            None => Err(Error::failed("initialize first")),
            Some("storage") => Ok(self.storage.as_mut().expect("initialized as storage")),
            Some(other) => Err(Error::failed(format!(
                "initialized as `{other}`, not storage"
            ))),
        }
    }

    fn auth_provider(&mut self) -> Result<&mut Box<dyn AuthProvider>, Error> {
        match self.active {
            None => Err(Error::failed("initialize first")),
            Some("auth") => Ok(self.auth.as_mut().expect("initialized as auth")),
            Some(other) => Err(Error::failed(format!("initialized as `{other}`, not auth"))),
        }
    }

    fn ssl_provider(&mut self) -> Result<&mut Box<dyn SslProvider>, Error> {
        match self.active {
            None => Err(Error::failed("initialize first")),
            Some("ssl") => Ok(self.ssl.as_mut().expect("initialized as ssl")),
            Some(other) => Err(Error::failed(format!("initialized as `{other}`, not ssl"))),
        }
    }

    fn compute_provider(&mut self) -> Result<&mut Box<dyn ComputeProvider>, Error> {
        match self.active {
            None => Err(Error::failed("initialize first")),
            Some("compute") => Ok(self.compute.as_mut().expect("initialized as compute")),
            Some(other) => Err(Error::failed(format!(
                "initialized as `{other}`, not compute"
            ))),
        }
    }

    fn dispatch(&mut self, method: &str, params: Value) -> Result<Value, Error> {
        let bad = |e: serde_json::Error| Error::new(-32602, format!("invalid params: {e}"));
        match method {
            "handshake" => {
                let speaks = params
                    .get("protocol_versions")
                    .and_then(Value::as_array)
                    .is_some_and(|v| {
                        v.iter()
                            .any(|x| x.as_u64() == Some(PROTOCOL_VERSION.into()))
                    });
                if !speaks {
                    return Err(Error::failed(format!(
                        "this extension speaks protocol {PROTOCOL_VERSION}, autogit offers {}",
                        params.get("protocol_versions").unwrap_or(&Value::Null)
                    )));
                }
                Ok(self.manifest())
            }
            "initialize" => {
                let kind = params.get("provider").and_then(Value::as_str).unwrap_or("");
                let init: Init = serde_json::from_value(params.clone()).map_err(bad)?;
                let active = match kind {
                    "dns" => self.dns.as_mut().map(|p| p.initialize(&init)),
                    "notify" => self.notify.as_mut().map(|p| p.initialize(&init)),
                    "storage" => self.storage.as_mut().map(|p| p.initialize(&init)),
                    "auth" => self.auth.as_mut().map(|p| p.initialize(&init)),
                    "ssl" => self.ssl.as_mut().map(|p| p.initialize(&init)),
                    "compute" => self.compute.as_mut().map(|p| p.initialize(&init)),
                    _ => None,
                };
                match active {
                    Some(done) => {
                        done?;
                        self.active = ["dns", "notify", "storage", "auth", "ssl", "compute"]
                            .into_iter()
                            .find(|k| *k == kind);
                    }
                    None => {
                        return Err(Error::config(format!(
                            "this extension does not provide `{kind}`"
                        )));
                    }
                }
                Ok(json!({}))
            }
            "health" => {
                let h = match self.active {
                    Some("notify") => self.notify_provider()?.health()?,
                    Some("storage") => self.storage_provider()?.health()?,
                    Some("auth") => self.auth_provider()?.health()?,
                    Some("ssl") => self.ssl_provider()?.health()?,
                    Some("compute") => self.compute_provider()?.health()?,
                    _ => self.dns_provider()?.health()?,
                };
                Ok(serde_json::to_value(h).expect("serializes"))
            }
            "notify.send" => {
                let n: Notification = serde_json::from_value(params).map_err(bad)?;
                self.notify_provider()?.send(&n)?;
                Ok(json!({}))
            }
            "dns.list" => {
                #[derive(Deserialize)]
                struct P {
                    #[serde(default)]
                    names: Vec<String>,
                }
                let p: P = serde_json::from_value(params).map_err(bad)?;
                let records = self.dns_provider()?.list(&p.names)?;
                Ok(json!({ "records": records }))
            }
            "dns.apply" => {
                #[derive(Deserialize)]
                struct P {
                    changes: Vec<Change>,
                }
                let p: P = serde_json::from_value(params).map_err(bad)?;
                self.dns_provider()?.apply(&p.changes)?;
                Ok(json!({}))
            }
            "storage.put" | "storage.get" | "storage.delete" => {
                #[derive(Deserialize)]
                struct P {
                    name: String,
                    #[serde(default)]
                    path: String,
                }
                let p: P = serde_json::from_value(params).map_err(bad)?;
                let st = self.storage_provider()?;
                match method {
                    "storage.put" => st.put(&p.name, &p.path)?,
                    "storage.get" => st.get(&p.name, &p.path)?,
                    _ => st.delete(&p.name)?,
                }
                Ok(json!({}))
            }
            "storage.list" => {
                let objects = self.storage_provider()?.list()?;
                Ok(json!({ "objects": objects }))
            }
            "auth.login" => {
                #[derive(Deserialize)]
                struct P {
                    #[serde(default)]
                    username: String,
                    #[serde(default)]
                    password: String,
                }
                // Not `bad`: serde's message may quote the value, and this one is a password.
                let p: P = serde_json::from_value(params).map_err(|_| {
                    Error::new(-32602, "invalid params: username and password are strings")
                })?;
                let user = self.auth_provider()?.login(&p.username, &p.password)?;
                Ok(json!({ "user": user }))
            }
            "ssl.issue" => {
                #[derive(Deserialize)]
                struct P {
                    names: Vec<String>,
                }
                let p: P = serde_json::from_value(params).map_err(bad)?;
                let issued = self.ssl_provider()?.issue(&p.names)?;
                Ok(serde_json::to_value(issued).expect("serializes"))
            }
            "compute.exec" => {
                #[derive(Deserialize)]
                struct P {
                    host: String,
                    argv: Vec<String>,
                    #[serde(default)]
                    stdin: String,
                }
                // Not `bad`: serde's message may quote the input, which may hold a secret.
                let p: P = serde_json::from_value(params).map_err(|_| {
                    Error::new(
                        -32602,
                        "invalid params: host and stdin are strings, argv a list of strings",
                    )
                })?;
                let stdin = base64_decode(&p.stdin)
                    .ok_or_else(|| Error::new(-32602, "invalid params: stdin is not base64"))?;
                let ran = self.compute_provider()?.exec(&p.host, &p.argv, &stdin)?;
                Ok(serde_json::to_value(ran).expect("serializes"))
            }
            "shutdown" => Ok(json!({})),
            other => Err(Error::new(
                code::METHOD_NOT_FOUND,
                format!("unknown method {other}"),
            )),
        }
    }

    /// Answers requests from `input` on `output` until `shutdown` or the end of input.
    pub fn serve(mut self, input: impl BufRead, mut output: impl Write) -> std::io::Result<()> {
        for line in input.lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let (id, answer, stop) = match serde_json::from_str::<Request>(&line) {
                Ok(r) => {
                    let stop = r.method == "shutdown";
                    (r.id, self.dispatch(&r.method, r.params), stop)
                }
                Err(e) => (
                    Value::Null,
                    Err(Error::new(code::PARSE, format!("parse error: {e}"))),
                    false,
                ),
            };
            let msg = match answer {
                Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
                Err(e) => {
                    json!({"jsonrpc": "2.0", "id": id, "error": {"code": e.code, "message": e.message}})
                }
            };
            let mut text = serde_json::to_string(&msg).expect("serializes");
            text.push('\n');
            output.write_all(text.as_bytes())?;
            output.flush()?;
            if stop {
                break;
            }
        }
        if let Some(p) = self.dns.as_mut() {
            p.shutdown();
        }
        if let Some(p) = self.notify.as_mut() {
            p.shutdown();
        }
        if let Some(p) = self.storage.as_mut() {
            p.shutdown();
        }
        if let Some(p) = self.auth.as_mut() {
            p.shutdown();
        }
        if let Some(p) = self.ssl.as_mut() {
            p.shutdown();
        }
        if let Some(p) = self.compute.as_mut() {
            p.shutdown();
        }
        Ok(())
    }

    /// [`Extension::serve`] on stdin and stdout.
    pub fn run(self) -> std::io::Result<()> {
        self.serve(std::io::stdin().lock(), std::io::stdout().lock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Log(std::rc::Rc<std::cell::RefCell<Vec<String>>>);
    impl NotifyProvider for Log {
        fn settings(&self) -> Vec<Setting> {
            vec![Setting::new("LOG_WEBHOOK_TOKEN").secret().required()]
        }
        fn initialize(&mut self, _: &Init) -> Result<(), Error> {
            Ok(())
        }
        fn send(&mut self, n: &Notification) -> Result<(), Error> {
            self.0
                .borrow_mut()
                .push(format!("{} {}", n.kind, n.summary));
            Ok(())
        }
    }

    /// The extension's answers to `requests`, one JSON-RPC line each, as autogit would read
    /// them from its output.
    fn session(ext: Extension, requests: &[Value]) -> Vec<Value> {
        let input: String = requests.iter().map(|l| format!("{l}\n")).collect();
        let mut out = Vec::new();
        ext.serve(input.as_bytes(), &mut out).unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn a_notify_session() {
        let sent = std::rc::Rc::default();
        let ext = Extension::new("log", "1.0.0").notify(Log(std::rc::Rc::clone(&sent)));
        let input = [
            json!({"jsonrpc": "2.0", "id": 1, "method": "handshake", "params": {"protocol_versions": [1]}}),
            json!({"jsonrpc": "2.0", "id": 2, "method": "initialize", "params": {"provider": "dns"}}),
            json!({"jsonrpc": "2.0", "id": 3, "method": "initialize", "params": {"provider": "notify", "secrets": {"LOG_WEBHOOK_TOKEN": "t"}}}),
            json!({"jsonrpc": "2.0", "id": 4, "method": "notify.send", "params": {"kind": "mirror_failed", "severity": "error", "subject": "docs", "summary": "it failed", "event": {}}}),
            json!({"jsonrpc": "2.0", "id": 5, "method": "dns.list", "params": {}}),
        ];
        let out = session(ext, &input);
        assert_eq!(out[0]["result"]["providers"][0]["type"], "notify");
        assert_eq!(out[0]["result"]["secrets"], json!(["LOG_WEBHOOK_TOKEN"]));
        assert_eq!(out[1]["error"]["code"], code::CONFIG);
        assert_eq!(out[2]["result"], json!({}));
        assert_eq!(out[3]["result"], json!({}));
        assert_eq!(
            out[4]["error"]["message"],
            "initialized as `notify`, not dns"
        );
        assert_eq!(*sent.borrow(), ["mirror_failed it failed"]);
    }

    #[derive(Default)]
    struct Objects(BTreeMap<String, Vec<u8>>);
    impl StorageProvider for Objects {
        fn settings(&self) -> Vec<Setting> {
            vec![Setting::new("OBJ_TOKEN").secret()]
        }
        fn initialize(&mut self, _: &Init) -> Result<(), Error> {
            Ok(())
        }
        fn put(&mut self, name: &str, path: &str) -> Result<(), Error> {
            let data = std::fs::read(path).map_err(|e| Error::failed(e.to_string()))?;
            self.0.insert(name.to_owned(), data);
            Ok(())
        }
        fn get(&mut self, name: &str, path: &str) -> Result<(), Error> {
            let data = self.0.get(name).ok_or_else(|| Error::not_found(name))?;
            std::fs::write(path, data).map_err(|e| Error::failed(e.to_string()))
        }
        fn list(&mut self) -> Result<Vec<StoredObject>, Error> {
            Ok(self
                .0
                .iter()
                .map(|(k, v)| StoredObject {
                    name: k.clone(),
                    size: v.len() as u64,
                })
                .collect())
        }
        fn delete(&mut self, name: &str) -> Result<(), Error> {
            self.0
                .remove(name)
                .map(drop)
                .ok_or_else(|| Error::not_found(name))
        }
    }

    #[test]
    fn a_storage_session() {
        let dir = std::env::temp_dir().join(format!("autogit-sdk-storage-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("a.tar");
        std::fs::write(&src, b"archive").unwrap();
        let back = dir.join("back.tar");
        let (src_s, back_s) = (src.display().to_string(), back.display().to_string());
        let ext = Extension::new("objects", "1.0.0").storage(Objects::default());
        let input = [
            json!({"jsonrpc": "2.0", "id": 1, "method": "handshake", "params": {"protocol_versions": [1]}}),
            json!({"jsonrpc": "2.0", "id": 2, "method": "initialize", "params": {"provider": "storage"}}),
            json!({"jsonrpc": "2.0", "id": 3, "method": "storage.put", "params": {"name": "a.tar", "path": src_s}}),
            json!({"jsonrpc": "2.0", "id": 4, "method": "storage.list", "params": {}}),
            json!({"jsonrpc": "2.0", "id": 5, "method": "storage.get", "params": {"name": "a.tar", "path": back_s}}),
            json!({"jsonrpc": "2.0", "id": 6, "method": "storage.delete", "params": {"name": "a.tar"}}),
            json!({"jsonrpc": "2.0", "id": 7, "method": "storage.get", "params": {"name": "a.tar", "path": back_s}}),
        ];
        let out = session(ext, &input);
        assert_eq!(out[0]["result"]["providers"][0]["type"], "storage");
        assert_eq!(out[0]["result"]["secrets"], json!(["OBJ_TOKEN"]));
        assert_eq!(out[2]["result"], json!({}));
        assert_eq!(
            out[3]["result"]["objects"],
            json!([{"name": "a.tar", "size": 7}])
        );
        assert_eq!(std::fs::read(&back).unwrap(), b"archive");
        assert_eq!(out[5]["result"], json!({}));
        assert_eq!(out[6]["error"]["code"], code::NOT_FOUND);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Echoes its input back as stdout, for the host `gpu-1` only.
    struct Echo;
    impl ComputeProvider for Echo {
        fn settings(&self) -> Vec<Setting> {
            vec![]
        }
        fn initialize(&mut self, _: &Init) -> Result<(), Error> {
            Ok(())
        }
        fn exec(&mut self, host: &str, argv: &[String], stdin: &[u8]) -> Result<Ran, Error> {
            if host != "gpu-1" {
                return Err(Error::not_found(host));
            }
            Ok(Ran {
                code: Some(argv.len() as i32),
                stdout: String::from_utf8_lossy(stdin).into_owned(),
                stderr: argv.join(" "),
            })
        }
    }

    #[test]
    fn a_compute_session() {
        let ext = Extension::new("echo", "1.0.0").compute(Echo);
        let input = [
            json!({"jsonrpc": "2.0", "id": 1, "method": "handshake", "params": {"protocol_versions": [1]}}),
            json!({"jsonrpc": "2.0", "id": 2, "method": "initialize", "params": {"provider": "compute"}}),
            // "token\n" in base64.
            json!({"jsonrpc": "2.0", "id": 3, "method": "compute.exec", "params": {"host": "gpu-1", "argv": ["docker", "login", "--password-stdin"], "stdin": "dG9rZW4K"}}),
            json!({"jsonrpc": "2.0", "id": 4, "method": "compute.exec", "params": {"host": "gpu-2", "argv": ["true"], "stdin": ""}}),
            json!({"jsonrpc": "2.0", "id": 5, "method": "compute.exec", "params": {"host": "gpu-1", "argv": ["true"], "stdin": "not base64!"}}),
            json!({"jsonrpc": "2.0", "id": 6, "method": "health", "params": {}}),
        ];
        let out = session(ext, &input);
        assert_eq!(out[0]["result"]["providers"][0]["type"], "compute");
        assert_eq!(
            out[2]["result"],
            json!({"code": 3, "stdout": "token\n", "stderr": "docker login --password-stdin"})
        );
        assert_eq!(out[3]["error"]["code"], code::NOT_FOUND);
        assert_eq!(out[4]["error"]["code"], -32602);
        assert_eq!(out[5]["result"]["status"], "ok");
    }

    #[test]
    fn base64_round_trips_every_padding() {
        assert_eq!(base64_decode("").unwrap(), b"");
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
        assert_eq!(base64_decode("YWI=").unwrap(), b"ab");
        assert_eq!(base64_decode("YWJj").unwrap(), b"abc");
        assert_eq!(base64_decode("/+8=").unwrap(), [0xff, 0xef]);
        for bad in ["YQ=", "Y===", "YQ==YQ==", "YQ!=", "a"] {
            assert_eq!(base64_decode(bad), None, "{bad}");
        }
    }

    struct OneUser;
    impl AuthProvider for OneUser {
        fn settings(&self) -> Vec<Setting> {
            vec![Setting::new("ONE_PASSWORD").secret().required()]
        }
        fn initialize(&mut self, _: &Init) -> Result<(), Error> {
            Ok(())
        }
        fn login(&mut self, username: &str, password: &str) -> Result<Option<User>, Error> {
            Ok((username == "alice" && password == "pw").then(|| User {
                name: "alice".into(),
                role: Role::Operator,
            }))
        }
    }

    struct Fixed;
    impl SslProvider for Fixed {
        fn settings(&self) -> Vec<Setting> {
            vec![Setting::new("FIXED_DAYS").integer()]
        }
        fn initialize(&mut self, _: &Init) -> Result<(), Error> {
            Ok(())
        }
        fn issue(&mut self, names: &[String]) -> Result<Issued, Error> {
            Ok(Issued {
                chain: format!("CERT {}", names.join(",")),
                key: "KEY".into(),
            })
        }
    }

    #[test]
    fn auth_and_ssl_sessions() {
        let ext = Extension::new("both", "1.0.0").auth(OneUser).ssl(Fixed);
        let out = session(
            ext,
            &[
                json!({"jsonrpc": "2.0", "id": 1, "method": "handshake", "params": {"protocol_versions": [1]}}),
                json!({"jsonrpc": "2.0", "id": 2, "method": "initialize", "params": {"provider": "auth", "secrets": {"ONE_PASSWORD": "x"}}}),
                json!({"jsonrpc": "2.0", "id": 3, "method": "auth.login", "params": {"username": "alice", "password": "pw"}}),
                json!({"jsonrpc": "2.0", "id": 4, "method": "auth.login", "params": {"username": "alice", "password": "no"}}),
                json!({"jsonrpc": "2.0", "id": 5, "method": "auth.login", "params": {"username": "alice", "password": 12345}}),
                json!({"jsonrpc": "2.0", "id": 6, "method": "ssl.issue", "params": {"names": ["a.test"]}}),
            ],
        );
        let types: Vec<&Value> = out[0]["result"]["providers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| &p["type"])
            .collect();
        assert_eq!(types, [&json!("auth"), &json!("ssl")]);
        assert_eq!(out[0]["result"]["secrets"], json!(["ONE_PASSWORD"]));
        assert_eq!(
            out[2]["result"],
            json!({"user": {"name": "alice", "role": "operator"}})
        );
        assert_eq!(out[3]["result"], json!({"user": null}));
        let bad = out[4]["error"]["message"].as_str().unwrap();
        assert!(!bad.contains("12345"), "{bad}");
        assert_eq!(out[5]["error"]["message"], "initialized as `auth`, not ssl");
        let out = session(
            Extension::new("both", "1.0.0").auth(OneUser).ssl(Fixed),
            &[
                json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"provider": "ssl"}}),
                json!({"jsonrpc": "2.0", "id": 2, "method": "ssl.issue", "params": {"names": ["*.a.test", "a.test"]}}),
            ],
        );
        assert_eq!(
            out[1]["result"],
            json!({"chain": "CERT *.a.test,a.test", "key": "KEY"})
        );
        let issued = Fixed.issue(&["a".into()]).unwrap();
        assert!(!format!("{issued:?}").contains("KEY"));
    }

    struct Mem(Vec<Record>);
    impl DnsProvider for Mem {
        fn settings(&self) -> Vec<Setting> {
            vec![
                Setting::new("MEM_URL").required(),
                Setting::new("MEM_TOKEN").secret(),
            ]
        }
        fn initialize(&mut self, init: &Init) -> Result<(), Error> {
            if init.secrets.get("MEM_TOKEN").map(String::as_str) != Some("t") {
                return Err(Error::auth("bad token"));
            }
            Ok(())
        }
        fn list(&mut self, _: &[String]) -> Result<Vec<Record>, Error> {
            Ok(self.0.clone())
        }
        fn apply(&mut self, changes: &[Change]) -> Result<(), Error> {
            for c in changes {
                match c {
                    Change::Create { record } => self.0.push(record.clone()),
                    Change::Delete { record } => self.0.retain(|r| r != record),
                    Change::Update { from, to } => {
                        self.0.retain(|r| r != from);
                        self.0.push(to.clone());
                    }
                }
            }
            Ok(())
        }
    }

    fn mem_session(lines: &[Value]) -> Vec<Value> {
        session(
            Extension::new("mem", "1.0.0")
                .env(&["PATH"])
                .dns(Mem(vec![])),
            lines,
        )
    }

    #[test]
    fn a_session() {
        let rec = json!({"name": "a.example.test", "type": "A", "value": "192.0.2.1", "ttl": 60});
        let out = mem_session(&[
            json!({"jsonrpc": "2.0", "id": 1, "method": "handshake", "params": {"protocol_versions": [1]}}),
            json!({"jsonrpc": "2.0", "id": 2, "method": "dns.list", "params": {}}),
            json!({"jsonrpc": "2.0", "id": 3, "method": "initialize", "params": {"provider": "dns", "config": {"MEM_URL": "x"}, "secrets": {"MEM_TOKEN": "t"}, "context": {"zone": "example.test"}}}),
            json!({"jsonrpc": "2.0", "id": 4, "method": "dns.apply", "params": {"changes": [{"op": "create", "record": rec}]}}),
            json!({"jsonrpc": "2.0", "id": 5, "method": "dns.list", "params": {"names": []}}),
            json!({"jsonrpc": "2.0", "id": 6, "method": "nope"}),
            json!({"jsonrpc": "2.0", "id": 7, "method": "shutdown"}),
            json!({"jsonrpc": "2.0", "id": 8, "method": "health"}),
        ]);
        assert_eq!(out.len(), 7, "stops after shutdown: {out:?}");
        let m = &out[0]["result"];
        assert_eq!(m["secrets"], json!(["MEM_TOKEN"]));
        assert_eq!(m["providers"][0]["config"][0]["key"], "MEM_URL");
        assert_eq!(m["env"], json!(["PATH"]));
        assert_eq!(out[1]["error"]["message"], "initialize first");
        assert_eq!(out[2]["result"], json!({}));
        assert_eq!(out[4]["result"]["records"], json!([rec]));
        assert_eq!(out[5]["error"]["code"], code::METHOD_NOT_FOUND);
        for (i, o) in out.iter().enumerate() {
            assert_eq!(o["id"], json!(i + 1));
        }
    }
}
