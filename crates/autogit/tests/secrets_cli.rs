//! `autogit secrets status` and `autogit secrets rotate-key` through the real binary: a
//! plaintext store of an earlier version is sealed on first use, rotation changes the key and
//! keeps every value, and a missing key or a systemd credential give clear refusals. No output
//! carries a value or key material.

mod common;

use autogit_drivers::secrets::{ExposeSecret, KeyLocation, SecretStore};
use common::{Run, run_data, run_env};
use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const VALUES: [(&str, &str); 3] = [
    ("gitlab-admin-token", "glpat-PLAINTEXT-admin-0001"),
    ("gitlab-root-password", "PLAINTEXT-root-password-0002"),
    ("runner-token-gpu", "glrt-PLAINTEXT-runner-0003"),
];

/// A data dir as an earlier autogit left it: plaintext secret files, 0600.
fn plaintext_store(data: &Path) {
    let dir = data.join("secrets");
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(data, fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    for (n, v) in VALUES {
        fs::write(dir.join(n), v).unwrap();
        fs::set_permissions(dir.join(n), fs::Permissions::from_mode(0o600)).unwrap();
    }
}

fn no_secret(r: &Run, key_texts: &[String]) {
    for (_, v) in VALUES {
        assert!(
            !r.stdout.contains(v) && !r.stderr.contains(v),
            "a secret value reached the output"
        );
    }
    for k in key_texts {
        assert!(!r.stdout.contains(k.trim()) && !r.stderr.contains(k.trim()));
    }
}

fn json(r: &Run) -> Value {
    assert_eq!(r.code, 0, "{}", r.stderr);
    serde_json::from_str(&r.stdout).unwrap()
}

fn store(data: &Path) -> SecretStore {
    SecretStore::open_with_key(data, KeyLocation::resolve(data, &|_| None)).unwrap()
}

#[test]
fn status_seals_a_plaintext_store_and_rotate_key_keeps_every_value() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    plaintext_store(&data);
    let key = d.path().join("data.key");

    let r = run_data(d.path(), &["secrets", "status", "-o", "json"]);
    let v = json(&r);
    let key_text = fs::read_to_string(&key).expect("the key was created next to the data dir");
    no_secret(&r, std::slice::from_ref(&key_text));
    let s = &v["secrets"];
    assert_eq!(s["key"]["path"], key.to_str().unwrap());
    assert_eq!(s["key"]["origin"], "default");
    assert_eq!(
        (s["sealed"].as_u64(), s["plaintext"].as_u64()),
        (Some(3), Some(0))
    );
    let first_id = s["key_id"].as_str().unwrap().to_owned();
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    for (n, val) in VALUES {
        let bytes = fs::read(data.join("secrets").join(n)).unwrap();
        assert!(
            !bytes.windows(9).any(|w| w == b"PLAINTEXT"),
            "{n} is sealed"
        );
        assert_eq!(store(&data).get(n).unwrap().unwrap().expose_secret(), val);
    }
    // The table form says the same, without values.
    let r = run_data(d.path(), &["secrets", "status"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains(&first_id) && r.stdout.contains("data.key"),
        "{}",
        r.stdout
    );
    no_secret(&r, std::slice::from_ref(&key_text));

    let r = run_data(d.path(), &["secrets", "rotate-key", "-o", "json"]);
    let v = json(&r);
    let new_text = fs::read_to_string(&key).unwrap();
    no_secret(&r, &[key_text.clone(), new_text.clone()]);
    assert_eq!(v["rotation"]["old_key_id"], first_id.as_str());
    assert_eq!(v["rotation"]["resealed"], 3);
    let new_id = v["rotation"]["new_key_id"].as_str().unwrap();
    assert_ne!(new_id, first_id);
    assert_ne!(new_text, key_text);
    assert!(
        !d.path().join("data.key.old").exists(),
        "the old key is gone"
    );
    for (n, val) in VALUES {
        assert_eq!(store(&data).get(n).unwrap().unwrap().expose_secret(), val);
    }
    let r = run_data(d.path(), &["secrets", "status", "-o", "json"]);
    assert_eq!(json(&r)["secrets"]["key_id"], new_id);

    // Without the key: a clear refusal naming where it was looked for; no new key.
    fs::rename(&key, d.path().join("escrow.key")).unwrap();
    let r = run_data(d.path(), &["secrets", "status"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains(key.to_str().unwrap()), "{}", r.stderr);
    assert!(r.stderr.contains("escrow"), "{}", r.stderr);
    assert!(!key.exists(), "never a new key over sealed secrets");
    // AUTOGIT_KEY_FILE points at the escrowed copy.
    let escrow = d.path().join("escrow.key");
    let data_s = data.to_str().unwrap();
    let r = run_env(
        d.path(),
        &["secrets", "status", "-o", "json", "--data-dir", data_s],
        &[("AUTOGIT_KEY_FILE", escrow.to_str().unwrap())],
    );
    let v = json(&r);
    assert_eq!(v["secrets"]["key"]["origin"], "env");
    assert_eq!(v["secrets"]["sealed"], 3);
    // A program setting, not a misspelt configuration override.
    let r = run_env(
        d.path(),
        &["validate"],
        &[("AUTOGIT_KEY_FILE", escrow.to_str().unwrap())],
    );
    assert!(!r.stderr.contains("AUTOGIT_KEY_FILE"), "{}", r.stderr);
}

#[test]
fn a_systemd_credential_is_used_and_rotation_under_it_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    plaintext_store(&data);
    // Seal with a key file, then offer the same key as a credential.
    let r = run_data(d.path(), &["secrets", "status", "-o", "json"]);
    let id = json(&r)["secrets"]["key_id"].as_str().unwrap().to_owned();
    let creds = d.path().join("creds");
    fs::create_dir_all(&creds).unwrap();
    fs::copy(d.path().join("data.key"), creds.join("autogit.key")).unwrap();
    fs::set_permissions(creds.join("autogit.key"), fs::Permissions::from_mode(0o400)).unwrap();
    fs::remove_file(d.path().join("data.key")).unwrap();
    let data_s = data.to_str().unwrap();
    let env = [("CREDENTIALS_DIRECTORY", creds.to_str().unwrap())];
    let r = run_env(
        d.path(),
        &["secrets", "status", "-o", "json", "--data-dir", data_s],
        &env,
    );
    let v = json(&r);
    assert_eq!(v["secrets"]["key"]["origin"], "systemd_credential");
    assert_eq!(v["secrets"]["key_id"], id.as_str());
    assert_eq!(v["secrets"]["sealed"], 3);
    let r = run_env(
        d.path(),
        &["secrets", "rotate-key", "--data-dir", data_s],
        &env,
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("systemd credential"), "{}", r.stderr);
    assert!(r.stderr.contains("read-only"), "{}", r.stderr);
}

#[test]
fn the_service_unit_passes_the_key_as_a_systemd_credential() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let r = run_data(d.path(), &["daemon", "--print-systemd-unit"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let want = format!(
        "LoadCredential=autogit.key:{}\n",
        d.path().canonicalize().unwrap().join("data.key").display()
    );
    assert!(r.stdout.contains(&want), "{}", r.stdout);
    // The key file is outside ReadWritePaths (the data dir): the daemon only reads it.
    assert!(!want.contains(&format!("{}/", data.display())));
    let other = d.path().join("keys/autogit.key");
    let r = run_env(
        d.path(),
        &[
            "daemon",
            "--print-systemd-unit",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[("AUTOGIT_KEY_FILE", other.to_str().unwrap())],
    );
    assert!(
        r.stdout
            .contains(&format!("LoadCredential=autogit.key:{}\n", other.display())),
        "{}",
        r.stdout
    );
}
