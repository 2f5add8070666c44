//! Backup archives, as data: the archive's name, its manifest, which member names are safe to
//! extract, what GitLab's own backup file names mean, and which archives retention removes.
//! The drivers (`autogit_drivers::backup`) do the copying; every decision is here.
//!
//! An autogit backup is one uncompressed tar (GitLab's own backup inside is already a tar of
//! compressed parts):
//!
//! ```text
//! gitlab/<id>_gitlab_backup.tar   what `gitlab-backup create` wrote
//! etc-gitlab/gitlab-secrets.json   not in GitLab's backup; without it encrypted data is lost
//! etc-gitlab/gitlab.rb
//! autogit/autogit.yml, autogit/platform.env   the configuration, when present
//! autogit/state.db                 autogit's state (SQLite snapshot)
//! autogit/secrets/<name>           the secret store (tokens match the restored database)
//! manifest.json                    last: format, versions, size and sha256 of every member
//! ```

use serde::{Deserialize, Serialize};

use crate::civil::compact_utc;

/// Version of the archive layout; a restore refuses layouts it does not know.
pub const FORMAT: u32 = 1;
/// The manifest's member name.
pub const MANIFEST: &str = "manifest.json";
/// Prefix of autogit's archive names.
pub const ARCHIVE_PREFIX: &str = "autogit-backup-";
/// Where GitLab writes its backups inside the container.
pub const GITLAB_BACKUP_DIR: &str = "/var/opt/gitlab/backups";
/// The version file of the Omnibus image.
pub const GITLAB_VERSION_FILE: &str = "/opt/gitlab/embedded/service/gitlab-rails/VERSION";
/// GitLab's secrets (not part of `gitlab-backup`).
pub const GITLAB_SECRETS_FILE: &str = "/etc/gitlab/gitlab-secrets.json";
pub const GITLAB_RB_FILE: &str = "/etc/gitlab/gitlab.rb";

/// One member of the archive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    pub size: u64,
    /// Lower-case hex.
    pub sha256: String,
}

/// `manifest.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// RFC 3339, UTC.
    pub created: String,
    /// The GitLab version that wrote the backup; a restore needs exactly this version.
    pub gitlab_version: String,
    /// GitLab's backup id (`BACKUP=` of `gitlab-backup restore`).
    pub gitlab_backup_id: String,
    pub autogit_version: String,
    pub members: Vec<Member>,
}

/// A GitLab backup file name: `<timestamp>_<YYYY_MM_DD>_<version>_gitlab_backup.tar`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GitLabBackupName {
    /// Everything before `_gitlab_backup.tar`: what `BACKUP=` takes.
    pub id: String,
    pub timestamp: u64,
    /// `18.5.4` (an `-ee` suffix is kept).
    pub version: String,
}

/// Parses a GitLab backup file name; `None` for anything else.
pub fn parse_gitlab_backup_name(name: &str) -> Option<GitLabBackupName> {
    let id = name.strip_suffix("_gitlab_backup.tar")?;
    let mut parts = id.splitn(5, '_');
    let ts = parts.next()?;
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    let version = parts.next()?;
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if ts.is_empty()
        || !ts.bytes().all(|b| b.is_ascii_digit())
        || !digits(y, 4)
        || !digits(m, 2)
        || !digits(d, 2)
        || version.is_empty()
        || !version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    {
        return None;
    }
    Some(GitLabBackupName {
        id: id.to_owned(),
        timestamp: ts.parse().ok()?,
        version: version.to_owned(),
    })
}

/// The archive's file name for a backup taken at `unix` (UTC) of GitLab `version`.
pub fn archive_name(unix: u64, version: &str) -> String {
    format!("{ARCHIVE_PREFIX}{}-{version}.tar", compact_utc(unix))
}

/// The suffix an archive encrypted with age gets after `.tar`.
pub const AGE_SUFFIX: &str = ".age";

/// The first bytes of every age file (binary format; `age -a` armor is not written).
pub const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";

/// The name of an archive encrypted with age: [`archive_name`] + `.age`.
pub fn encrypted_archive_name(unix: u64, version: &str) -> String {
    format!("{}{AGE_SUFFIX}", archive_name(unix, version))
}

