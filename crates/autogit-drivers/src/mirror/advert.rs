//! `git ls-remote` without a process, for the transports where the ref advertisement is one
//! request: `git://` (one TCP connection) and smart HTTP (`GET …/info/refs?service=
//! git-upload-pack` on a pooled connection). A mirror that has not changed costs one request
//! per side and no `git` child at all.
//!
//! A fast path for what it reads completely: anything else that a server may legitimately
//! answer (ssh, a redirect, a dumb HTTP server, protocol v2 only, an answer it cannot parse)
//! returns [`Answer::Fallback`] and the caller asks `git ls-remote`. A remote that fails
//! (connection refused, hung up, `ERR …`, HTTP 401/404/5xx, a timeout) is [`Answer::Failed`]:
//! the step fails as git's would, and is retried by the caller's policy, never silently
//! tried a second time through git.
//!
//! Pinning is kept: a source's connection goes to the address [`super::pin_source`] checked
//! (the `git://` URL already names it; for HTTPS the client resolves the host to it and TLS
//! still verifies the name), and redirects are never followed. A token is sent as HTTP basic
//! authentication (`oauth2:<token>`, what the askpass script answers git) and nowhere else.

use autogit_core::mirror::{Advertisement, Pinned, Refs, git_daemon_request, parse_advertisement};
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The most an advertisement may be (a repository with ~100k refs); more falls back to git.
const MAX_BYTES: usize = 16 << 20;
const TIMEOUT: Duration = Duration::from_secs(30);
/// GitHub serves the smart protocol to user agents that start with `git/`.
const USER_AGENT: &str = concat!("git/autogit-", env!("CARGO_PKG_VERSION"));

/// What the fast path found.
#[derive(Debug)]
pub enum Answer {
    Refs(Refs),
    /// Ask `git ls-remote` (why, for the debug log).
    Fallback(String),
    /// The remote failed; what git would say.
    Failed(String),
}

/// Reads ref advertisements; holds the HTTP clients so connections are reused across mirrors.
#[derive(Debug)]
pub struct RefReader {
    /// Unpinned URLs (the target).
    plain: Option<reqwest::Client>,
    /// Pinned sources: one client per (host, address), each resolving the host to the address.
    pinned: Mutex<HashMap<(String, SocketAddr), reqwest::Client>>,
}

impl Default for RefReader {
    fn default() -> Self {
        Self::new()
    }
}

impl RefReader {
    pub fn new() -> RefReader {
        RefReader {
            plain: client(None).ok(),
            pinned: Mutex::new(HashMap::new()),
        }
    }

    /// The branches and tags `url` advertises, or why git must be asked instead. `pinned` is
    /// the checked address of a source (its `url` is what git would be given).
    pub async fn ls_remote(
        &self,
        url: &str,
        token: Option<&SecretString>,
        pinned: Option<&Pinned>,
    ) -> Answer {
        let target = pinned.map_or(url, |p| p.url.as_str());
        let Some((scheme, rest)) = target.split_once("://") else {
            return Answer::Fallback("scp-like ssh address".into());
        };
        match scheme.to_ascii_lowercase().as_str() {
            "git" => match tokio::time::timeout(TIMEOUT, git_daemon(rest, pinned)).await {
                Ok(a) => a,
                Err(_) => Answer::Failed(format!("no answer within {}s", TIMEOUT.as_secs())),
            },
            "http" | "https" => self.http(target, token, pinned).await,
            other => Answer::Fallback(format!("{other}:// is read by git")),
        }
    }

    async fn http(
        &self,
        url: &str,
        token: Option<&SecretString>,
        pinned: Option<&Pinned>,
    ) -> Answer {
        let client = match pinned {
            None => match &self.plain {
                Some(c) => c.clone(),
                None => return Answer::Fallback("no HTTP client".into()),
            },
            Some(p) => {
                let (host, addr) = (p.host.clone(), p.addr);
                let mut map = self
                    .pinned
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                match map.get(&(host.clone(), addr)) {
                    Some(c) => c.clone(),
                    None => match client(Some((&host, addr))) {
                        Ok(c) => {
                            map.insert((host, addr), c.clone());
                            c
                        }
                        Err(e) => return Answer::Fallback(e),
                    },
                }
            }
        };
        let mut req = client
            .get(format!(
                "{}/info/refs?service=git-upload-pack",
                url.trim_end_matches('/')
            ))
            .header("accept", "application/x-git-upload-pack-advertisement, */*");
        if let Some(t) = token {
            req = req.basic_auth("oauth2", Some(t.expose_secret()));
        }
        let resp = match req.send().await {
            Ok(r) => r,
            // Over TLS a failed connection may be a certificate only git's trust store (the
            // system's CA directory, curl's options) accepts: git decides.
            Err(e) if e.is_connect() && url.starts_with("https") => {
                return Answer::Fallback(http_error(&e));
            }
            Err(e) => return Answer::Failed(http_error(&e)),
        };
        let smart = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-git-upload-pack-advertisement"));
        let status = resp.status();
        match status.as_u16() {
            200 if smart => {}
            // A dumb server, or a redirect that git's own configuration decides on.
            200 | 300..=399 => {
                return Answer::Fallback(format!("HTTP {status} (smart: {smart})"));
            }
            401 | 403 => return Answer::Failed("Authentication failed".into()),
            404 => return Answer::Failed("repository not found".into()),
            _ => {
                return Answer::Failed(format!(
                    "the requested URL returned error: {}",
                    status.as_u16()
                ));
            }
        }
        if resp.content_length().is_some_and(|n| n > MAX_BYTES as u64) {
            return Answer::Fallback("advertisement too large".into());
        }
        let mut body = Vec::new();
        let mut resp = resp;
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    body.extend_from_slice(&c);
                    if body.len() > MAX_BYTES {
                        return Answer::Fallback("advertisement too large".into());
                    }
                }
                Ok(None) => break,
                Err(e) => return Answer::Failed(http_error(&e)),
            }
        }
        judge(parse_advertisement(&body))
    }
}

