//! `autogit api-key …`, `api-user …` and `auth rotate-signing-key`: parse, call the access
//! controller (`autogit_app::access`), render (`audit_cmd` shows and verifies the log). Every change (keys, users, signing keys) is appended to the audit log as
//! `cli:<unix user>`, whether it worked or not.

use crate::cli::{ApiKeyCommand, ApiUserCommand, AuthCommand, Global};
use crate::ctx::data_dir;
use crate::exit;
use crate::ui::{Ui, fail};
use autogit_app::Settings;
use autogit_app::access::{AccessController, NewKey};
use autogit_app::audit::{AuditEntry, AuditLog};
use autogit_app::clock;
use autogit_core::config::Config;
use autogit_core::platform::PlatformEnv;
use autogit_core::units::Dur;
use autogit_drivers::secrets::{ExposeSecret, SecretString};
use serde_json::json;
use std::io::IsTerminal;

pub fn settings(g: &Global) -> Settings {
    // Keys, users and the audit log need the data dir only, not a valid configuration.
    Settings::new(Config::default(), PlatformEnv::default(), data_dir(g))
}

fn controller(ui: &Ui, s: &Settings) -> Result<AccessController, u8> {
    AccessController::open(s, clock::system()).map_err(|e| fail(ui, e))
}

/// `cli:<unix user>`, as the audit log names whoever ran a command.
fn actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty() && u.len() <= 64 && !u.contains(char::is_control));
    match user {
        Some(u) => format!("cli:{u}"),
        None => format!(
            "cli:uid{}",
            autogit_drivers::host::euid().map_or("?".into(), |u| u.to_string())
        ),
    }
}

/// Appends what a command did (or failed to do) to the audit log; `Err` when it could not be
/// recorded, after saying so.
fn record(ui: &Ui, s: &Settings, action: &str, target: &str, ok: bool) -> Result<(), u8> {
    let entry = AuditEntry {
        actor: actor(),
        role: None,
        action: action.into(),
        target: target.into(),
        outcome: if ok { "ok" } else { "error" }.into(),
        status: None,
        request_id: format!("cli-{}", std::process::id()),
        source: None,
    };
    match AuditLog::open(s, clock::system()).and_then(|log| log.append(entry)) {
        Ok(_) => Ok(()),
        Err(e) => Err(fail(
            ui,
            format!("{action} {target}: could not be recorded in the audit log: {e}"),
        )),
    }
}

/// Runs `f`, records its outcome, and gives its result (or the exit status).
fn audited<T, E: std::fmt::Display>(
    ui: &Ui,
    s: &Settings,
    action: &str,
    target: &str,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<(T, Result<(), u8>), u8> {
    match f() {
        Ok(v) => Ok((v, record(ui, s, action, target, true))),
        Err(e) => {
            let code = fail(ui, format!("{action} {target}: {e}"));
            let _ = record(ui, s, action, target, false);
            Err(code)
        }
    }
}

pub fn fmt_time(t: Option<i64>) -> String {
    t.map_or("-".into(), |t| {
        autogit_core::civil::rfc3339_utc(t.max(0) as u64)
    })
}

pub fn api_key(ui: &Ui, g: &Global, cmd: ApiKeyCommand) -> u8 {
    let s = settings(g);
    let ctl = match controller(ui, &s) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match cmd {
        ApiKeyCommand::Create {
            name,
            role,
            scopes,
            expires,
            json,
        } => {
            let ttl = match expires.as_deref().map(|e| (e, Dur::parse(e))) {
                None => None,
                Some((_, Some(d))) => Some(d.0),
                Some((e, None)) => {
                    return fail(
                        ui,
                        format!("--expires {e}: expected a duration such as 90d, 12h or 30m"),
                    );
                }
            };
            let req = NewKey {
                name: name.clone(),
                role: role.role(),
                scopes,
                ttl,
            };
            let (created, recorded) =
                match audited(ui, &s, "api-key.create", &name, || ctl.create_key(req)) {
                    Ok(v) => v,
                    Err(code) => return code,
                };
            // Shown once, whatever else happens.
            if ui.json || json || !std::io::stdout().is_terminal() {
                let mut v = serde_json::to_value(&created.info).expect("key info serializes");
                v["key"] = created.secret.expose_secret().into();
                ui.print_json(&v);
            } else {
                println!("{}", created.secret.expose_secret());
                ui.note(&format!(
                    "created {} ({}, role {}); store the key now: it is not shown again",
                    created.info.id, created.info.name, created.info.role
                ));
            }
            recorded.err().unwrap_or(exit::OK)
        }
        ApiKeyCommand::List { json } => match ctl.list_keys() {
            Ok(keys) if ui.json || json => {
                ui.print_json(&json!({ "keys": keys }));
                exit::OK
            }
            Ok(keys) => {
                let mut t = ui.table();
                t.set_header([
                    "ID",
                    "NAME",
                    "ROLE",
                    "SCOPES",
                    "STATUS",
                    "CREATED",
                    "EXPIRES",
                    "LAST USED",
                ]);
                for k in &keys {
                    t.add_row([
                        k.id.clone(),
                        k.name.clone(),
                        k.role.to_string(),
                        if k.scopes.is_empty() {
                            "*".into()
                        } else {
                            k.scopes.join(",")
                        },
                        k.status.into(),
                        fmt_time(Some(k.created_at)),
                        fmt_time(k.expires_at),
                        fmt_time(k.last_used_at),
                    ]);
                }
                println!("{t}");
                exit::OK
            }
            Err(e) => fail(ui, e),
        },
        ApiKeyCommand::Revoke { prefix, json } => {
            let (info, recorded) = match audited(ui, &s, "api-key.revoke", &prefix, || {
                ctl.revoke_key(&prefix)
            }) {
                Ok(v) => v,
                Err(code) => return code,
            };
            if ui.json || json {
                ui.print_json(&json!({ "revoked": info }));
            } else {
                println!("revoked {} ({})", info.id, info.name);
            }
            recorded.err().unwrap_or(exit::OK)
        }
    }
}

/// The password: from the terminal (no echo, twice), or the first line of stdin.
fn read_password(from_stdin: bool) -> Result<SecretString, String> {
    use std::io::BufRead;
    let stdin = std::io::stdin();
    if from_stdin {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the password from stdin: {e}"))?;
        return Ok(without_newline(line));
    }
    if !stdin.is_terminal() {
        return Err("no terminal to ask for the password; pipe it with --password-stdin".into());
    }
    let first = prompt("Password: ")?;
    let second = prompt("Repeat the password: ")?;
    if first.expose_secret() != second.expose_secret() {
        return Err("the passwords differ; nothing was changed".into());
    }
    Ok(first)
}

fn prompt(question: &str) -> Result<SecretString, String> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    use std::io::{BufRead, Write};
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).map_err(|e| format!("cannot read the terminal's mode: {e}"))?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    quiet.local_modes.insert(LocalModes::ECHONL);
    // Echo off before the question: nothing typed after it is shown.
    tcsetattr(&stdin, OptionalActions::Now, &quiet)
        .map_err(|e| format!("cannot turn the terminal's echo off: {e}"))?;
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    let _ = tcsetattr(&stdin, OptionalActions::Now, &saved);
    read.map_err(|e| format!("cannot read the password: {e}"))?;
    Ok(without_newline(line))
}

