//! Commands that drive the container engine: install, down, status, logs, reconcile, daemon.

use crate::cli::Global;
use crate::commands::{make_plan, write_rendered};
use crate::ctx::{Loaded, data_dir};
use crate::exit;
use crate::ui::{Ui, confirm, fail, parse_wait, runtime};
use autogit_core::config::Notify;
use autogit_core::lifecycle::State;
use autogit_core::plan::Plan;
use autogit_core::units::Dur;
use autogit_drivers::engine::docker::Docker;
use autogit_drivers::engine::{ContainerEngine, EngineError};
use autogit_drivers::fsx::write_atomic;
use autogit_drivers::notify::{Notifier, Retry, Webhook};
use autogit_drivers::runtime::{Runtime, now};
use autogit_drivers::state::Store;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

struct Ready {
    plan: Plan,
    data: PathBuf,
    store: Store,
    secrets: BTreeMap<String, String>,
    notifier_hooks: Vec<Webhook>,
}

fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_owned())
    })
}

/// Plan, render, open the store: what every engine command needs.
fn ready(ui: &Ui, g: &Global, loaded: &Loaded) -> Result<Ready, u8> {
    let plan = make_plan(ui, g, loaded).ok_or(exit::INVALID_CONFIG)?;
    let data = data_dir(g);
    std::fs::create_dir_all(&data)
        .map_err(|e| fail(ui, format!("cannot create {}: {e}", data.display())))?;
    let data = absolute(&data);
    let store = Store::open(&data.join("state.db")).map_err(|e| fail(ui, e))?;
    let names: Vec<String> = plan
        .services
        .iter()
        .flat_map(|s| s.secret_env.clone())
        .collect();
    let mut hook_names = Vec::new();
    for n in &loaded.config.health.notify {
        if let Notify::Webhook {
            secret_env: Some(k),
            ..
        } = n
        {
            hook_names.push(k.clone());
        }
    }
    let secrets = loaded.secrets(&[names, hook_names].concat());
    let notifier_hooks = loaded
        .config
        .health
        .notify
        .iter()
        .filter_map(|n| match n {
            Notify::Webhook { url, secret_env } => Some(Webhook {
                url: url.clone(),
                secret: secret_env.as_ref().and_then(|k| secrets.get(k).cloned()),
            }),
            Notify::Log => None,
        })
        .collect();
    Ok(Ready {
        plan,
        data,
        store,
        secrets,
        notifier_hooks,
    })
}

async fn connect(loaded: &Loaded) -> Result<Docker, EngineError> {
    Docker::connect(
        loaded.config.platform.socket.as_deref().map(Path::new),
        &loaded.env,
    )
    .await
}

/// How a command wants state changes reported.
#[derive(Clone, Copy, PartialEq, Eq)]
enum NotifyMode {
    /// Configured webhooks; the log notifier when `log` is true.
    Configured {
        log: bool,
    },
    Silent,
}

/// Connects to the engine and builds the runtime for the plan. With `announce`, says which
/// engine it found.
async fn open_runtime(
    ui: &Ui,
    loaded: &Loaded,
    r: Ready,
    rendered: &Path,
    notify: NotifyMode,
    announce: bool,
) -> Result<Runtime<Docker>, u8> {
    let engine = connect(loaded).await.map_err(|e| fail(ui, e))?;
    if announce {
        let i = engine.info().await.map_err(|e| fail(ui, e))?;
        ui.note(&format!(
            "engine: {} {} (API {}{}) at {}",
            i.kind,
            i.version,
            i.api_version,
            if i.rootless { ", rootless" } else { "" },
            i.socket.display()
        ));
    }
    let notifier = match notify {
        NotifyMode::Configured { log } => Notifier::start(
            r.notifier_hooks,
            log && log_notify(loaded),
            Retry::default(),
        ),
        NotifyMode::Silent => Notifier::none(),
    };
    Runtime::new(
        engine,
        r.store,
        &r.plan,
        &loaded.config,
        &rendered.display().to_string(),
        &r.secrets,
        notifier,
    )
    .map_err(|e| fail(ui, e))
}

fn log_notify(loaded: &Loaded) -> bool {
    loaded.config.health.notify.contains(&Notify::Log)
}

