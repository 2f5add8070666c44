//! Running commands on runner hosts: the [`RemoteExec`] trait, [`Local`] (this machine) and
//! [`ssh::Ssh`] (the system `ssh`, host keys pinned in autogit's own `known_hosts`).
//!
//! **Invariant:** commands are argument vectors end to end. Nothing is parsed by a local shell;
//! over SSH every argument is quoted with `autogit_core::remote::sh_join` for the remote one.

pub mod inventory;
pub mod register;
pub mod ssh;

use std::future::Future;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// What a command printed and how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// The exit status; `None` when a signal ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("`{host}` is not a usable host: {reason}")]
    BadHost { host: String, reason: String },
    #[error("cannot run `{program}`: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{host} is unreachable: {detail}")]
    Unreachable { host: String, detail: String },
    #[error(
        "{host}: host key not trusted ({detail}); check it and run `autogit runner trust {host}`"
    )]
    HostKey { host: String, detail: String },
    #[error("{host}: SSH authentication failed ({detail}); is autogit's key in authorized_keys?")]
    Auth { host: String, detail: String },
    #[error("{host}: no answer within {}s", after.as_secs())]
    Timeout { host: String, after: Duration },
    #[error("{host}: ssh failed: {detail}")]
    Ssh { host: String, detail: String },
    #[error("{host}: the host key changed: {detail}")]
    KeyChanged { host: String, detail: String },
    /// A `compute` extension could not run the command (`extension:NAME/HOST`).
    #[error("{host}: {detail}")]
    Extension { host: String, detail: String },
    #[error(transparent)]
    Fs(#[from] crate::fsx::FsError),
}

/// Runs an argument vector on one host.
pub trait RemoteExec: Send + Sync {
    /// The host, as the user named it (for messages).
    fn host(&self) -> &str;
    /// Runs `argv` with `input` on its standard input (how secrets travel: never in argv,
    /// where `ps` on either machine would show them).
    fn run_input(
        &self,
        argv: &[String],
        input: &[u8],
    ) -> impl Future<Output = Result<Output, RemoteError>> + Send;

    /// Runs `argv` with an empty standard input.
    fn run(&self, argv: &[String]) -> impl Future<Output = Result<Output, RemoteError>> + Send {
        self.run_input(argv, &[])
    }
}

/// This machine, without a shell.
#[derive(Clone, Debug)]
pub struct Local {
    pub timeout: Duration,
}

impl Default for Local {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(60),
        }
    }
}

impl RemoteExec for Local {
    fn host(&self) -> &str {
        "local"
    }

    async fn run_input(&self, argv: &[String], input: &[u8]) -> Result<Output, RemoteError> {
        let Some((program, args)) = argv.split_first() else {
            return Err(RemoteError::Spawn {
                program: String::new(),
                source: std::io::Error::other("empty command"),
            });
        };
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args);
        run_with_timeout(cmd, program, "local", self.timeout, input).await
    }
}

/// Spawns `cmd` (stdin closed, output captured), waits at most `timeout`, kills it after that.
pub(crate) async fn run_with_timeout(
    mut cmd: tokio::process::Command,
    program: &str,
    host: &str,
    timeout: Duration,
    input: &[u8],
) -> Result<Output, RemoteError> {
    cmd.stdin(if input.is_empty() {
        std::process::Stdio::null()
    } else {
        std::process::Stdio::piped()
    })
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|source| RemoteError::Spawn {
        program: program.to_owned(),
        source,
    })?;
    let stdin = child.stdin.take();
    let input = input.to_vec();
    let feed = async move {
        if let Some(mut w) = stdin {
            use tokio::io::AsyncWriteExt;
            // A command that does not read its input is not an error.
            let _ = w.write_all(&input).await;
            let _ = w.shutdown().await;
        }
    };
    let mut out = child.stdout.take().expect("piped").take(LIMIT);
    let mut err = child.stderr.take().expect("piped").take(LIMIT);
    let work = async {
        let mut o = Vec::new();
        let mut e = Vec::new();
        // Bounded: a runaway remote command cannot exhaust memory.
        let ((), r1, r2) = tokio::join!(feed, out.read_to_end(&mut o), err.read_to_end(&mut e));
        r1.and(r2)?;
        let status = child.wait().await?;
        Ok::<_, std::io::Error>((status, o, e))
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(Ok((status, o, e))) => Ok(Output {
            code: status.code(),
            stdout: String::from_utf8_lossy(&o).into_owned(),
            stderr: String::from_utf8_lossy(&e).into_owned(),
        }),
        Ok(Err(source)) => Err(RemoteError::Spawn {
            program: program.to_owned(),
            source,
        }),
        Err(_) => Err(RemoteError::Timeout {
            host: host.to_owned(),
            after: timeout,
        }),
    }
}

const LIMIT: u64 = 16 << 20;

/// A runner host as configuration names it: `local` runs here, `extension:NAME/HOST`
/// through a `compute` extension, anything else over SSH.
#[derive(Clone, Debug)]
pub enum Host {
    Local(Local),
    Ssh(ssh::Ssh),
    Extension(crate::extension::ExtensionExec),
}

impl Host {
    /// `local` (or `localhost`) → [`Local`]; otherwise [`ssh::Ssh`] with `user` unless the
    /// name carries `user@`.
    pub fn new(cfg: &ssh::SshConfig, name: &str, user: Option<&str>) -> Result<Self, RemoteError> {
        if let Some((ext, _)) = autogit_core::remote::via_extension(name) {
            return Err(RemoteError::BadHost {
                host: name.to_owned(),
                reason: format!(
                    "it is reached through the `compute` extension `{ext}`, which has to be started first"
                ),
            });
        }
        if autogit_core::remote::is_local(name) {
            return Ok(Host::Local(Local {
                timeout: cfg.command_timeout,
            }));
        }
        let mut cfg = cfg.clone();
        if let Some(u) = user
            && !name.contains('@')
        {
            cfg.user = Some(u.to_owned());
        }
        ssh::Ssh::new(cfg, name).map(Host::Ssh)
    }
}

impl RemoteExec for Host {
    fn host(&self) -> &str {
        match self {
            Host::Local(l) => l.host(),
            Host::Ssh(s) => s.host(),
            Host::Extension(e) => e.host(),
        }
    }

    async fn run_input(&self, argv: &[String], input: &[u8]) -> Result<Output, RemoteError> {
        match self {
            Host::Local(l) => l.run_input(argv, input).await,
            Host::Ssh(s) => s.run_input(argv, input).await,
            Host::Extension(e) => e.run_input(argv, input).await,
        }
    }
}
