//! `autogit runner register` through the binary: GitLab is the fake REST server of the
//! drivers' tests, the runner host is `local` with a stand-in `docker` on PATH that records
//! what `gitlab-runner register` would get (arguments, and the token from its environment)
//! and runs the script of the one-shot container that writes `config.toml`, with the
//! runner's volume as a directory (`<state>/volumes/<volume>`). GitLab and gitlab-runner
//! cannot run here: those are the fakes.

mod common;
#[path = "../../autogit-drivers/tests/gitlab_support/mod.rs"]
mod gitlab_support;

use autogit_drivers::gitlab::bootstrap::{ADMIN_TOKEN, Date};
use autogit_drivers::secrets::{ExposeSecret, SecretStore, SecretString};
use common::{Run, run_env};
use gitlab_support::Fake;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const ADMIN: &str = "glpat-autogit-test-admin-0123456789";

fn fake_docker(dir: &Path) {
    let script = format!(
        r#"#!/bin/sh
state={state}
case "$1" in
  version) echo 27.3.1 ;;
  run)
    case " $* " in *" --entrypoint "*)
      # A one-shot container writing into a volume: run its script with the volume as a
      # directory under $state/volumes.
      vol=; prev=
      for a in "$@"; do [ "$prev" = -v ] && vol=${{a%%:*}}; prev=$a; done
      mkdir -p "$state/volumes/$vol"
      while [ "$1" != -c ]; do shift; done
      exec sh -c "$2" sh "$state/volumes/$vol" ;;
    esac
    if [ -e "$state/fail-once" ]; then rm "$state/fail-once"; echo "ERROR: connection refused" >&2; exit 1; fi
    printf '%s\n' "$@" > "$state/register.args"
    printf '%s' "$CI_SERVER_TOKEN" > "$state/register.token"
    echo "Runner registered successfully." ;;
  rm) printf '%s\n' "$@" >> "$state/removed" ;;
  volume) printf '%s\n' "$@" >> "$state/removed" ;;
  *) exit 1 ;;
esac
"#,
        state = dir.display()
    );
    let p = dir.join("docker");
    std::fs::write(&p, script).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

