//! One running extension: a child process in its own process group, spoken to with one JSON
//! line per request and answer.

use super::{ExtensionError, Found};
use autogit_core::extension::{self as proto, Manifest, ProviderType};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// How long an extension may take, and how much it may say.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Per call, from writing the request to reading the whole answer.
    pub call_timeout: Duration,
    /// Largest answer (one line), bytes.
    pub max_message: usize,
    /// After `shutdown`, how long it may take to exit before it is killed.
    pub exit_grace: Duration,
}

impl Limits {
    pub fn new(call_timeout: Duration) -> Self {
        Self {
            call_timeout,
            max_message: proto::MAX_MESSAGE_BYTES,
            exit_grace: Duration::from_secs(2),
        }
    }
}

/// Longest stderr line kept whole in the log; the rest of it is cut.
const STDERR_LINE: usize = 4096;

/// A running extension.
pub struct Process {
    name: String,
    child: Child,
    /// Its process group (its pid), kept: `Child::id` is gone once it has been reaped.
    group: Option<rustix::process::Pid>,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    next_id: u64,
    limits: Limits,
    dead: bool,
    /// Its last stderr line (scrubbed), for the error when it dies.
    last_stderr: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.name)
            .field("pid", &self.child.id())
            .field("dead", &self.dead)
            .finish_non_exhaustive()
    }
}

enum Line {
    Full(Vec<u8>),
    Eof,
    TooLong,
}

/// The next non-blank line, without reading more than `max` bytes of it.
async fn read_line<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
    max: usize,
) -> std::io::Result<Line> {
    let mut line = Vec::new();
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Ok(Line::Eof);
        }
        let (chunk, end) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        if line.len() + chunk.len() > max {
            return Ok(Line::TooLong);
        }
        line.extend_from_slice(chunk);
        let used = end.unwrap_or(buf.len());
        r.consume(used);
        if end.is_some() {
            if line.iter().all(u8::is_ascii_whitespace) {
                line.clear();
                continue;
            }
            return Ok(Line::Full(line));
        }
    }
}

/// Spawns `cmd`, trying again for up to about a second while the kernel answers ETXTBSY.
///
/// An executable that was just written (an extension installed a moment ago) can still be
/// open for writing in a child that another thread forked before the writer closed it: the
/// descriptor lives in that child until its own `exec`, and an `exec` of the file meanwhile
/// fails with "Text file busy" (rust-lang/rust#114554; Go's os/exec meets the same race).
/// The window is a fork-to-exec, so a few short retries are enough.
fn spawn_past_busy_text(cmd: &mut Command) -> std::io::Result<Child> {
    const ETXTBSY: i32 = 26;
    let mut wait = Duration::from_millis(2);
    for _ in 0..9 {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(ETXTBSY) => {
                std::thread::sleep(wait);
                wait *= 2;
            }
            other => return other,
        }
    }
    cmd.spawn()
}

