//! The production GitLab REST client (`autogit_drivers::gitlab::client`) against the fake
//! GitLab in `gitlab_support` (GitLab cannot run here; the fake answers as GitLab documents:
//! status codes, pagination headers, error bodies). Nothing in the client is mocked: it
//! speaks HTTP to the fake over loopback.

mod gitlab_support;

use autogit_drivers::gitlab::client::{
    GitLabClient, GitLabError, NewRunner, NewUser, RetryPolicy, RunnerType,
};
use autogit_drivers::secrets::{ExposeSecret, SecretString};
use gitlab_support::{Fake, Paging};
use std::time::Duration;

const ROOT_TOKEN: &str = "glpat-root-test-token-0001";

fn fast() -> RetryPolicy {
    RetryPolicy {
        attempts: 4,
        first_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(5),
        timeout: Duration::from_secs(10),
    }
}

/// A fake with root's admin token and a client using it.
async fn setup() -> (Fake, GitLabClient) {
    let fake = Fake::start().await;
    fake.state()
        .add_token(1, "autogit-admin", ROOT_TOKEN, &["api"]);
    let client = GitLabClient::new(&fake.url, Some(SecretString::from(ROOT_TOKEN.to_owned())))
        .unwrap()
        .with_retry(fast());
    (fake, client)
}

fn add_users(fake: &Fake, n: usize) {
    let mut st = fake.state();
    for i in 0..n {
        st.add_user(&format!("user{i:02}"), false);
    }
}

#[tokio::test]
async fn pagination_follows_link_across_pages() {
    let (fake, client) = setup().await;
    add_users(&fake, 6);
    fake.state().max_per_page = 2;
    let users: Vec<autogit_drivers::gitlab::client::User> = client.get_all("users").await.unwrap();
    assert_eq!(users.len(), 7, "root and six more");
    let names: Vec<_> = users.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(names[0], "root");
    assert_eq!(names[6], "user05");
    let st = fake.state();
    let gets: Vec<_> = st
        .requests
        .iter()
        .filter(|(_, p)| p.starts_with("/api/v4/users"))
        .collect();
    assert_eq!(gets.len(), 4, "4 pages of 2: {gets:?}");
    assert!(
        gets[0].1.contains("per_page=100"),
        "asks for 100: {}",
        gets[0].1
    );
    assert!(gets[3].1.contains("page=4"), "{}", gets[3].1);
}

#[tokio::test]
async fn pagination_falls_back_to_x_next_page() {
    let (fake, client) = setup().await;
    add_users(&fake, 8);
    {
        let mut st = fake.state();
        st.max_per_page = 3;
        st.paging = Paging::XNextPageOnly;
    }
    let users: Vec<autogit_drivers::gitlab::client::User> = client.get_all("users").await.unwrap();
    assert_eq!(users.len(), 9);
    let mut ids: Vec<u64> = users.iter().map(|u| u.id).collect();
    ids.dedup();
    assert_eq!(ids.len(), 9, "no page read twice");
    let st = fake.state();
    assert_eq!(
        st.requests
            .iter()
            .filter(|(_, p)| p.starts_with("/api/v4/users"))
            .count(),
        3
    );
}

#[tokio::test]
async fn rate_limit_waits_for_retry_after_then_succeeds() {
    let (fake, client) = setup().await;
    {
        let mut st = fake.state();
        st.rate_limit = 1;
        st.retry_after = "1".into();
    }
    let v = client.version().await.unwrap();
    assert_eq!(v.version, "18.5.4");
    assert_eq!(fake.state().requests.len(), 2, "one 429, then the retry");
}

#[tokio::test]
async fn rate_limit_that_never_ends_is_a_typed_error() {
    let (fake, client) = setup().await;
    {
        let mut st = fake.state();
        st.rate_limit = 100;
        st.retry_after = "0".into();
    }
    let e = client.version().await.unwrap_err();
    assert!(
        matches!(e, GitLabError::RateLimited { attempts: 4, .. }),
        "{e:?}"
    );
    assert_eq!(e.status(), Some(429));
}