pub fn install(ui: &Ui, g: &Global, loaded: &Loaded, wait: &str, bootstrap: bool) -> u8 {
    let Some(wait) = parse_wait(wait) else {
        return fail(
            ui,
            format!("--wait {wait}: expected a duration such as 90s, 15m or 0"),
        );
    };
    let r = match ready(ui, g, loaded) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let rendered = r.data.join("rendered");
    if let Err(code) = write_rendered(ui, g, &rendered, &r.plan, loaded) {
        return code;
    }
    // Dynamic ports are remembered so the next plan keeps them.
    let ports: BTreeMap<String, u16> = r
        .plan
        .local()
        .filter(|s| s.name != "gitlab")
        .filter_map(|s| s.ports.first().map(|p| (s.name.clone(), p.host)))
        .collect();
    let _ = write_atomic(
        &r.data.join("state/ports.json"),
        &serde_json::to_vec_pretty(&ports).unwrap_or_default(),
        0o644,
    );
    let rt = runtime();
    rt.block_on(async {
        let runtime = match open_runtime(ui, loaded, r, &rendered, NotifyMode::Configured { log: ui.verbose > 0 }, true).await {
            Ok(rt) => rt,
            Err(code) => return code,
        };
        let quiet = ui.quiet;
        // One bar per image being pulled (layers done / layers seen); drawn only on a
        // terminal, plain lines otherwise.
        let bars = std::sync::Mutex::new(BTreeMap::<String, indicatif::ProgressBar>::new());
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let progress = move |p: autogit_drivers::engine::PullProgress| {
            if quiet {
                return;
            }
            if !tty {
                eprintln!("pulling {}: {} {}/{}", p.image, p.status, p.current, p.total);
                return;
            }
            let mut bars = bars.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let bar = bars.entry(p.image.clone()).or_insert_with(|| {
                let b = indicatif::ProgressBar::new(p.total.max(1));
                b.set_style(indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} layers {msg}").unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()));
                b.set_prefix(p.image.clone());
                b
            });
            bar.set_length(p.total.max(1));
            bar.set_position(p.current);
            bar.set_message(p.status.clone());
        };
        if let Err(e) = runtime.prepare(&progress).await {
            return fail(ui, e);
        }
        let start = Instant::now();
        let spinner = if ui.quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new_spinner() };
        spinner.set_style(indicatif::ProgressStyle::with_template("{spinner} [{elapsed}] {msg}").unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()));
        spinner.enable_steady_tick(Duration::from_millis(200));
        let mut last_line = String::new();
        let mut seen_errors = std::collections::HashSet::new();
        loop {
            let report = match runtime.reconcile_once().await {
                Ok(r) => r,
                Err(e) => return fail(ui, format!("{e}; run `autogit install` again once it is fixed: it resumes where it stopped")),
            };
            for (svc, e) in &report.errors {
                if seen_errors.insert(format!("{svc}: {e}")) {
                    ui.error(&format!("{svc}: {e}"));
                } else if !e.contains("no container engine") {
                    // The same refusal twice in a row will not fix itself by waiting.
                    ui.error(&format!("giving up: {svc} keeps failing with the error above; fix it and run `autogit install` again"));
                    return exit::FAILURE;
                }
            }
            let rows = runtime.with_store(Store::services).unwrap_or_default();
            let wanted: Vec<&str> = runtime.specs.iter().map(|s| s.service.as_str()).collect();
            let states: Vec<(String, String)> = rows.iter().filter(|r| wanted.contains(&r.service.as_str())).map(|r| (r.service.clone(), r.state.clone())).collect();
            let healthy = states.len() == wanted.len() && states.iter().all(|(_, s)| s == State::Healthy.as_str());
            let line = states.iter().map(|(s, st)| format!("{s}: {st}")).collect::<Vec<_>>().join(", ");
            if line != last_line && !ui.quiet {
                if spinner.is_hidden() {
                    eprintln!("[{:>4}s] {line}", start.elapsed().as_secs());
                } else {
                    spinner.set_message(format!("waiting for health: {line}"));
                }
                last_line = line;
            }
            if healthy {
                spinner.finish_and_clear();
                ui.note(&format!("installed: {} service(s) healthy after {}s", wanted.len(), start.elapsed().as_secs()));
                if bootstrap && wanted.contains(&"gitlab") {
                    return bootstrap_gitlab(ui, g, loaded).await;
                }
                return exit::OK;
            }
            if start.elapsed() >= wait.0 {
                spinner.finish_and_clear();
                if wait.as_secs() == 0 {
                    ui.note("containers started; `autogit status` shows when they are healthy");
                    if bootstrap && wanted.contains(&"gitlab") {
                        ui.note("once GitLab is healthy, `autogit gitlab bootstrap` creates its users and tokens");
                    }
                    return exit::OK;
                }
                ui.error(&format!("not healthy after {wait}: {last_line}"));
                for (svc, st) in &states {
                    if st != State::Healthy.as_str()
                        && let Ok(observed) = runtime.engine.list(&runtime.project).await
                        && let Some(o) = observed.iter().find(|o| &o.service == svc)
                        && let Ok(lines) = runtime.engine.logs(&o.id, None, Some(15)).await
                    {
                        eprintln!("last log lines of {svc}:");
                        for l in lines {
                            eprintln!("  {svc} | {l}");
                        }
                    }
                }
                return exit::FAILURE;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    })
}

