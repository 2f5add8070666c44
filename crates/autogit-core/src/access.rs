//! Access decisions for the REST API, pure: roles, scopes, the API key format, token claims
//! checks, token lifetimes and the login lockout policy. The I/O (hashes, keys, the database)
//! is in `autogit_drivers::auth`; the controller in `autogit_app::access`.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What a caller may do. Ordered: each role may do everything the roles below it may.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads.
    Viewer,
    /// Reads and day-to-day operations (deploy, sync, submit).
    Operator,
    /// Everything, including keys, users, restores and the audit log.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    /// Whether this role may call an operation that requires `required`.
    pub fn allows(self, required: Role) -> bool {
        self >= required
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is none of `viewer`, `operator`, `admin`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown role `{0}`: use viewer, operator or admin")]
pub struct ParseRoleError(pub String);

impl FromStr for Role {
    type Err = ParseRoleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            _ => Err(ParseRoleError(s.chars().take(32).collect())),
        }
    }
}

/// Whether `area` is a valid scope name: the first segment of an operation id (`services` for
/// `services.deploy`): `[a-z][a-z0-9-]*`, at most 32 bytes.
pub fn valid_area(area: &str) -> bool {
    let b = area.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// Whether a credential limited to `scopes` may reach `area`. No scopes means every area.
pub fn scopes_allow(scopes: &[String], area: &str) -> bool {
    scopes.is_empty() || scopes.iter().any(|s| s == area)
}

/// A scope list as given by a user: each valid, duplicates removed, sorted.
pub fn normalize_scopes(scopes: &[String]) -> Result<Vec<String>, String> {
    let mut out = Vec::with_capacity(scopes.len());
    for s in scopes {
        if !valid_area(s) {
            return Err(format!(
                "invalid scope `{}`: a scope is an API area such as `services` or `dns` (lowercase letters, digits and `-`)",
                s.chars().take(40).collect::<String>()
            ));
        }
        out.push(s.clone());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// API keys: `agk_<prefix>_<secret>`.

/// Every API key starts with this.
pub const KEY_TAG: &str = "agk_";
/// Bytes of the public prefix (8 base32 characters).
pub const PREFIX_BYTES: usize = 5;
/// Bytes of the secret part (52 base32 characters).
pub const SECRET_BYTES: usize = 32;
const PREFIX_LEN: usize = 8;
const SECRET_LEN: usize = 52;
const B32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Lowercase RFC 4648 base32 without padding.
pub fn base32_lower(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buf, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buf = (buf << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(B32[((buf >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(B32[((buf << (5 - bits)) & 31) as usize]));
    }
    out
}

/// The text of an API key from its random parts.
pub fn format_api_key(prefix: &[u8; PREFIX_BYTES], secret: &[u8; SECRET_BYTES]) -> String {
    format!("{KEY_TAG}{}_{}", base32_lower(prefix), base32_lower(secret))
}

/// The public prefix of a key (`agk_1a2b3c4d` → `1a2b3c4d`'s owner is `agk_1a2b3c4d`).
pub fn key_id(prefix: &str) -> String {
    format!("{KEY_TAG}{prefix}")
}

/// Splits an API key into its public prefix and its secret, checking the shape only.
pub fn parse_api_key(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix(KEY_TAG)?;
    let (prefix, secret) = rest.split_once('_')?;
    let ok = |s: &str, len: usize| s.len() == len && s.bytes().all(|c| B32.contains(&c));
    (ok(prefix, PREFIX_LEN) && ok(secret, SECRET_LEN)).then_some((prefix, secret))
}

/// Accepts `agk_1a2b3c4d` or `1a2b3c4d` (as `api-key list` shows it) and gives the prefix.
pub fn parse_key_prefix(text: &str) -> Option<&str> {
    let p = text.strip_prefix(KEY_TAG).unwrap_or(text);
    (p.len() == PREFIX_LEN && p.bytes().all(|c| B32.contains(&c))).then_some(p)
}

/// Why a stored key or user may not be used now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    Valid,
    Revoked,
    Expired,
}

/// Whether a key with these dates is usable at `now`.
pub fn standing(expires_at: Option<i64>, revoked_at: Option<i64>, now: i64) -> Standing {
    if revoked_at.is_some() {
        Standing::Revoked
    } else if expires_at.is_some_and(|e| now >= e) {
        Standing::Expired
    } else {
        Standing::Valid
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens.

/// Issuer of every token autogit signs.
pub const ISSUER: &str = "autogit";
/// Audience of the REST API's tokens.
pub const AUDIENCE: &str = "autogit-api";
/// Lifetime of a token when none is asked for.
pub const DEFAULT_TOKEN_TTL: i64 = 15 * 60;
/// Longest lifetime of a token; signing keys stay valid for verification this long after
/// rotation.
pub const MAX_TOKEN_TTL: i64 = 24 * 3600;
/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY: i64 = 30;

/// The claims of an autogit token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// `key:agk_…` or `user:…`.
    pub sub: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: String,
}

/// Why claims are refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClaimsError {
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was not issued by autogit")]
    WrongIssuer,
    #[error("the token is not meant for this API")]
    WrongAudience,
    #[error("the token's lifetime is longer than autogit issues")]
    TooLong,
}

/// Checks issuer, audience and times at `now` (with [`LEEWAY`]).
pub fn check_claims(c: &Claims, now: i64) -> Result<(), ClaimsError> {
    if c.iss != ISSUER {
        return Err(ClaimsError::WrongIssuer);
    }
    if c.aud != AUDIENCE {
        return Err(ClaimsError::WrongAudience);
    }
    if now >= c.exp.saturating_add(LEEWAY) {
        return Err(ClaimsError::Expired);
    }
    if now.saturating_add(LEEWAY) < c.nbf || now.saturating_add(LEEWAY) < c.iat {
        return Err(ClaimsError::NotYetValid);
    }
    if c.exp.saturating_sub(c.iat) > MAX_TOKEN_TTL || c.exp < c.iat {
        return Err(ClaimsError::TooLong);
    }
    Ok(())
}

/// A requested lifetime outside 1 s ..= [`MAX_TOKEN_TTL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a token lives between 1 second and 24 hours; {0} s was asked for")]
pub struct TtlError(pub u64);

/// When a token issued at `now` with `requested` lifetime (seconds) expires: never after the
/// credential it was issued from (`cap`).
pub fn token_expiry(now: i64, requested: Option<u64>, cap: Option<i64>) -> Result<i64, TtlError> {
    let ttl = match requested {
        None => DEFAULT_TOKEN_TTL,
        Some(s) if s == 0 || s > MAX_TOKEN_TTL as u64 => return Err(TtlError(s)),
        Some(s) => s as i64,
    };
    let exp = now.saturating_add(ttl);
    Ok(cap.map_or(exp, |c| exp.min(c)))
}

// ---------------------------------------------------------------------------------------------
// Login lockout.

/// Consecutive failed logins for one user (per provider) that are free; each one after
/// locks the account for a doubling time.
pub const FREE_FAILURES: u32 = 5;
/// The first lock.
pub const FIRST_LOCK_SECS: i64 = 30;
/// The longest lock.
pub const MAX_LOCK_SECS: i64 = 15 * 60;
/// Failures older than this are forgotten.
pub const FAILURE_WINDOW_SECS: i64 = 60 * 60;

/// How long an account is locked after its `failures`-th consecutive failure: nothing for the
/// first [`FREE_FAILURES`], then 30 s, 60 s, 120 s, ... up to 15 min.
pub fn lock_secs(failures: u32) -> i64 {
    if failures < FREE_FAILURES {
        return 0;
    }
    let doublings = (failures - FREE_FAILURES).min(16);
    (FIRST_LOCK_SECS << doublings).min(MAX_LOCK_SECS)
}

/// The failure count to carry on from, given the last failure's time: a quiet hour resets it.
pub fn failures_now(failures: u32, last_failure_at: i64, now: i64) -> u32 {
    if now.saturating_sub(last_failure_at) >= FAILURE_WINDOW_SECS {
        0
    } else {
        failures
    }
}

/// Whether a user locked until `locked_until` must wait at `now`, and how long.
pub fn locked_for(locked_until: Option<i64>, now: i64) -> Option<i64> {
    locked_until.filter(|u| *u > now).map(|u| u - now)
}

/// Whether `name` may be a local user name: `[a-z0-9][a-z0-9._-]*`, at most 64 bytes.
pub fn valid_user_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')
        })
}

/// Whether `name` may name an API key: printable, 1 to 64 characters, no control characters.
pub fn valid_key_name(name: &str) -> bool {
    let n = name.chars().count();
    (1..=64).contains(&n) && !name.chars().any(char::is_control) && name.trim() == name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_round_trip() {
        let table = [
            (Role::Viewer, Role::Viewer, true),
            (Role::Viewer, Role::Operator, false),
            (Role::Viewer, Role::Admin, false),
            (Role::Operator, Role::Viewer, true),
            (Role::Operator, Role::Operator, true),
            (Role::Operator, Role::Admin, false),
            (Role::Admin, Role::Viewer, true),
            (Role::Admin, Role::Operator, true),
            (Role::Admin, Role::Admin, true),
        ];
        for (have, need, ok) in table {
            assert_eq!(have.allows(need), ok, "{have} for {need}");
        }
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
            assert_eq!(r.to_string(), r.as_str());
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
        let err = "Admin".parse::<Role>().unwrap_err().to_string();
        assert!(err.contains("viewer, operator or admin"), "{err}");
    }

    #[test]
    fn scopes() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(scopes_allow(&[], "services"));
        assert!(scopes_allow(&s(&["dns", "services"]), "services"));
        assert!(!scopes_allow(&s(&["dns"]), "services"));
        assert!(!scopes_allow(&s(&["service"]), "services"));
        assert_eq!(
            normalize_scopes(&s(&["services", "dns", "dns"])).unwrap(),
            s(&["dns", "services"])
        );
        for bad in ["", "Services", "a b", "../x", "services.deploy", "-x"] {
            assert!(normalize_scopes(&s(&[bad])).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn key_format() {
        assert_eq!(base32_lower(b"foobar"), "mzxw6ytboi");
        assert_eq!(base32_lower(&[0xff; 5]), "77777777");
        let key = format_api_key(&[1, 2, 3, 4, 5], &[7; 32]);
        let (prefix, secret) = parse_api_key(&key).unwrap();
        assert_eq!(prefix.len(), 8);
        assert_eq!(secret.len(), 52);
        assert_eq!(parse_key_prefix(&key_id(prefix)), Some(prefix));
        assert_eq!(parse_key_prefix(prefix), Some(prefix));
        for bad in [
            "",
            "agk_",
            "agk_abcdefgh",
            "agk_abcdefgh_short",
            "agk_ABCDEFGH_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "xyz_abcdefgh_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "agk_abcdefgh_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1",
        ] {
            assert!(parse_api_key(bad).is_none(), "{bad}");
        }
        assert_eq!(standing(None, None, 10), Standing::Valid);
        assert_eq!(standing(Some(11), None, 10), Standing::Valid);
        assert_eq!(standing(Some(10), None, 10), Standing::Expired);
        assert_eq!(standing(Some(11), Some(5), 10), Standing::Revoked);
    }

    fn claims(iat: i64, exp: i64) -> Claims {
        Claims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub: "user:alice".into(),
            role: Role::Viewer,
            scopes: vec![],
            iat,
            nbf: iat,
            exp,
            jti: "j".into(),
        }
    }

    #[test]
    fn claims_table() {
        let now = 1_000_000;
        let mut wrong_iss = claims(now, now + 60);
        wrong_iss.iss = "someone".into();
        let mut wrong_aud = claims(now, now + 60);
        wrong_aud.aud = "gitlab".into();
        let mut later_nbf = claims(now, now + 600);
        later_nbf.nbf = now + 120;
        let table: Vec<(&str, Claims, Result<(), ClaimsError>)> = vec![
            ("fresh", claims(now, now + 60), Ok(())),
            (
                "expired",
                claims(now - 120, now - 60),
                Err(ClaimsError::Expired),
            ),
            ("expired within leeway", claims(now - 120, now - 10), Ok(())),
            (
                "issued in the future",
                claims(now + 120, now + 600),
                Err(ClaimsError::NotYetValid),
            ),
            (
                "slightly in the future",
                claims(now + 10, now + 600),
                Ok(()),
            ),
            ("nbf later", later_nbf, Err(ClaimsError::NotYetValid)),
            ("wrong iss", wrong_iss, Err(ClaimsError::WrongIssuer)),
            ("wrong aud", wrong_aud, Err(ClaimsError::WrongAudience)),
            (
                "too long",
                claims(now, now + MAX_TOKEN_TTL + 1),
                Err(ClaimsError::TooLong),
            ),
        ];
        for (name, c, want) in table {
            assert_eq!(check_claims(&c, now), want, "{name}");
        }
    }

    #[test]
    fn token_lifetimes() {
        assert_eq!(token_expiry(100, None, None), Ok(100 + DEFAULT_TOKEN_TTL));
        assert_eq!(token_expiry(100, Some(60), None), Ok(160));
        assert_eq!(token_expiry(100, Some(3600), Some(200)), Ok(200));
        assert_eq!(token_expiry(100, Some(0), None), Err(TtlError(0)));
        assert!(token_expiry(100, Some(86_401), None).is_err());
        assert_eq!(token_expiry(100, Some(86_400), None), Ok(86_500));
    }

    #[test]
    fn lockout_policy() {
        let table = [
            (0, 0),
            (4, 0),
            (5, 30),
            (6, 60),
            (7, 120),
            (9, 480),
            (10, 900),
            (40, 900),
        ];
        for (failures, secs) in table {
            assert_eq!(lock_secs(failures), secs, "{failures}");
        }
        assert_eq!(failures_now(7, 1000, 1000 + 3599), 7);
        assert_eq!(failures_now(7, 1000, 1000 + 3600), 0);
        assert_eq!(locked_for(Some(150), 100), Some(50));
        assert_eq!(locked_for(Some(100), 100), None);
        assert_eq!(locked_for(None, 100), None);
    }

    #[test]
    fn names() {
        assert!(valid_user_name("alice"));
        assert!(valid_user_name("a.b-c_1"));
        for bad in ["", "Alice", "-a", "a b", "a/b", &"a".repeat(65)] {
            assert!(!valid_user_name(bad), "{bad}");
        }
        assert!(valid_key_name("CI deploy key"));
        for bad in ["", " x", "x\n", &"k".repeat(65)] {
            assert!(!valid_key_name(bad), "{bad:?}");
        }
    }
}
