//! GitLab upgrades, as data: versions, GitLab's documented required upgrade stops, the path
//! from one version to another, and the one-line edit of `gitlab.version` in `autogit.yml`
//! that keeps the user's comments and layout.
//!
//! GitLab refuses (or breaks) when an upgrade jumps over a required stop: each stop's
//! migrations must run, and its background migrations finish, before the next version starts.
//! The table below follows <https://docs.gitlab.com/update/upgrade_paths/>. Conditional stops
//! (needed only for some instances) are included: stopping at an extra version costs time,
//! skipping a needed one costs data. For `x.y.z` stops GitLab asks for the latest patch of
//! `x.y`; the patch here is the latest known when the table was last updated. `--via` on the
//! command line replaces it with a newer one.

use std::fmt;

/// A GitLab version `major.minor.patch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Version {
        Version {
            major,
            minor,
            patch,
        }
    }

    /// Parses `18.5.4`, also `18.5.4-ce.0` and `v18.5.4`.
    pub fn parse(s: &str) -> Option<Version> {
        let s = s.trim().trim_start_matches('v');
        let core = s.split(['-', '+']).next()?;
        let mut it = core.split('.');
        let v = Version {
            major: it.next()?.parse().ok()?,
            minor: it.next()?.parse().ok()?,
            patch: it.next()?.parse().ok()?,
        };
        it.next().is_none().then_some(v)
    }

    fn minor_line(self) -> (u32, u32) {
        (self.major, self.minor)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// One required upgrade stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stop {
    pub version: Version,
    /// When only some instances need it (GitLab's wording, shortened).
    pub condition: Option<&'static str>,
}

const fn stop(major: u32, minor: u32, patch: u32) -> Stop {
    Stop {
        version: Version::new(major, minor, patch),
        condition: None,
    }
}

const fn when(major: u32, minor: u32, patch: u32, condition: &'static str) -> Stop {
    Stop {
        version: Version::new(major, minor, patch),
        condition: Some(condition),
    }
}

/// GitLab's required upgrade stops (GitLab 15 to 18), oldest first. From GitLab 17.5 on,
/// stops are scheduled at x.2, x.5, x.8 and x.11.
pub const STOPS: &[Stop] = &[
    stop(15, 0, 5),
    when(15, 1, 6, "instances with multiple web nodes"),
    stop(15, 4, 6),
    stop(15, 11, 13),
    when(
        16,
        0,
        10,
        "instances with lots of users or a large pipeline variables history",
    ),
    when(
        16,
        1,
        8,
        "instances with npm packages in their package registry",
    ),
    when(
        16,
        2,
        11,
        "instances with a large pipeline variables history",
    ),
    stop(16, 3, 9),
    stop(16, 7, 10),
    stop(16, 11, 10),
    when(
        17,
        1,
        8,
        "instances with a large ci_pipeline_messages table",
    ),
    stop(17, 3, 7),
    stop(17, 5, 5),
    stop(17, 8, 7),
    stop(17, 11, 7),
    stop(18, 2, 8),
    stop(18, 5, 4),
];

/// The oldest version whose upgrades autogit plans (older ones need GitLab's own guidance).
pub const OLDEST: Version = Version::new(15, 0, 0);

/// One step of an upgrade path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub version: Version,
    /// Why autogit stops here: a required stop (with its condition), or the target.
    pub reason: String,
}

