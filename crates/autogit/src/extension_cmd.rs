//! `autogit extension list|info|check`: parse, call the provider registry
//! (`autogit_app::extensions`), render. See docs/extensions.md.

use crate::cli::ExtensionCommand;
use crate::ctx::Loaded;
use crate::exit;
use crate::ui::{Ui, fail, runtime};
use autogit_app::extensions::Registry;
use autogit_core::extension::Manifest;
use autogit_drivers::extension::ExtensionError;
use serde_json::json;

pub fn run(cmd: ExtensionCommand, ui: &Ui, loaded: &Loaded) -> u8 {
    if loaded.diagnostics.has_errors() {
        ui.diagnostics(&loaded.diagnostics, &loaded.sources);
        return exit::INVALID_CONFIG;
    }
    let registry = match Registry::load(&loaded.settings) {
        Ok(r) => r,
        Err(e) => return fail(ui, e),
    };
    runtime().block_on(async {
        match cmd {
            ExtensionCommand::List => list(ui, &registry).await,
            ExtensionCommand::Info { name } => info(ui, &registry, &name).await,
            ExtensionCommand::Check { name } => check(ui, &registry, loaded, &name).await,
        }
    })
}

fn provides(m: &Manifest) -> String {
    m.providers
        .iter()
        .map(|p| p.kind.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

async fn list(ui: &Ui, registry: &Registry) -> u8 {
    let listed = registry.list().await;
    let order = Registry::start_order(&listed);
    if ui.json {
        let rows: Vec<_> = listed
            .iter()
            .map(|l| {
                json!({
                    "name": l.name,
                    "path": l.path,
                    "enabled": l.enabled,
                    "manifest": l.manifest.as_ref().ok(),
                    "error": l.manifest.as_ref().err(),
                })
            })
            .collect();
        let dns: Vec<_> = registry
            .dns_names()
            .into_iter()
            .map(|(name, origin)| json!({"name": name, "origin": origin}))
            .collect();
        ui.print_json(&json!({
            "dir": registry.dir(),
            "extensions": rows,
            "start_order": order.as_ref().ok(),
            "order_error": order.as_ref().err().map(ToString::to_string),
            "dns_providers": dns,
        }));
    } else {
        println!("extensions in {}", registry.dir().display());
        let mut t = ui.table();
        t.set_header(vec!["NAME", "ENABLED", "VERSION", "PROVIDES", "STATUS"]);
        for l in &listed {
            let (version, provides, status) = match &l.manifest {
                Ok(m) => (m.version.clone(), provides(m), "ok".to_owned()),
                Err(e) => (String::new(), String::new(), e.clone()),
            };
            t.add_row(vec![
                l.name.clone(),
                if l.enabled { "yes" } else { "no" }.to_owned(),
                version,
                provides,
                status,
            ]);
        }
        println!("{t}");
        for (path, why) in registry.skipped() {
            ui.note(&format!("skipped {}: {why}", path.display()));
        }
        let from_extensions: Vec<String> = registry
            .dns_names()
            .into_iter()
            .filter(|(_, origin)| origin != "built-in")
            .map(|(n, _)| n)
            .collect();
        if !from_extensions.is_empty() {
            println!(
                "dns providers from extensions: {}",
                from_extensions.join(", ")
            );
        }
        if let Ok(o) = &order
            && !o.is_empty()
        {
            println!("start order: {}", o.join(", "));
        }
    }
    let broken = listed.iter().any(|l| l.enabled && l.manifest.is_err());
    match order {
        Err(e) => fail(ui, e),
        Ok(_) if broken => exit::FAILURE,
        Ok(_) => exit::OK,
    }
}

fn code_of(e: &ExtensionError) -> u8 {
    match e {
        ExtensionError::NotFound { .. }
        | ExtensionError::Manifest { .. }
        | ExtensionError::Config { .. } => exit::INVALID_CONFIG,
        _ => exit::FAILURE,
    }
}

async fn info(ui: &Ui, registry: &Registry, name: &str) -> u8 {
    let found = match registry.find(name) {
        Ok(f) => f.clone(),
        Err(e) => {
            ui.error(&e.to_string());
            return code_of(&e);
        }
    };
    let m = match autogit_drivers::extension::handshake(&found, registry.limits()).await {
        Ok(m) => m,
        Err(e) => {
            ui.error(&e.to_string());
            return code_of(&e);
        }
    };
    if ui.json {
        ui.print_json(&json!({"path": found.path, "manifest": m}));
        return exit::OK;
    }
    println!("{} {} (protocol {})", m.name, m.version, m.protocol_version);
    println!("path: {}", found.path.display());
    if !m.description.is_empty() {
        println!("{}", m.description);
    }
    for p in &m.providers {
        println!("provides {}", p.kind);
        let mut t = ui.table();
        t.set_header(vec!["SETTING", "TYPE", "REQUIRED", "SECRET", "DESCRIPTION"]);
        for f in &p.config {
            t.add_row(vec![
                f.key.clone(),
                format!("{:?}", f.kind).to_ascii_lowercase(),
                if f.required { "yes" } else { "no" }.to_owned(),
                if f.secret { "yes" } else { "no" }.to_owned(),
                f.description.clone(),
            ]);
        }
        println!("{t}");
    }
    let list = |v: &[String]| {
        if v.is_empty() {
            "(none)".to_owned()
        } else {
            v.join(", ")
        }
    };
    println!("secrets: {}", list(&m.secrets));
    println!("environment: {}", list(&m.env));
    println!("depends on: {}", list(&m.dependencies));
    exit::OK
}

async fn check(ui: &Ui, registry: &Registry, loaded: &Loaded, name: &str) -> u8 {
    match registry.check(name, &loaded.settings).await {
        Ok(checked) => {
            let (m, health) = (&checked.manifest, &checked.health);
            let healthy = health
                .iter()
                .all(|(_, h)| h.get("status").and_then(|s| s.as_str()) == Some("ok"));
            if ui.json {
                let h: Vec<_> = health
                    .iter()
                    .map(|(k, v)| json!({"provider": k, "health": v}))
                    .collect();
                ui.print_json(&json!({
                    "name": m.name, "version": m.version, "enabled": checked.enabled,
                    "healthy": healthy, "providers": h,
                }));
            } else {
                println!("{} {}: handshake ok", m.name, m.version);
                for (kind, h) in health {
                    let status = h.get("status").and_then(|s| s.as_str()).unwrap_or("?");
                    let detail = h.get("detail").and_then(|s| s.as_str()).unwrap_or("");
                    println!("{kind}: initialize ok, health {status} {detail}");
                }
                if !checked.enabled {
                    ui.note(&format!(
                        "{} is not in EXTENSIONS_ENABLED: it was given no setting or secret, only its handshake ran",
                        m.name
                    ));
                } else if health.is_empty() {
                    ui.note("it provides no type this autogit uses yet; only the handshake ran");
                }
            }
            if healthy { exit::OK } else { exit::FAILURE }
        }
        Err(e) => {
            ui.error(&e.to_string());
            code_of(&e)
        }
    }
}
