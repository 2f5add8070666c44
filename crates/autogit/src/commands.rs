//! One function per command. Commands whose capability is still being built exit with
//! [`exit::UNAVAILABLE`] and say what they will do; they never pretend to succeed.

use crate::cli::{Cli, Command, ComputeCommand, MirrorCommand, RunnerCommand, TargetArg};
use crate::ctx::{Loaded, data_dir, load_all};
use crate::exit;
use crate::ui::{Ui, diagnostics_json};
use autogit_core::load::{EMBEDDED_DEFAULT, FlagOverride};
use autogit_core::plan::{Placement, Plan};
use autogit_core::platform::ENV_TEMPLATE;
use autogit_core::render;
use autogit_drivers::fsx::write_atomic;
use clap::CommandFactory;
use serde_json::json;
use std::path::Path;

pub fn run(cli: Cli) -> std::process::ExitCode {
    let ui = Ui::new(&cli.global);
    let g = &cli.global;
    let target = match &cli.command {
        Command::Install { target, .. }
        | Command::Status { target, .. }
        | Command::Reconcile { target, .. }
        | Command::Daemon { target, .. } => Some(target),
        _ => None,
    };
    if let Some(t) = target
        && t.target == TargetArg::Engine
        && let Some(c) = &t.context
    {
        ui.error(&format!(
            "--context {c} names a Kubernetes context: add --target kubernetes (the engine has no context)"
        ));
        return exit::FAILURE.into();
    }
    let code = match cli.command {
        // The filter has its own exit codes (its verdicts): see docs/guard.md.
        Command::Guard(cmd) => {
            let ctx = crate::guard_cmd::GuardContext {
                json: ui.json,
                data_dir: data_dir(g),
            };
            return crate::guard_cmd::run(cmd, &ctx);
        }
        Command::Dns(cmd) => crate::dns_cmd::run(cmd, &ui, g),
        Command::Extension(cmd) => crate::extension_cmd::run(cmd, &ui, &load_all(g, &[])),
        Command::Init { dir, force } => init(&ui, &dir, force),
        Command::Validate => validate(&ui, &load_all(g, &[])),
        Command::Plan { preset } => {
            let flags = preset_flag(preset);
            show_plan(&ui, g, &load_all(g, &flags))
        }
        Command::Install {
            preset,
            dry_run,
            wait,
            no_bootstrap,
            no_service,
            target,
            force_conflicts,
        } => {
            let flags = preset_flag(preset);
            let loaded = load_all(g, &flags);
            if target.target == TargetArg::Kubernetes && !dry_run {
                crate::kube_cmd::install(&ui, g, &loaded, &target, &wait, force_conflicts)
            } else if dry_run {
                dry_run_install(&ui, g, &loaded)
            } else {
                let code = crate::runtime_cmd::install(&ui, g, &loaded, &wait, !no_bootstrap);
                if code == exit::OK && !no_service {
                    crate::runtime_cmd::ensure_service(&ui, &loaded);
                }
                code
            }
        }
        Command::Down { volumes, yes } => {
            crate::runtime_cmd::down(&ui, g, &load_all(g, &[]), volumes, yes)
        }
        Command::Serve {
            listen,
            print_openapi,
            max_body,
            rate_per_addr,
            rate_per_key,
        } => {
            let options = autogit_api::server::ServeOptions {
                max_body_bytes: max_body,
                rate_per_addr: (rate_per_addr, rate_per_addr * 2.0),
                rate_per_principal: (rate_per_key, rate_per_key * 2.0),
                ..Default::default()
            };
            if print_openapi {
                print!("{}", autogit_api::openapi::json());
                exit::OK
            } else {
                crate::serve_cmd::serve(&ui, &load_all(g, &[]), listen, options)
            }
        }
        Command::Daemon { target, .. } if target.target == TargetArg::Kubernetes => {
            crate::kube_cmd::daemon(&ui, g, &load_all(g, &[]), &target)
        }
        Command::Daemon {
            print_systemd_unit,
            api_listen,
            ..
        } => crate::runtime_cmd::daemon(&ui, g, &load_all(g, &[]), print_systemd_unit, api_listen),
        Command::Export(cmd) => crate::export_cmd::run(&ui, g, &load_all(g, &[]), cmd),
        Command::Diagnose {
            only,
            fix,
            bundle,
            timeout,
        } => crate::diagnose_cmd::run(
            &ui,
            &load_all(g, &[]),
            &crate::diagnose_cmd::Args {
                only,
                fix,
                bundle,
                timeout,
            },
        ),
        Command::Status { service, target } if target.target == TargetArg::Kubernetes => {
            crate::kube_cmd::status(&ui, g, &load_all(g, &[]), &target, service.as_deref())
        }
        Command::Status { service, .. } => match &g.api {
            Some(url) => crate::serve_cmd::remote_status(&ui, url, service.as_deref()),
            None => crate::status_cmd::status(&ui, &load_all(g, &[]), service.as_deref()),
        },
        Command::Gitlab(cmd) => crate::gitlab_cmd::run(&ui, &load_all(g, &[]), cmd),
        Command::Tls(cmd) => crate::tls_cmd::run(&ui, g, cmd),
        Command::Secrets(cmd) => crate::secrets_cmd::run(&ui, &load_all(g, &[]), cmd),
        Command::Services => services(&ui, g, &load_all(g, &[])),
        Command::Mirror(m) => match m {
            MirrorCommand::Sync { repos } => {
                crate::mirror_cmd::sync(&ui, g, &load_all(g, &[]), &repos)
            }
            MirrorCommand::List => crate::mirror_cmd::list(&ui, g, &load_all(g, &[])),
            MirrorCommand::Add {
                source,
                token_env,
                org,
                group,
                url,
            } => crate::mirror_cmd::add(
                &ui,
                &load_all(g, &[]),
                &source,
                token_env.as_deref(),
                org,
                group,
                url.as_deref(),
            ),
        },
        Command::Runner(r) => match r {
            RunnerCommand::List => runner_list(&ui, g, &load_all(g, &[])),
            RunnerCommand::Discover { targets, wait } => {
                crate::runner_cmd::discover(&ui, g, &targets, &wait)
            }
            RunnerCommand::Unregister { name, api } => {
                crate::runner_cmd::unregister(&ui, g, &load_all(g, &[]), &name, &api)
            }
            RunnerCommand::Autoscale { once, api } => {
                crate::runner_cmd::autoscale(&ui, &load_all(g, &[]), once, &api)
            }
            RunnerCommand::Register {
                name,
                api,
                runner_url,
            } => crate::runner_cmd::register(
                &ui,
                g,
                &load_all(g, &[]),
                &name,
                &api,
                runner_url.as_deref(),
            ),
            RunnerCommand::Health => crate::runner_cmd::health(&ui, &load_all(g, &[])),
            RunnerCommand::Prepare { host, check } => {
                crate::runner_host_cmd::prepare(&ui, &load_all(g, &[]), &host, check)
            }
            RunnerCommand::EngineProxy {
                listen,
                engine,
                runners,
                wsl2,
            } => crate::runner_host_cmd::engine_proxy(&ui, &listen, &engine, &runners, wsl2),
            RunnerCommand::Trust { host, replace } => {
                crate::runner_cmd::trust(&ui, g, &host, replace)
            }
        },
        Command::Compute(c) => match c {
            ComputeCommand::List => crate::compute_cmd::list(&ui, g, &load_all(g, &[])),
            ComputeCommand::Run {
                gpus,
                hosts,
                vram,
                capability,
                priority,
                user,
                on_lost,
                port,
                health,
                health_interval,
                start_period,
                timeout,
                route,
                no_guard,
                job,
            } => crate::compute_cmd::run(
                &ui,
                g,
                &load_all(g, &[]),
                autogit_app::compute::Submit {
                    gpus,
                    vram,
                    capability,
                    priority,
                    user,
                    job,
                    on_lost: on_lost
                        .as_deref()
                        .and_then(autogit_core::lease::OnLost::parse),
                    port,
                    health,
                    health_interval,
                    start_period,
                    timeout,
                    route,
                    guard: no_guard.then_some(false),
                    hosts,
                },
            ),
            ComputeCommand::Status { job_id } => {
                crate::compute_cmd::status(&ui, g, &load_all(g, &[]), &job_id)
            }
            ComputeCommand::Cancel { job_id } => {
                crate::compute_cmd::cancel(&ui, g, &load_all(g, &[]), &job_id)
            }
        },
        Command::Reconcile { clear, target } if target.target == TargetArg::Kubernetes => {
            crate::kube_cmd::reconcile(&ui, g, &load_all(g, &[]), &target, clear.as_deref())
        }
        Command::Reconcile { clear, .. } => {
            crate::runtime_cmd::reconcile(&ui, g, &load_all(g, &[]), clear.as_deref())
        }
        Command::Backup {
            encrypt_to,
            passphrase_file,
        } => crate::backup_cmd::backup(
            &ui,
            &load_all(g, &[]),
            encrypt_to,
            passphrase_file.as_deref(),
        ),
        Command::Restore {
            archive,
            from,
            list,
            test,
            identity,
            passphrase_file,
            yes,
            wait,
        } => crate::backup_cmd::restore(
            &ui,
            &load_all(g, &[]),
            crate::backup_cmd::Source {
                archive: archive.as_deref(),
                from: from.as_deref(),
                list,
                test,
            },
            crate::backup_cmd::Keys {
                identity: identity.as_deref(),
                passphrase_file: passphrase_file.as_deref(),
            },
            yes,
            &wait,
        ),
        Command::Upgrade {
            to,
            via,
            dry_run,
            yes,
            wait,
            poll,
        } => crate::upgrade_cmd::upgrade(
            &ui,
            g,
            &load_all(g, &[]),
            &crate::upgrade_cmd::UpgradeArgs {
                to: &to,
                via: &via,
                dry_run,
                yes,
                wait: &wait,
                poll: &poll,
            },
        ),
        Command::Logs {
            cmd:
                Some(crate::cli::LogsCommand::Search {
                    query,
                    since,
                    limit,
                    mode,
                }),
            ..
        } => crate::status_cmd::log_search(
            &ui,
            &load_all(g, &[]),
            &query.join(" "),
            since.as_deref(),
            limit as usize,
            mode.as_deref()
                .and_then(autogit_core::logs::SearchMode::parse),
        ),
        Command::Logs {
            cmd: None,
            component,
            follow,
            since,
            tail,
        } => crate::status_cmd::logs(
            &ui,
            &load_all(g, &[]),
            &component,
            follow,
            since.as_deref(),
            tail,
        ),
        Command::ApiKey(c) => crate::access_cmd::api_key(&ui, g, c),
        Command::ApiUser(c) => crate::access_cmd::api_user(&ui, g, c),
        Command::Auth(c) => crate::access_cmd::auth(&ui, g, c),
        Command::Audit { cmd, limit, json } => crate::audit_cmd::audit(&ui, g, cmd, limit, json),
        Command::Agent { name, ssh_port } => {
            crate::runner_cmd::agent(&ui, name.as_deref(), ssh_port)
        }
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "autogit", &mut std::io::stdout());
            exit::OK
        }
        Command::Man => {
            let man = clap_mangen::Man::new(Cli::command());
            match man.render(&mut std::io::stdout()) {
                Ok(()) => exit::OK,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => exit::OK,
                Err(e) => {
                    ui.error(&format!("cannot write the man page: {e}"));
                    exit::FAILURE
                }
            }
        }
    };
    std::process::ExitCode::from(code)
}

