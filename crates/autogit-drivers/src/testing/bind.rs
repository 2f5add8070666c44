//! A throwaway BIND 9 (`named`) for tests of the RFC 2136 provider: a primary zone (or more)
//! in a temporary directory, one TSIG key (hmac-sha256 unless told otherwise, random secret), listening on a free
//! port of 127.0.0.1 (UDP and TCP). `named` logs to `named.log` in that directory (never to
//! the test's stdout); the log's tail is printed when a test fails. The server is killed and
//! the directory removed on drop.

use crate::dns::rfc2136::Rfc2136Config;
use secrecy::SecretString;
use std::fmt::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The name of the key every test server declares.
pub const KEY_NAME: &str = "autogit-test-key";

/// One primary zone of the test server.
#[derive(Clone, Debug)]
pub struct TestZone {
    /// The apex, e.g. `example.test`.
    pub name: String,
    /// Zone file lines after the SOA and NS records (`name TTL IN TYPE value`, relative names
    /// allowed).
    pub records: String,
    /// `allow-update { key K; };` (else updates are refused).
    pub allow_update: bool,
    /// `allow-transfer { key K; };` (else transfers are refused).
    pub allow_transfer: bool,
    /// Signed by BIND (`dnssec-policy default; inline-signing yes;`): DNSKEY and RRSIGs are
    /// served a moment after the zone loads.
    pub signed: bool,
}

impl TestZone {
    pub fn new(name: &str, records: &str) -> Self {
        Self {
            name: name.to_owned(),
            records: records.to_owned(),
            allow_update: true,
            allow_transfer: true,
            signed: false,
        }
    }

    /// The same zone, signed with DNSSEC by BIND.
    pub fn signed(mut self) -> Self {
        self.signed = true;
        self
    }

    /// The same zone without `allow-update`.
    pub fn read_only(mut self) -> Self {
        self.allow_update = false;
        self
    }

    /// The same zone without `allow-transfer` (BIND then refuses every AXFR).
    pub fn no_transfer(mut self) -> Self {
        self.allow_transfer = false;
        self
    }
}

/// A running `named`.
pub struct Bind {
    child: Child,
    named: PathBuf,
    dir: PathBuf,
    port: u16,
    secret: String,
    algorithm: &'static str,
}

/// Where `named` is, or `None` (Debian installs it in /usr/sbin, not on every PATH).
pub fn named_path() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join("named"))
        .find(|p| p.is_file())
}

/// `named`, or `None` after printing "skipping"; with `AUTOGIT_REQUIRE_TOOLS` set a missing
/// `named` panics instead (scripts/test.sh installs bind9).
pub fn named_or_skip() -> Option<PathBuf> {
    let found = named_path();
    if found.is_none() {
        assert!(
            std::env::var_os("AUTOGIT_REQUIRE_TOOLS").is_none(),
            "named (BIND 9) is required (AUTOGIT_REQUIRE_TOOLS=1) but not installed: apt-get install bind9 bind9-utils"
        );
        eprintln!("skipping: named (BIND 9) not installed (apt-get install bind9 bind9-utils)");
    }
    found
}

