//! OpenID Connect, I/O side: the discovery document, the provider's JWKS, PKCE, the token
//! exchange of the authorization code, and the ID token's signature.
//!
//! The signature check is ours over `ring`, as `jwt.rs` is: RS256 and ES256 only, chosen by the
//! key's type as much as by the header (an RSA key never verifies an `ES256` header, and
//! `none`, `HS256` and the rest are refused before any key is looked at). The header may not
//! carry `jku`, `jwk`, `x5u` or `crit`: keys come from the discovery document's `jwks_uri`
//! only. An unknown `kid` refetches the JWKS once (the provider rotated its keys).

use autogit_core::oidc::{OidcSettings, form_encode};
use data_encoding::BASE64URL_NOPAD;
use ring::signature::{self, UnparsedPublicKey};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::Mutex;
use std::time::Duration;

/// Longest ID token accepted.
const MAX_TOKEN: usize = 16 * 1024;
/// Longest body read from the provider.
const MAX_BODY: usize = 1024 * 1024;

/// What can go wrong talking to the provider or checking its token. Never holds a secret
/// (the client secret, the code, the verifier or a token).
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The provider could not be reached or answered something unusable.
    #[error("OIDC provider {url}: {reason}")]
    Provider { url: String, reason: String },
    /// The token endpoint refused the code (`error` from its JSON body).
    #[error("the OIDC provider refused the code: {0}")]
    Refused(String),
    /// The ID token's signature or header is not acceptable.
    #[error("the ID token {0}")]
    Token(&'static str),
}

/// The discovery document's fields autogit uses.
#[derive(Clone, Debug, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub code_challenge_methods_supported: Option<Vec<String>>,
}

/// A fresh PKCE pair (RFC 7636): a 43-character verifier and its S256 challenge.
pub fn pkce() -> Result<(SecretString, String), crate::auth::AuthStoreError> {
    let verifier = BASE64URL_NOPAD.encode(&crate::auth::random::<32>()?);
    let challenge = challenge_of(&verifier);
    Ok((SecretString::from(verifier), challenge))
}

/// The S256 challenge of a verifier: base64url(SHA-256(verifier)).
pub fn challenge_of(verifier: &str) -> String {
    BASE64URL_NOPAD.encode(&Sha256::digest(verifier.as_bytes()))
}

/// A random value for `state` and `nonce` (128 bits, base64url).
pub fn random_token() -> Result<String, crate::auth::AuthStoreError> {
    Ok(BASE64URL_NOPAD.encode(&crate::auth::random::<16>()?))
}

/// A client of one provider.
pub struct OidcClient {
    settings: OidcSettings,
    secret: Option<SecretString>,
    http: reqwest::Client,
    discovery: tokio::sync::OnceCell<Discovery>,
    jwks: Mutex<Option<Value>>,
}

impl std::fmt::Debug for OidcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcClient")
            .field("issuer", &self.settings.issuer)
            .field("client_id", &self.settings.client_id)
            .finish_non_exhaustive()
    }
}