fn preset_flag(preset: Option<crate::cli::PresetArg>) -> Vec<FlagOverride> {
    preset
        .map(|p| FlagOverride {
            flag: format!("--preset {}", p.name()),
            path: vec!["gitlab".into(), "resources".into(), "preset".into()],
            value: p.name().to_owned(),
        })
        .into_iter()
        .collect()
}

/// Prints diagnostics; returns false if there are errors.
pub(crate) fn report(ui: &Ui, loaded: &Loaded) -> bool {
    if !ui.json {
        ui.diagnostics(&loaded.diagnostics, &loaded.sources);
    }
    !loaded.diagnostics.has_errors()
}

fn init(ui: &Ui, dir: &Path, force: bool) -> u8 {
    let files = [
        ("autogit.yml", EMBEDDED_DEFAULT, 0o644),
        (".env", ENV_TEMPLATE, 0o600),
    ];
    if !force {
        let existing: Vec<String> = files
            .iter()
            .map(|(n, _, _)| dir.join(n))
            .filter(|p| p.exists())
            .map(|p| p.display().to_string())
            .collect();
        if !existing.is_empty() {
            ui.error(&format!(
                "{} already exist(s); nothing was written. Use --force to overwrite",
                existing.join(" and ")
            ));
            return exit::FAILURE;
        }
    }
    for (name, text, mode) in files {
        let path = dir.join(name);
        if let Err(e) = write_atomic(&path, text.as_bytes(), mode) {
            ui.error(&format!("cannot write {e}"));
            return exit::FAILURE;
        }
        ui.note(&format!("wrote {}", path.display()));
    }
    ui.note("next: edit autogit.yml and .env, then run `autogit validate` and `autogit plan`");
    exit::OK
}

