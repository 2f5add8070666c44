//! Wildcard certificates by ACME DNS-01 against real servers: Pebble (Let's Encrypt's ACME
//! test server) validating through a real BIND 9 that autogit updates with RFC 2136 + TSIG;
//! then real nginx serves the certificate and a client that trusts only Pebble's root
//! fetches `https://git.example.test`. Then the CA goes down: issuance fails with a clear
//! error and the old certificate is still served. Without `pebble`, `named` or `nginx` the
//! test says "skipping" and passes, unless `AUTOGIT_REQUIRE_TOOLS` is set.

use autogit_core::dns::RecordType;
use autogit_drivers::acme::{AcmeError, AcmeSettings, issue, read_cert};
use autogit_drivers::dns::DnsProvider;
use autogit_drivers::dns::rfc2136::Rfc2136;
use autogit_drivers::testing::HostNginx;
use autogit_drivers::testing::bind::{Bind, TestZone, free_port, named_or_skip};
use autogit_drivers::testing::pebble::{Pebble, pebble_or_skip};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

const ZONE: &str = "example.test";

fn nginx(dir: &Path, port: u16, chain: &Path, key: &Path) -> Option<HostNginx> {
    let bin = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(bin) = bin else {
        assert!(
            std::env::var_os("AUTOGIT_REQUIRE_TOOLS").is_none(),
            "nginx is required (AUTOGIT_REQUIRE_TOOLS=1)"
        );
        eprintln!("skipping: nginx not installed");
        return None;
    };
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    std::fs::write(
        dir.join("nginx.conf"),
        format!(
            "pid {d}/nginx.pid;\nerror_log {d}/logs/error.log;\nevents {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  server {{\n    listen 127.0.0.1:{port} ssl;\n    server_name *.{ZONE};\n    ssl_certificate {c};\n    ssl_certificate_key {k};\n    location / {{ return 200 \"hello from $host\\n\"; }}\n  }}\n}}\n",
            d = dir.display(),
            c = chain.display(),
            k = key.display(),
        ),
    )
    .unwrap();
    Some(HostNginx::start(
        Path::new(bin),
        dir,
        port,
        &dir.join("logs/error.log"),
    ))
}

async fn fetch(root_pem: &str, port: u16) -> Result<String, String> {
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(root_pem.as_bytes()).unwrap())
        .resolve(
            &format!("git.{ZONE}"),
            format!("127.0.0.1:{port}").parse().unwrap(),
        )
        .build()
        .unwrap();
    let r = client
        .get(format!("https://git.{ZONE}:{port}/"))
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    r.text().await.map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_certificate_by_dns01_served_by_nginx_and_kept_when_the_ca_is_down() {
    let (Some(named), Some(pebble_bin)) = (named_or_skip(), pebble_or_skip()) else {
        return;
    };
    let bind = Bind::start(&named, &[TestZone::new(ZONE, "")]).unwrap();
    let mut pebble = Pebble::start(&pebble_bin, &bind.server()).unwrap();
    let dns = Rfc2136::new(&bind.config(ZONE)).unwrap();
    let work = tempfile::tempdir().unwrap();
    let settings = AcmeSettings {
        directory: pebble.directory(),
        email: Some("admin@example.test".into()),
        ca_root: Some(pebble.https_root()),
        dir: work.path().join("tls"),
        propagation_timeout: Duration::from_secs(20),
        order_timeout: Duration::from_secs(60),
        ttl: 60,
    };
    let lines = std::sync::Mutex::new(Vec::<String>::new());
    let progress = |l: &str| lines.lock().unwrap().push(l.to_owned());
    // SAFETY: umask only sets the process's file creation mask; 022 is the usual one and
    // what the other tests in this binary expect anyway.
    #[allow(unsafe_code)]
    unsafe {
        libc::umask(0o022);
    }

    let cert = issue(&settings, ZONE, &dns, &progress).await.unwrap();
    let mut names = cert.names.clone();
    names.sort();
    assert_eq!(names, ["*.example.test", "example.test"]);
    assert!(cert.not_after > cert.not_before);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&cert.key), 0o600);
    assert_eq!(
        mode(
            &settings
                .dir
                .join(autogit_core::tls::account_file_name(&settings.directory))
        ),
        0o600
    );
    // Keys live in private directories whatever the umask.
    assert_eq!(mode(&settings.dir), 0o700);
    assert_eq!(mode(cert.key.parent().unwrap()), 0o700);
    let l = lines.lock().unwrap().clone();
    assert!(
        l.iter()
            .any(|x| x.contains("adding 2 challenge record(s) at _acme-challenge.example.test")),
        "{l:?}"
    );
    // The challenge records were removed afterwards.
    let zone = dns.list(&[]).await.unwrap();
    assert!(
        !zone
            .iter()
            .any(|r| r.kind == RecordType::Txt && r.name.starts_with("_acme-challenge")),
        "{zone:?}"
    );

    // Real nginx serves it; a client trusting only Pebble's root accepts it.
    let root = pebble.issuing_root().await.unwrap();
    let port = free_port();
    let nginx_dir = work.path().join("nginx");
    let Some(_nginx) = nginx(&nginx_dir, port, &cert.fullchain, &cert.key) else {
        return;
    };
    assert_eq!(
        fetch(&root, port).await.unwrap(),
        format!("hello from git.{ZONE}\n")
    );

    // Renewal reuses the account and replaces the certificate.
    let account_before = std::fs::read(
        settings
            .dir
            .join(autogit_core::tls::account_file_name(&settings.directory)),
    )
    .unwrap();
    let renewed = issue(&settings, ZONE, &dns, &|_| {}).await.unwrap();
    assert_eq!(
        std::fs::read(
            settings
                .dir
                .join(autogit_core::tls::account_file_name(&settings.directory))
        )
        .unwrap(),
        account_before
    );
    assert!(renewed.not_before >= cert.not_before);

    // The CA is down: a clear error, the certificate on disk and in nginx unchanged.
    let on_disk = std::fs::read(&renewed.fullchain).unwrap();
    pebble.stop();
    let e = issue(&settings, ZONE, &dns, &|_| {}).await.unwrap_err();
    assert!(matches!(e, AcmeError::Ca { .. }), "{e}");
    assert!(e.to_string().contains(&settings.directory), "{e}");
    assert_eq!(std::fs::read(&renewed.fullchain).unwrap(), on_disk);
    assert_eq!(
        read_cert(&renewed.fullchain, &renewed.key)
            .unwrap()
            .not_after,
        renewed.not_after
    );
    assert_eq!(
        fetch(&root, port).await.unwrap(),
        format!("hello from git.{ZONE}\n")
    );
}

