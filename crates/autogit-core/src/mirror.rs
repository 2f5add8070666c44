//! Mirroring decisions, pure: which source URLs are acceptable (and which hosts are private),
//! which repositories a filter selects, where a source lands in the local GitLab, and whether a
//! mirror needs a sync at all, from the `git ls-remote` output of both sides.
//!
//! The git driver (`autogit_drivers::mirror`) runs git; everything it decides comes from here.

use crate::netaddr;
use crate::validate::{check_git_url, check_hostname};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// The transport of an accepted source URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Https,
    /// Plain http: refused by [`check_source`] (configuration); the driver still pins it.
    Http,
    Ssh,
    Git,
}

/// A source URL that passed [`check_source`]: its transport, host and port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceUrl {
    pub transport: Transport,
    /// As written (without brackets for IPv6).
    pub host: String,
    /// The explicit port, if the URL names one.
    pub port: Option<u16>,
    /// The address when the host is an IP literal in any spelling (`0x7f000001` too).
    pub ip: Option<IpAddr>,
}

impl SourceUrl {
    /// The port git connects to: the explicit one or the transport's default.
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or(match self.transport {
            Transport::Https => 443,
            Transport::Http => 80,
            Transport::Ssh => 22,
            Transport::Git => 9418,
        })
    }
}

const VALID: &str = "valid sources are https://host/path, ssh://[user@]host/path, user@host:path (scp-like) and git://host/path";

/// Whether a URL carries a password or token: userinfo with a `:` (`ssh://git:pw@h/r`,
/// `https://u:tok@h/r`, scp-like `git:pw@h:r`), or any userinfo in an http(s) URL.
pub fn has_credentials(url: &str) -> bool {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
            match authority.rsplit_once('@') {
                Some((userinfo, _)) => {
                    userinfo.contains(':') || scheme.to_ascii_lowercase().starts_with("http")
                }
                None => false,
            }
        }
        None => {
            // scp-like `[user@]host:path`: git takes the host up to the first `:`, so
            // `git:pw@host:path` is host `git` with the password in the path; refuse any `@`
            // that follows a `:` in the part before the first `/`.
            let head = url.split('/').next().unwrap_or("");
            head.split_once(':')
                .is_some_and(|(_, after)| after.contains('@'))
        }
    }
}

/// Accepts https, ssh (also scp-like `git@host:path`) and git URLs; refuses `file://`, `ext::`,
/// `fd::`, local paths, plain `http://`, option injection (`-…`, `--upload-pack=…`) and
/// credentials in the URL (the message shows the URL redacted). With `allow_private: false`, a
/// host that is `localhost` or an IP literal in any spelling (`127.1`, `0x7f000001`, `::ffff:…`)
/// of a non-public address ([`crate::netaddr`]) is refused too (SSRF). Names are resolved and
/// every address checked at sync time, by the driver.
pub fn check_source(url: &str, allow_private: bool) -> Result<SourceUrl, String> {
    let src = parse_source(url)?;
    if src.transport == Transport::Http {
        return Err(format!(
            "scheme `http` is not accepted for a source (unencrypted http is refused); {VALID}"
        ));
    }
    check_host_literal(&src, allow_private)?;
    Ok(src)
}

/// Refuses a source whose host is `localhost` or a non-public IP literal, unless
/// `allow_private`.
pub fn check_host_literal(src: &SourceUrl, allow_private: bool) -> Result<(), String> {
    if !allow_private && let Some(class) = netaddr::host_class(&src.host) {
        let canonical = match src.ip {
            Some(a) if a.to_string() != src.host => format!(" ({a})"),
            _ => String::new(),
        };
        return Err(format!(
            "host `{}`{canonical} is {} address; sources on private networks are refused unless `mirroring.allow_private: true`",
            src.host,
            class.with_article()
        ));
    }
    Ok(())
}

/// The structure of a source URL without the policy of [`check_source`]: credentials, option
/// and transport injection are refused; `http` is accepted (the driver is also given test
/// sources over plain http); the host is not classified.
pub fn parse_source(url: &str) -> Result<SourceUrl, String> {
    if has_credentials(url) {
        return Err(format!(
            "`{}` has credentials in it; they would end up in autogit.yml, logs and process listings. Put the password or token in an environment variable (or .env) and name it with `token_env`",
            redact_url(url)
        ));
    }
    check_git_url(url).map_err(|why| format!("{why}; {VALID}"))?;
    let (transport, host, port) = if let Some((scheme, rest)) = url.split_once("://") {
        let transport = match scheme.to_ascii_lowercase().as_str() {
            "https" => Transport::Https,
            "http" => Transport::Http,
            "ssh" | "git+ssh" => Transport::Ssh,
            "git" => Transport::Git,
            other => {
                return Err(format!(
                    "scheme `{other}` is not accepted for a source (unencrypted http is refused); {VALID}"
                ));
            }
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        if transport != Transport::Ssh && authority.contains('@') {
            return Err(
                "credentials in URLs end up in logs and process listings; use `token_env`"
                    .to_owned(),
            );
        }
        let hostport = authority.rsplit('@').next().unwrap_or(authority);
        let (host, port) = match hostport.strip_prefix('[') {
            Some(v6) => {
                let (h, rest) = v6.split_once(']').unwrap_or((v6, ""));
                (h, rest.strip_prefix(':'))
            }
            None => match hostport.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            },
        };
        let port = match port {
            None | Some("") => None,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    return Err(format!(
                        "port `{p}` is not a number from 1 to 65535; {VALID}"
                    ));
                }
            },
        };
        (transport, host.to_owned(), port)
    } else {
        let userhost = url.split(':').next().unwrap_or("");
        let host = userhost.rsplit('@').next().unwrap_or(userhost);
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        (Transport::Ssh, host.to_owned(), None)
    };
    if host.is_empty() {
        return Err(format!("the URL names no host; {VALID}"));
    }
    let ip = netaddr::parse_ip(&host);
    if ip.is_none() {
        check_hostname(&host)?;
    }
    Ok(SourceUrl {
        transport,
        host,
        port,
        ip,
    })
}

/// How git is made to reach `addr`, an address the driver resolved and checked for a source,
/// without resolving the host again (DNS rebinding cannot switch it between check and connect).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pinned {
    /// The URL git is given: the original for https, the address in place of the host for git
    /// and ssh.
    pub url: String,
    /// `git -c` settings: for https `http.curloptResolve=host:port:addr` (curl connects to
    /// `addr`, TLS still verifies the name) and `http.followRedirects=false` (a redirect would
    /// reach a host nobody checked).
    pub config: Vec<String>,
    /// For ssh: `-o HostKeyAlias=<host>`, so the host key is still looked up (and checked)
    /// under the name, not the address.
    pub ssh_options: Vec<String>,
    /// The host as written (no brackets) and the checked address with the port connected to.
    pub host: String,
    pub addr: std::net::SocketAddr,
}

fn ip_literal(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}

/// The invocation that pins `src` (parsed from `url` by [`check_source`]) to `addr`.
pub fn pin(url: &str, src: &SourceUrl, addr: IpAddr) -> Pinned {
    let lit = ip_literal(addr);
    let host = src.host.clone();
    let sock = std::net::SocketAddr::new(addr, src.effective_port());
    let swap_host = |url: &str| -> String {
        match url.split_once("://") {
            Some((scheme, rest)) => {
                let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
                let (authority, tail) = rest.split_at(end);
                let (user, hostport) = match authority.rsplit_once('@') {
                    Some((u, hp)) => (format!("{u}@"), hp),
                    None => (String::new(), authority),
                };
                let port = match hostport.strip_prefix('[') {
                    Some(v6) => v6.split_once(']').map_or("", |(_, p)| p),
                    None => hostport.find(':').map_or("", |i| &hostport[i..]),
                };
                format!("{scheme}://{user}{lit}{port}{tail}")
            }
            None => {
                // scp-like `[user@]host:path`
                let (userhost, path) = url.split_once(':').unwrap_or((url, ""));
                let user = userhost
                    .rsplit_once('@')
                    .map_or(String::new(), |(u, _)| format!("{u}@"));
                format!("{user}{lit}:{path}")
            }
        }
    };
    match src.transport {
        Transport::Https | Transport::Http => {
            let bracketed = if src.host.contains(':') {
                format!("[{}]", src.host)
            } else {
                src.host.clone()
            };
            Pinned {
                url: url.to_owned(),
                config: vec![
                    format!(
                        "http.curloptResolve={bracketed}:{}:{lit}",
                        src.effective_port()
                    ),
                    "http.followRedirects=false".to_owned(),
                ],
                ssh_options: Vec::new(),
                host,
                addr: sock,
            }
        }
        Transport::Git => Pinned {
            url: swap_host(url),
            config: Vec::new(),
            ssh_options: Vec::new(),
            host,
            addr: sock,
        },
        Transport::Ssh => Pinned {
            url: swap_host(url),
            config: Vec::new(),
            ssh_options: if src.ip.is_none() {
                vec!["-o".to_owned(), format!("HostKeyAlias={}", src.host)]
            } else {
                Vec::new()
            },
            host,
            addr: sock,
        },
    }
}

