//! The OIDC login's decisions (`docs/dashboard.md`, "OIDC"): its settings from `.env` (errors
//! name the key and what is valid), the authorization request (code flow, PKCE S256, `state`
//! and `nonce`), and the checks of the ID token's claims (`iss`, `aud`/`azp`, `exp`, `nbf`,
//! `iat`, `nonce`), the username and the groups claim mapped to a role. Signatures, discovery
//! and the token exchange are `autogit_drivers::auth::oidc`'s.

use crate::access::Role;
use crate::ldap::{Group, SettingError, parse_roles, role_for};
use serde_json::Value;

/// Clock skew allowed on `exp`, `nbf` and `iat` (seconds).
pub const LEEWAY: i64 = 60;
/// How long a started login may take to come back (seconds).
pub const PENDING_TTL: i64 = 600;

/// The OIDC provider's settings (`OIDC_*`). The client secret is read by the application
/// (`OIDC_CLIENT_SECRET` or `OIDC_CLIENT_SECRET_FILE`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcSettings {
    /// The issuer as the discovery document must state it, without a trailing `/`.
    pub issuer: String,
    pub client_id: String,
    /// The dashboard's callback URL, registered with the provider.
    pub redirect_url: String,
    pub scopes: Vec<String>,
    pub username_claim: String,
    pub groups_claim: String,
    pub roles: Vec<(String, Role)>,
    pub timeout_secs: u64,
}

fn bad(key: &'static str, problem: impl Into<String>) -> SettingError {
    SettingError {
        key,
        problem: problem.into(),
    }
}

