//! The extension protocol's messages and rules, without I/O (`docs/extensions.md` is the
//! contract; `autogit_drivers::extension` runs the processes).
//!
//! An extension is an executable speaking JSON-RPC 2.0 on its standard input and output, one
//! message per line. The host (autogit) asks, the extension answers: `handshake` (its
//! [`Manifest`]), `initialize` (the configuration and secrets it declared), the calls of a
//! provider type (`dns.list`, `dns.apply`), `health`, `shutdown`.
//!
//! What is decided here: whether a manifest is acceptable ([`Manifest::check`]: names, the
//! protocol version, and above all that an extension gets no secret it did not declare), the
//! order extensions start in ([`start_order`]), a setting's typed value ([`ConfigField::value`])
//! and whether an answer is the answer to the request sent ([`parse_answer`]).

use crate::dns::{Change, Record, RecordType};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The protocol version this autogit speaks. An extension's handshake must name it.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest message autogit reads from an extension (one line), in bytes. A longer line is an
/// error for that extension; the rest is never read.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Default time an extension has to answer one call (`EXTENSIONS_TIMEOUT` changes it).
pub const DEFAULT_CALL_TIMEOUT_SECS: u32 = 30;

/// JSON-RPC error codes autogit gives a meaning to (besides JSON-RPC's own -32700..-32600).
pub mod code {
    /// The configuration is wrong (a setting the backend refuses).
    pub const CONFIG: i64 = -32001;
    /// The backend refused the credentials.
    pub const AUTH: i64 = -32002;
    /// The zone changed between `dns.list` and `dns.apply`; nothing was applied.
    pub const ZONE_CHANGED: i64 = -32003;
    /// The backend could not be reached or did not answer: the outcome is unknown.
    pub const UNAVAILABLE: i64 = -32004;
    /// `storage.get`/`storage.delete`: no object of that name.
    pub const NOT_FOUND: i64 = -32005;
    /// JSON-RPC: the method does not exist.
    pub const METHOD_NOT_FOUND: i64 = -32601;
}

/// The provider types of the extension framework (the platform spec's list).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderType {
    Dns,
    Ssl,
    Storage,
    Notify,
    Auth,
    Compute,
}

impl ProviderType {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderType::Dns => "dns",
            ProviderType::Ssl => "ssl",
            ProviderType::Storage => "storage",
            ProviderType::Notify => "notify",
            ProviderType::Auth => "auth",
            ProviderType::Compute => "compute",
        }
    }
}

impl fmt::Display for ProviderType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The type of a setting's value. Settings come from `.env` or the environment as text and
/// reach the extension as JSON of this type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    #[default]
    String,
    Integer,
    Boolean,
}

/// One setting a provider expects: a `.env` key (upper case, as every platform setting is).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigField {
    pub key: String,
    #[serde(rename = "type", default)]
    pub kind: FieldType,
    #[serde(default)]
    pub required: bool,
    /// Sent in `initialize`'s `secrets`, never in `config`; must be listed in the manifest's
    /// `secrets`. May be given as `<KEY>_FILE` (a file holding it).
    #[serde(default)]
    pub secret: bool,
    #[serde(default)]
    pub description: String,
}

impl ConfigField {
    /// The typed value of the setting's text, or what is wrong with it.
    pub fn value(&self, raw: &str) -> Result<Value, String> {
        let raw = raw.trim();
        match self.kind {
            FieldType::String => Ok(Value::String(raw.to_owned())),
            FieldType::Integer => raw
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| format!("{} must be an integer, not `{raw}`", self.key)),
            FieldType::Boolean => match raw.to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" | "on" => Ok(Value::Bool(true)),
                "false" | "no" | "0" | "off" => Ok(Value::Bool(false)),
                _ => Err(format!("{} must be true or false, not `{raw}`", self.key)),
            },
        }
    }
}

/// What an extension provides under one provider type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderDecl {
    #[serde(rename = "type")]
    pub kind: ProviderType,
    /// The settings it reads, in the order it documents them.
    #[serde(default)]
    pub config: Vec<ConfigField>,
    /// dns: whether `dns.apply` is all or nothing (an error answer then means nothing was
    /// applied). Default true.
    #[serde(default = "yes")]
    pub atomic: bool,
}

fn yes() -> bool {
    true
}