/// The last step of `install`: users, groups and tokens in the GitLab that just became
/// healthy. A failure names what to run once the cause is fixed.
async fn bootstrap_gitlab(ui: &Ui, g: &Global, loaded: &Loaded) -> u8 {
    let store = match autogit_drivers::secrets::SecretStore::open(&data_dir(g)) {
        Ok(s) => s,
        Err(e) => return fail(ui, e),
    };
    let url = crate::gitlab_cmd::local_url(loaded);
    ui.note(&format!(
        "bootstrapping GitLab at {url}: admin token, users, groups, service accounts"
    ));
    match crate::gitlab_cmd::bootstrap_with(loaded, &store, &url).await {
        Ok(report) => {
            crate::gitlab_cmd::print_report(ui, &report);
            exit::OK
        }
        Err(e) => fail(
            ui,
            format!(
                "{e}; GitLab itself is installed: run `autogit gitlab bootstrap` once this is fixed"
            ),
        ),
    }
}

pub fn down(ui: &Ui, g: &Global, loaded: &Loaded, volumes: bool, yes: bool) -> u8 {
    if volumes
        && !yes
        && let Err(code) = confirm(
            ui,
            &format!(
                "Delete the volumes of project `{}` (all GitLab data)?",
                loaded.config.platform.project
            ),
            "--volumes deletes all GitLab data; add --yes to confirm",
            "nothing was removed",
        )
    {
        return code;
    }
    let r = match ready(ui, g, loaded) {
        Ok(r) => r,
        Err(code) => return code,
    };
    runtime().block_on(async {
        let rendered = r.data.join("rendered");
        let runtime = match open_runtime(ui, loaded, r, &rendered, NotifyMode::Silent, false).await
        {
            Ok(rt) => rt,
            Err(code) => return code,
        };
        match runtime.down(volumes).await {
            Ok(removed) => {
                for n in &removed {
                    ui.note(&format!("removed {n}"));
                }
                ui.note(&format!(
                    "{} container(s) removed; volumes {}",
                    removed.len(),
                    if volumes { "deleted" } else { "kept" }
                ));
                exit::OK
            }
            Err(e) => fail(ui, e),
        }
    })
}

fn ago(t: i64) -> String {
    let secs = (now() as i64 - t).max(0) as u64;
    format!("{} ago", Dur::secs(secs))
}

