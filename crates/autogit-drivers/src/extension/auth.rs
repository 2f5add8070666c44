//! An `auth` extension: `auth.login` with a username and password; the answer names the user
//! and its role, or `null` for wrong credentials.

use super::host::{Grant, Limits, start};
use super::{ExtensionError, Found};
use autogit_core::access::Role;
use autogit_core::extension::ProviderType;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

/// Who an `auth` extension says logged in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthUser {
    pub name: String,
    pub role: Role,
}

/// Starts `found` as an `auth` provider, sends one `auth.login`, then `shutdown` (a login is
/// rare; a fresh process each time keeps no state and no password between logins).
/// `Ok(None)`: wrong credentials.
pub async fn login(
    found: &Found,
    grant: &Grant<'_>,
    limits: Limits,
    username: &str,
    password: &SecretString,
) -> Result<Option<AuthUser>, ExtensionError> {
    let started = start(found, ProviderType::Auth, grant, json!({}), limits).await?;
    let name = started.manifest.name.clone();
    let mut process = started.process;
    let answer = process
        .call(
            "auth.login",
            json!({"username": username, "password": password.expose_secret()}),
        )
        .await;
    process.shutdown().await;
    let protocol = |reason: String| ExtensionError::Protocol {
        name: name.clone(),
        method: "auth.login".into(),
        reason,
    };
    let user = match answer?.get("user") {
        None => {
            return Err(protocol(
                "the answer has no `user` (null or an object)".into(),
            ));
        }
        Some(Value::Null) => return Ok(None),
        Some(u) => u.clone(),
    };
    let uname = user
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| autogit_core::ldap::acceptable_username(n))
        .ok_or_else(|| protocol("`user.name` is not a user name (1 to 256 characters)".into()))?;
    let role = match user.get("role").and_then(Value::as_str) {
        Some("viewer") => Role::Viewer,
        Some("operator") => Role::Operator,
        Some("admin") => Role::Admin,
        _ => {
            return Err(protocol(
                "`user.role` is not viewer, operator or admin".into(),
            ));
        }
    };
    Ok(Some(AuthUser {
        name: uname.to_owned(),
        role,
    }))
}