fn validate(ui: &Ui, loaded: &Loaded) -> u8 {
    let mut diags = loaded.diagnostics.clone();
    diags.extend(undiscovered_runners(loaded));
    let ok = !diags.has_errors();
    if !ui.json {
        ui.diagnostics(&diags, &loaded.sources);
    }
    if ui.json {
        ui.print_json(&json!({
            "valid": ok,
            "config": loaded.config_path.as_ref().map(|p| p.display().to_string()),
            "errors": diags.errors(),
            "warnings": diags.warnings(),
            "diagnostics": diagnostics_json(&diags, &loaded.sources),
        }));
    } else if ok {
        let what = loaded
            .config_path
            .as_ref()
            .map_or("the embedded default configuration".to_owned(), |p| {
                p.display().to_string()
            });
        ui.note(&format!("{what} is valid"));
    }
    if ok { exit::OK } else { exit::INVALID_CONFIG }
}

/// A warning for each runner with `host: auto` that discovery has not placed on a host yet
/// (read from the state store; nothing is created).
fn undiscovered_runners(loaded: &Loaded) -> autogit_core::diag::Diagnostics {
    use autogit_core::diag::{Diagnostic, Diagnostics};
    let runners = autogit_app::runners::RunnerController::standalone(loaded.settings.clone());
    let mut d = Diagnostics::default();
    for r in runners.runners().iter().filter(|r| r.host == "auto") {
        d.push(
            Diagnostic::warning(
                "runner-host-auto",
                format!("runner `{}` has `host: auto` and has not been discovered on any host yet", r.name),
            )
            .help("run `autogit runner discover` (hosts running `autogit agent`, or a list of hosts or ranges), or set its host"),
        );
    }
    d
}