#[tokio::test]
async fn transient_502s_are_retried() {
    let (fake, client) = setup().await;
    fake.state().fail_502 = 2;
    let v = client.version().await.unwrap();
    assert_eq!(v.revision, "b1a2c3d4");
    assert_eq!(fake.state().requests.len(), 3);
    // Too many 502s: the last one is reported with the attempts made.
    fake.state().fail_502 = 10;
    let e = client.version().await.unwrap_err();
    match e {
        GitLabError::Server {
            status: 502,
            attempts: 4,
            ..
        } => {}
        other => panic!("expected Server 502, got {other:?}"),
    }
}

#[tokio::test]
async fn a_post_is_not_repeated_after_a_500() {
    let (fake, client) = setup().await;
    fake.state().forced = Some((500, r#"{"message":"500 Internal Server Error"}"#.into()));
    let e = client
        .create_group("Team", "team", "private", None)
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(500));
    assert_eq!(fake.state().writes().len(), 1, "POST sent once");
}

#[tokio::test]
async fn connection_refused_is_retried_then_reported() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    let client = GitLabClient::new(&url, None).unwrap().with_retry(fast());
    let e = client.version().await.unwrap_err();
    assert!(
        matches!(e, GitLabError::Transport { attempts: 4, .. }),
        "{e:?}"
    );
}

#[tokio::test]
async fn error_bodies_become_typed_errors_with_gitlabs_message() {
    let (fake, client) = setup().await;
    // 401: a wrong token.
    let bad = client
        .clone()
        .with_token(Some(SecretString::from("glpat-wrong".to_owned())));
    let e = bad.version().await.unwrap_err();
    assert!(matches!(&e, GitLabError::Unauthorized { .. }), "{e:?}");
    assert_eq!(e.message(), Some("401 Unauthorized"));
    assert!(!e.to_string().contains("glpat-wrong"), "no token in errors");

    // 403: a token without api scope writing.
    let rid = fake.state().add_user("reader", false);
    fake.state()
        .add_token(rid, "ro", "glpat-read-only-000000000", &["read_api"]);
    let ro = client.clone().with_token(Some(SecretString::from(
        "glpat-read-only-000000000".to_owned(),
    )));
    let e = ro
        .create_group("X", "x", "private", None)
        .await
        .unwrap_err();
    assert!(matches!(&e, GitLabError::Forbidden { .. }), "{e:?}");
    assert!(
        e.message().unwrap().starts_with("insufficient_scope: "),
        "{e}"
    );
    // 403 as a plain message: a non-admin asking for all runners.
    let e = ro.all_runners().await.unwrap_err();
    assert_eq!(e.message(), Some("403 Forbidden"));

    // 404.
    let e = client.add_group_member(999, 1, 30).await.unwrap_err();
    assert!(matches!(&e, GitLabError::NotFound { .. }), "{e:?}");
    assert_eq!(e.message(), Some("404 Group Not Found"));
    assert!(
        client.group("no/such").await.unwrap().is_none(),
        "404 on lookup is None"
    );

    // 409.
    let pw = SecretString::from("long-enough-password".to_owned());
    let new = NewUser {
        username: "alice",
        email: "root@example.test",
        name: "Alice",
        password: Some(&pw),
        admin: false,
    };
    let e = client.create_user(&new).await.unwrap_err();
    assert!(matches!(&e, GitLabError::Conflict { .. }), "{e:?}");
    assert_eq!(e.message(), Some("Email has already been taken"));

    // 422 with field errors.
    let e = client
        .create_group("Bad", "bad path!", "private", None)
        .await
        .unwrap_err();
    match &e {
        GitLabError::Unprocessable {
            fields, message, ..
        } => {
            assert!(fields.contains_key("path"), "{fields:?}");
            assert!(message.starts_with("path can contain only"), "{message}");
        }
        other => panic!("expected 422, got {other:?}"),
    }

    // 400 with GitLab's `{"error": ...}` shape.
    let e = client
        .create_runner(&NewRunner {
            runner_type: RunnerType::Group,
            group_id: None,
            project_id: None,
            description: "x".into(),
            tags: vec![],
            run_untagged: true,
            protected: false,
        })
        .await
        .unwrap_err();
    assert!(matches!(&e, GitLabError::BadRequest { .. }), "{e:?}");
    assert_eq!(e.message(), Some("group_id is missing"));
}