/// The first address among `resolved` that is not public, as an error for the source, or
/// `None` when every one is (or `allow_private` is set). An empty list is an error too.
pub fn check_resolved(host: &str, resolved: &[IpAddr], allow_private: bool) -> Result<(), String> {
    if resolved.is_empty() {
        return Err(format!("`{host}` resolves to no address"));
    }
    if allow_private {
        return Ok(());
    }
    for a in resolved {
        if let Some(class) = netaddr::classify(*a) {
            return Err(format!(
                "host `{host}` resolves to {a}, {} address; sources on private networks are refused unless `mirroring.allow_private: true`",
                class.with_article()
            ));
        }
    }
    Ok(())
}

/// Why a host is not public (`Some("loopback")`, …), `None` for a public address or a DNS
/// name. See [`crate::netaddr::host_class`].
pub fn host_class(host: &str) -> Option<&'static str> {
    netaddr::host_class(host).map(netaddr::AddrClass::as_str)
}

/// A glob with `*` (any run of characters, also `/`) and `?` (one character), matching the whole
/// text, case-sensitively. Linear in practice (the classic two-pointer backtracking).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Whether a repository named `name` is mirrored: it matches one `include` glob (or there are
/// none) and no `exclude` glob. Exclusion wins.
pub fn selected(name: &str, include: &[String], exclude: &[String]) -> bool {
    (include.is_empty() || include.iter().any(|g| glob_match(g, name)))
        && !exclude.iter().any(|g| glob_match(g, name))
}

/// Where a mirror lands in the local GitLab: `namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct TargetPath {
    pub namespace: String,
    pub name: String,
}

impl TargetPath {
    pub fn full(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

impl std::fmt::Display for TargetPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The repository name a URL points at: its last path segment without `.git`.
pub fn repo_name_of(url: &str) -> Option<&str> {
    let path = match url.split_once("://") {
        Some((_, rest)) => rest.split_once('/').map(|(_, p)| p)?,
        None => url.split_once(':').map(|(_, p)| p)?,
    };
    let last = path.trim_end_matches('/').rsplit('/').next()?;
    let name = last.strip_suffix(".git").unwrap_or(last);
    (!name.is_empty()).then_some(name)
}

/// A GitLab project path: letters, digits, `_`, `-`, `.`; anything else becomes `-`; no leading
/// `-`/`.`, no trailing `.git`/`.atom` (GitLab refuses those).
pub fn sanitize_name(raw: &str) -> String {
    let mut s: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    while s.starts_with(['-', '.']) {
        s.remove(0);
    }
    for suffix in [".git", ".atom"] {
        while let Some(stripped) = s.strip_suffix(suffix) {
            s = stripped.to_owned();
        }
    }
    let s = s.trim_end_matches(['-', '.']).to_owned();
    if s.is_empty() { "repo".to_owned() } else { s }
}

/// The target of a source: `namespace/<name>`, where name is the configured one or the URL's.
pub fn target_path(namespace: &str, url: &str, name: Option<&str>) -> TargetPath {
    let raw = name.or_else(|| repo_name_of(url)).unwrap_or("repo");
    TargetPath {
        namespace: namespace.trim_matches('/').to_owned(),
        name: sanitize_name(raw),
    }
}

/// A target URL from a template: `{path}` is replaced by `namespace/name`.
pub fn expand_target(template: &str, target: &TargetPath) -> String {
    template.replace("{path}", &target.full())
}

/// Branches and tags of one side, `refname → object id`.
pub type Refs = BTreeMap<String, String>;

/// Parses `git ls-remote` output. Only `refs/heads/*` and `refs/tags/*` count; peeled tag lines
/// (`^{}`), `HEAD` and other namespaces (`refs/merge-requests/*`, `refs/pull/*`, …) are ignored.
pub fn parse_ls_remote(text: &str) -> Result<Refs, String> {
    let mut refs = Refs::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let Some((oid, name)) = line.split_once('\t') else {
            return Err(format!(
                "line {}: expected `<object id>\\t<ref>`, found {line:?}",
                i + 1
            ));
        };
        if !(oid.len() == 40 || oid.len() == 64) || !oid.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("line {}: `{oid}` is not an object id", i + 1));
        }
        if name.ends_with("^{}") {
            continue;
        }
        if name.starts_with("refs/heads/") || name.starts_with("refs/tags/") {
            refs.insert(name.to_owned(), oid.to_ascii_lowercase());
        }
    }
    Ok(refs)
}

/// What a server's ref advertisement said ([`parse_advertisement`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Advertisement {
    /// Branches and tags, as [`parse_ls_remote`] gives them.
    Refs(Refs),
    /// The server answered something this reader does not handle (protocol v2, a dumb HTTP
    /// server, a truncated answer): ask `git ls-remote`, which knows them all.
    Unsupported(String),
    /// The server refused (`ERR access denied`, `ERR repository not found`).
    Refused(String),
}

/// Reads a git protocol v0 ref advertisement, as a `git://` server sends it after
/// `git-upload-pack <path>` and a smart HTTP server in answer to
/// `GET …/info/refs?service=git-upload-pack` (then preceded by a `# service=` packet and a
/// flush). pkt-lines: four hex digits of length (the four included), `0000` a flush. The first
/// ref carries the capabilities after a NUL; an empty repository advertises
/// `capabilities^{}` only. Only `refs/heads/*` and `refs/tags/*` count; peeled lines do not.
pub fn parse_advertisement(bytes: &[u8]) -> Advertisement {
    let mut refs = Refs::new();
    let mut rest = bytes;
    let mut first = true;
    loop {
        if rest.is_empty() {
            return Advertisement::Unsupported("the advertisement ended before its flush".into());
        }
        let Some(len) = rest
            .get(..4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| usize::from_str_radix(h, 16).ok())
        else {
            return Advertisement::Unsupported(format!(
                "not a pkt-line: {:?}",
                String::from_utf8_lossy(&rest[..rest.len().min(16)])
            ));
        };
        if len == 0 {
            if first {
                // A flush before any ref is only the end of the HTTP service header.
                rest = &rest[4..];
                first = false;
                continue;
            }
            return Advertisement::Refs(refs);
        }
        if len < 4 || len > rest.len() {
            return Advertisement::Unsupported(format!("bad pkt-line length {len}"));
        }
        let line = &rest[4..len];
        rest = &rest[len..];
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        if let Some(msg) = line.strip_prefix(b"ERR ") {
            return Advertisement::Refused(String::from_utf8_lossy(msg).into_owned());
        }
        if line.starts_with(b"# service=") {
            continue;
        }
        if line == b"version 2" {
            return Advertisement::Unsupported("the server speaks protocol v2 only".into());
        }
        if line == b"version 1" {
            continue;
        }
        first = false;
        // The capabilities follow the first ref after a NUL.
        let line = line.split(|b| *b == 0).next().unwrap_or_default();
        let Ok(line) = std::str::from_utf8(line) else {
            return Advertisement::Unsupported("a ref line is not UTF-8".into());
        };
        let Some((oid, name)) = line.split_once(' ') else {
            return Advertisement::Unsupported(format!("not `<oid> <ref>`: {line:?}"));
        };
        if !(oid.len() == 40 || oid.len() == 64) || !oid.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Advertisement::Unsupported(format!("`{oid}` is not an object id"));
        }
        if name.ends_with("^{}") {
            continue;
        }
        if name.starts_with("refs/heads/") || name.starts_with("refs/tags/") {
            refs.insert(name.to_owned(), oid.to_ascii_lowercase());
        }
    }
}

