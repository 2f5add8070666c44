//! The GitLab client against behaviours GitLab documents and the fake did not show before
//! (issue 18): readiness answering 503, projects shared into a group, the simple view of
//! unauthenticated listings, and moved projects answering 301. Each behaviour of the fake
//! cites its documentation page next to it (`gitlab_support`).

mod gitlab_support;

use autogit_drivers::gitlab::client::{Account, GitLabClient, GitLabError, ListFilter};
use autogit_drivers::secrets::SecretString;
use gitlab_support::Fake;
use std::time::{Duration, Instant};

const ROOT_TOKEN: &str = "glpat-root-test-token-0001";

async fn setup() -> (Fake, GitLabClient) {
    let fake = Fake::start().await;
    fake.state()
        .add_token(1, "autogit-admin", ROOT_TOKEN, &["api"]);
    // The default retry policy: a 503 that is retried as a gateway failure costs seconds.
    let client =
        GitLabClient::new(&fake.url, Some(SecretString::from(ROOT_TOKEN.to_owned()))).unwrap();
    (fake, client)
}

#[tokio::test]
async fn readiness_503_is_not_ready_with_the_failing_checks_at_once() {
    let (fake, client) = setup().await;
    fake.state().not_ready = true;
    let started = Instant::now();
    let r = client.readiness_report().await.unwrap();
    assert!(!r.ready);
    assert_eq!(
        r.failing,
        ["master_check: unexpected Master check result: false"]
    );
    let dir = tempfile::tempdir().unwrap();
    let store = autogit_drivers::secrets::SecretStore::open(dir.path()).unwrap();
    let s = autogit_drivers::gitlab::bootstrap::status(&client, &store).await;
    assert_eq!(s.ready, Some(false), "{s:?}");
    assert_eq!(s.failing_checks, r.failing);
    assert!(
        !s.errors.iter().any(|e| e.contains("readiness")),
        "{:?}",
        s.errors
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a 503 readiness answer is not retried ({:?})",
        started.elapsed()
    );
    let readiness_gets = fake
        .state()
        .requests
        .iter()
        .filter(|(_, p)| p == "/-/readiness")
        .count();
    assert_eq!(readiness_gets, 2, "one request per call");
    fake.state().not_ready = false;
    let r = client.readiness_report().await.unwrap();
    assert!(r.ready && r.failing.is_empty(), "{r:?}");
}

#[tokio::test]
async fn projects_only_shared_with_a_group_are_not_the_groups_own() {
    let (fake, client) = setup().await;
    {
        let mut st = fake.state();
        st.add_group("team");
        st.add_group("other");
        st.add_project("team", "app", false, false);
        st.add_project("other", "lib", false, false);
        st.share("other/lib", "team");
    }
    let listed = client
        .account_projects(Account::Group("team"), ListFilter::default())
        .await
        .unwrap();
    let paths: Vec<&str> = listed
        .iter()
        .map(|p| p.path_with_namespace.as_str())
        .collect();
    assert_eq!(paths, ["team/app"]);
    let all = client.group_projects("team").await.unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    assert!(
        fake.state()
            .requests
            .iter()
            .any(|(_, p)| p.contains("with_shared=false"))
    );
}

#[tokio::test]
async fn without_a_token_archived_projects_and_forks_are_still_left_out() {
    let (fake, _) = setup().await;
    {
        let mut st = fake.state();
        st.add_group("team");
        st.add_project("team", "app", false, false);
        st.add_project("team", "old", true, false);
        st.add_project("team", "fork", false, true);
        st.add_project("team", "secret", false, false);
        for p in ["team/app", "team/old", "team/fork"] {
            st.make_public(p);
        }
    }
    let anon = GitLabClient::new(&fake.url, None).unwrap();
    let paths = |v: Vec<autogit_drivers::gitlab::client::Project>| -> Vec<String> {
        v.into_iter().map(|p| p.path_with_namespace).collect()
    };
    let listed = anon
        .account_projects(Account::Group("team"), ListFilter::default())
        .await
        .unwrap();
    assert_eq!(paths(listed), ["team/app"]);
    {
        let st = fake.state();
        assert!(
            st.requests
                .iter()
                .any(|(_, p)| p.contains("/groups/team/projects") && p.contains("archived=false")),
            "{:?}",
            st.requests
        );
        assert!(
            st.requests
                .iter()
                .any(|(_, p)| p.starts_with("/api/v4/projects/")),
            "the simple view's fork status is read from the project"
        );
    }
    let listed = anon
        .account_projects(
            Account::Group("team"),
            ListFilter {
                archived: true,
                forks: true,
            },
        )
        .await
        .unwrap();
    assert_eq!(paths(listed), ["team/app", "team/old", "team/fork"]);
}

