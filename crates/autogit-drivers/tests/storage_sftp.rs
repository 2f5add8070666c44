//! The SFTP storage provider against a real OpenSSH `sshd` (its `internal-sftp`) in a network
//! namespace (`autogit_drivers::testing::netns`): a verified upload, listing, retention, a
//! verified fetch, a corrupted copy refused, a host whose key autogit has not pinned refused,
//! and a key the host does not accept a clear authentication error. Needs root, iproute2 and
//! openssh; without them the tests say "skipping" (they fail under `AUTOGIT_REQUIRE_TOOLS`).

use autogit_core::backup::archive_name;
use autogit_drivers::remote::ssh::{Ssh, trust};
use autogit_drivers::storage::sftp::Sftp;
use autogit_drivers::storage::{
    Storage, StorageError, fetch_verified, list_archives, prune, upload_verified,
};
use autogit_drivers::testing::netns::{SshLab, lab_available};
use std::path::Path;

fn archive(dir: &Path, day: u64, len: usize) -> std::path::PathBuf {
    let p = dir.join(archive_name(1_764_556_200 + day * 86_400, "18.5.4"));
    let data: Vec<u8> = (0..len).map(|i| (i * 13 + day as usize) as u8).collect();
    std::fs::write(&p, data).unwrap();
    p
}

#[tokio::test]
async fn upload_list_retention_fetch_and_a_corrupt_copy_refused() {
    if !lab_available() {
        return;
    }
    let lab = SshLab::start(1).unwrap_or_else(|e| panic!("{e}"));
    let data = tempfile::tempdir().unwrap();
    // The namespaces share this machine's file system: the "remote" directory is here.
    let remote = tempfile::tempdir().unwrap();
    let cfg = lab.ssh_config(data.path());
    let host = &lab.hosts[0].addr;

    // Not trusted yet: refused before anything is sent.
    let st = Sftp::new(
        "nas",
        Ssh::new(cfg.clone(), host).unwrap(),
        &remote.path().display().to_string(),
    )
    .unwrap();
    let e = upload_verified(&st, &archive(data.path(), 0, 10), data.path())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("host key not trusted"), "{e}");
    assert_eq!(std::fs::read_dir(remote.path()).unwrap().count(), 0);

    trust(&cfg, host, false).await.unwrap();
    let mut names = Vec::new();
    for day in 0..3 {
        let a = archive(data.path(), day, 300_000 + day as usize);
        let c = upload_verified(&st, &a, data.path()).await.unwrap();
        assert_eq!(
            std::fs::read(remote.path().join(&c.name)).unwrap(),
            std::fs::read(&a).unwrap()
        );
        names.push(c.name);
    }
    let listed = list_archives(&st).await.unwrap();
    assert_eq!(
        listed.iter().map(|l| l.name.clone()).collect::<Vec<_>>(),
        names
    );
    assert_eq!(listed[2].size, 300_002);
    assert!(!remote.path().join(format!("{}.part", names[2])).exists());

    let gone = prune(&st, 2, None, 1_764_556_200 + 3 * 86_400)
        .await
        .unwrap();
    assert_eq!(gone, vec![names[0].clone()]);
    assert!(!remote.path().join(&names[0]).exists());
    assert!(!remote.path().join(format!("{}.sha256", names[0])).exists());
    assert_eq!(st.list().await.unwrap().len(), 4);

    let dest = data.path().join("fetched.tar");
    let (size, _) = fetch_verified(&st, &names[2], &dest).await.unwrap();
    assert_eq!(size, 300_002);
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        std::fs::read(data.path().join(&names[2])).unwrap()
    );

    let victim = remote.path().join(&names[1]);
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&victim, bytes).unwrap();
    let dest2 = data.path().join("corrupt.tar");
    let e = fetch_verified(&st, &names[1], &dest2).await.unwrap_err();
    assert!(matches!(e, StorageError::Corrupt { .. }), "{e}");
    assert!(!dest2.exists());

    let e = fetch_verified(&st, &names[0], &dest2).await.unwrap_err();
    assert!(matches!(e, StorageError::NotFound { .. }), "{e}");
    // The shared connection ends with the target (no ssh left for ControlPersist's minute).
    st.close().await;
    let control = data.path().join("ssh");
    assert_eq!(
        std::fs::read_dir(&control).map(|d| d.count()).unwrap_or(0),
        0
    );
}

#[tokio::test]
async fn a_key_the_host_refuses_is_an_authentication_error() {
    if !lab_available() {
        return;
    }
    let lab = SshLab::start(1).unwrap_or_else(|e| panic!("{e}"));
    let data = tempfile::tempdir().unwrap();
    let mut cfg = lab.ssh_config(data.path());
    let host = &lab.hosts[0].addr;
    trust(&cfg, host, false).await.unwrap();
    let stranger = data.path().join("stranger");
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&stranger)
        .output()
        .unwrap();
    assert!(out.status.success());
    cfg.identity = Some(stranger);
    cfg.control_dir = None;
    let st = Sftp::new("nas", Ssh::new(cfg, host).unwrap(), "/tmp").unwrap();
    let e = st.list().await.unwrap_err();
    assert!(matches!(e, StorageError::Auth { .. }), "{e}");
    assert!(e.to_string().contains("credentials were refused"), "{e}");
}
