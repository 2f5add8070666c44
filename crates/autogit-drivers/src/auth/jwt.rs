//! JSON Web Tokens, signed and verified strictly: EdDSA (Ed25519) only.
//!
//! Our own ~100 lines over `ring` (already in the tree) rather than the `jsonwebtoken` crate:
//! autogit both issues and verifies its tokens, so one algorithm is all it needs, and a
//! verifier that knows exactly one algorithm cannot be talked into another: `alg: none`,
//! `HS256` keyed with the public key (algorithm confusion) and anything but `EdDSA` are
//! refused before any key is looked at. The header may carry `alg`, `typ` and `kid` only
//! (`jku`, `jwk`, `x5u`, `crit` are refused, never followed); base64url must be canonical and
//! unpadded; the claims are `autogit_core::access::Claims` with no unknown fields. Time,
//! issuer and audience are checked by `autogit_core::access::check_claims`.

use autogit_core::access::Claims;
use data_encoding::BASE64URL_NOPAD;
use ring::signature::{ED25519, Ed25519KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The one algorithm.
pub const ALG: &str = "EdDSA";
/// Longest token accepted (a token is about 400 bytes).
pub const MAX_LEN: usize = 8 * 1024;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
}

/// Why a token is refused (before its claims are looked at).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token's algorithm is not EdDSA, the only one autogit accepts")]
    UnsupportedAlgorithm,
    #[error("the token names a signing key autogit does not have (rotated out, or not autogit's)")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    BadSignature,
}

/// Signs `claims` with `pair`, naming `kid` in the header.
pub fn sign(kid: &str, pair: &Ed25519KeyPair, claims: &Claims) -> String {
    let header = Header {
        alg: ALG.into(),
        typ: Some("JWT".into()),
        kid: Some(kid.into()),
    };
    let h = serde_json::to_vec(&header).expect("a header serializes");
    let c = serde_json::to_vec(claims).expect("claims serialize");
    let mut out = format!(
        "{}.{}",
        BASE64URL_NOPAD.encode(&h),
        BASE64URL_NOPAD.encode(&c)
    );
    let sig = pair.sign(out.as_bytes());
    out.push('.');
    out.push_str(&BASE64URL_NOPAD.encode(sig.as_ref()));
    out
}

