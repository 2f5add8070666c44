//! Reading backup archives: hostile archives (zip-slip through `..`, absolute names, links
//! leaving the target, devices, duplicates) and damaged ones are refused before anything is
//! written outside the extraction directory, which is removed on refusal.

mod support;

use autogit_core::backup::{FORMAT, MANIFEST, Manifest, Member};
use autogit_drivers::backup::{BackupError, extract_verified, write_archive};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

const GL: &str = "gitlab/1764556245_2025_12_01_18.5.4_gitlab_backup.tar";

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

/// A good archive written by the production writer.
fn good(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("gl.tar"), b"gitlab backup bytes").unwrap();
    std::fs::write(src.join("secrets.json"), b"{}").unwrap();
    let out = dir.join("autogit-backup-20251201T023045Z-18.5.4.tar");
    write_archive(
        &out,
        &[
            (GL.to_owned(), src.join("gl.tar")),
            (
                "etc-gitlab/gitlab-secrets.json".to_owned(),
                src.join("secrets.json"),
            ),
        ],
        manifest(),
    )
    .unwrap();
    out
}

/// Writes a raw ustar header with any name (the tar crate refuses to build hostile ones).
fn raw_entry(out: &mut Vec<u8>, name: &str, kind: u8, link: &str, data: &[u8]) {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..107].copy_from_slice(b"0000644");
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    let size = format!("{:011o}", data.len());
    h[124..135].copy_from_slice(size.as_bytes());
    h[136..147].copy_from_slice(b"00000000000");
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn hostile(dir: &Path, entries: &[(&str, u8, &str, &[u8])]) -> PathBuf {
    let mut bytes = Vec::new();
    for (name, kind, link, data) in entries {
        raw_entry(&mut bytes, name, *kind, link, data);
    }
    bytes.extend_from_slice(&[0u8; 1024]);
    let p = dir.join("hostile.tar");
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn a_good_archive_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let a = good(dir.path());
    let v = extract_verified(&a, &dir.path().join("out")).unwrap();
    assert_eq!(v.manifest.members.len(), 2);
    let digest: String = Sha256::digest(b"gitlab backup bytes")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(v.manifest.members[0].sha256, digest);
    assert_eq!(
        std::fs::read(dir.path().join("out").join(GL)).unwrap(),
        b"gitlab backup bytes"
    );
}

#[test]
#[allow(unsafe_code)]
fn extraction_is_private_under_umask_022() {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: umask only sets the process's file creation mask; 022 is the usual one and
    // what the other tests in this binary expect anyway.
    unsafe {
        libc::umask(0o022);
    }
    let dir = tempfile::tempdir().unwrap();
    let a = good(dir.path());
    let out = dir.path().join("work/restore");
    extract_verified(&a, &out).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    for (p, want) in [
        (dir.path().join("work"), 0o700),
        (out.clone(), 0o700),
        (out.join("gitlab"), 0o700),
        (out.join("etc-gitlab"), 0o700),
        (out.join(GL), 0o600),
        (out.join("etc-gitlab/gitlab-secrets.json"), 0o600),
        (a.clone(), 0o600),
    ] {
        assert_eq!(mode(&p), want, "{}", p.display());
    }
}

#[test]
fn hostile_members_are_refused_and_nothing_escapes() {
    let cases: &[(&str, u8, &str, &str)] = &[
        ("../escaped", b'0', "", "`..`"),
        ("gitlab/../../escaped", b'0', "", "`..`"),
        ("/tmp/autogit-escaped-abs", b'0', "", "absolute"),
        ("gitlab/link", b'2', "/etc/passwd", "Symlink"),
        ("autogit/secrets/hard", b'1', "../../escaped", "Link"),
        ("autogit/secrets/dev", b'3', "", "Char"),
        ("autogit/secrets/dir", b'5', "", "Directory"),
        ("etc/shadow", b'0', "", "not part of an autogit backup"),
    ];
    for (name, kind, link, why) in cases {
        let dir = tempfile::tempdir().unwrap();
        let a = hostile(dir.path(), &[(name, *kind, link, b"evil")]);
        let into = dir.path().join("work/out");
        let e = extract_verified(&a, &into).unwrap_err();
        assert!(
            matches!(e, BackupError::UnsafeMember { .. }) && e.to_string().contains(why),
            "{name}: {e}"
        );
        assert!(e.to_string().contains("nothing was restored"), "{e}");
        assert!(!into.exists(), "{name}: extraction dir left behind");
        assert!(!dir.path().join("work/escaped").exists());
        assert!(!dir.path().join("escaped").exists());
        assert!(!Path::new("/tmp/autogit-escaped-abs").exists());
    }
}

#[test]
fn duplicates_missing_manifest_and_tampering_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = hostile(
        dir.path(),
        &[
            ("autogit/secrets/tok", b'0', "", b"one"),
            ("autogit/secrets/tok", b'0', "", b"two"),
        ],
    );
    let e = extract_verified(&a, &dir.path().join("o1")).unwrap_err();
    assert!(e.to_string().contains("appears twice"), "{e}");

    let a = hostile(dir.path(), &[("autogit/secrets/tok", b'0', "", b"one")]);
    let e = extract_verified(&a, &dir.path().join("o2")).unwrap_err();
    assert!(e.to_string().contains("no manifest.json"), "{e}");

    // Flip one byte of a member's data: its digest no longer matches the manifest.
    let a = good(dir.path());
    let mut bytes = std::fs::read(&a).unwrap();
    let at = bytes
        .windows(19)
        .position(|w| w == b"gitlab backup bytes")
        .unwrap();
    bytes[at] ^= 0x20;
    std::fs::write(&a, &bytes).unwrap();
    let e = extract_verified(&a, &dir.path().join("o3")).unwrap_err();
    assert!(e.to_string().contains("does not match the manifest"), "{e}");
    assert!(!dir.path().join("o3").exists());
}

