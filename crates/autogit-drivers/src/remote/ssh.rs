//! [`Ssh`]: [`RemoteExec`] through the system `ssh`, and [`trust`] (`ssh-keyscan` into autogit's
//! own `known_hosts`).
//!
//! Every call passes `BatchMode=yes` (never a prompt), `StrictHostKeyChecking=yes` with
//! `UserKnownHostsFile=<data>/known_hosts` (only keys `autogit runner trust` accepted),
//! `ConnectTimeout`, keep-alives, and connection reuse (`ControlMaster=auto`, sockets in a
//! private 0700 directory). The remote command is one string built by
//! [`autogit_core::remote::sh_join`]: every argument single-quoted for the remote shell.

use super::{Output, RemoteError, RemoteExec, run_with_timeout};
use crate::fsx::{read_bounded, write_atomic};
use autogit_core::remote::{check_ssh_host, sh_join};
use autogit_core::validate::check_unix_user;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How autogit reaches hosts over SSH.
#[derive(Clone, Debug)]
pub struct SshConfig {
    /// Prepended to `ssh` and `ssh-keyscan` (empty normally; tests use `ip netns exec NS`).
    pub launcher: Vec<String>,
    /// autogit's own known_hosts (`<data>/known_hosts`).
    pub known_hosts: PathBuf,
    /// Where connection-sharing sockets live (created 0700); `None` turns sharing off.
    pub control_dir: Option<PathBuf>,
    /// Private key (`-i`, with `IdentitiesOnly=yes`); `None` uses ssh's defaults and agent.
    pub identity: Option<PathBuf>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub connect_timeout: Duration,
    /// The longest one command may run, connection included.
    pub command_timeout: Duration,
    /// `-F FILE`: read this ssh_config instead of the user's (`none`: read none).
    pub config_file: Option<PathBuf>,
}

impl SshConfig {
    /// Defaults under autogit's data directory.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            launcher: Vec::new(),
            known_hosts: data_dir.join("known_hosts"),
            control_dir: Some(data_dir.join("ssh")),
            identity: None,
            user: None,
            port: None,
            connect_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(120),
            config_file: None,
        }
    }
}

/// One host over SSH.
#[derive(Clone, Debug)]
pub struct Ssh {
    cfg: SshConfig,
    host: String,
}

impl Ssh {
    /// Refuses host names ssh could read as options or that carry metacharacters, and user
    /// names that are not plain login names. `user@host` is split: the user goes to `-l`
    /// (it wins over `cfg.user`), the host after `--`, so neither can be read as an option.
    pub fn new(mut cfg: SshConfig, host: &str) -> Result<Self, RemoteError> {
        let bad = |reason: String| RemoteError::BadHost {
            host: host.to_owned(),
            reason,
        };
        check_ssh_host(host).map_err(bad)?;
        let name = match host.split_once('@') {
            Some((user, name)) => {
                cfg.user = Some(user.to_owned());
                name
            }
            None => host,
        };
        if let Some(u) = &cfg.user {
            check_unix_user(u).map_err(|why| bad(format!("user `{u}`: {why}")))?;
        }
        Ok(Self {
            cfg,
            host: name.to_owned(),
        })
    }