async fn autogit(dir: &Path, path: &str, args: &[&str]) -> Run {
    let dir = dir.to_owned();
    let path = path.to_owned();
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        run_env(&dir, &a, &[("PATH", &path)])
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_creates_the_runner_once_and_passes_the_token_on_stdin() {
    let fake = Fake::start().await;
    {
        let mut st = fake.state();
        st.today = Date::today().to_string();
        st.add_token(1, "autogit-admin", ADMIN, &["api", "admin_mode"]);
    }
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    fake_docker(&bin);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    std::fs::write(
        dir.path().join("autogit.yml"),
        "gitlab:\n  external_url: https://git.example.test\nrunners:\n  gpu:\n    - name: g1\n      host: local\n      tags: [cuda]\n      capabilities: [inference]\n      protected: true\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let store = SecretStore::open(&data).unwrap();
    store.put(ADMIN_TOKEN, &SecretString::from(ADMIN)).unwrap();
    let d = data.to_str().unwrap().to_owned();
    let url = fake.url.clone();
    let args = [
        "runner",
        "register",
        "g1",
        "--data-dir",
        &d,
        "--url",
        &url,
        "-o",
        "json",
    ];

    // The host fails once: exit 1, GitLab's runner and its token are kept.
    std::fs::write(bin.join("fail-once"), "").unwrap();
    let r = autogit(dir.path(), &path, &args).await;
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("connection refused") && r.stderr.contains("again"),
        "{}",
        r.stderr
    );
    assert_eq!(fake.state().runners.len(), 1);

    // Again: the same GitLab runner, registered on the host.
    let r = autogit(dir.path(), &path, &args).await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        (v["state"].as_str(), v["changed"].as_bool()),
        (Some("registered"), Some(true))
    );
    assert_eq!(fake.state().runners.len(), 1, "no second runner in GitLab");
    let runner = fake.state().runners[0].clone();
    assert_eq!(runner.tags, ["cuda", "inference"]);
    // `protected: true`: only jobs of protected branches and tags.
    assert_eq!(runner.access_level, "ref_protected");

    let token = std::fs::read_to_string(bin.join("register.token")).unwrap();
    assert!(token.starts_with("glrt-"), "{token}");
    let stored: Vec<String> = store
        .names()
        .unwrap()
        .iter()
        .filter_map(|n| store.get(n).unwrap())
        .map(|s| s.expose_secret().to_owned())
        .collect();
    assert!(stored.contains(&token));
    let args_text = std::fs::read_to_string(bin.join("register.args")).unwrap();
    let argv: Vec<&str> = args_text.lines().collect();
    assert!(
        !args_text.contains(&token),
        "the token must not be an argument"
    );
    for w in [
        ["--url", "https://git.example.test"],
        ["--name", "g1"],
        ["--docker-gpus", "all"],
        ["-e", "CI_SERVER_TOKEN"],
    ] {
        assert!(argv.windows(2).any(|x| x == w), "{w:?} in {argv:?}");
    }
    assert!(argv.contains(&"register") && argv.contains(&"--non-interactive"));
    assert!(!r.stdout.contains(&token) && !r.stderr.contains(&token));

    // The rendered config.toml replaced what gitlab-runner wrote: mode 0600, the token, the GPU.
    let conf = bin.join("volumes/autogit-runner-g1/config.toml");
    let text = std::fs::read_to_string(&conf).unwrap();
    let mode = std::fs::metadata(&conf).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{text}");
    assert!(text.contains(&format!("token = \"{token}\"")), "{text}");
    assert!(
        text.contains("url = \"https://git.example.test\""),
        "{text}"
    );
    assert!(text.contains("gpus = \"all\""), "{text}");

    // Third time: nothing to do.
    let r = autogit(dir.path(), &path, &args).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["changed"], false);
    assert_eq!(fake.state().runners.len(), 1);

    // Its scope changed in the file: set in place (`PUT /runners/:id`), same runner and token.
    std::fs::write(
        dir.path().join("autogit.yml"),
        "gitlab:\n  external_url: https://git.example.test\nrunners:\n  gpu:\n    - name: g1\n      host: local\n      tags: [cuda, deploy]\n      capabilities: [inference]\n",
    )
    .unwrap();
    let r = autogit(dir.path(), &path, &args).await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["changed"], true, "{v}");
    let after = fake.state().runners.clone();
    assert_eq!(after.len(), 1);
    assert_eq!(
        (after[0].id, after[0].access_level.as_str()),
        (runner.id, "not_protected")
    );
    assert_eq!(after[0].tags, ["cuda", "deploy", "inference"]);
    let r = autogit(dir.path(), &path, &args).await;
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["changed"], false, "{v}");

    // runner list shows it.
    let r = autogit(dir.path(), &path, &["runner", "list", "--data-dir", &d]).await;
    assert!(
        r.stdout.contains("registered (GitLab runner"),
        "{}",
        r.stdout
    );

    // Unregister: gone from GitLab, the host (container and config volume) and autogit.
    let unreg = [
        "runner",
        "unregister",
        "g1",
        "--data-dir",
        &d,
        "--url",
        &url,
        "-o",
        "json",
    ];
    let r = autogit(dir.path(), &path, &unreg).await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        fake.state().runners.is_empty(),
        "the GitLab runner is deleted"
    );
    let removed = std::fs::read_to_string(bin.join("removed")).unwrap();
    assert!(
        removed.contains("autogit-runner-g1") && removed.contains("volume"),
        "{removed}"
    );
    let left: Vec<String> = store
        .names()
        .unwrap()
        .iter()
        .filter_map(|n| store.get(n).unwrap())
        .map(|s| s.expose_secret().to_owned())
        .collect();
    assert!(
        !left.contains(&token),
        "the runner token is removed from the store"
    );
    // Again: nothing to do.
    let r = autogit(dir.path(), &path, &unreg).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("not registered"), "{}", r.stderr);

    // Unknown runner names are an error that lists the configured ones.
    let r = autogit(
        dir.path(),
        &path,
        &["runner", "register", "nope", "--data-dir", &d],
    )
    .await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("configured: g1"), "{}", r.stderr);
}

