//! Running the `git` CLI for mirrors, hardened: no system or global configuration, only the
//! transport of the remote being contacted, no prompts, no credential helpers. Credentials reach
//! git only through `GIT_ASKPASS`: a script in a private (0700) directory that prints an
//! environment variable set on that one child. They are never on a command line, in a config
//! file, in a log line or in an error (stderr is scrubbed of the token and of URL userinfo).

use super::MirrorError;
use autogit_core::mirror::{Pinned, redact_url};
use secrecy::{ExposeSecret, SecretString};
use std::ffi::OsString;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::AsyncWriteExt;

const PASSWORD_VAR: &str = "AUTOGIT_GIT_PASSWORD";

/// The askpass script: the username prompt gets `oauth2` (GitLab and GitHub accept any user
/// name with a token), every other prompt the token.
const ASKPASS: &str = "#!/bin/sh\ncase \"$1\" in\n  Username*|username*) printf '%s\\n' \"${AUTOGIT_GIT_USERNAME:-oauth2}\" ;;\n  *) printf '%s\\n' \"$AUTOGIT_GIT_PASSWORD\" ;;\nesac\n";

/// The only variables a git child gets from autogit's environment (everything else, such as
/// `GITHUB_TOKEN`, a cloud key or `GIT_DIR`, never reaches git, ssh or a remote helper):
/// where programs are, the home directory (ssh's `known_hosts` and keys), the locale, the
/// ssh agent, an operator's `GIT_SSH_COMMAND`, and which CAs to trust (a private CA for the
/// local GitLab). Proxies are not passed: a proxy would resolve the host itself, past the
/// address check.
pub const INHERITED: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "SSH_AUTH_SOCK",
    "GIT_SSH_COMMAND",
    "GIT_SSL_CAINFO",
    "GIT_SSL_CAPATH",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// The environment of one git child: [`INHERITED`] from `parent`, the hardening settings, and
/// the askpass variables when (and only when) this call has a token. `ssh_options` are
/// appended to the ssh command (validated host names only: `HostKeyAlias=<host>`).
pub fn child_env(
    parent: impl IntoIterator<Item = (OsString, OsString)>,
    askpass: &Path,
    token: Option<&SecretString>,
    ssh_options: &[String],
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = parent
        .into_iter()
        .filter(|(k, _)| INHERITED.iter().any(|i| k.as_os_str() == *i))
        .collect();
    let mut ssh = env
        .iter()
        .position(|(k, _)| k == "GIT_SSH_COMMAND")
        .map(|i| env.remove(i).1.to_string_lossy().into_owned())
        .unwrap_or_else(|| "ssh -o BatchMode=yes".to_owned());
    for o in ssh_options {
        ssh.push(' ');
        ssh.push_str(o);
    }
    let mut set = |k: &str, v: &std::ffi::OsStr| env.push((k.into(), v.to_owned()));
    set("GIT_SSH_COMMAND", ssh.as_ref());
    set("GIT_CONFIG_NOSYSTEM", "1".as_ref());
    set("GIT_CONFIG_GLOBAL", "/dev/null".as_ref());
    set("GIT_TERMINAL_PROMPT", "0".as_ref());
    set("GCM_INTERACTIVE", "never".as_ref());
    set("LC_ALL", "C".as_ref());
    if let Some(t) = token {
        set("GIT_ASKPASS", askpass.as_os_str());
        set(PASSWORD_VAR, t.expose_secret().as_ref());
    }
    env
}

/// A private directory holding the askpass script; removed on drop.
#[derive(Debug)]
pub struct Askpass {
    dir: PathBuf,
    script: PathBuf,
}

impl Askpass {
    pub fn create() -> std::io::Result<Askpass> {
        let mut rnd = [0u8; 8];
        getrandom::fill(&mut rnd).map_err(|e| std::io::Error::other(e.to_string()))?;
        let tag: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
        let dir =
            std::env::temp_dir().join(format!("autogit-askpass-{}-{tag}", std::process::id()));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        let script = dir.join("askpass");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o700)
            .open(&script)?;
        f.write_all(ASKPASS.as_bytes())?;
        f.sync_all()?;
        Ok(Askpass { dir, script })
    }

    pub fn script(&self) -> &Path {
        &self.script
    }
}

