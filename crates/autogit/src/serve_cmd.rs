//! `autogit serve` (the REST API server, `autogit-api`) and the remote side of `--api`:
//! the same operations, called over HTTP with the typed client.

use crate::ctx::Loaded;
use crate::exit;
use crate::ui::{Ui, fail, runtime};
use autogit_api::server::{Api, ServeOptions};
use autogit_app::access::AccessController;
use autogit_app::audit::AuditLog;
use autogit_app::sinks::Sinks;
use autogit_app::{Bus, clock};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub fn serve(ui: &Ui, loaded: &Loaded, listen: SocketAddr, options: ServeOptions) -> u8 {
    if let Err(e) = loaded.ensure_data_dir() {
        return fail(ui, e);
    }
    let telemetry = crate::ui::init_json_log(ui, loaded);
    let code = runtime().block_on(async {
        let clock = clock::system();
        let bus = Bus::new(clock.clone());
        let sinks = Sinks::all(&bus, loaded);
        let access = match AccessController::open(loaded, clock.clone()) {
            Ok(a) => a,
            Err(e) => return fail(ui, format!("API keys: {e}")),
        };
        for name in access.register_extensions(loaded).await {
            ui.note(&format!("autogit serve: login provider `{name}` (extension)"));
        }
        let audit = match AuditLog::open(loaded, clock.clone()) {
            Ok(a) => a,
            Err(e) => return fail(ui, format!("audit log: {e}")),
        };
        let api = match Api::new(loaded.settings.clone(), bus.clone(), access, audit, options) {
            Ok(a) => Arc::new(a),
            Err(e) => return fail(ui, e),
        };
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => return fail(ui, format!("cannot listen on {listen}: {e}")),
        };
        let addr = listener.local_addr().unwrap_or(listen);
        ui.note(&format!(
            "autogit serve: listening on http://{addr} (OpenAPI at /api/v1/openapi.json); SIGTERM stops it"
        ));
        let shutdown = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
            }
        };
        autogit_api::server::serve(listener, api, shutdown).await;
        sinks.finish(bus, Duration::from_secs(5)).await;
        ui.note("autogit serve: stopped");
        exit::OK
    });
    if let Some(t) = telemetry {
        t.shutdown();
    }
    code
}

/// `autogit --api URL status`: the services as the remote server reports them.
pub fn remote_status(ui: &Ui, url: &str, service: Option<&str>) -> u8 {
    use autogit_api::client::Client;
    use autogit_api::model::{ServicePath, ServiceQuery};
    use autogit_api::op::{NoBody, NoParams};
    use autogit_api::ops::{GetService, ListServices};
    let Some(key) = std::env::var("AUTOGIT_API_KEY")
        .ok()
        .filter(|k| !k.is_empty())
    else {
        return fail(
            ui,
            "--api needs a key or token in AUTOGIT_API_KEY (create one with `autogit api-key create NAME --role viewer` on the server)",
        );
    };
    let client = match Client::new(url, key.into()) {
        Ok(c) => c,
        Err(e) => return fail(ui, e),
    };
    let result = runtime().block_on(async {
        match service {
            Some(s) => client
                .call::<GetService>(
                    &ServicePath {
                        service: s.to_owned(),
                    },
                    &NoParams {},
                    &NoBody {},
                )
                .await
                .map(|one| vec![one]),
            None => client
                .call::<ListServices>(&NoParams {}, &ServiceQuery::default(), &NoBody {})
                .await
                .map(|l| l.0),
        }
    });
    let services = match result {
        Ok(s) => s,
        Err(e) => return fail(ui, format!("{url}: {e}")),
    };
    if ui.json {
        ui.print_json(&serde_json::json!({ "server": url, "services": services }));
        return exit::OK;
    }
    let mut t = ui.table();
    t.set_header(vec!["SERVICE", "STATUS", "STATE", "URL", "FLAG"]);
    for s in &services {
        t.add_row(vec![
            s.name.clone(),
            s.status.as_str().to_owned(),
            s.state.clone().unwrap_or_else(|| "-".into()),
            s.url.clone().unwrap_or_else(|| "-".into()),
            if s.flagged {
                format!(
                    "NEEDS ATTENTION: {}",
                    s.flag_reason.clone().unwrap_or_default()
                )
            } else {
                String::new()
            },
        ]);
    }
    println!("{t}");
    exit::OK
}
