//! Real git over loopback for the mirror tests: `git daemon` serving bare repositories (with
//! receive-pack, so it is a push target too), killed on drop, logging to `target/test-logs/`.
//! Its `git` can be a wrapper that misbehaves on demand (flag files): truncate upload-pack's
//! output (a source that dies mid-fetch), stall it (timeouts), or fail once (retries).
//! Shared with the binary's tests through `#[path]`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether `git daemon` can run here. Missing: skip with a message, or fail under
/// `AUTOGIT_REQUIRE_TOOLS=1`.
pub fn have_git_daemon() -> bool {
    let ok = Command::new("git")
        .args(["daemon", "-h"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.code() == Some(129));
    if !ok {
        assert!(
            std::env::var_os("AUTOGIT_REQUIRE_TOOLS").is_none(),
            "git with `git daemon` is required (AUTOGIT_REQUIRE_TOOLS=1)"
        );
        eprintln!("skipping: `git daemon` is not available");
    }
    ok
}

pub fn real_git() -> PathBuf {
    let out = Command::new("sh")
        .args(["-c", "command -v git"])
        .output()
        .expect("sh");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

pub fn exec_path() -> PathBuf {
    PathBuf::from(git(Path::new("/"), &["--exec-path"]).trim())
}

pub fn log_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("test-logs");
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn free_port() -> u16 {
    autogit_drivers::testing::bind::free_port()
}

/// Runs git in `dir` with a clean, deterministic identity; panics with stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.org")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.org")
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Branches and tags at a URL or path (`git ls-remote`, peeled lines dropped).
pub fn refs(url: &str) -> BTreeMap<String, String> {
    git(Path::new("/"), &["ls-remote", url])
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(_, r)| {
            (r.starts_with("refs/heads/") || r.starts_with("refs/tags/")) && !r.ends_with("^{}")
        })
        .map(|(o, r)| (r.to_owned(), o.to_owned()))
        .collect()
}

/// The daemon-side `git`: behaves like git unless a flag file exists in `flags`.
fn daemon_git(flags: &Path) -> PathBuf {
    let dir = flags.join("bin");
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("git");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nF={flags}\nREAL={real}\nif [ \"$1\" = upload-pack ]; then\n  if [ -e $F/fail-once ]; then rm -f $F/fail-once; exit 1; fi\n  if [ -e $F/stall ]; then sleep 10; fi\n  if [ -e $F/cut ]; then \"$REAL\" \"$@\" | dd bs=512 count=40 2>/dev/null; exit 1; fi\nfi\nexec \"$REAL\" \"$@\"\n",
            flags = flags.display(),
            real = real_git().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// A `git daemon` on 127.0.0.1 serving `base` (fetch and push).
pub struct Daemon {
    child: Child,
    pub port: u16,
    pub base: PathBuf,
    /// Touch `cut`, `stall` or `fail-once` here to make upload-pack misbehave.
    pub flags: PathBuf,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(base: &Path, label: &str) -> Daemon {
        std::fs::create_dir_all(base).unwrap();
        let flags = base.with_extension("flags");
        std::fs::create_dir_all(&flags).unwrap();
        let bin = daemon_git(&flags);
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let log = log_dir().join(format!("git-daemon-{label}-{}.log", std::process::id()));
        for _ in 0..5 {
            let port = free_port();
            // The daemon program itself, not `git daemon`: git would put its exec path first
            // on PATH and bypass the misbehaving wrapper.
            let child = Command::new(exec_path().join("git-daemon"))
                .args([
                    "--export-all",
                    "--enable=receive-pack",
                    "--reuseaddr",
                    "--informative-errors",
                    "--verbose",
                    "--log-destination=stderr",
                    &format!("--base-path={}", base.display()),
                    "--listen=127.0.0.1",
                    &format!("--port={port}"),
                ])
                .env("PATH", &path)
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("git daemon");
            let mut d = Daemon {
                child,
                port,
                base: base.to_owned(),
                flags: flags.clone(),
                log: log.clone(),
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return d;
                }
                if d.child.try_wait().unwrap().is_some() {
                    break; // port taken meanwhile: try another
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = d.child.kill();
        }
        panic!("git daemon did not start; see {}", log.display());
    }

    pub fn url(&self, path: &str) -> String {
        format!("git://127.0.0.1:{}/{path}", self.port)
    }

    /// A new empty bare repository at `path` under the base.
    pub fn init(&self, path: &str) -> PathBuf {
        let p = self.base.join(path);
        std::fs::create_dir_all(&p).unwrap();
        git(&p, &["init", "--bare", "--quiet", "--initial-branch=main"]);
        p
    }

    pub fn flag(&self, name: &str, on: bool) {
        let f = self.flags.join(name);
        if on {
            std::fs::write(f, "").unwrap();
        } else {
            let _ = std::fs::remove_file(f);
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A work tree whose branches and tags are pushed (forced, pruned) to a bare repository.
pub struct Work {
    pub dir: PathBuf,
    pub remote: PathBuf,
}

impl Work {
    pub fn new(dir: &Path, remote: &Path) -> Work {
        std::fs::create_dir_all(dir).unwrap();
        git(dir, &["init", "--quiet", "--initial-branch=main"]);
        Work {
            dir: dir.to_owned(),
            remote: remote.to_owned(),
        }
    }

    pub fn commit(&self, file: &str, content: &str) -> String {
        std::fs::write(self.dir.join(file), content).unwrap();
        git(&self.dir, &["add", "-A"]);
        git(&self.dir, &["commit", "--quiet", "-m", file]);
        git(&self.dir, &["rev-parse", "HEAD"]).trim().to_owned()
    }

    pub fn run(&self, args: &[&str]) -> String {
        git(&self.dir, args)
    }

    /// Publishes exactly this work tree's branches and tags.
    pub fn publish(&self) {
        git(
            &self.dir,
            &[
                "push",
                "--quiet",
                "--force",
                "--prune",
                self.remote.to_str().unwrap(),
                "+refs/heads/*:refs/heads/*",
                "+refs/tags/*:refs/tags/*",
            ],
        );
    }
}

/// A `git` for the code under test that records each invocation's argv (one line each) and what
/// its askpass would answer, then runs the real git.
pub fn recording_git(dir: &Path) -> (PathBuf, PathBuf) {
    let script = dir.join("git-rec");
    let log = dir.join("git-rec.log");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> {log}\nif [ -n \"$GIT_ASKPASS\" ] && [ -n \"$AUTOGIT_GIT_PASSWORD\" ]; then \"$GIT_ASKPASS\" 'Password for x: ' >> {log}.askpass; fi\nexec {real} \"$@\"\n",
            log = log.display(),
            real = real_git().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script, log)
}
