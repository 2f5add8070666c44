//! `TLS_SOURCE=internal` and `TLS_SOURCE=file` through the real binary: the internal CA's
//! certificate verifies with the `openssl verify` CLI against `autogit tls ca --out`, a real
//! nginx serves it to a real `curl --cacert`, the CA key is never on disk in plaintext; a
//! user-supplied pair is installed, and a mismatched key, a certificate for other names and an
//! expired one are each refused with their message while the served pair stays as it was.

mod common;

use common::{Run, have, run};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn tls(dir: &Path, args: &[&str]) -> Run {
    let data = dir.join("data");
    let mut all = vec!["tls"];
    all.extend_from_slice(args);
    all.extend(["--data-dir", data.to_str().unwrap()]);
    run(dir, &all)
}

fn json(r: &Run) -> serde_json::Value {
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout))
}

fn names(v: &serde_json::Value) -> Vec<String> {
    let mut n: Vec<String> = v["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_owned())
        .collect();
    n.sort();
    n
}

fn write_env(dir: &Path, env: &str) {
    fs::write(dir.join(".env"), env).unwrap();
    fs::set_permissions(dir.join(".env"), fs::Permissions::from_mode(0o600)).unwrap();
}

/// Every file under `dir` (recursively).
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn openssl_verify(ca: &Path, cert: &Path, host: &str) -> std::process::Output {
    Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(ca)
        .args(["-verify_hostname", host])
        .arg(cert)
        .output()
        .unwrap()
}

#[test]
fn internal_ca_issues_a_certificate_that_openssl_and_curl_through_nginx_accept() {
    if !have("openssl") || !have("curl") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    write_env(d.path(), "BASE_DOMAIN=test.internal\nTLS_SOURCE=internal\n");
    let data = d.path().join("data");

    let first = json(&tls(d.path(), &["renew", "-o", "json"]));
    assert_eq!(names(&first), ["*.test.internal", "test.internal"]);
    let lifetime = first["not_after"].as_i64().unwrap() - first["not_before"].as_i64().unwrap();
    assert_eq!(lifetime, 90 * 86_400 + 3600, "{first}");
    let fullchain = PathBuf::from(first["fullchain"].as_str().unwrap());
    let key = PathBuf::from(first["key"].as_str().unwrap());
    assert_eq!(fullchain, data.join("tls/test.internal/fullchain.pem"));

    let ca = d.path().join("ca.pem");
    let r = tls(d.path(), &["ca", "--out", ca.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let ca_pem = fs::read_to_string(&ca).unwrap();
    assert_eq!(
        ca_pem,
        fs::read_to_string(data.join("tls/internal-ca.pem")).unwrap()
    );
    // Printed to stdout without --out: the same certificate.
    let r = tls(d.path(), &["ca"]);
    assert_eq!(r.stdout, ca_pem);

    let v = openssl_verify(&ca, &fullchain, "gitlab.test.internal");
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    let v = openssl_verify(&ca, &fullchain, "test.internal");
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    let v = openssl_verify(&ca, &fullchain, "gitlab.other.test");
    assert!(!v.status.success(), "a name outside BASE_DOMAIN verified");
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&ca)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("autogit internal CA test.internal"), "{text}");
    assert!(text.contains("CA:TRUE, pathlen:0"), "{text}");
    assert!(
        text.contains("Permitted:") && text.contains("DNS:test.internal"),
        "{text}"
    );
    assert!(text.contains("prime256v1"), "{text}");

    // The CA's key is sealed: every file with a PEM private key holds the leaf's key.
    let leaf_key = fs::read(&key).unwrap();
    for f in files(&data) {
        let bytes = fs::read(&f).unwrap();
        if bytes.windows(11).any(|w| w == b"PRIVATE KEY") {
            assert_eq!(bytes, leaf_key, "{} holds another private key", f.display());
        }
    }
    assert!(data.join("secrets").is_dir());

    // Within validity: nothing is issued.
    let before = fs::read(&fullchain).unwrap();
    let r = tls(d.path(), &["renew"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("not due"), "{}", r.stderr);
    assert_eq!(fs::read(&fullchain).unwrap(), before);
    let v = json(&tls(d.path(), &["status", "-o", "json"]));
    assert_eq!(v["renewal_due"], false, "{v}");

    // Forced: a new certificate from the same CA (clients need not trust a new one).
    json(&tls(d.path(), &["renew", "--force", "-o", "json"]));
    assert_ne!(fs::read(&fullchain).unwrap(), before);
    assert_eq!(fs::read_to_string(&ca).unwrap(), ca_pem);
    let v = openssl_verify(&ca, &fullchain, "registry.test.internal");
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));

    // Served by a real nginx; curl trusts only the CA from `tls ca`.
    let Some(nginx) = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        assert!(
            std::env::var_os("AUTOGIT_REQUIRE_TOOLS").is_none(),
            "nginx is required"
        );
        return;
    };
    let port = autogit_drivers::testing::bind::free_port();
    let ndir = d.path().join("nginx");
    fs::create_dir_all(&ndir).unwrap();
    fs::write(
        ndir.join("nginx.conf"),
        format!(
            "pid {n}/nginx.pid;\nerror_log {n}/error.log;\nevents {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {n};\n  proxy_temp_path {n};\n  server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {c};\n    ssl_certificate_key {k};\n    location / {{ default_type text/plain; return 200 \"served by nginx\\n\"; }}\n  }}\n}}\n",
            n = ndir.display(),
            c = fullchain.display(),
            k = key.display(),
        ),
    )
    .unwrap();
    let _nginx = autogit_drivers::testing::HostNginx::start(
        Path::new(nginx),
        &ndir,
        port,
        &ndir.join("error.log"),
    );
    let curl = |ca: &Path| {
        Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(ca)
            .args([
                "--resolve",
                &format!("gitlab.test.internal:{port}:127.0.0.1"),
                &format!("https://gitlab.test.internal:{port}/"),
            ])
            .output()
            .unwrap()
    };
    let out = curl(&ca);
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "served by nginx\n");
    // Another CA is not trusted: the check above could fail.
    let other = d.path().join("other-ca.pem");
    fs::write(&other, make_ca().0.pem()).unwrap();
    assert!(!curl(&other).status.success());
}