impl Process {
    /// Starts `found` with exactly `env` as its environment, in a process group of its own,
    /// in its directory. Its stderr goes to the log, line by line, with `scrub` values hidden.
    pub fn spawn(
        found: &Found,
        env: &[(String, String)],
        limits: Limits,
        scrub: Vec<String>,
    ) -> Result<Self, ExtensionError> {
        let mut cmd = Command::new(&found.path);
        cmd.env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(dir) = found.path.parent() {
            cmd.current_dir(dir);
        }
        let mut child = spawn_past_busy_text(&mut cmd).map_err(|source| ExtensionError::Spawn {
            name: found.name.clone(),
            path: found.path.clone(),
            source,
        })?;
        let group = child
            .id()
            .and_then(|p| rustix::process::Pid::from_raw(p as i32));
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let stderr = child.stderr.take().expect("stderr is piped");
        let last_stderr = Arc::new(Mutex::new(None));
        tokio::spawn(log_stderr(
            found.name.clone(),
            stderr,
            scrub,
            last_stderr.clone(),
        ));
        Ok(Self {
            name: found.name.clone(),
            child,
            group,
            stdin,
            stdout,
            next_id: 0,
            limits,
            dead: false,
            last_stderr,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether it was stopped after a failed call (later calls fail with
    /// [`ExtensionError::Dead`]).
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// One request and its answer. Any failure but an error answer kills the extension (its
    /// stream cannot be trusted any more) and later calls fail with [`ExtensionError::Dead`].
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value, ExtensionError> {
        if self.dead {
            return Err(ExtensionError::Dead {
                name: self.name.clone(),
            });
        }
        self.next_id += 1;
        let id = self.next_id;
        let request = proto::request(id, method, params);
        let limits = self.limits;
        let (stdin, stdout, child) = (&mut self.stdin, &mut self.stdout, &mut self.child);
        let too_long = || {
            Err(Some(ExtensionError::Oversized {
                name: self.name.clone(),
                method: method.to_owned(),
                limit: limits.max_message,
            }))
        };
        let exchange = async {
            let stdin = stdin.as_mut().expect("stdin is open while alive");
            if stdin.write_all(&request).await.is_err() || stdin.flush().await.is_err() {
                return Err(None);
            }
            // Its exit ends the wait even when something it started still holds its stdout
            // open (so no end of output comes); an answer already written is still taken.
            let read = tokio::select! {
                biased;
                r = read_line(stdout, limits.max_message) => r,
                _ = child.wait() => {
                    match tokio::time::timeout(
                        Duration::from_millis(100),
                        read_line(stdout, limits.max_message),
                    )
                    .await
                    {
                        Ok(r) => r,
                        Err(_) => return Err(None),
                    }
                }
            };
            match read {
                Ok(Line::Full(l)) => Ok(l),
                Ok(Line::Eof) | Err(_) => Err(None),
                Ok(Line::TooLong) => too_long(),
            }
        };
        let outcome = tokio::time::timeout(limits.call_timeout, exchange).await;
        let line = match outcome {
            Ok(Ok(line)) => line,
            Ok(Err(Some(e))) => {
                self.kill();
                return Err(e);
            }
            Ok(Err(None)) => {
                // Closed pipe or end of output: it exited (or is about to).
                let status = self.exit_status().await;
                self.kill();
                // Give the stderr reader a moment to take the last line.
                tokio::time::sleep(Duration::from_millis(20)).await;
                return Err(ExtensionError::Exited {
                    name: self.name.clone(),
                    method: method.to_owned(),
                    status,
                    stderr: self.last_stderr.lock().ok().and_then(|l| l.clone()),
                });
            }
            Err(_) => {
                self.kill();
                return Err(ExtensionError::Timeout {
                    name: self.name.clone(),
                    method: method.to_owned(),
                    after: limits.call_timeout,
                });
            }
        };
        match proto::parse_answer(&line, id) {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(e)) => Err(ExtensionError::Remote {
                name: self.name.clone(),
                method: method.to_owned(),
                code: e.code,
                message: e.message,
                data: e.data,
            }),
            Err(e) => {
                self.kill();
                Err(ExtensionError::Protocol {
                    name: self.name.clone(),
                    method: method.to_owned(),
                    reason: e.to_string(),
                })
            }
        }
    }

    async fn exit_status(&mut self) -> String {
        match tokio::time::timeout(Duration::from_secs(1), self.child.wait()).await {
            Ok(Ok(s)) => s.to_string(),
            Ok(Err(e)) => format!("status unknown: {e}"),
            Err(_) => "it closed its output but is still running".to_owned(),
        }
    }

    /// Asks it to stop (`shutdown`, then end of input) and waits a little; kills it if it
    /// does not exit.
    pub async fn shutdown(mut self) {
        if !self.dead {
            let grace = self.limits.exit_grace;
            self.limits.call_timeout = self.limits.call_timeout.min(grace);
            let _ = self.call("shutdown", json!({})).await;
            self.stdin = None;
            let _ = tokio::time::timeout(grace, self.child.wait()).await;
        }
        self.kill();
    }

    /// Kills its whole process group (what it started too). The group's id is the child's
    /// pid, which the kernel does not hand out again while any member of the group lives; once
    /// none does, the signal finds no one.
    fn kill(&mut self) {
        self.dead = true;
        self.stdin = None;
        if let Some(group) = self.group {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
        let _ = self.child.start_kill();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Its stderr, line by line, to the log (each line cut at [`STDERR_LINE`] bytes, `scrub`
/// values replaced), until it closes.
async fn log_stderr(
    name: String,
    stderr: tokio::process::ChildStderr,
    scrub: Vec<String>,
    last: Arc<Mutex<Option<String>>>,
) {
    let mut r = BufReader::new(stderr);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        // Read a line without holding more than STDERR_LINE bytes of it.
        let mut cut = false;
        loop {
            let chunk = match r.fill_buf().await {
                Ok(c) if !c.is_empty() => c,
                _ => {
                    if !buf.is_empty() {
                        emit(&name, &buf, cut, &scrub, &last);
                    }
                    return;
                }
            };
            let (part, used, done) = match chunk.iter().position(|b| *b == b'\n') {
                Some(i) => (&chunk[..i], i + 1, true),
                None => (chunk, chunk.len(), false),
            };
            let room = STDERR_LINE.saturating_sub(buf.len());
            if part.len() > room {
                cut = true;
            }
            buf.extend_from_slice(&part[..part.len().min(room)]);
            r.consume(used);
            if done {
                break;
            }
        }
        emit(&name, &buf, cut, &scrub, &last);
    }
}

fn emit(name: &str, line: &[u8], cut: bool, scrub: &[String], last: &Mutex<Option<String>>) {
    let mut text = String::from_utf8_lossy(line).trim_end().to_owned();
    for s in scrub.iter().filter(|s| s.len() >= 4) {
        text = text.replace(s.as_str(), "[secret]");
    }
    if text.is_empty() {
        return;
    }
    if cut {
        text.push_str(" [cut]");
    }
    tracing::info!(target: "autogit::extension", extension = name, "{text}");
    if let Ok(mut l) = last.lock() {
        *l = Some(text);
    }
}

/// A value by name.
pub type Lookup<'a> = Box<dyn Fn(&str) -> Option<String> + Send + Sync + 'a>;
/// A secret's value by name, or why it cannot be read.
pub type SecretLookup<'a> = Box<dyn Fn(&str) -> Result<Option<String>, String> + Send + Sync + 'a>;

/// Where an extension finds what it declared: autogit's environment, its settings and its
/// secrets. Only the names its manifest declares are ever looked up.
pub struct Grant<'a> {
    /// A variable of autogit's own process environment.
    pub env: Lookup<'a>,
    /// A setting (`.env`, the environment over it).
    pub setting: Lookup<'a>,
    /// A secret's value (the setting, or the file `<NAME>_FILE` names).
    pub secret: SecretLookup<'a>,
    /// Whether the extension of that name is enabled and installed (a dependency).
    pub available: Box<dyn Fn(&str) -> bool + Send + Sync + 'a>,
}

impl std::fmt::Debug for Grant<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Grant")
    }
}

/// The parameters of `handshake`.
fn handshake_params() -> Value {
    json!({
        "host": "autogit",
        "host_version": env!("CARGO_PKG_VERSION"),
        "protocol_versions": [proto::PROTOCOL_VERSION],
    })
}

async fn ask_manifest(p: &mut Process) -> Result<Manifest, ExtensionError> {
    let v = p.call("handshake", handshake_params()).await?;
    let m: Manifest = serde_json::from_value(v).map_err(|e| ExtensionError::Manifest {
        name: p.name.clone(),
        problems: vec![format!("its handshake answer is not a manifest: {e}")],
    })?;
    let problems = m.check(&p.name);
    if problems.is_empty() {
        Ok(m)
    } else {
        Err(ExtensionError::Manifest {
            name: p.name.clone(),
            problems,
        })
    }
}

/// Its manifest, checked: started with an empty environment, asked `handshake`, stopped.
pub async fn handshake(found: &Found, limits: Limits) -> Result<Manifest, ExtensionError> {
    let mut p = Process::spawn(found, &[], limits, Vec::new())?;
    let m = ask_manifest(&mut p).await;
    p.shutdown().await;
    m
}

/// A provider's running extension, shared by its callers: one call at a time, and no more
/// calls once it failed (it was killed) or was shut down.
#[derive(Debug)]
pub struct Session {
    name: String,
    process: tokio::sync::Mutex<Option<Process>>,
}

impl Session {
    /// Starts `found` as a provider of `kind` ([`start`], no context).
    pub async fn start(
        found: &Found,
        kind: ProviderType,
        grant: &Grant<'_>,
        limits: Limits,
    ) -> Result<Self, ExtensionError> {
        let started = start(found, kind, grant, json!({}), limits).await?;
        Ok(Self {
            name: started.manifest.name.clone(),
            process: tokio::sync::Mutex::new(Some(started.process)),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// One call ([`Process::call`]); [`ExtensionError::Dead`] after `shutdown`.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, ExtensionError> {
        let mut guard = self.process.lock().await;
        let Some(p) = guard.as_mut() else {
            return Err(ExtensionError::Dead {
                name: self.name.clone(),
            });
        };
        p.call(method, params).await
    }

    /// Whether it takes calls (false once one failed other than with an error answer, or
    /// after `shutdown`); one that is busy with a call counts as alive.
    pub fn alive(&self) -> bool {
        match self.process.try_lock() {
            Ok(p) => p.as_ref().is_some_and(|p| !p.is_dead()),
            Err(_) => true,
        }
    }

    /// Sends `shutdown` and waits for it to exit.
    pub async fn shutdown(&self) {
        if let Some(p) = self.process.lock().await.take() {
            p.shutdown().await;
        }
    }
}

/// A started and initialized extension.
#[derive(Debug)]
pub struct Started {
    pub process: Process,
    pub manifest: Manifest,
}

/// Starts `found` as a provider of `kind`: the handshake (with an empty environment), then,
/// with exactly the environment variables it declared, `initialize` with its settings and the
/// secrets it declared (on its stdin: never in its argv or environment). `context` is what
/// the provider type adds (`dns`: the zone and the TTL).
pub async fn start(
    found: &Found,
    kind: ProviderType,
    grant: &Grant<'_>,
    context: Value,
    limits: Limits,
) -> Result<Started, ExtensionError> {
    let name = found.name.clone();
    let config_err = |reason: String| ExtensionError::Config {
        name: name.clone(),
        reason,
    };
    let manifest = handshake(found, limits).await?;
    let decl = manifest.provider(kind).ok_or_else(|| {
        config_err(format!(
            "it provides {} but not `{kind}`",
            manifest
                .providers
                .iter()
                .map(|p| format!("`{}`", p.kind))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let mut problems: Vec<String> = manifest
        .dependencies
        .iter()
        .filter(|d| !(grant.available)(d))
        .map(|d| format!("it depends on `{d}`, which is not enabled or not installed"))
        .collect();
    let mut config = Map::new();
    let mut secrets = BTreeMap::new();
    for f in &decl.config {
        let value = if f.secret {
            // Manifest::check made sure it is declared.
            (grant.secret)(&f.key).map_err(config_err)?
        } else {
            (grant.setting)(&f.key)
        };
        match value {
            Some(v) if f.secret => {
                secrets.insert(f.key.clone(), v);
            }
            Some(v) => match f.value(&v) {
                Ok(v) => {
                    config.insert(f.key.clone(), v);
                }
                Err(e) => problems.push(e),
            },
            None if f.required => problems.push(if f.secret {
                format!(
                    "it needs {k} (or {k}_FILE, a file holding it) in .env or the environment",
                    k = f.key
                )
            } else {
                format!("it needs {} in .env or the environment", f.key)
            }),
            None => {}
        }
    }
    if !problems.is_empty() {
        return Err(config_err(problems.join("; ")));
    }
    let env: Vec<(String, String)> = manifest
        .env
        .iter()
        .filter_map(|k| Some((k.clone(), (grant.env)(k)?)))
        .collect();
    let scrub: Vec<String> = secrets.values().cloned().collect();
    let mut process = Process::spawn(found, &env, limits, scrub)?;
    let again = ask_manifest(&mut process).await?;
    if again != manifest {
        process.shutdown().await;
        return Err(ExtensionError::Manifest {
            name,
            problems: vec!["its handshake changed between two starts".to_owned()],
        });
    }
    let params = json!({
        "provider": kind,
        "config": config,
        "secrets": secrets,
        "context": context,
    });
    drop(secrets);
    process.call("initialize", params).await?;
    Ok(Started { process, manifest })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_capped_and_blank_lines_skipped() {
        let data: &[u8] = b"\n  \n{\"a\":1}\r\nxxxxxxxxxxxxxxxxxxxx\n";
        let mut r = BufReader::with_capacity(4, data);
        assert!(
            matches!(read_line(&mut r, 16).await.unwrap(), Line::Full(l) if l == b"{\"a\":1}\r")
        );
        assert!(matches!(
            read_line(&mut r, 16).await.unwrap(),
            Line::TooLong
        ));
        let mut r = BufReader::new(&b"partial"[..]);
        assert!(matches!(read_line(&mut r, 16).await.unwrap(), Line::Eof));
    }
}