/// DNS-01 through another provider: Pebble validates through a real dnsmasq whose records the
/// dnsmasq provider writes (and restarts it to load them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_certificate_by_dns01_through_dnsmasq() {
    use autogit_drivers::dns::dnsmasq::Dnsmasq;
    use autogit_drivers::testing::dnsmasq::{DnsmasqServer, dnsmasq_or_skip};
    let (Some(bin), Some(pebble_bin)) = (dnsmasq_or_skip(), pebble_or_skip()) else {
        return;
    };
    let server = DnsmasqServer::start(&bin, "").unwrap();
    let pebble = Pebble::start(&pebble_bin, &server.server()).unwrap();
    let dns = Dnsmasq::new(&server.provider_config()).unwrap();
    let work = tempfile::tempdir().unwrap();
    let settings = AcmeSettings {
        directory: pebble.directory(),
        email: None,
        ca_root: Some(pebble.https_root()),
        dir: work.path().join("tls"),
        propagation_timeout: Duration::from_secs(20),
        order_timeout: Duration::from_secs(60),
        ttl: 60,
    };
    let cert = issue(&settings, ZONE, &dns, &|_| {}).await.unwrap();
    let mut names = cert.names.clone();
    names.sort();
    assert_eq!(names, ["*.example.test", "example.test"]);
    // The challenge lines were removed afterwards.
    let left = dns.list(&[]).await.unwrap();
    assert!(left.is_empty(), "{left:?}");
}

/// HTTP-01 for explicit names (no wildcard): the key authorizations are files in a webroot
/// that real nginx serves on the port Pebble validates against; the names resolve (through the
/// test's BIND) to that nginx. The files are gone afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_certificate_for_service_names_through_an_nginx_webroot() {
    let (Some(named), Some(pebble_bin)) = (named_or_skip(), pebble_or_skip()) else {
        return;
    };
    let bind = Bind::start(
        &named,
        &[TestZone::new(
            ZONE,
            "git 60 IN A 127.0.0.1\ngrafana 60 IN A 127.0.0.1\n",
        )],
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let webroot = work.path().join("acme-http");
    std::fs::create_dir_all(&webroot).unwrap();
    let http_port = free_port();
    let Some(bin) = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        assert!(
            std::env::var_os("AUTOGIT_REQUIRE_TOOLS").is_none(),
            "nginx is required"
        );
        return;
    };
    let ndir = work.path().join("nginx");
    std::fs::create_dir_all(ndir.join("logs")).unwrap();
    std::fs::write(
        ndir.join("nginx.conf"),
        format!(
            "pid {d}/nginx.pid;\nerror_log {d}/logs/error.log;\nevents {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  server {{\n    listen 127.0.0.1:{http_port};\n    location ^~ /.well-known/acme-challenge/ {{ root {w}; default_type text/plain; }}\n    location / {{ return 308 https://$host$request_uri; }}\n  }}\n}}\n",
            d = ndir.display(),
            w = webroot.display(),
        ),
    )
    .unwrap();
    let _nginx = HostNginx::start(
        Path::new(bin),
        &ndir,
        http_port,
        &ndir.join("logs/error.log"),
    );
    let pebble = Pebble::start_with_http_port(&pebble_bin, &bind.server(), http_port).unwrap();
    let settings = AcmeSettings {
        directory: pebble.directory(),
        email: None,
        ca_root: Some(pebble.https_root()),
        dir: work.path().join("tls"),
        propagation_timeout: Duration::from_secs(20),
        order_timeout: Duration::from_secs(60),
        ttl: 60,
    };
    let names = vec![format!("git.{ZONE}"), format!("grafana.{ZONE}")];
    let cert = autogit_drivers::acme::issue_http01(&settings, ZONE, &names, &webroot, &|_| {})
        .await
        .unwrap();
    let mut got = cert.names.clone();
    got.sort();
    assert_eq!(got, names);
    let left: Vec<_> = std::fs::read_dir(webroot.join(".well-known/acme-challenge"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "challenge files are removed afterwards");
    // A wildcard cannot be had this way.
    let e = autogit_drivers::acme::issue_http01(
        &settings,
        ZONE,
        &[format!("*.{ZONE}")],
        &webroot,
        &|_| {},
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("wildcard needs DNS-01"), "{e}");
}
