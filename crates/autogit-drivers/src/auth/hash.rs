//! argon2id hashes of API-key secrets and passwords (RustCrypto `argon2`, pure Rust), with
//! the data dir's pepper as argon2's secret input: a copy of `access.db` alone cannot be
//! attacked offline. Parameters are OWASP's recommendation (m = 19 MiB, t = 2, p = 1, which
//! is `argon2::Params::DEFAULT`); they are stored in each PHC string, so changing them later
//! keeps old hashes verifiable.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};

use super::{AuthStoreError, random};

/// Hashes and verifies with one pepper.
pub struct Hasher {
    pepper: SecretString,
}

/// A well-formed hash with the same parameters that no password matches in practice: unknown
/// users are verified against it, so that a login for a name that does not exist costs what a
/// wrong password costs (from the first one on: nothing is computed lazily).
const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$YXV0b2dpdC1kdW1teS1zYWx0$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher")
            .field("pepper", &"[REDACTED]")
            .finish()
    }
}

impl Hasher {
    pub fn new(pepper: SecretString) -> Self {
        Self { pepper }
    }

    fn argon(&self) -> Argon2<'_> {
        Argon2::new_with_secret(
            self.pepper.expose_secret().as_bytes(),
            Algorithm::Argon2id,
            Version::V0x13,
            Params::DEFAULT,
        )
        .expect("the pepper is 32 bytes, within argon2's secret length")
    }

    /// The PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`) of `secret`.
    pub fn hash(&self, secret: &[u8]) -> Result<String, AuthStoreError> {
        let salt = SaltString::encode_b64(&random::<16>()?)
            .map_err(|e| AuthStoreError::Random(e.to_string()))?;
        self.argon()
            .hash_password(secret, &salt)
            .map(|h| h.to_string())
            .map_err(|e| AuthStoreError::Random(format!("argon2: {e}")))
    }

    /// Whether `secret` matches `phc`. A malformed stored hash does not match.
    pub fn verify(&self, secret: &[u8], phc: &str) -> bool {
        match PasswordHash::new(phc) {
            Ok(h) => self.argon().verify_password(secret, &h).is_ok(),
            Err(_) => false,
        }
    }

    /// Costs what [`verify`](Self::verify) of a real hash costs, and fails.
    pub fn verify_dummy(&self, secret: &[u8]) -> bool {
        let _ = self.verify(secret, DUMMY);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_only_with_their_secret_and_pepper() {
        let h = Hasher::new(SecretString::from("pepper-one-pepper-one-pepper-one"));
        let phc = h.hash(b"correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(h.verify(b"correct horse", &phc));
        assert!(!h.verify(b"correct horse!", &phc));
        assert!(!h.verify(b"correct horse", "not a hash"));
        assert!(!h.verify_dummy(b"correct horse"));
        // The dummy parses, so verifying against it runs argon2 as a real hash does.
        let dummy = PasswordHash::new(DUMMY).unwrap();
        assert_eq!(dummy.params.get_decimal("m"), Some(19_456));
        let t = std::time::Instant::now();
        h.verify(b"x", &phc);
        let real = t.elapsed();
        let t = std::time::Instant::now();
        h.verify_dummy(b"x");
        let dummy = t.elapsed();
        assert!(dummy * 3 > real, "dummy {dummy:?} vs real {real:?}");
        let other = Hasher::new(SecretString::from("pepper-two-pepper-two-pepper-two"));
        assert!(
            !other.verify(b"correct horse", &phc),
            "the pepper is part of the hash"
        );
        assert!(!format!("{h:?}").contains("pepper-one"));
    }
}
