//! Listing the repositories of a GitHub user or organization (REST v3), following `Link`
//! pagination. Errors say what happened: a rejected token (401), no access (403), the rate limit
//! (403/429 with `x-ratelimit-remaining: 0`, with the reset time), an unknown owner (404).
//! The token goes only to the API origin: a `next` link elsewhere is refused.

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::time::Duration;

pub const DEFAULT_API: &str = "https://api.github.com";

/// Tries of one request under a secondary rate limit (the first one included).
const RATE_LIMIT_TRIES: u32 = 3;
/// The longest `retry-after` waited for; a longer one is reported.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    #[error("GitHub API URL `{0}` is not an http(s) URL")]
    Url(String),
    #[error(
        "refusing to send the token to {0} over plain http: only a loopback address may be reached without TLS; use an https api_url"
    )]
    TokenOverHttp(String),
    #[error("GitHub rejected the token for {path} (401): check the token_env variable")]
    Unauthorized { path: String },
    #[error(
        "GitHub API rate limit reached on {path}; {}{}",
        match (reset, retry_after) {
            (r, _) if *r > 0 => format!("it resets at {r} (unix time)"),
            (_, Some(s)) => format!("GitHub asks to wait {s} s (a secondary rate limit)"),
            _ => "wait at least a minute before trying again (a secondary rate limit)".to_owned(),
        },
        if *authenticated { "" } else { "; set token_env for a higher limit" }
    )]
    RateLimited {
        path: String,
        /// `x-ratelimit-reset` (unix time) when the primary limit is used up; else 0.
        reset: u64,
        /// `retry-after` (seconds), a secondary limit's wait.
        retry_after: Option<u64>,
        authenticated: bool,
    },
    #[error("GitHub refused {path} (403): {message}")]
    Forbidden { path: String, message: String },
    #[error("GitHub has no user or organization for {path} (404)")]
    NotFound { path: String },
    #[error("GitHub answered {status} for {path}: {message}")]
    Status {
        path: String,
        status: u16,
        message: String,
    },
    #[error("GitHub API {path}: {message}")]
    Transport { path: String, message: String },
    #[error("GitHub's next-page link points to another host ({0}); not followed")]
    ForeignLink(String),
}

/// Whose repositories.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    User(String),
    Org(String),
}

/// What a mirror needs to know about a repository.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct RemoteRepo {
    pub name: String,
    pub full_name: String,
    /// Not required by GitHub's schema (`minimal-repository`); when absent it is derived
    /// from `html_url` (required there), see [`RemoteRepo::clone_url`].
    #[serde(default)]
    pub clone_url: Option<String>,
    #[serde(default)]
    pub html_url: Option<String>,
    #[serde(default)]
    pub fork: bool,
    /// `None` when GitHub's answer has no `archived` (`minimal-repository` does not require
    /// it): unknown, not false.
    #[serde(default)]
    pub archived: Option<bool>,
    #[serde(default)]
    pub private: bool,
}

impl RemoteRepo {
    /// The https clone URL: `clone_url`, else `html_url` + `.git` (the same URL GitHub
    /// gives as `clone_url`); `None` when the answer has neither.
    pub fn clone_url(&self) -> Option<String> {
        if let Some(u) = self.clone_url.as_deref().filter(|u| !u.is_empty()) {
            return Some(u.to_owned());
        }
        let html = self.html_url.as_deref().filter(|u| !u.is_empty())?;
        Some(format!("{}.git", html.trim_end_matches('/')))
    }
}

pub struct GitHub {
    http: reqwest::Client,
    api: Url,
    token: Option<SecretString>,
}

