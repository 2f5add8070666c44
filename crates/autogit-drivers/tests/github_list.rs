//! The GitHub repository lister (`autogit_drivers::mirror::github`) against a fake GitHub API
//! over loopback: Link pagination, users and organizations, 401, 403, the rate limit, 404.

mod github_support;

use autogit_drivers::mirror::github::{GitHub, GitHubError, Owner};
use github_support::FakeGitHub;
use secrecy::SecretString;

fn names(n: usize, prefix: &str) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:03}")).collect()
}

#[tokio::test]
async fn lists_every_page_of_a_user_and_an_org() {
    let fake = FakeGitHub::start().await;
    {
        let mut st = fake.state();
        st.max_per_page = 40;
        st.add_repos(false, "me", &names(95, "r"), "git://h");
        st.add_repos(true, "acme", &names(3, "o"), "git://h/acme");
    }
    let gh = GitHub::new(&fake.url, None).unwrap();
    let repos = gh.list(&Owner::User("me".into())).await.unwrap();
    assert_eq!(repos.len(), 95);
    assert_eq!(repos[94].name, "r094");
    assert_eq!(repos[0].clone_url().as_deref(), Some("git://h/r000.git"));
    assert_eq!(
        fake.state().requests.len(),
        3,
        "{:?}",
        fake.state().requests
    );
    let org = gh.list(&Owner::Org("acme".into())).await.unwrap();
    assert_eq!(
        org.iter().map(|r| r.full_name.as_str()).collect::<Vec<_>>(),
        ["acme/o000", "acme/o001", "acme/o002"]
    );
    assert!(
        fake.state()
            .requests
            .last()
            .unwrap()
            .starts_with("/orgs/acme/repos?per_page=100")
    );
}

#[tokio::test]
async fn the_token_is_sent_as_bearer_and_errors_are_typed() {
    let fake = FakeGitHub::start().await;
    {
        let mut st = fake.state();
        st.token = Some("ghp_goodtoken".into());
        st.add_repos(false, "me", &names(2, "r"), "git://h");
    }
    let good = GitHub::new(&fake.url, Some(SecretString::from("ghp_goodtoken"))).unwrap();
    assert_eq!(good.list(&Owner::User("me".into())).await.unwrap().len(), 2);
    let seen = fake.state().auth_seen.clone();
    assert!(
        !seen.is_empty() && seen.iter().all(|a| a == "Bearer ghp_goodtoken"),
        "{seen:?}"
    );
    assert!(!format!("{good:?}").contains("ghp_goodtoken"));

    let bad = GitHub::new(&fake.url, Some(SecretString::from("ghp_wrong"))).unwrap();
    let e = bad.list(&Owner::User("me".into())).await.unwrap_err();
    assert!(matches!(e, GitHubError::Unauthorized { .. }), "{e}");
    assert!(!e.to_string().contains("ghp_wrong"));

    let e = good.list(&Owner::User("nobody".into())).await.unwrap_err();
    assert!(matches!(e, GitHubError::NotFound { .. }), "{e}");

    fake.state().forbidden = true;
    let e = good.list(&Owner::Org("me".into())).await.unwrap_err();
    assert!(matches!(e, GitHubError::Forbidden { .. }), "{e}");
    assert!(e.to_string().contains("Resource not accessible"), "{e}");

    fake.state().rate_limited = true;
    let e = good.list(&Owner::User("me".into())).await.unwrap_err();
    match &e {
        GitHubError::RateLimited { reset, .. } => assert_eq!(*reset, 1_767_225_600),
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("resets at 1767225600"), "{e}");
}

