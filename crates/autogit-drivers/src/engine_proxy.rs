//! The runner's engine proxy: a unix socket that passes a gitlab-runner container's Docker
//! Engine API calls to the host's engine when `core::engine_proxy` allows them, and answers
//! 403 otherwise. `autogit runner engine-proxy` runs it on a runner host; the on-demand start
//! mounts its socket as the runner container's `/var/run/docker.sock`.
//!
//! One request per connection: the request line and headers are read and decided, the
//! request goes to the engine with `Connection: close` (an `attach` keeps its `Upgrade` and
//! becomes a raw stream both ways once the engine switches protocols), and the answer is
//! copied back until the engine closes. Nothing the client sends after its request reaches
//! the engine, except on an upgraded `attach`, so no second request can slip past the check.
//! Bodies that are checked (container and volume definitions) are read whole, at most
//! [`MAX_CHECKED_BODY`]; others (image tarballs, archives) are streamed, chunk by chunk.

use autogit_core::engine_proxy::{
    BodyCheck, Object, Policy, Verdict, check, check_container_create, check_volume_create,
    is_managed,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// The largest request head the proxy reads.
pub const MAX_HEAD: usize = 64 * 1024;
/// The largest body the proxy reads whole to check it.
pub const MAX_CHECKED_BODY: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(
        "cannot listen on {path}: {source}; give a path in a directory that exists and that this user may write (--listen)"
    )]
    Listen {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "an engine proxy already listens on {path}; stop it first, or give another --listen path"
    )]
    InUse { path: PathBuf },
    #[error(
        "{path} exists and is not a socket; remove it or give another --listen path (the proxy replaces only a stale socket)"
    )]
    NotASocket { path: PathBuf },
}

/// Binds the proxy's socket at `path` (a stale socket left by an earlier run is replaced),
/// mode 0660: the engine's own socket is `root:docker` 0660 too.
pub fn bind(path: &Path) -> Result<UnixListener, ProxyError> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let listen = |source| ProxyError::Listen {
        path: path.to_owned(),
        source,
    };
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(ProxyError::NotASocket {
                path: path.to_owned(),
            });
        }
        // A proxy that still answers keeps its socket; a stale one is replaced.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ProxyError::InUse {
                path: path.to_owned(),
            });
        }
        std::fs::remove_file(path).map_err(listen)?;
    }
    let l = UnixListener::bind(path).map_err(listen)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(listen)?;
    Ok(l)
}

/// Serves connections on `listener` forever, each against the engine at `engine`.
pub async fn serve(listener: UnixListener, engine: PathBuf, policy: Policy) {
    let engine = Arc::new(engine);
    let policy = Arc::new(policy);
    loop {
        let conn = match listener.accept().await {
            Ok((conn, _)) => conn,
            Err(e) => {
                // Out of descriptors, mostly: wait instead of spinning.
                tracing::warn!("engine proxy: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            }
        };
        let (engine, policy) = (engine.clone(), policy.clone());
        tokio::spawn(async move {
            if let Err(e) = handle(conn, &engine, &policy).await {
                tracing::debug!("engine proxy connection: {e}");
            }
        });
    }
}

struct Head {
    method: String,
    target: String,
    version: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }
    fn content_length(&self) -> Result<Option<usize>, String> {
        match self.header("content-length") {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| format!("bad Content-Length `{v}`")),
        }
    }
}

async fn read_head<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<Option<Head>, String> {
    let mut lines = Vec::new();
    let mut total = 0;
    loop {
        let mut line = String::new();
        let n = r.read_line(&mut line).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return if lines.is_empty() {
                Ok(None)
            } else {
                Err("connection closed inside the request head".into())
            };
        }
        total += n;
        if total > MAX_HEAD {
            return Err("request head too large".into());
        }
        let line = line.trim_end_matches(['\r', '\n']).to_owned();
        if line.is_empty() {
            if lines.is_empty() {
                continue;
            }
            break;
        }
        lines.push(line);
    }
    let mut first = lines[0].split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (first.next(), first.next(), first.next(), first.next())
    else {
        return Err(format!("bad request line `{}`", lines[0]));
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Err(format!("bad request line `{}`", lines[0]));
    }
    let mut headers = Vec::new();
    for l in &lines[1..] {
        let (k, v) = l
            .split_once(':')
            .ok_or_else(|| format!("bad header line `{l}`"))?;
        if k.is_empty() || k.contains(char::is_whitespace) {
            return Err(format!("bad header line `{l}`"));
        }
        headers.push((k.to_owned(), v.trim().to_owned()));
    }
    Ok(Some(Head {
        method: method.to_owned(),
        target: target.to_owned(),
        version: version.to_owned(),
        headers,
    }))
}

