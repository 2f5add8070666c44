//! The sealed-file format of the secret store and its master key.
//!
//! A sealed file is a 25-byte header followed by the ChaCha20-Poly1305 ciphertext and its
//! 16-byte tag (ring's AEAD):
//!
//! ```text
//! 0xFF 'A' 'G' 'S' | version (1) | key id (8 bytes) | nonce (12 random bytes) | ciphertext+tag
//! ```
//!
//! The associated data is the whole header followed by the secret's name, so a file copied to
//! another name, or a header edited to claim another key, does not open. The first byte,
//! 0xFF, never begins valid UTF-8: a plaintext secret of an earlier version (always UTF-8) can
//! never be taken for a sealed one, nor a sealed one for plaintext.
//!
//! Nonces are random. With 96-bit nonces the chance of a repeat stays negligible far beyond
//! the number of writes one key sees (secrets are rewritten on rotation and bootstrap, not per
//! request), and `rotate-key` starts a fresh key.

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use secrecy::zeroize::{Zeroize, Zeroizing};
use sha2::{Digest, Sha256};
use std::fmt;

/// The first bytes of every sealed file.
pub const MAGIC: [u8; 4] = [0xFF, b'A', b'G', b'S'];
/// The format version this build writes and reads.
pub const VERSION: u8 = 1;
/// Bytes of a key id.
pub const KEY_ID_LEN: usize = 8;
/// Bytes of the header (magic, version, key id, nonce).
pub const HEADER_LEN: usize = MAGIC.len() + 1 + KEY_ID_LEN + NONCE_LEN;
/// Bytes of the authentication tag.
pub const TAG_LEN: usize = 16;
/// Bytes of a master key.
pub const KEY_LEN: usize = 32;

/// Which key sealed a file: the first 8 bytes of SHA-256 over a label and the key, so it can
/// be shown and compared without saying anything about the key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; KEY_ID_LEN]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// A master key. Zeroized on drop; `Debug` shows its id only.
#[derive(Clone)]
pub struct MasterKey {
    bytes: Zeroizing<[u8; KEY_LEN]>,
    id: KeyId,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({} [REDACTED])", self.id)
    }
}

impl MasterKey {
    /// The key made of these bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> MasterKey {
        let mut h = Sha256::new();
        h.update(b"autogit secrets key id\0");
        h.update(bytes);
        let digest = h.finalize();
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        MasterKey {
            bytes: Zeroizing::new(bytes),
            id: KeyId(id),
        }
    }

    /// A new random key (`getrandom`).
    pub fn generate() -> Result<MasterKey, getrandom::Error> {
        let mut bytes = [0u8; KEY_LEN];
        getrandom::fill(&mut bytes)?;
        let key = MasterKey::from_bytes(bytes);
        bytes.zeroize();
        Ok(key)
    }

    /// The key's id.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The key file's text: 64 lowercase hex digits and a newline.
    pub fn to_file_text(&self) -> Zeroizing<String> {
        let mut s = String::with_capacity(KEY_LEN * 2 + 1);
        for b in self.bytes.iter() {
            s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            s.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
        }
        s.push('\n');
        Zeroizing::new(s)
    }

    /// Reads a key file's text (64 hex digits, surrounding blanks ignored). The error says
    /// what is wrong without quoting the text.
    pub fn from_file_text(text: &[u8]) -> Result<MasterKey, &'static str> {
        let text = text.trim_ascii();
        if text.len() != KEY_LEN * 2 {
            return Err("expected 64 hexadecimal digits (a 256-bit key)");
        }
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        };
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        for (i, pair) in text.chunks_exact(2).enumerate() {
            let (Some(hi), Some(lo)) = (digit(pair[0]), digit(pair[1])) else {
                return Err("expected 64 hexadecimal digits (a 256-bit key)");
            };
            bytes[i] = (hi << 4) | lo;
        }
        Ok(MasterKey::from_bytes(*bytes))
    }

    fn aead(&self) -> LessSafeKey {
        // A 32-byte key is always accepted by CHACHA20_POLY1305.
        LessSafeKey::new(
            UnboundKey::new(&CHACHA20_POLY1305, self.bytes.as_slice())
                .expect("a 32-byte ChaCha20-Poly1305 key"),
        )
    }
}

/// What a file's first bytes say it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// A sealed file sealed with this key.
    Sealed(KeyId),
    /// Plaintext (UTF-8) from before sealing: to be migrated.
    Plain,
}

/// Why a file cannot be read. Carries no content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Damage {
    /// It begins like a sealed file but stops before the end of its header and tag.
    Truncated,
    /// A sealed file's header of an unknown version.
    UnknownVersion(u8),
    /// Neither sealed nor UTF-8 text.
    Neither,
    /// The tag does not verify: changed, copied from another name, or another key with the
    /// same id (practically: changed).
    Tampered,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::Truncated => f.write_str(
                "it is cut short: it begins like a sealed secret but ends before its header and tag",
            ),
            Damage::UnknownVersion(v) => write!(
                f,
                "its header has format version {v}, which this autogit does not know (a newer autogit wrote it?)"
            ),
            Damage::Neither => f.write_str(
                "it is neither a sealed secret nor plaintext UTF-8: the file is damaged",
            ),
            Damage::Tampered => f.write_str(
                "it does not authenticate: it was changed, or copied here from another secret's name",
            ),
        }
    }
}