    /// The full local argument vector for running `remote` (exposed for tests and `--verbose`).
    pub fn argv(&self, remote: &[String]) -> Vec<String> {
        let c = &self.cfg;
        let mut v = c.launcher.clone();
        v.push("ssh".into());
        if let Some(f) = &c.config_file {
            v.extend(["-F".into(), f.display().to_string()]);
        }
        let mut opt = |o: String| v.extend(["-o".into(), o]);
        opt("BatchMode=yes".into());
        opt("StrictHostKeyChecking=yes".into());
        opt(format!("UserKnownHostsFile={}", c.known_hosts.display()));
        opt("GlobalKnownHostsFile=/dev/null".into());
        opt("UpdateHostKeys=no".into());
        opt(format!(
            "ConnectTimeout={}",
            c.connect_timeout.as_secs().max(1)
        ));
        opt("ServerAliveInterval=5".into());
        opt("ServerAliveCountMax=2".into());
        opt("LogLevel=ERROR".into());
        if let Some(dir) = &c.control_dir {
            opt("ControlMaster=auto".into());
            opt(format!("ControlPath={}/%C", dir.display()));
            opt("ControlPersist=60".into());
        } else {
            opt("ControlMaster=no".into());
            opt("ControlPath=none".into());
        }
        if let Some(id) = &c.identity {
            opt("IdentitiesOnly=yes".into());
            v.extend(["-i".into(), id.display().to_string()]);
        }
        if let Some(u) = &c.user {
            v.extend(["-l".into(), u.clone()]);
        }
        if let Some(p) = c.port {
            v.extend(["-p".into(), p.to_string()]);
        }
        v.extend(["-T".into(), "--".into(), self.host.clone()]);
        v.push(sh_join(remote));
        v
    }

    /// The argument vector of `sftp -b -` to this host with the same options as [`Self::argv`]
    /// (pinned host keys, batch mode, the identity, connection sharing): the batch comes on
    /// its standard input.
    pub fn sftp_argv(&self) -> Vec<String> {
        let mut v = self.argv(&[]);
        v.pop(); // the remote command
        let ssh = self.cfg.launcher.len();
        v[ssh] = "sftp".into();
        let mut out: Vec<String> = Vec::with_capacity(v.len() + 2);
        let mut it = v.into_iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "-T" => {}
                "-l" => out.extend([
                    "-o".into(),
                    format!("User={}", it.next().unwrap_or_default()),
                ]),
                "-p" => out.extend(["-P".into(), it.next().unwrap_or_default()]),
                "--" => out.extend(["-b".into(), "-".into(), "--".into()]),
                _ => out.push(a),
            }
        }
        out
    }

    /// Runs an `sftp` batch (one command a line; `sftp -b` stops at the first that fails):
    /// ssh's own failures are the same [`RemoteError`]s as for commands.
    pub async fn sftp_batch(&self, batch: &str) -> Result<Output, RemoteError> {
        self.prepare()?;
        let argv = self.sftp_argv();
        let (program, args) = argv.split_first().expect("sftp");
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args);
        let out = run_with_timeout(
            cmd,
            program,
            &self.host,
            self.cfg.command_timeout,
            batch.as_bytes(),
        )
        .await?;
        // sftp exits 255 when ssh failed, 1 when a batch command did.
        if out.code == Some(255)
            && let Some(e) = classify(&self.host, &out.stderr)
        {
            return Err(e);
        }
        Ok(out)
    }

    fn prepare(&self) -> Result<(), RemoteError> {
        if let Some(dir) = &self.cfg.control_dir {
            private_dir(dir)?;
        }
        if let Some(parent) = self.cfg.known_hosts.parent() {
            std::fs::create_dir_all(parent).map_err(|e| fs_err(parent, e))?;
        }
        Ok(())
    }

    /// Closes the shared connection, if one is open (`ssh -O exit`).
    pub async fn close(&self) {
        if self.cfg.control_dir.is_none() {
            return;
        }
        let mut argv = self.argv(&[]);
        argv.pop(); // the remote command
        let at = argv.iter().position(|a| a == "-T").unwrap_or(argv.len());
        argv.splice(at..at, ["-O".to_owned(), "exit".to_owned()]);
        let (program, args) = argv.split_first().expect("ssh");
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args);
        let _ = run_with_timeout(cmd, program, &self.host, Duration::from_secs(5), &[]).await;
    }
}

impl RemoteExec for Ssh {
    fn host(&self) -> &str {
        &self.host
    }

    async fn run_input(&self, remote: &[String], input: &[u8]) -> Result<Output, RemoteError> {
        self.prepare()?;
        let argv = self.argv(remote);
        let (program, args) = argv.split_first().expect("ssh");
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args);
        let out =
            run_with_timeout(cmd, program, &self.host, self.cfg.command_timeout, input).await?;
        // 255 is ssh's own failure; a remote command exiting 255 is indistinguishable, so it
        // is only treated as ssh's when ssh said why.
        if out.code == Some(255)
            && let Some(e) = classify(&self.host, &out.stderr)
        {
            return Err(e);
        }
        Ok(out)
    }
}

