//! `autogit export compose|kubernetes|terraform|ansible [--from config|running] [--out DIR]`: parse, call
//! `app::export`, write or print. The generators and the drift are in core
//! (`state`, `render::compose_state`, `kubernetes`, `terraform`, `ansible`); capture is `app::export::capture`.

use crate::cli::{ExportCommand, ExportFrom, Global};
use crate::commands::make_plan;
use crate::ctx::Loaded;
use crate::exit;
use crate::ui::{Ui, runtime};
use autogit_app::export::{self, Files, Format};
use autogit_core::plan::Plan;
use autogit_core::state::Drift;
use autogit_drivers::engine::docker::Docker;
use autogit_drivers::fsx::write_under;
use serde_json::json;
use std::path::{Path, PathBuf};

pub fn run(ui: &Ui, g: &Global, loaded: &Loaded, cmd: ExportCommand) -> u8 {
    let (format, args) = match cmd {
        ExportCommand::Compose(a) => (Format::Compose, a),
        ExportCommand::Kubernetes(a) => (Format::Kubernetes, a),
        ExportCommand::Kustomize(a) => (Format::Kustomize, a),
        ExportCommand::Terraform(a) => (Format::Terraform, a),
        ExportCommand::TerraformKubernetes(a) => (Format::TerraformKubernetes, a),
        ExportCommand::Pulumi(a) => (Format::Pulumi, a),
        ExportCommand::Ansible(a) => (Format::Ansible, a),
    };
    let Some(mut plan) = make_plan(ui, g, loaded) else {
        return exit::INVALID_CONFIG;
    };
    // A cluster's nodes run the manifests: the preset's sizes, not capped at this host's CPUs.
    if matches!(
        format,
        Format::Kubernetes | Format::Kustomize | Format::TerraformKubernetes
    ) && args.from == ExportFrom::Config
    {
        plan = autogit_app::plan::plan_with(loaded, None).0;
    }
    let (state, drift) = match args.from {
        ExportFrom::Config => (export::from_config(&loaded.settings, &plan), None),
        ExportFrom::Running => match capture(loaded, &plan, !args.no_runner_hosts) {
            Ok(c) => {
                if let Some(why) = &c.dns_unread {
                    ui.note(&format!("note: DNS records not read from the zone: {why}"));
                }
                (c.state, Some(c.drift))
            }
            Err(e) => {
                ui.error(&e);
                return exit::FAILURE;
            }
        },
    };
    let done = Done {
        ui,
        format,
        from: args.from,
        files: export::files(format, &state, loaded, &plan),
        drift,
    };
    match &args.out {
        None => done.print(),
        Some(out) => done.write(out, loaded, &plan, &state.project),
    }
}

/// An export made: what to print or write, and the drift to report.
struct Done<'a> {
    ui: &'a Ui,
    format: Format,
    from: ExportFrom,
    files: Files,
    drift: Option<Vec<Drift>>,
}

fn capture(loaded: &Loaded, plan: &Plan, visit_hosts: bool) -> Result<export::Captured, String> {
    runtime().block_on(async {
        let engine = Docker::connect(loaded.socket(), &loaded.env)
            .await
            .map_err(|e| format!("--from running needs the container engine: {e}"))?;
        let runners = visit_hosts
            .then(|| autogit_app::runners::RunnerController::standalone(loaded.settings.clone()));
        export::capture_with(&loaded.settings, &engine, plan, runners.as_ref())
            .await
            .map_err(|e| e.to_string())
    })
}

fn format_name(f: Format) -> &'static str {
    match f {
        Format::Compose => "compose",
        Format::Kubernetes => "kubernetes",
        Format::Kustomize => "kustomize",
        Format::Terraform => "terraform",
        Format::TerraformKubernetes => "terraform-kubernetes",
        Format::Pulumi => "pulumi",
        Format::Ansible => "ansible",
    }
}

fn from_name(f: ExportFrom) -> &'static str {
    match f {
        ExportFrom::Config => "config",
        ExportFrom::Running => "running",
    }
}