/// The request that opens a `git://` ref advertisement for `path` on `host`: one pkt-line,
/// `git-upload-pack <path>\0host=<host>\0` (protocol v0: no extra parameters).
pub fn git_daemon_request(path: &str, host: &str) -> Vec<u8> {
    let body = format!("git-upload-pack {path}\0host={host}\0");
    let mut out = format!("{:04x}", body.len() + 4).into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// The first bytes of a Git LFS pointer file (and of the pre-1.0 "hawser" ones). A pointer is
/// at most 1024 bytes (the LFS specification) and at least the version line plus an oid line.
const LFS_POINTER_PREFIXES: [&[u8]; 2] = [
    b"version https://git-lfs.github.com/spec/v1",
    b"version https://hawser.github.com/spec/v1",
];
const LFS_POINTER_MAX: u64 = 1024;
const LFS_POINTER_MIN: u64 = 100;

/// From `git cat-file --batch-all-objects --batch-check='%(objecttype) %(objectsize)
/// %(objectname)'`: the blobs small enough to be LFS pointers, to be read with
/// [`has_lfs_pointer`]. One pass over the repository's objects, no history walk.
pub fn lfs_pointer_candidates(batch_check: &str) -> Vec<&str> {
    batch_check
        .lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let (kind, size, oid) = (f.next()?, f.next()?, f.next()?);
            let size: u64 = size.parse().ok()?;
            (kind == "blob" && (LFS_POINTER_MIN..=LFS_POINTER_MAX).contains(&size)).then_some(oid)
        })
        .collect()
}

/// [`lfs_pointer_candidates`] from `git cat-file --batch-command`'s `info` answers, in git's
/// default format (`<oid> <type> <size>`, or `<oid> missing`).
pub fn lfs_pointer_candidates_named(info: &str) -> Vec<&str> {
    info.lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let (oid, kind, size) = (f.next()?, f.next()?, f.next()?);
            let size: u64 = size.parse().ok()?;
            (kind == "blob" && (LFS_POINTER_MIN..=LFS_POINTER_MAX).contains(&size)).then_some(oid)
        })
        .collect()
}

/// From `git cat-file --batch` (`<oid> <type> <size>\n<content>\n` per object): whether any
/// object is an LFS pointer.
pub fn has_lfs_pointer(batch: &[u8]) -> bool {
    let mut rest = batch;
    while !rest.is_empty() {
        let Some(nl) = rest.iter().position(|b| *b == b'\n') else {
            return false;
        };
        let header = String::from_utf8_lossy(&rest[..nl]).into_owned();
        rest = &rest[nl + 1..];
        let mut f = header.split(' ');
        let (Some(_), Some(kind)) = (f.next(), f.next()) else {
            return false;
        };
        if kind == "missing" {
            continue;
        }
        let Some(size) = f.next().and_then(|s| s.parse::<usize>().ok()) else {
            return false;
        };
        let Some(content) = rest.get(..size) else {
            return false;
        };
        if LFS_POINTER_PREFIXES.iter().any(|p| content.starts_with(p)) {
            return true;
        }
        rest = rest.get(size + 1..).unwrap_or_default();
    }
    false
}

/// What a mirror needs.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Target has exactly the source's branches and tags: no fetch, no push.
    UpToDate,
    /// `changed`: refs new or different in the source; `deleted`: refs only in the target.
    Sync {
        changed: Vec<String>,
        deleted: Vec<String>,
    },
}

/// Compares the branches and tags of source and target.
pub fn decide(source: &Refs, target: &Refs) -> Decision {
    let changed: Vec<String> = source
        .iter()
        .filter(|(r, oid)| target.get(*r) != Some(*oid))
        .map(|(r, _)| r.clone())
        .collect();
    let deleted: Vec<String> = target
        .keys()
        .filter(|r| !source.contains_key(*r))
        .cloned()
        .collect();
    if changed.is_empty() && deleted.is_empty() {
        Decision::UpToDate
    } else {
        Decision::Sync { changed, deleted }
    }
}

/// From the standard output of `git push --porcelain` (`<flag>\t<from>:<to>\t<summary>` per
/// ref, between a `To <url>` line and `Done`): how many refs it created or moved (`*`, ` `, `+`)
/// and how many it deleted (`-`). Refs already equal (`=`) count as neither. What a first
/// sync reports instead of [`decide`]'s counts, when it did not read the target first.
pub fn push_porcelain_counts(stdout: &str) -> Result<(usize, usize), String> {
    let (mut changed, mut deleted) = (0, 0);
    for line in stdout.lines() {
        if line.starts_with("To ") || line == "Done" || line.is_empty() {
            continue;
        }
        let mut f = line.split('\t');
        let (Some(flag), Some(refs)) = (f.next(), f.next()) else {
            return Err(format!("unexpected line `{line}`"));
        };
        if !refs.contains(':') {
            return Err(format!("unexpected line `{line}`"));
        }
        match flag {
            "*" | " " | "+" => changed += 1,
            "-" => deleted += 1,
            "=" => {}
            _ => return Err(format!("ref not pushed: `{line}`")),
        }
    }
    Ok((changed, deleted))
}

/// A URL without userinfo (`https://user:secret@host/x` → `https://***@host/x`), for logs and
/// errors. scp-like URLs keep their user name (it is not a secret: `git@`).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // scp-like: a `:` before the `@` means a password (`git:pw@host:path`).
        let head_end = url.find('/').unwrap_or(url.len());
        if let Some(colon) = url[..head_end].find(':')
            && let Some(at) = url[colon..head_end].rfind('@')
        {
            return format!("***{}", &url[colon + at..]);
        }
        return url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}{tail}"),
        None => url.to_owned(),
    }
}

/// One configured mirror as `autogit mirror sync` sees it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Planned {
    /// Unique among the planned mirrors; names the cache repository and the history rows.
    pub name: String,
    /// `git`, `github` or `gitlab`.
    pub kind: &'static str,
    pub source: String,
    pub target: TargetPath,
    pub token_env: Option<String>,
    /// Why this mirror cannot be synced (an unacceptable URL, a source kind not built yet).
    pub problem: Option<String>,
    /// The target name was configured (`name:` of a git source), not derived: it is used as
    /// written, never suffixed, by [`assign_targets`].
    #[serde(skip)]
    pub named: bool,
}

/// Every configured mirror: git sources one each (URL checked against `allow_private`),
/// GitHub and GitLab accounts one entry each, to be replaced by their listing
/// ([`from_listing`]). Names are made unique.
pub fn planned(m: &crate::config::Mirroring) -> Vec<Planned> {
    let mut out: Vec<Planned> = Vec::new();
    for g in &m.sources.git {
        let target = target_path(&m.namespace, &g.url, g.name.as_deref());
        out.push(Planned {
            name: target.name.clone(),
            kind: "git",
            source: g.url.clone(),
            problem: check_source(&g.url, m.allow_private).err(),
            target,
            token_env: g.token_env.clone(),
            named: g.name.is_some(),
        });
    }
    for g in &m.sources.github {
        let owner = g
            .username
            .clone()
            .or(g.organization.clone())
            .unwrap_or_default();
        out.push(Planned {
            name: sanitize_name(&format!("github-{owner}")),
            kind: "github",
            source: format!("github:{owner}"),
            target: TargetPath {
                namespace: m.namespace.clone(),
                name: sanitize_name(&owner),
            },
            token_env: g.token_env.clone(),
            problem: None,
            named: false,
        });
    }
    for g in &m.sources.gitlab {
        let owner = g.group.clone().or(g.username.clone()).unwrap_or_default();
        out.push(Planned {
            name: sanitize_name(&format!("gitlab-{owner}")),
            kind: "gitlab",
            source: format!("{} {owner}", g.url),
            target: TargetPath {
                namespace: m.namespace.clone(),
                name: sanitize_name(&owner),
            },
            token_env: g.token_env.clone(),
            problem: None,
            named: false,
        });
    }
    unique_names(&mut out);
    out
}

