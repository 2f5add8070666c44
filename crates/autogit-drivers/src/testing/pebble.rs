//! A throwaway Pebble (Let's Encrypt's ACME test server, Debian package `pebble`) for tests:
//! its HTTPS listener gets a certificate from a mini CA made with `openssl` in a temporary
//! directory, it resolves DNS-01 challenges through the given DNS server (the test's BIND),
//! and logs to `pebble.log` there (never the test's stdout). Killed and removed on drop.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Where `pebble` is, or `None`.
pub fn pebble_path() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/bin", "/usr/local/bin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join("pebble"))
        .find(|p| p.is_file())
}

/// `pebble`, or `None` after printing "skipping"; with `AUTOGIT_REQUIRE_TOOLS` set a missing
/// one panics instead (scripts/test.sh installs it).
pub fn pebble_or_skip() -> Option<PathBuf> {
    let found = pebble_path();
    if found.is_none() {
        assert!(
            std::env::var_os("AUTOGIT_REQUIRE_TOOLS").is_none(),
            "pebble is required (AUTOGIT_REQUIRE_TOOLS=1) but not installed: apt-get install pebble"
        );
        eprintln!("skipping: pebble not installed (apt-get install pebble)");
    }
    found
}

/// A running Pebble.
pub struct Pebble {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
    mgmt_port: u16,
    dns: String,
    bin: PathBuf,
    http_port: u16,
    validity_secs: Option<u64>,
    /// The address it listens on: loopback, or every address for clients in containers.
    listen: &'static str,
}

fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .map_err(|e| format!("openssl: {e} (apt-get install openssl)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl Pebble {
    /// Starts Pebble resolving through `dns` (`127.0.0.1:PORT`) and waits until it answers.
    pub fn start(bin: &Path, dns: &str) -> Result<Pebble, String> {
        Self::start_with_http_port(bin, dns, 5002)
    }

    /// As [`Pebble::start`]; HTTP-01 validation connects to `http_port` of the names' address.
    pub fn start_with_http_port(bin: &Path, dns: &str, http_port: u16) -> Result<Pebble, String> {
        Self::start_with(bin, dns, http_port, None)
    }

    /// As [`Pebble::start`], issuing certificates valid for `validity_secs` (short-lived ones
    /// exercise renewal).
    pub fn start_short_lived(bin: &Path, dns: &str, validity_secs: u64) -> Result<Pebble, String> {
        Self::start_with(bin, dns, 5002, Some(validity_secs))
    }

    /// As [`Pebble::start_with_http_port`], listening on every address, for an ACME client in a
    /// container: it reaches Pebble at the host's address on its network (the bridge's gateway)
    /// under the name `pebble` (`--add-host pebble:<gateway>`), which its certificate names;
    /// [`Pebble::directory_as`] gives the URL.
    pub fn start_for_containers(bin: &Path, dns: &str, http_port: u16) -> Result<Pebble, String> {
        Self::start_on(bin, dns, http_port, None, "0.0.0.0")
    }

    fn start_with(
        bin: &Path,
        dns: &str,
        http_port: u16,
        validity_secs: Option<u64>,
    ) -> Result<Pebble, String> {
        Self::start_on(bin, dns, http_port, validity_secs, "127.0.0.1")
    }

    fn start_on(
        bin: &Path,
        dns: &str,
        http_port: u16,
        validity_secs: Option<u64>,
        listen: &'static str,
    ) -> Result<Pebble, String> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("autogit-pebble-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        // A mini CA for Pebble's own HTTPS (not the CA that issues the test certificates).
        openssl(
            &dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=autogit test https CA",
            ],
        )?;
        openssl(
            &dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "key.pem",
                "-out",
                "cert.csr",
                "-subj",
                "/CN=localhost",
            ],
        )?;
        std::fs::write(
            dir.join("san.ext"),
            "subjectAltName=DNS:localhost,DNS:pebble,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
        .map_err(|e| e.to_string())?;
        openssl(
            &dir,
            &[
                "x509",
                "-req",
                "-in",
                "cert.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "cert.pem",
                "-days",
                "2",
                "-extfile",
                "san.ext",
            ],
        )?;
        let mut p = Pebble {
            child: None,
            dir,
            port: 0,
            mgmt_port: 0,
            dns: dns.to_owned(),
            bin: bin.to_owned(),
            http_port,
            validity_secs,
            listen,
        };
        p.launch()?;
        Ok(p)
    }

    fn launch(&mut self) -> Result<(), String> {
        if self.port == 0 {
            self.port = super::bind::free_port();
            self.mgmt_port = super::bind::free_port();
        }
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("{}:{}", self.listen, self.port),
                "managementListenAddress": format!("127.0.0.1:{}", self.mgmt_port),
                "certificate": self.dir.join("cert.pem"),
                "privateKey": self.dir.join("key.pem"),
                "httpPort": self.http_port,
                "tlsPort": 5001,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false
            }
        });
        let mut config = config;
        if let Some(v) = self.validity_secs {
            config["pebble"]["certificateValidityPeriod"] = v.into();
        }
        std::fs::write(self.dir.join("pebble.json"), config.to_string())
            .map_err(|e| e.to_string())?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("pebble.log"))
            .map_err(|e| e.to_string())?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(&self.bin)
            .arg("-config")
            .arg(self.dir.join("pebble.json"))
            .arg("-dnsserver")
            .arg(&self.dns)
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.bin.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                return Err(format!("pebble exited ({status}):\n{}", self.log()));
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && TcpStream::connect(("127.0.0.1", self.mgmt_port)).is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("pebble did not start within 20 s:\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The ACME directory URL.
    pub fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }

    /// The ACME directory URL under another name for this host (`pebble`, for containers).
    pub fn directory_as(&self, host: &str) -> String {
        format!("https://{host}:{}/dir", self.port)
    }

    /// The PEM to trust for Pebble's HTTPS listener.
    pub fn https_root(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The root that issued the test certificates (from the management interface): what a
    /// client must trust to accept them. Changes with every Pebble start.
    pub async fn issuing_root(&self) -> Result<String, String> {
        let pem = std::fs::read(self.https_root()).map_err(|e| e.to_string())?;
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).map_err(|e| e.to_string())?)
            .build()
            .map_err(|e| e.to_string())?;
        client
            .get(format!("https://127.0.0.1:{}/roots/0", self.mgmt_port))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .text()
            .await
            .map_err(|e| e.to_string())
    }

    /// Stops Pebble (the CA is "down").
    pub fn stop(&mut self) {
        self.resume();
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freezes Pebble (SIGSTOP): the kernel still accepts connections on its port, nothing
    /// answers them – a hung or overloaded CA. [`Pebble::resume`] (or drop) undoes it.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Undoes [`Pebble::pause`].
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args([sig, &c.id().to_string()])
                .status();
        }
    }

    /// Stops Pebble and starts it again at the same directory URL. Pebble keeps nothing on
    /// disk: the restarted CA has forgotten every account and order (and has a new root).
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        self.launch()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pebble.log")).unwrap_or_default()
    }
}

impl std::fmt::Debug for Pebble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pebble")
            .field("dir", &self.dir)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!(
                "--- pebble.log (last lines) ---\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
