//! Terminal output: diagnostics, notes, tables, JSON.

use crate::cli::{Global, Output};
use autogit_core::diag::{Diagnostics, render_all};
use autogit_core::source::Sources;
use std::io::IsTerminal;

#[derive(Debug, Clone, Copy)]
pub struct Ui {
    pub json: bool,
    pub verbose: u8,
    pub quiet: bool,
    pub color: bool,
}

impl Ui {
    pub fn new(g: &Global) -> Self {
        let no_color_env = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Self {
            json: g.output == Output::Json,
            verbose: g.verbose,
            quiet: g.quiet,
            color: !g.no_color && !no_color_env && std::io::stderr().is_terminal(),
        }
    }

    /// A one-line message on stderr, prefixed with the program name.
    pub fn error(&self, msg: &str) {
        eprintln!("autogit: {msg}");
    }

    pub fn note(&self, msg: &str) {
        if !self.quiet {
            eprintln!("{msg}");
        }
    }

    pub fn diagnostics(&self, diags: &Diagnostics, sources: &Sources) {
        if diags.is_empty() || (self.quiet && !diags.has_errors()) {
            return;
        }
        let text = render_all(diags, sources);
        if self.color {
            let colored = text
                .lines()
                .map(|l| {
                    if l.starts_with("error") {
                        format!("\x1b[1;31m{l}\x1b[0m")
                    } else if l.starts_with("warning") {
                        format!("\x1b[1;33m{l}\x1b[0m")
                    } else {
                        l.to_owned()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n");
            eprintln!("{colored}");
        } else {
            eprint!("{text}");
        }
    }

    pub fn print_json(&self, v: &serde_json::Value) {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    }

    pub fn table(&self) -> comfy_table::Table {
        let mut t = comfy_table::Table::new();
        t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
        if !self.color {
            t.force_no_tty();
        }
        t
    }
}

pub fn diagnostics_json(diags: &Diagnostics, sources: &Sources) -> serde_json::Value {
    serde_json::to_value(
        diags
            .0
            .iter()
            .map(|d| d.to_json(sources))
            .collect::<Vec<_>>(),
    )
    .unwrap_or_default()
}

/// Reports `msg` as the command's error and returns the failure exit status.
pub fn fail(ui: &Ui, msg: impl std::fmt::Display) -> u8 {
    ui.error(&msg.to_string());
    crate::exit::FAILURE
}

/// The async runtime a command runs its I/O on (two workers: the machines are small).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Asks before something destructive: `Ok` when the user typed `yes` on a terminal. Without
/// a terminal it refuses with `refusal` (which should name `--yes`); any other answer says
/// `nothing_done`. `Err` carries the exit status.
pub fn confirm(ui: &Ui, question: &str, refusal: &str, nothing_done: &str) -> Result<(), u8> {
    use std::io::{BufRead, Write};
    if !std::io::stdin().is_terminal() {
        return Err(fail(ui, refusal));
    }
    eprint!("{question} Type `yes`: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    if answer.trim() == "yes" {
        Ok(())
    } else {
        ui.note(nothing_done);
        Err(crate::exit::FAILURE)
    }
}

/// A `--wait`-style duration: `90s`, `15m`, … or `0` (do not wait).
pub fn parse_wait(s: &str) -> Option<autogit_core::units::Dur> {
    autogit_core::units::Dur::parse(s).or((s == "0").then_some(autogit_core::units::Dur::secs(0)))
}