#[tokio::test]
async fn a_moved_project_is_followed_on_the_same_host_only() {
    let (fake, client) = setup().await;
    {
        let mut st = fake.state();
        st.add_group("mirrors");
        st.add_project("mirrors", "app", false, false);
        st.rename_project("mirrors/app", "app-renamed");
    }
    let p = client
        .project_by_path("mirrors/app")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.path_with_namespace, "mirrors/app-renamed");
    // ensure_project finds it where it went, instead of creating another.
    let t = autogit_core::mirror::TargetPath {
        namespace: "mirrors".into(),
        name: "app".into(),
    };
    let found = autogit_drivers::mirror::ensure_project(&client, &t)
        .await
        .unwrap();
    assert_eq!(found.path_with_namespace, "mirrors/app-renamed");
    assert_eq!(fake.state().projects.len(), 1);
    assert!(fake.state().writes().is_empty());

    // A Location on another host is not followed: the token stays here.
    fake.state().redirect_origin = Some("http://gitlab.elsewhere.test".into());
    let e = client.project_by_path("mirrors/app").await.unwrap_err();
    assert!(matches!(e, GitLabError::ForeignRedirect { .. }), "{e:?}");
    assert!(e.to_string().contains("gitlab.elsewhere.test"), "{e}");
    assert!(!e.to_string().contains(ROOT_TOKEN));
}

#[tokio::test]
async fn rate_limits_follow_ratelimit_reset_and_a_long_wait_is_said_at_once() {
    let (fake, client) = setup().await;
    {
        let mut st = fake.state();
        st.rate_limit = 1;
        st.retry_after = String::new(); // only the RateLimit-* headers
        st.ratelimit_reset_in = 1;
    }
    assert_eq!(client.version().await.unwrap().version, "18.5.4");
    assert_eq!(fake.state().requests.len(), 2, "one 429, then the retry");

    // GitLab asks for an hour: no futile retries, and the error says how long.
    {
        let mut st = fake.state();
        st.requests.clear();
        st.rate_limit = 10;
        st.retry_after = "3600".into();
    }
    let started = Instant::now();
    let e = client.version().await.unwrap_err();
    assert!(
        matches!(
            e,
            GitLabError::RateLimited {
                retry_after: Some(3600),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("3600 s"), "{e}");
    assert_eq!(fake.state().requests.len(), 1);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn users_and_projects_past_the_offset_limit_are_listed_with_keyset_pagination() {
    let (fake, client) = setup().await;
    {
        let mut st = fake.state();
        st.max_offset = 4;
        st.max_per_page = 2;
        for i in 0..6 {
            st.add_user(&format!("user{i}"), false);
        }
        st.add_group("team");
        for i in 0..6 {
            st.add_project("team", &format!("p{i}"), false, false);
        }
        let last = st.projects.last().unwrap().id;
        st.jobs.push(gitlab_support::FJob {
            id: 99,
            project_id: last,
            status: "pending".into(),
            tag_list: vec!["gpu".into()],
        });
    }
    // The limit is real: offset pagination fails past it.
    let e = client
        .get_all::<autogit_drivers::gitlab::client::User>("users")
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(405), "{e:?}");
    assert!(e.to_string().contains("keyset"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let store = autogit_drivers::secrets::SecretStore::open(dir.path()).unwrap();
    let s = autogit_drivers::gitlab::bootstrap::status(&client, &store).await;
    assert_eq!(s.users, Some(7), "{:?}", s.errors);
    let jobs = client.active_jobs().await.unwrap();
    assert_eq!(jobs.iter().map(|j| j.id).collect::<Vec<_>>(), [99]);
    let st = fake.state();
    assert!(
        st.requests
            .iter()
            .any(|(_, p)| p.starts_with("/api/v4/users?") && p.contains("id_after=")),
        "{:?}",
        st.requests
    );
}
