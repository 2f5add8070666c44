//! The access controller against a real `access.db`, secret store and argon2id: API keys,
//! tokens (every way a token can be wrong), rotation, revocation seen across processes (two
//! controllers on one data dir), logins with lockout, the provider seam, and that no secret
//! reaches an error, a `Debug` output, the database or the audit log.

use autogit_app::access::{
    AccessController, AuthError, AuthProvider, Identity, NewKey, Principal, ProviderError, Role,
};
use autogit_app::audit::{AuditEntry, AuditLog};
use autogit_app::{ManualClock, Settings};
use autogit_core::access::{AUDIENCE, Claims, ISSUER};
use autogit_core::config::Config;
use autogit_core::platform::PlatformEnv;
use autogit_drivers::auth::{db::AccessDb, keys};
use autogit_drivers::secrets::{ExposeSecret, SecretStore, SecretString};
use std::sync::Arc;
use std::time::{Duration, Instant};

const T0: u64 = 1_800_000_000;

fn setup() -> (tempfile::TempDir, Settings, ManualClock, AccessController) {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings::new(
        Config::default(),
        PlatformEnv::default(),
        dir.path().join("data"),
    );
    let clock = ManualClock::at(T0);
    let ctl = AccessController::open(&settings, Arc::new(clock.clone())).unwrap();
    (dir, settings, clock, ctl)
}

fn key(ctl: &AccessController, role: Role, scopes: &[&str], ttl: Option<u64>) -> SecretString {
    ctl.create_key(NewKey {
        name: "ci".into(),
        role,
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        ttl: ttl.map(Duration::from_secs),
    })
    .unwrap()
    .secret
}

fn err(r: Result<Principal, AuthError>) -> String {
    format!("{:?}", r.unwrap_err())
}

#[test]
fn api_keys_authenticate_until_revoked_or_expired() {
    let (_d, _s, clock, ctl) = setup();
    let k = key(&ctl, Role::Operator, &["services"], None);
    assert!(ctl.needs_blocking(k.expose_secret()), "not verified yet");
    let p = ctl.authenticate(k.expose_secret()).unwrap();
    assert!(!ctl.needs_blocking(k.expose_secret()), "cached");
    assert!(!ctl.needs_blocking("eyJhbGciOi.x.y"), "tokens are cheap");
    let prefix = &k.expose_secret()[4..12];
    assert_eq!(p.subject, format!("key:agk_{prefix}"));
    assert_eq!(p.role, Role::Operator);
    assert!(p.permits(Role::Viewer, "services"));
    assert!(p.permits(Role::Operator, "services"));
    assert!(!p.permits(Role::Admin, "services"));
    assert!(!p.permits(Role::Viewer, "dns"), "scoped to services");
    // Wrong secret for a known prefix, unknown prefix, not a key at all.
    let mut wrong = k.expose_secret().to_owned();
    let last = wrong.pop().unwrap();
    wrong.push(if last == 'a' { 'b' } else { 'a' });
    assert_eq!(err(ctl.authenticate(&wrong)), "WrongSecret");
    let unknown = format!("agk_aaaaaaaa_{}", &k.expose_secret()[13..]);
    assert_eq!(err(ctl.authenticate(&unknown)), "UnknownKey");
    assert_eq!(err(ctl.authenticate("agk_nope")), "Malformed");
    assert_eq!(err(ctl.authenticate("  ")), "Missing");
    assert_eq!(err(ctl.authenticate("hunter2")), "Malformed");
    assert_eq!(
        ctl.authenticate(&wrong).unwrap_err().reason(),
        ctl.authenticate(&unknown).unwrap_err().reason(),
        "a 401 must not tell which prefixes exist"
    );
    // last_used_at is recorded.
    let info = &ctl.list_keys().unwrap()[0];
    assert_eq!(info.last_used_at, Some(T0 as i64));
    assert_eq!(info.status, "active");
    // Revocation drops the cached verification at once.
    assert!(ctl.authenticate(k.expose_secret()).is_ok());
    let revoked = ctl.revoke_key(&format!("agk_{prefix}")).unwrap();
    assert_eq!(revoked.status, "revoked");
    assert_eq!(err(ctl.authenticate(k.expose_secret())), "Revoked");
    assert!(ctl.revoke_key(prefix).is_ok(), "revoking twice is fine");
    assert!(format!("{}", ctl.revoke_key("zzzzzzzz").unwrap_err()).contains("no API key"));

    // Expiry, also of a verification cached before it.
    let short = key(&ctl, Role::Viewer, &[], Some(120));
    assert!(ctl.authenticate(short.expose_secret()).is_ok());
    clock.advance(119);
    assert!(ctl.authenticate(short.expose_secret()).is_ok());
    clock.advance(1);
    assert_eq!(err(ctl.authenticate(short.expose_secret())), "Expired");
    let listed = ctl.list_keys().unwrap();
    let status = |k: &SecretString| {
        let id = &k.expose_secret()[..12];
        listed.iter().find(|i| i.id == id).unwrap().status
    };
    assert_eq!((status(&short), status(&k)), ("expired", "revoked"));
}