#[test]
fn a_failing_write_leaves_neither_archive_nor_partial() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir
        .path()
        .join("autogit-backup-20251201T023045Z-18.5.4.tar");
    // A member that cannot be read fails the write half-way.
    let e = write_archive(
        &out,
        &[(GL.to_owned(), dir.path().join("missing"))],
        manifest(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("missing"), "{e}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

/// An archive whose GitLab member's header declares `declared` bytes (the data is a hole: the
/// file is sparse, a few KiB on disk) and whose manifest lists it with `listed` bytes. With
/// `cut`, the file ends right after the header instead, as a truncated archive would.
fn sparse_archive(dir: &Path, declared: u64, listed: u64, cut: bool) -> PathBuf {
    use std::io::{Seek, SeekFrom, Write};
    let p = dir.join("sparse.tar");
    let mut f = std::fs::File::create(&p).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_path(GL).unwrap();
    h.set_size(declared);
    h.set_mode(0o600);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    f.write_all(h.as_bytes()).unwrap();
    if cut {
        return p;
    }
    f.seek(SeekFrom::Start(512 + declared.div_ceil(512) * 512))
        .unwrap();
    let mut m = manifest();
    m.members.push(Member {
        name: GL.into(),
        size: listed,
        sha256: "0".repeat(64),
    });
    let json = serde_json::to_vec(&m).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_path(MANIFEST).unwrap();
    h.set_size(json.len() as u64);
    h.set_mode(0o600);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    f.write_all(h.as_bytes()).unwrap();
    f.write_all(&json).unwrap();
    f.write_all(&vec![0u8; (512 - json.len() % 512) % 512 + 1024])
        .unwrap();
    p
}

#[test]
fn a_huge_declared_member_is_refused_before_anything_is_written() {
    let Some(fs) = support::Tmpfs::mount("4m") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ten_gib = 10 << 30;
    let used = fs.used();
    for (what, declared, listed, cut, expect) in [
        (
            "manifest agrees",
            ten_gib,
            ten_gib,
            false,
            "not enough space",
        ),
        (
            "manifest lists 10 bytes",
            ten_gib,
            10,
            false,
            "but 10 in the manifest",
        ),
        (
            "file cut short",
            ten_gib,
            ten_gib,
            true,
            "past the end of the file",
        ),
    ] {
        let a = sparse_archive(dir.path(), declared, listed, cut);
        let on_disk = std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(&a).unwrap()) * 512;
        assert!(
            on_disk < 64 << 10,
            "{what}: the archive is sparse ({on_disk} bytes)"
        );
        let into = fs.path().join("restore");
        let start = std::time::Instant::now();
        let e = extract_verified(&a, &into).unwrap_err();
        let took = start.elapsed();
        eprintln!("{what}: refused in {took:?}: {e}");
        assert!(e.to_string().contains(expect), "{what}: {e}");
        assert!(
            e.to_string().contains(&a.display().to_string())
                || e.to_string().contains(&into.display().to_string()),
            "{what}: names the archive or the target: {e}"
        );
        assert!(!into.exists(), "{what}: nothing left behind");
        assert!(
            fs.used() <= used + (16 << 10),
            "{what}: {} bytes were written",
            fs.used() - used
        );
    }
    // The free-space error says how much is needed and where.
    let a = sparse_archive(dir.path(), ten_gib, ten_gib, false);
    let e = extract_verified(&a, &fs.path().join("restore")).unwrap_err();
    assert!(
        matches!(&e, BackupError::NoSpace { needed, available, .. } if *needed > ten_gib && *available <= 4 << 20),
        "{e:?}"
    );
}

#[test]
fn a_good_archive_still_restores_onto_a_small_tmpfs() {
    let Some(fs) = support::Tmpfs::mount("4m") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = good(dir.path());
    let v = extract_verified(&a, &fs.path().join("restore")).unwrap();
    assert_eq!(
        std::fs::read(v.dir.join(GL)).unwrap(),
        b"gitlab backup bytes"
    );
}

/// A disk that fills while the archive is written (the up-front estimate cannot see other
/// writers): the error names the archive being written, not the member being read, and
/// nothing is left.
#[test]
fn a_disk_filling_mid_write_names_the_destination() {
    let Some(fs) = support::Tmpfs::mount("64k") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("gl.tar");
    std::fs::write(&src, vec![b'x'; 2 << 20]).unwrap();
    let out = fs.path().join("autogit-backup-20251201T023045Z-18.5.4.tar");
    let e = write_archive(&out, &[(GL.to_owned(), src.clone())], manifest()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with(&out.display().to_string()) && msg.contains("No space left"),
        "{msg}"
    );
    assert!(!msg.contains(&src.display().to_string()), "{msg}");
    assert_eq!(std::fs::read_dir(fs.path()).unwrap().count(), 0);
}