/// Whether `url` is https, or http to a loopback host (a provider on the same machine).
fn acceptable_url(url: &str) -> bool {
    if let Some(rest) = url.strip_prefix("https://") {
        return !rest.is_empty() && !rest.starts_with('/');
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or("");
    let host = authority
        .rsplit_once(':')
        .filter(|(h, p)| !h.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        .map_or(authority, |(h, _)| h);
    matches!(host, "127.0.0.1" | "localhost" | "[::1]")
}

/// Reads the `OIDC_*` settings through `get`. `Ok(None)` when `OIDC_ISSUER` is unset.
pub fn settings(
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<OidcSettings>, SettingError> {
    let get = |k: &str| {
        get(k)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let Some(issuer) = get("OIDC_ISSUER") else {
        for k in ["OIDC_CLIENT_ID", "OIDC_REDIRECT_URL", "OIDC_ROLES"] {
            if get(k).is_some() {
                return Err(bad(
                    "OIDC_ISSUER",
                    format!(
                        "{k} is set but OIDC_ISSUER is not: set the provider's issuer URL (https://login.example.org/realms/main)"
                    ),
                ));
            }
        }
        return Ok(None);
    };
    let issuer = issuer.trim_end_matches('/').to_owned();
    if !acceptable_url(&issuer) {
        return Err(bad(
            "OIDC_ISSUER",
            format!("`{issuer}` is not an https:// URL (http:// only to 127.0.0.1 or localhost)"),
        ));
    }
    let client_id = get("OIDC_CLIENT_ID").ok_or_else(|| {
        bad(
            "OIDC_CLIENT_ID",
            "unset: the client id autogit's dashboard is registered with at the provider",
        )
    })?;
    let redirect_url = get("OIDC_REDIRECT_URL").ok_or_else(|| {
        bad(
            "OIDC_REDIRECT_URL",
            "unset: the dashboard's callback, e.g. https://dash.example.org/login/oidc/callback",
        )
    })?;
    if !acceptable_url(&redirect_url) || !redirect_url.ends_with("/login/oidc/callback") {
        return Err(bad(
            "OIDC_REDIRECT_URL",
            format!("`{redirect_url}` is not https://<dashboard host>/login/oidc/callback"),
        ));
    }
    let scopes: Vec<String> = get("OIDC_SCOPES")
        .unwrap_or_else(|| "openid profile groups".into())
        .split([' ', ','])
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if !scopes.iter().any(|s| s == "openid") {
        return Err(bad("OIDC_SCOPES", "must include `openid`"));
    }
    let roles = parse_roles(&get("OIDC_ROLES").unwrap_or_default()).map_err(|e| SettingError {
        key: "OIDC_ROLES",
        problem: e.problem.replace("LDAP_ROLES", "OIDC_ROLES"),
    })?;
    let timeout_secs = match get("OIDC_TIMEOUT") {
        None => 10,
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|n| (1..=60).contains(n))
            .ok_or_else(|| bad("OIDC_TIMEOUT", format!("`{v}` is not 1 to 60 (seconds)")))?,
    };
    Ok(Some(OidcSettings {
        issuer,
        client_id,
        redirect_url,
        scopes,
        username_claim: get("OIDC_USERNAME_CLAIM").unwrap_or_else(|| "preferred_username".into()),
        groups_claim: get("OIDC_GROUPS_CLAIM").unwrap_or_else(|| "groups".into()),
        roles,
        timeout_secs,
    }))
}

/// `application/x-www-form-urlencoded` / query component encoding (RFC 3986 unreserved kept).
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The authorization request's URL: code flow, PKCE S256 (`challenge` is the base64url
/// SHA-256 of the verifier), `state` and `nonce`.
pub fn authorize_url(
    endpoint: &str,
    s: &OidcSettings,
    state: &str,
    nonce: &str,
    challenge: &str,
) -> String {
    let sep = if endpoint.contains('?') { '&' } else { '?' };
    let q = [
        ("response_type", "code"),
        ("client_id", s.client_id.as_str()),
        ("redirect_uri", s.redirect_url.as_str()),
        ("scope", &s.scopes.join(" ")),
        ("state", state),
        ("nonce", nonce),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={}", form_encode(v)))
    .collect::<Vec<_>>()
    .join("&");
    format!("{endpoint}{sep}{q}")
}

/// Why an ID token's claims are refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClaimsError {
    #[error("the ID token was issued by `{0}`, not the configured OIDC_ISSUER")]
    WrongIssuer(String),
    #[error("the ID token is not meant for this client (aud/azp is not OIDC_CLIENT_ID)")]
    WrongAudience,
    #[error("the ID token has expired")]
    Expired,
    #[error("the ID token is not valid yet (check the clocks)")]
    NotYetValid,
    #[error("the ID token's nonce is not this login's")]
    WrongNonce,
    #[error("the ID token has no `{0}` claim (a string)")]
    Missing(String),
}

/// Who the ID token says logged in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcIdentity {
    pub username: String,
    pub groups: Vec<String>,
    /// The token's `exp`.
    pub expires_at: i64,
}

fn num(claims: &Value, k: &str) -> Option<i64> {
    claims.get(k).and_then(Value::as_i64)
}

/// Checks an ID token's claims (its signature already verified) against the settings, this
/// login's `nonce` and `now` (OpenID Connect Core 1.0, section 3.1.3.7).
pub fn check_claims(
    claims: &Value,
    s: &OidcSettings,
    nonce: &str,
    now: i64,
) -> Result<OidcIdentity, ClaimsError> {
    let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
    if iss.trim_end_matches('/') != s.issuer {
        return Err(ClaimsError::WrongIssuer(iss.chars().take(200).collect()));
    }
    let aud: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !aud.contains(&s.client_id.as_str()) {
        return Err(ClaimsError::WrongAudience);
    }
    let azp = claims.get("azp").and_then(Value::as_str);
    if (aud.len() > 1 || azp.is_some()) && azp != Some(s.client_id.as_str()) {
        return Err(ClaimsError::WrongAudience);
    }
    let exp = num(claims, "exp").ok_or_else(|| ClaimsError::Missing("exp".into()))?;
    if now > exp + LEEWAY {
        return Err(ClaimsError::Expired);
    }
    if num(claims, "nbf").is_some_and(|n| n > now + LEEWAY)
        || num(claims, "iat").is_some_and(|n| n > now + LEEWAY)
    {
        return Err(ClaimsError::NotYetValid);
    }
    if claims.get("nonce").and_then(Value::as_str) != Some(nonce) {
        return Err(ClaimsError::WrongNonce);
    }
    let username = claims
        .get(&s.username_claim)
        .and_then(Value::as_str)
        .filter(|u| crate::ldap::acceptable_username(u))
        .ok_or_else(|| ClaimsError::Missing(s.username_claim.clone()))?
        .to_owned();
    let groups = match claims.get(&s.groups_claim) {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(g)) => vec![g.clone()],
        _ => Vec::new(),
    };
    Ok(OidcIdentity {
        username,
        groups,
        expires_at: exp,
    })
}

/// The highest role the groups map to (names compared without case).
pub fn role_of(groups: &[String], roles: &[(String, Role)]) -> Option<Role> {
    let groups: Vec<Group> = groups
        .iter()
        .map(|g| Group {
            dn: String::new(),
            names: vec![g.clone()],
        })
        .collect();
    role_for(&groups, roles)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn s() -> OidcSettings {
        let env = |k: &str| {
            match k {
                "OIDC_ISSUER" => Some("https://id.example.org/"),
                "OIDC_CLIENT_ID" => Some("autogit"),
                "OIDC_REDIRECT_URL" => Some("https://dash.example.org/login/oidc/callback"),
                "OIDC_ROLES" => Some("admins:admin,devs:operator"),
                _ => None,
            }
            .map(str::to_owned)
        };
        settings(&env).unwrap().unwrap()
    }

    fn good() -> Value {
        json!({"iss": "https://id.example.org", "aud": "autogit", "sub": "1", "exp": 1000,
               "iat": 900, "nonce": "n1", "preferred_username": "alice", "groups": ["devs"]})
    }

    #[test]
    fn claims_are_checked_one_by_one() {
        let id = check_claims(&good(), &s(), "n1", 950).unwrap();
        assert_eq!(id.username, "alice");
        assert_eq!(role_of(&id.groups, &s().roles), Some(Role::Operator));
        let with = |k: &str, v: Value| {
            let mut c = good();
            c[k] = v;
            check_claims(&c, &s(), "n1", 950)
        };
        let cases = [
            (with("iss", json!("https://evil.example")), "WrongIssuer"),
            (with("aud", json!("other")), "WrongAudience"),
            (with("aud", json!(["autogit", "other"])), "WrongAudience"),
            (with("azp", json!("other")), "WrongAudience"),
            (with("exp", json!(800)), "Expired"),
            (with("nbf", json!(1100)), "NotYetValid"),
            (with("iat", json!(1100)), "NotYetValid"),
            (with("nonce", json!("n2")), "WrongNonce"),
            (with("preferred_username", json!(7)), "Missing"),
        ];
        for (r, want) in cases {
            let e = r.unwrap_err();
            assert!(format!("{e:?}").starts_with(want), "{e:?} is not {want}");
        }
        // Within the leeway; several audiences with the right azp.
        assert!(with("exp", json!(900)).is_ok());
        let mut c = good();
        c["aud"] = json!(["autogit", "other"]);
        c["azp"] = json!("autogit");
        assert!(check_claims(&c, &s(), "n1", 950).is_ok());
        let mut c = good();
        c.as_object_mut().unwrap().remove("nonce");
        assert_eq!(
            check_claims(&c, &s(), "n1", 950),
            Err(ClaimsError::WrongNonce)
        );
    }

    #[test]
    fn the_authorization_request_carries_pkce_state_and_nonce() {
        let u = authorize_url("https://id.example.org/auth", &s(), "st", "no", "ch-al_l");
        assert_eq!(
            u,
            "https://id.example.org/auth?response_type=code&client_id=autogit&redirect_uri=https%3A%2F%2Fdash.example.org%2Flogin%2Foidc%2Fcallback&scope=openid%20profile%20groups&state=st&nonce=no&code_challenge=ch-al_l&code_challenge_method=S256"
        );
    }

    #[test]
    fn bad_settings_name_the_key() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("OIDC_CLIENT_ID", "x")], "OIDC_ISSUER"),
            (&[("OIDC_ISSUER", "http://id.example.org")], "OIDC_ISSUER"),
            (&[("OIDC_ISSUER", "https://id")], "OIDC_CLIENT_ID"),
            (
                &[
                    ("OIDC_ISSUER", "https://id"),
                    ("OIDC_CLIENT_ID", "c"),
                    ("OIDC_REDIRECT_URL", "https://d/cb"),
                ],
                "OIDC_REDIRECT_URL",
            ),
            (
                &[
                    ("OIDC_ISSUER", "http://127.0.0.1:8080"),
                    ("OIDC_CLIENT_ID", "c"),
                    (
                        "OIDC_REDIRECT_URL",
                        "http://localhost:1/login/oidc/callback",
                    ),
                    ("OIDC_ROLES", "x:root"),
                ],
                "OIDC_ROLES",
            ),
            (
                &[
                    ("OIDC_ISSUER", "https://id"),
                    ("OIDC_CLIENT_ID", "c"),
                    ("OIDC_REDIRECT_URL", "https://d/login/oidc/callback"),
                    ("OIDC_ROLES", "x:admin"),
                    ("OIDC_SCOPES", "profile"),
                ],
                "OIDC_SCOPES",
            ),
        ];
        for (env, key) in cases {
            let get = |k: &str| {
                env.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            };
            let e = settings(&get).unwrap_err();
            assert_eq!(e.key, *key, "{e}");
        }
    }
}
