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

/// Pull progress for `install`: one bar per image (layers done / layers seen) on a terminal,
/// plain lines otherwise, nothing with --quiet.
pub fn pull_progress(ui: &Ui) -> impl Fn(autogit_drivers::engine::PullProgress) + Send + Sync {
    use std::collections::BTreeMap;
    let quiet = ui.quiet;
    let bars = std::sync::Mutex::new(BTreeMap::<String, indicatif::ProgressBar>::new());
    let tty = std::io::stderr().is_terminal();
    move |p: autogit_drivers::engine::PullProgress| {
        if quiet {
            return;
        }
        if !tty {
            eprintln!(
                "pulling {}: {} {}/{}",
                p.image, p.status, p.current, p.total
            );
            return;
        }
        let mut bars = bars
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let bar = bars.entry(p.image.clone()).or_insert_with(|| {
            let b = indicatif::ProgressBar::new(p.total.max(1));
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} layers {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b.set_prefix(p.image.clone());
            b
        });
        bar.set_length(p.total.max(1));
        bar.set_position(p.current);
        bar.set_message(p.status.clone());
    }
}

/// A spinner with the elapsed time (hidden with --quiet or without a terminal).
pub fn spinner(ui: &Ui) -> indicatif::ProgressBar {
    let s = if ui.quiet || !std::io::stderr().is_terminal() {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new_spinner()
    };
    s.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed}] {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    s.enable_steady_tick(std::time::Duration::from_millis(200));
    s
}

/// `autogit status`'s table.
pub fn status_table(ui: &Ui, rows: &[autogit_app::platform::ServiceStatus], now: i64) {
    let ago = |t: i64| {
        format!(
            "{} ago",
            autogit_core::units::Dur::secs((now - t).max(0) as u64)
        )
    };
    let mut t = ui.table();
    t.set_header(vec![
        "SERVICE",
        "STATE",
        "HEALTH",
        "UPTIME",
        "RESTARTS",
        "LAST TRANSITION",
        "FLAG",
    ]);
    for r in rows {
        t.add_row(vec![
            r.service.clone(),
            r.state.clone(),
            r.health.clone().unwrap_or_else(|| "-".into()),
            r.uptime.clone().unwrap_or_else(|| "-".into()),
            r.restarts.to_string(),
            format!("{} ({})", r.last_reason, ago(r.since)),
            if r.flagged {
                format!(
                    "NEEDS ATTENTION: {}",
                    r.flag_reason.clone().unwrap_or_default()
                )
            } else {
                String::new()
            },
        ]);
    }
    println!("{t}");
    if rows.iter().any(|r| r.flagged) {
        println!(
            "A flagged service is not repaired automatically; fix the cause, then `autogit reconcile --clear <service>`."
        );
    }
}

/// The daemon's log: every event as one JSON line on stderr (`tracing`'s JSON format, fields
/// at the top level), warnings and errors always, information unless --quiet. With
/// `OTLP_ENDPOINT` set, or the platform's Tempo enabled, the spans are also exported as traces
/// (`drivers::telemetry`, `app::plan::otlp_endpoint`); the
/// returned handle sends the last ones ([`Telemetry::shutdown`], outside the runtime). Call it
/// outside the async runtime.
pub fn init_json_log(
    ui: &Ui,
    loaded: &crate::ctx::Loaded,
) -> Option<autogit_drivers::telemetry::Telemetry> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let level = if ui.quiet {
        tracing::Level::WARN
    } else {
        tracing::Level::INFO
    };
    let log = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_writer(std::io::stderr)
        .with_filter(tracing_subscriber::filter::LevelFilter::from_level(level));
    let registry = tracing_subscriber::registry().with(log);
    let Some(endpoint) = autogit_app::plan::otlp_endpoint(&loaded.settings) else {
        let _ = registry.try_init();
        return None;
    };
    match autogit_drivers::telemetry::Telemetry::otlp(&endpoint, "autogit") {
        Ok((telemetry, layer)) => {
            // Every span at INFO and above is exported, whatever the log's level.
            let layer = layer.with_filter(tracing_subscriber::filter::LevelFilter::INFO);
            let _ = registry.with(layer).try_init();
            Some(telemetry)
        }
        Err(e) => {
            let _ = registry.try_init();
            ui.error(&format!("{e}; running without traces"));
            None
        }
    }
}

/// A text to read: a file, or standard input for `-` or nothing. Returns the text (invalid
/// UTF-8 replaced) and where it came from (`stdin` or the path).
pub fn read_input(file: Option<&std::path::Path>) -> std::io::Result<(String, String)> {
    use std::io::Read;
    match file {
        Some(p) if p != std::path::Path::new("-") => {
            let bytes = std::fs::read(p)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
            Ok((
                String::from_utf8_lossy(&bytes).into_owned(),
                p.display().to_string(),
            ))
        }
        _ => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .map_err(|e| std::io::Error::new(e.kind(), format!("<stdin>: {e}")))?;
            Ok((
                String::from_utf8_lossy(&buf).into_owned(),
                "stdin".to_owned(),
            ))
        }
    }
}

/// Runs `f` on the async runtime with the controller `make` builds on a bus whose events reach
/// the state store and the notifiers, then waits (10 s at most) for those to finish: what a
/// one-shot command published is recorded and delivered before it exits.
pub fn with_controller<C, T>(
    loaded: &crate::ctx::Loaded,
    make: impl FnOnce(&autogit_app::Bus) -> C,
    f: impl AsyncFnOnce(&C) -> T,
) -> T {
    runtime().block_on(async {
        let bus = autogit_app::Bus::new(autogit_app::clock::system());
        let sinks = autogit_app::sinks::Sinks::for_command(&bus, loaded);
        let c = make(&bus);
        let out = f(&c).await;
        drop(c);
        sinks.finish(bus, std::time::Duration::from_secs(10)).await;
        out
    })
}