/// Classifies `bytes`: sealed (with which key), plaintext, or damaged.
pub fn shape(bytes: &[u8]) -> Result<Shape, Damage> {
    if bytes.first() != Some(&MAGIC[0]) {
        return if std::str::from_utf8(bytes).is_ok() {
            Ok(Shape::Plain)
        } else {
            Err(Damage::Neither)
        };
    }
    if bytes.len() < MAGIC.len() + 1 {
        return Err(Damage::Truncated);
    }
    if bytes[..MAGIC.len()] != MAGIC {
        return Err(Damage::Neither);
    }
    let version = bytes[MAGIC.len()];
    if version != VERSION {
        return Err(Damage::UnknownVersion(version));
    }
    if bytes.len() < HEADER_LEN + TAG_LEN {
        return Err(Damage::Truncated);
    }
    let mut id = [0u8; KEY_ID_LEN];
    id.copy_from_slice(&bytes[MAGIC.len() + 1..MAGIC.len() + 1 + KEY_ID_LEN]);
    Ok(Shape::Sealed(KeyId(id)))
}

fn aad(header: &[u8], name: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header.len() + 1 + name.len());
    aad.extend_from_slice(header);
    aad.push(0);
    aad.extend_from_slice(name.as_bytes());
    aad
}

/// Seals `plaintext` as secret `name` with `key` (a fresh random nonce).
pub fn seal(key: &MasterKey, name: &str, plaintext: &[u8]) -> Result<Vec<u8>, getrandom::Error> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce)?;
    let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&key.id.0);
    out.extend_from_slice(&nonce);
    let aad = aad(&out, name);
    let mut body = Zeroizing::new(plaintext.to_vec());
    let tag = key
        .aead()
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut body,
        )
        .expect("ChaCha20-Poly1305 seals any message under 256 GiB");
    out.extend_from_slice(&body);
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

/// Opens a sealed file of secret `name` with `key` (whose id the caller matched with
/// [`shape`]).
pub fn open(key: &MasterKey, name: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, Damage> {
    match shape(sealed)? {
        Shape::Sealed(id) if id == key.id => {}
        Shape::Sealed(_) => return Err(Damage::Tampered),
        Shape::Plain => return Err(Damage::Neither),
    }
    let (header, body) = sealed.split_at(HEADER_LEN);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&header[HEADER_LEN - NONCE_LEN..]);
    let mut buf = Zeroizing::new(body.to_vec());
    let len = key
        .aead()
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad(header, name)),
            &mut buf,
        )
        .map_err(|_| Damage::Tampered)?
        .len();
    buf.truncate(len);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_the_ciphertext_hides_the_value() {
        let k = MasterKey::generate().unwrap();
        let s = seal(&k, "gitlab-admin-token", b"glpat-secret-value").unwrap();
        assert_eq!(shape(&s), Ok(Shape::Sealed(k.id())));
        assert!(!s.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            open(&k, "gitlab-admin-token", &s).unwrap().as_slice(),
            b"glpat-secret-value"
        );
        // Two seals of one value differ (random nonce).
        assert_ne!(
            s,
            seal(&k, "gitlab-admin-token", b"glpat-secret-value").unwrap()
        );
        // Empty values work too.
        let e = seal(&k, "e", b"").unwrap();
        assert_eq!(open(&k, "e", &e).unwrap().as_slice(), b"");
    }

    #[test]
    fn wrong_key_other_name_edits_and_cuts_do_not_open() {
        let k = MasterKey::generate().unwrap();
        let other = MasterKey::generate().unwrap();
        let s = seal(&k, "a", b"value").unwrap();
        assert_eq!(open(&other, "a", &s).unwrap_err(), Damage::Tampered);
        assert_eq!(open(&k, "b", &s).unwrap_err(), Damage::Tampered);
        let mut flipped = s.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(open(&k, "a", &flipped).unwrap_err(), Damage::Tampered);
        // A header claiming another key id is bound too.
        let mut relabelled = s.clone();
        relabelled[5] ^= 1;
        assert_eq!(open(&k, "a", &relabelled).unwrap_err(), Damage::Tampered);
        assert_eq!(shape(&s[..HEADER_LEN + 3]), Err(Damage::Truncated));
        assert_eq!(shape(&s[..3]), Err(Damage::Truncated));
        let mut v2 = s.clone();
        v2[4] = 2;
        assert_eq!(shape(&v2), Err(Damage::UnknownVersion(2)));
        assert_eq!(shape(b"\xffXYZ....."), Err(Damage::Neither));
        assert_eq!(shape(b"\x80abc"), Err(Damage::Neither));
        assert_eq!(shape(b"glpat-plain"), Ok(Shape::Plain));
    }

    #[test]
    fn key_files_round_trip_and_debug_shows_only_the_id() {
        let k = MasterKey::generate().unwrap();
        let text = k.to_file_text();
        assert_eq!(text.len(), 65);
        let back = MasterKey::from_file_text(text.as_bytes()).unwrap();
        assert_eq!(back.id(), k.id());
        let dbg = format!("{k:?}");
        assert!(!dbg.contains(text.trim()), "{dbg}");
        assert!(!dbg.contains(&text[..16]), "{dbg}");
        assert!(MasterKey::from_file_text(b"abc").is_err());
        assert!(MasterKey::from_file_text(&[b'g'; 64]).is_err());
    }
}