#[test]
fn a_revocation_by_another_process_is_seen_on_the_next_request() {
    let (_d, settings, clock, server) = setup();
    let k = key(&server, Role::Admin, &[], None);
    assert!(server.authenticate(k.expose_secret()).is_ok(), "now cached");
    let principal = server.authenticate(k.expose_secret()).unwrap();
    let token = server.issue_token(&principal, None).unwrap();
    // The CLI, in another process: its own controller on the same data dir.
    let cli = AccessController::open(&settings, Arc::new(clock.clone())).unwrap();
    cli.revoke_key(&k.expose_secret()[..12]).unwrap();
    assert_eq!(err(server.authenticate(k.expose_secret())), "Revoked");
    assert_eq!(
        err(server.authenticate(token.token.expose_secret())),
        "Revoked",
        "tokens issued from a revoked key stop too"
    );
    // A rotation by the CLI is picked up for signing and verification alike.
    let user = Principal {
        subject: "user:alice".into(),
        role: Role::Viewer,
        scopes: vec![],
        token_id: None,
        expires_at: None,
    };
    let kid = cli.rotate_signing_key().unwrap();
    let t = cli.issue_token(&user, None).unwrap();
    assert!(server.authenticate(t.token.expose_secret()).is_ok());
    assert_eq!(server.signing_key_id(), Some(kid));
}

/// Signs arbitrary claims with the data dir's current signing key (as a forger who stole it
/// would; here to reach the claim checks behind the signature).
fn sign_with_current_key(settings: &Settings, ctl: &AccessController, claims: &Claims) -> String {
    let store = SecretStore::open(&settings.data_dir).unwrap();
    let kid = ctl.signing_key_id().unwrap();
    keys::load(&store, &kid).unwrap().unwrap().sign(claims)
}

