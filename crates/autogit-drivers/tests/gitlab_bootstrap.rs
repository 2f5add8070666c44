//! The GitLab bootstrap (`autogit_drivers::gitlab::bootstrap`) against the fake GitLab in
//! `gitlab_support`: GitLab cannot run on the machines that test autogit, so an in-memory
//! server answers the REST endpoints as GitLab documents them. The production client and
//! bootstrap code are the ones under test; only `gitlab-rails runner` is stood in for here by
//! an [`Exec`] that does what the Ruby script does to the fake's state (the real script runs
//! on the real engine in `gitlab_rails.rs`).

mod gitlab_support;

use autogit_core::config::{
    AccessLevel, GitLab, GitLabGroup, GitLabUser, GroupMember, UserRole, Visibility,
};
use autogit_drivers::engine::EngineError;
use autogit_drivers::gitlab::bootstrap::{
    ADMIN_TOKEN, Bootstrap, BootstrapError, Date, Exec, ROOT_PASSWORD, RunnerTarget, TokenIndex,
    account_token_secret, admin_client, capture_initial_root_password, user_password_secret,
};
use autogit_drivers::gitlab::client::{GitLabClient, RetryPolicy};
use autogit_drivers::secrets::{ExposeSecret, SecretStore};
use gitlab_support::Fake;
use std::os::unix::fs::PermissionsExt;
use std::sync::Mutex;
use std::time::Duration;

const TODAY: &str = "2025-11-25";

/// Does to the fake what autogit's Ruby script does to GitLab: revokes root's earlier
/// `autogit-admin` tokens and adds one with the value from `set_token('...')`. `cat` of the
/// initial root password answers as the file reads.
struct RailsStandIn<'a> {
    fake: &'a Fake,
    calls: Mutex<Vec<Vec<String>>>,
}

impl<'a> RailsStandIn<'a> {
    fn new(fake: &'a Fake) -> Self {
        Self {
            fake,
            calls: Mutex::new(Vec::new()),
        }
    }
    fn rails_calls(&self) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a[0].ends_with("gitlab-rails"))
            .count()
    }
}

impl Exec for RailsStandIn<'_> {
    async fn exec(&self, argv: &[String]) -> Result<(i64, String), EngineError> {
        self.exec_with_stdin(argv, b"").await
    }

    async fn exec_with_stdin(
        &self,
        argv: &[String],
        stdin: &[u8],
    ) -> Result<(i64, String), EngineError> {
        self.calls.lock().unwrap().push(argv.to_vec());
        if argv[0].ends_with("gitlab-rails") {
            let script = &argv[2];
            assert!(script.contains("t.set_token(v)"), "{script}");
            // As the script does: the token is the first line of standard input.
            let token = String::from_utf8_lossy(stdin)
                .lines()
                .next()
                .filter(|l| !l.is_empty())
                .expect("the token on stdin")
                .to_owned();
            let expires = script
                .split("Date.parse('")
                .nth(1)
                .and_then(|s| s.split('\'').next())
                .map(str::to_owned);
            let mut st = self.fake.state();
            for p in st.pats.iter_mut() {
                if p.user_id == 1 && p.name == "autogit-admin" {
                    p.revoked = true;
                }
            }
            let id = st.add_token(1, "autogit-admin", &token, &["api", "admin_mode"]);
            if let Some(p) = st.pats.iter_mut().find(|p| p.id == id) {
                p.expires_at = expires;
            }
            return Ok((0, format!("autogit-admin-token-id={id}\n")));
        }
        if argv == ["cat", "/etc/gitlab/initial_root_password"] {
            return Ok((
                0,
                "# WARNING: ...\n\nPassword: Root-Pw-From-File-42\n\n# NOTE: deleted after 24 hours.\n"
                    .into(),
            ));
        }
        Ok((127, "not found".into()))
    }
}

fn config() -> GitLab {
    let mut g = autogit_core::config::Config::default().gitlab;
    g.users = vec![
        GitLabUser {
            username: "alice".into(),
            email: "alice@example.com".into(),
            name: "Alice".into(),
            role: UserRole::Admin,
        },
        GitLabUser {
            username: "bob".into(),
            email: "bob@example.com".into(),
            name: "Bob".into(),
            role: UserRole::Developer,
        },
    ];
    g.groups = vec![
        // Listed child first: the bootstrap creates parents first.
        GitLabGroup {
            path: "team/backend".into(),
            name: "Backend".into(),
            visibility: Visibility::Private,
            members: vec![GroupMember {
                username: "bob".into(),
                access: AccessLevel::Developer,
            }],
        },
        GitLabGroup {
            path: "team".into(),
            name: "Team".into(),
            visibility: Visibility::Internal,
            members: vec![
                GroupMember {
                    username: "alice".into(),
                    access: AccessLevel::Maintainer,
                },
                GroupMember {
                    username: "bob".into(),
                    access: AccessLevel::Reporter,
                },
            ],
        },
    ];
    g
}

