//! A throwaway dnsmasq for tests of the dnsmasq provider: a main configuration in a temporary
//! directory (a free port on 127.0.0.1, no upstream, no /etc/hosts, a log file) that includes
//! the file the provider manages (names under `.test` that it lacks are NXDOMAIN), and a restart script to use as the provider's reload command
//! (dnsmasq loads `address=`/`host-record=`/`txt-record=` lines only at start). The server is
//! killed and the directory removed on drop; the log's tail is printed when a test fails.

use crate::dns::dnsmasq::DnsmasqConfig;
use crate::dns::rfc2136::{Rfc2136, Rfc2136Config};
use secrecy::SecretString;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Where `dnsmasq` is, or `None` (Debian installs it in /usr/sbin, not on every PATH).
pub fn dnsmasq_path() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join("dnsmasq"))
        .find(|p| p.is_file())
}

/// `dnsmasq`, or `None` after printing "skipping"; with `AUTOGIT_REQUIRE_TOOLS` set a missing
/// `dnsmasq` panics instead (scripts/test.sh installs dnsmasq-base).
pub fn dnsmasq_or_skip() -> Option<PathBuf> {
    let found = dnsmasq_path();
    if found.is_none() {
        assert!(
            std::env::var_os("AUTOGIT_REQUIRE_TOOLS").is_none(),
            "dnsmasq is required (AUTOGIT_REQUIRE_TOOLS=1) but not installed: apt-get install dnsmasq-base"
        );
        eprintln!("skipping: dnsmasq not installed (apt-get install dnsmasq-base)");
    }
    found
}

/// A running dnsmasq serving the managed file.
#[derive(Debug)]
pub struct DnsmasqServer {
    dir: PathBuf,
    port: u16,
}

impl DnsmasqServer {
    /// Writes `initial` as the managed file and starts dnsmasq on a free port.
    pub fn start(dnsmasq: &Path, initial: &str) -> Result<DnsmasqServer, String> {
        let mut last = String::new();
        for _ in 0..5 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let dir =
                std::env::temp_dir().join(format!("autogit-dnsmasq-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let port = super::bind::free_port();
            let s = DnsmasqServer { dir, port };
            std::fs::write(s.config_path(), initial).map_err(|e| e.to_string())?;
            let main = format!(
                "port={port}\nlisten-address=127.0.0.1\nbind-interfaces\nno-resolv\nno-hosts\n\
                 local=/test/\n\
                 pid-file={dir}/dnsmasq.pid\nlog-facility={dir}/dnsmasq.log\nlog-queries\n\
                 conf-file={conf}\n",
                dir = s.dir.display(),
                conf = s.config_path().display()
            );
            std::fs::write(s.dir.join("main.conf"), main).map_err(|e| e.to_string())?;
            let script = format!(
                "#!/bin/sh\n\
                 # Restart the test dnsmasq: stop the running one, start it again.\n\
                 set -e\n\
                 dir='{dir}'\n\
                 if [ -f \"$dir/dnsmasq.pid\" ]; then\n\
                   pid=$(cat \"$dir/dnsmasq.pid\")\n\
                   kill \"$pid\" 2>/dev/null || true\n\
                   i=0\n\
                   while kill -0 \"$pid\" 2>/dev/null; do i=$((i+1)); [ $i -gt 200 ] && exit 1; sleep 0.05; done\n\
                   rm -f \"$dir/dnsmasq.pid\"\n\
                 fi\n\
                 user=''\n\
                 [ \"$(id -u)\" = 0 ] && user='--user=root'\n\
                 '{bin}' --conf-file=\"$dir/main.conf\" $user\n",
                dir = s.dir.display(),
                bin = dnsmasq.display()
            );
            std::fs::write(s.dir.join("restart.sh"), script).map_err(|e| e.to_string())?;
            match s.restart() {
                Ok(()) => return Ok(s),
                Err(e) => last = e,
            }
        }
        Err(format!("dnsmasq did not start: {last}"))
    }

    /// The file the provider manages (included by the main configuration).
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("autogit.conf")
    }

    /// The command that restarts this dnsmasq (for DNSMASQ_RELOAD_COMMAND).
    pub fn reload_command(&self) -> String {
        format!("sh '{}'", self.dir.join("restart.sh").display())
    }

    /// `127.0.0.1:port`.
    pub fn server(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn provider_config(&self) -> DnsmasqConfig {
        DnsmasqConfig {
            path: self.config_path(),
            reload_command: Some(self.reload_command()),
            default_ttl: 300,
            timeout: Duration::from_secs(20),
        }
    }

    /// A plain DNS client for this server (TCP queries; the TSIG key is never used).
    pub fn client(&self) -> Rfc2136 {
        Rfc2136::new(&Rfc2136Config {
            server: self.server(),
            zone: "test".into(),
            key_name: "unused".into(),
            algorithm: "hmac-sha256".into(),
            secret: SecretString::from("dW51c2Vk".to_owned()),
            timeout: Duration::from_secs(5),
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs the restart script and waits until dnsmasq answers on TCP.
    pub fn restart(&self) -> Result<(), String> {
        let out = Command::new("sh")
            .arg(self.dir.join("restart.sh"))
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stderr),
                self.log()
            ));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("no answer on port {}: {}", self.port, self.log()))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dnsmasq.log")).unwrap_or_default()
    }

    fn pid(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join("dnsmasq.pid"))
            .ok()
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    }
}

impl Drop for DnsmasqServer {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("sh")
                .arg("-c")
                .arg(format!("kill {pid}"))
                .status();
        }
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- dnsmasq log (last 40 lines) ---");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
