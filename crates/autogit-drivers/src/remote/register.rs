//! Registering gitlab-runner on a host: [`autogit_core::runner::register_argv`] run through
//! [`RemoteExec`] with the token on standard input.

use super::{Output, RemoteError, RemoteExec};
use autogit_core::config::Runner;
use autogit_core::runner::register_argv;
use secrecy::{ExposeSecret, SecretString};

/// Runs `gitlab-runner register` for `runner` on `host` with `engine` (`docker`/`podman`).
pub async fn register<R: RemoteExec>(
    host: &R,
    engine: &str,
    runner: &Runner,
    image: &str,
    url: &str,
    token: &SecretString,
) -> Result<Output, RemoteError> {
    let argv = register_argv(engine, runner, image, url);
    let input = format!("{}\n", token.expose_secret());
    host.run_input(&argv, input.as_bytes()).await
}
