//! `export --from running` in-process: the platform deployed on the in-memory engine by the
//! platform controller, captured back through `ContainerEngine::inspect` and the state
//! store, compared with the configuration (drift), and exported.

mod support;

use autogit_app::export::{self, Format};
use autogit_app::platform::PlatformController;
use autogit_core::state::Origin;
use autogit_drivers::engine::memory::MemoryEngine;
use autogit_drivers::state::Store;
use support::{bus_at, settings};

const CONFIG: &str = "gitlab:\n  resources:\n    preset: minimal\nmirroring:\n  sources:\n    git:\n      - url: https://example.org/a/tool.git\n";
const ENV: &str = "BASE_DOMAIN=example.com\nSERVICES_ENABLED=gitlab,grafana,meilisearch\nMEILI_MASTER_KEY=meili-secret-value\nGF_SECURITY_ADMIN_PASSWORD=grafana-secret-value\n";

async fn deployed(
    dir: &std::path::Path,
) -> (
    PlatformController<MemoryEngine>,
    std::sync::Arc<autogit_app::Settings>,
    autogit_core::plan::Plan,
) {
    deployed_with(dir, CONFIG).await
}

async fn deployed_with(
    dir: &std::path::Path,
    config: &str,
) -> (
    PlatformController<MemoryEngine>,
    std::sync::Arc<autogit_app::Settings>,
    autogit_core::plan::Plan,
) {
    let s = settings(config, ENV, dir);
    let plan = autogit_app::plan::quiet(&s).unwrap();
    let images: Vec<String> = plan.images().iter().map(ToString::to_string).collect();
    let engine = MemoryEngine::new(&images.iter().map(String::as_str).collect::<Vec<_>>());
    let (bus, _clock) = bus_at(1_000_000);
    let p = PlatformController::open(s.clone(), bus, engine, plan.clone())
        .unwrap()
        .without_host_probes();
    p.reconcile_once().await.unwrap();
    p.reconcile_once().await.unwrap();
    p.settle().await;
    (p, s, plan)
}

/// A certificate for `names` where the TLS controller keeps the platform's
/// (`<data>/tls/example.com/`).
fn write_cert(data: &std::path::Path, names: &[&str]) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (chain, key_path) = autogit_drivers::acme::cert_paths(&data.join("tls"), "example.com");
    std::fs::create_dir_all(chain.parent().unwrap()).unwrap();
    std::fs::write(&chain, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
}

#[tokio::test]
async fn what_the_controller_deployed_is_captured_without_drift() {
    let dir = tempfile::tempdir().unwrap();
    let (p, s, plan) = deployed(dir.path()).await;
    write_cert(&s.data_dir, &["*.example.com", "example.com"]);
    Store::open(&s.state_db())
        .unwrap()
        .record_mirror_target("https://example.org/a/tool.git", "mirrors/tool", 1)
        .unwrap();
    let c = export::capture(&s, &p.runtime.engine, &plan).await.unwrap();
    assert_eq!(c.state.origin, Origin::Running);
    assert!(c.drift.is_empty(), "{:#?}", c.drift);
    let names: Vec<&str> = c.state.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "gitlab",
            "grafana",
            "meilisearch",
            "runner-local-cpu",
            "traefik"
        ]
        .iter()
        .copied()
        .filter(|n| plan.service(n).is_some_and(|s| !s.on_demand))
        .collect::<Vec<_>>()
    );
    assert_eq!(c.state.mirrors.len(), 1);
    assert_eq!(c.state.mirrors[0].target, "mirrors/tool");
    assert_eq!(c.state.certificates.len(), 1);
    assert_eq!(
        c.state.certificates[0].dns_names,
        ["*.example.com", "example.com"]
    );
    assert!(c.state.certificates[0].not_after.is_some());
    // The containers hold the secrets' values; the captured state and every export do not.
    let json = serde_json::to_string(&c.state).unwrap();
    for f in [
        Format::Compose,
        Format::Kubernetes,
        Format::Terraform,
        Format::Ansible,
    ] {
        let from_running = export::files(f, &c.state, &s, &plan);
        let from_config = export::files(f, &c.config, &s, &plan);
        assert_eq!(from_running, from_config, "{f:?}");
        for (_, text) in &from_running {
            assert!(!text.contains("meili-secret-value") && !text.contains("grafana-secret-value"));
        }
    }
    assert!(!json.contains("meili-secret-value") && !json.contains("grafana-secret-value"));
}

