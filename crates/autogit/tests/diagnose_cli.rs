//! `autogit diagnose` through the real binary against deliberately broken setups: on the real
//! engine with the stand-in GitLab image (a stopped service, its port taken by another
//! listener, a human-intervention flag, `--fix`), a certificate that expired (made with
//! rcgen), a name pointing elsewhere on a real BIND 9, a runner host that refuses SSH, and a
//! support bundle searched for every secret planted in the configuration, `.env`, the state
//! store and a container's log.

mod common;
use autogit_drivers::state::Store;
use autogit_drivers::testing::bind::{Bind, KEY_NAME, TestZone, named_or_skip};
use common::*;
use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    autogit_drivers::testing::bind::free_port()
}

fn write_env(dir: &Path, text: &str) {
    fs::write(dir.join(".env"), text).unwrap();
    fs::set_permissions(dir.join(".env"), fs::Permissions::from_mode(0o600)).unwrap();
}

/// `diagnose ARGS -o json` in `dir` (its autogit.yml, .env and data dir); the exit code and
/// the document.
fn diagnose(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, Value) {
    let mut a = vec!["diagnose", "-o", "json"];
    a.extend_from_slice(args);
    let mut e: Vec<(String, String)> = platform_env(dir);
    e.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    let pairs: Vec<(&str, &str)> = e.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = run_env(dir, &a, &pairs);
    let v: Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", r.stdout, r.stderr));
    (r.code, v)
}

fn check<'a>(v: &'a Value, id: &str) -> &'a Value {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id} in {v:#}"))
}

/// A platform of the stand-in GitLab on three free ports, removed when dropped.
struct Platform {
    dir: tempfile::TempDir,
    project: String,
    http: u16,
}