#[test]
fn tokens_are_checked_strictly() {
    let (_d, settings, clock, ctl) = setup();
    let now = T0 as i64;
    let user = Principal {
        subject: "user:alice".into(),
        role: Role::Operator,
        scopes: vec!["dns".into()],
        token_id: None,
        expires_at: None,
    };
    let issued = ctl.issue_token(&user, None).unwrap();
    assert_eq!(issued.expires_at, now + 15 * 60);
    let p = ctl.authenticate(issued.token.expose_secret()).unwrap();
    assert_eq!(p.subject, "user:alice");
    assert_eq!(p.role, Role::Operator);
    assert_eq!(p.scopes, vec!["dns".to_string()]);
    assert_eq!(p.token_id.as_deref(), Some(issued.token_id.as_str()));
    assert!(
        ctl.issue_token(&user, Some(Duration::from_secs(86_401)))
            .is_err()
    );

    let claims = |f: &dyn Fn(&mut Claims)| {
        let mut c = Claims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub: "user:mallory".into(),
            role: Role::Admin,
            scopes: vec![],
            iat: now,
            nbf: now,
            exp: now + 600,
            jti: "forged".into(),
        };
        f(&mut c);
        sign_with_current_key(&settings, &ctl, &c)
    };
    let other = setup();
    let foreign = other.3.issue_token(&user, None).unwrap();
    let t = issued.token.expose_secret();
    let (head, rest) = t.split_once('.').unwrap();
    let (payload, sig) = rest.split_once('.').unwrap();
    let none_header = data_encoding::BASE64URL_NOPAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let mut flipped_sig = sig.to_owned();
    flipped_sig.replace_range(..1, if sig.starts_with('A') { "B" } else { "A" });
    let table: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            claims(&|c| {
                c.iat = now - 7200;
                c.nbf = c.iat;
                c.exp = now - 3600
            }),
            "Expired",
        ),
        (
            "not yet valid",
            claims(&|c| {
                c.nbf = now + 3600;
                c.exp = now + 7200
            }),
            "NotYetValid",
        ),
        (
            "wrong issuer",
            claims(&|c| c.iss = "keycloak".into()),
            "WrongIssuer",
        ),
        (
            "wrong audience",
            claims(&|c| c.aud = "gitlab".into()),
            "WrongAudience",
        ),
        (
            "forged signature",
            format!("{head}.{payload}.{flipped_sig}"),
            "BadSignature",
        ),
        (
            "alg none",
            format!("{none_header}.{payload}."),
            "UnsupportedAlgorithm",
        ),
        (
            "another autogit's key",
            foreign.token.expose_secret().to_owned(),
            "UnknownSigningKey",
        ),
        ("garbage", "eyJhbGciOi.garbage.x".into(), "Malformed"),
    ];
    for (name, token, want) in table {
        assert_eq!(err(ctl.authenticate(&token)), want, "{name}");
    }
    assert!(
        ctl.authenticate(&claims(&|_| {})).is_ok(),
        "the control case verifies"
    );

    // Revocation of one token id.
    ctl.revoke_token(&issued.token_id).unwrap();
    assert_eq!(
        err(ctl.authenticate(issued.token.expose_secret())),
        "Revoked"
    );

    // Rotation: the previous key verifies its tokens until they expire; 24 h later it is gone.
    let before = ctl
        .issue_token(&user, Some(Duration::from_secs(3600)))
        .unwrap();
    let old_kid = ctl.signing_key_id().unwrap();
    let new_kid = ctl.rotate_signing_key().unwrap();
    assert_ne!(old_kid, new_kid);
    assert!(
        ctl.authenticate(before.token.expose_secret()).is_ok(),
        "rotated key still valid"
    );
    clock.advance(86_400 + 60);
    ctl.rotate_signing_key().unwrap();
    assert_eq!(
        err(ctl.authenticate(before.token.expose_secret())),
        "UnknownSigningKey"
    );
    let store = SecretStore::open(&settings.data_dir).unwrap();
    assert!(
        !store.contains(&keys::signing_key_name(&old_kid)).unwrap(),
        "keys past every token's lifetime are deleted"
    );
    // A token never outlives the key it came from.
    let expiring = Principal {
        expires_at: Some(clock_now(&clock) + 60),
        ..user.clone()
    };
    let t = ctl
        .issue_token(&expiring, Some(Duration::from_secs(3600)))
        .unwrap();
    assert_eq!(t.expires_at, clock_now(&clock) + 60);
}

fn clock_now(c: &ManualClock) -> i64 {
    use autogit_app::Clock;
    c.now() as i64
}

#[tokio::test]
async fn local_logins_lock_out_after_repeated_failures() {
    let (_d, _s, clock, ctl) = setup();
    let pw = SecretString::from("correct horse battery");
    let bad = SecretString::from("wrong horse battery");
    assert!(
        ctl.add_user("alice", Role::Viewer, &SecretString::from("short"))
            .is_err()
    );
    ctl.add_user("alice", Role::Admin, &pw).unwrap();
    assert!(ctl.add_user("alice", Role::Admin, &pw).is_err());
    let p = ctl.login(None, "alice", &pw).await.unwrap();
    assert_eq!((p.subject.as_str(), p.role), ("user:alice", Role::Admin));
    for _ in 0..5 {
        let e = ctl.login(None, "alice", &bad).await.unwrap_err();
        assert!(matches!(e, AuthError::BadCredentials), "{e:?}");
    }
    // Locked now, even with the right password.
    let e = ctl.login(Some("local"), "alice", &pw).await.unwrap_err();
    assert_eq!(e.retry_after(), Some(30));
    assert_eq!(e.reason(), "too many failed logins");
    clock.advance(31);
    // The next failure doubles the lock.
    assert!(ctl.login(None, "alice", &bad).await.is_err());
    assert_eq!(
        ctl.login(None, "alice", &pw)
            .await
            .unwrap_err()
            .retry_after(),
        Some(60)
    );
    clock.advance(61);
    assert!(
        ctl.login(None, "alice", &pw).await.is_ok(),
        "success resets the count"
    );
    assert!(ctl.login(None, "alice", &bad).await.is_err());
    assert!(ctl.login(None, "alice", &pw).await.is_ok());
    // Unknown users fail the same way, and take about as long (one argon2 verification).
    let t = Instant::now();
    let e = ctl.login(None, "nobody", &pw).await.unwrap_err();
    let unknown = t.elapsed();
    let t = Instant::now();
    let _ = ctl.login(None, "alice", &bad).await;
    let wrong = t.elapsed();
    assert!(matches!(e, AuthError::BadCredentials));
    println!("login failure: unknown user {unknown:?}, wrong password {wrong:?}");
    assert!(
        unknown * 4 > wrong,
        "an unknown user must cost an argon2 verification too"
    );
    assert_eq!(
        ctl.list_users().unwrap()[0].last_login_at,
        Some(clock_now(&clock))
    );
    ctl.remove_user("alice").unwrap();
    assert!(ctl.login(None, "alice", &pw).await.is_err());
    assert!(ctl.remove_user("alice").is_err());
}