/// The line without its line break, in the same buffer (no copy of the password left behind).
fn without_newline(mut line: String) -> SecretString {
    let n = line.trim_end_matches(['\n', '\r']).len();
    line.truncate(n);
    SecretString::from(line)
}

pub fn api_user(ui: &Ui, g: &Global, cmd: ApiUserCommand) -> u8 {
    let s = settings(g);
    let ctl = match controller(ui, &s) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match cmd {
        ApiUserCommand::Add {
            name,
            role,
            password_stdin,
        } => {
            let password = match read_password(password_stdin) {
                Ok(p) => p,
                Err(e) => return fail(ui, e),
            };
            let (user, recorded) = match audited(ui, &s, "api-user.add", &name, || {
                ctl.add_user(&name, role.role(), &password)
            }) {
                Ok(v) => v,
                Err(code) => return code,
            };
            if ui.json {
                ui.print_json(&json!({ "user": user }));
            } else {
                println!("added user {} (role {})", user.name, user.role);
            }
            recorded.err().unwrap_or(exit::OK)
        }
        ApiUserCommand::List { json } => match ctl.list_users() {
            Ok(users) if ui.json || json => {
                ui.print_json(&json!({ "users": users }));
                exit::OK
            }
            Ok(users) => {
                let mut t = ui.table();
                t.set_header(["NAME", "ROLE", "CREATED", "LAST LOGIN"]);
                for u in &users {
                    t.add_row([
                        u.name.clone(),
                        u.role.to_string(),
                        fmt_time(Some(u.created_at)),
                        fmt_time(u.last_login_at),
                    ]);
                }
                println!("{t}");
                exit::OK
            }
            Err(e) => fail(ui, e),
        },
        ApiUserCommand::Remove { name } => {
            let (user, recorded) =
                match audited(ui, &s, "api-user.remove", &name, || ctl.remove_user(&name)) {
                    Ok(v) => v,
                    Err(code) => return code,
                };
            if ui.json {
                ui.print_json(&json!({ "removed": user }));
            } else {
                println!("removed user {}", user.name);
            }
            recorded.err().unwrap_or(exit::OK)
        }
    }
}

pub fn auth(ui: &Ui, g: &Global, cmd: AuthCommand) -> u8 {
    let s = settings(g);
    let ctl = match controller(ui, &s) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match cmd {
        AuthCommand::RotateSigningKey => {
            let (kid, recorded) =
                match audited(ui, &s, "auth.rotate-signing-key", "signing-key", || {
                    ctl.rotate_signing_key()
                }) {
                    Ok(v) => v,
                    Err(code) => return code,
                };
            if ui.json {
                ui.print_json(&json!({ "kid": kid }));
            } else {
                println!(
                    "new signing key {kid}; tokens signed by the previous key stay valid until they expire"
                );
            }
            recorded.err().unwrap_or(exit::OK)
        }
    }
}
