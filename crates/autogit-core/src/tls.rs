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

/// Days the internal CA (`TLS_SOURCE=internal`) is valid: 10 years.
pub const INTERNAL_CA_DAYS: i64 = 3650;
/// Days a certificate from the internal CA is valid: 90, renewed at two thirds like ACME's.
pub const INTERNAL_LEAF_DAYS: i64 = 90;
/// A user-supplied certificate (`TLS_SOURCE=file`) is warned about this many days before it
/// expires.
pub const FILE_EXPIRY_WARNING_DAYS: i64 = 14;
/// The secret (in the sealed secret store) holding the internal CA's private key.
pub const INTERNAL_CA_KEY_SECRET: &str = "tls-internal-ca-key";
/// The internal CA's certificate under `<data>/tls/`.
pub const INTERNAL_CA_FILE: &str = "internal-ca.pem";

/// The common name of the internal CA of `base_domain`.
pub fn internal_ca_name(base_domain: &str) -> String {
    format!(
        "autogit internal CA {}",
        base_domain.trim_end_matches('.').to_ascii_lowercase()
    )
}

/// Validity (not_before, not_after) of a certificate issued at `now` for `days`: backdated by
/// an hour so that a client whose clock is a little behind accepts it.
pub fn validity(now: i64, days: i64) -> (i64, i64) {
    (now - 3600, now + days * 86_400)
}

/// Whether the internal CA must be made again before issuing at `now`: it is for another
/// domain, or it would expire before a certificate issued now (the leaf must not outlive it).
pub fn internal_ca_stale(ca_name: &str, ca_not_after: i64, base_domain: &str, now: i64) -> bool {
    ca_name != internal_ca_name(base_domain) || ca_not_after < now + INTERNAL_LEAF_DAYS * 86_400
}

/// Whether the certificate name `have` covers the wanted name `want` (both lower case): the
/// same name, or `have` is a wildcard `*.d` and `want` is one label under `d`. A wanted
/// wildcard is covered only by the same wildcard.
pub fn name_covers(have: &str, want: &str) -> bool {
    if have == want {
        return true;
    }
    match (have.strip_prefix("*."), want.split_once('.')) {
        (Some(parent), Some((label, rest))) => {
            !want.starts_with("*.") && !label.is_empty() && rest == parent
        }
        _ => false,
    }
}

/// The first of `wanted` that none of `names` covers.
pub fn first_uncovered<'a>(names: &[String], wanted: &'a [String]) -> Option<&'a str> {
    wanted
        .iter()
        .find(|w| !names.iter().any(|h| name_covers(h, w)))
        .map(String::as_str)
}

/// What is wrong with a user-supplied certificate's validity at `now`, if anything: `Err` when
/// it cannot be served (expired, not yet valid), `Ok(Some(days))` when it expires within
/// [`FILE_EXPIRY_WARNING_DAYS`] (the days left), `Ok(None)` when it is fine.
pub fn file_validity(not_before: i64, not_after: i64, now: i64) -> Result<Option<i64>, String> {
    if now >= not_after {
        return Err(format!(
            "it expired {} day(s) ago",
            (now - not_after) / 86_400
        ));
    }
    if now < not_before {
        return Err(format!(
            "it is not valid for another {} second(s) (is this host's clock behind?)",
            not_before - now
        ));
    }
    let left = not_after - now;
    Ok((left < FILE_EXPIRY_WARNING_DAYS * 86_400).then_some(left / 86_400))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_ca_decisions() {
        assert_eq!(
            internal_ca_name("Test.Internal."),
            "autogit internal CA test.internal"
        );
        let now = 1_000_000_000;
        assert_eq!(validity(now, 90), (now - 3600, now + 90 * 86_400));
        let ca_name = internal_ca_name("test.internal");
        let (_, ca_end) = validity(now, INTERNAL_CA_DAYS);
        assert!(!internal_ca_stale(&ca_name, ca_end, "test.internal", now));
        assert!(internal_ca_stale(&ca_name, ca_end, "other.test", now));
        // Less than a leaf's lifetime left: a new CA.
        assert!(internal_ca_stale(
            &ca_name,
            now + 89 * 86_400,
            "test.internal",
            now
        ));
    }

    #[test]
    fn coverage_of_names() {
        assert!(name_covers("*.example.test", "registry.example.test"));
        assert!(name_covers("*.example.test", "*.example.test"));
        assert!(!name_covers("*.example.test", "example.test"));
        assert!(!name_covers("*.example.test", "a.b.example.test"));
        assert!(!name_covers("*.other.test", "registry.example.test"));
        assert!(!name_covers("registry.example.test", "*.example.test"));
        let wanted = certificate_names("example.test");
        let names = vec!["*.example.test".to_owned(), "example.test".to_owned()];
        assert_eq!(first_uncovered(&names, &wanted), None);
        assert_eq!(first_uncovered(&names[..1], &wanted), Some("example.test"));
        assert_eq!(
            first_uncovered(&["*.other.test".to_owned()], &wanted),
            Some("*.example.test")
        );
    }

    #[test]
    fn user_supplied_validity() {
        let day = 86_400;
        let now = 1_000 * day;
        assert_eq!(file_validity(now - day, now + 30 * day, now), Ok(None));
        assert_eq!(file_validity(now - day, now + 13 * day, now), Ok(Some(13)));
        assert!(
            file_validity(now - 10 * day, now - 2 * day, now)
                .unwrap_err()
                .contains("expired 2 day(s) ago")
        );
        assert!(
            file_validity(now + 60, now + 30 * day, now)
                .unwrap_err()
                .contains("not valid for another 60")
        );
    }

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