/// A TCP port free a moment ago on every address (UDP is checked by `named` itself), above
/// the kernel's ephemeral range (32768-60999 on Linux), clear of the default `PORT_POOL`
/// (20000-20999) and of the fixed ports some tests publish (31xxx). A port the kernel picked (`bind` to
/// port 0) is one it also hands to client connections and to the engine's `-p ::PORT`
/// publications, so under load another test could take it before this one binds it (seen:
/// "bind: address already in use" from the engine in `docker_engine.rs`). Ports here come
/// from a walk that starts at an offset of this process's id, one step per call, skipping
/// ports that are in use.
pub fn free_port() -> u16 {
    use std::sync::atomic::AtomicU16;
    const LOW: u16 = 61_000;
    const SPAN: u16 = 4_500;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = (std::process::id() % u32::from(SPAN)) as u16;
    for _ in 0..SPAN {
        let step = NEXT.fetch_add(1, Ordering::Relaxed) % SPAN;
        let port = LOW + (base + step) % SPAN;
        if TcpListener::bind(("0.0.0.0", port)).is_ok()
            && TcpListener::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl Bind {
    /// Starts `named` serving `zones`; waits until it answers on TCP. Retries on another port
    /// when the chosen one was taken in the meantime.
    pub fn start(named: &Path, zones: &[TestZone]) -> Result<Bind, String> {
        Self::start_with_algorithm(named, zones, "hmac-sha256")
    }

    /// As [`Bind::start`], with a key of `algorithm` (`hmac-sha384`, `hmac-sha512`, ...).
    pub fn start_with_algorithm(
        named: &Path,
        zones: &[TestZone],
        algorithm: &'static str,
    ) -> Result<Bind, String> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| format!("random secret: {e}"))?;
        let secret = data_encoding::BASE64.encode(&raw);
        let mut last = String::new();
        for _ in 0..5 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("autogit-bind-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let port = free_port();
            write_config(&dir, port, &secret, algorithm, zones)?;
            let out = std::fs::File::create(dir.join("named.out"))
                .map_err(|e| format!("{}: {e}", dir.display()))?;
            let err = out.try_clone().map_err(|e| e.to_string())?;
            let child = Command::new(named)
                .arg("-f")
                .arg("-n")
                .arg("1")
                .arg("-c")
                .arg(dir.join("named.conf"))
                .arg("-p")
                .arg(port.to_string())
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .map_err(|e| format!("cannot run {}: {e}", named.display()))?;
            let mut bind = Bind {
                child,
                named: named.to_owned(),
                dir,
                port,
                secret: secret.clone(),
                algorithm,
            };
            match bind.wait_ready() {
                Ok(()) => return Ok(bind),
                Err(e) => {
                    last = e;
                    if !last.contains("address in use") {
                        break;
                    }
                }
            }
        }
        Err(last)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = self.log();
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("named exited ({status}):\n{log}"));
            }
            if log.contains("address in use") {
                return Err(format!("named: address in use on port {}", self.port));
            }
            if log.lines().any(|l| l.ends_with(" running"))
                && TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("named did not start within 20 s:\n{log}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills `named` (SIGKILL, as a crash or an OOM kill would): the DNS server is gone until
    /// [`Bind::restart`]. Its zones and journals stay in [`Bind::dir`].
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts `named` again on the same port, from the same configuration, zone files and
    /// journals (so updates made before [`Bind::kill`] are still there); waits until it answers.
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        let _ = std::fs::remove_file(self.dir.join("named.log"));
        let out = std::fs::File::create(self.dir.join("named.out"))
            .map_err(|e| format!("{}: {e}", self.dir.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        self.child = Command::new(&self.named)
            .arg("-f")
            .arg("-n")
            .arg("1")
            .arg("-c")
            .arg(self.dir.join("named.conf"))
            .arg("-p")
            .arg(self.port.to_string())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.named.display()))?;
        self.wait_ready()
    }

    /// `127.0.0.1:PORT`, as RFC2136_SERVER takes it.
    pub fn server(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The key's secret (base64).
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The provider settings for `zone` on this server.
    pub fn config(&self, zone: &str) -> Rfc2136Config {
        Rfc2136Config {
            server: self.server(),
            zone: zone.to_owned(),
            key_name: KEY_NAME.to_owned(),
            algorithm: self.algorithm.to_owned(),
            secret: SecretString::from(self.secret.clone()),
            timeout: Duration::from_secs(5),
        }
    }

    /// The server's log so far (`named.log` and what it printed).
    pub fn log(&self) -> String {
        let mut s = std::fs::read_to_string(self.dir.join("named.log")).unwrap_or_default();
        s.push_str(&std::fs::read_to_string(self.dir.join("named.out")).unwrap_or_default());
        s
    }

    /// The temporary directory (configuration, zone files, journals, log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl std::fmt::Debug for Bind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bind")
            .field("dir", &self.dir)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- named log (last 40 lines) ---");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write_config(
    dir: &Path,
    port: u16,
    secret: &str,
    algorithm: &str,
    zones: &[TestZone],
) -> Result<(), String> {
    let d = dir.display();
    let mut conf = format!(
        r#"options {{
    directory "{d}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    managed-keys-directory "{d}";
    recursion no;
    dnssec-validation no;
    notify no;
}};
logging {{
    channel test {{ file "{d}/named.log"; severity info; print-time yes; print-category yes; }};
    category default {{ test; }};
}};
key "{KEY_NAME}" {{
    algorithm {algorithm};
    secret "{secret}";
}};
"#
    );
    for z in zones {
        let file = dir.join(format!("{}.zone", z.name));
        let zone_text = format!(
            "$TTL 3600\n@ IN SOA ns.{0}. admin.{0}. 1 3600 600 86400 300\n@ IN NS ns.{0}.\nns IN A 127.0.0.1\n{1}\n",
            z.name, z.records
        );
        std::fs::write(&file, zone_text).map_err(|e| format!("{}: {e}", file.display()))?;
        let update = if z.allow_update {
            format!("allow-update {{ key \"{KEY_NAME}\"; }};")
        } else {
            String::new()
        };
        let transfer = if z.allow_transfer {
            format!("allow-transfer {{ key \"{KEY_NAME}\"; }};")
        } else {
            "allow-transfer { none; };".to_owned()
        };
        let signed = if z.signed {
            format!("dnssec-policy default; inline-signing yes; key-directory \"{d}\";")
        } else {
            String::new()
        };
        let _ = writeln!(
            conf,
            "zone \"{}\" {{ type primary; file \"{}\"; {update} {transfer} {signed} }};",
            z.name,
            file.display()
        );
    }
    let path = dir.join("named.conf");
    std::fs::write(&path, conf).map_err(|e| format!("{}: {e}", path.display()))
}