impl Done<'_> {
    /// Without `--out`: compose prints its compose file; Kubernetes every manifest, as one
    /// multi-document stream (`kubectl apply -f -`); Terraform its `.tf` files, one after
    /// the other (HCL files concatenate into one valid file).
    fn print(&self) -> u8 {
        let (ui, format, files, drift) = (self.ui, self.format, &self.files, self.drift.as_deref());
        let shown: Vec<&(String, String)> = match format {
            Format::Compose => files.iter().take(1).collect(),
            Format::Kubernetes => files.iter().collect(),
            // The manifests as one stream; the kustomization.yaml only makes sense as a file.
            Format::Kustomize => files
                .iter()
                .filter(|(f, _)| f != autogit_core::kustomize::KUSTOMIZATION)
                .collect(),
            Format::Terraform | Format::TerraformKubernetes | Format::Pulumi | Format::Ansible => {
                files.iter().collect()
            }
        };
        if ui.json {
            let files: Vec<_> = shown
                .iter()
                .map(|(p, t)| json!({"path": p, "content": t}))
                .collect();
            ui.print_json(&json!({
                "format": format_name(format),
                "from": from_name(self.from),
                "files": files,
                "drift": drift,
            }));
            return exit::OK;
        }
        let text: Vec<&str> = shown.iter().map(|(_, t)| t.as_str()).collect();
        let sep = if matches!(format, Format::Terraform | Format::TerraformKubernetes) {
            "\n"
        } else {
            "---\n"
        };
        print!("{}", text.join(sep));
        report_drift(ui, drift);
        exit::OK
    }

    /// With `--out`: every file under the directory (compose: and the rendered files it
    /// mounts), nothing outside it.
    fn write(&self, out: &Path, loaded: &Loaded, plan: &Plan, project: &str) -> u8 {
        let (ui, format, files, drift) = (self.ui, self.format, &self.files, self.drift.as_deref());
        let mut written: Vec<String> = Vec::new();
        let dir = match format {
            Format::Compose => {
                let (dir, name) = compose_target(out);
                // The configuration files the services mount (and the API's configuration and
                // the certificate, when the plan has them), next to the compose file.
                match autogit_app::plan::write_rendered(loaded, &dir, plan) {
                    Ok(w) => written.extend(w.iter().map(|p| p.display().to_string())),
                    Err(e) => {
                        ui.error(&e);
                        return exit::FAILURE;
                    }
                }
                let compose = &files[0].1;
                match write_under(&dir, &name, compose.as_bytes(), 0o644) {
                    Ok(p) => {
                        let p = p.display().to_string();
                        written.retain(|w| *w != p);
                        written.insert(0, p);
                    }
                    Err(e) => {
                        ui.error(&format!("cannot write {e}"));
                        return exit::FAILURE;
                    }
                }
                dir.join(name)
            }
            Format::Kubernetes
            | Format::Kustomize
            | Format::Terraform
            | Format::TerraformKubernetes
            | Format::Pulumi
            | Format::Ansible => {
                // The configuration files the containers bind-mount: next to the Terraform
                // module; under rendered/ for the playbook, which copies them to the host.
                let rendered = match format {
                    Format::Terraform => Some(out.to_owned()),
                    Format::Ansible | Format::Pulumi => Some(out.join("rendered")),
                    _ => None,
                };
                if let Some(rendered) = rendered {
                    match autogit_app::plan::write_rendered(loaded, &rendered, plan) {
                        Ok(w) => written.extend(w.iter().map(|p| p.display().to_string())),
                        Err(e) => {
                            ui.error(&e);
                            return exit::FAILURE;
                        }
                    }
                }
                for (rel, text) in files {
                    match write_under(out, rel, text.as_bytes(), 0o644) {
                        Ok(p) => written.push(p.display().to_string()),
                        Err(e) => {
                            ui.error(&format!("cannot write {e}"));
                            return exit::FAILURE;
                        }
                    }
                }
                out.to_owned()
            }
        };
        if ui.json {
            ui.print_json(&json!({
                "format": format_name(format),
                "from": from_name(self.from),
                "files": written,
                "drift": drift,
            }));
            return exit::OK;
        }
        match format {
            Format::Compose => ui.note(&format!(
                "wrote {} and its rendered files; run: docker compose -p {} -f {} up -d",
                dir.display(),
                project,
                dir.display()
            )),
            Format::Kubernetes => {
                ui.note(&format!(
                "wrote {} manifests into {}; create the Secrets named in namespace.yaml, then: kubectl apply -f {}",
                written.len(),
                dir.display(),
                dir.display()
            ));
            }
            Format::Kustomize => ui.note(&format!(
                "wrote a Kustomize base ({} files) into {}; create the Secrets named in namespace.yaml, then: kubectl apply -k {}",
                written.len(),
                dir.display(),
                dir.display()
            )),
            Format::Terraform => ui.note(&format!(
                "wrote {} files into {}; set the sensitive variables of variables.tf (TF_VAR_<name>), then: terraform -chdir={} init && terraform -chdir={} apply",
                written.len(),
                dir.display(),
                dir.display(),
                dir.display()
            )),
            Format::TerraformKubernetes => ui.note(&format!(
                "wrote {} files into {}; create the Secrets the manifests name and install cert-manager (and Traefik's CRDs), then: terraform -chdir={} init && terraform -chdir={} apply -var kube_context=NAME",
                written.len(),
                dir.display(),
                dir.display(),
                dir.display()
            )),
            Format::Pulumi => ui.note(&format!(
                "wrote {} files into {}; set the secret config keys of Pulumi.yaml (pulumi config set --secret NAME) and renderedDir to {}/rendered, then: pulumi -C {} up",
                written.len(),
                dir.display(),
                dir.display(),
                dir.display()
            )),
            Format::Ansible => ui.note(&format!(
                "wrote {} files into {}; put the Vault variables named in playbook.yml in {}/group_vars/{}/vault.yml (ansible-vault create), then: ansible-playbook -i inventory.yml playbook.yml --ask-vault-pass",
                written.len(),
                dir.display(),
                dir.display(),
                autogit_core::ansible::GROUP
            )),
        }
        report_drift(ui, drift);
        exit::OK
    }
}

/// Where the compose file goes: `DIR/docker-compose.yml`, or the file named (its directory
/// gets the rendered files).
fn compose_target(out: &Path) -> (PathBuf, String) {
    let is_file = !out.is_dir() && out.extension().is_some_and(|e| e == "yml" || e == "yaml");
    if is_file {
        let dir = out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_owned();
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        (dir, name)
    } else {
        (out.to_owned(), "docker-compose.yml".to_owned())
    }
}

/// Drift goes to stderr: the export itself succeeded whatever runs.
fn report_drift(ui: &Ui, drift: Option<&[Drift]>) {
    let Some(drift) = drift else { return };
    if drift.is_empty() {
        ui.note("no drift: what runs is what the configuration says");
        return;
    }
    ui.note(&format!(
        "drift: {} difference(s) between the configuration and what runs (exported: what runs)",
        drift.len()
    ));
    for d in drift {
        ui.note(&format!(
            "  {} {}: configured {}, running {}",
            d.service.as_deref().unwrap_or("platform"),
            d.field,
            d.expected,
            d.found
        ));
    }
}