/// Loads, plans, and reports. `None` means errors were reported.
pub(crate) fn make_plan(ui: &Ui, g: &crate::cli::Global, loaded: &Loaded) -> Option<Plan> {
    // The same plan the controllers make: this host's facts, the ports remembered in the state
    // store, the certificate on disk.
    let (plan, mut diags, host) = autogit_app::plan::plan(loaded);
    let mut all = loaded.diagnostics.clone();
    all.extend(std::mem::take(&mut diags));
    if ui.json {
        if all.has_errors() {
            ui.print_json(
                &json!({"valid": false, "diagnostics": diagnostics_json(&all, &loaded.sources)}),
            );
            return None;
        }
    } else {
        ui.diagnostics(&all, &loaded.sources);
    }
    if all.has_errors() {
        return None;
    }
    if loaded.config_path.is_none() && !ui.json {
        ui.note("note: no autogit.yml here; using the embedded default configuration (write one with `autogit init`)");
    }
    if ui.verbose > 0 {
        let cfg = loaded
            .config_path
            .as_ref()
            .map_or("<embedded default>".to_owned(), |p| p.display().to_string());
        ui.note(&format!(
            "config: {cfg}; data dir: {}; host: {:?}",
            data_dir(g).display(),
            host
        ));
    }
    Some(plan)
}