/// A name for this machine that resolves to loopback only but is not spelled as loopback (the
/// host name, which /etc/hosts maps to 127.0.x.x on most systems): a request to it would
/// reach the loopback fake, so a refusal is the client's doing.
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
    let fake = FakeGitHub::start().await;
    {
        let mut st = fake.state();
        st.token = Some("ghp_secret".into());
        st.add_repos(false, "me", &names(2, "r"), "git://h");
    }
    let token = || Some(SecretString::from("ghp_secret"));
    // Over loopback the token goes (a local test server).
    let gh = GitHub::new(&fake.url, token()).unwrap();
    assert_eq!(gh.list(&Owner::User("me".into())).await.unwrap().len(), 2);
    let before = fake.state().requests.len();
    // To any other host over http it does not, even when that host would answer.
    let port = fake.url.rsplit(':').next().unwrap();
    let alias = loopback_alias();
    let host = alias.clone().unwrap_or_else(|| "192.0.2.1".to_owned());
    let gh = GitHub::new(&format!("http://{host}:{port}"), token()).unwrap();
    let e = gh.list(&Owner::User("me".into())).await.unwrap_err();
    assert!(matches!(e, GitHubError::TokenOverHttp(_)), "{e}");
    assert!(e.to_string().contains("plain http"), "{e}");
    if alias.is_some() {
        assert_eq!(
            fake.state().requests.len(),
            before,
            "a request reached the fake"
        );
    }
    // Without a token, plain http is fine.
    fake.state().token = None;
    if let Some(a) = alias {
        let gh = GitHub::new(&format!("http://{a}:{port}"), None).unwrap();
        assert_eq!(gh.list(&Owner::User("me".into())).await.unwrap().len(), 2);
    }
}

#[tokio::test]
async fn the_token_owners_private_repositories_are_listed() {
    let fake = FakeGitHub::start().await;
    {
        let mut st = fake.state();
        st.token = Some("ghp_mine".into());
        st.token_user = Some("Me".into());
        st.add_repos(
            false,
            "me",
            &["public-a".into(), "private-b".into()],
            "git://h",
        );
        st.add_repos(false, "other", &["x".into(), "private-y".into()], "git://h");
    }
    let gh = GitHub::new(&fake.url, Some(SecretString::from("ghp_mine"))).unwrap();
    let mine = gh.list(&Owner::User("me".into())).await.unwrap();
    let names: Vec<&str> = mine.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        ["public-a", "private-b"],
        "the login matches case-insensitively"
    );
    assert!(mine[1].private);
    assert!(
        fake.state()
            .requests
            .iter()
            .any(|p| p.starts_with("/user/repos?") && p.contains("affiliation=owner")),
        "{:?}",
        fake.state().requests
    );
    // Another user's listing stays the public one, token or not.
    let theirs = gh.list(&Owner::User("other".into())).await.unwrap();
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0].name, "x");
}

#[tokio::test]
async fn a_repository_without_clone_url_gets_one_from_html_url() {
    let fake = FakeGitHub::start().await;
    {
        let mut st = fake.state();
        st.add_repos(false, "me", &names(3, "r"), "https://github.example");
        // The `minimal-repository` schema does not require clone_url; html_url it does.
        let list = st.users.get_mut("me").unwrap();
        list[1].as_object_mut().unwrap().remove("clone_url");
        list[2].as_object_mut().unwrap().remove("clone_url");
        list[2].as_object_mut().unwrap().remove("html_url");
    }
    let gh = GitHub::new(&fake.url, None).unwrap();
    let repos = gh.list(&Owner::User("me".into())).await.unwrap();
    assert_eq!(
        repos.len(),
        3,
        "one odd repository does not fail the account"
    );
    assert_eq!(
        repos[0].clone_url().as_deref(),
        Some("https://github.example/r000.git")
    );
    assert_eq!(
        repos[1].clone_url().as_deref(),
        Some("https://github.example/r001.git")
    );
    assert_eq!(repos[2].clone_url(), None);
}

#[tokio::test]
async fn a_secondary_rate_limit_is_waited_out_or_reported() {
    let fake = FakeGitHub::start().await;
    {
        let mut st = fake.state();
        st.add_repos(true, "acme", &names(2, "r"), "git://h");
        st.secondary_limit = 1;
        st.secondary_retry_after = 1;
    }
    let gh = GitHub::new(&fake.url, None).unwrap();
    let started = std::time::Instant::now();
    assert_eq!(gh.list(&Owner::Org("acme".into())).await.unwrap().len(), 2);
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "retry-after honoured"
    );
    assert_eq!(fake.state().requests.len(), 2);

    // A wait longer than a minute is not slept through: it is reported.
    {
        let mut st = fake.state();
        st.secondary_limit = 1;
        st.secondary_retry_after = 600;
    }
    let e = gh.list(&Owner::Org("acme".into())).await.unwrap_err();
    match &e {
        GitHubError::RateLimited {
            retry_after, reset, ..
        } => assert_eq!((*retry_after, *reset), (Some(600), 0)),
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("wait 600 s"), "{e}");
}
