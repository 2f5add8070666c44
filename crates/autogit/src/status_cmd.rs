//! Commands that look at the running platform: `status` (the state machine's record joined
//! with the engine's view, GitLab's REST status, the certificate), `logs` (merged, per
//! service, optionally followed) and `logs search` (the daemon's index). They call
//! `autogit_app::platform` and `autogit_app::logs` and render.

use crate::ctx::Loaded;
use crate::exit;
use crate::ui::{Ui, fail, runtime};
use autogit_app::{Bus, clock};
use autogit_core::units::Dur;
use autogit_drivers::runtime::now;
use serde_json::json;

pub fn status(ui: &Ui, loaded: &Loaded, service: Option<&str>) -> u8 {
    let report = match runtime().block_on(autogit_app::platform::status(loaded, now(), service)) {
        Ok(r) => r,
        Err(e) => return fail(ui, e),
    };
    if !report.installed {
        if ui.json {
            ui.print_json(&json!({"installed": false, "services": []}));
        } else {
            ui.note(&format!(
                "nothing installed yet (no {}); run `autogit install`",
                loaded.state_db().display()
            ));
        }
        return exit::OK;
    }
    if let Some(s) = service
        && report.services.is_empty()
        && s != "runners"
    {
        return fail(
            ui,
            format!("no service `{s}` in the state of this data dir"),
        );
    }
    if let Some(e) = &report.engine_error
        && !ui.json
    {
        ui.note(&format!(
            "warning: container engine not reachable ({e}); showing recorded state only"
        ));
    }
    if ui.json {
        let mut out = json!({"installed": true, "engine_reachable": report.engine_error.is_none(), "services": report.services});
        if service == Some("gitlab") {
            out["gitlab"] = crate::gitlab_cmd::rest_status_json(loaded);
        }
        ui.print_json(&out);
        return exit::OK;
    }
    crate::ui::status_table(ui, &report.services, now() as i64);
    if service.is_none() {
        let tls = autogit_app::tls::TlsController::new(
            loaded.settings.clone(),
            Bus::new(clock::system()),
            clock::system(),
        );
        if let Ok(Some(c)) = tls.current() {
            println!(
                "certificate: {} expires in {} days{}",
                c.info.names.join(", "),
                (c.info.not_after - now() as i64) / 86_400,
                if c.due { " (renewal due)" } else { "" }
            );
        }
    }
    if service == Some("gitlab") {
        crate::gitlab_cmd::print_rest_status(ui, loaded);
    }
    exit::OK
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
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let result = runtime().block_on(autogit_app::platform::logs(
        loaded,
        services,
        since_secs,
        tail,
        follow,
        stop,
        |svc, line| println!("{svc} | {line}"),
    ));
    match result {
        Ok(()) => exit::OK,
        Err(e) => fail(ui, e),
    }
}

/// `autogit logs search QUERY`: the hits, newest or best first; JSON with `-o json`.
pub fn log_search(
    ui: &Ui,
    loaded: &Loaded,
    query: &str,
    since: Option<&str>,
    limit: usize,
    mode: Option<autogit_core::logs::SearchMode>,
) -> u8 {
    use autogit_app::logs::LogError;
    let c = autogit_app::logs::LogController::new(loaded.settings.clone(), clock::system());
    let found = match c.search_mode(query, since, limit, mode) {
        Ok(f) => f,
        Err(
            e @ (LogError::Query(_)
            | LogError::Range(_)
            | LogError::SemanticOff(_)
            | LogError::NoModel),
        ) => {
            ui.error(&e.to_string());
            return exit::UNAVAILABLE;
        }
        Err(e) => return fail(ui, e.to_string()),
    };
    if ui.json {
        ui.print_json(&json!({
            "query": found.query,
            "mode": found.mode,
            "indexed": found.indexed,
            "hits": found.hits,
        }));
        return exit::OK;
    }
    if found.indexed == 0 {
        println!(
            "nothing is indexed yet: `autogit daemon` follows the containers' logs and indexes them"
        );
        return exit::OK;
    }
    for h in &found.hits {
        let at = autogit_core::civil::rfc3339_utc((h.at_ns / 1_000_000_000).max(0) as u64);
        println!("{at} {:<10} {:<5} {}", h.service, h.level, h.message);
    }
    if found.hits.is_empty() {
        println!("no match in {} indexed lines", found.indexed);
    }
    exit::OK
}
