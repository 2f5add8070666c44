//! The mirror controller against what GitHub and GitLab document (issue 18), with real git
//! over loopback (`git daemon` serves the sources and the targets) and the in-process fakes
//! for the APIs (`github_support`, `gitlab_support`: neither service can run here).
//!
//! Where each mirror is pushed stays the same from run to run: two GitHub accounts both have
//! a `Hello-World`; when one account's listing fails, the other's repository keeps its own
//! target instead of taking the failed one's name, and the failed account's mirror is left as
//! it was. Also: reordered sources, a project renamed in the local GitLab, and repositories
//! GitHub lists without `clone_url` or `archived`.

mod support;

#[path = "../../autogit-drivers/tests/git_support/mod.rs"]
mod git_support;
#[path = "../../autogit-drivers/tests/github_support/mod.rs"]
mod github_support;

use autogit_app::mirror::MirrorController;
use git_support::{Daemon, Work, have_git_daemon, refs};
use github_support::FakeGitHub;
use support::{bus_at, settings};

#[tokio::test]
async fn a_failed_listing_never_moves_another_repository_onto_its_target() {
    if !have_git_daemon() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let src = Daemon::start(&root.join("src"), "targets-src");
    let dst = Daemon::start(&root.join("dst"), "targets-dst");
    let mut works = Vec::new();
    for owner in ["alice", "bob"] {
        let bare = src.init(&format!("{owner}/Hello-World.git"));
        let w = Work::new(&root.join("work").join(owner), &bare);
        w.commit("README", &format!("{owner}'s Hello-World"));
        w.publish();
        works.push(w);
    }
    // target_url_template: the targets must exist (a plain git server creates nothing).
    for t in ["Hello-World", "Hello-World-2", "Hello-World-3"] {
        dst.init(&format!("mirrors/{t}.git"));
    }
    let gh = FakeGitHub::start().await;
    {
        let mut st = gh.state();
        for owner in ["alice", "bob"] {
            st.users.insert(
                owner.to_owned(),
                vec![serde_json::json!({
                    "id": 1, "name": "Hello-World", "full_name": format!("{owner}/Hello-World"),
                    "clone_url": src.url(&format!("{owner}/Hello-World.git")),
                    "html_url": format!("https://github.example/{owner}/Hello-World"),
                    "fork": false, "archived": false, "private": false,
                })],
            );
        }
    }
    let config = format!(
        "mirroring:\n  enabled: true\n  namespace: mirrors\n  retries: 0\n  allow_private: true\n  target_url_template: \"git://127.0.0.1:{}/{{path}}.git\"\n  sources:\n    github:\n      - {{username: alice, api_url: \"{gh}\"}}\n      - {{username: bob, api_url: \"{gh}\"}}\n",
        dst.port,
        gh = gh.url,
    );
    let s = settings(&config, "", &root.join("data"));
    let (bus, _clock) = bus_at(1_767_225_600);
    let m = MirrorController::new(s, bus, std::sync::Arc::new(_clock));
    let alice = || refs(&src.url("alice/Hello-World.git"));
    let bob = || refs(&src.url("bob/Hello-World.git"));
    let target = |t: &str| refs(&dst.url(&format!("mirrors/{t}.git")));

    // Run 1: both listed; alice's takes the name, bob's the suffix.
    let r = m.sync(&[], |_| {}, std::future::pending()).await.unwrap();
    let r = r.unwrap();
    assert_eq!(r.failed, 0, "{:?}", r.reports);
    assert_eq!(target("Hello-World"), alice());
    assert_eq!(target("Hello-World-2"), bob());

    // Run 2: alice's listing fails; bob's repository changed.
    gh.state().users.remove("alice");
    works[1].commit("README", "bob, again");
    works[1].publish();
    let r = m.sync(&[], |_| {}, std::future::pending()).await.unwrap();
    let r = r.unwrap();
    let failed: Vec<&str> = r
        .reports
        .iter()
        .filter(|x| x.result.is_err())
        .map(|x| x.name.as_str())
        .collect();
    assert_eq!(failed, ["github-alice"], "{:?}", r.reports);
    assert_eq!(
        target("Hello-World"),
        alice(),
        "alice's mirror is untouched"
    );
    assert_eq!(
        target("Hello-World-2"),
        bob(),
        "bob's repository is pushed where it always was"
    );
    assert!(target("Hello-World-3").is_empty());

    // Run 3: alice is back, listed after bob this time; nothing moves.
    {
        let mut st = gh.state();
        st.users.insert(
            "alice".to_owned(),
            vec![serde_json::json!({
                "id": 1, "name": "Hello-World", "full_name": "alice/Hello-World",
                "clone_url": src.url("alice/Hello-World.git"),
                "html_url": "https://github.example/alice/Hello-World",
                "fork": false, "archived": false, "private": false,
            })],
        );
    }
    works[0].commit("README", "alice, again");
    works[0].publish();
    let r = m.sync(&[], |_| {}, std::future::pending()).await.unwrap();
    let r = r.unwrap();
    assert_eq!(r.failed, 0, "{:?}", r.reports);
    assert_eq!(target("Hello-World"), alice());
    assert_eq!(target("Hello-World-2"), bob());
}

