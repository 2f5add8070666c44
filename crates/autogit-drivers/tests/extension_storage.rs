//! A `storage` extension as a backup target: the Python SDK's example
//! (`sdk/python/examples/dir_storage.py`, a real process speaking the protocol) takes verified
//! copies, lists, applies retention and gives a verified fetch; a corrupted copy is refused,
//! and an extension that stores something other than what it was given is caught by the
//! read-back (the copy is deleted, the error says so).

use autogit_core::backup::archive_name;
use autogit_drivers::extension::{ExtensionStorage, Found, Grant, Limits};
use autogit_drivers::storage::{
    Storage, StorageError, fetch_verified, list_archives, prune, upload_verified,
};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn python_or_skip() -> bool {
    let ok = Path::new("/usr/bin/python3").exists();
    if !ok {
        assert!(
            std::env::var_os("AUTOGIT_REQUIRE_TOOLS").is_none(),
            "/usr/bin/python3 is required"
        );
        eprintln!("skipping: no /usr/bin/python3");
    }
    ok
}

fn grant(dir: &Path) -> Grant<'static> {
    let dir = dir.display().to_string();
    Grant {
        env: Box::new(|_| None),
        setting: Box::new(move |k| (k == "DIR_STORAGE_PATH").then(|| dir.clone())),
        secret: Box::new(|_| Ok(None)),
        available: Box::new(|_| false),
    }
}

fn archive(dir: &Path, day: u64) -> PathBuf {
    let p = dir.join(archive_name(1_764_556_200 + day * 86_400, "18.5.4"));
    std::fs::write(&p, format!("archive of day {day}").repeat(1000)).unwrap();
    p
}

#[tokio::test]
async fn the_sdk_example_stores_archives_verified_with_retention() {
    if !python_or_skip() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let found = Found {
        name: "dir-storage".into(),
        path: repo().join("sdk/python/examples/dir_storage.py"),
    };
    let st = ExtensionStorage::start(
        &found,
        &grant(store_dir.path()),
        Limits::new(Duration::from_secs(20)),
    )
    .await
    .unwrap();
    let mut names = Vec::new();
    for day in 0..3 {
        names.push(
            upload_verified(&st, &archive(work.path(), day), work.path())
                .await
                .unwrap()
                .name,
        );
    }
    assert!(
        store_dir
            .path()
            .join(format!("{}.sha256", names[2]))
            .is_file()
    );
    let listed: Vec<String> = list_archives(&st)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(listed, names);
    assert_eq!(
        prune(&st, 2, None, 0).await.unwrap(),
        vec![names[0].clone()]
    );
    assert!(!store_dir.path().join(&names[0]).exists());

    let dest = work.path().join("back.tar");
    fetch_verified(&st, &names[2], &dest).await.unwrap();
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        std::fs::read(work.path().join(&names[2])).unwrap()
    );

    std::fs::write(store_dir.path().join(&names[1]), b"rotten").unwrap();
    let e = fetch_verified(&st, &names[1], &work.path().join("x.tar"))
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::Corrupt { .. }), "{e}");
    let e = fetch_verified(&st, &names[0], &work.path().join("x.tar"))
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::NotFound { .. }), "{e}");
    st.shutdown().await;
}

#[tokio::test]
async fn an_extension_that_stores_something_else_is_caught_by_the_read_back() {
    if !python_or_skip() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let script = work.path().join("liar-storage");
    std::fs::write(
        &script,
        format!(
            "#!/usr/bin/python3\nimport sys\nsys.path[:0] = [{examples:?}]\nimport dir_storage\nclass Liar(dir_storage.DirStorage):\n    def put(self, name, path):\n        with open(self._path(name), 'wb') as f:\n            f.write(b'truncated')\ndir_storage.Extension('liar-storage', '0.1.0').storage(Liar()).run()\n",
            examples = repo().join("sdk/python/examples").display().to_string()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let found = Found {
        name: "liar-storage".into(),
        path: script,
    };
    let st = ExtensionStorage::start(
        &found,
        &grant(store_dir.path()),
        Limits::new(Duration::from_secs(20)),
    )
    .await
    .unwrap();
    let a = archive(work.path(), 0);
    let e = upload_verified(&st, &a, work.path()).await.unwrap_err();
    assert!(matches!(e, StorageError::Mismatch { .. }), "{e}");
    assert!(e.to_string().contains("read back differs"), "{e}");
    // Nothing that looks like a complete copy is left.
    assert!(st.list().await.unwrap().is_empty());
    st.shutdown().await;
}
