//! Secret material of the access layer, kept in the data dir's [`SecretStore`]: the argon2
//! pepper (`api-key-pepper`) and one Ed25519 signing key per `kid`
//! (`jwt-signing-key-<kid>`, the PKCS#8 document in base64).

use super::jwt::SigningKey;
use super::{AuthStoreError, random};
use crate::secrets::{ExposeSecret, SecretStore, SecretString};
use autogit_core::access::base32_lower;
use data_encoding::BASE64;
use ring::signature::{Ed25519KeyPair, KeyPair};

/// The secret name of the argon2 pepper.
pub const PEPPER: &str = "api-key-pepper";

/// The secret name of signing key `kid`.
pub fn signing_key_name(kid: &str) -> String {
    format!("jwt-signing-key-{kid}")
}

/// The pepper, made (32 random bytes, base32) the first time.
pub fn pepper(store: &SecretStore) -> Result<SecretString, AuthStoreError> {
    if let Some(p) = store.get(PEPPER)? {
        return Ok(p);
    }
    let p = SecretString::from(base32_lower(&random::<32>()?));
    store.put(PEPPER, &p)?;
    Ok(p)
}

/// A new random key id: 8 lowercase base32 characters.
pub fn new_kid() -> Result<String, AuthStoreError> {
    Ok(base32_lower(&random::<5>()?))
}

/// Makes a new signing key and stores it under `kid`.
pub fn generate(store: &SecretStore, kid: &str) -> Result<(), AuthStoreError> {
    let rng = ring::rand::SystemRandom::new();
    let doc = Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| AuthStoreError::Random("Ed25519 key generation failed".into()))?;
    store.put(
        &signing_key_name(kid),
        &SecretString::from(BASE64.encode(doc.as_ref())),
    )?;
    Ok(())
}

/// Signing key `kid`, or `None` when the store has no such secret.
pub fn load(store: &SecretStore, kid: &str) -> Result<Option<SigningKey>, AuthStoreError> {
    let name = signing_key_name(kid);
    let Some(text) = store.get(&name)? else {
        return Ok(None);
    };
    let der = BASE64
        .decode(text.expose_secret().trim().as_bytes())
        .map_err(|_| AuthStoreError::BadKey(name.clone()))?;
    Ed25519KeyPair::from_pkcs8(&der)
        .map(|pair| Some(SigningKey::new(kid, pair)))
        .map_err(|_| AuthStoreError::BadKey(name))
}

/// The public half of a key pair.
pub fn public_key(pair: &Ed25519KeyPair) -> Vec<u8> {
    pair.public_key().as_ref().to_vec()
}
