//! `autogit gitlab …` through the real binary against the fake GitLab of the drivers' tests
//! (`autogit-drivers/tests/gitlab_support`): GitLab itself cannot run on the machines that
//! test autogit, so an in-memory server answers the REST v4 endpoints as GitLab documents
//! them. The binary's production client and bootstrap talk to it over loopback; only the
//! admin token that `gitlab-rails runner` would mint is put in the secret store beforehand
//! (the rails step runs on the real engine in `autogit-drivers/tests/gitlab_rails.rs`).

mod common;
#[path = "../../autogit-drivers/tests/gitlab_support/mod.rs"]
mod gitlab_support;

use autogit_drivers::gitlab::bootstrap::{ADMIN_TOKEN, Date};
use autogit_drivers::secrets::{ExposeSecret, SecretStore, SecretString};
use common::{Run, run};
use gitlab_support::Fake;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const ADMIN: &str = "glpat-autogit-test-admin-0123456789";

const CONFIG: &str = "\
gitlab:
  users:
    - {username: alice, email: alice@example.test, role: maintainer}
    - {username: bob, email: bob@example.test}
  groups:
    - {path: team, members: [alice, {username: bob, access: reporter}]}
  service_accounts: [ci, mirror]
  token_lifetime: 30d
";

async fn autogit(dir: &Path, args: &[&str]) -> Run {
    let dir = dir.to_owned();
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&dir, &a)
    })
    .await
    .expect("join")
}