impl Drop for Askpass {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `protocol.<name>` that a URL uses.
pub fn protocol_of(url: &str) -> &'static str {
    match url.split_once("://").map(|(s, _)| s.to_ascii_lowercase()) {
        Some(s) if s == "https" => "https",
        Some(s) if s == "http" => "http",
        Some(s) if s == "git" => "git",
        Some(s) if s == "ssh" || s == "git+ssh" => "ssh",
        Some(_) => "none",
        None => "ssh", // scp-like
    }
}

/// One git invocation.
#[derive(Debug)]
pub struct Call<'a> {
    pub step: &'static str,
    /// The repository to run in (`git -C`), if any.
    pub dir: Option<&'a Path>,
    pub args: Vec<String>,
    /// The remote contacted: its transport is the only one allowed; named (redacted) in errors.
    pub remote: Option<&'a str>,
    pub token: Option<&'a SecretString>,
    pub stdin: Option<Vec<u8>>,
    /// The checked address `remote` is pinned to ([`autogit_core::mirror::pin`]): its `-c`
    /// settings and ssh options apply to this call (`args` already carry its URL).
    pub pin: Option<&'a Pinned>,
}

/// Runs git as configured.
#[derive(Debug)]
pub struct Git {
    pub program: PathBuf,
    askpass: Askpass,
    /// Ref advertisements read without a process, where the transport allows.
    pub refs: super::advert::RefReader,
}

impl Git {
    pub fn new(program: PathBuf) -> Result<Git, MirrorError> {
        let askpass = Askpass::create().map_err(|source| MirrorError::Io {
            path: std::env::temp_dir(),
            source,
        })?;
        Ok(Git {
            program,
            askpass,
            refs: super::advert::RefReader::new(),
        })
    }

    /// The command for `call`: hardened environment and settings, its arguments.
    fn command(&self, call: &Call<'_>) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.env_clear().envs(child_env(
            std::env::vars_os(),
            self.askpass.script(),
            call.token,
            call.pin.map_or(&[][..], |p| &p.ssh_options),
        ));
        let mut args: Vec<String> = vec![
            "-c".into(),
            "protocol.allow=never".into(),
            "-c".into(),
            "credential.helper=".into(),
            "-c".into(),
            "core.hooksPath=/dev/null".into(),
        ];
        if let Some(r) = call.remote {
            args.push("-c".into());
            args.push(format!("protocol.{}.allow=always", protocol_of(r)));
        }
        for c in call.pin.map_or(&[][..], |p| &p.config) {
            args.push("-c".into());
            args.push(c.clone());
        }
        if let Some(d) = call.dir {
            args.push("-C".into());
            args.push(d.to_string_lossy().into_owned());
        }
        args.extend(call.args.iter().cloned());
        cmd.args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    fn failed(call: &Call<'_>, stdout: &[u8], stderr: &[u8]) -> MirrorError {
        let mut stderr = String::from_utf8_lossy(stderr).into_owned();
        // `push --porcelain` reports refused refs on stdout (`!\t<ref>\t<reason>`).
        for l in String::from_utf8_lossy(stdout).lines() {
            if let Some(refused) = l.strip_prefix("!\t") {
                stderr.push_str(&format!("\nrefused: {}", refused.replace('\t', " ")));
            }
        }
        MirrorError::Git {
            step: call.step,
            remote: call.remote.map(redact_url),
            detail: scrub(&stderr, call.token),
        }
    }

    /// Runs the call; stdout on success, a scrubbed error otherwise. The child is killed when
    /// the future is dropped (timeouts).
    pub async fn run(&self, mut call: Call<'_>) -> Result<Vec<u8>, MirrorError> {
        let mut cmd = self.command(&call);
        let input = call.stdin.take();
        cmd.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = cmd.spawn().map_err(|source| MirrorError::Spawn {
            git: self.program.clone(),
            source,
        })?;
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            // Written concurrently with reading the output, so a large answer cannot deadlock.
            tokio::spawn(async move {
                let _ = stdin.write_all(&input).await;
            });
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|source| MirrorError::Spawn {
                git: self.program.clone(),
                source,
            })?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        Err(Self::failed(&call, &out.stdout, &out.stderr))
    }

    /// One `git cat-file --batch-command --buffer` (in `call.dir`; `call.args` are ignored)
    /// asked in two rounds: `info` of every object in `oids` (one `<oid> <type> <size>` line
    /// each), then `contents` of the objects `pick` chooses from those lines. The second
    /// round's answer (`<oid> <type> <size>\n<content>\n` each). One process where a listing
    /// and a read would take two.
    pub async fn cat_file_two_rounds(
        &self,
        mut call: Call<'_>,
        oids: &[String],
        pick: impl FnOnce(&str) -> Vec<String>,
    ) -> Result<Vec<u8>, MirrorError> {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
        call.args = vec![
            "cat-file".into(),
            "--batch-command".into(),
            "--buffer".into(),
        ];
        let mut cmd = self.command(&call);
        cmd.stdin(Stdio::piped());
        let spawn_error = |source| MirrorError::Spawn {
            git: self.program.clone(),
            source,
        };
        let mut child = cmd.spawn().map_err(spawn_error)?;
        let (Some(mut stdin), Some(stdout), Some(mut stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(spawn_error(std::io::Error::other("no pipes to git")));
        };
        let mut first = String::with_capacity(oids.len() * 48);
        for o in oids {
            first.push_str("info ");
            first.push_str(o);
            first.push('\n');
        }
        first.push_str("flush\n");
        // The writer runs beside the reader (a long list cannot deadlock on full pipes); the
        // second round reaches it through the channel, and it closes stdin after it.
        let (more_tx, more_rx) = tokio::sync::oneshot::channel::<String>();
        let writer = tokio::spawn(async move {
            stdin.write_all(first.as_bytes()).await?;
            stdin.flush().await?;
            if let Ok(more) = more_rx.await {
                stdin.write_all(more.as_bytes()).await?;
            }
            Ok::<_, std::io::Error>(())
        });
        let errors = tokio::spawn(async move {
            let mut e = Vec::new();
            let _ = stderr.read_to_end(&mut e).await;
            e
        });
        let mut out = BufReader::new(stdout);
        let mut info = String::new();
        let mut complete = true;
        for _ in 0..oids.len() {
            if out.read_line(&mut info).await.map_err(spawn_error)? == 0 {
                complete = false;
                break;
            }
        }
        let mut second = String::new();
        if complete {
            for o in pick(&info) {
                second.push_str("contents ");
                second.push_str(&o);
                second.push('\n');
            }
        }
        let _ = more_tx.send(second);
        let mut contents = Vec::new();
        out.read_to_end(&mut contents).await.map_err(spawn_error)?;
        let status = child.wait().await.map_err(spawn_error)?;
        let _ = writer.await;
        let stderr = errors.await.unwrap_or_default();
        if status.success() && complete {
            return Ok(contents);
        }
        Err(Self::failed(&call, &contents, &stderr))
    }
}