/// Whether `name` is an autogit archive name, encrypted (`.tar.age`) or not (what retention
/// may delete).
pub fn is_archive_name(name: &str) -> bool {
    let name = name.strip_suffix(AGE_SUFFIX).unwrap_or(name);
    name.strip_prefix(ARCHIVE_PREFIX)
        .and_then(|r| r.strip_suffix(".tar"))
        .is_some_and(|r| {
            r.len() > 17
                && r.as_bytes()[8] == b'T'
                && r.as_bytes()[15] == b'Z'
                && r.as_bytes()[16] == b'-'
                && r[..8].bytes().all(|b| b.is_ascii_digit())
                && r[9..15].bytes().all(|b| b.is_ascii_digit())
        })
}

/// Which archives to delete so that the newest `keep` remain. Names sort by time; anything
/// that is not an archive name is never touched. `keep` of 0 keeps everything.
pub fn retention(names: &[String], keep: u32) -> Vec<String> {
    if keep == 0 {
        return Vec::new();
    }
    let mut archives: Vec<&String> = names.iter().filter(|n| is_archive_name(n)).collect();
    archives.sort();
    let excess = archives.len().saturating_sub(keep as usize);
    archives[..excess].iter().map(|s| (*s).clone()).collect()
}

/// When the archive `name` was taken (Unix seconds, UTC), read from its name.
pub fn archive_time(name: &str) -> Option<u64> {
    if !is_archive_name(name) {
        return None;
    }
    let r = name.strip_prefix(ARCHIVE_PREFIX)?;
    let num = |a: usize, b: usize| r.get(a..b)?.parse::<u32>().ok();
    let days = crate::civil::days_from_civil(i64::from(num(0, 4)?), num(4, 6)?, num(6, 8)?)?;
    let secs =
        u64::from(num(9, 11)?) * 3600 + u64::from(num(11, 13)?) * 60 + u64::from(num(13, 15)?);
    u64::try_from(days).ok().map(|d| d * 86_400 + secs)
}

/// Which archives a backup target deletes: those beyond the newest `keep`, and those older
/// than `max_age` seconds at `now`. The newest archive is never deleted, and names that are
/// not archive names are never touched.
pub fn remote_retention(
    names: &[String],
    keep: u32,
    max_age: Option<u64>,
    now: u64,
) -> Vec<String> {
    let mut archives: Vec<&String> = names.iter().filter(|n| is_archive_name(n)).collect();
    archives.sort();
    archives.dedup();
    let Some((newest, older)) = archives.split_last() else {
        return Vec::new();
    };
    let by_count = retention(
        &archives.iter().map(|s| (*s).clone()).collect::<Vec<_>>(),
        keep,
    );
    older
        .iter()
        .filter(|n| {
            by_count.contains(n)
                || max_age
                    .is_some_and(|age| archive_time(n).is_some_and(|t| now.saturating_sub(t) > age))
        })
        .filter(|n| **n != *newest)
        .map(|n| (*n).clone())
        .collect()
}

/// What an archive member is, by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberKind {
    Manifest,
    GitLabBackup(GitLabBackupName),
    GitLabSecrets,
    GitLabRb,
    Config(String),
    State,
    Secret(String),
    /// `<data_dir>/access.db` (API keys and roles), a consistent SQLite snapshot.
    Access,
    /// One file of `<data_dir>/audit/`.
    Audit(String),
}

