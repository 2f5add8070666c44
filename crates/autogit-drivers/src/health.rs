//! Health probes run from the host: HTTP (status and, optionally, a body that must be
//! contained, e.g. GitLab's `/-/health` answers `200 GitLab OK`) and TCP connect. They
//! complement the engine's own HEALTHCHECK, which runs inside the container.

use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeResult {
    Pass,
    Fail(String),
}

impl ProbeResult {
    pub fn passed(&self) -> bool {
        *self == ProbeResult::Pass
    }
}

/// GET `url`; passes on `status`, and when `body` is given, if the response contains it.
pub async fn http(
    client: &reqwest::Client,
    url: &str,
    status: u16,
    body: Option<&str>,
    timeout: Duration,
) -> ProbeResult {
    let resp = match client.get(url).timeout(timeout).send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => {
            return ProbeResult::Fail(format!(
                "GET {url}: no answer within {}s",
                timeout.as_secs()
            ));
        }
        Err(e) => return ProbeResult::Fail(format!("GET {url}: {}", root_cause(&e))),
    };
    let got = resp.status().as_u16();
    if got != status {
        return ProbeResult::Fail(format!("GET {url}: status {got}, expected {status}"));
    }
    if let Some(want) = body {
        // Health bodies are small; never read more than 64 KiB.
        let text = match resp.bytes().await {
            Ok(b) => String::from_utf8_lossy(&b[..b.len().min(64 * 1024)]).into_owned(),
            Err(e) => return ProbeResult::Fail(format!("GET {url}: reading the body: {e}")),
        };
        if !text.contains(want) {
            return ProbeResult::Fail(format!("GET {url}: body does not contain {want:?}"));
        }
    }
    ProbeResult::Pass
}

pub async fn tcp(addr: &str, timeout: Duration) -> ProbeResult {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => ProbeResult::Pass,
        Ok(Err(e)) => ProbeResult::Fail(format!("connect {addr}: {e}")),
        Err(_) => ProbeResult::Fail(format!(
            "connect {addr}: no answer within {}s",
            timeout.as_secs()
        )),
    }
}

/// What a registry answered to `GET /v2/`: status, `Docker-Distribution-Api-Version`,
/// `WWW-Authenticate`.
pub type RegistryV2 = (u16, Option<String>, Option<String>);

/// `GET {url}/v2/` as a registry client begins, connecting to `pin` instead of resolving the
/// name when given (the ingress on this host, whatever DNS says). The certificate is not
/// verified here: whether it is valid is the TLS checks' question, this one asks whether a
/// registry answers behind it.
pub async fn registry_v2(
    url: &str,
    pin: Option<std::net::SocketAddr>,
    timeout: Duration,
) -> Result<RegistryV2, String> {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .danger_accept_invalid_certs(true)
        .timeout(timeout);
    if let Some(addr) = pin {
        let host = reqwest::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .ok_or_else(|| format!("{url}: not a URL with a host"))?;
        b = b.resolve(&host, addr);
    }
    let client = b.build().map_err(|e| e.to_string())?;
    let target = format!("{}/v2/", url.trim_end_matches('/'));
    let resp = client.get(&target).send().await.map_err(|e| {
        if e.is_timeout() {
            format!("no answer within {}s", timeout.as_secs().max(1))
        } else {
            root_cause(&e)
        }
    })?;
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    Ok((
        resp.status().as_u16(),
        header("docker-distribution-api-version"),
        header("www-authenticate"),
    ))
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn serve_once(status: &'static str, body: &'static str) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            if let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            }
        });
        format!("http://{addr}/-/health")
    }

    #[tokio::test]
    async fn http_probe_checks_status_and_body() {
        let c = client();
        let t = Duration::from_secs(2);
        assert_eq!(
            http(
                &c,
                &serve_once("200 OK", "GitLab OK").await,
                200,
                Some("GitLab OK"),
                t
            )
            .await,
            ProbeResult::Pass
        );
        let r = http(
            &c,
            &serve_once("200 OK", "starting").await,
            200,
            Some("GitLab OK"),
            t,
        )
        .await;
        assert!(matches!(r, ProbeResult::Fail(m) if m.contains("does not contain")));
        let r = http(
            &c,
            &serve_once("503 Service Unavailable", "").await,
            200,
            None,
            t,
        )
        .await;
        assert!(matches!(r, ProbeResult::Fail(m) if m.contains("status 503")));
        let r = http(&c, "http://127.0.0.1:1/", 200, None, t).await;
        assert!(!r.passed());
        assert!(!tcp("127.0.0.1:1", t).await.passed());
    }
}
