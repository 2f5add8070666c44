//! A complete `auth` extension in Rust: a fixed list of users, each with a PBKDF2-SHA256
//! password hash and a role, in the secret setting `STATIC_USERS` (or a file named by
//! `STATIC_USERS_FILE`). A login method for a handful of people without a directory. The
//! same provider as `sdk/python/examples/static_users_auth.py`, and the same hash format
//! (`pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>`): a hash either one makes, both check.
//!
//! Build it (`cargo build --release -p autogit-extension-sdk --example static_users_auth`),
//! copy `target/release/examples/static_users_auth` to
//! `<data dir>/extensions/static-users-rs`, and set in `.env`:
//!
//! ```text
//! EXTENSIONS_ENABLED=static-users-rs
//! STATIC_USERS_FILE=/etc/autogit/static-users
//! ```
//!
//! with one user per line (or comma-separated), `name:hash:role` (role `viewer`, `operator`
//! or `admin`); make a hash with `static_users_auth hash 'the password'`. Sign in with
//! `"provider": "static-users-rs"` (or as `alice@static-users-rs`).

use autogit_extension_sdk::{AuthProvider, Error, Extension, Health, Init, Role, Setting, User};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::io::Read;

const ITERATIONS: u32 = 200_000;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

fn derive(password: &str, salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut out);
    out
}

/// `pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>`.
fn make_hash(password: &str, salt: &[u8], iterations: u32) -> String {
    format!(
        "pbkdf2_sha256${iterations}${}${}",
        hex(salt),
        hex(&derive(password, salt, iterations))
    )
}

/// Whether `password` matches `stored`, comparing in constant time.
fn check_hash(password: &str, stored: &str) -> bool {
    let parts: Vec<&str> = stored.split('$').collect();
    let [scheme, iterations, salt, digest] = parts.as_slice() else {
        return false;
    };
    let (Ok(iterations), Some(salt), Some(digest)) =
        (iterations.parse::<u32>(), unhex(salt), unhex(digest))
    else {
        return false;
    };
    if *scheme != "pbkdf2_sha256" || iterations == 0 || digest.len() != 32 {
        return false;
    }
    let got = derive(password, &salt, iterations);
    got.iter()
        .zip(&digest)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// Checked for unknown names, so that they take as long as a wrong password (the digest
/// matches no password: only the work counts).
const DUMMY: &str = "pbkdf2_sha256$200000$00000000000000000000000000000000$0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Default)]
struct StaticUsers {
    users: BTreeMap<String, (String, Role)>,
}

impl AuthProvider for StaticUsers {
    fn settings(&self) -> Vec<Setting> {
        vec![
            Setting::new("STATIC_USERS")
                .secret()
                .required()
                .describe("name:pbkdf2_sha256$...:role, one per line or comma-separated"),
        ]
    }

    fn initialize(&mut self, init: &Init) -> Result<(), Error> {
        let text = init
            .secrets
            .get("STATIC_USERS")
            .map(String::as_str)
            .unwrap_or("");
        self.users.clear();
        for (n, item) in text.replace(',', "\n").lines().enumerate() {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let parts: Vec<&str> = item.split(':').collect();
            let role = match parts.as_slice() {
                [name, _, role] if !name.is_empty() => Role::parse(role),
                _ => None,
            };
            let Some(role) = role else {
                return Err(Error::config(format!(
                    "STATIC_USERS entry {} is not name:hash:role (role viewer, operator or admin)",
                    n + 1
                )));
            };
            self.users
                .insert(parts[0].to_owned(), (parts[1].to_owned(), role));
        }
        if self.users.is_empty() {
            return Err(Error::config("STATIC_USERS lists no user"));
        }
        Ok(())
    }

    fn login(&mut self, username: &str, password: &str) -> Result<Option<User>, Error> {
        let (stored, role) = match self.users.get(username) {
            Some((hash, role)) => (hash.as_str(), Some(*role)),
            None => (DUMMY, None),
        };
        let right = check_hash(password, stored);
        Ok(match (right, role) {
            (true, Some(role)) => Some(User {
                name: username.to_owned(),
                role,
            }),
            _ => None,
        })
    }

    fn health(&mut self) -> Result<Health, Error> {
        Ok(Health::ok(format!("{} users", self.users.len())))
    }
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [cmd, password] = args.as_slice()
        && cmd == "hash"
    {
        let mut salt = [0u8; 16];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut salt)?;
        println!("{}", make_hash(password, &salt, ITERATIONS));
        return Ok(());
    }
    Extension::new("static-users-rs", "1.0.0")
        .description("users with PBKDF2 hashes from a setting")
        .auth(StaticUsers::default())
        .run()
}