/// The spec's form, `runner register <host>`: every runner configured on that host is
/// registered; a Podman runner's config.toml names the Podman socket found on the host, a
/// WSL2 one gets `/dev/dxg` and `/usr/lib/wsl`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_by_host_registers_each_runner_on_it() {
    let fake = Fake::start().await;
    {
        let mut st = fake.state();
        st.today = Date::today().to_string();
        st.add_token(1, "autogit-admin", ADMIN, &["api", "admin_mode"]);
    }
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    fake_docker(&bin);
    // Rootless Podman's socket in the user's runtime directory.
    let xdg = dir.path().join("xdg");
    std::fs::create_dir_all(xdg.join("podman")).unwrap();
    let sock = xdg.join("podman/podman.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    std::fs::write(
        dir.path().join("autogit.yml"),
        // `engine: socket` (a validate warning): config.toml names the engine's own socket,
        // here Podman's as found on the host; behind the default proxy it names none.
        "gitlab:\n  external_url: https://git.example.test\nrunners:\n  isolation:\n    engine: socket\n  cpu:\n    - name: c1\n      host: local\n  gpu:\n    - name: w1\n      host: local\n      executor: podman\n      wsl2: true\n    - name: far\n      host: 10.9.9.9\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let store = SecretStore::open(&data).unwrap();
    store.put(ADMIN_TOKEN, &SecretString::from(ADMIN)).unwrap();
    let d = data.to_str().unwrap().to_owned();
    let url = fake.url.clone();
    let args = [
        "runner",
        "register",
        "local",
        "--data-dir",
        &d,
        "--url",
        &url,
        "-o",
        "json",
    ];
    let xdg_s = xdg.to_str().unwrap().to_owned();
    let r = {
        let (dir, path, xdg_s) = (dir.path().to_owned(), path.clone(), xdg_s.clone());
        let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        tokio::task::spawn_blocking(move || {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            run_env(&dir, &a, &[("PATH", &path), ("XDG_RUNTIME_DIR", &xdg_s)])
        })
        .await
        .unwrap()
    };
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["host"], "local");
    let names: Vec<&str> = v["runners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["c1", "w1"],
        "the runner on another host is left alone"
    );
    assert_eq!(fake.state().runners.len(), 2);

    let w1 = std::fs::read_to_string(bin.join("volumes/autogit-runner-w1/config.toml")).unwrap();
    assert!(
        w1.contains(&format!("host = \"unix://{}\"", sock.display())),
        "{w1}"
    );
    assert!(w1.contains("devices = [\"/dev/dxg\"]"), "{w1}");
    assert!(w1.contains("\"/usr/lib/wsl:/usr/lib/wsl:ro\""), "{w1}");
    let c1 = std::fs::read_to_string(bin.join("volumes/autogit-runner-c1/config.toml")).unwrap();
    assert!(
        c1.contains("name = \"c1\"") && !c1.contains("host ="),
        "{c1}"
    );
    // The job containers' isolation: their own network, unprivileged, no engine socket.
    assert!(
        c1.contains("network_mode = \"autogit-runner-c1\"")
            && c1.contains("privileged = false")
            && !c1.contains("docker.sock"),
        "{c1}"
    );

    // Neither a runner name nor a runner host: the error lists the names.
    let r = autogit(
        dir.path(),
        &path,
        &["runner", "register", "elsewhere", "--data-dir", &d],
    )
    .await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("configured: c1, w1, far"), "{}", r.stderr);
}