/// The answer to `handshake`: who the extension is and what it needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub protocol_version: u32,
    #[serde(default)]
    pub description: String,
    pub providers: Vec<ProviderDecl>,
    /// `.env`/environment keys whose values it receives as secrets (in `initialize`).
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Environment variables of autogit's process it runs with (`PATH`, `LANG`...); its
    /// environment holds nothing else.
    #[serde(default)]
    pub env: Vec<String>,
    /// Extensions that must start before it.
    #[serde(default)]
    pub dependencies: Vec<String>,
}

impl Manifest {
    /// The provider declaration of a type, if it provides that type.
    pub fn provider(&self, kind: ProviderType) -> Option<&ProviderDecl> {
        self.providers.iter().find(|p| p.kind == kind)
    }

    /// Every reason this manifest is refused, for the extension found as `file_name`. The
    /// security rules: a secret setting must be a declared secret, and neither a plain
    /// setting nor an inherited environment variable may carry a name that holds secrets
    /// (it would reach the extension without being declared as one).
    pub fn check(&self, file_name: &str) -> Vec<String> {
        let mut out = Vec::new();
        if self.name != file_name {
            out.push(format!(
                "its handshake says its name is `{}`, but it was found as `{file_name}`: the file name must be the extension's name",
                self.name
            ));
        }
        if let Err(e) = check_name(&self.name) {
            out.push(e);
        }
        if self.version.trim().is_empty() {
            out.push("its version is empty".to_owned());
        }
        if self.protocol_version != PROTOCOL_VERSION {
            out.push(format!(
                "it speaks protocol version {}, this autogit speaks {PROTOCOL_VERSION}",
                self.protocol_version
            ));
        }
        if self.providers.is_empty() {
            out.push("it declares no provider type".to_owned());
        }
        let mut types = BTreeSet::new();
        for p in &self.providers {
            if !types.insert(p.kind) {
                out.push(format!("it declares provider type `{}` twice", p.kind));
            }
            let mut keys = BTreeSet::new();
            for f in &p.config {
                if let Err(e) = check_key(&f.key) {
                    out.push(format!("{} setting: {e}", p.kind));
                    continue;
                }
                if !keys.insert(f.key.as_str()) {
                    out.push(format!("{} setting `{}` is declared twice", p.kind, f.key));
                }
                if f.secret && !self.secrets.contains(&f.key) {
                    out.push(format!(
                        "its {} setting `{}` is a secret it did not declare: list it in `secrets`",
                        p.kind, f.key
                    ));
                }
                if !f.secret && looks_secret(&f.key) {
                    out.push(format!(
                        "its {} setting `{}` holds a secret but is not declared as one: mark it `secret` and list it in `secrets`",
                        p.kind, f.key
                    ));
                }
            }
        }
        for s in &self.secrets {
            if let Err(e) = check_key(s) {
                out.push(format!("secret: {e}"));
            }
        }
        for e in &self.env {
            if let Err(err) = check_key(e) {
                out.push(format!("env: {err}"));
            } else if looks_secret(e) {
                out.push(format!(
                    "it asks to inherit `{e}`, which holds a secret: declare it in `secrets` instead"
                ));
            }
        }
        for d in &self.dependencies {
            if let Err(e) = check_name(d) {
                out.push(format!("dependency: {e}"));
            } else if *d == self.name {
                out.push("it depends on itself".to_owned());
            }
        }
        out
    }
}

/// Whether a `.env` key's name says it holds a secret (the names autogit's own settings and
/// common tools use for credentials).
pub fn looks_secret(key: &str) -> bool {
    const MARKS: [&str; 8] = [
        "SECRET",
        "TOKEN",
        "PASSWORD",
        "PASSWD",
        "PASSPHRASE",
        "PRIVATE",
        "CREDENTIAL",
        "API_KEY",
    ];
    let k = key.to_ascii_uppercase();
    MARKS.iter().any(|m| k.contains(m)) || k.ends_with("_KEY") || k == "AUTOGIT_KEY_FILE"
}

/// An extension's name: lower-case letters, digits and `-`, starting with a letter, at most
/// 64 characters (it is a file name and a `DNS_PROVIDER` value).
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not an extension name (lower-case letters, digits and `-`, starting with a letter, at most 64)"
        ))
    }
}

