//! Registering gitlab-runner on a host: [`autogit_core::runner::register_argv`] run through
//! [`RemoteExec`] with the token on standard input, then the rendered `config.toml`
//! ([`autogit_core::runner::config_toml_on`]) written into the runner's configuration volume,
//! also from standard input.

use super::{Output, RemoteError, RemoteExec};
use autogit_core::config::Runner;
use autogit_core::runner::{podman_socket_argv, register_argv, write_config_argv};
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

/// Writes `config` (the rendered `config.toml`: it holds the runner's token) into the
/// configuration volume of runner `name` on `host`, mode 0600, replacing what
/// `gitlab-runner register` wrote. The text travels on standard input only.
pub async fn write_config<R: RemoteExec>(
    host: &R,
    engine: &str,
    name: &str,
    image: &str,
    config: &SecretString,
) -> Result<Output, RemoteError> {
    let argv = write_config_argv(engine, name, image);
    host.run_input(&argv, config.expose_secret().as_bytes())
        .await
}

/// The path of Podman's socket on `host`, as its SSH user sees it.
pub async fn podman_socket<R: RemoteExec>(host: &R) -> Result<String, RemoteError> {
    let out = host.run(&podman_socket_argv()).await?;
    Ok(out
        .stdout
        .lines()
        .next()
        .unwrap_or("/run/podman/podman.sock")
        .trim()
        .to_owned())
}
