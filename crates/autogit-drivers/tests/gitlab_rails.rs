//! The rails-runner step of the GitLab bootstrap on the real engine: `mint_admin_token` and
//! `capture_initial_root_password` exec into a container of the stand-in image
//! (`testing::fake_gitlab_rails_image`: a `gitlab-rails` script that records its arguments
//! and answers like autogit's Ruby script, and `/etc/gitlab/initial_root_password` as GitLab
//! lays it out). GitLab itself cannot run here. Without an engine the test says so and
//! passes, unless `AUTOGIT_REQUIRE_TOOLS` is set, when it fails.

mod support;

use autogit_core::units::Dur;
use autogit_drivers::engine::ContainerEngine;
use autogit_drivers::gitlab::bootstrap::{
    ADMIN_TOKEN, Date, InContainer, ROOT_PASSWORD, TokenIndex, capture_initial_root_password,
    mint_admin_token,
};
use autogit_drivers::secrets::{ExposeSecret, SecretStore};
use autogit_drivers::testing::{FAKE_ROOT_PASSWORD, fake_gitlab_rails_image};
use support::{Cleanup, project, rehash, run, spec};

#[tokio::test]
async fn admin_token_is_minted_with_gitlab_rails_in_the_container() {
    let Some(docker) = support::engine().await else {
        return;
    };
    let image = match tokio::task::spawn_blocking(fake_gitlab_rails_image)
        .await
        .expect("join")
    {
        Ok(i) => i,
        Err(e) => {
            assert!(!support::required(), "stand-in image: {e}");
            eprintln!("skipping: {e}");
            return;
        }
    };
    let project = project("gitlab-rails");
    let _cleanup = Cleanup::new(&docker, &project).await;
    let mut s = spec(&project, "gitlab");
    s.image = image;
    s.healthcheck = None;
    s.command = vec!["/bin/sleep".into(), "3600".into()];
    rehash(&mut s);
    let id = run(&docker, &s).await;
    let exec = InContainer {
        engine: &docker,
        container: id.clone(),
    };
    let dir = tempfile::tempdir().unwrap();
    let store = SecretStore::open(dir.path()).unwrap();
    let today = Date::parse("2025-11-25").unwrap();

    // The initial root password is captured, never printed.
    assert!(capture_initial_root_password(&exec, &store).await.unwrap());
    assert_eq!(
        store.get(ROOT_PASSWORD).unwrap().unwrap().expose_secret(),
        FAKE_ROOT_PASSWORD
    );

    let first = mint_admin_token(&exec, &store, Dur::secs(90 * 86_400), today)
        .await
        .expect("mint");
    assert_eq!(first, 1);
    let token = store.get(ADMIN_TOKEN).unwrap().unwrap();
    assert!(token.expose_secret().starts_with("glpat-"));
    assert_eq!(token.expose_secret().len(), "glpat-".len() + 32);

    let (code, args) = docker
        .exec(&id, &["cat".into(), "/tmp/gitlab-rails.args".into()])
        .await
        .unwrap();
    assert_eq!(code, 0);
    let lines: Vec<&str> = args.lines().collect();
    assert_eq!(lines[0], "runner", "{args}");
    let script = lines[1];
    // The token is not in the command line (`ps`, `docker events`): it came on stdin.
    assert!(
        !args.contains(token.expose_secret()) && !args.contains("glpat-"),
        "token in gitlab-rails' argv: {args}"
    );
    assert!(script.contains("t.set_token(v)"), "{script}");
    let (code, input) = docker
        .exec(&id, &["cat".into(), "/tmp/gitlab-rails.stdin".into()])
        .await
        .unwrap();
    assert_eq!(code, 0);
    assert_eq!(
        input.lines().next(),
        Some(token.expose_secret()),
        "the value autogit generated is the one GitLab reads"
    );
    assert!(script.contains("name: 'autogit-admin'"));
    assert!(script.contains("Date.parse('2026-02-23')"), "90 days");
    assert_eq!(lines[2], "--end-of-call--");

    // Re-running mints a new token (the script revokes the old one by name) and the index
    // follows.
    let second = mint_admin_token(&exec, &store, Dur::secs(30 * 86_400), today)
        .await
        .unwrap();
    assert_eq!(second, 2);
    assert_ne!(
        store.get(ADMIN_TOKEN).unwrap().unwrap().expose_secret(),
        token.expose_secret()
    );
    let index = TokenIndex::load(&store).unwrap();
    assert_eq!(index.tokens[ADMIN_TOKEN].pat_id, 2);
    assert_eq!(index.tokens[ADMIN_TOKEN].expires_at, "2025-12-25");

    // Once GitLab deleted the file, the stored password is kept.
    let (code, _) = docker
        .exec(
            &id,
            &["rm".into(), "/etc/gitlab/initial_root_password".into()],
        )
        .await
        .unwrap();
    assert_eq!(code, 0);
    assert!(capture_initial_root_password(&exec, &store).await.unwrap());
    store.remove(ROOT_PASSWORD).unwrap();
    assert!(!capture_initial_root_password(&exec, &store).await.unwrap());

    // A failing gitlab-rails is an error carrying its output, never the token.
    let broken = InContainer {
        engine: &docker,
        container: id.clone(),
    };
    docker
        .exec(
            &id,
            &[
                "sh".into(),
                "-c".into(),
                "printf '#!/bin/sh\\necho \"boom: $*\" >&2\\nexit 3\\n' > /opt/gitlab/bin/gitlab-rails".into(),
            ],
        )
        .await
        .unwrap();
    let e = mint_admin_token(&broken, &store, Dur::secs(86_400), today)
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(text.contains("exit 3"), "{text}");
    assert!(text.contains("boom: runner"), "{text}");
    assert!(text.contains("t.set_token(v)"), "{text}");
    assert!(!text.contains("glpat-"), "{text}");
}