pub fn status(ui: &Ui, g: &Global, loaded: &Loaded, service: Option<&str>) -> u8 {
    let data = data_dir(g);
    let db = data.join("state.db");
    if !db.exists() {
        if ui.json {
            ui.print_json(&json!({"installed": false, "services": []}));
        } else {
            ui.note(&format!(
                "nothing installed yet (no {}); run `autogit install`",
                db.display()
            ));
        }
        return exit::OK;
    }
    let store = match Store::open(&db) {
        Ok(s) => s,
        Err(e) => return fail(ui, e),
    };
    let rows = match store.services() {
        Ok(r) => r,
        Err(e) => return fail(ui, e),
    };
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|r| match service {
            None => true,
            Some("runners") => r.service.starts_with("runner-"),
            Some(s) => r.service == s,
        })
        .collect();
    if let Some(s) = service
        && rows.is_empty()
        && s != "runners"
    {
        return fail(
            ui,
            format!("no service `{s}` in the state of this data dir"),
        );
    }
    let observed = runtime().block_on(async {
        match connect(loaded).await {
            Ok(e) => e
                .list(&loaded.config.platform.project)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    });
    let obs = match &observed {
        Ok(o) => o.clone(),
        Err(e) => {
            if !ui.json {
                ui.note(&format!(
                    "warning: container engine not reachable ({e}); showing recorded state only"
                ));
            }
            Vec::new()
        }
    };
    let health_of = |svc: &str| {
        obs.iter()
            .find(|o| o.service == svc)
            .map(|o| format!("{:?}", o.health).to_ascii_lowercase())
    };
    let started_of = |svc: &str| {
        obs.iter()
            .find(|o| o.service == svc)
            .and_then(|o| o.started_at.clone())
    };
    // Uptime from the engine's start time; Docker reports year 1 for never-started containers.
    let uptime_of = |svc: &str| {
        obs.iter()
            .find(|o| o.service == svc && o.state == autogit_drivers::engine::RunState::Running)
            .and_then(|o| o.started_at.clone())
            .and_then(|t| autogit_core::units::rfc3339_to_unix(&t))
            .filter(|t| *t > 0)
            .map(|t| Dur::secs((now() as i64 - t).max(0) as u64).to_string())
    };
    if ui.json {
        let items: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({
                    "service": r.service, "state": r.state, "since": r.since, "last_reason": r.reason, "uptime": uptime_of(&r.service),
                    "restarts": r.restarts, "flagged": r.flagged, "flag_reason": r.flag_reason,
                    "health": health_of(&r.service), "started_at": started_of(&r.service),
                })
            })
            .collect();
        let mut out =
            json!({"installed": true, "engine_reachable": observed.is_ok(), "services": items});
        if service == Some("gitlab") {
            out["gitlab"] = gitlab_rest_status(g, loaded);
        }
        ui.print_json(&out);
        return exit::OK;
    }
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
    for r in &rows {
        t.add_row(vec![
            r.service.clone(),
            r.state.clone(),
            health_of(&r.service).unwrap_or_else(|| "-".into()),
            uptime_of(&r.service).unwrap_or_else(|| "-".into()),
            r.restarts.to_string(),
            format!("{} ({})", r.reason, ago(r.since)),
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
    if service.is_none()
        && let Ok((s, d)) = crate::tls_cmd::settings(g, loaded)
        && let Ok(wanted) = crate::tls_cmd::wanted_names(g, loaded, &d)
        && let Some((info, due)) = crate::tls_cmd::current(&s, &d, &wanted)
    {
        println!(
            "certificate: {} expires in {} days{}",
            info.names.join(", "),
            (info.not_after - now() as i64) / 86_400,
            if due { " (renewal due)" } else { "" }
        );
    }
    if service == Some("gitlab") {
        let url = crate::gitlab_cmd::local_url(loaded);
        let status = autogit_drivers::secrets::SecretStore::open(&data_dir(g))
            .map_err(|e| e.to_string())
            .and_then(|store| crate::gitlab_cmd::fetch_status(&store, &url));
        match status {
            Ok((authenticated, s)) => {
                let last =
                    autogit_drivers::backup::last_backup(&crate::backup_cmd::backup_dir(g, loaded));
                crate::gitlab_cmd::print_status_table(ui, &url, authenticated, &s, last.as_ref());
            }
            Err(e) => ui.note(&format!("warning: GitLab at {url}: {e}")),
        }
    }
    exit::OK
}

/// What GitLab's REST API says (version, health, readiness, users, runners), for `status gitlab`.
fn gitlab_rest_status(g: &Global, loaded: &Loaded) -> serde_json::Value {
    let url = crate::gitlab_cmd::local_url(loaded);
    let store = match autogit_drivers::secrets::SecretStore::open(&data_dir(g)) {
        Ok(s) => s,
        Err(e) => return json!({"url": url, "error": e.to_string()}),
    };
    match crate::gitlab_cmd::fetch_status(&store, &url) {
        Ok((authenticated, s)) => {
            let last =
                autogit_drivers::backup::last_backup(&crate::backup_cmd::backup_dir(g, loaded));
            json!({
                "url": url, "authenticated": authenticated, "status": s, "error": s.errors.first(),
                "last_backup": last.map(|(n, _)| n),
            })
        }
        Err(e) => json!({"url": url, "error": e}),
    }
}

pub fn logs(
    ui: &Ui,
    loaded: &Loaded,
    services: &[String],
    follow: bool,
    since: Option<&str>,
    tail: Option<usize>,
) -> u8 {
    let since_secs = match since.map(|s| Dur::parse(s).ok_or(s)) {
        Some(Ok(d)) => Some(now().saturating_sub(d.as_secs()) as i64),
        Some(Err(s)) => {
            return fail(
                ui,
                format!("--since {s}: expected a duration such as 10m or 2h"),
            );
        }
        None => None,
    };
    runtime().block_on(async {
        let engine = match connect(loaded).await {
            Ok(e) => e,
            Err(e) => return fail(ui, e),
        };
        let project = &loaded.config.platform.project;
        let mut since_at = since_secs;
        let mut tail = tail;
        loop {
            let observed = match engine.list(project).await {
                Ok(o) => o,
                Err(e) => return fail(ui, e),
            };
            let chosen: Vec<_> = observed
                .iter()
                .filter(|o| services.is_empty() || services.contains(&o.service))
                .collect();
            if chosen.is_empty() && !follow {
                return fail(ui, "no matching containers; is the platform installed?");
            }
            let width = chosen.iter().map(|o| o.service.len()).max().unwrap_or(0);
            let fetched_at = now() as i64;
            for o in &chosen {
                match engine.logs(&o.id, since_at, tail).await {
                    Ok(lines) => {
                        for l in lines {
                            println!("{:<width$} | {l}", o.service);
                        }
                    }
                    Err(e) => ui.error(&format!("{}: {e}", o.service)),
                }
            }
            if !follow {
                return exit::OK;
            }
            since_at = Some(fetched_at);
            tail = None;
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = tokio::signal::ctrl_c() => return exit::OK,
            }
        }
    })
}

pub fn reconcile(ui: &Ui, g: &Global, loaded: &Loaded, clear: Option<&str>) -> u8 {
    let r = match ready(ui, g, loaded) {
        Ok(r) => r,
        Err(code) => return code,
    };
    if let Some(svc) = clear {
        return match r.store.clear_flag(svc) {
            Ok(true) => {
                ui.note(&format!(
                    "cleared the human-intervention flag of `{svc}`; automatic repair is on again"
                ));
                exit::OK
            }
            Ok(false) => fail(
                ui,
                format!("no service `{svc}` in the state of this data dir"),
            ),
            Err(e) => fail(ui, e),
        };
    }
    let rendered = r.data.join("rendered");
    if let Err(code) = write_rendered(ui, g, &rendered, &r.plan, loaded) {
        return code;
    }
    runtime().block_on(async {
        let runtime = match open_runtime(ui, loaded, r, &rendered, NotifyMode::Configured { log: !ui.quiet }, false).await {
            Ok(rt) => rt,
            Err(code) => return code,
        };
        match runtime.reconcile_once().await {
            Ok(report) => {
                if ui.json {
                    ui.print_json(&json!({"actions": report.actions, "errors": report.errors.iter().map(|(s, e)| json!({"service": s, "error": e})).collect::<Vec<_>>()}));
                } else if report.actions.is_empty() {
                    ui.note("everything matches the plan");
                } else {
                    for a in &report.actions {
                        println!("{}", serde_json::to_string(a).unwrap_or_default());
                    }
                }
                // Let queued webhooks go out before the process ends.
                tokio::time::sleep(Duration::from_millis(200)).await;
                if report.errors.is_empty() { exit::OK } else { exit::FAILURE }
            }
            Err(e) => fail(ui, e),
        }
    })
}

pub fn systemd_unit(g: &Global, loaded: &Loaded) -> String {
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "/usr/local/bin/autogit".into());
    let config = loaded
        .config_path
        .as_ref()
        .map(|p| format!(" --config {}", absolute(p).display()))
        .unwrap_or_default();
    let data = absolute(&data_dir(g)).display().to_string();
    format!(
        "[Unit]\nDescription=autogit: keep the self-hosted Git platform healthy\nDocumentation=man:autogit(1)\nAfter=network-online.target docker.service\nWants=network-online.target\n\n\
         [Service]\nType=exec\nExecStart={exe} daemon{config} --data-dir {data}\nRestart=on-failure\nRestartSec=10s\nKillSignal=SIGTERM\nTimeoutStopSec=30s\n\
         NoNewPrivileges=yes\nPrivateTmp=yes\nProtectSystem=strict\nReadWritePaths={data}\nProtectHome=read-only\nUMask=0077\n\n\
         [Install]\nWantedBy=default.target\n"
    )
}

