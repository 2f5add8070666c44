//! Data-driven configuration cases: each `config/*.yml` is one case; its snapshot holds the
//! rendered diagnostics and, for valid files, the effective values that matter most. Leading
//! `# env: KEY=VALUE` comment lines are the case's environment (`AUTOGIT_…` overrides, and
//! `BASE_DOMAIN` as the `.env` registry would give it: then GitLab's deployed `external_url` and
//! its agreement with the ingress route are checked too).
//! Add a case by adding a file; accept new output with `cargo insta review`.

#![allow(clippy::disallowed_methods)] // tests read fixtures; the no-I/O rule is for the library

use autogit_core::diag::render_all;
use autogit_core::ingress::{external_url_check, gitlab_external_url};
use autogit_core::load::{LoadInput, load};
use std::fmt::Write as _;

/// The environment of a case: its leading `# env: KEY=VALUE` comment lines.
fn case_env(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map_while(|l| l.strip_prefix("# env: "))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn check(name: &str, text: &str) -> String {
    let env = case_env(text);
    let input = LoadInput {
        file: Some((name, text)),
        env: &env,
        ..Default::default()
    };
    let mut loaded = load(&input);
    let base_domain = env
        .iter()
        .find(|(k, _)| k == "BASE_DOMAIN")
        .map(|(_, v)| v.as_str());
    if let Some(d) = external_url_check(&loaded.config, base_domain) {
        loaded.diagnostics.push(d);
    }
    let mut out = render_all(&loaded.diagnostics, &loaded.sources);
    if !loaded.diagnostics.has_errors() {
        let c = &loaded.config;
        let size = c.gitlab_size();
        let t = c.gitlab_tuning();
        let _ = writeln!(out, "OK");
        let _ = writeln!(
            out,
            "gitlab: {} {} {}-ce.0 ports {}/{}/{}",
            c.gitlab.hostname,
            c.gitlab.external_url,
            c.gitlab.version,
            c.gitlab.ports.http,
            c.gitlab.ports.https,
            c.gitlab.ports.ssh
        );
        if base_domain.is_some() {
            let _ = writeln!(
                out,
                "gitlab deployed at: {}",
                gitlab_external_url(c, base_domain)
            );
        }
        let _ = writeln!(
            out,
            "size: preset {} → {} CPUs, {}; puma {}, sidekiq {}, shared_buffers {}, prometheus {}",
            c.gitlab.resources.preset,
            size.cpus,
            size.memory,
            t.puma_workers,
            t.sidekiq_concurrency,
            t.postgres_shared_buffers,
            t.prometheus
        );
        let _ = writeln!(
            out,
            "mirroring: enabled {} schedule {:?} github {} gitlab {} git {}",
            c.mirroring.enabled,
            c.mirroring.schedule,
            c.mirroring.sources.github.len(),
            c.mirroring.sources.gitlab.len(),
            c.mirroring.sources.git.len()
        );
        if c.runners.isolation != autogit_core::config::Isolation::default() {
            let _ = writeln!(out, "runners.isolation: {:?}", c.runners.isolation);
        }
        for r in c.all_runners() {
            let _ = writeln!(
                out,
                "runner: {} host {} {:?} x{} gpu {:?} caps {:?} wsl2 {}{}",
                r.name,
                r.host,
                r.executor,
                r.concurrent,
                r.gpu,
                r.capabilities,
                r.wsl2,
                if (r.min, r.max) == (0, 1) {
                    String::new()
                } else {
                    format!(" containers {}..={}", r.min, r.max)
                } + &if r.sharing == autogit_core::config::GpuSharing::default() {
                    String::new()
                } else {
                    format!(" sharing {:?}", r.sharing)
                }
            );
        }
        let _ = writeln!(
            out,
            "health: check {} reconcile {} budget {}/{} backoff {}..{} notify {:?}",
            c.health.check_interval,
            c.health.reconcile_interval,
            c.health.restart_budget.max,
            c.health.restart_budget.window,
            c.health.backoff.initial,
            c.health.backoff.max,
            c.health.notify
        );
        if c.logs != autogit_core::config::Logs::default() {
            let _ = writeln!(
                out,
                "logs: retention {} max_lines {} scrub {:?}",
                c.logs.retention, c.logs.max_lines, c.logs.scrub
            );
        }
        if !c.logs.semantic.is_default() {
            let _ = writeln!(
                out,
                "logs.semantic: enabled {} model_dir {:?}",
                c.logs.semantic.enabled, c.logs.semantic.model_dir
            );
        }
    }
    out
}

#[test]
fn config_cases() {
    insta::glob!("config/*.yml", |path| {
        let text = std::fs::read_to_string(path).unwrap();
        let name = format!("config/{}", path.file_name().unwrap().to_string_lossy());
        let out = check(&name, &text);
        let is_err_case = name.contains("/err_");
        assert_eq!(
            out.contains("error["),
            is_err_case,
            "{name}: error cases must fail and ok cases must pass:\n{out}"
        );
        insta::assert_snapshot!(out);
    });
}
