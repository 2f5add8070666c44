//! Certificates, as data: which names the platform's certificate covers, the ACME directory
//! a setting means, the DNS-01 challenge name, when to renew, where the account of a directory
//! is kept and how long the CA may take.

use std::time::Duration;

/// Let's Encrypt's production directory.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory (untrusted certificates, generous rate limits).
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// The directory URL for `ACME_DIRECTORY` (`production`, `staging` or a URL).
pub fn directory_url(setting: &str) -> &str {
    match setting {
        "staging" => LETS_ENCRYPT_STAGING,
        "production" | "" => LETS_ENCRYPT,
        url => url,
    }
}

/// The names of the platform certificate: the wildcard and the apex, in one order.
pub fn certificate_names(base_domain: &str) -> Vec<String> {
    let d = base_domain.trim_end_matches('.').to_ascii_lowercase();
    vec![format!("*.{d}"), d]
}

/// Where the DNS-01 TXT record of `identifier` goes (`*.example.com` and `example.com` share
/// `_acme-challenge.example.com`, so a provider must add values, not replace them).
pub fn challenge_name(identifier: &str) -> String {
    let d = identifier.trim_end_matches('.').to_ascii_lowercase();
    format!("_acme-challenge.{}", d.strip_prefix("*.").unwrap_or(&d))
}

/// Whether a certificate valid from `not_before` to `not_after` (unix seconds) is due for
/// renewal at `now`: after two thirds of its lifetime (day 60 of Let's Encrypt's 90), or when
/// it does not cover the wanted names.
pub fn renewal_due(not_before: i64, not_after: i64, now: i64, covers_names: bool) -> bool {
    if !covers_names || not_after <= not_before {
        return true;
    }
    now >= not_before + (not_after - not_before) * 2 / 3
}

/// When to try again after the `failures`-th failed renewal in a row (counted from 1): 5
/// minutes after the first, doubling up to 6 hours, but never later than a day before expiry.
/// The old certificate keeps serving.
pub fn retry_after(failures: u32, now: i64, not_after: i64) -> i64 {
    let backoff = (300i64 << failures.saturating_sub(1).min(7)).min(6 * 3600);
    (now + backoff).min((not_after - 86_400).max(now + 60))
}

/// The file (under `<data>/tls/`) holding the ACME account of `directory`: one account per
/// directory, so switching `ACME_DIRECTORY` (staging → production, another CA) registers a new
/// account instead of silently going on with the old CA. Readable (`acme-account.<host>.` and
/// 16 hex digits of the URL's FNV-1a hash), stable across runs and versions.
pub fn account_file_name(directory: &str) -> String {
    let rest = directory
        .split_once("://")
        .map_or(directory, |(_, rest)| rest);
    let host: String = rest
        .split(['/', '?', '#'])
        .next()
        .unwrap_or("")
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    let host = if host.is_empty() {
        "ca".to_owned()
    } else {
        host
    };
    format!(
        "acme-account.{host}.{:016x}.json",
        crate::container::fnv1a(directory.as_bytes())
    )
}

/// The longest one request to the CA may take (connect, TLS, answer): a CA that accepts and
/// never answers fails the request after this. Never longer than the order timeout.
pub fn acme_request_timeout(order_timeout: Duration) -> Duration {
    order_timeout.min(Duration::from_secs(30))
}

/// The deadline of one whole issuance: the challenge records may take `propagation` to appear,
/// the order `order` to become ready and again `order` to deliver the certificate, and the
/// dozen other requests (directory, account, order, authorizations, challenges, finalize) one
/// request timeout each.
pub fn acme_issuance_deadline(propagation: Duration, order: Duration) -> Duration {
    propagation + order * 2 + acme_request_timeout(order) * 12
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_directories() {
        assert_eq!(
            certificate_names("Example.COM."),
            ["*.example.com", "example.com"]
        );
        assert_eq!(
            challenge_name("*.example.com"),
            "_acme-challenge.example.com"
        );
        assert_eq!(challenge_name("example.com"), "_acme-challenge.example.com");
        assert_eq!(
            challenge_name("git.example.com"),
            "_acme-challenge.git.example.com"
        );
        assert_eq!(directory_url("staging"), LETS_ENCRYPT_STAGING);
        assert_eq!(directory_url("production"), LETS_ENCRYPT);
        assert_eq!(directory_url("https://ca.lan/dir"), "https://ca.lan/dir");
    }

    #[test]
    fn renewal_at_two_thirds() {
        let day = 86_400;
        let (nb, na) = (0, 90 * day);
        assert!(!renewal_due(nb, na, 59 * day, true));
        assert!(renewal_due(nb, na, 60 * day, true));
        assert!(renewal_due(nb, na, 91 * day, true));
        assert!(renewal_due(nb, na, day, false), "names changed");
        assert!(renewal_due(na, nb, day, true), "nonsense validity");
    }

    #[test]
    fn retries_back_off_but_not_past_expiry() {
        let now = 1_000_000;
        // The first failure is retried after 5 minutes, as docs/config.md says.
        assert_eq!(retry_after(1, now, now + 90 * 86_400), now + 300);
        assert_eq!(retry_after(2, now, now + 90 * 86_400), now + 600);
        assert_eq!(retry_after(3, now, now + 90 * 86_400), now + 1200);
        assert_eq!(retry_after(20, now, now + 90 * 86_400), now + 6 * 3600);
        assert_eq!(retry_after(20, now, now + 86_400 + 1000), now + 1000);
        assert_eq!(retry_after(20, now, now + 10), now + 60);
    }

    #[test]
    fn one_account_file_per_directory() {
        let cases = [
            (LETS_ENCRYPT, "acme-account.acme-v02.api.letsencrypt.org."),
            (
                LETS_ENCRYPT_STAGING,
                "acme-account.acme-staging-v02.api.letsencrypt.org.",
            ),
            (
                "https://127.0.0.1:14000/dir",
                "acme-account.127.0.0.1-14000.",
            ),
            ("https://[::1]:9/dir", "acme-account.---1--9."),
            ("not a url", "acme-account.not-a-url."),
            ("", "acme-account.ca."),
        ];
        for (dir, prefix) in cases {
            let name = account_file_name(dir);
            assert!(name.starts_with(prefix), "{dir}: {name}");
            assert!(name.ends_with(".json"), "{name}");
            assert_eq!(name.len(), prefix.len() + 16 + 5, "{name}");
            assert_eq!(account_file_name(dir), name, "stable");
        }
        // Same host, other path: another account.
        assert_ne!(
            account_file_name("https://ca.lan/a/dir"),
            account_file_name("https://ca.lan/b/dir")
        );
        assert_ne!(
            account_file_name(LETS_ENCRYPT),
            account_file_name(LETS_ENCRYPT_STAGING)
        );
        assert!(!account_file_name("https://x/../../etc/passwd").contains('/'));
    }

    #[test]
    fn every_request_and_the_issuance_are_bounded() {
        let s = Duration::from_secs;
        assert_eq!(acme_request_timeout(s(180)), s(30));
        assert_eq!(acme_request_timeout(s(2)), s(2));
        assert_eq!(acme_issuance_deadline(s(180), s(180)), s(180 + 360 + 360));
        assert_eq!(acme_issuance_deadline(s(1), s(2)), s(1 + 4 + 24));
    }
}