/// Turns ssh's own error messages into [`RemoteError`]s.
fn classify(host: &str, stderr: &str) -> Option<RemoteError> {
    let detail = stderr
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("")
        .to_owned();
    let has = |s: &str| stderr.contains(s);
    let host = host.to_owned();
    Some(if has("REMOTE HOST IDENTIFICATION HAS CHANGED") {
        RemoteError::KeyChanged { host, detail }
    } else if has("Host key verification failed") || has("host key is known") {
        RemoteError::HostKey { host, detail }
    } else if has("Permission denied") || has("Too many authentication failures") {
        RemoteError::Auth { host, detail }
    } else if has("Connection timed out")
        || has("timed out")
        || has("No route to host")
        || has("Connection refused")
        || has("Network is unreachable")
        || has("Could not resolve hostname")
        || has("Connection closed")
        || has("Connection reset")
        || has("Broken pipe")
        || has("not responding")
    {
        RemoteError::Unreachable { host, detail }
    } else if stderr.trim().is_empty() {
        return None;
    } else {
        RemoteError::Ssh { host, detail }
    })
}

fn fs_err(path: &Path, source: std::io::Error) -> RemoteError {
    RemoteError::Fs(crate::fsx::FsError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Creates `dir` 0700, or checks that an existing one is not open to others.
fn private_dir(dir: &Path) -> Result<(), RemoteError> {
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => {}
        Err(e) => return Err(fs_err(dir, e)),
    }
    let meta = std::fs::metadata(dir).map_err(|e| fs_err(dir, e))?;
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| fs_err(dir, e))?;
    }
    Ok(())
}

/// A host key accepted by [`trust`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TrustedKey {
    /// `ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`.
    pub key_type: String,
    /// `SHA256:…`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
}

/// What [`trust`] did.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TrustReport {
    pub host: String,
    pub keys: Vec<TrustedKey>,
    /// False when every key was already in known_hosts.
    pub added: bool,
}

/// `ssh-keyscan` (behind the launcher) with the connect timeout, the port and the key types
/// autogit pins, then `tail`.
fn keyscan_argv(cfg: &SshConfig, tail: &[&str]) -> Vec<String> {
    let mut argv = cfg.launcher.clone();
    argv.extend(["ssh-keyscan".into(), "-T".into()]);
    argv.push(cfg.connect_timeout.as_secs().max(1).to_string());
    if let Some(p) = cfg.port {
        argv.extend(["-p".into(), p.to_string()]);
    }
    argv.extend(["-t".into(), "ed25519,ecdsa,rsa".into()]);
    argv.extend(tail.iter().map(|a| (*a).to_owned()));
    argv
}