impl OidcClient {
    pub fn new(settings: OidcSettings, secret: Option<SecretString>) -> Result<Self, OidcError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.timeout_secs))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| OidcError::Provider {
                url: settings.issuer.clone(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            settings,
            secret,
            http,
            discovery: tokio::sync::OnceCell::new(),
            jwks: Mutex::new(None),
        })
    }

    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    async fn get_json(&self, url: &str) -> Result<Value, OidcError> {
        let fail = |reason: String| OidcError::Provider {
            url: url.to_owned(),
            reason,
        };
        let resp = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| fail(e.without_url().to_string()))?;
        if !resp.status().is_success() {
            return Err(fail(format!("answered {}", resp.status())));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| fail(e.without_url().to_string()))?;
        if body.len() > MAX_BODY {
            return Err(fail("the answer is over 1 MiB".into()));
        }
        serde_json::from_slice(&body).map_err(|e| fail(format!("not JSON: {e}")))
    }

    /// The discovery document (`<issuer>/.well-known/openid-configuration`), fetched once;
    /// its `issuer` must be the configured one and it must offer PKCE S256.
    pub async fn discovery(&self) -> Result<&Discovery, OidcError> {
        self.discovery
            .get_or_try_init(|| async {
                let url = format!("{}/.well-known/openid-configuration", self.settings.issuer);
                let fail = |reason: String| OidcError::Provider {
                    url: url.clone(),
                    reason,
                };
                let d: Discovery = serde_json::from_value(self.get_json(&url).await?)
                    .map_err(|e| fail(format!("not a discovery document: {e}")))?;
                if d.issuer.trim_end_matches('/') != self.settings.issuer {
                    return Err(fail(format!(
                        "its issuer is `{}`, not OIDC_ISSUER `{}`",
                        d.issuer, self.settings.issuer
                    )));
                }
                if d.code_challenge_methods_supported
                    .as_ref()
                    .is_some_and(|m| !m.iter().any(|m| m == "S256"))
                {
                    return Err(fail("it does not offer PKCE with S256".into()));
                }
                Ok(d)
            })
            .await
    }

    /// Exchanges `code` (with its PKCE `verifier`) for the ID token; its signature is
    /// verified, its claims returned for `autogit_core::oidc::check_claims`.
    pub async fn exchange(&self, code: &str, verifier: &SecretString) -> Result<Value, OidcError> {
        let d = self.discovery().await?.clone();
        let mut form = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.to_owned()),
            ("redirect_uri", self.settings.redirect_url.clone()),
            ("code_verifier", verifier.expose_secret().to_owned()),
        ];
        let mut req = self
            .http
            .post(&d.token_endpoint)
            .header("accept", "application/json");
        match &self.secret {
            // client_secret_basic (RFC 6749 2.3.1: both parts form-encoded first).
            Some(s) => {
                req = req.basic_auth(
                    form_encode(&self.settings.client_id),
                    Some(form_encode(s.expose_secret())),
                );
            }
            None => form.push(("client_id", self.settings.client_id.clone())),
        }
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let fail = |reason: String| OidcError::Provider {
            url: d.token_endpoint.clone(),
            reason,
        };
        let resp = req
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| fail(e.without_url().to_string()))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| fail(e.without_url().to_string()))?;
        let v: Value = serde_json::from_slice(&bytes[..bytes.len().min(MAX_BODY)])
            .map_err(|_| fail(format!("answered {status} without JSON")))?;
        if !status.is_success() {
            let code = v.get("error").and_then(Value::as_str).unwrap_or("error");
            return Err(OidcError::Refused(code.chars().take(100).collect()));
        }
        let token = v
            .get("id_token")
            .and_then(Value::as_str)
            .ok_or_else(|| fail("the token response has no id_token".into()))?;
        self.verify(token, &d.jwks_uri).await
    }

    async fn keys(&self, jwks_uri: &str, refresh: bool) -> Result<Value, OidcError> {
        if !refresh
            && let Some(k) = self
                .jwks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        {
            return Ok(k);
        }
        let k = self.get_json(jwks_uri).await?;
        *self
            .jwks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(k.clone());
        Ok(k)
    }

    /// Verifies an ID token's signature with the provider's keys; its claims.
    pub async fn verify(&self, token: &str, jwks_uri: &str) -> Result<Value, OidcError> {
        let parts = split(token)?;
        let keys = self.keys(jwks_uri, false).await?;
        match verify_with(&parts, &keys) {
            Err(OidcError::Token(UNKNOWN_KEY)) => {
                let keys = self.keys(jwks_uri, true).await?;
                verify_with(&parts, &keys)
            }
            r => r,
        }
    }
}

const UNKNOWN_KEY: &str = "is signed with a key the provider's JWKS does not have";

struct Parts<'a> {
    alg: String,
    kid: Option<String>,
    signed: &'a str,
    claims: Value,
    signature: Vec<u8>,
}

fn split(token: &str) -> Result<Parts<'_>, OidcError> {
    let malformed = OidcError::Token("is not a well-formed JWS");
    if token.len() > MAX_TOKEN {
        return Err(OidcError::Token("is over 16 KiB"));
    }
    let mut it = token.split('.');
    let (Some(h), Some(c), Some(s), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(malformed);
    };
    let decode = |p: &str| BASE64URL_NOPAD.decode(p.as_bytes()).ok();
    let header: Value = decode(h)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(OidcError::Token("is not a well-formed JWS"))?;
    let header = header
        .as_object()
        .ok_or(OidcError::Token("is not a well-formed JWS"))?;
    for k in ["jku", "jwk", "x5u", "x5c", "crit"] {
        if header.contains_key(k) {
            return Err(OidcError::Token(
                "header names its own key or critical extensions (jku, jwk, x5u, x5c, crit), which are refused",
            ));
        }
    }
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    if !matches!(alg, "RS256" | "ES256") {
        return Err(OidcError::Token(
            "is signed with an algorithm autogit does not accept (RS256 and ES256 only; never none)",
        ));
    }
    let claims = decode(c)
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .filter(Value::is_object)
        .ok_or(OidcError::Token("has claims that are not a JSON object"))?;
    let signature = decode(s).ok_or(OidcError::Token("is not a well-formed JWS"))?;
    Ok(Parts {
        alg: alg.to_owned(),
        kid: header.get("kid").and_then(Value::as_str).map(str::to_owned),
        signed: &token[..h.len() + 1 + c.len()],
        claims,
        signature,
    })
}