/// After a successful install: `autogit daemon` as a systemd service, so that nothing else is
/// needed. As root the system unit `/etc/systemd/system/autogit.service`, otherwise the user
/// unit `~/.config/systemd/user/autogit.service` (`systemctl --user`; lingering keeps it running
/// after logout). `AUTOGIT_SYSTEMD_UNIT_DIR` puts the unit elsewhere. Never fails the install:
/// without systemd, or when systemctl refuses, it says what to run instead.
pub fn ensure_service(ui: &Ui, g: &Global, loaded: &Loaded) {
    let user = autogit_drivers::host::euid() != Some(0);
    let dir = loaded
        .env
        .iter()
        .find(|(k, _)| k == "AUTOGIT_SYSTEMD_UNIT_DIR")
        .map(|(_, v)| PathBuf::from(v))
        .or_else(|| {
            if user {
                loaded
                    .env
                    .iter()
                    .find(|(k, _)| k == "HOME")
                    .map(|(_, h)| Path::new(h).join(".config/systemd/user"))
            } else {
                Some(PathBuf::from("/etc/systemd/system"))
            }
        });
    let manual = "run `autogit daemon` under your init system (`autogit daemon --print-systemd-unit` prints a unit)";
    let has_systemctl = std::process::Command::new("systemctl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let Some(dir) = dir.filter(|_| has_systemctl) else {
        ui.note(&format!("no systemd here: {manual}"));
        return;
    };
    let unit = dir.join("autogit.service");
    let text = systemd_unit(g, loaded);
    let unchanged = std::fs::read_to_string(&unit).is_ok_and(|t| t == text);
    if !unchanged && let Err(e) = write_atomic(&unit, text.as_bytes(), 0o644) {
        ui.error(&format!("cannot write {}: {e}; {manual}", unit.display()));
        return;
    }
    let systemctl = |args: &[&str]| {
        let mut c = std::process::Command::new("systemctl");
        if user {
            c.arg("--user");
        }
        c.args(args)
            .output()
            .map(|o| {
                (
                    o.status.success(),
                    String::from_utf8_lossy(&o.stderr).trim().to_owned(),
                )
            })
            .unwrap_or_else(|e| (false, e.to_string()))
    };
    let scope = if user {
        "systemctl --user"
    } else {
        "systemctl"
    };
    let steps: &[&[&str]] = if unchanged {
        &[&["enable", "--now", "autogit.service"]]
    } else {
        &[
            &["daemon-reload"],
            &["enable", "--now", "autogit.service"],
            &["restart", "autogit.service"],
        ]
    };
    for args in steps {
        let (ok, err) = systemctl(args);
        if !ok {
            // Not an install failure, but the user must act: shown even with --quiet.
            ui.error(&format!(
                "wrote {} but `{scope} {}` failed ({err}); run it yourself, or {manual}",
                unit.display(),
                args.join(" ")
            ));
            return;
        }
    }
    ui.note(&format!(
        "autogit daemon runs as the systemd service autogit.service ({}; `{scope} status autogit` shows it){}",
        unit.display(),
        if user { "; `loginctl enable-linger` keeps it running after you log out" } else { "" }
    ));
}