/// Fetches `host`'s keys with `ssh-keyscan` and adds them to `cfg.known_hosts`. Keys already
/// present are kept; a host whose recorded keys differ from what it offers now is refused
/// (`KeyChanged`) unless `replace` (the user checked the new fingerprint out of band).
pub async fn trust(cfg: &SshConfig, host: &str, replace: bool) -> Result<TrustReport, RemoteError> {
    check_ssh_host(host).map_err(|reason| RemoteError::BadHost {
        host: host.to_owned(),
        reason,
    })?;
    let name = host.rsplit_once('@').map_or(host, |(_, n)| n);
    let argv = keyscan_argv(cfg, &["--", name]);
    let (program, args) = argv.split_first().expect("ssh-keyscan");
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args);
    let out = run_with_timeout(cmd, program, host, cfg.connect_timeout * 3, &[]).await?;
    let scanned: Vec<String> = out
        .stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter(|l| l.split_whitespace().count() == 3)
        .map(str::to_owned)
        .collect();
    if scanned.is_empty() {
        let detail = out
            .stderr
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty() && !l.starts_with('#'))
            .unwrap_or("no host key offered")
            .to_owned();
        return Err(RemoteError::Unreachable {
            host: host.to_owned(),
            detail,
        });
    }
    let marker = scanned[0]
        .split_whitespace()
        .next()
        .unwrap_or(name)
        .to_owned();
    let existing = match read_bounded(&cfg.known_hosts, 4 << 20) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(crate::fsx::FsError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            String::new()
        }
        Err(e) => return Err(e.into()),
    };
    let ours: Vec<&str> = existing
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(marker.as_str()))
        .collect();
    let same = |l: &str| scanned.iter().any(|s| s == l.trim());
    if !ours.is_empty() && !ours.iter().all(|l| same(l)) && !replace {
        return Err(RemoteError::KeyChanged {
            host: host.to_owned(),
            detail: format!(
                "{} holds other keys for {marker}; check the new fingerprint, then run `autogit runner trust --replace {host}`",
                cfg.known_hosts.display()
            ),
        });
    }
    let mut text: String = existing
        .lines()
        .filter(|l| l.split_whitespace().next() != Some(marker.as_str()) || (!replace && same(l)))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut added = false;
    for line in &scanned {
        if !text.lines().any(|l| l.trim() == line) {
            text.push_str(line);
            text.push('\n');
            added = true;
        }
    }
    if let Some(parent) = cfg.known_hosts.parent() {
        std::fs::create_dir_all(parent).map_err(|e| fs_err(parent, e))?;
    }
    write_atomic(&cfg.known_hosts, text.as_bytes(), 0o600)?;
    let keys = fingerprints(&scanned.join("\n")).await;
    Ok(TrustReport {
        host: host.to_owned(),
        keys,
        added,
    })
}

/// Host keys offered by `hosts` (one `ssh-keyscan -f -` for all, in parallel; hosts without
/// an SSH server are absent): host → known_hosts lines.
pub async fn scan(
    cfg: &SshConfig,
    hosts: &[String],
) -> Result<std::collections::BTreeMap<String, Vec<String>>, RemoteError> {
    let argv = keyscan_argv(cfg, &["-f", "-"]);
    let (program, args) = argv.split_first().expect("ssh-keyscan");
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args);
    let input: String = hosts.iter().map(|h| format!("{h}\n")).collect();
    // ssh-keyscan works through the list in parallel; allow for a few rounds of timeouts.
    let limit = cfg.connect_timeout * 4 + Duration::from_secs(10);
    let out = run_with_timeout(cmd, program, "ssh-keyscan", limit, input.as_bytes()).await?;
    let mut found: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for line in out.stdout.lines().map(str::trim) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        if parts.len() != 3 || line.starts_with('#') {
            continue;
        }
        let host = parts[0]
            .trim_start_matches('[')
            .split("]:")
            .next()
            .unwrap_or(parts[0]);
        if let Some(h) = hosts.iter().find(|h| h.as_str() == host) {
            found.entry(h.clone()).or_default().push(line.to_owned());
        }
    }
    Ok(found)
}

/// Whether known_hosts already holds one of these scanned lines.
pub fn is_trusted(cfg: &SshConfig, scanned: &[String]) -> bool {
    let Ok(bytes) = read_bounded(&cfg.known_hosts, 4 << 20) else {
        return false;
    };
    let text = String::from_utf8_lossy(&bytes);
    text.lines()
        .any(|l| scanned.iter().any(|s| s.trim() == l.trim()))
}