#[tokio::test]
async fn a_changed_platform_shows_as_drift() {
    let dir = tempfile::tempdir().unwrap();
    let (p, s, plan) = deployed(dir.path()).await;
    {
        let mut g = p.runtime.engine.lock();
        let grafana = g
            .containers
            .values_mut()
            .find(|c| c.spec.service == "grafana")
            .unwrap();
        grafana.spec.image = "grafana/grafana:10.0.0".into();
        grafana
            .spec
            .env
            .insert("ADDED_BY_HAND".into(), "hand-value".into());
        let meili = g
            .containers
            .iter()
            .find(|(_, c)| c.spec.service == "meilisearch")
            .map(|(id, _)| id.clone())
            .unwrap();
        g.containers.remove(&meili);
    }
    // A certificate that does not cover the apex any more.
    write_cert(&s.data_dir, &["*.example.com"]);
    let c = export::capture(&s, &p.runtime.engine, &plan).await.unwrap();
    let found: Vec<String> = c
        .drift
        .iter()
        .map(|d| format!("{} {}", d.service.as_deref().unwrap_or("-"), d.field))
        .collect();
    assert_eq!(
        found,
        [
            "- certificate.wildcard",
            "grafana env.ADDED_BY_HAND",
            "grafana image",
            "meilisearch service"
        ]
    );
    assert!(
        c.drift[0].found.contains("missing example.com"),
        "{:?}",
        c.drift[0]
    );
    // None on disk at all: absent.
    std::fs::remove_dir_all(s.data_dir.join("tls")).unwrap();
    let c = export::capture(&s, &p.runtime.engine, &plan).await.unwrap();
    assert!(
        c.drift
            .iter()
            .any(|d| d.field == "certificate.wildcard" && d.found.starts_with("absent")),
        "{:?}",
        c.drift
    );
    assert!(!format!("{:?}", c.drift).contains("hand-value"));
    // The export of what runs says so: the hand-set variable is asked for, not written.
    let compose = &export::files(Format::Compose, &c.state, &s, &plan)[0].1;
    assert!(
        compose.contains("image: \"grafana/grafana:10.0.0\""),
        "{compose}"
    );
    assert!(
        compose.contains("ADDED_BY_HAND: \"${ADDED_BY_HAND:?"),
        "{compose}"
    );
    assert!(!compose.contains("meilisearch:\n"), "{compose}");
}

#[tokio::test]
async fn an_engine_that_is_down_is_an_error_that_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (p, s, plan) = deployed(dir.path()).await;
    p.runtime.engine.lock().down = true;
    let e = export::capture(&s, &p.runtime.engine, &plan)
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("cannot read the running platform from the engine:"),
        "{e}"
    );
}

/// Runners as the state store recorded them: one registered on a host that answers is no
/// drift; one GitLab created but its host never registered, on a host whose last probe
/// failed, is two differences, each saying what to do; with no record at all, "never
/// registered".
#[tokio::test]
async fn runner_registrations_and_host_probes_are_read_back() {
    use autogit_drivers::state::{HostRow, RegistrationRow};
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{CONFIG}runners:\n  cpu:\n    - name: r1\n      host: local\n  gpu:\n    - name: g1\n      host: 192.0.2.7\n"
    );
    let (p, s, plan) = deployed_with(dir.path(), &config).await;
    write_cert(&s.data_dir, &["*.example.com", "example.com"]);
    let store = Store::open(&s.state_db()).unwrap();
    store
        .record_mirror_target("https://example.org/a/tool.git", "mirrors/tool", 1)
        .unwrap();
    let runner_drift = |c: &export::Captured| -> Vec<String> {
        c.drift
            .iter()
            .filter(|d| {
                d.service
                    .as_deref()
                    .is_some_and(|s| s.starts_with("runner-"))
                    && (d.field == "registration" || d.field == "host")
            })
            .map(|d| format!("{} {}: {}", d.service.as_deref().unwrap(), d.field, d.found))
            .collect()
    };
    // Nothing recorded yet.
    let c = export::capture(&s, &p.runtime.engine, &plan).await.unwrap();
    assert_eq!(
        runner_drift(&c),
        [
            "runner-g1 registration: never registered: `autogit runner register g1`",
            "runner-r1 registration: never registered: `autogit runner register r1`",
        ]
    );
    let reg = |name: &str, host: &str, state: &str| RegistrationRow {
        name: name.into(),
        host: host.into(),
        runner_id: 7,
        secret: format!("runner-token-{name}"),
        state: state.into(),
        at: 1_000_000,
        message: String::new(),
    };
    store
        .set_registration(&reg("r1", "local", "registered"))
        .unwrap();
    store
        .set_registration(&reg("g1", "192.0.2.7", "token"))
        .unwrap();
    store
        .record_host(&HostRow {
            host: "192.0.2.7".into(),
            checked_at: 1_000_000,
            reachable: false,
            inventory: None,
            error: Some("ssh: connect to host 192.0.2.7 port 22: No route to host".into()),
            missed: 3,
        })
        .unwrap();
    let c = export::capture(&s, &p.runtime.engine, &plan).await.unwrap();
    assert_eq!(
        runner_drift(&c),
        [
            "runner-g1 host: not reachable at the last probe (1970-01-12T13:46:40Z): ssh: connect to host 192.0.2.7 port 22: No route to host",
            "runner-g1 registration: created in GitLab, not registered on its host yet: `autogit runner register g1`",
        ]
    );
    // The record is in the captured state; no secret of the registration is.
    let g1 = c.state.runners.iter().find(|r| r.name == "g1").unwrap();
    assert_eq!(
        g1.recorded.as_ref().unwrap().registration.as_deref(),
        Some("token")
    );
    assert!(!format!("{:?}", c.state).contains("runner-token-"));
}