pub fn daemon(ui: &Ui, g: &Global, loaded: &Loaded, print_unit: bool) -> u8 {
    if print_unit {
        print!("{}", systemd_unit(g, loaded));
        return exit::OK;
    }
    let r = match ready(ui, g, loaded) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let rendered = r.data.join("rendered");
    if let Err(code) = write_rendered(ui, g, &rendered, &r.plan, loaded) {
        return code;
    }
    let interval = loaded.config.health.reconcile_interval.0;
    runtime().block_on(async {
        let runtime = match open_runtime(ui, loaded, r, &rendered, NotifyMode::Configured { log: !ui.quiet }, false).await {
            Ok(rt) => rt,
            Err(code) => return code,
        };
        let shutdown = async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
            }
        };
        ui.note(&format!("autogit daemon: project `{}`, reconcile every {}; SIGTERM stops it", runtime.project, loaded.config.health.reconcile_interval));
        let quiet = ui.quiet;
        let tls = tls_renewal(ui, g, loaded, interval);
        let mirrors = mirror_schedule(g, loaded);
        let dns = dns_schedule(g, loaded, interval);
        let runners = runner_autoscale(g, loaded);
        let run = runtime
            .run(interval, shutdown, |res| match res {
                Ok(report) if !quiet && !report.actions.is_empty() => {
                    for a in &report.actions {
                        eprintln!("{}", serde_json::json!({"event": "action", "action": a}));
                    }
                    for (s, e) in &report.errors {
                        eprintln!("{}", serde_json::json!({"event": "action_failed", "service": s, "error": e}));
                    }
                }
                Ok(_) => {}
                Err(e) => eprintln!("{}", serde_json::json!({"event": "pass_failed", "error": e.to_string()})),
            });
        // The renewal loop never ends on its own; the daemon stops when `run` returns.
        tokio::select! {
            () = run => {}
            () = tls => {}
            () = mirrors => {}
            () = dns => {}
            () = runners => {}
        }
        ui.note("autogit daemon: stopped");
        exit::OK
    })
}