/// A CA of the test's own (the "corporate CA" of a user-supplied certificate).
fn make_ca() -> (rcgen::Certificate, KeyPair, CertificateParams) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Corp test CA");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = p.self_signed(&key).unwrap();
    (cert, key, p)
}

/// A leaf for `names` valid from `nb` to `na` (days from now), signed by `ca`: (chain, key).
fn leaf(
    ca: &(rcgen::Certificate, KeyPair, CertificateParams),
    names: &[&str],
    nb: i64,
    na: i64,
) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now + time::Duration::days(nb);
    p.not_after = now + time::Duration::days(na);
    let issuer = Issuer::from_params(&ca.2, &ca.1);
    let cert = p.signed_by(&key, &issuer).unwrap();
    (format!("{}{}", cert.pem(), ca.0.pem()), key.serialize_pem())
}

#[test]
fn file_source_installs_a_good_pair_and_refuses_bad_ones() {
    let d = tempfile::tempdir().unwrap();
    let supplied = d.path().join("supplied");
    fs::create_dir_all(&supplied).unwrap();
    let (cert_file, key_file) = (supplied.join("chain.pem"), supplied.join("key.pem"));
    write_env(
        d.path(),
        &format!(
            "BASE_DOMAIN=example.test\nTLS_SOURCE=file\nTLS_CERT_FILE={}\nTLS_KEY_FILE={}\n",
            cert_file.display(),
            key_file.display()
        ),
    );
    let ca = make_ca();
    let good = leaf(&ca, &["*.example.test", "example.test"], -1, 365);
    fs::write(&cert_file, &good.0).unwrap();
    fs::write(&key_file, &good.1).unwrap();

    let v = json(&tls(d.path(), &["renew", "-o", "json"]));
    assert_eq!(names(&v), ["*.example.test", "example.test"]);
    let fullchain = PathBuf::from(v["fullchain"].as_str().unwrap());
    let key = PathBuf::from(v["key"].as_str().unwrap());
    assert_eq!(fs::read_to_string(&fullchain).unwrap(), good.0);
    assert_eq!(fs::read_to_string(&key).unwrap(), good.1);
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Unchanged files: nothing to do.
    let r = tls(d.path(), &["renew"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("have not changed"), "{}", r.stderr);

    let refused = |chain: &str, key_pem: &str, expect: &[&str]| {
        fs::write(&cert_file, chain).unwrap();
        fs::write(&key_file, key_pem).unwrap();
        let r = tls(d.path(), &["renew"]);
        assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
        for e in expect {
            assert!(r.stderr.contains(e), "expected {e:?} in: {}", r.stderr);
        }
        assert!(r.stderr.contains("keeps serving"), "{}", r.stderr);
        let body = key_pem.lines().nth(1).unwrap_or("-----BEGIN PRIVATE");
        assert!(
            !r.stderr.contains(body),
            "the key in an error: {}",
            r.stderr
        );
        // Nothing half-written: the good pair is still served.
        assert_eq!(fs::read_to_string(&fullchain).unwrap(), good.0);
        assert_eq!(fs::read_to_string(&key).unwrap(), good.1);
        let leftovers: Vec<_> = files(fullchain.parent().unwrap())
            .into_iter()
            .filter(|f| !f.ends_with("fullchain.pem") && !f.ends_with("key.pem"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    };
    let other = leaf(&ca, &["*.example.test", "example.test"], -1, 365);
    refused(
        &good.0,
        &other.1,
        &[
            &format!("TLS_KEY_FILE {}", key_file.display()),
            "is not the private key of the certificate",
        ],
    );
    let elsewhere = leaf(&ca, &["*.other.test"], -1, 365);
    refused(
        &elsewhere.0,
        &elsewhere.1,
        &[&format!(
            "TLS_CERT_FILE {} does not cover *.example.test: it names *.other.test",
            cert_file.display()
        )],
    );
    let apex_only = leaf(&ca, &["example.test"], -1, 365);
    refused(
        &apex_only.0,
        &apex_only.1,
        &["does not cover *.example.test: it names example.test"],
    );
    let expired = leaf(&ca, &["*.example.test", "example.test"], -60, -2);
    refused(
        &expired.0,
        &expired.1,
        &["TLS_CERT_FILE", "expired 2 day(s) ago"],
    );
    refused(
        "not a certificate\n",
        &good.1,
        &["TLS_CERT_FILE", "no certificate in it"],
    );

    // A replacement is picked up by the next (unforced) pass, with a warning when it expires
    // within 14 days.
    let soon = leaf(&ca, &["*.example.test", "example.test"], -1, 10);
    fs::write(&cert_file, &soon.0).unwrap();
    fs::write(&key_file, &soon.1).unwrap();
    let r = tls(d.path(), &["renew"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // 10 days less the moments since the leaf was made (whole seconds on both sides).
    assert!(
        r.stderr.contains("expires in 9 day(s)") || r.stderr.contains("expires in 10 day(s)"),
        "{}",
        r.stderr
    );
    assert_eq!(fs::read_to_string(&fullchain).unwrap(), soon.0);
    let v = json(&tls(d.path(), &["status", "-o", "json"]));
    assert_eq!(v["renewal_due"], true, "expiring within 14 days: {v}");

    // `tls ca` is for the internal CA only.
    let r = tls(d.path(), &["ca"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("TLS_SOURCE is `file`"), "{}", r.stderr);
}

#[test]
fn tls_source_settings_are_checked() {
    let d = tempfile::tempdir().unwrap();
    write_env(
        d.path(),
        "BASE_DOMAIN=example.test\nTLS_SOURCE=letsencrypt\n",
    );
    let r = tls(d.path(), &["status"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("TLS_SOURCE")
            && r.stderr.contains("`acme`")
            && r.stderr.contains("`internal`")
            && r.stderr.contains("`file`"),
        "{}",
        r.stderr
    );
    write_env(d.path(), "BASE_DOMAIN=example.test\nTLS_SOURCE=file\n");
    let r = tls(d.path(), &["status"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr
            .contains("TLS_SOURCE=file needs TLS_CERT_FILE and TLS_KEY_FILE"),
        "{}",
        r.stderr
    );
    write_env(
        d.path(),
        "BASE_DOMAIN=example.test\nTLS_SOURCE=file\nTLS_CERT_FILE=chain.pem\nTLS_KEY_FILE=/k.pem\n",
    );
    let r = tls(d.path(), &["status"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("TLS_CERT_FILE") && r.stderr.contains("absolute path"),
        "{}",
        r.stderr
    );
}

/// `TLS_SOURCE=extension:openssl-ca`: the Python SDK's example `ssl` extension
/// (`sdk/python/examples/openssl_ca_ssl.py`, a real process signing with the `openssl` CLI)
/// issues the certificate; autogit checks and installs it. A CA key that does not match makes
/// the extension fail: the error names it and the served certificate stays.
#[test]
fn an_ssl_extension_issues_the_certificate() {
    if !have("openssl") || !have("python3") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let ext = d.path().join("data/extensions");
    fs::create_dir_all(&ext).unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::os::unix::fs::symlink(
        repo.join("sdk/python/examples/openssl_ca_ssl.py"),
        ext.join("openssl-ca"),
    )
    .unwrap();
    ssl_extension_issues(d.path(), "openssl-ca");
}

/// The same through the Rust SDK's example (`crates/autogit-extension-sdk/examples/
/// openssl_ca_ssl.rs`, built by cargo into a target directory of its own, as the DNS example
/// in `extension_dns_cli.rs`).
#[test]
fn the_rust_ssl_example_issues_the_certificate() {
    if !have("openssl") {
        return;
    }
    let example = autogit_drivers::testing::sdk_example("openssl_ca_ssl");
    let d = tempfile::tempdir().unwrap();
    let ext = d.path().join("data/extensions");
    fs::create_dir_all(&ext).unwrap();
    fs::copy(&example, ext.join("openssl-ca-rs")).unwrap();
    ssl_extension_issues(d.path(), "openssl-ca-rs");
}

/// `tls renew` with `TLS_SOURCE=extension:<name>` (installed in `<dir>/data/extensions`):
/// the certificate it issues verifies with `openssl verify`, lives `OPENSSL_CA_DAYS`, and is
/// not asked for again when not due; with a CA key that is not the CA's, the renewal fails
/// naming the extension and the served certificate stays.
fn ssl_extension_issues(d: &Path, name: &str) {
    let ca = make_ca();
    let (ca_cert, ca_key) = (d.join("ca.pem"), d.join("ca.key"));
    fs::write(&ca_cert, ca.0.pem()).unwrap();
    fs::write(&ca_key, ca.1.serialize_pem()).unwrap();
    let env = |key: &Path| {
        format!(
            "BASE_DOMAIN=example.test\nEXTENSIONS_ENABLED={name}\nTLS_SOURCE=extension:{name}\n\
             OPENSSL_CA_CERT_FILE={}\nOPENSSL_CA_KEY_FILE={}\nOPENSSL_CA_DAYS=30\n",
            ca_cert.display(),
            key.display()
        )
    };
    write_env(d, &env(&ca_key));
    let v = json(&tls(d, &["renew", "-o", "json"]));
    assert_eq!(names(&v), ["*.example.test", "example.test"]);
    let lifetime = v["not_after"].as_i64().unwrap() - v["not_before"].as_i64().unwrap();
    assert_eq!(lifetime, 30 * 86_400, "{v}");
    let fullchain = PathBuf::from(v["fullchain"].as_str().unwrap());
    let out = openssl_verify(&ca_cert, &fullchain, "gitlab.example.test");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let served = fs::read(&fullchain).unwrap();
    let r = tls(d, &["renew"]);
    assert!(r.stderr.contains("not due"), "{}", r.stderr);

    let stranger = d.join("stranger.key");
    fs::write(&stranger, KeyPair::generate().unwrap().serialize_pem()).unwrap();
    write_env(d, &env(&stranger));
    let r = tls(d, &["renew", "--force"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("extension `{name}` failed `ssl.issue`"))
            && r.stderr.contains("keeps serving"),
        "{}",
        r.stderr
    );
    assert_eq!(fs::read(&fullchain).unwrap(), served);
}