impl Platform {
    fn new(name: &str, version: &str, extra: &str) -> Platform {
        let dir = tempfile::tempdir().unwrap();
        let project = format!("agt-dx-{name}-{}", std::process::id());
        let http = free_port();
        let config = format!(
            "gitlab:\n  image: autogit-test/gitlab-ce\n  version: \"{version}\"\n  ports: {{http: {http}, https: {}, ssh: {}}}\n  resources: {{preset: minimal, cpu: 0.5, memory: 64M}}\n  start_period: 3s\nrunners: {{}}\nhealth:\n  check_interval: 1s\n  timeout: 1s\n  failure_threshold: 1\n  reconcile_interval: 2s\nplatform:\n  project: {project}\n{extra}",
            free_port(),
            free_port()
        );
        fs::write(dir.path().join("autogit.yml"), config).unwrap();
        write_env(dir.path(), "");
        Platform { dir, project, http }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn run(&self, args: &[&str]) -> Run {
        let e = platform_env(self.path());
        let pairs: Vec<(&str, &str)> = e.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run_env(self.path(), args, &pairs)
    }
    fn container(&self) -> String {
        format!("{}-gitlab", self.project)
    }
    fn install(&self) {
        let r = self.run(&["install", "--wait", "60s", "--no-bootstrap", "-q"]);
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    }
    /// `diagnose` until `pred` holds for its document (or panics after `secs`).
    fn diagnose_until(&self, args: &[&str], secs: u64, pred: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let (_, v) = diagnose(self.path(), args, &[]);
            if pred(&v) {
                return v;
            }
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "timed out: {v:#}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        let _ = self.run(&["down", "--volumes", "--yes"]);
        remove_project_leftovers(&self.project);
    }
}

#[test]
fn a_stopped_service_its_taken_port_and_a_flag_are_reported_and_fixed() {
    if !have_engine() {
        return;
    }
    fake_gitlab_image("0.0.2", &[]);
    let p = Platform::new("svc", "0.0.2", "");
    p.install();
    let only = [
        "--only", "service", "--only", "port", "--only", "flag", "--only", "engine",
    ];
    let (code, v) = diagnose(p.path(), &only, &[]);
    assert_eq!(check(&v, "service.gitlab")["status"], "ok", "{v:#}");
    let port_id = format!("port.gitlab.{}", p.http);
    assert_eq!(check(&v, &port_id)["status"], "ok", "{v:#}");
    assert_eq!(check(&v, "engine")["status"], "ok", "{v:#}");
    assert!(
        check(&v, "engine")["evidence"]
            .as_str()
            .unwrap()
            .contains("storage driver"),
        "{v:#}"
    );
    // The build machine's own free space may warn (`engine.disk`, `engine.storage`: below 15%
    // or 5 GiB); nothing else may.
    assert_eq!(code, if host_disk_warns(&v) { 10 } else { 0 }, "{v:#}");

    // GitLab's health endpoint on its published port (the stand-in serves only /-/health).
    let (_, v) = diagnose(p.path(), &["--only", "gitlab.health"], &[]);
    assert_eq!(check(&v, "gitlab.health")["status"], "ok", "{v:#}");

    // The service stopped: a failure whose fix is a reconcile, which --fix may apply.
    docker(&["stop", "-t", "1", &p.container()]);
    // GitLab's endpoints are not asked of a stopped GitLab: the service check says it.
    let (_, v) = diagnose(p.path(), &["--only", "gitlab"], &[]);
    assert_eq!(check(&v, "gitlab")["status"], "skip", "{v:#}");
    let (code, v) = diagnose(p.path(), &only, &[]);
    assert_eq!(code, 11, "{v:#}");
    assert_eq!(v["worst"], "fail");
    let svc = check(&v, "service.gitlab");
    assert_eq!(svc["status"], "fail", "{v:#}");
    assert!(
        svc["evidence"].as_str().unwrap().contains("exited"),
        "{svc}"
    );
    assert!(
        svc["fix"].as_str().unwrap().contains("autogit reconcile"),
        "{svc}"
    );
    assert_eq!(svc["safe_fix"], "reconcile");
    // Its port is free while it is down.
    assert_eq!(check(&v, &port_id)["status"], "ok", "{v:#}");

    // Another process takes the port: the service could not start.
    let squatter = std::net::TcpListener::bind(("0.0.0.0", p.http)).unwrap();
    let (_, v) = diagnose(p.path(), &only, &[]);
    let port = check(&v, &port_id);
    assert_eq!(port["status"], "fail", "{v:#}");
    assert!(
        port["evidence"].as_str().unwrap().contains("taken"),
        "{port}"
    );
    let fix = port["fix"].as_str().unwrap();
    assert!(
        fix.contains(&format!("sport = :{}", p.http)) && fix.contains("gitlab.ports.http"),
        "{fix}"
    );
    // --only selects one check.
    let (_, v) = diagnose(p.path(), &["--only", &port_id], &[]);
    assert_eq!(v["checks"].as_array().unwrap().len(), 1, "{v:#}");
    drop(squatter);

    // --fix starts it through the platform controller, then looks again.
    let (_, v) = diagnose(p.path(), &["--fix", "--only", "service"], &[]);
    assert_eq!(v["fixes"][0]["fix"], "reconcile", "{v:#}");
    assert_eq!(v["fixes"][0]["ok"], true, "{v:#}");
    assert_eq!(v["before_fixes"][0]["status"], "fail", "{v:#}");
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Running}}", &p.container()]),
        "true"
    );
    p.diagnose_until(&["--only", "service"], 60, |v| {
        check(v, "service.gitlab")["status"] == "ok"
    });

    // A human-intervention flag, as the runtime raises it when the restart budget is spent.
    Store::open(&p.path().join("data/state.db"))
        .unwrap()
        .set_flag("gitlab", "restart budget exhausted (3 in 10m)")
        .unwrap();
    docker(&["stop", "-t", "1", &p.container()]);
    let (code, v) = diagnose(p.path(), &["--only", "flag", "--only", "service"], &[]);
    assert_eq!(code, 11);
    let flag = check(&v, "flag.gitlab");
    assert_eq!(flag["status"], "fail", "{v:#}");
    assert!(
        flag["evidence"].as_str().unwrap().contains("budget"),
        "{flag}"
    );
    assert!(
        flag["fix"]
            .as_str()
            .unwrap()
            .contains("autogit reconcile --clear gitlab"),
        "{flag}"
    );
    // A flagged service is a person's decision: no safe fix, and --fix leaves it stopped.
    assert_eq!(
        check(&v, "service.gitlab")["safe_fix"],
        Value::Null,
        "{v:#}"
    );
    let (_, v) = diagnose(p.path(), &["--fix", "--only", "service"], &[]);
    assert_eq!(v["fixes"].as_array().unwrap().len(), 0, "{v:#}");
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Running}}", &p.container()]),
        "false"
    );
    // The table says the same, with the fix.
    let r = p.run(&["diagnose", "--only", "flag"]);
    assert_eq!(r.code, 11);
    assert!(
        r.stdout.contains("FAIL") && r.stdout.contains("flag.gitlab"),
        "{}",
        r.stdout
    );
}