fn judge(a: Advertisement) -> Answer {
    match a {
        Advertisement::Refs(r) => Answer::Refs(r),
        Advertisement::Unsupported(why) => Answer::Fallback(why),
        Advertisement::Refused(msg) => Answer::Failed(format!("remote error: {msg}")),
    }
}

/// What went wrong, without the URL (reqwest's errors name it, query and all).
fn http_error(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "the answer was cut off"
    } else {
        "the request failed"
    };
    let mut detail = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        what.to_owned()
    } else {
        format!("{what}: {detail}")
    }
}

/// An HTTP client that never follows redirects (a redirect would reach a host nobody
/// checked), trusting the CA file git is told to trust when one is set (a CA directory is
/// not read: a certificate only it vouches for fails to connect, and git is asked).
fn client(resolve: Option<(&str, SocketAddr)>) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(USER_AGENT)
        .connect_timeout(Duration::from_secs(10))
        .timeout(TIMEOUT)
        .pool_idle_timeout(Duration::from_secs(30))
        .no_proxy();
    for var in ["GIT_SSL_CAINFO", "SSL_CERT_FILE"] {
        if let Some(path) = std::env::var_os(var) {
            let pem = std::fs::read(&path).map_err(|e| format!("{var}: {e}"))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| e.to_string())? {
                b = b.add_root_certificate(cert);
            }
        }
    }
    if let Some((host, addr)) = resolve {
        b = b.resolve(host, addr);
    }
    b.build().map_err(|e| e.to_string())
}

/// One `git://` advertisement: request, read to the flush, say goodbye with a flush. `rest`
/// is the URL after `git://` (the pinned one for a source: it names the checked address).
async fn git_daemon(rest: &str, pinned: Option<&Pinned>) -> Answer {
    let end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if path.is_empty() || authority.contains('@') {
        return Answer::Fallback("no path, or user info".into());
    }
    let has_port = match authority.strip_prefix('[') {
        Some(v6) => v6.contains("]:"),
        None => authority.contains(':'),
    };
    let connect = match pinned {
        Some(p) => p.addr.to_string(),
        None if has_port => authority.to_owned(),
        None => format!("{authority}:9418"),
    };
    let mut conn = match tokio::net::TcpStream::connect(&connect).await {
        Ok(c) => c,
        Err(e) => return Answer::Failed(format!("unable to connect: {e}")),
    };
    let _ = conn.set_nodelay(true);
    if conn
        .write_all(&git_daemon_request(path, authority))
        .await
        .is_err()
    {
        return Answer::Failed("the remote end hung up unexpectedly".into());
    }
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = match conn.read(&mut chunk).await {
            Ok(0) if buf.is_empty() => {
                return Answer::Failed("the remote end hung up unexpectedly".into());
            }
            Ok(0) => {
                return match parse_advertisement(&buf) {
                    // Closed before its flush: cut off, not a format git would read.
                    Advertisement::Unsupported(_) => {
                        Answer::Failed("the remote end hung up unexpectedly".into())
                    }
                    a => judge(a),
                };
            }
            Ok(n) => n,
            Err(e) => return Answer::Failed(format!("read error: {e}")),
        };
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_BYTES {
            return Answer::Fallback("advertisement too large".into());
        }
        // Every ref line ends in a newline, so a buffer ending in `0000` is a flush.
        if buf.ends_with(b"0000") || is_err(&buf) {
            let a = parse_advertisement(&buf);
            if matches!(a, Advertisement::Refs(_) | Advertisement::Refused(_)) {
                // Tell upload-pack we want nothing, as `git ls-remote` does.
                let _ = conn.write_all(b"0000").await;
                return judge(a);
            }
        }
    }
}

/// Whether the buffer holds one complete `ERR` packet.
fn is_err(buf: &[u8]) -> bool {
    buf.get(4..8) == Some(b"ERR ")
        && std::str::from_utf8(&buf[..4])
            .ok()
            .and_then(|h| usize::from_str_radix(h, 16).ok())
            .is_some_and(|len| buf.len() >= len)
}
