//! `autogit tls renew` and `autogit tls status` through the real binary, configured only
//! through `.env`, against a real Pebble (ACME test CA) validating through a real BIND 9 that
//! autogit updates with RFC 2136, and through a real dnsmasq that the dnsmasq provider writes.
//! Without `pebble`, `named` or `dnsmasq` the tests say "skipping" and pass, unless
//! `AUTOGIT_REQUIRE_TOOLS` is set.

mod common;

use autogit_drivers::testing::bind::{Bind, KEY_NAME, TestZone, named_or_skip};
use autogit_drivers::testing::pebble::{Pebble, pebble_or_skip};
use common::{Run, run_env};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const ZONE: &str = "example.test";

fn tls(dir: &Path, args: &[&str], secret: &str) -> Run {
    let data = dir.join("data");
    let mut all = vec!["tls"];
    all.extend_from_slice(args);
    all.extend(["--data-dir", data.to_str().unwrap()]);
    run_env(dir, &all, &[("RFC2136_TSIG_SECRET", secret)])
}

fn json(r: &Run) -> serde_json::Value {
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout))
}

#[test]
fn renew_status_not_due_forced_and_ca_down() {
    let (Some(named), Some(pebble_bin)) = (named_or_skip(), pebble_or_skip()) else {
        return;
    };
    let bind = Bind::start(&named, &[TestZone::new(ZONE, "")]).unwrap();
    let mut pebble = Pebble::start(&pebble_bin, &bind.server()).unwrap();
    let d = tempfile::tempdir().unwrap();
    let env = format!(
        "BASE_DOMAIN={ZONE}\nACME_EMAIL=admin@{ZONE}\nACME_DIRECTORY={}\nACME_CA_ROOT={}\n\
         DNS_PROVIDER=rfc2136\nRFC2136_SERVER={}\nRFC2136_TSIG_KEY_NAME={KEY_NAME}\n",
        pebble.directory(),
        pebble.https_root().display(),
        bind.server()
    );
    fs::write(d.path().join(".env"), env).unwrap();
    fs::set_permissions(d.path().join(".env"), fs::Permissions::from_mode(0o600)).unwrap();
    let secret = bind.secret().to_owned();

    let r = tls(d.path(), &["status", "-o", "json"], &secret);
    assert!(json(&r)["certificate"].is_null());

    let r = tls(d.path(), &["renew", "-o", "json"], &secret);
    let v = json(&r);
    let mut names: Vec<&str> = v["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["*.example.test", "example.test"]);
    assert!(!r.stderr.contains(&secret), "the TSIG secret leaked");
    let not_after = v["not_after"].as_i64().unwrap();

    let v = json(&tls(d.path(), &["status", "-o", "json"], &secret));
    assert_eq!(v["renewal_due"], false);
    assert!(v["days_left"].as_i64().unwrap() > 0);

    // Not due: nothing is asked of the CA.
    let r = tls(d.path(), &["renew"], &secret);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("not due"), "{}", r.stderr);

    // Forced: a new certificate.
    let v = json(&tls(d.path(), &["renew", "--force", "-o", "json"], &secret));
    assert!(v["not_after"].as_i64().unwrap() >= not_after);

    // The CA is down: exit 1 with a clear message; the certificate stays.
    pebble.stop();
    let r = tls(d.path(), &["renew", "--force"], &secret);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("keeps serving") && r.stderr.contains("ACME CA at https://127.0.0.1"),
        "{}",
        r.stderr
    );
    let v = json(&tls(d.path(), &["status", "-o", "json"], &secret));
    assert_eq!(v["renewal_due"], false);
}