/// With the runner controller, a capture visits the runners' hosts: the runner containers
/// running on `host: local` are counted on the real engine (a container labelled as the
/// runner's, as the on-demand start makes it), and a host that refuses the SSH connection is
/// this capture's probe, not the daemon's last one. A runner kept running
/// (`runners.mode: always`) without a container is drift.
#[tokio::test]
async fn a_capture_visits_the_runners_hosts() {
    use autogit_app::runners::RunnerController;
    use autogit_drivers::state::RegistrationRow;
    let Some(image) = support::job_image_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let name = format!("x{}", std::process::id());
    let container = format!("autogit-runner-{name}");
    struct Gone(String);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", &self.0])
                .output();
        }
    }
    let gone = Gone(container.clone());
    let config = format!(
        "{CONFIG}runners:\n  mode: always\n  cpu:\n    - name: {name}\n      host: local\n  gpu:\n    - name: g1\n      host: 127.0.0.1\n"
    );
    let (p, s, plan) = deployed_with(dir.path(), &config).await;
    let store = Store::open(&s.state_db()).unwrap();
    for (runner, host) in [(name.as_str(), "local"), ("g1", "127.0.0.1")] {
        store
            .set_registration(&RegistrationRow {
                name: runner.into(),
                host: host.into(),
                runner_id: 7,
                secret: format!("runner-token-{runner}"),
                state: "registered".into(),
                at: 1_000_000,
                message: String::new(),
            })
            .unwrap();
    }
    let run = std::process::Command::new("docker")
        .args(["run", "-d", "--name", &container, "--label"])
        .arg(format!("io.autogit.runner={container}"))
        .args([image.as_str(), "sleep", "300"])
        .output()
        .unwrap();
    assert!(run.status.success(), "{run:?}");
    // An SSH port nothing listens on: the connection is refused at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut ssh = s.ssh_config();
    ssh.port = Some(closed);
    ssh.connect_timeout = std::time::Duration::from_secs(3);
    let (bus, clock) = bus_at(2_000_000);
    let runners =
        RunnerController::new(s.clone(), bus, std::sync::Arc::new(clock)).with_ssh_config(ssh);
    let visit = || export::capture_with(&s, &p.runtime.engine, &plan, Some(&runners));
    let c = visit().await.unwrap();
    let rec = |c: &export::Captured, n: &str| {
        c.state
            .runners
            .iter()
            .find(|r| r.name == n)
            .unwrap()
            .recorded
            .clone()
            .unwrap()
    };
    let local = rec(&c, &name);
    assert_eq!(local.containers, Some(1), "{local:?}");
    let probe = local.probe.unwrap();
    assert!(probe.reachable && probe.live && probe.checked_at == 2_000_000);
    let far = rec(&c, "g1");
    assert_eq!(far.containers, None);
    let probe = far.probe.unwrap();
    assert!(!probe.reachable && probe.live, "{probe:?}");
    let drift: Vec<String> = c
        .drift
        .iter()
        .filter(|d| {
            d.service
                .as_deref()
                .is_some_and(|s| s.starts_with("runner-"))
        })
        .map(|d| format!("{} {}: {}", d.service.as_deref().unwrap(), d.field, d.found))
        .collect();
    assert_eq!(drift.len(), 1, "{drift:?}");
    assert!(
        drift[0]
            .starts_with("runner-g1 host: not reachable at the capture (1970-01-24T03:33:20Z): "),
        "{drift:?}"
    );
    // Without the controller, nothing is visited: the store has no probe of either host.
    let c = export::capture(&s, &p.runtime.engine, &plan).await.unwrap();
    assert_eq!(rec(&c, &name).probe, None);
    assert_eq!(rec(&c, &name).containers, None);
    // The runner's container gone: a runner kept running has none, which is drift.
    drop(gone);
    let c = visit().await.unwrap();
    assert_eq!(rec(&c, &name).containers, Some(0));
    let found = c
        .drift
        .iter()
        .find(|d| d.field == "container")
        .map(|d| (d.service.clone(), d.found.clone()));
    assert_eq!(
        found,
        Some((
            Some(format!("runner-{name}")),
            "no runner container running on local: the daemon starts it, or `autogit runner autoscale --once`".to_owned()
        ))
    );
}
