//! Runner registration through the runner controller against a real `sshd` in a network
//! namespace (`autogit_drivers::testing::netns`). GitLab and gitlab-runner cannot run here:
//! GitLab is the drivers' fake REST server, and the host's `docker` is a stand-in that
//! records `gitlab-runner register` and runs the script of the one-shot container that writes
//! `config.toml`, with the runner's volume as a directory on the host. What is checked is the
//! file that arrives on the host. Needs root, iproute2 and openssh, else "skipping".

#[path = "../../autogit-drivers/tests/gitlab_support/mod.rs"]
mod gitlab_support;
mod support;

use autogit_app::Event;
use autogit_app::runners::{RunnerController, discover};
use autogit_drivers::gitlab::bootstrap::{ADMIN_TOKEN, Date};
use autogit_drivers::secrets::{ExposeSecret, SecretStore, SecretString};
use autogit_drivers::testing::netns::{SshLab, lab_available};
use gitlab_support::Fake;
use std::os::unix::fs::PermissionsExt;

const ADMIN: &str = "glpat-autogit-ssh-admin-0123456789";

/// A stand-in `docker` for the lab host: `version`, `register` (records the arguments and the
/// token it got in its environment), and `run --entrypoint sh … -c SCRIPT sh DIR` run with the
/// volume as `<state>/volumes/<volume>`.
fn standin_docker(state: &std::path::Path) -> String {
    format!(
        r#"#!/bin/sh
state={state}
case "$1" in
  version) echo 27.3.1 ;;
  run)
    case " $* " in *" --entrypoint "*)
      vol=; prev=
      for a in "$@"; do [ "$prev" = -v ] && vol=${{a%%:*}}; prev=$a; done
      mkdir -p "$state/volumes/$vol"
      while [ "$1" != -c ]; do shift; done
      exec sh -c "$2" sh "$state/volumes/$vol" ;;
    esac
    printf '%s\n' "$@" > "$state/register.args"
    printf '%s' "$CI_SERVER_TOKEN" > "$state/register.token" ;;
  *) exit 1 ;;
esac
"#,
        state = state.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_writes_the_rendered_config_toml_on_the_host() {
    if !lab_available() {
        return;
    }
    let lab = SshLab::start(1).unwrap_or_else(|e| panic!("{e}"));
    let host = &lab.hosts[0];
    host.install_script("docker", &standin_docker(&host.dir));
    let fake = Fake::start().await;
    {
        let mut st = fake.state();
        st.today = Date::today().to_string();
        st.add_token(1, "autogit-admin", ADMIN, &["api", "admin_mode"]);
    }
    let data = tempfile::tempdir().unwrap();
    let yml = format!(
        "gitlab:\n  external_url: https://git.example.test\nrunners:\n  isolation:\n    engine: socket\n  gpu:\n    - name: wsl\n      host: {addr}\n      user: root\n      executor: podman\n      gpu: nvidia\n      wsl2: true\n    - name: plain\n      host: {addr}\n      user: root\n",
        addr = host.addr
    );
    let settings = support::settings(&yml, "", data.path());
    SecretStore::open(data.path())
        .unwrap()
        .put(ADMIN_TOKEN, &SecretString::from(ADMIN))
        .unwrap();
    let cfg = lab.ssh_config(data.path());
    discover::trust(&cfg, &host.addr, false).await.unwrap();
    let (bus, _clock) = support::bus_at(1_764_000_000);
    let mut rx = bus.subscribe();
    let runners = RunnerController::new(settings, bus.clone(), std::sync::Arc::new(_clock))
        .with_ssh_config(cfg);

    // The spec's form: the host's address registers both runners on it.
    let out = runners
        .register_target(&host.addr, &fake.url, None)
        .await
        .unwrap();
    let done: Vec<_> = out.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(
        done.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["wsl", "plain"]
    );
    assert!(done.iter().all(|r| r.changed && r.state == "registered"));
    assert_eq!(fake.state().runners.len(), 2);

    let conf = host.dir.join("volumes/autogit-runner-wsl/config.toml");
    let text = std::fs::read_to_string(&conf).unwrap();
    assert_eq!(
        std::fs::metadata(&conf).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Podman's socket as root sees it on the host, WSL2's device and libraries, the GPU.
    assert!(
        text.contains("host = \"unix:///run/podman/podman.sock\""),
        "{text}"
    );
    assert!(text.contains("devices = [\"/dev/dxg\"]"), "{text}");
    assert!(text.contains("\"/usr/lib/wsl:/usr/lib/wsl:ro\""), "{text}");
    assert!(text.contains("gpus = \"all\""), "{text}");
    let store = SecretStore::open(data.path()).unwrap();
    let tokens: Vec<String> = store
        .names()
        .unwrap()
        .iter()
        .filter(|n| n.starts_with("gitlab-runner-"))
        .filter_map(|n| store.get(n).unwrap())
        .map(|s| s.expose_secret().to_owned())
        .collect();
    assert!(
        tokens
            .iter()
            .any(|t| text.contains(&format!("token = \"{t}\""))),
        "{text}"
    );
    let plain =
        std::fs::read_to_string(host.dir.join("volumes/autogit-runner-plain/config.toml")).unwrap();
    assert!(
        !plain.contains("podman") && !plain.contains("/dev/dxg"),
        "{plain}"
    );

    // The token never was an argument on the host, and both registrations are events.
    let args = std::fs::read_to_string(host.dir.join("register.args")).unwrap();
    assert!(tokens.iter().all(|t| !args.contains(t.as_str())));
    let events = support::drain(&mut rx);
    let registered = events
        .iter()
        .filter(|e| matches!(e, Event::RunnerRegistered { .. }))
        .count();
    assert_eq!(registered, 2, "{events:?}");
}