/// `ssh-keygen -lf` over known_hosts lines: (type, SHA256 fingerprint) each.
pub async fn fingerprints(lines: &str) -> Vec<TrustedKey> {
    let mut out = Vec::new();
    for line in lines.lines() {
        let mut parts = line.split_whitespace();
        let (Some(_), Some(kind), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let dir = match tempfile_dir() {
            Some(d) => d,
            None => continue,
        };
        let file = dir.join("key.pub");
        if std::fs::write(&file, format!("{kind} {key}\n")).is_err() {
            continue;
        }
        let mut cmd = tokio::process::Command::new("ssh-keygen");
        cmd.arg("-lf").arg(&file);
        let res = run_with_timeout(cmd, "ssh-keygen", "local", Duration::from_secs(10), &[]).await;
        let _ = std::fs::remove_dir_all(&dir);
        if let Ok(o) = res
            && let Some(fp) = o
                .stdout
                .split_whitespace()
                .find(|w| w.starts_with("SHA256:"))
        {
            out.push(TrustedKey {
                key_type: kind.to_owned(),
                fingerprint: fp.to_owned(),
            });
        }
    }
    out
}

fn tempfile_dir() -> Option<PathBuf> {
    let mut rnd = [0u8; 8];
    getrandom::fill(&mut rnd).ok()?;
    let name: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
    let dir = std::env::temp_dir().join(format!("autogit-key-{name}"));
    std::fs::DirBuilder::new().mode(0o700).create(&dir).ok()?;
    Some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_pins_keys_and_quotes_the_command() {
        let mut cfg = SshConfig::new(Path::new("/data"));
        cfg.identity = Some("/data/id".into());
        cfg.port = Some(2222);
        let ssh = Ssh::new(cfg, "gpu1").unwrap();
        let argv = ssh.argv(&["echo".into(), "a b".into(), "$(id)".into()]);
        let joined = argv.join(" ");
        for want in [
            "BatchMode=yes",
            "StrictHostKeyChecking=yes",
            "UserKnownHostsFile=/data/known_hosts",
            "ControlPath=/data/ssh/%C",
            "ConnectTimeout=10",
            "-p 2222",
        ] {
            assert!(joined.contains(want), "{want} in {joined}");
        }
        assert_eq!(&argv[argv.len() - 3..argv.len() - 1], ["--", "gpu1"]);
        assert_eq!(argv.last().unwrap(), "echo 'a b' '$(id)'");
    }

    #[test]
    fn option_like_hosts_are_refused() {
        let cfg = SshConfig::new(Path::new("/data"));
        assert!(matches!(
            Ssh::new(cfg, "-oProxyCommand=touch /tmp/x"),
            Err(RemoteError::BadHost { .. })
        ));
    }

    #[test]
    fn users_go_to_l_and_hosts_after_the_double_dash() {
        let cfg = SshConfig::new(Path::new("/data"));
        let argv = Ssh::new(cfg.clone(), "ci@gpu1")
            .unwrap()
            .argv(&["true".into()]);
        let at = argv.iter().position(|a| a == "-l").unwrap();
        assert_eq!(argv[at + 1], "ci");
        assert_eq!(&argv[argv.len() - 3..argv.len() - 1], ["--", "gpu1"]);
        assert!(!argv.iter().any(|a| a.contains('@')), "{argv:?}");
        for user in ["-oProxyCommand=touch /tmp/x", "-l", "a b", "$(id)"] {
            let mut c = cfg.clone();
            c.user = Some(user.into());
            assert!(
                matches!(Ssh::new(c, "gpu1"), Err(RemoteError::BadHost { .. })),
                "{user}"
            );
        }
        assert!(matches!(
            Ssh::new(cfg, "-oProxyCommand=x@gpu1"),
            Err(RemoteError::BadHost { .. })
        ));
    }

    #[test]
    fn ssh_messages_are_classified() {
        let c = |s: &str| classify("h", s).map(|e| format!("{e:?}"));
        assert!(
            c("Host key verification failed.\r\n")
                .unwrap()
                .starts_with("HostKey")
        );
        assert!(c("No ED25519 host key is known for h and you have requested strict checking.\nHost key verification failed.").unwrap().starts_with("HostKey"));
        assert!(
            c("root@h: Permission denied (publickey).")
                .unwrap()
                .starts_with("Auth")
        );
        assert!(
            c("ssh: connect to host h port 22: Connection timed out")
                .unwrap()
                .starts_with("Unreachable")
        );
        assert!(
            c("ssh: connect to host h port 22: No route to host")
                .unwrap()
                .starts_with("Unreachable")
        );
        assert!(c("").is_none());
    }
}