/// Classifies a member name, refusing anything a restore must not write: absolute paths,
/// `..`, empty or `.` components, backslashes, control characters, and names outside the
/// layout above. This is the zip-slip guard; links are refused separately by type.
pub fn classify_member(name: &str) -> Result<MemberKind, String> {
    if name.is_empty() {
        return Err("empty member name".to_owned());
    }
    if name.starts_with('/') {
        return Err("absolute path".to_owned());
    }
    if name.contains('\\') || name.chars().any(char::is_control) {
        return Err("backslash or control character in the name".to_owned());
    }
    let parts: Vec<&str> = name.split('/').collect();
    if parts.contains(&"..") {
        return Err("`..` leaves the target directory".to_owned());
    }
    if parts.iter().any(|p| p.is_empty() || *p == ".") {
        return Err("empty or `.` path component".to_owned());
    }
    let secret_name = |s: &str| {
        !s.is_empty()
            && s.len() <= 128
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            && !s.starts_with('.')
    };
    match parts.as_slice() {
        [MANIFEST] => Ok(MemberKind::Manifest),
        ["gitlab", file] => parse_gitlab_backup_name(file)
            .map(MemberKind::GitLabBackup)
            .ok_or_else(|| format!("`{file}` is not a GitLab backup file name")),
        ["etc-gitlab", "gitlab-secrets.json"] => Ok(MemberKind::GitLabSecrets),
        ["etc-gitlab", "gitlab.rb"] => Ok(MemberKind::GitLabRb),
        ["autogit", f @ ("autogit.yml" | "platform.env")] => {
            Ok(MemberKind::Config((*f).to_owned()))
        }
        ["autogit", "state.db"] => Ok(MemberKind::State),
        ["autogit", "secrets", s] if secret_name(s) => Ok(MemberKind::Secret((*s).to_owned())),
        ["autogit", "access.db"] => Ok(MemberKind::Access),
        ["autogit", "audit", f] if secret_name(f) => Ok(MemberKind::Audit((*f).to_owned())),
        _ => Err("not part of an autogit backup".to_owned()),
    }
}

/// Checks a manifest against the members found in the archive (name, size and digest each):
/// every listed member present and equal, nothing extra, exactly one GitLab backup whose name
/// agrees with the manifest.
pub fn verify_manifest(manifest: &Manifest, found: &[Member]) -> Result<(), String> {
    if manifest.format != FORMAT {
        return Err(format!(
            "archive format {} is not supported (this autogit reads format {FORMAT})",
            manifest.format
        ));
    }
    for m in &manifest.members {
        match found.iter().find(|f| f.name == m.name) {
            None => return Err(format!("member `{}` is missing", m.name)),
            Some(f) if f.size != m.size || f.sha256 != m.sha256 => {
                return Err(format!(
                    "member `{}` does not match the manifest (sha256 {} expected, {} found): the archive is damaged or was changed",
                    m.name, m.sha256, f.sha256
                ));
            }
            Some(_) => {}
        }
    }
    if let Some(extra) = found
        .iter()
        .find(|f| f.name != MANIFEST && !manifest.members.iter().any(|m| m.name == f.name))
    {
        return Err(format!(
            "member `{}` is not listed in the manifest",
            extra.name
        ));
    }
    check_gitlab_backup(manifest)
}

/// Most members an archive may have (GitLab's backup, two GitLab files, three of autogit's
/// and one per secret): anything near this is not an autogit backup.
pub const MAX_MEMBERS: usize = 10_000;

/// Checks a manifest against the members an archive *declares* (name and size from the tar
/// headers), before anything is extracted: the same names and sizes both ways, exactly one
/// GitLab backup agreeing with the manifest. Returns the total size of the members, which a
/// restore needs as free space; the digests are checked while extracting ([`verify_manifest`]).
pub fn check_declared(manifest: &Manifest, declared: &[(String, u64)]) -> Result<u64, String> {
    if manifest.format != FORMAT {
        return Err(format!(
            "archive format {} is not supported (this autogit reads format {FORMAT})",
            manifest.format
        ));
    }
    if declared.len() > MAX_MEMBERS || manifest.members.len() > MAX_MEMBERS {
        return Err(format!(
            "more than {MAX_MEMBERS} members: not an autogit backup"
        ));
    }
    let mut total: u64 = 0;
    for m in &manifest.members {
        match declared.iter().find(|(name, _)| *name == m.name) {
            None => return Err(format!("member `{}` is missing", m.name)),
            Some((_, size)) if *size != m.size => {
                return Err(format!(
                    "member `{}` is {size} bytes in the archive but {} in the manifest: the archive is damaged or was changed",
                    m.name, m.size
                ));
            }
            Some((_, size)) => {
                total = total
                    .checked_add(*size)
                    .ok_or_else(|| "the members' sizes overflow".to_owned())?;
            }
        }
    }
    if let Some((extra, _)) = declared
        .iter()
        .find(|(name, _)| name != MANIFEST && !manifest.members.iter().any(|m| m.name == *name))
    {
        return Err(format!("member `{extra}` is not listed in the manifest"));
    }
    check_gitlab_backup(manifest)?;
    Ok(total)
}