/// A repository an account listing returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub clone_url: String,
    pub fork: bool,
    pub archived: bool,
    /// Why this repository cannot be mirrored though it was listed (GitHub gave no clone URL):
    /// it becomes a failed mirror with this reason, the others of the account go on.
    pub problem: Option<String>,
}

/// Whether a listed repository passes an account's filters: name globs (`include`, `exclude`),
/// forks and archived repositories only when asked for.
pub fn keep(r: &Listed, f: &crate::config::Filters) -> bool {
    selected(&r.name, &f.include, &f.exclude) && (f.forks || !r.fork) && (f.archived || !r.archived)
}

/// The mirrors of one account (`account` is its planned entry): the repositories that pass the
/// filters, each to `namespace/<repo name>`, URL checked like any source. Call
/// [`unique_names`] after replacing the account's entry with these.
pub fn from_listing(
    account: &Planned,
    namespace: &str,
    filters: &crate::config::Filters,
    repos: &[Listed],
    allow_private: bool,
) -> Vec<Planned> {
    repos
        .iter()
        .filter(|r| keep(r, filters))
        .map(|r| Planned {
            name: sanitize_name(&r.name),
            kind: account.kind,
            source: r.clone_url.clone(),
            target: TargetPath {
                namespace: namespace.trim_matches('/').to_owned(),
                name: sanitize_name(&r.name),
            },
            token_env: account.token_env.clone(),
            problem: r
                .problem
                .clone()
                .or_else(|| check_source(&r.clone_url, allow_private).err()),
            named: false,
        })
        .collect()
}

/// Gives every mirror that will be synced (no `problem`) a target that stays the same from
/// one run to the next, whatever else was listed or failed to list this time. `recorded` is
/// what earlier runs recorded, source (redacted) → `namespace/name`.
///
/// - A source with a recorded target under `namespace` keeps it (a configured `name` that
///   differs moves it there instead, if that is free).
/// - A new source takes its own name, or the first free `name-2`, `name-3`, …: free means
///   neither recorded for another source (even one that was not listed this run) nor taken
///   by another mirror of this run. A configured `name` that is not free is a problem, never
///   suffixed.
/// - The same source twice in one run is mirrored once; the second is a problem.
///
/// A mirror's `name` (its cache and history) follows its target. Mirrors that will not be
/// synced keep their names, made unique. Returns what to record: (source, target) pairs that
/// are new or moved.
pub fn assign_targets(
    all: &mut [Planned],
    namespace: &str,
    recorded: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let ns = namespace.trim_matches('/').to_owned();
    let prefix = format!("{ns}/");
    let leaf = |t: &str| t.strip_prefix(&prefix).map(str::to_owned);
    // target → the source that holds it.
    let mut taken: BTreeMap<String, String> = recorded
        .iter()
        .filter(|(_, t)| leaf(t).is_some())
        .map(|(s, t)| (t.clone(), s.clone()))
        .collect();
    let mut used: BTreeMap<String, String> = BTreeMap::new(); // source → target, this run
    let mut fresh = Vec::new();
    let mut settled = vec![false; all.len()];
    // Recorded sources first, so that no new source can take their targets.
    for (i, p) in all.iter_mut().enumerate() {
        if p.problem.is_some() {
            continue;
        }
        let key = redact_url(&p.source);
        let Some(t) = recorded.get(&key) else {
            continue;
        };
        let Some(name) = leaf(t) else { continue };
        if p.named && *t != format!("{ns}/{}", p.target.name) {
            continue;
        }
        if let Some(first) = used.get(&key) {
            p.problem = Some(format!(
                "{key} is listed twice; it is mirrored once, to {first}"
            ));
            continue;
        }
        used.insert(key, t.clone());
        p.target = TargetPath {
            namespace: ns.clone(),
            name: name.clone(),
        };
        p.name = name;
        settled[i] = true;
    }
    for (i, p) in all.iter_mut().enumerate() {
        if settled[i] || p.problem.is_some() {
            continue;
        }
        let key = redact_url(&p.source);
        if let Some(first) = used.get(&key) {
            p.problem = Some(format!(
                "{key} is listed twice; it is mirrored once, to {first}"
            ));
            continue;
        }
        let base = p.target.name.clone();
        let mut name = base.clone();
        let mut n = 2;
        let full = loop {
            let full = format!("{ns}/{name}");
            match taken.get(&full) {
                None => break Some(full),
                Some(holder) if *holder == key => break Some(full),
                Some(holder) if p.named => {
                    p.problem = Some(format!(
                        "{full} already holds the mirror of {holder}: give this source another `name`"
                    ));
                    break None;
                }
                Some(_) => {
                    name = format!("{base}-{n}");
                    n += 1;
                }
            }
        };
        let Some(full) = full else { continue };
        taken.insert(full.clone(), key.clone());
        used.insert(key.clone(), full.clone());
        if recorded.get(&key) != Some(&full) {
            fresh.push((key, full));
        }
        p.target = TargetPath {
            namespace: ns.clone(),
            name: name.clone(),
        };
        p.name = name;
        settled[i] = true;
    }
    // Names of the mirrors that will not be synced: unique among all.
    let mut seen: std::collections::BTreeSet<String> = all
        .iter()
        .zip(&settled)
        .filter(|(_, s)| **s)
        .map(|(p, _)| p.name.clone())
        .collect();
    for (p, s) in all.iter_mut().zip(&settled) {
        if *s {
            continue;
        }
        let base = p.name.clone();
        let mut n = 2;
        while !seen.insert(p.name.clone()) {
            p.name = format!("{base}-{n}");
            n += 1;
        }
    }
    fresh
}

/// Makes names unique (`app`, `app-2`, …); the target follows the new name.
pub fn unique_names(out: &mut [Planned]) {
    let mut seen = std::collections::BTreeSet::new();
    for p in out.iter_mut() {
        let base = p.name.clone();
        let mut n = 2;
        while !seen.insert(p.name.clone()) {
            p.name = format!("{base}-{n}");
            n += 1;
        }
        if p.name != base {
            p.target.name = p.name.clone();
        }
    }
}

