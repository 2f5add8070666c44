//! Checks on single values (hostnames, URLs, env var names) and across fields.

use crate::config::Config;
use crate::decode::Cx;
use crate::diag::Diagnostic;
use crate::source::Loc;
use crate::yaml::Node;
use std::collections::HashMap;

/// RFC 1123 hostname: dot-separated labels of letters, digits and `-`, at most 253 characters.
pub fn check_hostname(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 253 {
        return Err("a hostname has 1 to 253 characters".to_owned());
    }
    for label in s.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("label `{label}` must have 1 to 63 characters"));
        }
        if let Some(bad) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(format!(
                "`{bad}` is not allowed in a hostname (letters, digits and `-` only)"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label `{label}` may not start or end with `-`"));
        }
    }
    Ok(())
}

/// The host part of an http(s) URL.
pub fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit('@').next()?;
    if let Some(v6) = host.strip_prefix('[') {
        return v6.split(']').next();
    }
    Some(host.split(':').next().unwrap_or(host))
}

/// The explicit port of a URL, if it names one.
pub fn url_port(url: &str) -> Option<u16> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit(']').next()?;
    host_port.rsplit_once(':')?.1.parse().ok()
}

pub fn check_url(s: &str, schemes: &[&str]) -> Result<(), String> {
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err(format!("a URL starts with {}://", schemes.join(":// or ")));
    };
    if !schemes.contains(&scheme.to_ascii_lowercase().as_str()) {
        return Err(format!(
            "scheme `{scheme}` is not allowed here; use {}",
            schemes.join(" or ")
        ));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("a URL may not contain spaces or control characters".to_owned());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(
            "credentials in URLs end up in logs and process listings; use `token_env`".to_owned(),
        );
    }
    let host = url_host(s).unwrap_or("");
    if host.parse::<std::net::IpAddr>().is_err() {
        check_hostname(host)?;
    }
    if authority
        .rsplit(']')
        .next()
        .and_then(|hp| hp.rsplit_once(':'))
        .is_some()
        && url_port(s).is_none_or(|p| p == 0)
    {
        return Err("the port must be a number from 1 to 65535".to_owned());
    }
    Ok(())
}

/// Source URLs for mirroring: https, ssh, git schemes or scp-like `user@host:path`. Local paths,
/// `file://`, `ext::`, `fd::` and option injection (`-u…`, `--upload-pack=…`) are refused.
pub fn check_git_url(s: &str) -> Result<(), String> {
    if s.starts_with('-') {
        return Err("a URL may not start with `-` (it would be read as a git option)".to_owned());
    }
    let lower = s.to_ascii_lowercase();
    for bad in ["ext::", "fd::", "file:"] {
        if lower.starts_with(bad) {
            return Err(format!(
                "`{bad}` URLs are refused: they run commands or read local files"
            ));
        }
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("a URL may not contain spaces or control characters".to_owned());
    }
    if lower.contains("upload-pack") || lower.contains("receive-pack") {
        return Err("option injection (`--upload-pack`) is refused".to_owned());
    }
    if let Some((scheme, _)) = s.split_once("://") {
        return match scheme.to_ascii_lowercase().as_str() {
            "https" | "http" | "git" => check_url(s, &["https", "http", "git"]),
            "ssh" | "git+ssh" => Ok(()),
            other => Err(format!(
                "scheme `{other}` is not allowed; use https, ssh or git"
            )),
        };
    }
    // scp-like: user@host:path
    match s.split_once(':') {
        Some((userhost, path)) if !path.is_empty() && !userhost.contains('/') => {
            let host = userhost.rsplit('@').next().unwrap_or(userhost);
            check_hostname(host)
        }
        _ => Err("local paths are refused; give an https://, ssh:// or git:// URL".to_owned()),
    }
}

/// A login name for ssh (`runners[].user`, the `user@` of a host): a letter or `_`, then
/// letters, digits, `_`, `.`, `-`; at most 32 characters (POSIX portable user names, as
/// `useradd` accepts them). Nothing ssh could read as an option (`-oProxyCommand=…`).
pub fn check_unix_user(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 32
        && s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err("a user name starts with a letter or `_` and has letters, digits, `_`, `.` and `-` only (at most 32)".to_owned())
    }
}

/// A GitLab username (`compute.quotas[].user`): letters, digits, `_`, `.`, `-`, starting with
/// a letter, digit or `_`, not ending with `.`; at most 255 characters.
pub fn check_gitlab_username(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 255
        && s.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && !s.ends_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err("a GitLab username has letters, digits, `_`, `.` and `-`, starts with a letter, digit or `_` and does not end with `.`".to_owned())
    }
}

/// A runner tag: a letter, digit or `_`, then letters, digits and `_ . - : / +`; at most 64
/// characters. No spaces or commas (GitLab's tag list separators), nothing option-like.
pub fn check_runner_tag(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b':' | b'/' | b'+')
        });
    if ok {
        Ok(())
    } else {
        Err("a tag starts with a letter, digit or `_` and has letters, digits and `_ . - : / +` only (no spaces or commas; at most 64)".to_owned())
    }
}