/// Exactly one GitLab backup among the manifest's members, agreeing with its id and version.
fn check_gitlab_backup(manifest: &Manifest) -> Result<(), String> {
    let backups: Vec<GitLabBackupName> = manifest
        .members
        .iter()
        .filter_map(|m| match classify_member(&m.name) {
            Ok(MemberKind::GitLabBackup(b)) => Some(b),
            _ => None,
        })
        .collect();
    match backups.as_slice() {
        [b] if b.id == manifest.gitlab_backup_id && b.version == manifest.gitlab_version => Ok(()),
        [b] => Err(format!(
            "the GitLab backup `{}` does not agree with the manifest (id {}, version {})",
            b.id, manifest.gitlab_backup_id, manifest.gitlab_version
        )),
        [] => Err("the archive holds no GitLab backup".to_owned()),
        _ => Err("the archive holds more than one GitLab backup".to_owned()),
    }
}

/// A restore needs the same GitLab version as the backup (GitLab refuses otherwise, after
/// stopping services; autogit refuses before touching anything).
pub fn check_version(archive: &str, running: &str) -> Result<(), String> {
    let norm = |v: &str| {
        v.trim()
            .trim_end_matches("-ee")
            .trim_end_matches("-ce")
            .to_owned()
    };
    if norm(archive) == norm(running) {
        Ok(())
    } else {
        Err(format!(
            "the backup was taken with GitLab {archive} but GitLab {running} is running: deploy {archive} first (`--set gitlab.version={archive}` or `gitlab.version` in autogit.yml), restore, then upgrade"
        ))
    }
}

// ---- restore tests ---------------------------------------------------------------------------

/// What names the scratch GitLab of a restore test: `<project>-restore-test` (container,
/// engine project label) and `<project>_restore-test-<volume>` (its volumes).
pub const RESTORE_TEST: &str = "restore-test";

/// The outcome of one restore test (`autogit restore --test`), kept as
/// `<data>/state/restore-test.json` for `diagnose`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RestoreTest {
    /// The archive's file name.
    pub archive: String,
    /// Unix seconds when the test started.
    pub started_at: i64,
    pub seconds: f64,
    /// Whether GitLab restored the archive and answered its health check afterwards.
    pub ok: bool,
    /// Why not, in words.
    pub error: Option<String>,
}

