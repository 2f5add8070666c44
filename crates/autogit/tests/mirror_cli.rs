//! `autogit mirror sync` and `autogit mirror list`, the real binary against real git over
//! loopback (`git daemon` for sources and targets, `mirroring.target_url_template` pointing at
//! the target daemon). Skips without `git daemon` unless `AUTOGIT_REQUIRE_TOOLS=1`.

mod common;
#[path = "../../autogit-drivers/tests/git_support/mod.rs"]
mod git_support;
#[path = "../../autogit-drivers/tests/github_support/mod.rs"]
mod github_support;
#[path = "../../autogit-drivers/tests/gitlab_support/mod.rs"]
mod gitlab_support;

use common::*;
use git_support::*;
use std::fs;
use std::path::Path;

fn config(dir: &Path, src: &Daemon, dst: &Daemon, repos: &[&str], allow_private: bool) {
    let sources: String = repos
        .iter()
        .map(|r| format!("      - {}\n", src.url(&format!("{r}.git"))))
        .collect();
    fs::write(
        dir.join("autogit.yml"),
        format!(
            "mirroring:\n  namespace: mirrors\n  retries: 0\n  allow_private: {allow_private}\n  target_url_template: \"git://127.0.0.1:{}/{{path}}.git\"\n  sources:\n    git:\n{sources}",
            dst.port
        ),
    )
    .unwrap();
}

/// `autogit mirror ARGS --data-dir DATA` in `dir`.
fn mirror(dir: &Path, data: &Path, args: &[&str]) -> Run {
    let mut all = vec!["mirror"];
    all.extend_from_slice(args);
    all.extend(["--data-dir", data.to_str().unwrap()]);
    run(dir, &all)
}

fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn sync_then_list_then_failures() {
    if !have_git_daemon() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let src = Daemon::start(&root.join("src"), "cli-src");
    let dst = Daemon::start(&root.join("dst"), "cli-dst");
    for name in ["app", "lib"] {
        let bare = src.init(&format!("{name}.git"));
        dst.init(&format!("mirrors/{name}.git"));
        let w = Work::new(&root.join("work").join(name), &bare);
        w.commit("README", name);
        w.run(&["tag", "v1"]);
        w.publish();
    }
    let data = root.join("data");
    config(root, &src, &dst, &["app", "lib"], true);

    // First sync: both mirrored.
    let r = mirror(root, &data, &["sync", "-o", "json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v = json(&r.stdout);
    assert_eq!(v["failed"], 0);
    assert_eq!(v["mirrors"][0]["name"], "app");
    assert_eq!(v["mirrors"][0]["result"], "synced");
    assert_eq!(v["mirrors"][0]["changed"], 2);
    for name in ["app", "lib"] {
        assert_eq!(
            refs(&src.url(&format!("{name}.git"))),
            refs(&dst.url(&format!("mirrors/{name}.git")))
        );
    }

    // Second sync, plain output: progress on stderr, a table on stdout, nothing to do.
    let r = mirror(root, &data, &["sync"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("app: syncing"), "{}", r.stderr);
    assert!(r.stderr.contains("app: up to date"), "{}", r.stderr);
    assert!(r.stdout.contains("up to date") && r.stdout.contains("0 failed"));

    // One named mirror only.
    let r = mirror(root, &data, &["sync", "lib", "-o", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = json(&r.stdout);
    assert_eq!(v["mirrors"].as_array().unwrap().len(), 1);
    assert_eq!(v["mirrors"][0]["result"], "up_to_date");

    // An unknown name is an error, not a silent no-op.
    let r = mirror(root, &data, &["sync", "nope"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no configured mirror is named `nope`"));

    // The history: last success and lag.
    let r = mirror(root, &data, &["list", "-o", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = json(&r.stdout);
    assert_eq!(v["sources"][0]["name"], "app");
    assert_eq!(v["sources"][0]["last_result"], "up_to_date");
    assert!(v["sources"][0]["last_success"].as_i64().is_some());
    assert!(v["sources"][0]["lag_s"].as_i64().unwrap() >= 0);
    let r = mirror(root, &data, &["list"]);
    assert!(r.stdout.contains(" ago"), "{}", r.stdout);

    // A source that is gone: exit 1, the others still synced, the error recorded.
    config(root, &src, &dst, &["app", "lib", "gone"], true);
    let r = mirror(root, &data, &["sync", "-o", "json"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    let v = json(&r.stdout);
    assert_eq!(v["failed"], 1);
    assert_eq!(v["mirrors"][2]["result"], "failed");
    assert!(
        v["mirrors"][2]["error"]
            .as_str()
            .unwrap()
            .contains("git ls-remote failed")
    );
    let r = mirror(root, &data, &["list", "-o", "json"]);
    let v = json(&r.stdout);
    assert_eq!(v["sources"][2]["last_result"], "failed");
    assert!(v["sources"][2]["last_error"].as_str().is_some());

    // Without `allow_private`, loopback sources are refused before git runs (SSRF guard):
    // the configuration itself is invalid, with the source's file:line.
    config(root, &src, &dst, &["app"], false);
    let r = mirror(root, &data, &["sync"]);
    assert_eq!(r.code, 3, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("loopback")
            && r.stderr.contains("mirroring.allow_private")
            && r.stderr.contains("autogit.yml:"),
        "{}",
        r.stderr
    );
}

#[test]
fn sync_without_sources_or_gitlab_token_says_why() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let r = mirror(d.path(), &data, &["sync"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("nothing to sync"), "{}", r.stderr);

    // No target template and no bootstrap yet: each mirror fails with what to do.
    fs::write(
        d.path().join("autogit.yml"),
        "mirroring:\n  sources:\n    git:\n      - https://git.example.org/a.git\n    gitlab:\n      url: http://127.0.0.1:9\n      allow_insecure_http: true\n      group: team\n      token_env: GL_TOKEN\n",
    )
    .unwrap();
    let r = mirror(d.path(), &data, &["sync", "-o", "json"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    let v = json(&r.stdout);
    let errors: Vec<&str> = v["mirrors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["error"].as_str().unwrap())
        .collect();
    assert!(errors[0].contains("autogit install"), "{errors:?}");
    assert!(errors[1].contains("`GL_TOKEN`"), "{errors:?}");
}

#[test]
fn github_accounts_are_listed_filtered_and_mirrored() {
    if !have_git_daemon() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let src = Daemon::start(&root.join("src"), "gh-src");
    let dst = Daemon::start(&root.join("dst"), "gh-dst");
    let names: Vec<String> = ["app", "app-fork", "old-app", "docs"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for name in &names {
        let bare = src.init(&format!("{name}.git"));
        dst.init(&format!("mirrors/{name}.git"));
        let w = Work::new(&root.join("work").join(name), &bare);
        w.commit("README", name);
        w.publish();
    }
    let gh = github_support::FakeGitHub::start_blocking();
    {
        let mut st = gh.state();
        st.token = Some("ghp_fake_token_1".into());
        st.max_per_page = 2;
        st.add_repos(
            false,
            "me",
            &names,
            &format!("git://127.0.0.1:{}", src.port),
        );
    }
    fs::write(
        root.join("autogit.yml"),
        format!(
            "mirroring:\n  retries: 0\n  allow_private: true\n  target_url_template: \"git://127.0.0.1:{}/{{path}}.git\"\n  sources:\n    github:\n      username: me\n      token_env: GH_TOKEN\n      api_url: {}\n      allow_insecure_http: true\n      include: [\"*app*\"]\n",
            dst.port, gh.url
        ),
    )
    .unwrap();
    let data = root.join("data");
    let args = [
        "mirror",
        "sync",
        "-o",
        "json",
        "--data-dir",
        data.to_str().unwrap(),
    ];
    // Without the token: the account fails, saying which variable is missing.
    let r = run(root, &args);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("`GH_TOKEN`"), "{}", r.stdout);

    let r = run_env(root, &args, &[("GH_TOKEN", "ghp_fake_token_1")]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v = json(&r.stdout);
    let synced: Vec<&str> = v["mirrors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    // Forks and archived repositories are left out unless asked for; `docs` is not included.
    assert_eq!(synced, ["app"], "{}", r.stdout);
    assert_eq!(refs(&src.url("app.git")), refs(&dst.url("mirrors/app.git")));
    assert!(!r.stdout.contains("ghp_fake_token_1") && !r.stderr.contains("ghp_fake_token_1"));
    // Listed mirrors show up in `mirror list` from their history.
    let r = mirror(root, &data, &["list", "-o", "json"]);
    let v = json(&r.stdout);
    assert!(
        v["sources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "app" && s["last_result"] == "synced"),
        "{}",
        r.stdout
    );
}

#[test]
fn gitlab_groups_are_listed_and_their_projects_checked() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let fake = rt.block_on(gitlab_support::Fake::start());
    {
        let mut st = fake.state();
        st.add_token(1, "reader", "glpat-reader-0001", &["read_api"]);
        st.add_group("team");
        st.add_project("team", "api", false, false);
        st.add_project("team", "web", false, false);
        st.add_project("team", "old", true, false);
        st.max_per_page = 1;
    }
    let d = tempfile::tempdir().unwrap();
    fs::write(
        d.path().join("autogit.yml"),
        format!(
            "mirroring:\n  retries: 0\n  target_url_template: \"git://127.0.0.1:9/{{path}}.git\"\n  sources:\n    gitlab:\n      url: {}\n      allow_insecure_http: true\n      group: team\n      token_env: GL_TOKEN\n",
            fake.url
        ),
    )
    .unwrap();
    let data = d.path().join("data");
    let r = run_env(
        d.path(),
        &[
            "mirror",
            "sync",
            "-o",
            "json",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[("GL_TOKEN", "glpat-reader-0001")],
    );
    // The fake's clone URLs are plain http on its external host: listed, then refused by the
    // source check before git runs. Archived projects are left out.
    assert_eq!(r.code, 1, "{}", r.stdout);
    let v = json(&r.stdout);
    let got: Vec<(String, String)> = v["mirrors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_owned(),
                m["error"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!((got[0].0.as_str(), got[1].0.as_str()), ("api", "web"));
    assert!(got[0].1.contains("unencrypted http is refused"), "{got:?}");
    assert!(!r.stdout.contains("glpat-reader-0001"));
    assert!(
        fake.state()
            .requests
            .iter()
            .any(|(_, p)| p.starts_with("/api/v4/groups/team/projects"))
    );
}

#[test]
fn ctrl_c_stops_a_sync_and_records_it_as_interrupted() {
    if !have_git_daemon() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let src = Daemon::start(&root.join("src"), "int-src");
    let dst = Daemon::start(&root.join("dst"), "int-dst");
    let bare = src.init("slow.git");
    dst.init("mirrors/slow.git");
    let w = Work::new(&root.join("work/slow"), &bare);
    w.commit("README", "x");
    w.publish();
    config(root, &src, &dst, &["slow"], true);
    src.flag("stall", true);
    let data = root.join("data");
    let child = cmd(root)
        .args(["mirror", "sync", "--data-dir", data.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let t = std::time::Instant::now();
    let killed = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let r = finish(child.wait_with_output().unwrap());
    assert!(
        t.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("interrupted"), "{}", r.stderr);
    src.flag("stall", false);
    let r = mirror(root, &data, &["list", "-o", "json"]);
    let v = json(&r.stdout);
    assert_eq!(v["sources"][0]["last_result"], "failed", "{}", r.stdout);
    assert_eq!(v["sources"][0]["last_error"], "interrupted");
    // The target is as it was: empty.
    assert!(refs(&dst.url("mirrors/slow.git")).is_empty());
}

#[test]
fn without_a_template_targets_are_gitlab_projects_created_with_the_mirror_token() {
    if !have_git_daemon() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let fake = rt.block_on(gitlab_support::Fake::start());
    fake.state()
        .add_token(1, "autogit-mirror", "glpat-mirror-0001", &["api"]);
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let src = Daemon::start(&root.join("src"), "gl-src");
    let bare = src.init("app.git");
    let w = Work::new(&root.join("work/app"), &bare);
    w.commit("README", "x");
    w.publish();
    let data = root.join("data");
    let store = autogit_drivers::secrets::SecretStore::open(&data).unwrap();
    store
        .put(
            &autogit_drivers::gitlab::bootstrap::account_token_secret("mirror"),
            &autogit_drivers::secrets::SecretString::from("glpat-mirror-0001"),
        )
        .unwrap();
    let port = fake.url.rsplit(':').next().unwrap();
    fs::write(
        root.join("autogit.yml"),
        format!(
            "gitlab:\n  hostname: 127.0.0.1\n  external_url: {}\n  ports:\n    http: {port}\nmirroring:\n  retries: 0\n  allow_private: true\n  sources:\n    git:\n      - {}\n",
            fake.url,
            src.url("app.git")
        ),
    )
    .unwrap();
    let r = mirror(root, &data, &["sync", "-o", "json"]);
    // The fake GitLab has the REST API but no git: the project is created, the push cannot be.
    let v = json(&r.stdout);
    assert_eq!(
        v["mirrors"][0]["target"],
        format!("{}/mirrors/app.git", fake.url)
    );
    assert_eq!(v["mirrors"][0]["result"], "failed", "{}", r.stdout);
    let st = fake.state();
    let group = st.groups.iter().find(|g| g.full_path == "mirrors").unwrap();
    // Mirrors take rewritten history: the group lets maintainers force-push its default branches.
    assert_eq!(
        group.branch_protection.as_ref().unwrap()["allow_force_push"],
        true,
        "{:?}",
        group.branch_protection
    );
    assert!(
        st.projects
            .iter()
            .any(|p| p.path_with_namespace == "mirrors/app")
    );
    assert!(st.tokens_seen.iter().all(|t| t == "glpat-mirror-0001"));
    assert!(!r.stdout.contains("glpat-mirror-0001") && !r.stderr.contains("glpat-mirror-0001"));
    drop(st);

    // prune_projects: `app` is no longer configured. First with a refused source in the
    // list: the listing is incomplete, so nothing is pruned.
    let lib = src.init("lib.git");
    let wl = Work::new(&root.join("work/lib"), &lib);
    wl.commit("README", "lib");
    wl.publish();
    let write = |sources: &str| {
        fs::write(
            root.join("autogit.yml"),
            format!(
                "gitlab:\n  hostname: 127.0.0.1\n  external_url: {}\n  ports:\n    http: {port}\nmirroring:\n  retries: 0\n  allow_private: true\n  prune_projects: true\n  sources:\n    git:\n{sources}",
                fake.url
            ),
        )
        .unwrap();
    };
    let sync = || mirror(root, &data, &["sync", "-o", "json"]);
    write(&format!(
        "      - {}\n      - {{url: \"https://gone.example.invalid/x.git\", token_env: NOT_SET_ANYWHERE}}\n",
        src.url("lib.git")
    ));
    let v = json(&sync().stdout);
    assert_eq!(v["pruned"], serde_json::json!([]), "{v}");
    assert!(
        fake.state()
            .projects
            .iter()
            .any(|p| p.path_with_namespace == "mirrors/app")
    );
    // Complete listing: `mirrors/app` goes; `mirrors/lib` (configured) stays.
    write(&format!("      - {}\n", src.url("lib.git")));
    let r = sync();
    let v = json(&r.stdout);
    assert_eq!(
        v["pruned"],
        serde_json::json!(["mirrors/app"]),
        "{}",
        r.stderr
    );
    let st = fake.state();
    assert!(
        !st.projects
            .iter()
            .any(|p| p.path_with_namespace == "mirrors/app")
    );
    // A pruned target's record goes too: its name is free for the next source.
    let db = autogit_drivers::state::Store::open(&data.join("state.db")).unwrap();
    let recorded: Vec<String> = db
        .mirror_targets()
        .unwrap()
        .into_iter()
        .map(|t| t.target)
        .collect();
    assert!(
        recorded.contains(&"mirrors/lib".to_owned())
            && !recorded.contains(&"mirrors/app".to_owned()),
        "{recorded:?}"
    );
    assert!(
        st.projects
            .iter()
            .any(|p| p.path_with_namespace == "mirrors/lib")
    );
}

/// `autogit daemon` runs scheduled syncs: a schedule that never ran is due at once; once it
/// ran, a restarted daemon does not run it again before the next scheduled time (missed and
/// repeated runs collapse). Needs git daemon and a container engine (the daemon also keeps a
/// stand-in GitLab running).
#[test]
fn the_daemon_runs_scheduled_syncs_once() {
    if !have_git_daemon() || !have_engine() {
        return;
    }
    autogit_drivers::testing::fake_gitlab_image("0.0.9", &[]).unwrap();
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let src = Daemon::start(&root.join("src"), "sched-src");
    let dst = Daemon::start(&root.join("dst"), "sched-dst");
    let bare = src.init("app.git");
    dst.init("mirrors/app.git");
    let w = Work::new(&root.join("work/app"), &bare);
    w.commit("README", "app");
    w.publish();
    let project = format!("agt-sched-{}", std::process::id());
    fs::write(
        root.join("autogit.yml"),
        format!(
            "gitlab:\n  image: autogit-test/gitlab-ce\n  version: \"0.0.9\"\n  ports: {{http: 31580, https: 31581, ssh: 31582}}\n  resources: {{preset: minimal, cpu: 0.5, memory: 64M}}\n  start_period: 3s\nrunners: {{}}\nplatform:\n  project: {project}\nmirroring:\n  enabled: true\n  schedule: \"0 0 1 1 *\"\n  retries: 0\n  allow_private: true\n  target_url_template: \"git://127.0.0.1:{}/{{path}}.git\"\n  sources:\n    git:\n      - {}\n",
            dst.port,
            src.url("app.git")
        ),
    )
    .unwrap();
    let data = root.join("data");
    let data_s = data.to_str().unwrap().to_owned();
    struct Down<'a>(&'a Path, String, String);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = run(
                self.0,
                &["down", "--volumes", "--yes", "--data-dir", &self.1],
            );
            remove_project_leftovers(&self.2);
        }
    }
    let _down = Down(root, data_s.clone(), project.clone());
    // Rows in the sync history (every run, whatever its result).
    let runs = |_: &Path| -> usize {
        let out = std::process::Command::new("sqlite3")
            .arg(data.join("state.db"))
            .arg("SELECT count(*) FROM mirror_runs")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    let daemon = |root: &Path| {
        cmd(root)
            .args(["daemon", "--data-dir", &data_s])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let stop = |mut c: std::process::Child| {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let _ = c.wait();
    };
    let first = daemon(root);
    let start = std::time::Instant::now();
    // Every loop runs in the daemon's own process: while it syncs, none of its descendants
    // is `autogit` (wave 1 ran `autogit mirror sync` as a child).
    let mut descendants_seen = std::collections::BTreeSet::new();
    while refs(&dst.url("mirrors/app.git")) != refs(&src.url("app.git")) {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "the daemon did not run the due sync"
        );
        for (pid, exe) in descendants(first.id()) {
            assert_ne!(
                exe,
                autogit_exe(),
                "the daemon ran autogit as a child (pid {pid})"
            );
            descendants_seen.insert(exe);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    eprintln!("daemon descendants seen while syncing: {descendants_seen:?}");
    std::thread::sleep(std::time::Duration::from_secs(1));
    stop(first);
    let state = fs::read_to_string(data.join("state/mirror-schedule.json")).unwrap();
    assert!(state.contains("last_scheduled"), "{state}");
    let after_first = runs(root);
    assert!(after_first >= 1);

    // A new commit; the restarted daemon must not sync before the next scheduled time.
    w.commit("README", "app 2");
    w.publish();
    let second = daemon(root);
    std::thread::sleep(std::time::Duration::from_secs(5));
    stop(second);
    assert_eq!(runs(root), after_first, "not due: nothing ran");
    assert_ne!(refs(&dst.url("mirrors/app.git")), refs(&src.url("app.git")));
}

#[test]
fn mirror_add_appends_and_keeps_the_file_as_written() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let original = "# my platform\nmirroring:\n  enabled: true   # sync every 6 hours\n  sources:\n    git:\n      - https://example.com/old.git  # kept\n\nbackup: {retention: 3}\n";
    fs::write(root.join("autogit.yml"), original).unwrap();
    let r = run(
        root,
        &["mirror", "add", "https://git.example.org/team/new.git"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run(
        root,
        &[
            "mirror",
            "add",
            "github:octo",
            "--token-env",
            "GITHUB_TOKEN",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run(
        root,
        &[
            "mirror",
            "add",
            "gitlab:infra/tools",
            "--group",
            "--url",
            "https://gitlab.example.net",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    // One repository: github:OWNER/REPO and gitlab:GROUP/PROJECT become git sources.
    let r = run(
        root,
        &[
            "mirror",
            "add",
            "github:rust-lang/rust",
            "--token-env",
            "GITHUB_TOKEN",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("the repository rust-lang/rust"),
        "{}",
        r.stdout
    );
    let r = run(
        root,
        &[
            "mirror",
            "add",
            "gitlab:infra/tools/deploy",
            "--url",
            "https://gitlab.example.net",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let text = fs::read_to_string(root.join("autogit.yml")).unwrap();
    assert_eq!(
        text,
        "# my platform\nmirroring:\n  enabled: true   # sync every 6 hours\n  sources:\n    git:\n      - https://example.com/old.git  # kept\n      - \"https://git.example.org/team/new.git\"\n      - {url: \"https://github.com/rust-lang/rust.git\", token_env: GITHUB_TOKEN}\n      - \"https://gitlab.example.net/infra/tools/deploy.git\"\n    github:\n      - {username: \"octo\", token_env: GITHUB_TOKEN}\n    gitlab:\n      - {group: \"infra/tools\", url: \"https://gitlab.example.net\"}\n\nbackup: {retention: 3}\n"
    );
    // OWNER/REPO without a prefix says which two spellings work; nothing is written.
    let r = run(root, &["mirror", "add", "rust-lang/cargo"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("github:rust-lang/cargo"), "{}", r.stderr);
    assert_eq!(fs::read_to_string(root.join("autogit.yml")).unwrap(), text);
    // Again: already there, nothing written.
    let r = run(
        root,
        &["mirror", "add", "https://git.example.org/team/new.git"],
    );
    assert_eq!(r.code, 0);
    assert!(r.stderr.contains("already a source"), "{}", r.stderr);
    assert_eq!(fs::read_to_string(root.join("autogit.yml")).unwrap(), text);
    // Refused sources and token values leave the file alone.
    for (args, why) in [
        (vec!["mirror", "add", "file:///etc"], "https"),
        (
            vec!["mirror", "add", "--", "--upload-pack=touch /tmp/x"],
            "https",
        ),
        (
            vec!["mirror", "add", "github:x", "--token-env", "ghp_abc123"],
            "not a token",
        ),
    ] {
        let r = run(root, &args);
        assert_eq!(r.code, 1, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(why), "{args:?}: {}", r.stderr);
        assert_eq!(fs::read_to_string(root.join("autogit.yml")).unwrap(), text);
    }
    // A password in the URL is refused, and never printed or written.
    for url in [
        "ssh://git:hunter2pw@git.example.org/team/r.git",
        "https://me:hunter2pw@git.example.org/team/r.git",
    ] {
        let r = run(root, &["mirror", "add", url]);
        assert_eq!(r.code, 1, "{url}: {}", r.stderr);
        assert!(
            !r.stderr.contains("hunter2pw") && !r.stdout.contains("hunter2pw"),
            "{}",
            r.stderr
        );
        assert!(r.stderr.contains("token_env"), "{}", r.stderr);
        assert_eq!(fs::read_to_string(root.join("autogit.yml")).unwrap(), text);
    }
    // No autogit.yml: nothing to add to.
    let e = tempfile::tempdir().unwrap();
    let r = run(e.path(), &["mirror", "add", "https://example.com/x.git"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("autogit init"), "{}", r.stderr);
}

/// The running processes below `root` (children, grandchildren, ...), with their executables.
fn descendants(root: u32) -> Vec<(u32, std::path::PathBuf)> {
    let mut parent = std::collections::BTreeMap::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so read after the last ')'.
        let Some(after) = stat.rsplit_once(')').map(|(_, a)| a) else {
            continue;
        };
        if let Some(ppid) = after
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok())
        {
            parent.insert(pid, ppid);
        }
    }
    let below = |mut pid: u32| {
        while let Some(&pp) = parent.get(&pid) {
            if pp == root {
                return true;
            }
            if pp <= 1 {
                return false;
            }
            pid = pp;
        }
        false
    };
    parent
        .keys()
        .filter(|p| below(**p))
        .filter_map(|p| Some((*p, fs::read_link(format!("/proc/{p}/exe")).ok()?)))
        .collect()
}

fn autogit_exe() -> std::path::PathBuf {
    fs::canonicalize(env!("CARGO_BIN_EXE_autogit")).unwrap()
}