/// The versions to go through from `from` to `to`: every required stop strictly between
/// their minor lines, then `to`. `via` replaces a stop's patch (same major.minor).
pub fn upgrade_path(
    from: Version,
    to: Version,
    stops: &[Stop],
    via: &[Version],
) -> Result<Vec<Step>, String> {
    if to == from {
        return Err(format!("GitLab is already at {to}"));
    }
    if to < from {
        return Err(format!(
            "{to} is older than the running {from}: GitLab cannot be downgraded; restore a backup taken on {to} instead"
        ));
    }
    if from < OLDEST {
        return Err(format!(
            "upgrades from {from} (before {OLDEST}) are not planned by autogit: follow https://docs.gitlab.com/update/upgrade_paths/ to reach 15.0 first"
        ));
    }
    // Stops GitLab schedules (x.2, x.5, x.8, x.11) after the last one in the table: they exist
    // even though this table has no patch version for them yet.
    let last_known = stops.last().map_or((0, 0), |s| s.version.minor_line());
    let scheduled: Vec<(u32, u32)> = (last_known.0..=to.major)
        .flat_map(|major| [2, 5, 8, 11].map(|minor| (major, minor)))
        .filter(|line| *line > last_known && *line < to.minor_line())
        .collect();
    for v in via {
        let line = v.minor_line();
        if !stops.iter().any(|s| s.version.minor_line() == line) && !scheduled.contains(&line) {
            return Err(format!(
                "--via {v}: {}.{} is not a required stop",
                v.major, v.minor
            ));
        }
    }
    let mut steps = Vec::new();
    for s in stops {
        let line = s.version.minor_line();
        if line <= from.minor_line() || line >= to.minor_line() {
            continue;
        }
        let version = via
            .iter()
            .find(|v| v.minor_line() == line)
            .copied()
            .unwrap_or(s.version);
        steps.push(Step {
            version,
            reason: match s.condition {
                Some(c) => format!("required stop ({c}; included to be safe)"),
                None => "required stop".to_owned(),
            },
        });
    }
    for line in scheduled.into_iter().filter(|l| *l > from.minor_line()) {
        match via.iter().find(|v| v.minor_line() == line) {
            Some(v) => steps.push(Step {
                version: *v,
                reason: "required stop (scheduled)".to_owned(),
            }),
            None => {
                return Err(format!(
                    "GitLab {}.{} is a scheduled required stop that autogit has no patch version for: pass --via {}.{}.<latest patch> (https://docs.gitlab.com/update/upgrade_paths/)",
                    line.0, line.1, line.0, line.1
                ));
            }
        }
    }
    steps.push(Step {
        version: to,
        reason: "target".to_owned(),
    });
    Ok(steps)
}

/// Sets `gitlab.version` in the text of an `autogit.yml`, changing only that value and
/// keeping comments, order and layout. Handles `version:` under a block `gitlab:` mapping
/// (replaced in place, or added as the mapping's first key) and a missing `gitlab:` (appended).
/// Flow mappings (`gitlab: {…}`) are refused with a message: they cannot be edited in place
/// safely.
pub fn set_gitlab_version(text: &str, version: &str) -> Result<String, String> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let top_key = |l: &str, key: &str| {
        l.strip_prefix(key)
            .is_some_and(|r| r.starts_with(':') && !l.starts_with([' ', '\t']))
    };
    let Some(g) = lines.iter().position(|l| top_key(l, "gitlab")) else {
        let mut out = text.to_owned();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!("gitlab:\n  version: \"{version}\"\n"));
        return Ok(out);
    };
    let after = lines[g]["gitlab:".len()..].trim();
    if !(after.is_empty() || after.starts_with('#')) {
        return Err(
            "`gitlab:` is written as a flow mapping on one line; write `version:` on its own line under `gitlab:` (or change gitlab.version by hand)"
                .to_owned(),
        );
    }
    // The block: following lines that are indented, blank or comments.
    let mut end = g + 1;
    let mut indent: Option<usize> = None;
    while end < lines.len() {
        let l = lines[end];
        let t = l.trim_start_matches([' ', '\t']);
        if t.trim().is_empty() || t.starts_with('#') {
            end += 1;
            continue;
        }
        let ind = l.len() - t.len();
        if ind == 0 {
            break;
        }
        indent.get_or_insert(ind);
        end += 1;
    }
    let ind = indent.unwrap_or(2);
    for (i, l) in lines.iter().enumerate().take(end).skip(g + 1) {
        let t = l.trim_start_matches([' ', '\t']);
        if l.len() - t.len() != ind {
            continue;
        }
        if let Some(rest) = t.strip_prefix("version:") {
            let comment = rest
                .find(" #")
                .map(|p| {
                    rest[rest[..p].trim_end().len()..]
                        .trim_end_matches(['\n', '\r'])
                        .to_owned()
                })
                .unwrap_or_default();
            let nl = if l.ends_with("\r\n") {
                "\r\n"
            } else if l.ends_with('\n') {
                "\n"
            } else {
                ""
            };
            let mut out: String = lines[..i].concat();
            out.push_str(&format!(
                "{}version: \"{version}\"{comment}{nl}",
                " ".repeat(ind)
            ));
            out.push_str(&lines[i + 1..].concat());
            return Ok(out);
        }
    }
    let mut out: String = lines[..=g].concat();
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&format!("{}version: \"{version}\"\n", " ".repeat(ind)));
    out.push_str(&lines[g + 1..].concat());
    Ok(out)
}