/// The scratch GitLab of a restore test, from the running GitLab's container: the same image,
/// configuration, limits and health check, but its own name and fresh volumes, no published
/// port, and no network at all (Docker's `none`: loopback only), so that the restored data can
/// reach nothing: no mirror pulls, webhooks or mail leave it. Labelled as another project, so
/// the platform's reconcile never adopts or repairs it.
pub fn restore_test_spec(
    running: &crate::container::ContainerSpec,
    project: &str,
) -> crate::container::ContainerSpec {
    use crate::container::{MountSpec, labels};
    let scratch = format!("{project}-{RESTORE_TEST}");
    let mut s = running.clone();
    s.name = scratch.clone();
    s.ports.clear();
    s.network = "none".to_owned();
    s.aliases.clear();
    s.hostname = None;
    s.restart_policy = "no".to_owned();
    s.mounts = running
        .mounts
        .iter()
        .map(|m| match m {
            MountSpec::Volume { name, target } => MountSpec::Volume {
                name: format!(
                    "{project}_{RESTORE_TEST}-{}",
                    name.strip_prefix(&format!("{project}_")).unwrap_or(name)
                ),
                target: target.clone(),
            },
            other => other.clone(),
        })
        .collect();
    for k in [labels::MANAGED, labels::COMPOSE_PROJECT] {
        s.labels.insert(k.to_owned(), scratch.clone());
    }
    s.labels.remove(labels::SPEC_HASH);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Remote retention: keep N, then age; the newest copy survives both; other files stay.
    #[test]
    fn remote_retention_by_count_and_age() {
        let day = 86_400;
        let t0 = 1_764_556_200; // 2025-12-01T02:30:00Z
        let name = |d: u64| archive_name(t0 + d * day, "18.5.4");
        assert_eq!(archive_time(&name(0)), Some(t0));
        assert_eq!(archive_time("notes.txt"), None);
        let names: Vec<String> = (0..5)
            .map(name)
            .chain(["notes.txt".to_owned(), format!("{}.sha256", name(0))])
            .collect();
        let now = t0 + 4 * day;
        // (keep, max_age in days, what goes)
        let table: [(u32, Option<u64>, Vec<u64>); 5] = [
            (0, None, vec![]),
            (3, None, vec![0, 1]),
            (0, Some(2), vec![0, 1]),
            (4, Some(3), vec![0]),
            (10, Some(0), vec![0, 1, 2, 3]),
        ];
        for (keep, age, gone) in table {
            let want: Vec<String> = gone.into_iter().map(name).collect();
            assert_eq!(
                remote_retention(&names, keep, age.map(|a| a * day), now),
                want,
                "keep {keep} max_age {age:?}"
            );
        }
        // Everything too old: the newest still stays.
        assert_eq!(
            remote_retention(&names, 0, Some(1), now + 100 * day),
            (0..4).map(name).collect::<Vec<_>>()
        );
    }

    #[test]
    fn gitlab_backup_names() {
        let b = parse_gitlab_backup_name("1764556200_2025_12_01_18.5.4_gitlab_backup.tar").unwrap();
        assert_eq!(b.id, "1764556200_2025_12_01_18.5.4");
        assert_eq!(b.timestamp, 1_764_556_200);
        assert_eq!(b.version, "18.5.4");
        assert_eq!(
            parse_gitlab_backup_name("1_2025_12_01_18.5.4-ee_gitlab_backup.tar")
                .unwrap()
                .version,
            "18.5.4-ee"
        );
        for bad in [
            "x_2025_12_01_18.5.4_gitlab_backup.tar",
            "1_2025_12_18.5.4_gitlab_backup.tar",
            "1_2025_12_01__gitlab_backup.tar",
            "1_2025_12_01_18.5.4_gitlab_backup.tgz",
            "1_2025_12_01_18/../x_gitlab_backup.tar",
        ] {
            assert!(parse_gitlab_backup_name(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn names_and_times() {
        let n = archive_name(1_764_556_245, "18.5.4");
        assert_eq!(n, "autogit-backup-20251201T023045Z-18.5.4.tar");
        assert!(is_archive_name(&n));
        let e = encrypted_archive_name(1_764_556_245, "18.5.4");
        assert_eq!(e, "autogit-backup-20251201T023045Z-18.5.4.tar.age");
        assert!(is_archive_name(&e));
        assert!(!is_archive_name("autogit-backup-x.tar"));
        assert!(!is_archive_name(&format!("{n}.age.age")));
        assert!(!is_archive_name("notes.txt"));
    }

    #[test]
    fn retention_keeps_the_newest_and_ignores_other_files() {
        let names: Vec<String> = [
            "autogit-backup-20251203T000000Z-18.5.4.tar",
            "autogit-backup-20251201T000000Z-18.5.4.tar",
            "README",
            "autogit-backup-20251202T000000Z-18.5.4.tar",
            ".autogit-backup-20251204T000000Z-18.5.4.tar.partial",
            "autogit-backup-20251204T000000Z-18.5.4.tar.age",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            retention(&names, 3),
            ["autogit-backup-20251201T000000Z-18.5.4.tar"]
        );
        assert_eq!(retention(&names, 1).len(), 3);
        assert!(retention(&names, 4).is_empty());
        assert!(retention(&names, 0).is_empty());
    }

    #[test]
    fn member_names_zip_slip() {
        let ok = [
            ("manifest.json", "Manifest"),
            (
                "gitlab/1_2025_12_01_18.5.4_gitlab_backup.tar",
                "GitLabBackup",
            ),
            ("etc-gitlab/gitlab-secrets.json", "GitLabSecrets"),
            ("autogit/secrets/gitlab-admin-token", "Secret"),
            ("autogit/state.db", "State"),
            ("autogit/platform.env", "Config"),
            ("autogit/access.db", "Access"),
            ("autogit/audit/audit-2026-12.jsonl", "Audit"),
        ];
        for (name, kind) in ok {
            let k = classify_member(name).unwrap();
            assert!(format!("{k:?}").starts_with(kind), "{name}: {k:?}");
        }
        let bad = [
            ("/etc/passwd", "absolute"),
            ("../evil", "`..`"),
            ("gitlab/../../evil", "`..`"),
            ("autogit/secrets/../../x", "`..`"),
            ("autogit//state.db", "empty"),
            ("./manifest.json", "`.`"),
            ("autogit\\..\\x", "backslash"),
            ("autogit/secrets/.hidden", "not part"),
            ("autogit/secrets/a/b", "not part"),
            ("autogit/audit/.hidden", "not part"),
            ("autogit/audit/a/b", "not part"),
            ("autogit/access.db/x", "not part"),
            ("etc/shadow", "not part"),
            ("gitlab/evil.sh", "not a GitLab backup"),
            ("", "empty"),
        ];
        for (name, why) in bad {
            let e = classify_member(name).unwrap_err();
            assert!(e.contains(why), "{name}: {e}");
        }
    }

    fn manifest() -> Manifest {
        Manifest {
            format: FORMAT,
            created: "2025-12-01T02:30:45Z".into(),
            gitlab_version: "18.5.4".into(),
            gitlab_backup_id: "1_2025_12_01_18.5.4".into(),
            autogit_version: "0.1.0".into(),
            members: vec![
                Member {
                    name: "gitlab/1_2025_12_01_18.5.4_gitlab_backup.tar".into(),
                    size: 10,
                    sha256: "aa".into(),
                },
                Member {
                    name: "etc-gitlab/gitlab-secrets.json".into(),
                    size: 2,
                    sha256: "bb".into(),
                },
            ],
        }
    }

    #[test]
    fn manifest_verification() {
        let m = manifest();
        let found = m.members.clone();
        assert_eq!(verify_manifest(&m, &found), Ok(()));
        let mut changed = found.clone();
        changed[1].sha256 = "cc".into();
        assert!(
            verify_manifest(&m, &changed)
                .unwrap_err()
                .contains("does not match")
        );
        assert!(
            verify_manifest(&m, &found[..1])
                .unwrap_err()
                .contains("missing")
        );
        let mut extra = found.clone();
        extra.push(Member {
            name: "autogit/state.db".into(),
            size: 1,
            sha256: "dd".into(),
        });
        assert!(
            verify_manifest(&m, &extra)
                .unwrap_err()
                .contains("not listed")
        );
        let mut other = m.clone();
        other.gitlab_version = "18.6.0".into();
        assert!(
            verify_manifest(&other, &found)
                .unwrap_err()
                .contains("does not agree")
        );
        let mut future = m.clone();
        future.format = 2;
        assert!(
            verify_manifest(&future, &found)
                .unwrap_err()
                .contains("format 2")
        );
    }

    #[test]
    fn declared_members_are_checked_before_extraction() {
        let m = manifest();
        let gl = m.members[0].name.clone();
        let secrets = m.members[1].name.clone();
        let decl = |v: &[(&str, u64)]| -> Vec<(String, u64)> {
            v.iter().map(|(n, s)| ((*n).to_owned(), *s)).collect()
        };
        let ten_gib = 10 << 30;
        type Case<'a> = (&'a str, Vec<(String, u64)>, Result<u64, &'a str>);
        let cases: &[Case] = &[
            (
                "as listed",
                decl(&[(&gl, 10), (&secrets, 2), (MANIFEST, 900)]),
                Ok(12),
            ),
            (
                "header larger than the manifest",
                decl(&[(&gl, ten_gib), (&secrets, 2)]),
                Err("is 10737418240 bytes in the archive but 10 in the manifest"),
            ),
            ("missing", decl(&[(&gl, 10)]), Err("missing")),
            (
                "extra",
                decl(&[(&gl, 10), (&secrets, 2), ("autogit/state.db", 1)]),
                Err("not listed"),
            ),
        ];
        for (what, declared, want) in cases {
            match (check_declared(&m, declared), want) {
                (Ok(total), Ok(t)) => assert_eq!(total, *t, "{what}"),
                (Err(e), Err(w)) => assert!(e.contains(w), "{what}: {e}"),
                (got, _) => panic!("{what}: {got:?}"),
            }
        }
        // A manifest that declares huge sizes itself is consistent; the caller bounds the total
        // by free space. Sizes that overflow are refused here.
        let mut huge = m.clone();
        huge.members[0].size = ten_gib;
        assert_eq!(
            check_declared(&huge, &decl(&[(&gl, ten_gib), (&secrets, 2)])),
            Ok(ten_gib + 2)
        );
        huge.members[0].size = u64::MAX;
        huge.members[1].size = u64::MAX;
        assert!(
            check_declared(&huge, &decl(&[(&gl, u64::MAX), (&secrets, u64::MAX)]))
                .unwrap_err()
                .contains("overflow")
        );
        let mut other = m.clone();
        other.gitlab_backup_id = "2_2025_12_01_18.5.4".into();
        assert!(
            check_declared(&other, &decl(&[(&gl, 10), (&secrets, 2)]))
                .unwrap_err()
                .contains("does not agree")
        );
    }

    #[test]
    fn versions_must_match() {
        assert!(check_version("18.5.4", "18.5.4\n").is_ok());
        assert!(check_version("18.5.4", "18.5.4-ee").is_ok());
        let e = check_version("18.5.4", "18.6.0").unwrap_err();
        assert!(e.contains("gitlab.version=18.5.4"), "{e}");
    }

    /// The scratch GitLab of a restore test: same image, configuration and health check;
    /// its own name, volumes and project label; no port, no network.
    #[test]
    fn restore_test_spec_is_isolated_from_the_platform() {
        use crate::container::{ContainerSpec, MountSpec, PortBinding, labels};
        let running = ContainerSpec {
            name: "autogit-gitlab".into(),
            service: "gitlab".into(),
            image: "gitlab/gitlab-ce:18.5.4-ce.0".into(),
            command: vec![],
            env: [(
                "GITLAB_OMNIBUS_CONFIG".to_owned(),
                "external_url 'x'".to_owned(),
            )]
            .into(),
            secret_keys: vec![],
            ports: vec![PortBinding {
                host_ip: None,
                host_port: 8080,
                container_port: 80,
                udp: false,
            }],
            mounts: vec![MountSpec::Volume {
                name: "autogit_gitlab-data".into(),
                target: "/var/opt/gitlab".into(),
            }],
            nano_cpus: 1,
            memory_bytes: 1,
            shm_size_bytes: None,
            network: "autogit_platform".into(),
            aliases: vec!["gitlab".into()],
            hostname: Some("gitlab.example.com".into()),
            healthcheck: None,
            labels: [
                (labels::MANAGED.to_owned(), "autogit".to_owned()),
                (labels::COMPOSE_PROJECT.to_owned(), "autogit".to_owned()),
                (labels::SERVICE.to_owned(), "gitlab".to_owned()),
                (labels::SPEC_HASH.to_owned(), "abc".to_owned()),
            ]
            .into(),
            restart_policy: "no".into(),
        };
        let s = restore_test_spec(&running, "autogit");
        assert_eq!(s.name, "autogit-restore-test");
        assert_eq!(s.image, running.image);
        assert_eq!(s.env, running.env);
        assert!(s.ports.is_empty() && s.aliases.is_empty());
        assert_eq!(s.network, "none");
        assert_eq!(
            s.mounts,
            [MountSpec::Volume {
                name: "autogit_restore-test-gitlab-data".into(),
                target: "/var/opt/gitlab".into(),
            }]
        );
        assert_eq!(s.labels[labels::MANAGED], "autogit-restore-test");
        assert_eq!(s.labels[labels::COMPOSE_PROJECT], "autogit-restore-test");
        assert!(!s.labels.contains_key(labels::SPEC_HASH));
    }
}
