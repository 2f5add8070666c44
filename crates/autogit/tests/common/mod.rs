//! Helpers shared by the integration tests: run the real binary in a scratch directory with a
//! clean environment.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_autogit"))
}

/// A command for the binary, run in `dir`, with only PATH and HOME from the outside.
pub fn cmd(dir: &Path) -> Command {
    let mut c = Command::new(bin());
    c.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("NO_COLOR", "1")
        // Never the machine's own data dir (`/var/lib/autogit` as root): a command that names
        // none uses the test's (`--data-dir` and the tests' own AUTOGIT_DATA_DIR still win).
        .env("AUTOGIT_DATA_DIR", dir.join("data"))
        // `install` would set autogit up as a systemd service of the machine running the tests.
        .env("AUTOGIT_NO_SERVICE", "1");
    c
}

pub fn finish(out: Output) -> Run {
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn run(dir: &Path, args: &[&str]) -> Run {
    finish(cmd(dir).args(args).output().expect("run autogit"))
}

pub fn run_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut c = cmd(dir);
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    finish(c.output().expect("run autogit"))
}

/// Whether a tool is on PATH. With AUTOGIT_REQUIRE_TOOLS=1 (set by the README test command)
/// a missing tool fails the test instead of skipping it.
pub fn have(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    if !found {
        assert!(
            std::env::var_os("AUTOGIT_REQUIRE_TOOLS").is_none(),
            "{tool} is required (AUTOGIT_REQUIRE_TOOLS=1) but not on PATH"
        );
        eprintln!("skipping: {tool} not installed");
    }
    found
}

/// Runs the docker CLI; panics with its output on failure.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub fn docker_ok(args: &[&str]) -> bool {
    Command::new("docker")
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether a Docker engine answers. With AUTOGIT_REQUIRE_TOOLS=1 a missing engine fails.
pub fn have_engine() -> bool {
    if !have("docker") {
        return false;
    }
    let ok = docker_ok(&["version"]);
    if !ok {
        assert!(
            std::env::var_os("AUTOGIT_REQUIRE_TOOLS").is_none(),
            "a Docker engine is required (AUTOGIT_REQUIRE_TOOLS=1) but none answers"
        );
        eprintln!("skipping: no Docker engine answers");
    }
    ok
}

/// See `autogit_drivers::testing::fake_gitlab_image`.
pub fn fake_gitlab_image(version: &str, cmd: &[&str]) -> String {
    autogit_drivers::testing::fake_gitlab_image(version, cmd).unwrap_or_else(|e| panic!("{e}"))
}

/// The binary in `dir` with `--data-dir dir/data` appended.
pub fn run_data(dir: &Path, args: &[&str]) -> Run {
    let data = dir.join("data");
    let mut a: Vec<&str> = args.to_vec();
    a.extend(["--data-dir", data.to_str().unwrap_or("data")]);
    run(dir, &a)
}

/// Removes the platform of `dir` (containers, network, volumes) when dropped.
pub struct Down(pub PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = run_data(&self.0, &["down", "--volumes", "--yes"]);
    }
}

/// Removes whatever of `project` is left in the engine (containers, then volumes and networks,
/// by autogit's project label): after a daemon was stopped mid-create, the engine may finish a
/// container after `down` ran.
pub fn remove_project_leftovers(project: &str) {
    let filter = format!("label=io.autogit.project={project}");
    for (list, rm) in [
        (vec!["ps", "-aq", "--filter"], vec!["rm", "-f"]),
        (
            vec!["volume", "ls", "-q", "--filter"],
            vec!["volume", "rm", "-f"],
        ),
        (
            vec!["network", "ls", "-q", "--filter"],
            vec!["network", "rm"],
        ),
    ] {
        let Ok(out) = Command::new("docker").args(&list).arg(&filter).output() else {
            return;
        };
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("docker").args(&rm).arg(id).output();
        }
    }
}

/// The environment that points the binary at `dir`'s configuration, `.env` and data dir
/// (`dir/autogit.yml`, `dir/.env`, `dir/data`).
pub fn platform_env(dir: &Path) -> Vec<(String, String)> {
    vec![
        (
            "AUTOGIT_DATA_DIR".into(),
            dir.join("data").display().to_string(),
        ),
        (
            "AUTOGIT_CONFIG".into(),
            dir.join("autogit.yml").display().to_string(),
        ),
        (
            "AUTOGIT_ENV_FILE".into(),
            dir.join(".env").display().to_string(),
        ),
        ("USER".into(), "tester".into()),
    ]
}

/// The binary with [`platform_env`].
pub fn run_platform(dir: &Path, args: &[&str]) -> Run {
    let e = platform_env(dir);
    let pairs: Vec<(&str, &str)> = e.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    run_env(dir, args, &pairs)
}

/// A child process (a server a test started), killed when dropped: at the test's end or on a
/// failed assertion.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `target/test-logs`, where the servers tests start write their logs.
pub fn test_log_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-logs");
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub const API_BASE: &str = "debian:trixie-slim";
const API_BASE_STAND_IN: &str = "io.autogit.stand-in-api-base";

/// `API_BASE` (the image of the `api` and `guard` services), imported from a root file system of this host's bash, busybox and the shared
/// libraries of bash and of the autogit binary, unless a real one (or this stand-in) is there.
pub fn api_base_image() {
    if docker_ok(&["image", "inspect", API_BASE]) {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    for d in ["bin", "usr/bin", "usr/local/bin", "tmp", "etc", "lib64"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static is not installed (apt-get install busybox-static)");
    std::fs::copy(busybox, r.join("bin/busybox")).unwrap();
    for tool in ["sh", "head", "grep", "cat", "ls"] {
        std::os::unix::fs::symlink("busybox", r.join("bin").join(tool)).unwrap();
    }
    std::fs::copy("/bin/bash", r.join("bin/bash")).unwrap();
    std::fs::write(r.join("etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n").unwrap();
    // Every library bash and autogit load, at the path the loader looks for it.
    for exe in [Path::new("/bin/bash"), bin().as_path()] {
        let out = Command::new("ldd").arg(exe).output().unwrap();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let path = line
                .split_whitespace()
                .find(|w| w.starts_with('/'))
                .map(str::to_owned);
            if let Some(p) = path {
                let dest = r.join(p.trim_start_matches('/'));
                std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
                std::fs::copy(&p, &dest).unwrap_or_else(|e| panic!("{p}: {e}"));
            }
        }
    }
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(r)
        .args(["-c", "."])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = Command::new("docker")
        .args([
            "import",
            "-c",
            "ENV PATH=/usr/local/bin:/usr/bin:/bin",
            "-c",
            "CMD [\"bash\"]",
            "-c",
            &format!("LABEL {API_BASE_STAND_IN}=1"),
            "-",
            API_BASE,
        ])
        .stdin(tar.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(tar.wait().unwrap().success(), "tar of the root file system");
    assert!(
        out.status.success(),
        "docker import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