/// Reads and drops the body of a request about to be refused (at most [`MAX_CHECKED_BODY`]
/// bytes, for at most 2 s), so that the client, still writing it, reads the refusal instead of
/// a broken pipe (seen as `write: broken pipe` from the docker CLI on a refused
/// `network create`).
async fn discard_body<R: AsyncBufRead + Unpin>(r: &mut R, head: &Head) {
    let drain = async {
        if head.chunked() {
            let _ = read_chunked(r, MAX_CHECKED_BODY).await;
        } else if let Ok(Some(n)) = head.content_length() {
            let mut limited = (&mut *r).take(n.min(MAX_CHECKED_BODY) as u64);
            let _ = tokio::io::copy(&mut limited, &mut tokio::io::sink()).await;
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), drain).await;
}

async fn reply<W: AsyncWriteExt + Unpin>(w: &mut W, status: &str, message: &str) {
    let body = serde_json::json!({ "message": message }).to_string();
    let text = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = w.write_all(text.as_bytes()).await;
    let _ = w.shutdown().await;
}

/// Reads a chunked body whole (at most `limit` bytes of data).
async fn read_chunked<R: AsyncBufRead + Unpin>(r: &mut R, limit: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let size = chunk_size(r).await?;
        if size == 0 {
            skip_trailers(r).await?;
            return Ok(out);
        }
        if out.len() + size > limit {
            return Err("body too large to check".into());
        }
        let start = out.len();
        out.resize(start + size, 0);
        r.read_exact(&mut out[start..])
            .await
            .map_err(|e| e.to_string())?;
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf).await.map_err(|e| e.to_string())?;
    }
}

async fn chunk_size<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<usize, String> {
    let mut line = String::new();
    r.read_line(&mut line).await.map_err(|e| e.to_string())?;
    let hex = line.trim().split(';').next().unwrap_or("");
    usize::from_str_radix(hex, 16).map_err(|_| format!("bad chunk size `{}`", line.trim()))
}

async fn skip_trailers<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<(), String> {
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await.map_err(|e| e.to_string())? == 0 || line.trim().is_empty() {
            return Ok(());
        }
    }
}

/// Copies a chunked body as it comes, re-chunked, ending with the last chunk.
async fn stream_chunked<R: AsyncBufRead + Unpin, W: AsyncWriteExt + Unpin>(
    r: &mut R,
    w: &mut W,
) -> Result<(), String> {
    let io = |e: std::io::Error| e.to_string();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut size = chunk_size(r).await?;
        if size == 0 {
            skip_trailers(r).await?;
            w.write_all(b"0\r\n\r\n").await.map_err(io)?;
            return Ok(());
        }
        w.write_all(format!("{size:x}\r\n").as_bytes())
            .await
            .map_err(io)?;
        while size > 0 {
            let n = size.min(buf.len());
            r.read_exact(&mut buf[..n]).await.map_err(io)?;
            w.write_all(&buf[..n]).await.map_err(io)?;
            size -= n;
        }
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf).await.map_err(io)?;
        w.write_all(b"\r\n").await.map_err(io)?;
    }
}

/// Asks the engine whether `object` carries gitlab-runner's label: `Ok(true/false)`, or the
/// engine's status and message when it cannot say (no such object).
async fn managed(engine: &Path, object: &Object) -> Result<bool, (String, String)> {
    let (path, labels_at) = match object {
        Object::Container(id) => (format!("/containers/{id}/json"), "/Config/Labels"),
        Object::Volume(name) => (format!("/volumes/{name}"), "/Labels"),
    };
    let err = |e: std::io::Error| ("502 Bad Gateway".to_owned(), format!("engine: {e}"));
    let mut s = UnixStream::connect(engine).await.map_err(err)?;
    // HTTP/1.0: the engine answers without chunking and closes.
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n").as_bytes())
        .await
        .map_err(err)?;
    let mut all = Vec::new();
    s.read_to_end(&mut all).await.map_err(err)?;
    let text = String::from_utf8_lossy(&all);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_once(' '))
        .map(|(_, s)| s.trim().to_owned())
        .unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    if !status.starts_with("200") {
        let msg = v
            .get("message")
            .and_then(|m| m.as_str())
            .unwrap_or("the engine did not answer")
            .to_owned();
        return Err((status, msg));
    }
    Ok(is_managed(v.pointer(labels_at).and_then(|l| l.as_object())))
}