/// `tls renew` through another provider: DNS_PROVIDER=dnsmasq, Pebble validating through the
/// real dnsmasq that autogit writes and restarts; the challenge lines are gone afterwards.
#[test]
fn renew_through_dnsmasq() {
    use autogit_drivers::testing::dnsmasq::{DnsmasqServer, dnsmasq_or_skip};
    let (Some(bin), Some(pebble_bin)) = (dnsmasq_or_skip(), pebble_or_skip()) else {
        return;
    };
    let server = DnsmasqServer::start(&bin, "").unwrap();
    let pebble = Pebble::start(&pebble_bin, &server.server()).unwrap();
    let d = tempfile::tempdir().unwrap();
    let env = format!(
        "BASE_DOMAIN={ZONE}\nACME_DIRECTORY={}\nACME_CA_ROOT={}\nDNS_PROVIDER=dnsmasq\n\
         DNSMASQ_CONFIG_PATH={}\nDNSMASQ_RELOAD_COMMAND={}\n",
        pebble.directory(),
        pebble.https_root().display(),
        server.config_path().display(),
        server.reload_command()
    );
    fs::write(d.path().join(".env"), env).unwrap();
    fs::set_permissions(d.path().join(".env"), fs::Permissions::from_mode(0o600)).unwrap();

    let v = json(&tls(d.path(), &["renew", "-o", "json"], ""));
    let mut names: Vec<&str> = v["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["*.example.test", "example.test"]);
    let file = fs::read_to_string(server.config_path()).unwrap();
    assert!(!file.contains("_acme-challenge"), "{file}");
}

/// ACME_CHALLENGE=http-01 with the nginx ingress: `tls renew` writes the challenge files into
/// `rendered/acme-http`, which (here) a real nginx serves on the port Pebble validates against,
/// and gets a certificate for the services' own names.
#[test]
fn http01_renew_for_the_service_names() {
    let (Some(named), Some(pebble_bin)) = (named_or_skip(), pebble_or_skip()) else {
        return;
    };
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
    let bind = Bind::start(
        &named,
        &[TestZone::new(
            ZONE,
            "gitlab 60 IN A 127.0.0.1\ngrafana 60 IN A 127.0.0.1\nregistry 60 IN A 127.0.0.1\n",
        )],
    )
    .unwrap();
    let d = tempfile::tempdir().unwrap();
    let webroot = d.path().join("data/rendered/acme-http");
    fs::create_dir_all(&webroot).unwrap();
    let port = autogit_drivers::testing::bind::free_port();
    let ndir = d.path().join("nginx");
    fs::create_dir_all(&ndir).unwrap();
    fs::write(
        ndir.join("nginx.conf"),
        format!(
            "pid {n}/nginx.pid;\nerror_log {n}/error.log;\nevents {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {n};\n  proxy_temp_path {n};\n  server {{\n    listen 127.0.0.1:{port};\n    location ^~ /.well-known/acme-challenge/ {{ root {w}; default_type text/plain; }}\n  }}\n}}\n",
            n = ndir.display(),
            w = webroot.display()
        ),
    )
    .unwrap();
    let _nginx = autogit_drivers::testing::HostNginx::start(
        Path::new(nginx),
        &ndir,
        port,
        &ndir.join("error.log"),
    );
    let pebble = Pebble::start_with_http_port(&pebble_bin, &bind.server(), port).unwrap();
    fs::write(
        d.path().join("autogit.yml"),
        "platform:\n  ingress: nginx\n",
    )
    .unwrap();
    let env = format!(
        "BASE_DOMAIN={ZONE}\nSERVICES_ENABLED=gitlab,grafana\nACME_CHALLENGE=http-01\nACME_DIRECTORY={}\nACME_CA_ROOT={}\n",
        pebble.directory(),
        pebble.https_root().display(),
    );
    fs::write(d.path().join(".env"), env).unwrap();
    fs::set_permissions(d.path().join(".env"), fs::Permissions::from_mode(0o600)).unwrap();
    let v = json(&tls(d.path(), &["renew", "-o", "json"], ""));
    let mut names: Vec<&str> = v["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    names.sort();
    // GitLab's container registry is routed too (on by default with an ingress).
    assert_eq!(
        names,
        [
            "gitlab.example.test",
            "grafana.example.test",
            "registry.example.test"
        ]
    );
    let v = json(&tls(d.path(), &["status", "-o", "json"], ""));
    assert_eq!(v["renewal_due"], false, "{v}");
}

/// The renewal path with a short-lived certificate (Pebble issuing 12-second certificates):
/// not due at first, due after two thirds of its lifetime, then `tls renew` (not forced)
/// replaces it.
#[test]
fn a_short_lived_certificate_is_renewed_when_two_thirds_have_passed() {
    let (Some(named), Some(pebble_bin)) = (named_or_skip(), pebble_or_skip()) else {
        return;
    };
    let bind = Bind::start(&named, &[TestZone::new(ZONE, "")]).unwrap();
    let pebble = Pebble::start_short_lived(&pebble_bin, &bind.server(), 12).unwrap();
    let d = tempfile::tempdir().unwrap();
    let env = format!(
        "BASE_DOMAIN={ZONE}\nACME_DIRECTORY={}\nACME_CA_ROOT={}\nDNS_PROVIDER=rfc2136\nRFC2136_SERVER={}\nRFC2136_TSIG_KEY_NAME={KEY_NAME}\n",
        pebble.directory(),
        pebble.https_root().display(),
        bind.server()
    );
    fs::write(d.path().join(".env"), env).unwrap();
    fs::set_permissions(d.path().join(".env"), fs::Permissions::from_mode(0o600)).unwrap();
    let secret = bind.secret().to_owned();
    let first = json(&tls(d.path(), &["renew", "-o", "json"], &secret));
    let lifetime = first["not_after"].as_i64().unwrap() - first["not_before"].as_i64().unwrap();
    assert!(lifetime <= 13, "a short-lived certificate: {first}");
    let v = json(&tls(d.path(), &["status", "-o", "json"], &secret));
    assert_eq!(v["renewal_due"], false, "{v}");
    // Two thirds of 12 s (plus the second the certificate may have been backdated by).
    std::thread::sleep(std::time::Duration::from_secs(9));
    let v = json(&tls(d.path(), &["status", "-o", "json"], &secret));
    assert_eq!(v["renewal_due"], true, "{v}");
    let renewed = json(&tls(d.path(), &["renew", "-o", "json"], &secret));
    assert!(
        renewed["not_after"].as_i64().unwrap() > first["not_after"].as_i64().unwrap(),
        "{renewed}"
    );
    let v = json(&tls(d.path(), &["status", "-o", "json"], &secret));
    assert_eq!(v["renewal_due"], false, "{v}");
}