fn base(fake: &Fake) -> GitLabClient {
    GitLabClient::new(&fake.url, None)
        .unwrap()
        .with_retry(RetryPolicy {
            attempts: 3,
            first_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(20),
            max_retry_after: Duration::from_secs(2),
            timeout: Duration::from_secs(10),
        })
}

fn today() -> Date {
    Date::parse(TODAY).unwrap()
}

/// Admin client (minting when needed) and a full bootstrap run.
async fn run(
    fake: &Fake,
    rails: &RailsStandIn<'_>,
    store: &SecretStore,
    cfg: &GitLab,
) -> autogit_drivers::gitlab::bootstrap::Report {
    let (client, minted) = admin_client(&base(fake), rails, store, cfg.token_lifetime, today())
        .await
        .expect("admin client");
    let mut report = Bootstrap::new(client, store, cfg, today())
        .ensure()
        .await
        .expect("bootstrap");
    report.admin_token_minted = minted;
    report
}

fn all_secret_values(store: &SecretStore) -> Vec<String> {
    store
        .names()
        .unwrap()
        .into_iter()
        .filter(|n| !n.ends_with(".json"))
        .map(|n| store.get(&n).unwrap().unwrap().expose_secret().to_owned())
        .collect()
}

#[tokio::test]
async fn bootstrap_creates_everything_once_and_the_second_run_writes_nothing() {
    let fake = Fake::start().await;
    let rails = RailsStandIn::new(&fake);
    let dir = tempfile::tempdir().unwrap();
    let store = SecretStore::open(dir.path()).unwrap();
    let cfg = config();

    let first = run(&fake, &rails, &store, &cfg).await;
    assert!(first.admin_token_minted);
    assert_eq!(rails.rails_calls(), 1);
    assert_eq!(first.users_created, ["alice", "bob"]);
    assert_eq!(
        first.groups_created,
        ["team", "team/backend"],
        "parents first"
    );
    assert_eq!(
        first.members_added,
        ["team:alice", "team:bob", "team/backend:bob"]
    );
    assert_eq!(first.tokens_created.len(), 4);
    {
        let st = fake.state();
        let alice = st.users.iter().find(|u| u.username == "alice").unwrap();
        assert!(alice.admin && alice.password_set);
        assert!(!st.users.iter().find(|u| u.username == "bob").unwrap().admin);
        for (account, scopes) in [
            ("ci", vec!["create_runner", "manage_runner"]),
            ("api", vec!["api"]),
            ("backup", vec!["read_api"]),
            ("mirror", vec!["api"]),
        ] {
            let user = st
                .users
                .iter()
                .find(|u| u.username == format!("autogit-{account}"))
                .unwrap_or_else(|| panic!("bot autogit-{account}"));
            assert!(
                !user.password_set,
                "bots get a random password nobody knows"
            );
            let pats: Vec<_> = st.pats.iter().filter(|p| p.user_id == user.id).collect();
            assert_eq!(pats.len(), 1);
            assert_eq!(pats[0].scopes, scopes, "{account}");
            assert_eq!(pats[0].expires_at.as_deref(), Some("2026-02-23"), "90 days");
            let stored = store.get(&account_token_secret(account)).unwrap().unwrap();
            assert_eq!(stored.expose_secret(), pats[0].token);
        }
        let team = st.groups.iter().find(|g| g.full_path == "team").unwrap();
        assert_eq!(team.visibility, "internal");
        let bob = st.users.iter().find(|u| u.username == "bob").unwrap();
        assert!(st.members.contains(&(team.id, bob.id, 20)), "reporter = 20");
    }
    let pw = store.get(&user_password_secret("alice")).unwrap().unwrap();
    assert_eq!(pw.expose_secret().len(), 24);
    let env = std::fs::read_to_string(store.env_file()).unwrap();
    for key in [
        "GITLAB_URL=http://gitlab.localhost:8080",
        "GITLAB_CI_TOKEN=glpat-",
        "GITLAB_API_TOKEN=",
        "GITLAB_BACKUP_TOKEN=",
        "GITLAB_MIRROR_TOKEN=",
    ] {
        assert!(env.contains(key), "{key} in\n{env}");
    }
    assert!(
        !env.contains("GITLAB_ADMIN"),
        "the admin token stays out of the env file"
    );

    let before = fake.state().pats.len();
    fake.state().requests.clear();
    let second = run(&fake, &rails, &store, &cfg).await;
    assert!(!second.admin_token_minted);
    assert_eq!(rails.rails_calls(), 1, "the admin token is reused");
    let st = fake.state();
    assert!(
        st.writes().is_empty(),
        "second run wrote: {:?}",
        st.writes()
    );
    assert!(!st.requests.is_empty());
    assert_eq!(st.pats.len(), before);
    assert_eq!(second.tokens_kept.len(), 4);
    assert!(second.users_created.is_empty() && second.groups_created.is_empty());
    assert_eq!(second.users_existing, ["alice", "bob"]);
}

