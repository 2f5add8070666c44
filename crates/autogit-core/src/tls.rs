//! Certificates, as data: which names the platform's certificate covers, the ACME directory
//! a setting means, the DNS-01 challenge name, and when to renew.

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
}