/// A setting or environment variable name: `[A-Z][A-Z0-9_]*`.
pub fn check_key(key: &str) -> Result<(), String> {
    let ok = key.starts_with(|c: char| c.is_ascii_uppercase())
        && key
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{key}` is not a variable name (upper-case letters, digits and `_`)"
        ))
    }
}

/// Why extensions cannot be started in an order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error(
        "extension `{extension}` depends on `{missing}`, which is not enabled or not installed: add it to EXTENSIONS_ENABLED and its executable to the extensions directory"
    )]
    Missing { extension: String, missing: String },
    #[error("extensions depend on each other in a cycle: {}", cycle.join(" -> "))]
    Cycle { cycle: Vec<String> },
}

/// The order to start extensions in: each after its dependencies, otherwise by name (Kahn's
/// algorithm, deterministic). `deps` maps each extension to what it depends on.
pub fn start_order(deps: &BTreeMap<String, Vec<String>>) -> Result<Vec<String>, OrderError> {
    for (name, ds) in deps {
        if let Some(m) = ds.iter().find(|d| !deps.contains_key(*d)) {
            return Err(OrderError::Missing {
                extension: name.clone(),
                missing: m.clone(),
            });
        }
    }
    let mut waiting: BTreeMap<&str, BTreeSet<&str>> = deps
        .iter()
        .map(|(n, ds)| (n.as_str(), ds.iter().map(String::as_str).collect()))
        .collect();
    let mut order = Vec::new();
    while !waiting.is_empty() {
        let Some(next) = waiting
            .iter()
            .find(|(_, ds)| ds.is_empty())
            .map(|(n, _)| *n)
        else {
            return Err(OrderError::Cycle {
                cycle: find_cycle(&waiting),
            });
        };
        waiting.remove(next);
        for ds in waiting.values_mut() {
            ds.remove(next);
        }
        order.push(next.to_owned());
    }
    Ok(order)
}

/// A cycle among extensions that all still wait: follow the first dependency until a name
/// repeats.
fn find_cycle(waiting: &BTreeMap<&str, BTreeSet<&str>>) -> Vec<String> {
    let mut path: Vec<&str> = Vec::new();
    let mut at = *waiting
        .keys()
        .next()
        .expect("called with extensions waiting");
    loop {
        if let Some(i) = path.iter().position(|p| *p == at) {
            let mut cycle: Vec<String> = path[i..].iter().map(|s| (*s).to_owned()).collect();
            cycle.push(at.to_owned());
            return cycle;
        }
        path.push(at);
        at = waiting[at]
            .iter()
            .next()
            .expect("a waiting extension waits on one");
    }
}

/// One request of the host. Ids count up from 1 within a process.
pub fn request(id: u64, method: &str, params: Value) -> Vec<u8> {
    let mut line = serde_json::to_vec(&serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": method,
        "params": params,
    }))
    .expect("a JSON value serializes");
    line.push(b'\n');
    line
}

/// An error answer of an extension.
#[derive(Clone, Debug, PartialEq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

/// Why a line is not an acceptable answer to the request sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("its answer is not JSON ({0})")]
    NotJson(String),
    #[error("its answer is not a JSON-RPC 2.0 response ({0})")]
    NotResponse(&'static str),
    #[error("it answered id {got} to request {expected}")]
    WrongId { expected: u64, got: String },
}

/// The result or error of the answer to request `expected_id`.
pub fn parse_answer(line: &[u8], expected_id: u64) -> Result<Result<Value, RpcError>, AnswerError> {
    let v: Value = serde_json::from_slice(line).map_err(|e| AnswerError::NotJson(e.to_string()))?;
    let Value::Object(mut o) = v else {
        return Err(AnswerError::NotResponse("not an object"));
    };
    if o.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(AnswerError::NotResponse("`jsonrpc` is not \"2.0\""));
    }
    if o.contains_key("method") {
        return Err(AnswerError::NotResponse(
            "it sent a request or notification; extensions only answer",
        ));
    }
    match o.get("id") {
        Some(Value::Number(n)) if n.as_u64() == Some(expected_id) => {}
        Some(other) => {
            return Err(AnswerError::WrongId {
                expected: expected_id,
                got: other.to_string(),
            });
        }
        None => return Err(AnswerError::NotResponse("no `id`")),
    }
    match (o.remove("result"), o.remove("error")) {
        (Some(r), None) => Ok(Ok(r)),
        (None, Some(Value::Object(mut e))) => {
            let code = e
                .get("code")
                .and_then(Value::as_i64)
                .ok_or(AnswerError::NotResponse("the error has no integer `code`"))?;
            let message = match e.remove("message") {
                Some(Value::String(m)) => m,
                _ => return Err(AnswerError::NotResponse("the error has no `message`")),
            };
            Ok(Err(RpcError {
                code,
                message,
                data: e.remove("data"),
            }))
        }
        (Some(_), Some(_)) => Err(AnswerError::NotResponse("both `result` and `error`")),
        (None, Some(_)) => Err(AnswerError::NotResponse("`error` is not an object")),
        (None, None) => Err(AnswerError::NotResponse("neither `result` nor `error`")),
    }
}

/// A record as the `dns` calls carry it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireRecord {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
    pub ttl: u32,
}

impl From<&Record> for WireRecord {
    fn from(r: &Record) -> Self {
        Self {
            name: r.name.clone(),
            kind: r.kind.as_str().to_owned(),
            value: r.value.clone(),
            ttl: r.ttl,
        }
    }
}

impl From<&WireRecord> for Record {
    fn from(r: &WireRecord) -> Self {
        Record::new(
            &r.name,
            RecordType::from_name(&r.kind.to_ascii_uppercase()),
            r.value.clone(),
            r.ttl,
        )
    }
}

/// The parameters of `dns.apply`: each change as `{"op": "create"|"delete", "record": …}` or
/// `{"op": "update", "from": …, "to": …}`.
pub fn dns_apply_params(changes: &[Change]) -> Value {
    let changes: Vec<Value> = changes
        .iter()
        .map(|c| match c {
            Change::Create { record } => {
                serde_json::json!({"op": "create", "record": WireRecord::from(record)})
            }
            Change::Delete { record } => {
                serde_json::json!({"op": "delete", "record": WireRecord::from(record)})
            }
            Change::Update { from, to } => serde_json::json!({
                "op": "update", "from": WireRecord::from(from), "to": WireRecord::from(to)
            }),
        })
        .collect();
    serde_json::json!({ "changes": changes })
}

/// The records of a `dns.list` result (`{"records": [...]}`).
pub fn dns_list_result(result: Value) -> Result<Vec<Record>, String> {
    #[derive(Deserialize)]
    struct Listed {
        records: Vec<WireRecord>,
    }
    let listed: Listed = serde_json::from_value(result)
        .map_err(|e| format!("its dns.list result is not {{\"records\": [...]}}: {e}"))?;
    Ok(listed.records.iter().map(Record::from).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        serde_json::from_value(serde_json::json!({
            "name": "nsupdate", "version": "1.0.0", "protocol_version": 1,
            "providers": [{"type": "dns", "config": [
                {"key": "NSUPDATE_SERVER", "required": true},
                {"key": "NSUPDATE_KEY_SECRET", "secret": true, "required": true}
            ]}],
            "secrets": ["NSUPDATE_KEY_SECRET"], "env": ["PATH"]
        }))
        .unwrap()
    }

    #[test]
    fn a_good_manifest_passes() {
        assert_eq!(manifest().check("nsupdate"), Vec::<String>::new());
        assert!(manifest().provider(ProviderType::Dns).unwrap().atomic);
    }

    #[test]
    fn undeclared_secrets_and_bad_names_are_refused() {
        type Edit = fn(&mut Manifest);
        let cases: [(&str, Edit); 8] = [
            ("found as `other`", |_| {}),
            ("a secret it did not declare", |m| m.secrets.clear()),
            ("holds a secret but is not declared", |m| {
                m.providers[0].config.push(ConfigField {
                    key: "RFC2136_TSIG_SECRET".into(),
                    kind: FieldType::String,
                    required: false,
                    secret: false,
                    description: String::new(),
                })
            }),
            ("inherit `AWS_SECRET_ACCESS_KEY`", |m| {
                m.env.push("AWS_SECRET_ACCESS_KEY".into())
            }),
            ("protocol version 2", |m| m.protocol_version = 2),
            ("depends on itself", |m| {
                m.dependencies.push("nsupdate".into())
            }),
            ("declares provider type `dns` twice", |m| {
                let p = m.providers[0].clone();
                m.providers.push(p)
            }),
            ("not a variable name", |m| m.env.push("path".into())),
        ];
        for (i, (want, edit)) in cases.into_iter().enumerate() {
            let mut m = manifest();
            edit(&mut m);
            let found = if i == 0 { "other" } else { "nsupdate" };
            let problems = m.check(found);
            assert!(
                problems.iter().any(|p| p.contains(want)),
                "{want}: {problems:?}"
            );
        }
    }

    #[test]
    fn unknown_manifest_fields_are_refused() {
        let v = serde_json::json!({"name": "x", "version": "1", "protocol_version": 1,
            "providers": [], "secret": ["A"]});
        assert!(serde_json::from_value::<Manifest>(v).is_err());
    }

    #[test]
    fn names() {
        for ok in ["a", "custom-dns", "cloudflare", "x9"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "A",
            "-a",
            "a-",
            "a_b",
            "9a",
            "a/b",
            "..",
            &"a".repeat(65),
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(looks_secret("CLOUDFLARE_API_TOKEN") && looks_secret("RFC2136_TSIG_SECRET"));
        assert!(looks_secret("SSH_PRIVATE_KEY") && !looks_secret("PATH"));
    }

    #[test]
    fn start_order_follows_dependencies_and_names_cycles_and_gaps() {
        let deps = |pairs: &[(&str, &[&str])]| -> BTreeMap<String, Vec<String>> {
            pairs
                .iter()
                .map(|(n, d)| ((*n).to_owned(), d.iter().map(|s| (*s).to_owned()).collect()))
                .collect()
        };
        assert_eq!(
            start_order(&deps(&[("a", &["c"]), ("b", &[]), ("c", &["b"])])).unwrap(),
            ["b", "c", "a"]
        );
        assert_eq!(
            start_order(&deps(&[("a", &["zz"])])).unwrap_err(),
            OrderError::Missing {
                extension: "a".into(),
                missing: "zz".into()
            }
        );
        let e = start_order(&deps(&[
            ("a", &["b"]),
            ("b", &["c"]),
            ("c", &["a"]),
            ("d", &[]),
        ]))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "extensions depend on each other in a cycle: a -> b -> c -> a"
        );
    }

    #[test]
    fn answers_must_match_the_request() {
        assert_eq!(
            parse_answer(br#"{"jsonrpc":"2.0","id":3,"result":{"ok":true}}"#, 3).unwrap(),
            Ok(serde_json::json!({"ok": true}))
        );
        let e = parse_answer(
            br#"{"jsonrpc":"2.0","id":3,"error":{"code":-32003,"message":"zone changed"}}"#,
            3,
        )
        .unwrap()
        .unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (code::ZONE_CHANGED, "zone changed")
        );
        let bad: [(&[u8], &str); 7] = [
            (
                br#"{"jsonrpc":"2.0","id":4,"result":1}"#,
                "answered id 4 to request 3",
            ),
            (
                br#"{"jsonrpc":"2.0","id":"3","result":1}"#,
                "answered id \"3\"",
            ),
            (br#"{"id":3,"result":1}"#, "jsonrpc"),
            (br#"{"jsonrpc":"2.0","id":3}"#, "neither"),
            (br#"{"jsonrpc":"2.0","id":3,"result":1,"error":{}}"#, "both"),
            (br#"{"jsonrpc":"2.0","method":"x","id":3}"#, "only answer"),
            (b"not json", "not JSON"),
        ];
        for (line, want) in bad {
            let e = parse_answer(line, 3).unwrap_err().to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
    }

    #[test]
    fn settings_are_typed() {
        let f = |kind| ConfigField {
            key: "K".into(),
            kind,
            required: false,
            secret: false,
            description: String::new(),
        };
        assert_eq!(
            f(FieldType::Integer).value(" 53 ").unwrap(),
            Value::from(53)
        );
        assert!(
            f(FieldType::Integer)
                .value("x")
                .unwrap_err()
                .contains("K must be an integer")
        );
        assert_eq!(
            f(FieldType::Boolean).value("yes").unwrap(),
            Value::Bool(true)
        );
        assert_eq!(
            f(FieldType::String).value("a b").unwrap(),
            Value::from("a b")
        );
    }

    #[test]
    fn dns_changes_and_records_on_the_wire() {
        let r = Record::new("GitLab.Example.Test.", RecordType::A, "203.0.113.7", 300);
        let p = dns_apply_params(&[
            Change::Create { record: r.clone() },
            Change::Update {
                from: r.clone(),
                to: r.clone(),
            },
        ]);
        assert_eq!(p["changes"][0]["op"], "create");
        assert_eq!(p["changes"][0]["record"]["name"], "gitlab.example.test");
        assert_eq!(p["changes"][1]["to"]["type"], "A");
        let listed = dns_list_result(serde_json::json!({"records": [
            {"name": "gitlab.example.test.", "type": "a", "value": "203.0.113.7", "ttl": 300}
        ]}))
        .unwrap();
        assert_eq!(listed, [r]);
        assert!(dns_list_result(serde_json::json!({"records": 1})).is_err());
    }
}
