//! Encrypted archives (age) without an engine: the production writer encrypts to X25519
//! recipients or a passphrase; the reader refuses an encrypted archive without a key, with the
//! wrong key or the wrong kind of key, and verifies the manifest's digests inside the
//! encryption. (The engine round trip is in `backup_engine.rs`.)

use age::secrecy::ExposeSecret;
use autogit_core::backup::{AGE_MAGIC, FORMAT, Manifest};
use autogit_drivers::backup::{
    BackupError, Decryption, Encryption, extract_verified, extract_verified_with, is_encrypted,
    write_archive_with,
};
use secrecy::SecretString;
use std::path::{Path, PathBuf};

const GL: &str = "gitlab/1764556245_2025_12_01_18.5.4_gitlab_backup.tar";
const CONTENT: &[u8] = b"gitlab backup bytes PLAINTEXT-MARKER";

fn manifest() -> Manifest {
    Manifest {
        format: FORMAT,
        created: "2025-12-01T02:30:45Z".into(),
        gitlab_version: "18.5.4".into(),
        gitlab_backup_id: "1764556245_2025_12_01_18.5.4".into(),
        autogit_version: "test".into(),
        members: Vec::new(),
    }
}

fn write(dir: &Path, encryption: &Encryption) -> Result<PathBuf, BackupError> {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("gl.tar"), CONTENT).unwrap();
    std::fs::write(src.join("access.db"), b"sqlite PLAINTEXT-MARKER").unwrap();
    let out = dir.join("autogit-backup-20251201T023045Z-18.5.4.tar.age");
    write_archive_with(
        &out,
        &[
            (GL.to_owned(), src.join("gl.tar")),
            ("autogit/access.db".to_owned(), src.join("access.db")),
        ],
        manifest(),
        encryption,
    )?;
    Ok(out)
}

fn identity_file(dir: &Path, id: &age::x25519::Identity) -> PathBuf {
    let p = dir.join("identity.txt");
    std::fs::write(
        &p,
        format!(
            "# created: test\n# public key: {}\n{}\n",
            id.to_public(),
            id.to_string().expose_secret()
        ),
    )
    .unwrap();
    p
}

#[test]
fn an_archive_encrypted_to_a_recipient_opens_with_its_identity_only() {
    let dir = tempfile::tempdir().unwrap();
    let id = age::x25519::Identity::generate();
    let other = age::x25519::Identity::generate();
    let a = write(
        dir.path(),
        &Encryption::Recipients(vec![
            other.to_public().to_string(),
            id.to_public().to_string(),
        ]),
    )
    .unwrap();
    let bytes = std::fs::read(&a).unwrap();
    assert!(bytes.starts_with(AGE_MAGIC), "an age file");
    assert!(!bytes.windows(16).any(|w| w == b"PLAINTEXT-MARKER"));
    assert!(!bytes.windows(13).any(|w| w == b"manifest.json"));
    assert!(is_encrypted(&a).unwrap());

    // Without a key: refused, nothing written.
    let e = extract_verified(&a, &dir.path().join("o0")).unwrap_err();
    assert!(matches!(e, BackupError::Encrypted(_)), "{e}");
    assert!(e.to_string().contains("--identity"), "{e}");
    assert!(!dir.path().join("o0").exists());

    // Its identity (the second recipient): members and digests verify.
    let idf = identity_file(dir.path(), &id);
    let v = extract_verified_with(&a, &dir.path().join("o1"), &Decryption::Identity(idf)).unwrap();
    assert_eq!(v.manifest.members.len(), 2);
    assert_eq!(
        std::fs::read(dir.path().join("o1").join(GL)).unwrap(),
        CONTENT
    );
    assert!(dir.path().join("o1/autogit/access.db").is_file());
    // The decrypted copy is gone.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("decrypted"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // Another identity: a clear refusal naming the archive.
    let stranger = tempfile::tempdir().unwrap();
    let wrong = identity_file(stranger.path(), &age::x25519::Identity::generate());
    let e = extract_verified_with(&a, &dir.path().join("o2"), &Decryption::Identity(wrong))
        .unwrap_err();
    assert!(matches!(e, BackupError::Decrypt { .. }), "{e}");
    assert!(e.to_string().contains(&a.display().to_string()), "{e}");
    assert!(!dir.path().join("o2").exists());

    // A passphrase for a recipient archive: says which kind of key it needs.
    let e = extract_verified_with(
        &a,
        &dir.path().join("o3"),
        &Decryption::Passphrase(SecretString::from("x")),
    )
    .unwrap_err();
    assert!(e.to_string().contains("--identity"), "{e}");
}

#[test]
fn a_changed_encrypted_archive_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let id = age::x25519::Identity::generate();
    let a = write(
        dir.path(),
        &Encryption::Recipients(vec![id.to_public().to_string()]),
    )
    .unwrap();
    let mut bytes = std::fs::read(&a).unwrap();
    let n = bytes.len();
    bytes[n - 40] ^= 1;
    std::fs::write(&a, &bytes).unwrap();
    let idf = identity_file(dir.path(), &id);
    let e =
        extract_verified_with(&a, &dir.path().join("o"), &Decryption::Identity(idf)).unwrap_err();
    assert!(matches!(e, BackupError::Decrypt { .. }), "{e}");
    assert!(!dir.path().join("o").exists());
}

#[test]
fn a_passphrase_archive_opens_with_the_passphrase_only() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(
        dir.path(),
        &Encryption::Passphrase(SecretString::from("correct horse battery staple")),
    )
    .unwrap();
    assert!(std::fs::read(&a).unwrap().starts_with(AGE_MAGIC));
    let v = extract_verified_with(
        &a,
        &dir.path().join("o1"),
        &Decryption::Passphrase(SecretString::from("correct horse battery staple")),
    )
    .unwrap();
    assert_eq!(v.manifest.members.len(), 2);
    let e = extract_verified_with(
        &a,
        &dir.path().join("o2"),
        &Decryption::Passphrase(SecretString::from("wrong")),
    )
    .unwrap_err();
    assert!(matches!(e, BackupError::Decrypt { .. }), "{e}");
    let idf = identity_file(dir.path(), &age::x25519::Identity::generate());
    let e =
        extract_verified_with(&a, &dir.path().join("o3"), &Decryption::Identity(idf)).unwrap_err();
    assert!(e.to_string().contains("--passphrase-file"), "{e}");
}

#[test]
fn a_bad_recipient_is_refused_before_anything_is_written_and_debug_hides_passphrases() {
    let dir = tempfile::tempdir().unwrap();
    let e = write(
        dir.path(),
        &Encryption::Recipients(vec!["age1notarecipient".into()]),
    )
    .unwrap_err();
    assert!(e.to_string().contains("age1notarecipient"), "{e}");
    assert!(
        !dir.path()
            .join("autogit-backup-20251201T023045Z-18.5.4.tar.age")
            .exists()
    );
    let p = Encryption::Passphrase(SecretString::from("hunter2-pass"));
    let d = Decryption::Passphrase(SecretString::from("hunter2-pass"));
    for text in [format!("{p:?}"), format!("{d:?}")] {
        assert!(!text.contains("hunter2"), "{text}");
    }
}
