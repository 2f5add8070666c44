//! A complete `ssl` extension in Rust: the platform certificate signed by a CA you already
//! run as a pair of files (`OPENSSL_CA_CERT_FILE`, `OPENSSL_CA_KEY_FILE`), through the
//! `openssl` CLI. The same provider as `sdk/python/examples/openssl_ca_ssl.py`; a model for a
//! source that talks to a real CA's API (step-ca, Vault PKI, a corporate CA).
//!
//! Build it (`cargo build --release -p autogit-extension-sdk --example openssl_ca_ssl`), copy
//! `target/release/examples/openssl_ca_ssl` to `<data dir>/extensions/openssl-ca-rs`, and set
//! in `.env`:
//!
//! ```text
//! EXTENSIONS_ENABLED=openssl-ca-rs
//! TLS_SOURCE=extension:openssl-ca-rs
//! OPENSSL_CA_CERT_FILE=/etc/autogit/ca.pem
//! OPENSSL_CA_KEY_FILE=/etc/autogit/ca.key
//! OPENSSL_CA_DAYS=90
//! ```
//!
//! It declares `PATH` (to find `openssl`). `autogit tls renew` (and the daemon, at two thirds
//! of the lifetime) calls `ssl.issue` with the names; a new P-256 key is made for each
//! certificate in a private (0700) temporary directory that is removed afterwards. Neither
//! the key nor the CA's key is ever logged.

use autogit_extension_sdk::{Error, Extension, Health, Init, Issued, Setting, SslProvider};
use std::ffi::OsString;
use std::io::Read;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Default)]
struct OpensslCa {
    ca_cert: PathBuf,
    ca_key: PathBuf,
    days: u32,
}

fn random_hex(n: usize) -> Result<String, Error> {
    let mut b = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| Error::failed(format!("/dev/urandom: {e}")))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// A 0700 directory under the temporary directory, removed when dropped.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new() -> Result<WorkDir, Error> {
        let p = std::env::temp_dir().join(format!("openssl-ca-{}", random_hex(8)?));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&p)
            .map_err(|e| Error::failed(format!("{}: {e}", p.display())))?;
        Ok(WorkDir(p))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn openssl(args: &[OsString]) -> Result<(), Error> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .map_err(|e| Error::failed(format!("openssl: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let err = err.trim();
    let tail: String = err
        .chars()
        .skip(err.chars().count().saturating_sub(300))
        .collect();
    Err(Error::failed(format!(
        "openssl {} failed: {tail}",
        args[0].to_string_lossy()
    )))
}

fn read(p: &Path) -> Result<String, Error> {
    std::fs::read_to_string(p).map_err(|e| Error::failed(format!("{}: {e}", p.display())))
}

impl SslProvider for OpensslCa {
    fn settings(&self) -> Vec<Setting> {
        vec![
            Setting::new("OPENSSL_CA_CERT_FILE")
                .required()
                .describe("the CA's certificate (PEM)"),
            Setting::new("OPENSSL_CA_KEY_FILE")
                .required()
                .describe("the CA's private key (PEM)"),
            Setting::new("OPENSSL_CA_DAYS")
                .integer()
                .describe("days a certificate is valid (90)"),
        ]
    }

    fn initialize(&mut self, init: &Init) -> Result<(), Error> {
        self.ca_cert = init
            .setting("OPENSSL_CA_CERT_FILE")
            .unwrap_or_default()
            .into();
        self.ca_key = init
            .setting("OPENSSL_CA_KEY_FILE")
            .unwrap_or_default()
            .into();
        self.days = match init.setting("OPENSSL_CA_DAYS") {
            None => 90,
            Some(d) => d.parse().ok().filter(|d| *d > 0).ok_or_else(|| {
                Error::config(format!("OPENSSL_CA_DAYS `{d}` is not a number of days"))
            })?,
        };
        for (key, path) in [
            ("OPENSSL_CA_CERT_FILE", &self.ca_cert),
            ("OPENSSL_CA_KEY_FILE", &self.ca_key),
        ] {
            if !path.is_file() {
                return Err(Error::config(format!(
                    "{key}: {} is not a file",
                    path.display()
                )));
            }
        }
        let found = Command::new("openssl").arg("version").output();
        if !found.is_ok_and(|o| o.status.success()) {
            return Err(Error::config("the openssl CLI is not on PATH"));
        }
        Ok(())
    }

    fn issue(&mut self, names: &[String]) -> Result<Issued, Error> {
        if names.is_empty() {
            return Err(Error::failed("ssl.issue without names"));
        }
        if let Some(bad) = names.iter().find(|n| {
            n.is_empty()
                || !n
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-.*".contains(c))
        }) {
            return Err(Error::failed(format!("`{bad}` is not a DNS name")));
        }
        let work = WorkDir::new()?;
        let [key, csr, crt, ext] =
            ["key.pem", "csr.pem", "crt.pem", "ext.cnf"].map(|n| work.0.join(n));
        let san: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
        std::fs::write(
            &ext,
            format!(
                "subjectAltName={}\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n",
                san.join(",")
            ),
        )
        .map_err(|e| Error::failed(format!("{}: {e}", ext.display())))?;
        let cn = names
            .iter()
            .find(|n| !n.starts_with("*."))
            .unwrap_or(&names[0]);
        let subject = format!("/CN={cn}");
        let serial = format!("0x{}", random_hex(16)?);
        let days = self.days.to_string();
        let a = |s: &str| OsString::from(s);
        let p = |p: &Path| p.as_os_str().to_owned();
        openssl(&[
            a("req"),
            a("-new"),
            a("-newkey"),
            a("ec"),
            a("-pkeyopt"),
            a("ec_paramgen_curve:prime256v1"),
            a("-nodes"),
            a("-keyout"),
            p(&key),
            a("-subj"),
            a(&subject),
            a("-out"),
            p(&csr),
        ])?;
        openssl(&[
            a("x509"),
            a("-req"),
            a("-in"),
            p(&csr),
            a("-CA"),
            p(&self.ca_cert),
            a("-CAkey"),
            p(&self.ca_key),
            a("-set_serial"),
            a(&serial),
            a("-days"),
            a(&days),
            a("-extfile"),
            p(&ext),
            a("-out"),
            p(&crt),
        ])?;
        Ok(Issued {
            chain: read(&crt)? + &read(&self.ca_cert)?,
            key: read(&key)?,
        })
    }

    fn health(&mut self) -> Result<Health, Error> {
        Ok(Health::ok(format!("CA {}", self.ca_cert.display())))
    }
}

fn main() -> std::io::Result<()> {
    Extension::new("openssl-ca-rs", "1.0.0")
        .description("certificates from a CA kept as files, by the openssl CLI")
        .env(&["PATH"])
        .ssl(OpensslCa::default())
        .run()
}
