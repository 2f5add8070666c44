//! GitLab as the other controllers reach it: clients with the tokens the bootstrap stored.

use autogit_drivers::gitlab::bootstrap::ADMIN_TOKEN;
use autogit_drivers::gitlab::client::GitLabClient;
use autogit_drivers::secrets::SecretStore;

/// A client with the admin token `gitlab bootstrap` stored (none stored is an error that says
/// to bootstrap); for operations that act on GitLab without minting a token themselves.
pub fn stored_admin_client(store: &SecretStore, url: &str) -> Result<GitLabClient, String> {
    let token = store
        .get(ADMIN_TOKEN)
        .map_err(|e| e.to_string())?
        .ok_or("no admin token stored: run `autogit gitlab bootstrap` first")?;
    GitLabClient::new(url, Some(token)).map_err(|e| e.to_string())
}