/// Names of environment variables that hold secrets: upper case, digits, underscores. A value
/// that looks like a token itself is refused: secrets never go into the YAML.
pub fn check_env_name(s: &str) -> Result<(), String> {
    for prefix in [
        "ghp_",
        "gho_",
        "ghs_",
        "github_pat_",
        "glpat-",
        "glrt-",
        "xox",
        "sk-",
    ] {
        if s.starts_with(prefix) {
            return Err("this looks like a token itself; put the token in an environment variable (or the .env file) and write that variable's NAME here".to_owned());
        }
    }
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err("names use A-Z, 0-9 and `_` and do not start with a digit".to_owned())
    }
}

pub(crate) fn loc_at(root: Option<&Node>, path: &[&str]) -> Option<Loc> {
    let mut n = root?;
    for p in path {
        n = n.get(p)?;
    }
    Some(n.loc)
}

/// Where `runners.gpu[i]` is written: its `sharing` key, else the entry.
fn gpu_runner_loc(root: Option<&Node>, i: usize) -> Option<Loc> {
    let list = root?.get("runners")?.get("gpu")?;
    let crate::yaml::Value::Seq(items) = &list.value else {
        return Some(list.loc);
    };
    let item = items.get(i)?;
    Some(item.get("sharing").map_or(item.loc, |n| n.loc))
}

/// Every `runners.isolation` setting that gives a job (or a compromised runner) root on its
/// host is a warning that names the field and says how to keep it knowingly. Only when
/// runners are configured: without one, nothing runs a job.
fn isolation_warnings(cx: &mut Cx, root: Option<&Node>, c: &Config) {
    use crate::config::{EngineAccess, Executor, JobNetwork};
    let containers = c
        .runners
        .cpu
        .iter()
        .chain(&c.runners.gpu)
        .any(|r| r.executor != Executor::Shell);
    if !containers {
        return;
    }
    let iso = &c.runners.isolation;
    let mut found: Vec<(&str, &str, String)> = Vec::new();
    if iso.privileged {
        found.push((
            "privileged",
            "true",
            "a privileged job container is root on the runner's host (devices, kernel modules, mounts)".into(),
        ));
    }
    if iso.job_engine_socket {
        found.push((
            "job_engine_socket",
            "true",
            "a job with the engine's socket can start a privileged container: root on the runner's host".into(),
        ));
    }
    if iso.network == JobNetwork::Host {
        found.push((
            "network",
            "host",
            "jobs on the host's network reach every port of the host, loopback-only services and the platform's included".into(),
        ));
    }
    if iso.engine == EngineAccess::Socket {
        found.push((
            "engine",
            "socket",
            "the runner's container holds the engine's own socket: a compromised runner is root on its host".into(),
        ));
    }
    for (key, value, why) in found {
        let path = format!("runners.isolation.{key}");
        cx.diags.push(
            Diagnostic::warning(
                "runner-root-on-host",
                format!("`{path}: {value}`: {why}"),
            )
            .at(loc_at(root, &["runners", "isolation", key]))
            .path(path)
            .help(format!(
                "remove `{key}` to keep the default; to run with it knowingly, put those runners on a host that holds nothing else (docs/runners.md, Isolation)"
            )),
        );
    }
}