fn write_cert(data: &Path, domain: &str, names: &[&str], not_before: i64, not_after: i64) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
            .unwrap();
    let (y, m, d) = ymd(not_before);
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = ymd(not_after);
    params.not_after = rcgen::date_time_ymd(y, m, d);
    let cert = params.self_signed(&key).unwrap();
    let (chain, key_path) = autogit_drivers::acme::cert_paths(&data.join("tls"), domain);
    fs::create_dir_all(chain.parent().unwrap()).unwrap();
    fs::write(&chain, cert.pem()).unwrap();
    fs::write(&key_path, key.serialize_pem()).unwrap();
}

#[test]
fn a_chain_without_its_intermediate_fails_and_a_whole_one_passes() {
    let d = tempfile::tempdir().unwrap();
    fs::write(d.path().join("autogit.yml"), "runners: {}\n").unwrap();
    write_env(
        d.path(),
        "BASE_DOMAIN=example.test\nACME_EMAIL=ops@example.test\nDNS_PROVIDER=manual\n",
    );
    // A CA, and a leaf for the platform's names issued by it.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "autogit test intermediate");
    let ca = rcgen::CertifiedIssuer::self_signed(ca, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf =
        rcgen::CertificateParams::new(vec!["*.example.test".to_owned(), "example.test".to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
    let (chain, key_path) =
        autogit_drivers::acme::cert_paths(&d.path().join("data/tls"), "example.test");
    fs::create_dir_all(chain.parent().unwrap()).unwrap();
    fs::write(&key_path, key.serialize_pem()).unwrap();

    fs::write(&chain, leaf.pem()).unwrap();
    let (code, v) = diagnose(d.path(), &["--only", "tls"], &[]);
    assert_eq!(code, 11, "{v:#}");
    assert_eq!(check(&v, "tls.certificate")["status"], "ok", "{v:#}");
    let c = check(&v, "tls.chain");
    assert_eq!(c["status"], "fail", "{v:#}");
    assert!(
        c["evidence"].as_str().unwrap().contains("only the leaf"),
        "{c}"
    );

    fs::write(&chain, format!("{}{}", leaf.pem(), ca.pem())).unwrap();
    let (code, v) = diagnose(d.path(), &["--only", "tls"], &[]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(check(&v, "tls.chain")["status"], "ok", "{v:#}");
}

/// The UTC day of `unix` (rcgen takes dates at day resolution).
fn ymd(unix: i64) -> (i32, u8, u8) {
    let (y, m, d) = autogit_core::civil::civil_from_days(unix.div_euclid(86_400)).unwrap();
    (y as i32, m as u8, d as u8)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn an_expired_certificate_fails_with_a_renewal_as_its_fix() {
    let d = tempfile::tempdir().unwrap();
    fs::write(d.path().join("autogit.yml"), "runners: {}\n").unwrap();
    write_env(
        d.path(),
        "BASE_DOMAIN=example.test\nACME_EMAIL=ops@example.test\nDNS_PROVIDER=manual\n",
    );
    let data = d.path().join("data");
    let names = ["*.example.test", "example.test"];
    let day = 86_400;
    write_cert(
        &data,
        "example.test",
        &names,
        now() - 100 * day,
        now() - 2 * day,
    );
    let (code, v) = diagnose(d.path(), &["--only", "tls.certificate"], &[]);
    assert_eq!(code, 11, "{v:#}");
    let c = check(&v, "tls.certificate");
    assert_eq!(c["status"], "fail", "{v:#}");
    assert!(
        c["evidence"]
            .as_str()
            .unwrap()
            .contains("expired 2 days ago"),
        "{c}"
    );
    assert!(
        c["fix"].as_str().unwrap().contains("autogit tls renew"),
        "{c}"
    );
    assert_eq!(c["safe_fix"], "renew_certificate");

    // Fresh: ok. Near its end: a warning. Missing the wildcard: a failure.
    write_cert(&data, "example.test", &names, now() - day, now() + 89 * day);
    let (code, v) = diagnose(d.path(), &["--only", "tls.certificate"], &[]);
    assert_eq!(
        (code, &check(&v, "tls.certificate")["status"]),
        (0, &"ok".into()),
        "{v:#}"
    );
    write_cert(
        &data,
        "example.test",
        &names,
        now() - 80 * day,
        now() + 5 * day,
    );
    let (code, v) = diagnose(d.path(), &["--only", "tls.certificate"], &[]);
    assert_eq!(
        (code, &check(&v, "tls.certificate")["status"]),
        (10, &"warn".into()),
        "{v:#}"
    );
    write_cert(
        &data,
        "example.test",
        &["example.test"],
        now() - day,
        now() + 89 * day,
    );
    let (_, v) = diagnose(d.path(), &["--only", "tls.certificate"], &[]);
    let c = check(&v, "tls.certificate");
    assert!(
        c["evidence"]
            .as_str()
            .unwrap()
            .contains("not *.example.test"),
        "{c}"
    );
}

#[tokio::test]
async fn a_name_pointing_elsewhere_on_bind_is_reported_with_the_sync_as_fix() {
    let Some(named) = named_or_skip() else {
        return;
    };
    let bind = Bind::start(
        &named,
        &[TestZone::new(
            "example.test",
            "gitlab 300 IN A 198.51.100.9\nregistry 300 IN A 203.0.113.7\n",
        )],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let d = tempfile::tempdir().unwrap();
    fs::write(d.path().join("autogit.yml"), "runners: {}\n").unwrap();
    write_env(
        d.path(),
        &format!(
            "BASE_DOMAIN=example.test\nINGRESS_IP=203.0.113.7\nSERVICES_ENABLED=gitlab\nDNS_PROVIDER=rfc2136\nRFC2136_SERVER={}\nRFC2136_TSIG_KEY_NAME={KEY_NAME}\nRFC2136_TSIG_SECRET={}\n",
            bind.server(),
            bind.secret()
        ),
    );
    let dir = d.path().to_owned();
    let (code, v) = tokio::task::spawn_blocking(move || diagnose(&dir, &["--only", "dns"], &[]))
        .await
        .unwrap();
    assert_eq!(code, 11, "{v:#}");
    let c = check(&v, "dns.gitlab.example.test");
    assert_eq!(c["status"], "fail", "{v:#}");
    let ev = c["evidence"].as_str().unwrap();
    assert!(
        ev.contains("198.51.100.9") && ev.contains("203.0.113.7") && ev.contains("RFC2136_SERVER"),
        "{ev}"
    );
    assert!(
        c["fix"].as_str().unwrap().contains("autogit dns sync"),
        "{c}"
    );
}

#[tokio::test]
async fn a_public_resolver_with_another_answer_is_a_warning_beside_the_configured_one() {
    let Some(named) = named_or_skip() else {
        return;
    };
    let zone = |ip: &str| {
        TestZone::new(
            "example.test",
            &format!("@ 300 IN A {ip}\n* 300 IN A {ip}\ngitlab 300 IN A {ip}\n"),
        )
    };
    // The zone autogit manages, right; and "the world's" copy, stale.
    let managed = Bind::start(&named, &[zone("203.0.113.7")]).unwrap_or_else(|e| panic!("{e}"));
    let public = Bind::start(&named, &[zone("198.51.100.9")]).unwrap_or_else(|e| panic!("{e}"));
    let d = tempfile::tempdir().unwrap();
    fs::write(d.path().join("autogit.yml"), "runners: {}\n").unwrap();
    write_env(
        d.path(),
        &format!(
            "BASE_DOMAIN=example.test\nINGRESS_IP=203.0.113.7\nSERVICES_ENABLED=gitlab\nDNS_PROVIDER=rfc2136\nRFC2136_SERVER={}\nRFC2136_TSIG_KEY_NAME={KEY_NAME}\nRFC2136_TSIG_SECRET={}\n",
            managed.server(),
            managed.secret()
        ),
    );
    let (dir, server) = (d.path().to_owned(), public.server());
    let (code, v) = tokio::task::spawn_blocking(move || {
        diagnose(
            &dir,
            &[
                "--only",
                "dns.gitlab.example.test",
                "--only",
                "dns.public.gitlab.example.test",
                "--only",
                "config",
            ],
            &[("AUTOGIT_PUBLIC_RESOLVER", &server)],
        )
    })
    .await
    .unwrap();
    assert_eq!(
        check(&v, "dns.gitlab.example.test")["status"],
        "ok",
        "{v:#}"
    );
    // The variable is autogit's own: no "neither a setting nor an override" warning.
    assert_eq!(check(&v, "config")["status"], "ok", "{v:#}");
    let p = check(&v, "dns.public.gitlab.example.test");
    assert_eq!(p["status"], "warn", "{v:#}");
    assert!(
        p["evidence"].as_str().unwrap().contains("198.51.100.9"),
        "{p}"
    );
    assert_eq!(code, 10);
    // Turned off: only the configured resolver.
    let dir = d.path().to_owned();
    let (_, v) = tokio::task::spawn_blocking(move || {
        diagnose(
            &dir,
            &["--only", "dns"],
            &[("AUTOGIT_PUBLIC_RESOLVER", "none")],
        )
    })
    .await
    .unwrap();
    assert!(!v.to_string().contains("dns.public."), "{v:#}");
}

#[test]
fn a_runner_host_that_refuses_ssh_fails_with_the_way_to_check_it() {
    let d = tempfile::tempdir().unwrap();
    let port = free_port(); // nothing listens there once the probe runs
    fs::write(
        d.path().join("autogit.yml"),
        "runners:\n  cpu:\n    - name: far\n      host: 127.0.0.1\n",
    )
    .unwrap();
    write_env(d.path(), "");
    let ssh_config = d.path().join("ssh_config");
    fs::write(&ssh_config, format!("Host *\n  Port {port}\n")).unwrap();
    let start = Instant::now();
    let (code, v) = diagnose(
        d.path(),
        &["--only", "runner", "--timeout", "20s"],
        &[("AUTOGIT_SSH_CONFIG", ssh_config.to_str().unwrap())],
    );
    assert_eq!(code, 11, "{v:#}");
    let c = check(&v, "runner.127.0.0.1");
    assert_eq!(c["status"], "fail", "{v:#}");
    assert!(
        c["evidence"].as_str().unwrap().contains("not reachable"),
        "{c}"
    );
    assert!(
        c["fix"].as_str().unwrap().contains("autogit runner health"),
        "{c}"
    );
    assert!(start.elapsed() < Duration::from_secs(20));
    // Never registered: it takes no jobs, and the fix says how.
    let reg = check(&v, "runner.far.registration");
    assert_eq!(reg["status"], "warn", "{v:#}");
    assert_eq!(reg["fix"], "`autogit runner register far`", "{reg}");
}

#[test]
fn a_check_that_hangs_is_abandoned_and_the_others_finish() {
    // An engine socket that accepts and never answers.
    let d = tempfile::tempdir().unwrap();
    let sock = d.path().join("hung.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    fs::write(
        d.path().join("autogit.yml"),
        format!("runners: {{}}\nplatform:\n  socket: {}\n", sock.display()),
    )
    .unwrap();
    write_env(d.path(), "");
    let start = Instant::now();
    let (code, v) = diagnose(d.path(), &["--timeout", "2s"], &[]);
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(code, 11, "{v:#}");
    let e = check(&v, "engine");
    assert_eq!(e["status"], "fail", "{v:#}");
    assert!(e["evidence"].as_str().unwrap().contains("2s"), "{e}");
    // Judged although the engine hangs (ok, or a warning on a full build machine).
    let disk = check(&v, "engine.disk")["status"].clone();
    assert!(disk == "ok" || disk == "warn", "{v:#}");
    assert_eq!(check(&v, "config")["status"], "ok", "{v:#}");
}

/// Whether this machine's own disks are what makes `diagnose` warn (tests cannot choose the
/// free space of the machine they run on).
fn host_disk_warns(v: &Value) -> bool {
    ["engine.disk", "engine.storage"]
        .iter()
        .any(|id| check(v, id)["status"] == "warn")
}

/// Every spelling the bundle must not contain: the value, its base64 (standard and URL-safe,
/// padded or not) and its hex.
fn spellings(secret: &str) -> Vec<String> {
    use base64::Engine;
    let b = secret.as_bytes();
    vec![
        secret.to_owned(),
        base64::engine::general_purpose::STANDARD.encode(b),
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(b),
        base64::engine::general_purpose::URL_SAFE.encode(b),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b),
        b.iter().map(|x| format!("{x:02x}")).collect(),
    ]
}

const LOG_SECRET: &str = "Pl4nted-Log-Secret-6f1c9e";
const TSIG_SECRET: &str = "c2VjcmV0LXRzaWcta2V5LTEyMzQ1Njc4OTA=";

#[test]
fn the_bundle_holds_no_planted_secret_in_any_spelling() {
    if !have_engine() {
        return;
    }
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(LOG_SECRET);
    // A GitLab stand-in that prints a secret, plain and in base64, before it serves.
    let script = format!(
        "echo 'login token={LOG_SECRET} ok'; echo 'Authorization: Basic {b64}'; echo 'tsig {TSIG_SECRET}'; exec /bin/httpd -f -v -p 80 -h /www"
    );
    fake_gitlab_image("0.0.24", &["/bin/sh", "-c", &script]);
    let hook = "https://hooks.example.test/services/T000/B000/Pl4ntedHookPath";
    let p = Platform::new(
        "bundle",
        "0.0.24",
        &format!(
            "  # the ops token: {LOG_SECRET}\nmirroring:\n  sources:\n    git:\n      - name: m1\n        url: https://git.example.test/a.git\n        token_env: MIRROR_TOKEN\n"
        ),
    );
    // The webhook of health.notify: its URL is a credential (Slack-style) and it signs with
    // HOOK_SECRET.
    let yml = fs::read_to_string(p.path().join("autogit.yml"))
        .unwrap()
        .replace(
            "  reconcile_interval: 2s\n",
            &format!("  reconcile_interval: 2s\n  notify:\n    - {{type: webhook, url: \"{hook}\", secret_env: HOOK_SECRET}}\n    - {{type: slack, url_env: SLACK_HOOK, events: [flag_raised]}}\n    - {{type: matrix, homeserver: \"https://matrix.example.test\", room: \"!r00m:example.test\", token_env: MATRIX_ACCESS, events: [flag_raised]}}\n"),
        );
    fs::write(p.path().join("autogit.yml"), yml).unwrap();
    let secrets = [
        LOG_SECRET,
        TSIG_SECRET,
        "glpat-Pl4ntedMirrorTok3n",
        "Pl4nted-Hook-Signing-Secret",
        "Pl4nted_Grafana_Pw_77",
        hook,
        // Notifier secrets under names that do not look secret, in the process environment.
        "https://hooks.slack.example.test/services/T1/B1/Pl4ntedSlackPath",
        "Pl4ntedMatrixAccess7",
    ];
    write_env(
        p.path(),
        &format!(
            "SERVICES_ENABLED=gitlab\nMY_API_TOKEN={LOG_SECRET}\nRFC2136_TSIG_SECRET={TSIG_SECRET}\nMIRROR_TOKEN={}\nHOOK_SECRET={}\nexport GF_SECURITY_ADMIN_PASSWORD=\"{}\"\n",
            secrets[2], secrets[3], secrets[4]
        ),
    );
    p.install();
    // The state store: an event whose detail carries secrets (an error message that quoted one).
    let store = Store::open(&p.path().join("data/state.db")).unwrap();
    store
        .event(
            now() as u64,
            Some("gitlab"),
            "controller_failed",
            &serde_json::json!({"error": format!("401 for token {} (hex {})", secrets[2], spellings(secrets[3])[5])}).to_string(),
        )
        .unwrap();
    // A notifier's failure that quoted its URL and a token it sent.
    store
        .event(
            now() as u64,
            None,
            "webhook_failed",
            &serde_json::json!({"error": format!("delivery to {} failed, then {} was refused", secrets[6], secrets[7])}).to_string(),
        )
        .unwrap();
    drop(store);
    // Let the container print.
    std::thread::sleep(Duration::from_secs(1));
    let bundle = p.path().join("out/diag.tar.gz");
    // The notifiers' secrets come from the process environment (a systemd unit's
    // Environment=, a container's -e), under names that do not look secret: known because
    // the configuration names them.
    let (_, v) = diagnose(
        p.path(),
        &["--bundle", bundle.to_str().unwrap()],
        &[("SLACK_HOOK", secrets[6]), ("MATRIX_ACCESS", secrets[7])],
    );
    assert!(v["bundle"]["files"].is_array(), "{v:#}");
    assert_eq!(
        fs::metadata(&bundle).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let out = p.path().join("extracted");
    fs::create_dir_all(&out).unwrap();
    let st = std::process::Command::new("tar")
        .args([
            "-xzf",
            bundle.to_str().unwrap(),
            "-C",
            out.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let mut files = Vec::new();
    let mut stack = vec![out.clone()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                files.push(e.path());
            }
        }
    }
    let names: Vec<String> = files
        .iter()
        .map(|f| f.strip_prefix(&out).unwrap().display().to_string())
        .collect();
    for want in [
        "autogit-diagnose/checks.json",
        "autogit-diagnose/config/autogit.yml",
        "autogit-diagnose/config/env",
        "autogit-diagnose/plan.json",
        "autogit-diagnose/state/events.json",
        "autogit-diagnose/state/transitions.json",
        "autogit-diagnose/logs/gitlab.log",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    let mut total = 0;
    for f in &files {
        let bytes = fs::read(f).unwrap();
        total += bytes.len();
        for s in secrets {
            for sp in spellings(s) {
                assert!(
                    !bytes.windows(sp.len()).any(|w| w == sp.as_bytes()),
                    "{} holds {sp:?} (a spelling of a planted secret)",
                    f.display()
                );
            }
        }
    }
    // The secrets were there to find, and the useful parts stayed.
    let log = fs::read_to_string(out.join("autogit-diagnose/logs/gitlab.log")).unwrap();
    assert!(
        log.contains("login token=") && log.contains("<redacted>"),
        "{log}"
    );
    let env = fs::read_to_string(out.join("autogit-diagnose/config/env")).unwrap();
    assert!(
        env.contains("SERVICES_ENABLED=gitlab") && env.contains("MY_API_TOKEN=<redacted>"),
        "{env}"
    );
    let events = fs::read_to_string(out.join("autogit-diagnose/state/events.json")).unwrap();
    assert!(events.contains("401 for token"), "{events}");
    assert!(total > 1000, "{total} bytes");
}

#[tokio::test]
async fn dnssec_tells_a_signed_zone_from_an_unsigned_one_on_bind() {
    let Some(named) = named_or_skip() else {
        return;
    };
    let bind = Bind::start(
        &named,
        &[
            TestZone::new("signed.test", "gitlab 300 IN A 203.0.113.7\n").signed(),
            TestZone::new("plain.test", "gitlab 300 IN A 203.0.113.7\n"),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let dir_for = |zone: &str| {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("autogit.yml"), "runners: {}\n").unwrap();
        write_env(
            d.path(),
            &format!(
                "BASE_DOMAIN={zone}\nINGRESS_IP=203.0.113.7\nSERVICES_ENABLED=gitlab\nDNS_PROVIDER=rfc2136\nRFC2136_SERVER={}\nRFC2136_TSIG_KEY_NAME={KEY_NAME}\nRFC2136_TSIG_SECRET={}\n",
                bind.server(),
                bind.secret()
            ),
        );
        d
    };
    let ask = |d: std::path::PathBuf| async move {
        tokio::task::spawn_blocking(move || diagnose(&d, &["--only", "dns.dnssec"], &[]))
            .await
            .unwrap()
    };
    let plain = dir_for("plain.test");
    let (code, v) = ask(plain.path().to_owned()).await;
    assert_eq!(code, 10, "{v:#}");
    let c = check(&v, "dns.dnssec");
    assert_eq!(c["status"], "warn", "{v:#}");
    assert!(
        c["evidence"].as_str().unwrap().contains("not signed"),
        "{c}"
    );
    assert!(c["fix"].as_str().unwrap().contains("dnssec-policy"), "{c}");
    // `dns plan` says the same.
    let dir = plain.path().to_owned();
    let r = tokio::task::spawn_blocking(move || {
        let data = dir.join("data");
        run(
            &dir,
            &[
                "dns",
                "plan",
                "-o",
                "json",
                "--data-dir",
                data.to_str().unwrap(),
            ],
        )
    })
    .await
    .unwrap();
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let plan: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(plan["dnssec"]["status"], "warn", "{plan:#}");

    // BIND signs the zone a moment after loading it.
    let signed = dir_for("signed.test");
    let start = Instant::now();
    loop {
        let (code, v) = ask(signed.path().to_owned()).await;
        let c = check(&v, "dns.dnssec");
        if c["status"] == "ok" {
            assert_eq!(code, 0, "{v:#}");
            assert!(
                c["evidence"]
                    .as_str()
                    .unwrap()
                    .contains("signed (DNSKEY, RRSIG)"),
                "{c}"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never signed: {v:#}\n{}",
            bind.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[test]
fn fix_renews_an_expired_certificate_through_pebble_and_bind() {
    let (Some(named), Some(pebble_bin)) = (
        named_or_skip(),
        autogit_drivers::testing::pebble::pebble_or_skip(),
    ) else {
        return;
    };
    let bind = Bind::start(&named, &[TestZone::new("example.test", "")]).unwrap();
    let pebble =
        autogit_drivers::testing::pebble::Pebble::start(&pebble_bin, &bind.server()).unwrap();
    let d = tempfile::tempdir().unwrap();
    fs::write(d.path().join("autogit.yml"), "runners: {}\n").unwrap();
    write_env(
        d.path(),
        &format!(
            "BASE_DOMAIN=example.test\nACME_EMAIL=admin@example.test\nACME_DIRECTORY={}\nACME_CA_ROOT={}\nDNS_PROVIDER=rfc2136\nRFC2136_SERVER={}\nRFC2136_TSIG_KEY_NAME={KEY_NAME}\n",
            pebble.directory(),
            pebble.https_root().display(),
            bind.server()
        ),
    );
    let day = 86_400;
    let names = ["*.example.test", "example.test"];
    write_cert(
        &d.path().join("data"),
        "example.test",
        &names,
        now() - 100 * day,
        now() - day,
    );
    let secret = bind.secret().to_owned();
    let env = [("RFC2136_TSIG_SECRET", secret.as_str())];
    let (code, v) = diagnose(
        d.path(),
        &["--only", "tls", "--fix", "--timeout", "60s"],
        &env,
    );
    assert_eq!(v["before_fixes"][0]["id"], "tls.certificate", "{v:#}");
    assert_eq!(v["before_fixes"][0]["status"], "fail", "{v:#}");
    let fix = &v["fixes"][0];
    assert_eq!(fix["fix"], "renew_certificate", "{v:#}");
    assert_eq!(fix["ok"], true, "{v:#}");
    // After the fix: a fresh certificate, served with Pebble's intermediate.
    assert_eq!(check(&v, "tls.certificate")["status"], "ok", "{v:#}");
    assert_eq!(check(&v, "tls.chain")["status"], "ok", "{v:#}");
    assert_eq!(code, 0, "{v:#}");
    assert!(!v.to_string().contains(&secret), "the TSIG secret leaked");
}
