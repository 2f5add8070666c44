//! `auth` from an extension: the Python SDK's example (`sdk/python/examples/static_users_auth.py`,
//! a real process speaking the protocol) registered by the registry under its name, and logins
//! through the access controller: right and wrong passwords, `alice@static-users`, an extension
//! that is not enabled or does not declare `auth`, and one that crashes on `auth.login`. And
//! the Rust SDK's example (`crates/autogit-extension-sdk/examples/static_users_auth.rs`, built
//! by cargo) the same way, reading hashes either example makes.

mod support;

use autogit_app::access::{AccessController, AuthError, Role};
use secrecy::SecretString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn python_or_skip() -> bool {
    if Path::new("/usr/bin/python3").exists() {
        return true;
    }
    assert!(
        std::env::var_os("AUTOGIT_REQUIRE_TOOLS").is_none(),
        "python3 is required"
    );
    eprintln!("skipping: no /usr/bin/python3");
    false
}

/// `name:hash:role` for STATIC_USERS, the hash made by the example itself.
fn user(name: &str, password: &str, role: &str) -> String {
    let example = repo().join("sdk/python/examples/static_users_auth.py");
    let out = std::process::Command::new("/usr/bin/python3")
        .arg(example)
        .args(["hash", password])
        .output()
        .unwrap();
    assert!(out.status.success());
    format!(
        "{name}:{}:{role}",
        String::from_utf8(out.stdout).unwrap().trim()
    )
}

fn script(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test]
async fn the_sdk_example_is_a_login_provider_under_its_name() {
    if !python_or_skip() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let ext = d.path().join("ext");
    std::fs::create_dir(&ext).unwrap();
    std::os::unix::fs::symlink(
        repo().join("sdk/python/examples/static_users_auth.py"),
        ext.join("static-users"),
    )
    .unwrap();
    // An enabled extension without `auth` is not a login provider.
    let examples = repo().join("sdk/python/examples");
    script(
        &ext,
        "crashy",
        &format!(
            "#!/usr/bin/python3\nimport sys, os\nsys.path[:0] = [{examples:?}]\nimport static_users_auth as s\nclass Crash(s.StaticUsers):\n    def login(self, u, p):\n        os._exit(3)\ns.Extension('crashy', '0.1.0').auth(Crash()).run()\n",
            examples = examples.display().to_string()
        ),
    );
    std::os::unix::fs::symlink(examples.join("dir_storage.py"), ext.join("dir-storage")).unwrap();
    let users = format!(
        "{},{}",
        user("alice", "alice-password-1", "admin"),
        user("bob", "bob-password-22", "viewer")
    );
    let env = format!(
        "EXTENSIONS_ENABLED=static-users,crashy,dir-storage\nEXTENSIONS_DIR={}\nEXTENSIONS_TIMEOUT=20\n\
         STATIC_USERS='{users}'\nDIR_STORAGE_PATH={}\n",
        ext.display(),
        d.path().display()
    );
    let data = d.path().join("data");
    let s = support::settings("", &env, &data);
    s.ensure_data_dir().unwrap();
    let ctl = AccessController::open(&s, autogit_app::clock::system()).unwrap();
    let mut registered = ctl.register_extensions(&s).await;
    registered.sort();
    assert_eq!(registered, ["crashy", "static-users"]);
    assert_eq!(ctl.providers(), ["crashy", "local", "static-users"]);

    let pw = |p: &str| SecretString::from(p.to_owned());
    let p = ctl
        .login(Some("static-users"), "alice", &pw("alice-password-1"))
        .await
        .unwrap();
    assert_eq!(
        (p.subject.as_str(), p.role),
        ("user:alice@static-users", Role::Admin)
    );
    let p = ctl
        .login(None, "bob@static-users", &pw("bob-password-22"))
        .await
        .unwrap();
    assert_eq!(
        (p.subject.as_str(), p.role),
        ("user:bob@static-users", Role::Viewer)
    );
    for (u, p) in [("alice", "wrong-password"), ("nobody", "alice-password-1")] {
        let e = ctl
            .login(Some("static-users"), u, &pw(p))
            .await
            .unwrap_err();
        assert!(matches!(e, AuthError::BadCredentials), "{u}: {e:?}");
    }
    // A crash is that provider's error (503), not a wrong password, and not autogit's.
    let e = ctl
        .login(Some("crashy"), "alice", &pw("alice-password-1"))
        .await
        .unwrap_err();
    assert!(matches!(e, AuthError::ProviderUnavailable(_)), "{e:?}");
    assert!(!format!("{e:?}").contains("alice-password-1"), "{e:?}");
    // Still answering after it.
    assert!(
        ctl.login(Some("static-users"), "alice", &pw("alice-password-1"))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn the_rust_sdk_example_is_a_login_provider_under_its_name() {
    let exe = autogit_drivers::testing::sdk_example("static_users_auth");
    let d = tempfile::tempdir().unwrap();
    let ext = d.path().join("ext");
    std::fs::create_dir(&ext).unwrap();
    std::fs::copy(&exe, ext.join("static-users-rs")).unwrap();
    // A hash the Rust example makes; and one the Python example makes, when python3 is here.
    let out = std::process::Command::new(&exe)
        .args(["hash", "carol-password-3"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let carol = String::from_utf8(out.stdout).unwrap();
    assert!(carol.starts_with("pbkdf2_sha256$200000$"), "{carol}");
    let mut users = vec![format!("carol:{}:operator", carol.trim())];
    let python = Path::new("/usr/bin/python3").exists();
    if python {
        users.push(user("dave", "dave-password-4", "admin"));
    }
    let env = format!(
        "EXTENSIONS_ENABLED=static-users-rs\nEXTENSIONS_DIR={}\nEXTENSIONS_TIMEOUT=20\n\
         STATIC_USERS='{}'\n",
        ext.display(),
        users.join(",")
    );
    let data = d.path().join("data");
    let s = support::settings("", &env, &data);
    s.ensure_data_dir().unwrap();
    let ctl = AccessController::open(&s, autogit_app::clock::system()).unwrap();
    assert_eq!(ctl.register_extensions(&s).await, ["static-users-rs"]);
    assert_eq!(ctl.providers(), ["local", "static-users-rs"]);
    let pw = |p: &str| SecretString::from(p.to_owned());
    let p = ctl
        .login(Some("static-users-rs"), "carol", &pw("carol-password-3"))
        .await
        .unwrap();
    assert_eq!(
        (p.subject.as_str(), p.role),
        ("user:carol@static-users-rs", Role::Operator)
    );
    if python {
        let p = ctl
            .login(None, "dave@static-users-rs", &pw("dave-password-4"))
            .await
            .unwrap();
        assert_eq!(
            (p.subject.as_str(), p.role),
            ("user:dave@static-users-rs", Role::Admin),
            "a hash the Python example made"
        );
    }
    for (u, p) in [("carol", "wrong-password"), ("nobody", "carol-password-3")] {
        let e = ctl
            .login(Some("static-users-rs"), u, &pw(p))
            .await
            .unwrap_err();
        assert!(matches!(e, AuthError::BadCredentials), "{u}: {e:?}");
        assert!(!format!("{e:?}").contains(p), "{e:?}");
    }
}