async fn handle(conn: UnixStream, engine: &Path, policy: &Policy) -> Result<(), String> {
    let mut client = BufReader::new(conn);
    let Some(head) = read_head(&mut client).await? else {
        return Ok(());
    };
    let verdict = check(&head.method, &head.target);
    let mut upgrade = false;
    let mut checked_body: Option<Vec<u8>> = None;
    match &verdict {
        Verdict::Deny(why) => {
            tracing::info!(
                "engine proxy refused {} {}: {why}",
                head.method,
                head.target
            );
            discard_body(&mut client, &head).await;
            reply(&mut client, "403 Forbidden", why).await;
            return Ok(());
        }
        Verdict::Allow => {}
        Verdict::IfManaged { object, upgrade: u } => {
            upgrade = *u;
            match managed(engine, object).await {
                Ok(true) => {}
                Ok(false) => {
                    let why = format!(
                        "{} was not created by gitlab-runner (no `{}=true` label); the engine proxy refuses `{} {}` on it",
                        match object {
                            Object::Container(c) => format!("container `{c}`"),
                            Object::Volume(v) => format!("volume `{v}`"),
                        },
                        autogit_core::engine_proxy::MANAGED_LABEL,
                        head.method,
                        autogit_core::engine_proxy::unversioned(&head.target)
                    );
                    tracing::info!("engine proxy refused: {why}");
                    discard_body(&mut client, &head).await;
                    reply(&mut client, "403 Forbidden", &why).await;
                    return Ok(());
                }
                Err((status, msg)) => {
                    reply(&mut client, &status, &msg).await;
                    return Ok(());
                }
            }
        }
        Verdict::CheckBody(kind) => {
            let body = if head.chunked() {
                read_chunked(&mut client, MAX_CHECKED_BODY).await?
            } else {
                let n = head.content_length()?.unwrap_or(0);
                if n > MAX_CHECKED_BODY {
                    reply(&mut client, "413 Payload Too Large", "definition too large").await;
                    return Ok(());
                }
                let mut b = vec![0u8; n];
                client.read_exact(&mut b).await.map_err(|e| e.to_string())?;
                b
            };
            let ok = match kind {
                BodyCheck::ContainerCreate => check_container_create(policy, &body),
                BodyCheck::VolumeCreate => check_volume_create(&body),
            };
            if let Err(why) = ok {
                tracing::info!("engine proxy refused {}: {why}", head.target);
                reply(&mut client, "403 Forbidden", &why).await;
                return Ok(());
            }
            checked_body = Some(body);
        }
    }
    let mut up = UnixStream::connect(engine)
        .await
        .map_err(|e| format!("engine {}: {e}", engine.display()))?;
    let mut text = format!("{} {} {}\r\n", head.method, head.target, head.version);
    for (k, v) in &head.headers {
        let drop = ["connection", "keep-alive", "proxy-connection", "upgrade"]
            .iter()
            .any(|h| k.eq_ignore_ascii_case(h))
            || (checked_body.is_some()
                && (k.eq_ignore_ascii_case("content-length")
                    || k.eq_ignore_ascii_case("transfer-encoding")));
        if !drop {
            text.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    if upgrade {
        text.push_str("Connection: Upgrade\r\nUpgrade: tcp\r\n");
    } else {
        text.push_str("Connection: close\r\n");
    }
    if let Some(b) = &checked_body {
        text.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    text.push_str("\r\n");
    let io = |e: std::io::Error| e.to_string();
    up.write_all(text.as_bytes()).await.map_err(io)?;
    if let Some(b) = checked_body {
        up.write_all(&b).await.map_err(io)?;
    } else if head.chunked() {
        stream_chunked(&mut client, &mut up).await?;
    } else if let Some(n) = head.content_length()? {
        let mut body = (&mut client).take(n as u64);
        tokio::io::copy(&mut body, &mut up).await.map_err(io)?;
    }
    if upgrade {
        // The engine answers 101 and both sides stream (stdin in, output out).
        tokio::io::copy_bidirectional(&mut client, &mut up)
            .await
            .map_err(io)?;
    } else {
        tokio::io::copy(&mut up, client.get_mut())
            .await
            .map_err(io)?;
        let _ = client.get_mut().shutdown().await;
    }
    Ok(())
}