/// A signing key and its id.
pub struct SigningKey {
    kid: String,
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    pub fn new(kid: &str, pair: Ed25519KeyPair) -> Self {
        Self {
            kid: kid.to_owned(),
            pair,
        }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// A token carrying `claims`, signed with this key.
    pub fn sign(&self, claims: &Claims) -> String {
        sign(&self.kid, &self.pair, claims)
    }

    /// The public key, for a [`KeySet`].
    pub fn verifier(&self) -> UnparsedPublicKey<Vec<u8>> {
        UnparsedPublicKey::new(&ED25519, super::keys::public_key(&self.pair))
    }
}

/// Public keys by kid.
pub type KeySet = HashMap<String, UnparsedPublicKey<Vec<u8>>>;

/// Whether `text` has the shape of a JWT (three base64url parts), not an API key.
pub fn looks_like_jwt(text: &str) -> bool {
    text.starts_with("eyJ") && text.bytes().filter(|b| *b == b'.').count() == 2
}

/// Verifies `token`'s header and signature against `keys` and decodes its claims. The claims'
/// times, issuer and audience are not checked here.
pub fn verify(token: &str, keys: &KeySet) -> Result<Claims, JwtError> {
    if token.len() > MAX_LEN {
        return Err(JwtError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let header_bytes = BASE64URL_NOPAD
        .decode(h.as_bytes())
        .map_err(|_| JwtError::Malformed)?;
    let header: Header = serde_json::from_slice(&header_bytes).map_err(|_| JwtError::Malformed)?;
    if header.alg != ALG {
        return Err(JwtError::UnsupportedAlgorithm);
    }
    if header.typ.as_deref().is_some_and(|t| t != "JWT") {
        return Err(JwtError::Malformed);
    }
    let key = header
        .kid
        .as_deref()
        .and_then(|k| keys.get(k))
        .ok_or(JwtError::UnknownKey)?;
    let sig = BASE64URL_NOPAD
        .decode(s.as_bytes())
        .map_err(|_| JwtError::Malformed)?;
    let signed = &token[..h.len() + 1 + c.len()];
    key.verify(signed.as_bytes(), &sig)
        .map_err(|_| JwtError::BadSignature)?;
    let claims = BASE64URL_NOPAD
        .decode(c.as_bytes())
        .map_err(|_| JwtError::Malformed)?;
    serde_json::from_slice(&claims).map_err(|_| JwtError::Malformed)
}

/// The key set holding `pair`'s public key under `kid`.
pub fn key_set<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a Ed25519KeyPair)>) -> KeySet {
    pairs
        .into_iter()
        .map(|(kid, p)| {
            (
                kid.to_owned(),
                UnparsedPublicKey::new(&ED25519, super::keys::public_key(p)),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use autogit_core::access::{AUDIENCE, ISSUER, Role};
    use ring::hmac;

    fn pair() -> Ed25519KeyPair {
        let doc = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
        Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap()
    }

    fn claims() -> Claims {
        Claims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub: "user:alice".into(),
            role: Role::Operator,
            scopes: vec!["services".into()],
            iat: 100,
            nbf: 100,
            exp: 1000,
            jti: "abc".into(),
        }
    }

    fn b64(v: &serde_json::Value) -> String {
        BASE64URL_NOPAD.encode(v.to_string().as_bytes())
    }

    #[test]
    fn a_signed_token_verifies_and_every_forgery_is_refused() {
        let (k1, k2) = (pair(), pair());
        let keys = key_set([("k1", &k1)]);
        let token = sign("k1", &k1, &claims());
        assert_eq!(verify(&token, &keys), Ok(claims()));
        let [h, c, s]: [&str; 3] = token.split('.').collect::<Vec<_>>().try_into().unwrap();
        let payload = b64(&serde_json::to_value(claims()).unwrap());
        let mut more = claims();
        more.role = Role::Admin;
        let admin = b64(&serde_json::to_value(more).unwrap());
        // HS256 keyed with the public key: the classic algorithm confusion.
        let hs_header = b64(&serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": "k1"}));
        let mac_key = hmac::Key::new(hmac::HMAC_SHA256, &super::super::keys::public_key(&k1));
        let hs_input = format!("{hs_header}.{admin}");
        let hs_sig = BASE64URL_NOPAD.encode(hmac::sign(&mac_key, hs_input.as_bytes()).as_ref());
        let none_header = b64(&serde_json::json!({"alg": "none", "typ": "JWT", "kid": "k1"}));
        let jku_header =
            b64(&serde_json::json!({"alg": "EdDSA", "kid": "k1", "jku": "https://evil"}));
        let other_key = sign("k2", &k2, &claims());
        let k2_as_k1 = sign("k1", &k2, &claims());
        let table: Vec<(&str, String, JwtError)> = vec![
            (
                "alg none, no signature",
                format!("{none_header}.{admin}."),
                JwtError::UnsupportedAlgorithm,
            ),
            (
                "alg none with the old signature",
                format!("{none_header}.{payload}.{s}"),
                JwtError::UnsupportedAlgorithm,
            ),
            (
                "HS256 with the public key",
                format!("{hs_input}.{hs_sig}"),
                JwtError::UnsupportedAlgorithm,
            ),
            (
                "edited claims",
                format!("{h}.{admin}.{s}"),
                JwtError::BadSignature,
            ),
            (
                "signed by another key under our kid",
                k2_as_k1,
                JwtError::BadSignature,
            ),
            ("unknown kid", other_key, JwtError::UnknownKey),
            (
                "header with jku",
                format!("{jku_header}.{c}.{s}"),
                JwtError::Malformed,
            ),
            ("two parts", format!("{h}.{c}"), JwtError::Malformed),
            ("four parts", format!("{token}.x"), JwtError::Malformed),
            (
                "padded signature",
                format!("{token}=="),
                JwtError::Malformed,
            ),
            ("garbage", "not a token".into(), JwtError::Malformed),
            ("empty", String::new(), JwtError::Malformed),
            ("huge", "a".repeat(MAX_LEN + 1), JwtError::Malformed),
        ];
        for (name, t, want) in table {
            assert_eq!(verify(&t, &keys), Err(want), "{name}");
        }
        assert!(looks_like_jwt(&token));
        assert!(!looks_like_jwt("agk_abcdefgh_x"));
    }

    #[test]
    fn unknown_claims_are_refused() {
        let k = pair();
        let keys = key_set([("k", &k)]);
        let header = b64(&serde_json::json!({"alg": "EdDSA", "kid": "k"}));
        let mut c = serde_json::to_value(claims()).unwrap();
        c["admin"] = true.into();
        let input = format!("{header}.{}", b64(&c));
        let sig = BASE64URL_NOPAD.encode(k.sign(input.as_bytes()).as_ref());
        assert_eq!(
            verify(&format!("{input}.{sig}"), &keys),
            Err(JwtError::Malformed)
        );
    }
}