/// A stand-in for a directory provider (LDAP/OIDC are extensions that do not exist yet): it
/// knows one user, and its outage.
#[derive(Debug)]
struct FakeDirectory;

#[async_trait::async_trait]
impl AuthProvider for FakeDirectory {
    fn name(&self) -> &str {
        "ldap"
    }
    async fn verify(
        &self,
        username: &str,
        password: &SecretString,
    ) -> Result<Option<Identity>, ProviderError> {
        match (username, password.expose_secret()) {
            ("bob", "directory-password") => Ok(Some(Identity {
                username: "bob".into(),
                role: Role::Operator,
            })),
            ("outage", _) => Err(ProviderError::Unavailable(
                "ldap://dir: connection refused".into(),
            )),
            _ => Ok(None),
        }
    }
}

/// What the API server needs: a controller and a log it can share between request handlers,
/// and a login future it can await in one.
#[test]
fn controller_and_log_are_shareable_and_login_is_send() {
    fn shared<T: Clone + Send + Sync + 'static>() {}
    fn send<T: Send>(_: &T) {}
    shared::<AccessController>();
    shared::<AuditLog>();
    let (_d, _s, _c, ctl) = setup();
    let pw = SecretString::from("x");
    send(&ctl.login(None, "alice", &pw));
}

#[tokio::test]
async fn providers_are_a_registry() {
    let (_d, _s, _c, ctl) = setup();
    ctl.register_provider(Arc::new(FakeDirectory));
    assert_eq!(
        ctl.providers(),
        vec!["ldap".to_string(), "local".to_string()]
    );
    let pw = SecretString::from("directory-password");
    let p = ctl.login(Some("ldap"), "bob", &pw).await.unwrap();
    assert_eq!(
        (p.subject.as_str(), p.role),
        ("user:bob@ldap", Role::Operator)
    );
    assert!(matches!(
        ctl.login(Some("ldap"), "outage", &pw).await.unwrap_err(),
        AuthError::ProviderUnavailable(_)
    ));
    assert!(matches!(
        ctl.login(Some("oidc"), "bob", &pw).await.unwrap_err(),
        AuthError::UnknownProvider(_)
    ));
    assert!(
        ctl.login(None, "bob", &pw).await.is_err(),
        "local does not know bob"
    );
}