#[tokio::test]
async fn a_missing_stored_token_is_recreated_and_the_old_one_revoked() {
    let fake = Fake::start().await;
    let rails = RailsStandIn::new(&fake);
    let dir = tempfile::tempdir().unwrap();
    let store = SecretStore::open(dir.path()).unwrap();
    let cfg = config();
    run(&fake, &rails, &store, &cfg).await;
    let secret = account_token_secret("backup");
    let old = store
        .get(&secret)
        .unwrap()
        .unwrap()
        .expose_secret()
        .to_owned();
    store.remove(&secret).unwrap();
    fake.state().requests.clear();

    let report = run(&fake, &rails, &store, &cfg).await;
    assert_eq!(report.tokens_created, std::slice::from_ref(&secret));
    assert_eq!(report.tokens_kept.len(), 3);
    let new = store.get(&secret).unwrap().unwrap();
    assert_ne!(new.expose_secret(), old);
    let st = fake.state();
    let writes = st.writes();
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert_eq!(writes[0].0, "DELETE", "the orphaned token is revoked");
    assert!(
        writes[1].1.ends_with("/personal_access_tokens"),
        "{writes:?}"
    );
    assert!(st.pats.iter().find(|p| p.token == old).unwrap().revoked);
}

#[tokio::test]
async fn revoked_or_expired_tokens_are_recreated() {
    let fake = Fake::start().await;
    let rails = RailsStandIn::new(&fake);
    let dir = tempfile::tempdir().unwrap();
    let store = SecretStore::open(dir.path()).unwrap();
    let cfg = config();
    run(&fake, &rails, &store, &cfg).await;
    let ci = store.get(&account_token_secret("ci")).unwrap().unwrap();
    let api = store.get(&account_token_secret("api")).unwrap().unwrap();
    {
        let mut st = fake.state();
        let p = st
            .pats
            .iter_mut()
            .find(|p| p.token == ci.expose_secret())
            .unwrap();
        p.revoked = true;
        let p = st
            .pats
            .iter_mut()
            .find(|p| p.token == api.expose_secret())
            .unwrap();
        p.expires_at = Some("2025-11-01".into());
    }
    let report = run(&fake, &rails, &store, &cfg).await;
    let mut created = report.tokens_created.clone();
    created.sort();
    assert_eq!(
        created,
        [account_token_secret("api"), account_token_secret("ci")]
    );
    assert_ne!(
        store
            .get(&account_token_secret("ci"))
            .unwrap()
            .unwrap()
            .expose_secret(),
        ci.expose_secret()
    );
}

#[tokio::test]
async fn a_revoked_admin_token_is_minted_again() {
    let fake = Fake::start().await;
    let rails = RailsStandIn::new(&fake);
    let dir = tempfile::tempdir().unwrap();
    let store = SecretStore::open(dir.path()).unwrap();
    let cfg = config();
    run(&fake, &rails, &store, &cfg).await;
    let admin = store.get(ADMIN_TOKEN).unwrap().unwrap();
    for p in fake.state().pats.iter_mut() {
        if p.token == admin.expose_secret() {
            p.revoked = true;
        }
    }
    let report = run(&fake, &rails, &store, &cfg).await;
    assert!(report.admin_token_minted);
    assert_eq!(rails.rails_calls(), 2);
    assert_ne!(
        store.get(ADMIN_TOKEN).unwrap().unwrap().expose_secret(),
        admin.expose_secret()
    );
    let st = fake.state();
    let live: Vec<_> = st
        .pats
        .iter()
        .filter(|p| p.name == "autogit-admin" && !p.revoked)
        .collect();
    assert_eq!(live.len(), 1, "one live admin token");
}