#[tokio::test]
async fn endpoints_round_trip_through_the_fake() {
    let (fake, client) = setup().await;
    assert_eq!(client.health().await.unwrap(), "GitLab OK");
    assert_eq!(client.readiness().await.unwrap()["status"], "ok");
    assert!(client.user_by_username("nobody").await.unwrap().is_none());
    let pw = SecretString::from("long-enough-password".to_owned());
    let u = client
        .create_user(&NewUser {
            username: "bob",
            email: "bob@example.test",
            name: "Bob",
            password: Some(&pw),
            admin: false,
        })
        .await
        .unwrap();
    assert_eq!(
        client.user_by_username("bob").await.unwrap().unwrap().id,
        u.id
    );
    let parent = client
        .create_group("Team", "team", "internal", None)
        .await
        .unwrap();
    let child = client
        .create_group("Backend", "backend", "private", Some(parent.id))
        .await
        .unwrap();
    assert_eq!(child.full_path, "team/backend");
    // A full path as id is URL-encoded (`team%2Fbackend`).
    assert_eq!(
        client.group("team/backend").await.unwrap().unwrap().id,
        child.id
    );
    assert_eq!(client.search_groups("back").await.unwrap().len(), 1);
    client.add_group_member(child.id, u.id, 30).await.unwrap();
    let members = client.group_members(child.id).await.unwrap();
    assert!(
        members
            .iter()
            .any(|m| m.username == "bob" && m.access_level == 30)
    );
    let e = client
        .add_group_member(child.id, u.id, 30)
        .await
        .unwrap_err();
    assert_eq!(e.message(), Some("Member already exists"));

    let t = client
        .create_personal_access_token(u.id, "bob-ci", &["read_api".into()], "2026-02-23")
        .await
        .unwrap();
    assert!(t.token.expose_secret().starts_with("glpat-"));
    assert!(!format!("{t:?}").contains(t.token.expose_secret()));
    let listed = client.personal_access_tokens(u.id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].active);
    let r = client
        .rotate_personal_access_token(t.id, Some("2026-03-01"))
        .await
        .unwrap();
    assert_ne!(r.id, t.id);
    assert_ne!(r.token.expose_secret(), t.token.expose_secret());
    let listed = client.personal_access_tokens(u.id).await.unwrap();
    assert!(listed.iter().any(|p| p.id == t.id && p.revoked));
    client.revoke_personal_access_token(r.id).await.unwrap();
    assert!(
        client
            .personal_access_tokens(u.id)
            .await
            .unwrap()
            .iter()
            .all(|p| !p.active)
    );

    let runner = client
        .create_runner(&NewRunner {
            runner_type: RunnerType::Group,
            group_id: Some(parent.id),
            project_id: None,
            description: "gpu box".into(),
            tags: vec!["gpu".into(), "cuda".into()],
            run_untagged: false,
            protected: false,
        })
        .await
        .unwrap();
    assert!(runner.token.expose_secret().starts_with("glrt-"));
    {
        let st = fake.state();
        assert_eq!(st.runners[0].tags, ["gpu", "cuda"]);
        assert!(!st.runners[0].run_untagged);
        assert_eq!(st.runners[0].description, "gpu box");
    }
    let all = client.all_runners().await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].runner_type.as_deref(), Some("group_type"));
    client.delete_runner(runner.id).await.unwrap();
    let e = client.delete_runner(runner.id).await.unwrap_err();
    assert_eq!(e.message(), Some("404 Runner Not Found"));
    let st = fake.state();
    assert!(st.runners.is_empty());
    assert!(
        st.tokens_seen.iter().all(|t| t == ROOT_TOKEN),
        "only the configured token is sent"
    );
}

#[tokio::test]
async fn projects_are_found_by_path_and_created_in_a_group() {
    let (fake, client) = setup().await;
    let g = client
        .create_group("mirrors", "mirrors", "private", None)
        .await
        .unwrap();
    assert_eq!(client.project_by_path("mirrors/app").await.unwrap(), None);
    let p = client
        .create_project("app", "app", g.id, "private")
        .await
        .unwrap();
    assert_eq!(p.path_with_namespace, "mirrors/app");
    assert!(p.http_url_to_repo.ends_with("/mirrors/app.git"));
    assert_eq!(
        client.project_by_path("mirrors/app").await.unwrap(),
        Some(p.clone())
    );
    let again = client.create_project("app", "app", g.id, "private").await;
    assert!(
        matches!(again, Err(GitLabError::BadRequest { .. })),
        "{again:?}"
    );
    assert!(
        fake.state()
            .requests
            .iter()
            .any(|(m, p)| m == "GET" && p == "/api/v4/projects/mirrors%2Fapp")
    );
}