/// The Ruby `gitlab-rails runner` evaluates to count pending and failed background
/// migrations (GitLab's documented checks, in one call: each call boots Rails).
pub const MIGRATIONS_SCRIPT: &str = "q = Gitlab::Database::BackgroundMigration::BatchedMigration; \
failed = q.respond_to?(:with_status) ? q.with_status(:failed).count : 0; \
legacy = (defined?(Gitlab::BackgroundMigration) && Gitlab::BackgroundMigration.respond_to?(:remaining)) ? Gitlab::BackgroundMigration.remaining : 0; \
puts \"autogit-pending=#{q.queued.count + legacy} failed=#{failed}\"";

/// Parses the script's answer: (pending, failed).
pub fn parse_migrations(output: &str) -> Option<(u64, u64)> {
    output.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("autogit-pending=")?;
        let (p, f) = rest.split_once(" failed=")?;
        Some((p.trim().parse().ok()?, f.trim().parse().ok()?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn path(from: &str, to: &str, via: &[&str]) -> String {
        let via: Vec<Version> = via.iter().map(|s| v(s)).collect();
        match upgrade_path(v(from), v(to), STOPS, &via) {
            Ok(steps) => steps
                .iter()
                .map(|s| s.version.to_string())
                .collect::<Vec<_>>()
                .join(" > "),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn versions() {
        assert_eq!(v("18.5.4-ce.0"), Version::new(18, 5, 4));
        assert_eq!(v("v17.11.7"), Version::new(17, 11, 7));
        assert!(Version::parse("18.5").is_none());
        assert!(Version::parse("18.5.4.1").is_none());
        assert!(Version::parse("latest").is_none());
        assert!(v("17.11.7") < v("18.0.0") && v("17.3.7") < v("17.11.0"));
    }

    #[test]
    fn stops_are_sorted_and_unique_per_minor() {
        for w in STOPS.windows(2) {
            assert!(
                w[0].version.minor_line() < w[1].version.minor_line(),
                "{w:?}"
            );
        }
    }

    #[test]
    fn paths() {
        let cases = [
            ("18.2.8", "18.5.4", &[][..], "18.5.4"),
            ("18.5.1", "18.5.4", &[], "18.5.4"),
            (
                "17.2.0",
                "18.5.4",
                &[],
                "17.3.7 > 17.5.5 > 17.8.7 > 17.11.7 > 18.2.8 > 18.5.4",
            ),
            ("17.3.2", "17.9.0", &[], "17.5.5 > 17.8.7 > 17.9.0"),
            ("16.6.0", "17.0.1", &[], "16.7.10 > 16.11.10 > 17.0.1"),
            (
                "15.4.6",
                "16.3.9",
                &[],
                "15.11.13 > 16.0.10 > 16.1.8 > 16.2.11 > 16.3.9",
            ),
            (
                "17.4.1",
                "18.0.0",
                &["17.11.9"],
                "17.5.5 > 17.8.7 > 17.11.9 > 18.0.0",
            ),
            (
                "18.5.4",
                "18.5.4",
                &[],
                "error: GitLab is already at 18.5.4",
            ),
            (
                "18.5.4",
                "18.2.8",
                &[],
                "error: 18.2.8 is older than the running 18.5.4: GitLab cannot be downgraded; restore a backup taken on 18.2.8 instead",
            ),
            (
                "14.10.5",
                "15.4.6",
                &[],
                "error: upgrades from 14.10.5 (before 15.0.0) are not planned by autogit: follow https://docs.gitlab.com/update/upgrade_paths/ to reach 15.0 first",
            ),
            ("18.5.4", "18.8.2", &[], "18.8.2"),
            (
                "18.5.4",
                "19.0.0",
                &[],
                "error: GitLab 18.8 is a scheduled required stop that autogit has no patch version for: pass --via 18.8.<latest patch> (https://docs.gitlab.com/update/upgrade_paths/)",
            ),
            (
                "18.5.4",
                "19.0.0",
                &["18.8.3", "18.11.1"],
                "18.8.3 > 18.11.1 > 19.0.0",
            ),
            (
                "17.4.1",
                "18.0.0",
                &["17.10.1"],
                "error: --via 17.10.1: 17.10 is not a required stop",
            ),
        ];
        for (from, to, via, want) in cases {
            assert_eq!(path(from, to, via), want, "{from} -> {to}");
        }
        let steps = upgrade_path(v("16.5.0"), v("17.2.0"), STOPS, &[]).unwrap();
        assert!(steps[0].reason.starts_with("required stop"));
        assert!(
            steps[2].reason.contains("ci_pipeline_messages"),
            "{steps:?}"
        );
        assert_eq!(steps.last().unwrap().reason, "target");
    }

    #[test]
    fn version_edit_keeps_everything_else() {
        let cases = [
            (
                "# mine\ngitlab:\n  hostname: git.example.com  # host\n  version: \"18.2.8\"  # pinned\n  ports: {http: 8080}\nbackup: {retention: 3}\n",
                "# mine\ngitlab:\n  hostname: git.example.com  # host\n  version: \"18.5.4\"  # pinned\n  ports: {http: 8080}\nbackup: {retention: 3}\n",
            ),
            (
                "gitlab:\n    version: 18.2.8\n",
                "gitlab:\n    version: \"18.5.4\"\n",
            ),
            (
                "gitlab:\n  hostname: h\n  resources:\n    version: not-this-one\n",
                "gitlab:\n  version: \"18.5.4\"\n  hostname: h\n  resources:\n    version: not-this-one\n",
            ),
            (
                "runners: {}\n",
                "runners: {}\ngitlab:\n  version: \"18.5.4\"\n",
            ),
            ("", "gitlab:\n  version: \"18.5.4\"\n"),
            (
                "gitlab: # ours\n  version: '18.2.8'\r\nx: 1\n",
                "gitlab: # ours\n  version: \"18.5.4\"\r\nx: 1\n",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                set_gitlab_version(input, "18.5.4").unwrap(),
                want,
                "{input:?}"
            );
        }
        assert!(
            set_gitlab_version("gitlab: {version: 18.2.8}\n", "18.5.4")
                .unwrap_err()
                .contains("flow mapping")
        );
    }

    #[test]
    fn migration_answers() {
        assert_eq!(
            parse_migrations("noise\nautogit-pending=3 failed=0\n"),
            Some((3, 0))
        );
        assert_eq!(parse_migrations("autogit-pending=0 failed=2"), Some((0, 2)));
        assert_eq!(parse_migrations("autogit-pending=x failed=0"), None);
        assert_eq!(parse_migrations(""), None);
        assert!(!MIGRATIONS_SCRIPT.contains('\n'));
    }
}