/// Renews the platform certificate when due, when TLS is configured (BASE_DOMAIN and
/// ACME_EMAIL set). Failures back off (`core::tls::retry_after`) and never stop the daemon;
/// the old certificate keeps serving.
async fn tls_renewal(ui: &Ui, g: &Global, loaded: &Loaded, interval: Duration) {
    if loaded.platform.base_domain.is_none() || loaded.platform.acme_email.is_none() {
        return std::future::pending().await;
    }
    let mut failures = 0u32;
    let mut next = 0i64;
    loop {
        let t = now() as i64;
        if t >= next {
            match crate::tls_cmd::renew_if_due(g, loaded, false, &|_| {}).await {
                Ok(Some(info)) => {
                    failures = 0;
                    eprintln!(
                        "{}",
                        json!({"event": "certificate_renewed", "names": info.names, "not_after": info.not_after})
                    );
                    if let Err(e) = crate::tls_cmd::refresh_ingress(ui, g, loaded).await {
                        eprintln!("{}", json!({"event": "ingress_refresh_failed", "error": e}));
                    }
                }
                Ok(None) => failures = 0,
                Err(e) => {
                    failures += 1;
                    let not_after = crate::tls_cmd::settings(g, loaded)
                        .ok()
                        .and_then(|(s, d)| {
                            let wanted = crate::tls_cmd::wanted_names(g, loaded, &d).ok()?;
                            crate::tls_cmd::current(&s, &d, &wanted)
                        })
                        .map_or(t + 90 * 86_400, |(i, _)| i.not_after);
                    next = autogit_core::tls::retry_after(failures, t, not_after);
                    eprintln!(
                        "{}",
                        json!({"event": "certificate_renewal_failed", "error": e, "failures": failures, "retry_at": next})
                    );
                    // Recorded with the platform's events, for `status` and later reading.
                    if let Ok(store) = Store::open(&data_dir(g).join("state.db")) {
                        let _ = store.event(now(), Some("tls"), "certificate_renewal_failed", &e);
                    }
                }
            }
        }
        tokio::time::sleep(interval.max(Duration::from_secs(60))).await;
    }
}