#[tokio::test]
async fn mirror_targets_are_ensured_idempotently() {
    let (fake, client) = setup().await;
    let t = autogit_core::mirror::TargetPath {
        namespace: "mirrors".into(),
        name: "app".into(),
    };
    let a = autogit_drivers::mirror::ensure_project(&client, &t)
        .await
        .unwrap();
    let b = autogit_drivers::mirror::ensure_project(&client, &t)
        .await
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(a.path_with_namespace, "mirrors/app");
    let st = fake.state();
    assert_eq!(
        st.groups
            .iter()
            .filter(|g| g.full_path == "mirrors")
            .count(),
        1
    );
    assert_eq!(st.projects.len(), 1);
}

#[tokio::test]
async fn group_and_user_projects_are_listed_across_pages() {
    let (fake, client) = setup().await;
    let top = client
        .create_group("team", "team", "private", None)
        .await
        .unwrap();
    client
        .create_group("sub", "sub", "private", Some(top.id))
        .await
        .unwrap();
    {
        let mut st = fake.state();
        st.max_per_page = 2;
        for i in 0..3 {
            st.add_project("team", &format!("p{i}"), false, false);
        }
        st.add_project("team/sub", "deep", true, false);
        st.add_project("team", "forked", false, true);
        st.add_project("root", "mine", false, false);
    }
    let all = client.group_projects("team").await.unwrap();
    let names: Vec<&str> = all.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(names, ["p0", "p1", "p2", "deep", "forked"]);
    assert!(all[3].archived && all[4].forked_from_project.is_some());
    assert!(!all[0].archived && all[0].forked_from_project.is_none());
    let mine = client.user_projects("root").await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].path_with_namespace, "root/mine");
    assert!(matches!(
        client.group_projects("nope").await,
        Err(GitLabError::NotFound { .. })
    ));
}

/// This machine's host name when it resolves to loopback only without being spelt as
/// loopback: a request to it would reach the loopback fake.
fn loopback_alias() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim().to_owned();
    let addrs: Vec<std::net::SocketAddr> =
        std::net::ToSocketAddrs::to_socket_addrs(&(name.as_str(), 1))
            .ok()?
            .collect();
    (!addrs.is_empty()
        && addrs.iter().all(|a| a.ip().is_loopback())
        && autogit_core::netaddr::host_class(&name).is_none())
    .then_some(name)
}

#[tokio::test]
async fn a_token_never_goes_over_plain_http_to_a_remote_host() {
    let (fake, client) = setup().await;
    // Over loopback (the local GitLab's published port) the token goes.
    client.current_token().await.unwrap();
    let seen = fake.state().tokens_seen.len();
    let port = fake.url.rsplit(':').next().unwrap().to_owned();
    let alias = loopback_alias();
    let host = alias.clone().unwrap_or_else(|| "192.0.2.1".to_owned());
    let remote = GitLabClient::new(
        &format!("http://{host}:{port}"),
        Some(SecretString::from(ROOT_TOKEN.to_owned())),
    )
    .unwrap()
    .with_retry(fast());
    let e = remote.current_token().await.unwrap_err();
    assert!(matches!(e, GitLabError::TokenOverHttp(_)), "{e}");
    assert!(!e.to_string().contains(ROOT_TOKEN), "{e}");
    if alias.is_some() {
        assert_eq!(
            fake.state().tokens_seen.len(),
            seen,
            "the token reached the fake"
        );
    } else {
        eprintln!("note: no host name resolving to loopback; checked the refusal only");
    }
    // A token added later (`with_token`) is refused the same way.
    let later = GitLabClient::new(&format!("http://{host}:{port}"), None)
        .unwrap()
        .with_retry(fast())
        .with_token(Some(SecretString::from(ROOT_TOKEN.to_owned())));
    assert!(matches!(
        later.current_token().await.unwrap_err(),
        GitLabError::TokenOverHttp(_)
    ));
}