fn plan_table(ui: &Ui, plan: &Plan) {
    let mut t = ui.table();
    t.set_header(vec![
        "SERVICE", "IMAGE", "CPU", "MEMORY", "PORTS", "URL", "HOST", "HEALTH",
    ]);
    for s in &plan.services {
        let ports: Vec<String> = s
            .ports
            .iter()
            .map(|p| format!("{}→{}", p.host, p.container))
            .collect();
        let url = match (&s.subdomain, &plan.base_domain) {
            (Some(sub), Some(d)) => format!("https://{sub}.{d}"),
            _ => s
                .ports
                .first()
                .map(|p| format!("http://localhost:{}", p.host))
                .unwrap_or_default(),
        };
        let host = match &s.placement {
            Placement::Local if s.on_demand => "local (on demand)".to_owned(),
            Placement::Local => "local".to_owned(),
            Placement::Remote(h) if s.on_demand => format!("{h} (on demand)"),
            Placement::Remote(h) => h.clone(),
        };
        let health = s.health.as_ref().map(|h| match &h.probe {
            autogit_core::plan::Probe::Http { path, .. } => format!("GET {path}"),
            autogit_core::plan::Probe::Tcp { port } => format!("tcp {port}"),
            autogit_core::plan::Probe::Command { argv } => argv.join(" "),
        });
        t.add_row(vec![
            s.name.clone(),
            s.image.to_string(),
            format!("{}", s.cpus),
            s.memory.to_string(),
            ports.join(" "),
            url,
            host,
            health.unwrap_or_default(),
        ]);
    }
    println!("{t}");
    // What the plan asks for and what this machine has, never one read as the other.
    let host = match autogit_drivers::host::facts(&[]) {
        Some(h) => format!("{} CPUs, {}", h.cpus, h.memory.approx()),
        None => "CPUs and memory unknown".to_owned(),
    };
    println!(
        "planned: {} CPUs, {} (preset {}; on-demand runners not counted); this host: {host}",
        plan.total_cpus, plan.total_memory, plan.preset
    );
}

fn show_plan(ui: &Ui, g: &crate::cli::Global, loaded: &Loaded) -> u8 {
    let Some(plan) = make_plan(ui, g, loaded) else {
        return exit::INVALID_CONFIG;
    };
    if ui.json {
        ui.print_json(&json!({
            "plan": plan,
            "images": plan.images().iter().map(ToString::to_string).collect::<Vec<_>>(),
            "services": render::discovery(&plan),
        }));
    } else {
        plan_table(ui, &plan);
    }
    exit::OK
}

/// Writes the plan's rendered files (`autogit_app::plan::write_rendered`); the paths written.
pub(crate) fn write_rendered(
    ui: &Ui,
    dir: &Path,
    plan: &Plan,
    loaded: &Loaded,
) -> Result<Vec<String>, u8> {
    match autogit_app::plan::write_rendered(loaded, dir, plan) {
        Ok(written) => Ok(written.iter().map(|p| p.display().to_string()).collect()),
        Err(e) => {
            ui.error(&e);
            Err(exit::FAILURE)
        }
    }
}

fn dry_run_install(ui: &Ui, g: &crate::cli::Global, loaded: &Loaded) -> u8 {
    let Some(plan) = make_plan(ui, g, loaded) else {
        return exit::INVALID_CONFIG;
    };
    let dir = data_dir(g).join("rendered");
    let written = match write_rendered(ui, &dir, &plan, loaded) {
        Ok(w) => w,
        Err(code) => return code,
    };
    let plan_json = serde_json::to_vec_pretty(&plan).unwrap_or_default();
    if let Err(e) = write_atomic(&dir.join("plan.json"), &plan_json, 0o644) {
        ui.error(&format!("cannot write {e}"));
        return exit::FAILURE;
    }
    let images: Vec<String> = plan.images().iter().map(ToString::to_string).collect();
    if ui.json {
        ui.print_json(&json!({"dry_run": true, "rendered_dir": dir.display().to_string(), "files": written, "images": images, "plan": plan}));
        return exit::OK;
    }
    plan_table(ui, &plan);
    println!("\nRendered into {}:", dir.display());
    for f in &written {
        println!("  {f}");
    }
    println!("\nImages it would pull (skipped when already present):");
    for i in &images {
        println!("  {i}");
    }
    println!("\nDry run: no container, network or volume was created.");
    exit::OK
}

