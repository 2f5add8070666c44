//! The `autogit` binary: a thin shell. It parses the command line, reads files and the
//! environment, calls the core, and prints. Exit codes are documented in the README.

mod access_cmd;
mod audit_cmd;
mod backup_cmd;
mod cli;
mod commands;
mod compute_cmd;
mod ctx;
mod diagnose_cmd;
mod dns_cmd;
mod export_cmd;
mod extension_cmd;
mod gitlab_cmd;
mod guard_cmd;
mod guard_model_cmd;
mod kube_cmd;
mod mirror_cmd;
mod runner_cmd;
mod runner_host_cmd;
mod runtime_cmd;
mod secrets_cmd;
mod serve_cmd;
mod status_cmd;
mod tls_cmd;
mod ui;
mod upgrade_cmd;

use clap::Parser;
use std::process::ExitCode;

/// Exit codes.
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILURE: u8 = 1;
    /// Usage error, or a command this version cannot perform yet.
    pub const UNAVAILABLE: u8 = 2;
    pub const INVALID_CONFIG: u8 = 3;
}

fn main() -> ExitCode {
    // `autogit plan | head`: a reader that goes away is not an error (as with ripgrep); end
    // quietly instead of the panic println! raises on a broken pipe.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        default_hook(info);
    }));
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // clap prints help/version to stdout (exit 0) and usage errors to stderr (exit 2).
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::UNAVAILABLE
            } else {
                exit::OK
            });
        }
    };
    commands::run(cli)
}