impl std::fmt::Debug for GitHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHub")
            .field("api", &self.api.as_str())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl GitHub {
    pub fn new(api: &str, token: Option<SecretString>) -> Result<GitHub, GitHubError> {
        let api = Url::parse(&format!("{}/", api.trim_end_matches('/')))
            .map_err(|_| GitHubError::Url(api.into()))?;
        if !matches!(api.scheme(), "http" | "https") || !api.username().is_empty() {
            return Err(GitHubError::Url(api.to_string()));
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("autogit/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| GitHubError::Url(e.to_string()))?;
        Ok(GitHub { http, api, token })
    }

    /// Every repository of the owner, all pages.
    ///
    /// `GET /users/{username}/repos` lists public repositories only
    /// (<https://docs.github.com/en/rest/repos/repos#list-repositories-for-a-user>). When the
    /// token belongs to that user (`GET /user`'s `login`), `GET /user/repos?affiliation=owner`
    /// is listed instead, which includes the private ones
    /// (<https://docs.github.com/en/rest/repos/repos#list-repositories-for-the-authenticated-user>).
    pub async fn list(&self, owner: &Owner) -> Result<Vec<RemoteRepo>, GitHubError> {
        let first = match owner {
            Owner::User(u) if self.token_owner_is(u).await? => {
                "user/repos?per_page=100&affiliation=owner".to_owned()
            }
            Owner::User(u) => format!("users/{}/repos?per_page=100&type=owner", enc(u)),
            Owner::Org(o) => format!("orgs/{}/repos?per_page=100&type=all", enc(o)),
        };
        let mut url = self
            .api
            .join(&first)
            .map_err(|_| GitHubError::Url(first.clone()))?;
        let mut out = Vec::new();
        for _ in 0..1000 {
            let (items, next) = self.page(url.clone()).await?;
            out.extend(items);
            match next {
                Some(n) => {
                    if n.origin() != self.api.origin() {
                        return Err(GitHubError::ForeignLink(n.origin().ascii_serialization()));
                    }
                    url = n;
                }
                None => return Ok(out),
            }
        }
        Ok(out)
    }

    /// Whether the token is `username`'s (`GET /user`). Without a token, or with one that
    /// cannot read `/user` (403: a token without that permission), no.
    async fn token_owner_is(&self, username: &str) -> Result<bool, GitHubError> {
        #[derive(Deserialize)]
        struct Me {
            login: String,
        }
        if self.token.is_none() {
            return Ok(false);
        }
        let url = self
            .api
            .join("user")
            .map_err(|_| GitHubError::Url("user".into()))?;
        match self.get_json::<Me>(url).await {
            Ok((me, _)) => Ok(me.login.eq_ignore_ascii_case(username)),
            Err(GitHubError::Forbidden { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn page(&self, url: Url) -> Result<(Vec<RemoteRepo>, Option<Url>), GitHubError> {
        let (items, headers) = self.get_json(url).await?;
        Ok((items, next_link(&headers)))
    }

    /// One GET, repeated after a secondary rate limit's `retry-after` when that is short
    /// (<https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api#exceeding-the-rate-limit>:
    /// do not retry before `retry-after` seconds; with `x-ratelimit-remaining: 0`, not before
    /// `x-ratelimit-reset`, which is reported instead of waited for).
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: Url,
    ) -> Result<(T, HeaderMap), GitHubError> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.get_json_once(url.clone()).await {
                Err(GitHubError::RateLimited {
                    reset: 0,
                    retry_after: Some(s),
                    ..
                }) if tries < RATE_LIMIT_TRIES && s <= MAX_RETRY_AFTER.as_secs() => {
                    tokio::time::sleep(Duration::from_secs(s)).await;
                }
                r => return r,
            }
        }
    }

    async fn get_json_once<T: serde::de::DeserializeOwned>(
        &self,
        url: Url,
    ) -> Result<(T, HeaderMap), GitHubError> {
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        if self.token.is_some() && crate::gitlab::client::cleartext_to_remote(&url) {
            return Err(GitHubError::TokenOverHttp(
                url.origin().ascii_serialization(),
            ));
        }
        let mut req = self
            .http
            .get(url)
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28");
        if let Some(t) = &self.token {
            let mut v = HeaderValue::from_str(&format!("Bearer {}", t.expose_secret()))
                .map_err(|_| GitHubError::Url("the token is not a valid header value".into()))?;
            v.set_sensitive(true);
            req = req.header("authorization", v);
        }
        let resp = req.send().await.map_err(|e| GitHubError::Transport {
            path: path.clone(),
            message: chain(e),
        })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.text().await.map_err(|e| GitHubError::Transport {
            path: path.clone(),
            message: chain(e),
        })?;
        if !status.is_success() {
            return Err(self.error(path, status, &headers, &body));
        }
        let items: T = serde_json::from_str(&body).map_err(|e| GitHubError::Transport {
            path: path.clone(),
            message: format!("unexpected answer: {e}"),
        })?;
        Ok((items, headers))
    }

    fn error(&self, path: String, status: StatusCode, h: &HeaderMap, body: &str) -> GitHubError {
        let header = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).map(str::trim);
        let message = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| body.chars().take(200).collect());
        let exhausted = header("x-ratelimit-remaining") == Some("0");
        let retry_after = header("retry-after").and_then(|v| v.parse::<u64>().ok());
        let limited = exhausted
            || retry_after.is_some()
            || status == StatusCode::TOO_MANY_REQUESTS
            || message.contains("rate limit");
        match status.as_u16() {
            401 => GitHubError::Unauthorized { path },
            403 | 429 if limited => GitHubError::RateLimited {
                path,
                reset: if exhausted {
                    header("x-ratelimit-reset")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0)
                } else {
                    0
                },
                retry_after,
                authenticated: self.token.is_some(),
            },
            403 => GitHubError::Forbidden { path, message },
            404 => GitHubError::NotFound { path },
            s => GitHubError::Status {
                path,
                status: s,
                message,
            },
        }
    }
}

/// The error and its causes, without the URL (the path is named separately).
fn chain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        msg.push_str(": ");
        msg.push_str(&c.to_string());
        cause = c.source();
    }
    msg
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The `rel="next"` target of a `Link` header.
pub fn next_link(h: &HeaderMap) -> Option<Url> {
    let link = h.get("link")?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim() == "rel=\"next\"")
            .then(|| {
                target
                    .trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned()
            })
            .and_then(|u| Url::parse(&u).ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            "link",
            HeaderValue::from_static(
                "<https://api.github.com/user/1/repos?page=2>; rel=\"next\", <https://api.github.com/user/1/repos?page=5>; rel=\"last\"",
            ),
        );
        assert_eq!(
            next_link(&h).unwrap().as_str(),
            "https://api.github.com/user/1/repos?page=2"
        );
        h.insert(
            "link",
            HeaderValue::from_static("<https://api.github.com/x?page=1>; rel=\"prev\""),
        );
        assert_eq!(next_link(&h), None);
    }
}
