//! Who may use `guard serve` and how much: the shared-secret token, the refusal to listen
//! beyond loopback without one, and the per-client rate limiter.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::ServiceError;

/// The shared secret clients present (`Proxy-Authorization: Bearer …` or
/// `X-Autogit-Guard-Token: …`). Never printed: `Debug` shows `AuthToken(***)`.
#[derive(Clone)]
pub struct AuthToken(String);

impl std::fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthToken(***)")
    }
}

/// Shortest token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

impl AuthToken {
    /// A token from its text (`source` names where it came from, for the error): surrounding
    /// whitespace is dropped; it must be at least [`MIN_TOKEN_LEN`] visible ASCII characters.
    pub fn new(text: &str, source: &str) -> Result<Self, ServiceError> {
        let t = text.trim();
        if t.len() < MIN_TOKEN_LEN || !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ServiceError::Auth(format!(
                "the token in {source} must be at least {MIN_TOKEN_LEN} visible ASCII characters without spaces (e.g. `openssl rand -hex 32`)"
            )));
        }
        Ok(Self(t.to_owned()))
    }

    /// Reads the token from `path`, which must not be readable by group or others (0600).
    pub fn from_file(path: &Path) -> Result<Self, ServiceError> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| ServiceError::io(path, e))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(ServiceError::Auth(format!(
                "{} has mode {mode:04o}: a token file must be readable by its owner only (chmod 600 {})",
                path.display(),
                path.display()
            )));
        }
        if meta.len() > 4096 {
            return Err(ServiceError::Auth(format!(
                "{} is larger than 4 KiB: it should hold one token",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| ServiceError::io(path, e))?;
        Self::new(&text, &path.display().to_string())
    }

    /// Reads the token from the environment variable `name`.
    pub fn from_env(name: &str) -> Result<Self, ServiceError> {
        match std::env::var(name) {
            Ok(v) => Self::new(&v, &format!("${name}")),
            Err(_) => Err(ServiceError::Auth(format!(
                "the environment variable {name} (named by --auth-token-env) is not set or not UTF-8"
            ))),
        }
    }

    /// Whether `presented` is this token, in time independent of where they differ.
    pub fn matches(&self, presented: &[u8]) -> bool {
        ct_eq(self.0.as_bytes(), presented)
    }
}

/// Constant-time comparison (the time depends only on the lengths).
pub fn ct_eq(expected: &[u8], presented: &[u8]) -> bool {
    let mut diff = u8::from(expected.len() != presented.len());
    for (i, e) in expected.iter().enumerate() {
        diff |= e ^ presented.get(i).copied().unwrap_or(!e);
    }
    diff == 0
}

/// Refuses to serve on a non-loopback address without a token, unless `insecure` (the
/// operator's explicit `--insecure-no-auth`).
pub fn check_exposure(
    addr: SocketAddr,
    has_token: bool,
    insecure: bool,
) -> Result<(), ServiceError> {
    if has_token || insecure || addr.ip().is_loopback() {
        return Ok(());
    }
    Err(ServiceError::Auth(format!(
        "refusing to serve on {addr} without authentication: anyone who reaches it could use the upstream and fill the quarantine; pass --auth-token-file FILE (mode 0600) or --auth-token-env NAME, or --insecure-no-auth if something in front of it authenticates"
    )))
}

/// A token bucket per client address: `rate` requests per second, up to `burst` at once.
#[derive(Debug)]
pub struct RateLimiter<K = IpAddr> {
    rate: f64,
    burst: f64,
    buckets: HashMap<K, (f64, Instant)>,
}

/// How many clients (addresses, keys) are remembered before idle (full) buckets are forgotten.
const MAX_CLIENTS: usize = 10_000;

impl<K: std::hash::Hash + Eq + Clone> RateLimiter<K> {
    /// `rate` ≤ 0 disables the limit.
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst: burst.max(1.0),
            buckets: HashMap::new(),
        }
    }

    /// Takes one token for `client` at `now`; `Err(wait)` when there is none, `wait` being
    /// when the next one is there.
    pub fn take(&mut self, client: K, now: Instant) -> Result<(), Duration> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        if self.buckets.len() >= MAX_CLIENTS && !self.buckets.contains_key(&client) {
            let (rate, burst) = (self.rate, self.burst);
            self.buckets.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (tokens, at) = self.buckets.entry(client).or_insert((self.burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * self.rate)
            .min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_compare() {
        assert!(ct_eq(b"abcdefghijklmnop", b"abcdefghijklmnop"));
        for other in [
            &b"abcdefghijklmnoq"[..],
            b"abcdefghijklmno",
            b"abcdefghijklmnopq",
            b"",
        ] {
            assert!(!ct_eq(b"abcdefghijklmnop", other), "{other:?}");
        }
        assert!(!ct_eq(b"", b"x"));
    }

    #[test]
    fn tokens_are_checked_and_never_shown() {
        let t = AuthToken::new("  0123456789abcdef\n", "test").unwrap();
        assert!(t.matches(b"0123456789abcdef"));
        assert_eq!(format!("{t:?}"), "AuthToken(***)");
        assert!(AuthToken::new("short", "test").is_err());
        assert!(AuthToken::new("0123456789 abcdef", "test").is_err());
    }

    #[test]
    fn loopback_only_without_a_token() {
        let lo: SocketAddr = "127.0.0.1:8787".parse().unwrap();
        let lo6: SocketAddr = "[::1]:8787".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:8787".parse().unwrap();
        let lan: SocketAddr = "192.168.1.5:8787".parse().unwrap();
        let table = [
            (lo, false, false, true),
            (lo6, false, false, true),
            (any, false, false, false),
            (lan, false, false, false),
            (any, true, false, true),
            (any, false, true, true),
        ];
        for (addr, token, insecure, ok) in table {
            assert_eq!(
                check_exposure(addr, token, insecure).is_ok(),
                ok,
                "{addr} {token} {insecure}"
            );
        }
        let e = check_exposure(any, false, false).unwrap_err().to_string();
        assert!(
            e.contains("--auth-token-file") && e.contains("--insecure-no-auth"),
            "{e}"
        );
    }

    #[test]
    fn token_bucket_per_client() {
        let mut r = RateLimiter::new(2.0, 3.0);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(r.take(a, t0).is_ok());
        }
        let wait = r.take(a, t0).unwrap_err();
        assert!(
            wait > Duration::from_millis(400) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        assert!(r.take(b, t0).is_ok(), "another client has its own bucket");
        assert!(
            r.take(a, t0 + Duration::from_millis(500)).is_ok(),
            "refilled"
        );
        let mut off = RateLimiter::new(0.0, 0.0);
        for _ in 0..100 {
            assert!(off.take(a, t0).is_ok());
        }
    }
}
