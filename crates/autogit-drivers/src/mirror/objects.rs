//! The object ids of a mirror's cache, listed without a process: the names in its pack
//! indexes (version 2, SHA-1) and its loose objects. With them, the LFS scan asks one `git
//! cat-file --batch-command` for the sizes and then the small blobs' contents, where
//! `--batch-all-objects` needed a second process for the contents.
//!
//! Only what autogit's own caches hold is read (a bare SHA-1 repository that `git fetch`
//! wrote, without alternates); anything else answers `None` and the caller asks git.

use std::path::Path;

const IDX_MAGIC: [u8; 4] = [0xff, b't', b'O', b'c'];
/// Magic, version and the 256 fan-out entries.
const IDX_HEADER: usize = 8 + 256 * 4;
const SHA1_LEN: usize = 20;

/// Every object id in the bare repository `repo`, hex, in no particular order (an object in
/// two packs, or packed and loose, appears twice). `None` when the repository has anything
/// this does not read: an index of another version or hash size, alternates, a SHA-256
/// object format.
pub fn list(repo: &Path) -> std::io::Result<Option<Vec<String>>> {
    let objects = repo.join("objects");
    if objects.join("info/alternates").exists() {
        return Ok(None);
    }
    let config = std::fs::read_to_string(repo.join("config")).unwrap_or_default();
    if config.to_ascii_lowercase().contains("objectformat") {
        return Ok(None);
    }
    let mut out = Vec::new();
    let pack_dir = objects.join("pack");
    if pack_dir.exists() {
        for entry in std::fs::read_dir(&pack_dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "idx") {
                let bytes = std::fs::read(&path)?;
                match idx_names(&bytes) {
                    Some(names) => out.extend(names),
                    None => return Ok(None),
                }
            }
        }
    }
    for entry in std::fs::read_dir(&objects)? {
        let entry = entry?;
        let dir = entry.file_name();
        let dir = dir.to_string_lossy();
        if dir.len() != 2 || !dir.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        for file in std::fs::read_dir(entry.path())? {
            let name = file?.file_name();
            let name = name.to_string_lossy();
            if name.len() == 2 * SHA1_LEN - 2 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
                out.push(format!("{dir}{name}"));
            }
        }
    }
    Ok(Some(out))
}