/// What `mirroring.prune_projects` deletes: projects under `namespace/` in the local GitLab
/// whose path is no mirror's target any more. Nothing at all when the listing of the sources was
/// incomplete (`complete` false: an account's API failed, a source was refused), since a
/// failed listing would make every mirror look gone. Projects outside the namespace are never
/// candidates.
pub fn prune_candidates(
    namespace: &str,
    existing: &[String],
    wanted: &[String],
    complete: bool,
) -> Result<Vec<String>, String> {
    if !complete {
        return Err(
            "some sources could not be listed or were refused: nothing is pruned this time"
                .to_owned(),
        );
    }
    let prefix = format!("{}/", namespace.trim_end_matches('/'));
    let mut out: Vec<String> = existing
        .iter()
        .filter(|p| p.starts_with(&prefix) && !wanted.contains(p))
        .cloned()
        .collect();
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    fn pkt(s: &str) -> String {
        format!("{:04x}{s}", s.len() + 4)
    }

    #[test]
    fn advertisements() {
        let a = "a".repeat(40);
        let b = "b".repeat(40);
        let c = "c".repeat(40);
        let caps = "multi_ack side-band-64k ofs-delta agent=git/2.39";
        // git:// (no service header)
        let daemon = format!(
            "{}{}{}{}{}0000",
            pkt(&format!("{a} HEAD\0{caps}\n")),
            pkt(&format!("{a} refs/heads/main\n")),
            pkt(&format!("{b} refs/merge-requests/1/head\n")),
            pkt(&format!("{b} refs/tags/v1\n")),
            pkt(&format!("{c} refs/tags/v1^{{}}\n")),
        );
        let want = Refs::from([
            ("refs/heads/main".to_owned(), a.clone()),
            ("refs/tags/v1".to_owned(), b.clone()),
        ]);
        assert_eq!(
            parse_advertisement(daemon.as_bytes()),
            Advertisement::Refs(want.clone())
        );
        // smart HTTP: service header and flush first
        let http = format!("{}0000{daemon}", pkt("# service=git-upload-pack\n"));
        assert_eq!(
            parse_advertisement(http.as_bytes()),
            Advertisement::Refs(want)
        );
        // an empty repository
        let empty = format!(
            "{}0000",
            pkt(&format!("{} capabilities^{{}}\0{caps}\n", "0".repeat(40)))
        );
        assert_eq!(
            parse_advertisement(empty.as_bytes()),
            Advertisement::Refs(Refs::new())
        );
        assert_eq!(
            parse_advertisement(
                pkt("ERR access denied or repository not exported: /x\n").as_bytes()
            ),
            Advertisement::Refused("access denied or repository not exported: /x".into())
        );
        for bad in [
            pkt("version 2\n") + &pkt("ls-refs\n") + "0000",
            daemon[..daemon.len() - 4].to_owned(),
            "<html>".to_owned(),
            pkt("zz refs/heads/x\n") + "0000",
            "0002".to_owned(),
        ] {
            assert!(
                matches!(
                    parse_advertisement(bad.as_bytes()),
                    Advertisement::Unsupported(_)
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn push_porcelain_is_counted() {
        let out = "To git://h/x.git\n*\trefs/heads/dev:refs/heads/dev\t[new branch]\n \trefs/heads/main:refs/heads/main\ta..b\n+\trefs/heads/f:refs/heads/f\ta...c (forced update)\n-\t:refs/heads/old\t[deleted]\n=\trefs/tags/v1:refs/tags/v1\t[up to date]\nDone\n";
        assert_eq!(push_porcelain_counts(out), Ok((3, 1)));
        assert_eq!(push_porcelain_counts("To x\nDone\n"), Ok((0, 0)));
        let rejected =
            "To x\n!\trefs/heads/main:refs/heads/main\t[rejected] (atomic push failed)\nDone\n";
        assert!(
            push_porcelain_counts(rejected)
                .unwrap_err()
                .contains("not pushed")
        );
        assert!(push_porcelain_counts("garbage\n").is_err());
    }

    #[test]
    fn lfs_pointers_are_found_among_small_blobs() {
        let check = "commit 250 1111\nblob 130 2222\nblob 5000 3333\nblob 20 4444\ntree 90 5555\nblob 1024 6666\n";
        assert_eq!(lfs_pointer_candidates(check), ["2222", "6666"]);
        let named = "1111 commit 250\n2222 blob 130\n3333 blob 5000\n4444 blob 20\n5555 tree 90\n6666 blob 1024\n7777 missing\n";
        assert_eq!(lfs_pointer_candidates_named(named), ["2222", "6666"]);
        let pointer = "version https://git-lfs.github.com/spec/v1\noid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 12345\n";
        let text = "fn main() {}\n";
        let batch = |items: &[(&str, &str)]| -> Vec<u8> {
            let mut out = Vec::new();
            for (oid, body) in items {
                out.extend_from_slice(format!("{oid} blob {}\n{body}\n", body.len()).as_bytes());
            }
            out
        };
        assert!(has_lfs_pointer(&batch(&[("a", text), ("b", pointer)])));
        assert!(!has_lfs_pointer(&batch(&[("a", text), ("c", text)])));
        // A text that merely mentions the prefix later is not a pointer.
        let mention = format!("see:\n{pointer}");
        assert!(!has_lfs_pointer(&batch(&[("a", &mention)])));
        assert!(has_lfs_pointer(
            format!("x missing\nb blob {}\n{pointer}\n", pointer.len()).as_bytes()
        ));
        assert!(!has_lfs_pointer(b"truncated blob 999\nversion"));
    }

    #[test]
    fn git_daemon_request_is_one_pkt_line() {
        assert_eq!(
            git_daemon_request("/r0.git", "127.0.0.1:9418"),
            b"0030git-upload-pack /r0.git\0host=127.0.0.1:9418\0".to_vec()
        );
    }

    use super::*;

    fn check(cases: &[(&str, &str)], f: impl Fn(&str) -> String) {
        let mut failures = Vec::new();
        for (input, expect) in cases {
            let got = f(input);
            if got != *expect {
                failures.push(format!(
                    "{input:?}\n  expected: {expect}\n  got:      {got}"
                ));
            }
        }
        assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    }

    fn show(r: Result<SourceUrl, String>) -> String {
        match r {
            Ok(s) => format!("ok {:?} {}", s.transport, s.host),
            Err(e) => format!("err {}", e.split(';').next().unwrap_or(&e)),
        }
    }

    #[test]
    fn source_urls() {
        check(
            &[
                ("https://github.com/o/r.git", "ok Https github.com"),
                ("ssh://git@github.com/o/r.git", "ok Ssh github.com"),
                ("ssh://git@[2606:4700::1]:22/o/r", "ok Ssh 2606:4700::1"),
                ("git@github.com:o/r.git", "ok Ssh github.com"),
                ("git://git.kernel.org/pub/x.git", "ok Git git.kernel.org"),
                (
                    "https://10.0.0.5/x.git",
                    "err host `10.0.0.5` is a private address",
                ),
                (
                    "git://127.0.0.1:9418/x",
                    "err host `127.0.0.1` is a loopback address",
                ),
                (
                    "https://localhost/x",
                    "err host `localhost` is a loopback address",
                ),
                (
                    "git@192.168.1.2:x.git",
                    "err host `192.168.1.2` is a private address",
                ),
                ("https://[::1]/x", "err host `::1` is a loopback address"),
                (
                    "https://169.254.169.254/x",
                    "err host `169.254.169.254` is a cloud metadata address",
                ),
                (
                    "git://0x7f000001:9418/x.git",
                    "err host `0x7f000001` (127.0.0.1) is a loopback address",
                ),
                (
                    "git://127.1/x",
                    "err host `127.1` (127.0.0.1) is a loopback address",
                ),
                (
                    "git://0/x",
                    "err host `0` (0.0.0.0) is an unspecified address",
                ),
                (
                    "git://0177.0.0.1/x",
                    "err host `0177.0.0.1` (127.0.0.1) is a loopback address",
                ),
                (
                    "git@2852039166:x.git",
                    "err host `2852039166` (169.254.169.254) is a cloud metadata address",
                ),
                (
                    "https://100.64.1.1/x",
                    "err host `100.64.1.1` is a carrier-grade NAT address",
                ),
                (
                    "ssh://git@[fd00::5]/x",
                    "err host `fd00::5` is a unique-local address",
                ),
                (
                    "ssh://git:hunter2@github.com/o/r",
                    "err `ssh://***@github.com/o/r` has credentials in it",
                ),
                (
                    "git:hunter2@github.com:o/r",
                    "err `***@github.com:o/r` has credentials in it",
                ),
                (
                    "git://h:0/x",
                    "err the port must be a number from 1 to 65535",
                ),
                (
                    "https://[::ffff:127.0.0.1]/x",
                    "err host `::ffff:127.0.0.1` is a loopback address",
                ),
                (
                    "http://example.org/x.git",
                    "err scheme `http` is not accepted for a source (unencrypted http is refused)",
                ),
                (
                    "file:///etc/passwd",
                    "err `file:` URLs are refused: they run commands or read local files",
                ),
                (
                    "ext::sh -c touch% /tmp/pwned",
                    "err `ext::` URLs are refused: they run commands or read local files",
                ),
                (
                    "fd::3",
                    "err `fd::` URLs are refused: they run commands or read local files",
                ),
                (
                    "--upload-pack=touch /tmp/x",
                    "err a URL may not start with `-` (it would be read as a git option)",
                ),
                (
                    "-oProxyCommand=x",
                    "err a URL may not start with `-` (it would be read as a git option)",
                ),
                (
                    "ssh://h/x --upload-pack=y",
                    "err a URL may not contain spaces or control characters",
                ),
                ("/srv/git/x.git", "err local paths are refused"),
                (
                    "https://u:pw@github.com/x",
                    "err `https://***@github.com/x` has credentials in it",
                ),
                (
                    "https://u@github.com/x",
                    "err `https://***@github.com/x` has credentials in it",
                ),
                ("ftp://h/x", "err scheme `ftp` is not allowed"),
            ],
            |u| show(check_source(u, false)),
        );
        check(
            &[
                ("git://127.0.0.1:9418/x", "ok Git 127.0.0.1"),
                ("https://10.1.2.3/x", "ok Https 10.1.2.3"),
                (
                    "file:///x",
                    "err `file:` URLs are refused: they run commands or read local files",
                ),
            ],
            |u| show(check_source(u, true)),
        );
        let e = check_source("file:///x", false).unwrap_err();
        assert!(e.contains("valid sources are https://"), "{e}");
        let e = check_source("ssh://git:hunter2@h/r", true).unwrap_err();
        assert!(!e.contains("hunter2") && e.contains("token_env"), "{e}");
        let s = check_source("ssh://git@[2001:db8::1]:2222/o/r", true).unwrap();
        assert_eq!((s.port, s.effective_port()), (Some(2222), 2222));
        assert_eq!(s.ip, Some("2001:db8::1".parse().unwrap()));
        let s = check_source("git://0x7f000001/x", true).unwrap();
        assert_eq!(s.ip, Some("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn host_classes() {
        check(
            &[
                ("127.0.0.1", "Some(\"loopback\")"),
                ("10.255.0.1", "Some(\"private\")"),
                ("172.16.0.1", "Some(\"private\")"),
                ("172.32.0.1", "None"),
                ("100.64.0.1", "Some(\"carrier-grade NAT\")"),
                ("0.0.0.0", "Some(\"unspecified\")"),
                ("fd00::1", "Some(\"unique-local\")"),
                ("0x7f000001", "Some(\"loopback\")"),
                ("0177.0.0.1", "Some(\"loopback\")"),
                ("127.1", "Some(\"loopback\")"),
                ("0", "Some(\"unspecified\")"),
                ("fe80::1", "Some(\"link-local\")"),
                ("8.8.8.8", "None"),
                ("2001:4860::8888", "None"),
                ("github.com", "None"),
                ("LOCALHOST.", "Some(\"loopback\")"),
            ],
            |h| format!("{:?}", host_class(h)),
        );
    }

    #[test]
    fn globs() {
        check(
            &[
                ("* abc", "true"),
                ("a* abc", "true"),
                ("a*c abc", "true"),
                ("a*c abd", "false"),
                ("?bc abc", "true"),
                ("?bc bc", "false"),
                ("*-archive foo-archive", "true"),
                ("*-archive foo-archive2", "false"),
                ("a*b*c aXbYbZc", "true"),
                ("a*b*c aXbYbZ", "false"),
                ("abc abc", "true"),
                ("abc ABC", "false"),
                ("** x", "true"),
            ],
            |s| {
                let (p, t) = s.split_once(' ').unwrap();
                glob_match(p, t).to_string()
            },
        );
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(selected("x", &[], &[]));
        assert!(selected("tool-a", &v(&["tool-*"]), &[]));
        assert!(!selected("lib", &v(&["tool-*"]), &[]));
        assert!(!selected("tool-old", &v(&["tool-*"]), &v(&["*-old"])));
    }

    #[test]
    fn targets() {
        check(
            &[
                ("https://github.com/o/repo.git", "mirrors/repo"),
                ("https://github.com/o/repo/", "mirrors/repo"),
                ("git@github.com:o/My Repo.git", "mirrors/My-Repo"),
                ("ssh://h/a/.hidden.git.git", "mirrors/hidden"),
                ("git://h/", "mirrors/repo"),
                ("git://h/x/-dash", "mirrors/dash"),
            ],
            |u| target_path("/mirrors/", u, None).full(),
        );
        assert_eq!(
            target_path("m", "https://h/x.git", Some("named")).full(),
            "m/named"
        );
        assert_eq!(
            expand_target(
                "git://127.0.0.1:1/{path}.git",
                &target_path("m", "https://h/x", None)
            ),
            "git://127.0.0.1:1/m/x.git"
        );
    }

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";
    const C: &str = "3333333333333333333333333333333333333333";

    #[test]
    fn ls_remote_and_decisions() {
        let src = format!(
            "{A}\tHEAD\n{A}\trefs/heads/main\n{B}\trefs/heads/dev\n{C}\trefs/tags/v1\n{A}\trefs/tags/v1^{{}}\n{B}\trefs/merge-requests/1/head\n{B}\trefs/pull/2/head\n"
        );
        let s = parse_ls_remote(&src).unwrap();
        assert_eq!(
            s.keys().collect::<Vec<_>>(),
            ["refs/heads/dev", "refs/heads/main", "refs/tags/v1"]
        );
        let refs = |t: &str| parse_ls_remote(t).unwrap();
        check(
            &[
                // target | expected decision (source = main A, dev B, tag v1 C)
                (
                    "",
                    "sync changed [refs/heads/dev, refs/heads/main, refs/tags/v1] deleted []",
                ),
                (&src, "up to date"),
                (
                    &format!(
                        "{A}\trefs/heads/main\n{B}\trefs/heads/dev\n{C}\trefs/tags/v1\n{B}\trefs/merge-requests/9/head\n"
                    ),
                    "up to date",
                ),
                (
                    &format!("{B}\trefs/heads/main\n{B}\trefs/heads/dev\n{C}\trefs/tags/v1\n"),
                    "sync changed [refs/heads/main] deleted []",
                ),
                (
                    &format!(
                        "{A}\trefs/heads/main\n{B}\trefs/heads/dev\n{C}\trefs/tags/v1\n{C}\trefs/heads/gone\n"
                    ),
                    "sync changed [] deleted [refs/heads/gone]",
                ),
                (
                    &format!("{A}\trefs/heads/main\n{B}\trefs/heads/dev\n{A}\trefs/tags/v1\n"),
                    "sync changed [refs/tags/v1] deleted []",
                ),
            ],
            |t| match decide(&s, &refs(t)) {
                Decision::UpToDate => "up to date".to_owned(),
                Decision::Sync { changed, deleted } => format!(
                    "sync changed [{}] deleted [{}]",
                    changed.join(", "),
                    deleted.join(", ")
                ),
            },
        );
        check(
            &[
                (
                    "garbage",
                    "line 1: expected `<object id>\\t<ref>`, found \"garbage\"",
                ),
                ("xyz\trefs/heads/a", "line 1: `xyz` is not an object id"),
            ],
            |t| parse_ls_remote(t).unwrap_err(),
        );
    }

    #[test]
    fn planned_mirrors() {
        // Loaded with allow_private (validate refuses the loopback source otherwise), planned
        // without: the plan checks each source again.
        let text = "mirroring:\n  namespace: m\n  allow_private: true\n  sources:\n    github:\n      username: me\n    git:\n      - https://a.example/x/app.git\n      - https://b.example/y/app.git\n      - url: git://127.0.0.1/z.git\n        name: zed\n";
        let loaded = crate::load::load(&crate::load::LoadInput {
            file: Some(("autogit.yml", text)),
            ..Default::default()
        });
        assert!(!loaded.diagnostics.has_errors());
        let mut m = loaded.config.mirroring.clone();
        m.allow_private = false;
        let got: Vec<String> = planned(&m)
            .iter()
            .map(|p| {
                format!(
                    "{} {} {} -> {} {}",
                    p.kind,
                    p.name,
                    p.source,
                    p.target,
                    p.problem
                        .as_deref()
                        .map_or("ok", |e| e.split(';').next().unwrap())
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                "git app https://a.example/x/app.git -> m/app ok",
                "git app-2 https://b.example/y/app.git -> m/app-2 ok",
                "git zed git://127.0.0.1/z.git -> m/zed host `127.0.0.1` is a loopback address",
                "github github-me github:me -> m/me ok",
            ]
        );
    }

    #[test]
    fn listings_are_filtered() {
        let repo = |n: &str, fork, archived| Listed {
            name: n.into(),
            clone_url: format!("https://github.com/me/{n}.git"),
            fork,
            archived,
            problem: None,
        };
        let repos = [
            repo("tool-a", false, false),
            repo("tool-old", false, true),
            repo("tool-fork", true, false),
            repo("lib", false, false),
            repo("tool-skip", false, false),
        ];
        let account = Planned {
            name: "github-me".into(),
            kind: "github",
            source: "github:me".into(),
            target: target_path("m", "x", None),
            token_env: Some("GH".into()),
            problem: None,
            named: false,
        };
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let f = |include: &[&str], forks, archived| crate::config::Filters {
            include: v(include),
            exclude: v(&["*-skip"]),
            forks,
            archived,
        };
        check(
            &[
                ("tool-*,false,false", "tool-a"),
                ("tool-*,true,false", "tool-a tool-fork"),
                ("tool-*,true,true", "tool-a tool-old tool-fork"),
                (",false,false", "tool-a lib"),
            ],
            |c| {
                let parts: Vec<&str> = c.split(',').collect();
                let inc: Vec<&str> = parts[0].split(' ').filter(|s| !s.is_empty()).collect();
                let filters = f(&inc, parts[1] == "true", parts[2] == "true");
                from_listing(&account, "m", &filters, &repos, false)
                    .iter()
                    .map(|p| p.name.clone())
                    .collect::<Vec<_>>()
                    .join(" ")
            },
        );
        let one = from_listing(&account, "m", &f(&["lib"], false, false), &repos, false);
        assert_eq!(one[0].target.full(), "m/lib");
        assert_eq!(one[0].token_env.as_deref(), Some("GH"));
        assert_eq!(one[0].source, "https://github.com/me/lib.git");
        // A listed repository with a problem (no clone URL) stays, failed, with its reason.
        let mut odd = repo("odd", false, false);
        odd.problem = Some("no clone_url".into());
        let out = from_listing(&account, "m", &f(&[], false, false), &[odd], false);
        assert_eq!(out[0].problem.as_deref(), Some("no clone_url"));
    }

    #[test]
    fn targets_stay_where_they_were_first_recorded() {
        let p = |name: &str, source: &str| Planned {
            name: name.into(),
            kind: "github",
            source: source.into(),
            target: target_path("mirrors", source, Some(name)),
            token_env: None,
            problem: None,
            named: false,
        };
        let failed_account = |name: &str| Planned {
            problem: Some("cannot list the repositories".into()),
            ..p(name, "github:a")
        };
        let targets = |all: &[Planned]| -> Vec<String> {
            all.iter()
                .map(|p| match &p.problem {
                    None => format!("{}={}", p.name, p.target),
                    Some(_) => format!("{}!", p.name),
                })
                .collect()
        };
        let a = "https://h/a/Hello-World.git";
        let b = "https://h/b/Hello-World.git";
        let c = "https://h/c/Hello-World.git";
        // Run 1: both accounts listed; b's repository takes the suffix.
        let mut run = vec![p("Hello-World", a), p("Hello-World", b)];
        let fresh = assign_targets(&mut run, "mirrors", &BTreeMap::new());
        assert_eq!(
            targets(&run),
            [
                "Hello-World=mirrors/Hello-World",
                "Hello-World-2=mirrors/Hello-World-2"
            ]
        );
        let recorded: BTreeMap<String, String> = fresh.into_iter().collect();
        assert_eq!(recorded.len(), 2);
        // Run 2: a's listing failed. b's repository stays where it was; a's target is not free.
        let mut run = vec![failed_account("github-a"), p("Hello-World", b)];
        let fresh = assign_targets(&mut run, "mirrors", &recorded);
        assert_eq!(
            targets(&run),
            ["github-a!", "Hello-World-2=mirrors/Hello-World-2"]
        );
        assert!(fresh.is_empty());
        // A new source never takes a recorded target, listed this run or not.
        let mut run = vec![p("Hello-World", c), p("Hello-World", b)];
        let fresh = assign_targets(&mut run, "/mirrors/", &recorded);
        assert_eq!(
            targets(&run),
            [
                "Hello-World-3=mirrors/Hello-World-3",
                "Hello-World-2=mirrors/Hello-World-2"
            ]
        );
        assert_eq!(fresh, [(c.to_owned(), "mirrors/Hello-World-3".to_owned())]);
        // A configured name is used as written: moved there when free, refused when not.
        let named = |name: &str, source: &str| Planned {
            named: true,
            kind: "git",
            ..p(name, source)
        };
        let mut run = vec![named("hw-b", b), named("Hello-World", c)];
        let fresh = assign_targets(&mut run, "mirrors", &recorded);
        assert_eq!(targets(&run)[0], "hw-b=mirrors/hw-b");
        assert_eq!(fresh, [(b.to_owned(), "mirrors/hw-b".to_owned())]);
        let why = run[1].problem.as_deref().unwrap();
        assert!(
            why.contains(
                "mirrors/Hello-World already holds the mirror of https://h/a/Hello-World.git"
            ),
            "{why}"
        );
        // The same source twice: mirrored once.
        let mut run = vec![p("Hello-World", a), p("copy", a)];
        assign_targets(&mut run, "mirrors", &recorded);
        assert_eq!(targets(&run), ["Hello-World=mirrors/Hello-World", "copy!"]);
        // Records under another namespace do not hold a target in this one.
        let mut run = vec![p("Hello-World", b)];
        let fresh = assign_targets(&mut run, "elsewhere", &recorded);
        assert_eq!(targets(&run), ["Hello-World=elsewhere/Hello-World"]);
        assert_eq!(fresh.len(), 1);
        // Mirrors that will not sync get unique names too.
        let mut run = vec![p("Hello-World", a), failed_account("Hello-World")];
        assign_targets(&mut run, "mirrors", &recorded);
        assert_eq!(
            targets(&run),
            ["Hello-World=mirrors/Hello-World", "Hello-World-2!"]
        );
    }

    #[test]
    fn pins_connect_to_the_checked_address() {
        let v4: IpAddr = "203.0.113.7".parse().unwrap();
        let v6: IpAddr = "2001:db8::7".parse().unwrap();
        check(
            &[
                (
                    "https://github.com/o/r.git",
                    "https://github.com/o/r.git [http.curloptResolve=github.com:443:203.0.113.7, http.followRedirects=false] []",
                ),
                (
                    "https://git.example:8443/o/r.git",
                    "https://git.example:8443/o/r.git [http.curloptResolve=git.example:8443:203.0.113.7, http.followRedirects=false] []",
                ),
                (
                    "git://git.kernel.org/pub/x.git",
                    "git://203.0.113.7/pub/x.git [] []",
                ),
                ("git://h.example:9419/x", "git://203.0.113.7:9419/x [] []"),
                (
                    "ssh://git@h.example:2222/o/r",
                    "ssh://git@203.0.113.7:2222/o/r [] [-o, HostKeyAlias=h.example]",
                ),
                (
                    "git@github.com:o/r.git",
                    "git@203.0.113.7:o/r.git [] [-o, HostKeyAlias=github.com]",
                ),
            ],
            |u| {
                let p = pin(u, &check_source(u, true).unwrap(), v4);
                format!(
                    "{} [{}] [{}]",
                    p.url,
                    p.config.join(", "),
                    p.ssh_options.join(", ")
                )
            },
        );
        let u = "git://h.example/x";
        assert_eq!(
            pin(u, &check_source(u, true).unwrap(), v6).url,
            "git://[2001:db8::7]/x"
        );
        let u = "https://h.example/x";
        assert_eq!(
            pin(u, &check_source(u, true).unwrap(), v6).config[0],
            "http.curloptResolve=h.example:443:[2001:db8::7]"
        );
    }

    #[test]
    fn every_resolved_address_is_checked() {
        let ips = |s: &[&str]| {
            s.iter()
                .map(|a| a.parse().unwrap())
                .collect::<Vec<IpAddr>>()
        };
        assert!(check_resolved("h", &ips(&["8.8.8.8", "2606:4700::1"]), false).is_ok());
        let e = check_resolved("h", &ips(&["8.8.8.8", "::ffff:10.0.0.1"]), false).unwrap_err();
        assert!(
            e.contains("::ffff:10.0.0.1") && e.contains("private"),
            "{e}"
        );
        assert!(check_resolved("h", &ips(&["127.0.0.1"]), true).is_ok());
        assert!(check_resolved("h", &[], true).is_err());
    }

    #[test]
    fn redaction() {
        check(
            &[
                ("https://user:tok@h/x.git", "https://***@h/x.git"),
                ("https://h/x@y", "https://h/x@y"),
                ("ssh://git@h/x", "ssh://***@h/x"),
                ("git@h:x", "git@h:x"),
                ("git:pw@h:x/y", "***@h:x/y"),
                ("h:x@y", "***@y"),
            ],
            redact_url,
        );
    }

    #[test]
    fn prune_only_gone_mirrors_in_the_namespace() {
        let existing: Vec<String> = ["mirrors/app", "mirrors/gone", "mirrors/sub/old", "team/app"]
            .map(String::from)
            .to_vec();
        let wanted: Vec<String> = ["mirrors/app".to_owned()].to_vec();
        assert_eq!(
            prune_candidates("mirrors", &existing, &wanted, true).unwrap(),
            ["mirrors/gone", "mirrors/sub/old"]
        );
        assert!(prune_candidates("mirrors", &existing, &wanted, false).is_err());
        assert!(
            prune_candidates("mirror", &existing, &[], true)
                .unwrap()
                .is_empty()
        );
    }
}

/// What `autogit mirror add SOURCE` adds, decided from its argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddSpec {
    /// `github:NAME`: every repository of a user (or, with `--org`, an organization).
    GithubAccount { name: String, org: bool },
    /// `github:OWNER/REPO`: one repository, added as a git source.
    GithubRepo { owner: String, repo: String },
    /// `gitlab:GROUP`, or `gitlab:PATH` with `--group`: a group with its subgroups.
    GitlabGroup { path: String },
    /// `gitlab:GROUP/PROJECT`: one project, added as a git source.
    GitlabProject { path: String },
    /// A git URL (https, ssh, scp-like, git).
    Git { url: String },
}

/// A GitHub or GitLab account or path segment: what their URLs allow.
fn path_segment_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && !s.starts_with(['-', '.'])
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Reads `mirror add`'s argument. `github:` takes a user (or with `org` an organization) or
/// `OWNER/REPO`; `gitlab:` takes a group, or `GROUP/…/PROJECT` for one project (`group`
/// makes a path with slashes a subgroup instead); anything else must be a git URL that
/// [`check_source`] accepts.
pub fn parse_add(
    source: &str,
    org: bool,
    group: bool,
    allow_private: bool,
) -> Result<AddSpec, String> {
    const FORMS: &str = "github:USER, github:ORG --org, github:OWNER/REPO, gitlab:GROUP, gitlab:GROUP/PROJECT, or a git URL (https://, ssh://, git@host:path, git://)";
    if let Some(rest) = source.strip_prefix("github:") {
        let parts: Vec<&str> = rest.trim_end_matches(".git").split('/').collect();
        return match parts[..] {
            [name] if path_segment_ok(name) => Ok(AddSpec::GithubAccount {
                name: name.to_owned(),
                org,
            }),
            [owner, repo] if path_segment_ok(owner) && path_segment_ok(repo) => {
                if org {
                    return Err(format!(
                        "`{source}` is one repository; --org applies to github:ORG"
                    ));
                }
                Ok(AddSpec::GithubRepo {
                    owner: owner.to_owned(),
                    repo: repo.to_owned(),
                })
            }
            _ => Err(format!(
                "`{source}` is not a GitHub user, organization or OWNER/REPO; expected {FORMS}"
            )),
        };
    }
    if let Some(rest) = source.strip_prefix("gitlab:") {
        let path = rest.trim_end_matches(".git").trim_matches('/');
        let parts: Vec<&str> = path.split('/').collect();
        if !parts.iter().all(|p| path_segment_ok(p)) {
            return Err(format!(
                "`{source}` is not a GitLab group or project path; expected {FORMS}"
            ));
        }
        return Ok(if parts.len() == 1 || group {
            AddSpec::GitlabGroup {
                path: path.to_owned(),
            }
        } else {
            AddSpec::GitlabProject {
                path: path.to_owned(),
            }
        });
    }
    if !source.contains("://") && !source.contains(':') && source.split('/').count() == 2 {
        return Err(format!(
            "`{source}` looks like OWNER/REPO but does not say where: use github:{source} or gitlab:{source}"
        ));
    }
    check_source(source, allow_private).map_err(|e| format!("{}: {e}", redact_url(source)))?;
    Ok(AddSpec::Git {
        url: source.to_owned(),
    })
}

/// The clone URL of one repository added as `github:OWNER/REPO` or `gitlab:PATH`: on
/// github.com / gitlab.com, or on the host of `url` (a GitHub Enterprise API URL such as
/// `https://ghe.example.com/api/v3`, or a GitLab instance URL).
pub fn single_repo_url(spec: &AddSpec, url: Option<&str>) -> Option<String> {
    let base = |default: &str| {
        url.map(|u| {
            let u = u.trim_end_matches('/');
            u.strip_suffix("/api/v3").unwrap_or(u).to_owned()
        })
        .unwrap_or_else(|| default.to_owned())
    };
    match spec {
        AddSpec::GithubRepo { owner, repo } => {
            Some(format!("{}/{owner}/{repo}.git", base("https://github.com")))
        }
        AddSpec::GitlabProject { path } => {
            Some(format!("{}/{path}.git", base("https://gitlab.com")))
        }
        _ => None,
    }
}

#[cfg(test)]
mod add_tests {
    use super::*;

    #[test]
    fn add_forms() {
        let p = |s: &str, org: bool, group: bool| parse_add(s, org, group, false);
        assert_eq!(
            p("github:octocat", false, false),
            Ok(AddSpec::GithubAccount {
                name: "octocat".into(),
                org: false
            })
        );
        assert_eq!(
            p("github:rust-lang", true, false),
            Ok(AddSpec::GithubAccount {
                name: "rust-lang".into(),
                org: true
            })
        );
        let one = p("github:rust-lang/rust", false, false).unwrap();
        assert_eq!(
            one,
            AddSpec::GithubRepo {
                owner: "rust-lang".into(),
                repo: "rust".into()
            }
        );
        assert_eq!(
            single_repo_url(&one, None).as_deref(),
            Some("https://github.com/rust-lang/rust.git")
        );
        assert_eq!(
            single_repo_url(&one, Some("https://ghe.example.com/api/v3")).as_deref(),
            Some("https://ghe.example.com/rust-lang/rust.git")
        );
        let proj = p("gitlab:gitlab-org/cli", false, false).unwrap();
        assert_eq!(
            proj,
            AddSpec::GitlabProject {
                path: "gitlab-org/cli".into()
            }
        );
        assert_eq!(
            single_repo_url(&proj, None).as_deref(),
            Some("https://gitlab.com/gitlab-org/cli.git")
        );
        assert_eq!(
            p("gitlab:org/team", false, true),
            Ok(AddSpec::GitlabGroup {
                path: "org/team".into()
            })
        );
        assert_eq!(
            p("gitlab:org", false, false),
            Ok(AddSpec::GitlabGroup { path: "org".into() })
        );
        for bad in [
            "github:",
            "github:a/b/c",
            "github:-x",
            "gitlab:a//b",
            "github:a b",
        ] {
            assert!(p(bad, false, false).is_err(), "{bad}");
        }
        assert!(p("github:a/b", true, false).unwrap_err().contains("--org"));
        // OWNER/REPO without saying where is refused with the two spellings that work.
        let e = p("rust-lang/rust", false, false).unwrap_err();
        assert!(
            e.contains("github:rust-lang/rust") && e.contains("gitlab:rust-lang/rust"),
            "{e}"
        );
        assert_eq!(
            p("https://git.example.org/a.git", false, false),
            Ok(AddSpec::Git {
                url: "https://git.example.org/a.git".into()
            })
        );
    }
}