#[test]
fn secrets_appear_in_no_error_debug_output_database_or_audit_record() {
    let (_d, settings, clock, ctl) = setup();
    let created = ctl
        .create_key(NewKey {
            name: "deploy".into(),
            role: Role::Admin,
            scopes: vec![],
            ttl: None,
        })
        .unwrap();
    let key = created.secret.expose_secret().to_owned();
    let principal = ctl.authenticate(&key).unwrap();
    let issued = ctl.issue_token(&principal, None).unwrap();
    let token = issued.token.expose_secret().to_owned();
    let secret_part = key[13..].to_owned();
    let mut seen = vec![
        format!("{created:?}"),
        format!("{issued:?}"),
        format!("{ctl:?}"),
        format!("{principal:?}"),
        serde_json::to_string(&created.info).unwrap(),
        serde_json::to_string(&principal).unwrap(),
    ];
    let mut wrong_key = key.clone();
    let c = if &key[20..21] == "z" { "y" } else { "z" };
    wrong_key.replace_range(20..21, c);
    let mut wrong_token = token.clone();
    wrong_token.replace_range(30..32, "AA");
    for bad in [
        wrong_key.as_str(),
        wrong_token.as_str(),
        &key[..30],
        &format!("{token}.x"),
    ] {
        let e = ctl.authenticate(bad).unwrap_err();
        seen.push(format!("{e} {e:?} {}", e.reason()));
    }
    clock.advance(86_400 * 2);
    let e = ctl.authenticate(&token).unwrap_err();
    seen.push(format!("{e} {e:?}"));
    let e = ctl
        .issue_token(&principal, Some(Duration::from_secs(999_999)))
        .unwrap_err();
    seen.push(format!("{e} {e:?}"));
    let audit = AuditLog::open(&settings, Arc::new(clock.clone())).unwrap();
    audit
        .append(AuditEntry {
            actor: "cli:root".into(),
            role: Some(Role::Admin),
            action: "api-key.create".into(),
            target: created.info.id.clone(),
            outcome: "ok".into(),
            status: None,
            request_id: "r1".into(),
            source: None,
        })
        .unwrap();
    seen.push(std::fs::read_to_string(audit.path()).unwrap());
    seen.push(
        String::from_utf8_lossy(&std::fs::read(settings.data_dir.join("access.db")).unwrap())
            .into_owned(),
    );
    for text in &seen {
        for secret in [&key, &secret_part, &token] {
            assert!(
                !text.contains(secret.as_str()),
                "a secret leaked into: {text}"
            );
        }
    }
    let db = AccessDb::open(&settings.data_dir).unwrap();
    assert!(
        db.key(&created.info.prefix)
            .unwrap()
            .unwrap()
            .hash
            .starts_with("$argon2id$")
    );
}

#[test]
fn authenticate_is_fast_on_the_hot_path() {
    let (_d, _s, _c, ctl) = setup();
    let k = key(&ctl, Role::Viewer, &[], None);
    let t = Instant::now();
    ctl.authenticate(k.expose_secret()).unwrap();
    let first = t.elapsed();
    let p = ctl.authenticate(k.expose_secret()).unwrap();
    let token = ctl.issue_token(&p, None).unwrap();
    let n = 2000;
    let t = Instant::now();
    for _ in 0..n {
        ctl.authenticate(k.expose_secret()).unwrap();
    }
    let cached = t.elapsed() / n;
    let t = Instant::now();
    for _ in 0..n {
        ctl.authenticate(token.token.expose_secret()).unwrap();
    }
    let jwt = t.elapsed() / n;
    println!(
        "authenticate: API key first (argon2id) {first:?}, API key cached {cached:?}, JWT {jwt:?} (this build's profile)"
    );
}

#[test]
fn the_scrape_key_is_made_once_reaches_only_metrics_and_stays_out_of_the_config() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, settings, clock, ctl) = setup();
    let rendered = dir.path().join("data/rendered");
    let made =
        autogit_app::metrics::ensure_scrape_key(&settings, &rendered, Arc::new(clock.clone()))
            .unwrap()
            .expect("created when missing");
    assert_eq!(made, rendered.join("prometheus/autogit.token"));
    assert_eq!(
        std::fs::metadata(&made).unwrap().permissions().mode() & 0o777,
        0o644
    );
    let secret = std::fs::read_to_string(&made).unwrap();
    let p = ctl.authenticate(&secret).unwrap();
    assert_eq!(
        (p.role, p.scopes.clone()),
        (Role::Viewer, vec!["metrics".to_owned()])
    );
    assert!(p.permits(Role::Viewer, "metrics") && !p.permits(Role::Viewer, "services"));
    // Present: not made again, not replaced.
    assert_eq!(
        autogit_app::metrics::ensure_scrape_key(&settings, &rendered, Arc::new(clock)).unwrap(),
        None
    );
    assert_eq!(std::fs::read_to_string(&made).unwrap(), secret);
    assert_eq!(ctl.list_keys().unwrap().len(), 1);
}