/// Whether the repository's objects hold an LFS pointer, read in-process when every object is
/// loose (what `git fetch` leaves of a small first fetch: under `fetch.unpackLimit`, 100
/// objects, it unpacks them): each object's header inflated for its type and size, and the
/// blobs of pointer size read whole ([`autogit_core::mirror::lfs_pointer_candidates`]'s
/// bounds, [`autogit_core::mirror::has_lfs_pointer`]'s test). `None` when there is a pack
/// or anything [`list`] would not read: the caller asks git.
pub fn loose_lfs(repo: &Path) -> std::io::Result<Option<bool>> {
    use std::io::Read as _;
    let pack_dir = repo.join("objects/pack");
    if pack_dir.exists()
        && std::fs::read_dir(&pack_dir)?.any(|e| {
            e.is_ok_and(|e| {
                e.path()
                    .extension()
                    .is_some_and(|x| x == "idx" || x == "pack")
            })
        })
    {
        return Ok(None);
    }
    let Some(oids) = list(repo)? else {
        return Ok(None);
    };
    let objects = repo.join("objects");
    for oid in oids {
        let file = std::fs::File::open(objects.join(&oid[..2]).join(&oid[2..]))?;
        // A header (`blob 130\0`) and, for a pointer, at most 1024 bytes: never more read.
        let mut z = flate2::read::ZlibDecoder::new(file).take(64 + 1024);
        let mut head = Vec::with_capacity(32);
        let mut byte = [0u8; 1];
        loop {
            if z.read(&mut byte)? == 0 || head.len() > 32 {
                return Ok(None);
            }
            if byte[0] == 0 {
                break;
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let Some((kind, size)) = head.split_once(' ') else {
            return Ok(None);
        };
        let Ok(size) = size.parse::<usize>() else {
            return Ok(None);
        };
        let line = format!("{kind} {size} {oid}");
        if autogit_core::mirror::lfs_pointer_candidates(&line).is_empty() {
            continue;
        }
        let mut content = Vec::with_capacity(size);
        z.read_to_end(&mut content)?;
        if content.len() != size {
            return Ok(None);
        }
        let mut batch = format!("{oid} {kind} {size}\n").into_bytes();
        batch.extend_from_slice(&content);
        batch.push(b'\n');
        if autogit_core::mirror::has_lfs_pointer(&batch) {
            return Ok(Some(true));
        }
    }
    Ok(Some(false))
}

/// The object names of a version 2 pack index of SHA-1 objects; `None` for anything else
/// (version 1, SHA-256, a truncated file).
pub fn idx_names(bytes: &[u8]) -> Option<Vec<String>> {
    if bytes.len() < IDX_HEADER || bytes[..4] != IDX_MAGIC || bytes[4..8] != [0, 0, 0, 2] {
        return None;
    }
    let at = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap_or_default());
    let n = at(8 + 255 * 4) as usize;
    // Names, CRCs and 4-byte offsets, then (large offsets and) the pack and index checksums:
    // a SHA-256 index of the same count would not fit this arithmetic with its 32-byte names
    // unless the file were exactly that size, which its checksums rule out.
    let needed = IDX_HEADER + n.checked_mul(SHA1_LEN + 8)? + 2 * SHA1_LEN;
    let large = bytes.len().checked_sub(needed)?;
    if large % 8 != 0 {
        return None;
    }
    let names = &bytes[IDX_HEADER..IDX_HEADER + n * SHA1_LEN];
    Some(
        names
            .chunks_exact(SHA1_LEN)
            .map(|c| c.iter().map(|b| format!("{b:02x}")).collect())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .current_dir(dir)
            .args(args)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "a")
            .env("GIT_AUTHOR_EMAIL", "a@example.org")
            .env("GIT_COMMITTER_NAME", "a")
            .env("GIT_COMMITTER_EMAIL", "a@example.org")
            .output()
            .expect("git");
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn sorted(mut v: Vec<String>) -> Vec<String> {
        v.sort();
        v.dedup();
        v
    }

    /// Against git's own listing, on a repository with packed and loose objects.
    #[test]
    fn lists_what_git_lists() {
        let tmp = tempfile::tempdir().unwrap();
        let work = tmp.path().join("w");
        std::fs::create_dir(&work).unwrap();
        git(&work, &["init", "--quiet"]);
        for i in 0..3 {
            std::fs::write(work.join(format!("f{i}")), format!("file {i}\n")).unwrap();
            git(&work, &["add", "-A"]);
            git(&work, &["commit", "--quiet", "-m", &format!("c{i}")]);
        }
        git(&work, &["tag", "-a", "v1", "-m", "v1"]);
        let bare = tmp.path().join("b.git");
        git(
            tmp.path(),
            &[
                "clone",
                "--bare",
                "--no-local",
                "--quiet",
                "w",
                bare.to_str().unwrap(),
            ],
        );
        // One more loose object beside the clone's pack.
        std::fs::write(work.join("loose"), "loose\n").unwrap();
        let loose = git(&bare, &["hash-object", "-w", "../w/loose"]);
        assert!(bare.join("objects/pack").read_dir().unwrap().count() >= 2);

        let ours = sorted(list(&bare).unwrap().expect("a plain cache is read"));
        let theirs = sorted(
            git(
                &bare,
                &[
                    "cat-file",
                    "--batch-all-objects",
                    "--batch-check=%(objectname)",
                ],
            )
            .lines()
            .map(str::to_owned)
            .collect(),
        );
        assert_eq!(ours, theirs);
        assert!(ours.contains(&loose.trim().to_owned()));
        // 3 commits, 3 trees, 3 blobs, a tag, the loose blob.
        assert_eq!(ours.len(), 11, "{ours:?}");
    }

    /// Loose objects only: read here, a pointer found among them and not elsewhere; with a
    /// pack, left to git.
    #[test]
    fn loose_objects_are_scanned_for_pointers() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("r.git");
        std::fs::create_dir(&repo).unwrap();
        git(&repo, &["init", "--bare", "--quiet"]);
        std::fs::write(tmp.path().join("text"), "x".repeat(300)).unwrap();
        git(&repo, &["hash-object", "-w", "../text"]);
        assert_eq!(loose_lfs(&repo).unwrap(), Some(false));
        let pointer = "version https://git-lfs.github.com/spec/v1\noid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 12345\n";
        std::fs::write(tmp.path().join("pointer"), pointer).unwrap();
        let oid = git(&repo, &["hash-object", "-w", "../pointer"]);
        assert_eq!(loose_lfs(&repo).unwrap(), Some(true));
        // A pack beside them (git packs what a larger fetch brings).
        let mut child = Command::new("git")
            .current_dir(&repo)
            .args(["pack-objects", "--quiet", "objects/pack/pack"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(oid.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(loose_lfs(&repo).unwrap(), None);
    }

    #[test]
    fn anything_else_is_left_to_git() {
        assert_eq!(idx_names(b"PACK"), None);
        let mut v1 = vec![0u8; IDX_HEADER + 40];
        assert_eq!(idx_names(&v1), None);
        v1[..4].copy_from_slice(&IDX_MAGIC);
        v1[7] = 3;
        assert_eq!(idx_names(&v1), None);
        // Version 2, one object announced, the file too short for it.
        let mut short = vec![0u8; IDX_HEADER + 10];
        short[..4].copy_from_slice(&IDX_MAGIC);
        short[7] = 2;
        short[IDX_HEADER - 1] = 1;
        assert_eq!(idx_names(&short), None);

        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("objects/info")).unwrap();
        std::fs::write(tmp.path().join("objects/info/alternates"), "/x\n").unwrap();
        assert_eq!(list(tmp.path()).unwrap(), None);
    }
}