#[path = "../../autogit-drivers/tests/gitlab_support/mod.rs"]
mod gitlab_support;

/// A mirror's project renamed in the local GitLab (its old path answers 301, as GitLab's
/// redirect routes do) is pushed at its new path, recorded there, and not pruned nor created
/// again. The fake GitLab has the REST API but no git: the push itself fails, which is not
/// what this test is about.
#[tokio::test]
async fn a_renamed_gitlab_project_is_followed_and_recorded() {
    if !have_git_daemon() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let src = Daemon::start(&root.join("src"), "renamed-src");
    let bare = src.init("app.git");
    let w = Work::new(&root.join("work/app"), &bare);
    w.commit("README", "x");
    w.publish();
    let gl = gitlab_support::Fake::start().await;
    gl.state()
        .add_token(1, "autogit-mirror", "glpat-mirror-0001", &["api"]);
    let data = root.join("data");
    autogit_drivers::secrets::SecretStore::open(&data)
        .unwrap()
        .put(
            &autogit_drivers::gitlab::bootstrap::account_token_secret("mirror"),
            &autogit_drivers::secrets::SecretString::from("glpat-mirror-0001"),
        )
        .unwrap();
    let port = gl.url.rsplit(':').next().unwrap();
    let config = format!(
        "gitlab:\n  hostname: 127.0.0.1\n  external_url: {}\n  ports:\n    http: {port}\nmirroring:\n  retries: 0\n  allow_private: true\n  prune_projects: true\n  sources:\n    git:\n      - {}\n",
        gl.url,
        src.url("app.git")
    );
    let s = settings(&config, "", &data);
    let (bus, clock) = bus_at(1_767_225_600);
    let m = MirrorController::new(s, bus, std::sync::Arc::new(clock));
    let r = m
        .sync(&[], |_| {}, std::future::pending())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.reports[0].target, format!("{}/mirrors/app.git", gl.url));

    gl.state().rename_project("mirrors/app", "app-renamed");
    let r = m
        .sync(&[], |_| {}, std::future::pending())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        r.reports[0].target,
        format!("{}/mirrors/app-renamed.git", gl.url),
        "{:?}",
        r.reports
    );
    assert!(r.pruned.is_empty(), "{:?}", r.pruned);
    let st = gl.state();
    assert_eq!(st.projects.len(), 1, "no second project");
    drop(st);
    let store = autogit_drivers::state::Store::open(&data.join("state.db")).unwrap();
    let targets: Vec<String> = store
        .mirror_targets()
        .unwrap()
        .into_iter()
        .map(|t| t.target)
        .collect();
    assert_eq!(targets, ["mirrors/app-renamed"]);
}

/// Two git sources with the same repository name: reordering the configuration swaps which one
/// the name would go to, but each keeps the target it was first given, in syncs and in
/// `mirror list`.
#[tokio::test]
async fn reordered_sources_keep_their_targets_in_sync_and_list() {
    if !have_git_daemon() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let src = Daemon::start(&root.join("src"), "reorder-src");
    let dst = Daemon::start(&root.join("dst"), "reorder-dst");
    let mut works = Vec::new();
    for owner in ["x", "y"] {
        let bare = src.init(&format!("{owner}/app.git"));
        let w = Work::new(&root.join("work").join(owner), &bare);
        w.commit("README", owner);
        w.publish();
        works.push(w);
    }
    for t in ["app", "app-2"] {
        dst.init(&format!("mirrors/{t}.git"));
    }
    let config = |first: &str, second: &str| {
        format!(
            "mirroring:\n  enabled: true\n  namespace: mirrors\n  retries: 0\n  allow_private: true\n  target_url_template: \"git://127.0.0.1:{}/{{path}}.git\"\n  sources:\n    git:\n      - {}\n      - {}\n",
            dst.port,
            src.url(&format!("{first}/app.git")),
            src.url(&format!("{second}/app.git")),
        )
    };
    let controller = |cfg: String| {
        let (bus, clock) = bus_at(1_767_225_600);
        MirrorController::new(
            settings(&cfg, "", &root.join("data")),
            bus,
            std::sync::Arc::new(clock),
        )
    };
    let target = |t: &str| refs(&dst.url(&format!("mirrors/{t}.git")));
    let x = || refs(&src.url("x/app.git"));
    let y = || refs(&src.url("y/app.git"));

    let m = controller(config("x", "y"));
    let r = m.sync(&[], |_| {}, std::future::pending()).await.unwrap();
    assert_eq!(r.unwrap().failed, 0);
    assert_eq!((target("app"), target("app-2")), (x(), y()));

    // Reordered: y would now be `app`. Both change; each goes where it went before.
    for (w, text) in works.iter().zip(["x2", "y2"]) {
        w.commit("README", text);
        w.publish();
    }
    let m = controller(config("y", "x"));
    let r = m.sync(&[], |_| {}, std::future::pending()).await.unwrap();
    assert_eq!(r.unwrap().failed, 0);
    assert_eq!((target("app"), target("app-2")), (x(), y()));
    let rows = m.list().unwrap();
    let shown: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.source.clone(), r.target.clone()))
        .collect();
    assert!(
        shown.contains(&(src.url("x/app.git"), "mirrors/app".into()))
            && shown.contains(&(src.url("y/app.git"), "mirrors/app-2".into())),
        "{shown:?}"
    );
}