fn verify_with(p: &Parts<'_>, jwks: &Value) -> Result<Value, OidcError> {
    let kty = if p.alg == "RS256" { "RSA" } else { "EC" };
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .ok_or(OidcError::Token(
            "cannot be checked: the JWKS has no `keys`",
        ))?;
    let candidates: Vec<&Value> = keys
        .iter()
        .filter(|k| k.get("kty").and_then(Value::as_str) == Some(kty))
        .filter(|k| {
            k.get("use")
                .and_then(Value::as_str)
                .is_none_or(|u| u == "sig")
        })
        .filter(|k| {
            k.get("alg")
                .and_then(Value::as_str)
                .is_none_or(|a| a == p.alg)
        })
        .filter(|k| match &p.kid {
            Some(kid) => k.get("kid").and_then(Value::as_str) == Some(kid.as_str()),
            None => true,
        })
        .collect();
    let key = match candidates.as_slice() {
        [k] => *k,
        [] => return Err(OidcError::Token(UNKNOWN_KEY)),
        _ => {
            return Err(OidcError::Token(
                "names no kid and the JWKS has several keys",
            ));
        }
    };
    let field = |k: &str| {
        key.get(k)
            .and_then(Value::as_str)
            .and_then(|v| BASE64URL_NOPAD.decode(v.as_bytes()).ok())
            .ok_or(OidcError::Token(
                "cannot be checked: a JWKS key is malformed",
            ))
    };
    let ok = if kty == "RSA" {
        let (n, e) = (field("n")?, field("e")?);
        signature::RsaPublicKeyComponents { n: &n, e: &e }
            .verify(
                &signature::RSA_PKCS1_2048_8192_SHA256,
                p.signed.as_bytes(),
                &p.signature,
            )
            .is_ok()
    } else {
        if key.get("crv").and_then(Value::as_str) != Some("P-256") {
            return Err(OidcError::Token(
                "cannot be checked: its EC key is not P-256",
            ));
        }
        let (x, y) = (field("x")?, field("y")?);
        let mut point = Vec::with_capacity(65);
        point.push(4);
        point.extend_from_slice(&x);
        point.extend_from_slice(&y);
        UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &point)
            .verify(p.signed.as_bytes(), &p.signature)
            .is_ok()
    };
    if !ok {
        return Err(OidcError::Token("signature does not verify"));
    }
    Ok(p.claims.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    use serde_json::json;

    fn es256() -> (EcdsaKeyPair, Value) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let pt = pair.public_key().as_ref();
        let jwk = json!({"kty": "EC", "crv": "P-256", "kid": "e1", "use": "sig",
            "x": BASE64URL_NOPAD.encode(&pt[1..33]), "y": BASE64URL_NOPAD.encode(&pt[33..])});
        (pair, jwk)
    }

    fn sign(pair: &EcdsaKeyPair, header: Value, claims: Value) -> String {
        let signed = format!(
            "{}.{}",
            BASE64URL_NOPAD.encode(header.to_string().as_bytes()),
            BASE64URL_NOPAD.encode(claims.to_string().as_bytes())
        );
        let sig = pair.sign(&SystemRandom::new(), signed.as_bytes()).unwrap();
        format!("{signed}.{}", BASE64URL_NOPAD.encode(sig.as_ref()))
    }

    #[test]
    fn pkce_s256_is_rfc7636s_example() {
        // RFC 7636 appendix B.
        assert_eq!(
            challenge_of("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let (v, c) = pkce().unwrap();
        assert_eq!(v.expose_secret().len(), 43);
        assert_eq!(challenge_of(v.expose_secret()), c);
    }

    #[test]
    fn es256_verifies_and_everything_else_is_refused() {
        let (pair, jwk) = es256();
        let (other, _) = es256();
        let jwks = json!({"keys": [jwk]});
        let claims = json!({"sub": "a"});
        let check = |t: &str| split(t).and_then(|p| verify_with(&p, &jwks));
        let good = sign(&pair, json!({"alg": "ES256", "kid": "e1"}), claims.clone());
        assert_eq!(check(&good).unwrap(), claims);
        let refused = [
            sign(&other, json!({"alg": "ES256", "kid": "e1"}), claims.clone()),
            sign(&pair, json!({"alg": "ES256", "kid": "e2"}), claims.clone()),
            sign(&pair, json!({"alg": "RS256", "kid": "e1"}), claims.clone()),
            sign(
                &pair,
                json!({"alg": "ES256", "kid": "e1", "jku": "http://x"}),
                claims.clone(),
            ),
            format!(
                "{}.{}.",
                BASE64URL_NOPAD.encode(br#"{"alg":"none"}"#),
                BASE64URL_NOPAD.encode(br#"{"sub":"a"}"#)
            ),
            good.replace('.', "..").to_string(),
        ];
        for t in refused {
            assert!(check(&t).is_err(), "{t}");
        }
    }
}