#[tokio::test]
async fn existing_users_are_never_changed() {
    let fake = Fake::start().await;
    let bob_id = fake.state().add_user("bob", false);
    let rails = RailsStandIn::new(&fake);
    let dir = tempfile::tempdir().unwrap();
    let store = SecretStore::open(dir.path()).unwrap();
    let report = run(&fake, &rails, &store, &config()).await;
    assert_eq!(report.users_created, ["alice"]);
    assert_eq!(report.users_existing, ["bob"]);
    assert!(store.get(&user_password_secret("bob")).unwrap().is_none());
    let st = fake.state();
    assert!(
        !st.requests.iter().any(|(m, p)| m != "GET"
            && p.contains(&format!("/users/{bob_id}"))
            && !p.contains("personal_access_tokens")),
        "nothing is written to bob"
    );
}

#[tokio::test]
async fn rotate_tokens_replaces_every_value() {
    let fake = Fake::start().await;
    let rails = RailsStandIn::new(&fake);
    let dir = tempfile::tempdir().unwrap();
    let store = SecretStore::open(dir.path()).unwrap();
    let cfg = config();
    run(&fake, &rails, &store, &cfg).await;
    let names = [
        ADMIN_TOKEN.to_owned(),
        account_token_secret("ci"),
        account_token_secret("api"),
        account_token_secret("backup"),
        account_token_secret("mirror"),
    ];
    let before: Vec<String> = names
        .iter()
        .map(|n| store.get(n).unwrap().unwrap().expose_secret().to_owned())
        .collect();
    let index_before = TokenIndex::load(&store).unwrap();

    let (client, _) = admin_client(&base(&fake), &rails, &store, cfg.token_lifetime, today())
        .await
        .unwrap();
    let mut b = Bootstrap::new(client, &store, &cfg, today());
    let rotated = b.rotate_tokens().await.unwrap();
    assert_eq!(rotated.len(), 5);
    assert_eq!(
        rotated.last().map(String::as_str),
        Some(ADMIN_TOKEN),
        "admin last"
    );
    for (n, old) in names.iter().zip(&before) {
        let new = store.get(n).unwrap().unwrap();
        assert_ne!(new.expose_secret(), old, "{n} rotated");
        let st = fake.state();
        assert!(st.pats.iter().find(|p| &p.token == old).unwrap().revoked);
        assert!(
            !st.pats
                .iter()
                .find(|p| p.token == new.expose_secret())
                .unwrap()
                .revoked
        );
    }
    let index_after = TokenIndex::load(&store).unwrap();
    for (name, meta) in &index_after.tokens {
        assert_ne!(
            meta.pat_id, index_before.tokens[name].pat_id,
            "{name} id moved"
        );
    }
    let env = std::fs::read_to_string(store.env_file()).unwrap();
    let ci_new = store.get(&account_token_secret("ci")).unwrap().unwrap();
    assert!(env.contains(&format!("GITLAB_CI_TOKEN={}", ci_new.expose_secret())));
    // The bootstrap's client follows the rotated admin token.
    assert!(b.client.version().await.is_ok());
    // And a later run finds everything in order.
    fake.state().requests.clear();
    run(&fake, &rails, &store, &cfg).await;
    assert!(
        fake.state().writes().is_empty(),
        "{:?}",
        fake.state().writes()
    );
}

#[tokio::test]
async fn runner_tokens_are_created_with_tags_and_stored() {
    let fake = Fake::start().await;
    let rails = RailsStandIn::new(&fake);
    let dir = tempfile::tempdir().unwrap();
    let store = SecretStore::open(dir.path()).unwrap();
    let cfg = config();
    run(&fake, &rails, &store, &cfg).await;
    let (client, _) = admin_client(&base(&fake), &rails, &store, cfg.token_lifetime, today())
        .await
        .unwrap();
    let b = Bootstrap::new(client, &store, &cfg, today());
    let tags = vec!["gpu".to_owned(), "inference".to_owned()];
    let t = b
        .create_runner_token(
            &RunnerTarget::Group("team".into()),
            &tags,
            false,
            true,
            "desktop-3090ti",
        )
        .await
        .unwrap();
    let value = store.get(&t.secret).unwrap().unwrap();
    assert!(value.expose_secret().starts_with("glrt-"));
    {
        let st = fake.state();
        let r = st.runners.iter().find(|r| r.id == t.id).unwrap();
        assert_eq!(r.tags, tags);
        assert!(!r.run_untagged);
        assert_eq!(r.access_level, "ref_protected");
        assert_eq!(r.runner_type, "group_type");
        assert_eq!(r.token, value.expose_secret());
    }
    let inst = b
        .create_runner_token(&RunnerTarget::Instance, &[], true, false, "shared")
        .await
        .unwrap();
    assert_ne!(inst.id, t.id);
    let index = TokenIndex::load(&store).unwrap();
    assert_eq!(index.runners[&t.secret].tags, tags);
    assert_eq!(index.runners[&inst.secret].runner_type, "instance_type");
    assert!(index.runners[&t.secret].protected && !index.runners[&inst.secret].protected);
    assert_eq!(
        fake.state()
            .runners
            .iter()
            .find(|r| r.id == inst.id)
            .unwrap()
            .access_level,
        "not_protected"
    );
    let e = b
        .create_runner_token(&RunnerTarget::Group("nope".into()), &[], true, false, "x")
        .await
        .unwrap_err();
    assert!(matches!(e, BootstrapError::UnknownGroup(_)), "{e:?}");
}