pub(crate) fn cross_check(cx: &mut Cx, root: Option<&Node>, c: &Config) {
    // GitLab's own published ports must differ.
    let ports = [
        ("http", c.gitlab.ports.http),
        ("https", c.gitlab.ports.https),
        ("ssh", c.gitlab.ports.ssh),
    ];
    for (i, (a, pa)) in ports.iter().enumerate() {
        for (b, pb) in &ports[i + 1..] {
            if pa == pb {
                let loc =
                    loc_at(root, &["gitlab", "ports", b]).or(loc_at(root, &["gitlab", "ports"]));
                let mut d = Diagnostic::error(
                    "port-collision",
                    format!("port {pb} is used by both `gitlab.ports.{a}` and `gitlab.ports.{b}`"),
                )
                .path(format!("gitlab.ports.{b}"))
                .expected("a different port for each");
                if let Some(other) = loc_at(root, &["gitlab", "ports", a]) {
                    d = d.related(other, format!("`gitlab.ports.{a}` is {pa}"));
                }
                cx.diags.push(d.at(loc));
            }
        }
    }
    // external_url and hostname should agree.
    if let Some(h) = url_host(&c.gitlab.external_url)
        && !h.eq_ignore_ascii_case(&c.gitlab.hostname)
    {
        cx.diags.push(
            Diagnostic::warning(
                "hostname-mismatch",
                format!(
                    "`gitlab.external_url` names host `{h}` but `gitlab.hostname` is `{}`",
                    c.gitlab.hostname
                ),
            )
            .at(loc_at(root, &["gitlab", "external_url"]))
            .path("gitlab.external_url")
            .help("GitLab builds clone URLs and links from external_url; keep both the same"),
        );
    }
    isolation_warnings(cx, root, c);
    // One GPU sharing mode per host: the scheduler places jobs per host, not per runner.
    let mut sharing: HashMap<&str, (crate::config::GpuSharing, usize)> = HashMap::new();
    for (i, r) in c.runners.gpu.iter().enumerate() {
        if r.host == "auto" {
            continue;
        }
        match sharing.get(r.host.as_str()) {
            Some(&(first, at)) if first != r.sharing => {
                let name = |m: crate::config::GpuSharing| match m {
                    crate::config::GpuSharing::TimeSliced => "time-sliced",
                    crate::config::GpuSharing::Exclusive => "exclusive",
                    crate::config::GpuSharing::Mig => "mig",
                };
                cx.diags.push(
                    Diagnostic::error(
                        "gpu-sharing",
                        format!(
                            "runners on host `{}` declare different GPU sharing: `{}` (runners.gpu[{at}]) and `{}`",
                            r.host,
                            name(first),
                            name(r.sharing)
                        ),
                    )
                    .at(gpu_runner_loc(root, i))
                    .path(format!("runners.gpu[{i}].sharing"))
                    .help("a host's GPUs are shared one way: give every runner on it the same `sharing`"),
                );
            }
            Some(_) => {}
            None => {
                sharing.insert(&r.host, (r.sharing, i));
            }
        }
    }
    // Runner names are unique across cpu and gpu.
    let mut seen: HashMap<&str, String> = HashMap::new();
    for (list, runners) in [("cpu", &c.runners.cpu), ("gpu", &c.runners.gpu)] {
        for (i, r) in runners.iter().enumerate() {
            if r.name.is_empty() {
                continue;
            }
            let path = format!("runners.{list}[{i}].name");
            if let Some(first) = seen.get(r.name.as_str()) {
                let loc = root
                    .and_then(|n| n.get("runners"))
                    .and_then(|n| n.get(list))
                    .and_then(|n| match &n.value {
                        crate::yaml::Value::Seq(items) => items.get(i),
                        _ => None,
                    })
                    .and_then(|n| n.get("name"))
                    .map(|n| n.loc);
                cx.diags.push(
                    Diagnostic::error(
                        "duplicate-runner",
                        format!("runner name `{}` is used twice", r.name),
                    )
                    .at(loc)
                    .path(path)
                    .help(format!(
                        "already used at `{first}`; runner names must be unique"
                    )),
                );
            } else {
                seen.insert(&r.name, path);
            }
            if r.wsl2 && r.executor == crate::config::Executor::Shell {
                cx.diags.push(
                    Diagnostic::error(
                        "wsl2-executor",
                        format!(
                            "runner `{}`: WSL2 GPU access needs the docker or podman executor",
                            r.name
                        ),
                    )
                    .path(format!("runners.{list}[{i}].executor"))
                    .at(loc_at(root, &["runners"])),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_urls() {
        for ok in [
            "https://github.com/a/b.git",
            "ssh://git@host/a.git",
            "git@github.com:a/b.git",
            "git://host/x",
        ] {
            assert!(check_git_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "file:///etc",
            "ext::sh -c id",
            "fd::3",
            "-uevil",
            "--upload-pack=touch /tmp/x",
            "/srv/repo",
            "https://user:pw@host/x",
            "ftp://h/x",
        ] {
            assert!(check_git_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_and_hosts() {
        assert_eq!(url_host("https://[::1]:8443/x"), Some("::1"));
        assert_eq!(url_port("http://h:8080/"), Some(8080));
        assert_eq!(url_port("http://h/"), None);
        assert!(check_url("http://gitlab.example.com", &["http", "https"]).is_ok());
        assert!(check_url("http://git lab", &["http"]).is_err());
        assert!(check_url("http://h:0", &["http"]).is_err());
        assert!(check_hostname("192.168.1.X").is_ok()); // a valid DNS name, if odd
        assert!(check_hostname("a_b.example").is_err());
        assert!(check_env_name("GITHUB_PAT_MIRROR").is_ok());
        assert!(check_env_name("ghp_abcdef").is_err());
        assert!(check_env_name("github_pat").is_err());
    }

    #[test]
    fn users_and_tags() {
        for ok in ["ci", "_svc", "Ann.B-1", "gitlab-runner"] {
            assert!(check_unix_user(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-oProxyCommand=touch /tmp/x",
            "-l",
            "1abc",
            "a b",
            "a@b",
            "a;b",
            "$(id)",
            "a\nb",
            &"x".repeat(33),
        ] {
            assert!(check_unix_user(bad).is_err(), "{bad}");
        }
        for ok in ["ann", "1bob", "_x", "a.b-c"] {
            assert!(check_gitlab_username(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-ann", "ann.", "a b", "a/b", "--user=x"] {
            assert!(check_gitlab_username(bad).is_err(), "{bad}");
        }
        for ok in ["gpu", "cuda-12.4", "linux/amd64", "_x", "a:b+c"] {
            assert!(check_runner_tag(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-oProxyCommand=x",
            "a b",
            "a,b",
            "--locked",
            "$(id)",
            "a'b",
        ] {
            assert!(check_runner_tag(bad).is_err(), "{bad}");
        }
    }
}