fn runner_list(ui: &Ui, g: &crate::cli::Global, loaded: &Loaded) -> u8 {
    if !report(ui, loaded) {
        return exit::INVALID_CONFIG;
    }
    let r = &loaded.config.runners;
    if ui.json {
        ui.print_json(&json!({"mode": r.mode, "cooldown": r.cooldown, "runners": loaded.config.all_runners().collect::<Vec<_>>()}));
        return exit::OK;
    }
    let mut t = ui.table();
    t.set_header(vec![
        "NAME",
        "HOST",
        "EXECUTOR",
        "CONCURRENT",
        "GPU",
        "CAPABILITIES",
        "STATE",
        "HOST HEALTH",
    ]);
    let seen = crate::runner_cmd::last_seen(g);
    let registered = crate::runner_cmd::registration_states(g);
    for x in loaded.config.all_runners() {
        let caps: Vec<String> = x
            .capabilities
            .iter()
            .map(|c| format!("{c:?}").to_ascii_lowercase())
            .collect();
        t.add_row(vec![
            x.name.clone(),
            x.host.clone(),
            format!("{:?}", x.executor).to_ascii_lowercase(),
            x.concurrent.to_string(),
            x.gpu
                .map(|_| if x.wsl2 { "nvidia (wsl2)" } else { "nvidia" })
                .unwrap_or("-")
                .to_owned(),
            caps.join(","),
            registered
                .get(&x.name)
                .cloned()
                .unwrap_or_else(|| "not registered".to_owned()),
            seen.get(&x.host)
                .cloned()
                .unwrap_or_else(|| "never checked (`runner health`)".to_owned()),
        ]);
    }
    println!("{t}");
    exit::OK
}

/// `autogit services`: the service registry (the discovery JSON `install` writes to
/// `rendered/services.json`), as a table with each service's URL, or that JSON.
fn services(ui: &Ui, g: &crate::cli::Global, loaded: &Loaded) -> u8 {
    let Some(plan) = make_plan(ui, g, loaded) else {
        return exit::INVALID_CONFIG;
    };
    let registry = render::discovery(&plan);
    if ui.json {
        ui.print_json(&json!({ "base_domain": plan.base_domain, "tls": plan.tls.is_some(), "services": registry }));
        return exit::OK;
    }
    let scheme = if plan.tls.is_some() { "https" } else { "http" };
    let mut t = ui.table();
    t.set_header(vec![
        "SERVICE",
        "URL",
        "INTERNAL PORT",
        "HOST PORT",
        "HEALTH",
        "READY",
    ]);
    for s in registry.as_array().into_iter().flatten() {
        let text = |k: &str| s[k].as_str().map(str::to_owned);
        let num = |k: &str| {
            s[k].as_u64()
                .map_or_else(|| "-".to_owned(), |n| n.to_string())
        };
        let url = match (text("subdomain"), &plan.base_domain) {
            (Some(sub), Some(d)) => format!("{scheme}://{sub}.{d}"),
            _ => "-".to_owned(),
        };
        t.add_row(vec![
            text("service").unwrap_or_default(),
            url,
            num("internal_port"),
            num("external_port"),
            text("health_endpoint").unwrap_or_else(|| "-".to_owned()),
            text("ready_endpoint").unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    println!("{t}");
    if plan.base_domain.is_none() {
        ui.note("BASE_DOMAIN is not set in .env: services have no subdomains (no ingress)");
    }
    exit::OK
}