/// GitHub's `minimal-repository` requires neither `clone_url` nor `archived`: a repository
/// without a URL, or without `archived` while archived ones are excluded, fails alone with
/// its reason; the account's other repositories are mirrored (issue 18, defects 3 and 5).
#[tokio::test]
async fn odd_github_repositories_fail_alone() {
    if !have_git_daemon() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let src = Daemon::start(&root.join("src"), "odd-src");
    let dst = Daemon::start(&root.join("dst"), "odd-dst");
    for name in ["ok", "from-html"] {
        let bare = src.init(&format!("bob/{name}.git"));
        let w = Work::new(&root.join("work").join(name), &bare);
        w.commit("README", name);
        w.publish();
        dst.init(&format!("mirrors/{name}.git"));
    }
    let gh = FakeGitHub::start().await;
    {
        let mut st = gh.state();
        let repo = |name: &str| {
            serde_json::json!({
                "id": 1, "name": name, "full_name": format!("bob/{name}"),
                "clone_url": src.url(&format!("bob/{name}.git")),
                "html_url": src.url(&format!("bob/{name}")),
                "fork": false, "archived": false, "private": false,
            })
        };
        let mut from_html = repo("from-html");
        from_html.as_object_mut().unwrap().remove("clone_url");
        let mut no_url = repo("no-url");
        no_url.as_object_mut().unwrap().remove("clone_url");
        no_url.as_object_mut().unwrap().remove("html_url");
        let mut unknown = repo("unknown");
        unknown.as_object_mut().unwrap().remove("archived");
        st.users.insert(
            "bob".to_owned(),
            vec![repo("ok"), from_html, no_url, unknown],
        );
    }
    let config = format!(
        "mirroring:\n  enabled: true\n  namespace: mirrors\n  retries: 0\n  allow_private: true\n  target_url_template: \"git://127.0.0.1:{}/{{path}}.git\"\n  sources:\n    github:\n      - {{username: bob, api_url: \"{}\"}}\n",
        dst.port, gh.url,
    );
    let (bus, clock) = bus_at(1_767_225_600);
    let m = MirrorController::new(
        settings(&config, "", &root.join("data")),
        bus,
        std::sync::Arc::new(clock),
    );
    let r = m
        .sync(&[], |_| {}, std::future::pending())
        .await
        .unwrap()
        .unwrap();
    let outcome: Vec<(String, String)> = r
        .reports
        .iter()
        .map(|x| {
            let how = match &x.result {
                Ok(_) => "ok".to_owned(),
                Err(e) => e.to_string(),
            };
            (x.name.clone(), how)
        })
        .collect();
    let get = |n: &str| {
        outcome
            .iter()
            .find(|(name, _)| name == n)
            .map(|(_, how)| how.clone())
            .unwrap_or_else(|| panic!("{n} missing: {outcome:?}"))
    };
    assert_eq!(get("ok"), "ok");
    assert_eq!(get("from-html"), "ok", "cloned from html_url + .git");
    assert!(get("no-url").contains("without a clone_url"), "{outcome:?}");
    assert!(
        get("unknown").contains("did not say whether bob/unknown is archived"),
        "{outcome:?}"
    );
    assert_eq!(r.failed, 2);
    assert_eq!(
        refs(&dst.url("mirrors/from-html.git")),
        refs(&src.url("bob/from-html.git"))
    );
}