/// Scheduled mirroring (`mirroring.enabled`, `mirroring.schedule`): when the schedule is due,
/// runs `autogit mirror sync` as a child process with the daemon's own configuration, one at a
/// time. The scheduled time of the last run is kept in `<data>/state/mirror-schedule.json`, so
/// after downtime a missed schedule runs once, not once per missed time; a repository is never
/// synced twice at once (the mirror driver locks each one).
async fn mirror_schedule(g: &Global, loaded: &Loaded) {
    let m = &loaded.config.mirroring;
    let s = &m.sources;
    if !m.enabled || (s.github.is_empty() && s.gitlab.is_empty() && s.git.is_empty()) {
        return std::future::pending().await;
    }
    let state = data_dir(g).join("state/mirror-schedule.json");
    loop {
        let last = std::fs::read(&state)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["last_scheduled"].as_i64());
        match autogit_core::schedule::due(&m.schedule, last, now() as i64) {
            Ok(Some(t)) => {
                eprintln!(
                    "{}",
                    json!({"event": "mirror_sync_started", "scheduled_for": t})
                );
                let (code, failed) = run_mirror_sync(g).await;
                let _ = write_atomic(
                    &state,
                    json!({"last_scheduled": t}).to_string().as_bytes(),
                    0o644,
                );
                eprintln!(
                    "{}",
                    json!({"event": "mirror_sync_finished", "scheduled_for": t, "exit": code, "failed": failed,
                           "next": autogit_core::schedule::next(&m.schedule, t).ok().flatten()})
                );
            }
            Ok(None) => {}
            Err(e) => {
                eprintln!(
                    "{}",
                    json!({"event": "mirror_schedule_invalid", "error": e})
                );
                return std::future::pending().await;
            }
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
}

/// `autogit mirror sync -o json` as a child, with the daemon's global options. Returns its exit
/// code and the number of failed mirrors it reported.
async fn run_mirror_sync(g: &Global) -> (i32, Option<u64>) {
    let (code, out) = run_self(g, &["mirror", "sync"]).await;
    (code, out.and_then(|v| v["failed"].as_u64()))
}

/// DNS records kept in sync by the daemon (DNS_PROVIDER set to a provider autogit can
/// update): `autogit dns sync` as a child every reconcile interval (at least 5 minutes), so a
/// changed ingress address or service list reaches the zone without a person.
async fn dns_schedule(g: &Global, loaded: &Loaded, interval: Duration) {
    use autogit_core::platform::DnsProvider as Kind;
    if loaded.platform.base_domain.is_none()
        || matches!(loaded.platform.dns_provider, Kind::None | Kind::Manual)
    {
        return std::future::pending().await;
    }
    loop {
        let (code, out) = run_self(g, &["dns", "sync"]).await;
        let applied = out
            .as_ref()
            .and_then(|v| v["applied"].as_array().map(Vec::len));
        if code != 0 || applied.is_some_and(|n| n > 0) {
            eprintln!(
                "{}",
                json!({"event": "dns_sync", "exit": code, "applied": applied})
            );
        }
        tokio::time::sleep(interval.max(Duration::from_secs(300))).await;
    }
}

/// `autogit <args> -o json -q` as a child with the daemon's global options: its exit code and
/// its JSON answer.
async fn run_self(g: &Global, args: &[&str]) -> (i32, Option<serde_json::Value>) {
    let Ok(exe) = std::env::current_exe() else {
        return (-1, None);
    };
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args(args).args(["-o", "json", "-q"]);
    if let Some(c) = &g.config {
        cmd.arg("--config").arg(c);
    }
    if let Some(e) = &g.env_file {
        cmd.arg("--env-file").arg(e);
    }
    cmd.arg("--data-dir").arg(data_dir(g));
    for s in &g.set {
        cmd.arg("--set").arg(s);
    }
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true);
    match cmd.output().await {
        Ok(out) => (
            out.status.code().unwrap_or(-1),
            serde_json::from_slice::<serde_json::Value>(&out.stdout).ok(),
        ),
        Err(e) => {
            eprintln!(
                "{}",
                json!({"event": "spawn_failed", "command": args.join(" "), "error": e.to_string()})
            );
            (-1, None)
        }
    }
}

/// On-demand runners: every 30 seconds, an autoscale pass (`autogit runner autoscale`) over
/// the registered runners; actions and errors are logged as events.
async fn runner_autoscale(g: &Global, loaded: &Loaded) {
    if loaded.config.all_runners().next().is_none() {
        return std::future::pending().await;
    }
    let url = crate::gitlab_cmd::local_url(loaded);
    loop {
        match crate::runner_cmd::autoscale_pass(g, loaded, &url).await {
            Ok(rows) => {
                for r in rows.iter().filter(|r| {
                    r.error.is_some() || r.action != autogit_core::ondemand::Action::Keep
                }) {
                    eprintln!("{}", json!({"event": "runner_autoscale", "runner": r}));
                }
            }
            Err(e) => eprintln!(
                "{}",
                json!({"event": "runner_autoscale_failed", "error": e})
            ),
        }
        // Compute jobs waiting or running: a scheduling pass (`compute list` places queued
        // jobs on hosts with room, notices finished ones and unreachable hosts).
        let active = Store::open(&data_dir(g).join("state.db"))
            .and_then(|s| s.jobs())
            .map(|jobs| {
                jobs.iter()
                    .any(|j| j.state == "queued" || j.state == "running")
            })
            .unwrap_or(false);
        if active {
            let (code, _) = run_self(g, &["compute", "list"]).await;
            if code != 0 {
                eprintln!("{}", json!({"event": "compute_pass_failed", "exit": code}));
            }
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
}