fn json(r: &Run) -> Value {
    assert_eq!(r.code, 0, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Every secret value in the store, to check that no output carries one.
fn all_secrets(store: &SecretStore) -> Vec<String> {
    store
        .names()
        .unwrap()
        .iter()
        .filter_map(|n| store.get(n).unwrap())
        .map(|s| s.expose_secret().to_owned())
        .filter(|s| s.len() >= 8)
        .collect()
}

fn assert_no_secret(r: &Run, store: &SecretStore) {
    for s in all_secrets(store) {
        assert!(
            !r.stdout.contains(&s) && !r.stderr.contains(&s),
            "a secret value reached the output:\n{}\n{}",
            r.stdout,
            r.stderr
        );
    }
}

async fn fake() -> Fake {
    let fake = Fake::start().await;
    {
        let mut st = fake.state();
        st.today = Date::today().to_string();
        st.add_token(1, "autogit-admin", ADMIN, &["api", "admin_mode"]);
    }
    fake
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_twice_rotate_runner_token_status_and_secrets() {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("autogit.yml"), CONFIG).unwrap();
    let data = dir.path().join("data");
    let store = SecretStore::open(&data).unwrap();
    store.put(ADMIN_TOKEN, &SecretString::from(ADMIN)).unwrap();
    let d = data.to_str().unwrap();
    let url = fake.url.clone();
    let base = ["--data-dir", d, "-o", "json"];
    let with = |args: &[&'static str]| -> Vec<String> {
        args.iter()
            .map(|s| (*s).to_owned())
            .chain(base.iter().map(|s| (*s).to_owned()))
            .collect()
    };
    let call = |args: Vec<String>| {
        let dir = dir.path().to_owned();
        async move {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            autogit(&dir, &a).await
        }
    };

    // First run: everything is created.
    let mut a = with(&["gitlab", "bootstrap", "--url"]);
    a.insert(3, url.clone());
    let r = call(a.clone()).await;
    let v = json(&r);
    let b = &v["bootstrap"];
    assert_eq!(strings(&b["users_created"]), ["alice", "bob"]);
    assert_eq!(strings(&b["groups_created"]), ["team"]);
    assert_eq!(strings(&b["members_added"]).len(), 2, "{b}");
    let created = strings(&b["tokens_created"]);
    assert_eq!(created.len(), 2, "{b}");
    assert_eq!(b["admin_token_minted"], false);
    assert_no_secret(&r, &store);
    for name in &created {
        let p = store.path(name).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", p.display());
    }
    let env_file = store.env_file();
    let env = std::fs::read_to_string(&env_file).unwrap();
    assert!(env.contains("GITLAB_CI_TOKEN=glpat-"), "{env}");
    assert!(env.contains("GITLAB_MIRROR_TOKEN=glpat-"), "{env}");
    assert_eq!(
        std::fs::metadata(&env_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let users_after_first = fake.state().users.len();

    // Second run: nothing new, nothing changed.
    let r = call(a).await;
    let v = json(&r);
    let b = &v["bootstrap"];
    assert!(strings(&b["users_created"]).is_empty(), "{b}");
    assert_eq!(strings(&b["users_existing"]), ["alice", "bob"]);
    assert!(strings(&b["tokens_created"]).is_empty(), "{b}");
    assert_eq!(strings(&b["tokens_kept"]).len(), 2, "{b}");
    assert_eq!(fake.state().users.len(), users_after_first);

    // Rotation gives every managed token a new value, admin last.
    let before: Vec<String> = created
        .iter()
        .map(|n| store.get(n).unwrap().unwrap().expose_secret().to_owned())
        .collect();
    let mut a = with(&["gitlab", "rotate-tokens", "--url"]);
    a.insert(3, url.clone());
    let r = call(a).await;
    let v = json(&r);
    let rotated = strings(&v["rotated"]);
    assert_eq!(rotated.last().map(String::as_str), Some(ADMIN_TOKEN));
    for (n, old) in created.iter().zip(&before) {
        assert!(rotated.contains(n), "{rotated:?}");
        assert_ne!(store.get(n).unwrap().unwrap().expose_secret(), old);
    }
    assert_ne!(
        store.get(ADMIN_TOKEN).unwrap().unwrap().expose_secret(),
        ADMIN
    );
    assert_no_secret(&r, &store);

    // A runner authentication token through POST /user/runners.
    let mut a = with(&[
        "gitlab",
        "runner-token",
        "--tag",
        "gpu",
        "--tag",
        "cuda",
        "--protected",
        "--description",
        "wsl2 gpu",
        "--url",
    ]);
    a.insert(10, url.clone());
    let r = call(a).await;
    let v = json(&r);
    let secret = v["secret"].as_str().unwrap().to_owned();
    let token = store.get(&secret).unwrap().unwrap();
    assert!(token.expose_secret().starts_with("glrt-"));
    assert_no_secret(&r, &store);
    {
        let st = fake.state();
        let runner = st.runners.last().unwrap();
        assert_eq!(runner.tags, ["gpu", "cuda"]);
        assert_eq!(runner.description, "wsl2 gpu");
        assert_eq!(runner.runner_type, "instance_type");
        assert!(!runner.run_untagged);
        assert_eq!(runner.access_level, "ref_protected");
    }

    // Status with the (rotated) admin token.
    let mut a = with(&["gitlab", "status", "--url"]);
    a.insert(3, url.clone());
    let v = json(&call(a).await);
    assert_eq!(v["authenticated"], true);
    assert_eq!(v["status"]["version"], "18.5.4");
    assert_eq!(v["status"]["runners"], 1);
    assert!(v["status"]["users"].as_u64().unwrap() >= 3, "{v}");

    // Secrets: names only, values only when asked.
    let r = call(with(&["gitlab", "secrets"])).await;
    let v = json(&r);
    assert_no_secret(&r, &store);
    let names: Vec<&str> = v["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&ADMIN_TOKEN), "{names:?}");
    let r = call(with(&["gitlab", "secrets", "--show-secrets"])).await;
    assert!(
        r.stdout
            .contains(store.get(&secret).unwrap().unwrap().expose_secret())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_admin_token_or_a_gitlab_container_the_error_says_what_to_do() {
    let fake = Fake::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("autogit.yml"),
        "gitlab: {service_accounts: []}\nplatform: {project: agt-no-such-project, socket: /nonexistent/docker.sock}\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let r = autogit(
        dir.path(),
        &[
            "gitlab",
            "bootstrap",
            "--url",
            &fake.url,
            "--data-dir",
            data.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("cannot get an admin token") && r.stderr.contains("container engine"),
        "{}",
        r.stderr
    );
    // Nothing was created in GitLab.
    assert!(fake.state().writes().is_empty());

    // Status works without a token, and says what the token would add.
    let r = autogit(
        dir.path(),
        &[
            "gitlab",
            "status",
            "--url",
            &fake.url,
            "--data-dir",
            data.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("GitLab OK"), "{}", r.stdout);
    assert!(r.stderr.contains("no admin token stored"), "{}", r.stderr);

    // Not ready (503 from /-/readiness): `false` with the failing check, not `unknown`.
    fake.state().not_ready = true;
    let r = autogit(
        dir.path(),
        &[
            "gitlab",
            "status",
            "--url",
            &fake.url,
            "--data-dir",
            data.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let ready_row = r.stdout.lines().find(|l| l.contains("ready")).unwrap_or("");
    assert!(ready_row.contains("false"), "{}", r.stdout);
    assert!(
        r.stdout.contains("failing checks")
            && r.stdout.contains("unexpected Master check result: false"),
        "{}",
        r.stdout
    );
    assert!(!r.stderr.contains("readiness"), "{}", r.stderr);
}