/// The last lines of git's stderr without the token or URL userinfo.
pub fn scrub(stderr: &str, token: Option<&SecretString>) -> String {
    let mut s = stderr.to_owned();
    if let Some(t) = token
        && !t.expose_secret().is_empty()
    {
        s = s.replace(t.expose_secret(), "***");
    }
    let lines: Vec<String> = s
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split(' ').map(redact_url).collect::<Vec<_>>().join(" "))
        .collect();
    let tail = &lines[lines.len().saturating_sub(4)..];
    let joined = tail.join(" | ");
    if joined.is_empty() {
        "git exited with an error and said nothing".to_owned()
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn askpass_is_private_and_prints_the_variable() {
        let a = Askpass::create().unwrap();
        let dir_mode = std::fs::metadata(a.script().parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        let out = std::process::Command::new(a.script())
            .arg("Password for 'https://h': ")
            .env(PASSWORD_VAR, "s3cret")
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "s3cret\n");
        let out = std::process::Command::new(a.script())
            .arg("Username for 'https://h': ")
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "oauth2\n");
        let dir = a.script().parent().unwrap().to_owned();
        drop(a);
        assert!(!dir.exists());
    }

    #[test]
    fn stderr_is_scrubbed() {
        let t = SecretString::from("tok123");
        let s = scrub(
            "fatal: could not read from https://user:tok123@h/x.git\nremote said tok123\n",
            Some(&t),
        );
        assert!(!s.contains("tok123"), "{s}");
        assert!(s.contains("https://***@h/x.git"), "{s}");
    }

    #[test]
    fn protocols() {
        for (u, p) in [
            ("https://h/x", "https"),
            ("git://h/x", "git"),
            ("ssh://h/x", "ssh"),
            ("git@h:x", "ssh"),
            ("http://h/x", "http"),
            ("ext::sh", "ssh"),
            ("file:///x", "none"),
        ] {
            assert_eq!(protocol_of(u), p, "{u}");
        }
    }
}