#[tokio::test]
async fn secrets_are_0600_and_never_in_debug_or_errors() {
    let fake = Fake::start().await;
    let rails = RailsStandIn::new(&fake);
    let dir = tempfile::tempdir().unwrap();
    let store = SecretStore::open(dir.path()).unwrap();
    let cfg = config();
    assert!(capture_initial_root_password(&rails, &store).await.unwrap());
    assert_eq!(
        store.get(ROOT_PASSWORD).unwrap().unwrap().expose_secret(),
        "Root-Pw-From-File-42"
    );
    let report = run(&fake, &rails, &store, &cfg).await;
    assert!(report.root_password_stored);
    let (client, _) = admin_client(&base(&fake), &rails, &store, cfg.token_lifetime, today())
        .await
        .unwrap();
    let b = Bootstrap::new(client, &store, &cfg, today());
    let rt = b
        .create_runner_token(&RunnerTarget::Instance, &[], true, false, "r")
        .await
        .unwrap();

    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(store.dir()), 0o700);
    let mut files = 0;
    for e in std::fs::read_dir(store.dir()).unwrap() {
        let p = e.unwrap().path();
        assert_eq!(mode(&p), 0o600, "{}", p.display());
        files += 1;
    }
    assert!(files >= 10, "{files} files");

    let values = all_secret_values(&store);
    assert!(values.len() >= 9);
    // The index as stored (sealed on disk): its plaintext must hold no token either.
    let index = store
        .get("gitlab-tokens.json")
        .unwrap()
        .unwrap()
        .expose_secret()
        .to_owned();
    let debug = [
        format!("{report:?}"),
        format!("{b:?}"),
        format!("{rt:?}"),
        format!("{store:?}"),
        serde_json::to_string(&report).unwrap(),
        index,
    ];
    // An error that reaches a log: a rejected token.
    let bad = b
        .client
        .clone()
        .with_token(store.get(&account_token_secret("backup")).unwrap());
    let err = bad
        .create_group("x", "x", "private", None)
        .await
        .unwrap_err();
    let err_text = format!("{err} {err:?}");
    for v in &values {
        for text in debug.iter().chain([&err_text]) {
            assert!(!text.contains(v.as_str()), "a secret leaked into: {text}");
        }
    }
}

#[tokio::test]
async fn missing_parent_and_unknown_member_are_clear_errors() {
    let fake = Fake::start().await;
    let rails = RailsStandIn::new(&fake);
    let dir = tempfile::tempdir().unwrap();
    let store = SecretStore::open(dir.path()).unwrap();
    let mut cfg = config();
    cfg.groups = vec![GitLabGroup {
        path: "a/b".into(),
        name: "B".into(),
        visibility: Visibility::Private,
        members: vec![],
    }];
    let (client, _) = admin_client(&base(&fake), &rails, &store, cfg.token_lifetime, today())
        .await
        .unwrap();
    let e = Bootstrap::new(client.clone(), &store, &cfg, today())
        .ensure()
        .await
        .unwrap_err();
    assert!(
        matches!(&e, BootstrapError::MissingParent { parent, .. } if parent == "a"),
        "{e:?}"
    );
    cfg.groups = vec![GitLabGroup {
        path: "c".into(),
        name: "C".into(),
        visibility: Visibility::Private,
        members: vec![GroupMember {
            username: "ghost".into(),
            access: AccessLevel::Developer,
        }],
    }];
    let e = Bootstrap::new(client, &store, &cfg, today())
        .ensure()
        .await
        .unwrap_err();
    assert!(
        matches!(&e, BootstrapError::UnknownUser { username, .. } if username == "ghost"),
        "{e:?}"
    );
}
