//! The real binary, every command, every exit code.

mod common;
use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn help_version_and_usage_errors() {
    let d = tmp();
    let r = run(d.path(), &["--help"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("Exit codes: 0 success"), "{}", r.stdout);
    for c in [
        "install",
        "status",
        "mirror",
        "runner",
        "compute",
        "reconcile",
        "backup",
        "restore",
        "logs",
        "init",
        "validate",
        "plan",
        "completions",
        "man",
        "export",
        "diagnose",
    ] {
        assert!(r.stdout.contains(c), "help lists {c}");
    }
    assert_eq!(run(d.path(), &["--version"]).code, 0);
    let r = run(d.path(), &["--no-such-flag"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("unexpected argument"), "{}", r.stderr);
    assert_eq!(run(d.path(), &["plan", "--preset", "huge"]).code, 2);
}

#[test]
fn init_writes_files_and_refuses_to_overwrite() {
    let d = tmp();
    let r = run(d.path(), &["init"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let yml = d.path().join("autogit.yml");
    let env = d.path().join(".env");
    assert!(
        fs::read_to_string(&yml)
            .unwrap()
            .contains("preset: homelab")
    );
    assert_eq!(
        fs::metadata(&env).unwrap().permissions().mode() & 0o777,
        0o600,
        ".env holds secrets"
    );
    fs::write(&yml, "# mine\n").unwrap();
    let r = run(d.path(), &["init"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.starts_with("autogit: ") && r.stderr.contains("--force"),
        "{}",
        r.stderr
    );
    assert_eq!(
        fs::read_to_string(&yml).unwrap(),
        "# mine\n",
        "not overwritten"
    );
    assert_eq!(run(d.path(), &["init", "--force"]).code, 0);
    assert!(
        fs::read_to_string(&yml)
            .unwrap()
            .contains("preset: homelab")
    );
    // What init writes is valid.
    let r = run(d.path(), &["validate"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn validate_reports_every_error_with_location() {
    let d = tmp();
    fs::write(
        d.path().join("autogit.yml"),
        "gitlab:\n  hostnme: x\n  ports:\n    http: 0\nmirroring:\n  schedule: \"* *\"\n",
    )
    .unwrap();
    let r = run(d.path(), &["validate"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("autogit.yml:2:3"), "{}", r.stderr);
    assert!(r.stderr.contains("did you mean `hostname`?"));
    assert!(r.stderr.contains("autogit.yml:4:11"));
    assert!(r.stderr.contains("autogit.yml:6:13"));
    assert!(r.stderr.contains("3 errors"));

    let r = run(d.path(), &["validate", "--output", "json"]);
    assert_eq!(r.code, 3);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"], 3);
    let first = &v["diagnostics"][0];
    assert_eq!(first["file"], "autogit.yml");
    assert_eq!(first["line"], 2);
    assert_eq!(first["column"], 3);
    assert_eq!(first["path"], "gitlab.hostnme");
    assert_eq!(first["code"], "unknown-key");
}

#[test]
fn overrides_are_named_in_errors() {
    let d = tmp();
    let r = run_env(
        d.path(),
        &["validate"],
        &[("AUTOGIT_GITLAB__PORTS__HTTP", "abc")],
    );
    assert_eq!(r.code, 3);
    assert!(
        r.stderr
            .contains("environment variable AUTOGIT_GITLAB__PORTS__HTTP"),
        "{}",
        r.stderr
    );
    let r = run(d.path(), &["validate", "--set", "gitlab.ports.ssh=70000"]);
    assert_eq!(r.code, 3);
    assert!(
        r.stderr
            .contains("command-line flag --set gitlab.ports.ssh=70000"),
        "{}",
        r.stderr
    );
    let r = run_env(d.path(), &["validate"], &[("AUTOGIT_GITLAB_HOSTNAME", "x")]);
    assert_eq!(r.code, 0);
    assert!(
        r.stderr.contains("AUTOGIT_GITLAB__HOSTNAME"),
        "hint about `__`: {}",
        r.stderr
    );
}

fn preset_of(r: &Run) -> String {
    let v: serde_json::Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", r.stdout, r.stderr));
    v["plan"]["preset"].as_str().unwrap().to_owned()
}

#[test]
fn layering_defaults_file_env_flags() {
    let d = tmp();
    let p = d.path();
    assert_eq!(
        preset_of(&run(p, &["plan", "-o", "json"])),
        "homelab",
        "built-in default"
    );
    fs::write(
        p.join("autogit.yml"),
        "gitlab:\n  resources:\n    preset: minimal\n",
    )
    .unwrap();
    assert_eq!(
        preset_of(&run(p, &["plan", "-o", "json"])),
        "minimal",
        "file over default"
    );
    let env = [("AUTOGIT_GITLAB__RESOURCES__PRESET", "team")];
    assert_eq!(
        preset_of(&run_env(p, &["plan", "-o", "json"], &env)),
        "team",
        "env over file"
    );
    assert_eq!(
        preset_of(&run_env(
            p,
            &["plan", "-o", "json", "--preset", "beast"],
            &env
        )),
        "beast",
        "flag over env"
    );
    assert_eq!(
        preset_of(&run_env(
            p,
            &[
                "plan",
                "-o",
                "json",
                "--set",
                "gitlab.resources.preset=minimal"
            ],
            &env
        )),
        "minimal",
        "--set over env"
    );
    // The preset fills what the file leaves out; explicit values win over it.
    fs::write(
        p.join("autogit.yml"),
        "gitlab:\n  resources:\n    preset: team\n    memory: 20G\n",
    )
    .unwrap();
    let r = run(p, &["plan", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let gitlab = &v["plan"]["services"][0];
    // The team preset's 12 CPUs, capped at what this host has (the engine refuses more).
    let host = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    assert_eq!(gitlab["cpus"], 12f64.min(host));
    assert_eq!(gitlab["memory"], "20G");
}

#[test]
fn plan_json_pins_every_image() {
    let d = tmp();
    fs::write(
        d.path().join(".env"),
        "BASE_DOMAIN=example.com\nSERVICES_ENABLED=gitlab,grafana,prometheus\n",
    )
    .unwrap();
    fs::set_permissions(d.path().join(".env"), fs::Permissions::from_mode(0o600)).unwrap();
    let r = run(d.path(), &["plan", "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let images: Vec<&str> = v["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap())
        .collect();
    assert!(
        images.contains(&"gitlab/gitlab-ce:18.5.4-ce.0"),
        "{images:?}"
    );
    assert!(
        images
            .iter()
            .all(|i| i.contains(':') && !i.ends_with(":latest"))
    );
    let subs: Vec<&str> = v["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["subdomain"].as_str())
        .collect();
    assert_eq!(subs, ["gitlab", "grafana", "prometheus"]);
    let r = run(d.path(), &["plan"]);
    assert!(
        r.stdout.contains("https://grafana.example.com"),
        "{}",
        r.stdout
    );
}

#[test]
fn env_file_permissions_are_checked() {
    let d = tmp();
    fs::write(d.path().join(".env"), "GITHUB_PAT_MIRROR=secret\n").unwrap();
    fs::set_permissions(d.path().join(".env"), fs::Permissions::from_mode(0o644)).unwrap();
    let r = run(d.path(), &["validate"]);
    assert_eq!(r.code, 0);
    assert!(r.stderr.contains("chmod 600"), "{}", r.stderr);
    assert!(
        !r.stderr.contains("secret\n") && !r.stdout.contains("secret"),
        "secret values are never printed"
    );
}

#[test]
fn install_dry_run_renders_files_and_lists_images() {
    let d = tmp();
    let data = d.path().join("data");
    let r = run(
        d.path(),
        &["install", "--dry-run", "--data-dir", data.to_str().unwrap()],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    for f in [
        "docker-compose.yml",
        "gitlab/gitlab.rb",
        "services.json",
        "plan.json",
    ] {
        assert!(data.join("rendered").join(f).is_file(), "{f}");
    }
    assert!(r.stdout.contains("gitlab/gitlab-ce:18.5.4-ce.0"));
    assert!(r.stdout.contains("Dry run"));
    // The footer says what is planned and what this host has, each labelled as such.
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert!(
        r.stdout.lines().any(|l| l.starts_with("planned: ")
            && l.contains("(preset ")
            && l.contains(&format!("; this host: {cpus} CPUs, "))),
        "{}",
        r.stdout
    );
    let rb = fs::read_to_string(data.join("rendered/gitlab/gitlab.rb")).unwrap();
    assert!(
        rb.contains("puma['port']") && !rb.contains("puma['port'] = 8080"),
        "Puma off 8080: {rb}"
    );
    let r = run(
        d.path(),
        &[
            "install",
            "--dry-run",
            "--preset",
            "minimal",
            "-o",
            "json",
            "--data-dir",
            data.to_str().unwrap(),
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["plan"]["preset"], "minimal");
    assert_eq!(v["dry_run"], true);
}

#[test]
fn backup_and_restore_without_a_platform_are_clear_errors() {
    let d = tmp();
    let r = run(
        d.path(),
        &["restore", "missing.tar", "--yes", "--data-dir", "data"],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("missing.tar: no such archive"),
        "{}",
        r.stderr
    );
    fs::write(
        d.path().join("autogit.yml"),
        "platform: {socket: /nonexistent/docker.sock}\n",
    )
    .unwrap();
    let r = run(d.path(), &["backup", "--data-dir", "data"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("backup failed") && r.stderr.contains("container engine"),
        "{}",
        r.stderr
    );
    assert!(
        !d.path().join("data/backups").exists()
            || fs::read_dir(d.path().join("data/backups"))
                .unwrap()
                .next()
                .is_none()
    );
}

#[test]
fn discover_without_targets_listens_for_agents_and_says_what_to_do() {
    // Nothing announces `_autogit._tcp` here: a clear error, not a silent empty list.
    let d = tmp();
    let r = run(d.path(), &["runner", "discover", "--wait", "1s"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("no autogit agent answered over mDNS")
            && r.stderr.contains("autogit agent"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.is_empty());
}

#[test]
fn diagnose_refuses_unknown_groups_and_bad_timeouts_before_looking() {
    let d = tmp();
    let data = d.path().join("data");
    let data = data.to_str().unwrap();
    let r = run(
        d.path(),
        &["diagnose", "--only", "nope", "--data-dir", data],
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("--only nope") && r.stderr.contains("dns"),
        "{}",
        r.stderr
    );
    let r = run(
        d.path(),
        &["diagnose", "--timeout", "soon", "--data-dir", data],
    );
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("--timeout soon"), "{}", r.stderr);
    // Only the configuration: valid (the embedded default), exit 0, nothing created.
    let r = run(
        d.path(),
        &[
            "diagnose",
            "--only",
            "config",
            "-o",
            "json",
            "--data-dir",
            data,
        ],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["checks"][0]["id"], "config");
    assert_eq!(v["checks"][0]["status"], "ok");
    assert!(
        !d.path().join("data").exists(),
        "looking created the data dir"
    );
    // Every check: still no state database (`status` would take it for an install) and no
    // secret store or key.
    let r = run(d.path(), &["diagnose", "-o", "json", "--data-dir", data]);
    assert!([0, 10, 11].contains(&r.code), "{}{}", r.stdout, r.stderr);
    assert!(!d.path().join("data/state.db").exists());
    assert!(!d.path().join("data/secrets").exists());
    assert!(!d.path().join("data.key").exists());
}

#[test]
fn status_before_install_and_systemd_unit() {
    let d = tmp();
    let data = d.path().join("data");
    let r = run(d.path(), &["status", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(r.code, 0);
    assert!(r.stderr.contains("nothing installed yet"), "{}", r.stderr);
    let r = run(
        d.path(),
        &["status", "-o", "json", "--data-dir", data.to_str().unwrap()],
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&r.stdout).unwrap()["installed"],
        false
    );
    // A command that records something else first (runner hosts) makes the state database;
    // that is still no install.
    let _ = run(
        d.path(),
        &["runner", "health", "--data-dir", data.to_str().unwrap()],
    );
    assert!(
        data.join("state.db").exists(),
        "runner health records hosts"
    );
    let r = run(
        d.path(),
        &["status", "-o", "json", "--data-dir", data.to_str().unwrap()],
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&r.stdout).unwrap()["installed"],
        false,
        "{}",
        r.stdout
    );
    let r = run(
        d.path(),
        &[
            "daemon",
            "--print-systemd-unit",
            "--data-dir",
            data.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.contains("ExecStart=")
            && r.stdout.contains(" daemon")
            && r.stdout.contains("NoNewPrivileges=yes"),
        "{}",
        r.stdout
    );
    let r = run(
        d.path(),
        &["down", "--volumes", "--data-dir", data.to_str().unwrap()],
    );
    assert_eq!(r.code, 1, "no confirmation without a terminal");
    assert!(r.stderr.contains("--yes"), "{}", r.stderr);
    let r = run(d.path(), &["install", "--wait", "soon"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("--wait soon"), "{}", r.stderr);
}

#[test]
fn services_lists_the_registry() {
    let d = tmp();
    fs::write(
        d.path().join(".env"),
        "BASE_DOMAIN=example.com\nSERVICES_ENABLED=gitlab,grafana\nPORT_GRAFANA=3300\n",
    )
    .unwrap();
    fs::set_permissions(d.path().join(".env"), fs::Permissions::from_mode(0o600)).unwrap();
    let r = run(d.path(), &["services", "-o", "json", "--data-dir", "data"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["base_domain"], "example.com");
    assert_eq!(v["tls"], false);
    let grafana = v["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "grafana")
        .unwrap();
    assert_eq!(grafana["subdomain"], "grafana");
    assert_eq!(grafana["external_port"], 3300);
    let r = run(d.path(), &["services", "--data-dir", "data"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("http://grafana.example.com"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("/-/readiness"), "{}", r.stdout);
}

#[test]
fn list_commands_read_the_config() {
    let d = tmp();
    fs::write(d.path().join("autogit.yml"), "mirroring:\n  sources:\n    github:\n      username: me\n      token_env: GH_TOKEN\n    git:\n      - https://git.example.org/a.git\nrunners:\n  gpu:\n    - name: g1\n      host: auto\n      capabilities: [render]\n").unwrap();
    let r = run(d.path(), &["mirror", "list"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("GH_TOKEN") && r.stdout.contains("https://git.example.org/a.git"));
    let r = run(d.path(), &["runner", "list", "-o", "json"]);
    assert_eq!(r.code, 0);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["runners"][0]["name"], "g1");
    assert_eq!(v["runners"][0]["capabilities"][0], "render");
}

#[test]
fn completions_and_man_page() {
    let d = tmp();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let r = run(d.path(), &["completions", shell]);
        assert_eq!(r.code, 0, "{shell}");
        assert!(r.stdout.contains("autogit"), "{shell}");
    }
    let r = run(d.path(), &["man"]);
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.contains(".TH autogit"),
        "{}",
        &r.stdout[..200.min(r.stdout.len())]
    );
}

#[test]
fn missing_config_file_is_a_clear_error() {
    let d = tmp();
    let r = run(d.path(), &["validate", "--config", "nope.yml"]);
    assert_eq!(r.code, 3);
    assert!(r.stderr.contains("cannot read nope.yml"), "{}", r.stderr);
}

#[test]
fn exported_compose_is_accepted_by_docker_compose() {
    let d = tmp();
    fs::write(d.path().join(".env"), "BASE_DOMAIN=example.com\nSERVICES_ENABLED=gitlab,grafana,loki,tempo,prometheus,meilisearch\n").unwrap();
    fs::set_permissions(d.path().join(".env"), fs::Permissions::from_mode(0o600)).unwrap();
    let out = d.path().join("export/docker-compose.yml");
    let r = run(
        d.path(),
        &["export", "compose", "-O", out.to_str().unwrap()],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let text = fs::read_to_string(&out).unwrap();
    assert!(text.contains("gitlab/gitlab-ce:18.5.4-ce.0"));
    assert!(d.path().join("export/traefik/traefik.yml").is_file());
    let r = run(d.path(), &["export", "compose"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.starts_with("# Rendered by autogit"));
    if !have("docker-compose") {
        return;
    }
    let check = std::process::Command::new("docker-compose")
        .args(["-p", "autogit", "-f", out.to_str().unwrap(), "config", "-q"])
        .env("MEILI_MASTER_KEY", "test-only")
        .env("GF_SECURITY_ADMIN_PASSWORD", "test-only")
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "docker-compose config: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    // Without the secrets, compose refuses and names the variable.
    let check = std::process::Command::new("docker-compose")
        .args(["-p", "autogit", "-f", out.to_str().unwrap(), "config", "-q"])
        .env_remove("MEILI_MASTER_KEY")
        .env("GF_SECURITY_ADMIN_PASSWORD", "test-only")
        .output()
        .unwrap();
    assert!(!check.status.success());
    assert!(String::from_utf8_lossy(&check.stderr).contains("MEILI_MASTER_KEY"));
}

/// `validate` warns about a runner with `host: auto` that discovery has not placed yet (and
/// stays valid: it is a warning), and says how to place it.
#[test]
fn validate_warns_about_undiscovered_auto_hosts() {
    let d = tmp();
    fs::write(
        d.path().join("autogit.yml"),
        "runners:\n  gpu:\n    - name: g1\n      host: auto\n      gpu: nvidia\n",
    )
    .unwrap();
    let data = d.path().join("data");
    let r = run(
        d.path(),
        &["validate", "--data-dir", data.to_str().unwrap()],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("runner-host-auto") && r.stderr.contains("autogit runner discover"),
        "{}",
        r.stderr
    );
    assert!(!data.join("state.db").exists(), "validate creates nothing");
}

#[test]
fn logs_search_says_what_is_wrong_and_when_nothing_is_indexed() {
    let d = tmp();
    let r = run_data(d.path(), &["logs", "search", "colour:red"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("unknown field `colour:`"), "{}", r.stderr);
    assert!(
        r.stderr.contains("level:"),
        "the fields are listed: {}",
        r.stderr
    );
    let r = run_data(d.path(), &["logs", "search", "x", "--since", "soon"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("time range `soon`"), "{}", r.stderr);
    let r = run_data(d.path(), &["logs", "search", "level:error"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("nothing is indexed yet"), "{}", r.stdout);
    let r = run_data(d.path(), &["logs", "search", "level:error", "-o", "json"]);
    assert_eq!(r.code, 0);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["indexed"], 0);
    assert_eq!(v["query"]["filters"][0][0], "level");
}

/// With BASE_DOMAIN in `.env`, `autogit init`'s default external_url follows the ingress route
/// (the rendered gitlab.rb says `https://gitlab.<BASE_DOMAIN>`); a chosen one that disagrees with
/// the route is kept and `validate` warns, with what it found and what the route is.
#[test]
fn gitlab_external_url_follows_base_domain_and_validate_warns_on_disagreement() {
    let d = tmp();
    let data = d.path().join("data");
    let r = run(d.path(), &["init", "--dir", d.path().to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    fs::write(d.path().join(".env"), "BASE_DOMAIN=example.test\n").unwrap();
    fs::set_permissions(d.path().join(".env"), fs::Permissions::from_mode(0o600)).unwrap();
    let r = run(d.path(), &["validate", "-o", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stdout.contains("external-url-route"), "{}", r.stdout);
    let r = run(
        d.path(),
        &["install", "--dry-run", "--data-dir", data.to_str().unwrap()],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rb = fs::read_to_string(data.join("rendered/gitlab/gitlab.rb")).unwrap();
    assert!(
        rb.contains("external_url 'https://gitlab.example.test'\n"),
        "{rb}"
    );

    let r = run(
        d.path(),
        &[
            "validate",
            "-o",
            "json",
            "--set",
            "gitlab.external_url=https://git.example.test",
        ],
    );
    assert_eq!(r.code, 0, "a warning: {}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let w = v["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["code"] == "external-url-route")
        .unwrap_or_else(|| panic!("{}", r.stdout));
    assert_eq!(w["severity"], "warning");
    assert_eq!(w["path"], "gitlab.external_url");
    assert_eq!(w["found"], "https://git.example.test");
    assert_eq!(w["expected"], "https://gitlab.example.test");
}

/// `compute run`'s job-kind options are checked before anything is queued or any host asked:
/// a port only makes an inference job a service, a health path is a plain path, durations
/// read as durations, a route is a subdomain name on a platform with a base domain; each
/// refusal names the flag and exits 2.
#[test]
fn compute_run_refuses_bad_job_kind_options() {
    let d = tmp();
    assert_eq!(run(d.path(), &["init"]).code, 0);
    let cases: &[(&[&str], &str)] = &[
        (&["--port", "8000"], "--capability inference"),
        (
            &[
                "--capability",
                "inference",
                "--port",
                "8000",
                "--health",
                "health",
            ],
            "--health `health` is not a path",
        ),
        (&["--timeout", "5x"], "--timeout `5x` is not a duration"),
        (
            &[
                "--capability",
                "inference",
                "--port",
                "8000",
                "--start-period",
                "0s",
            ],
            "start period must be 1 s to 1 day",
        ),
        (&["--health", "/health"], "--port"),
        (&["--vram", "lots"], "--vram `lots` is not a size"),
        // Routes: a DNS label, and only with a base domain (`init` sets none).
        (
            &[
                "--capability",
                "inference",
                "--port",
                "8000",
                "--route",
                "Big_Model",
            ],
            "--route `Big_Model` is not a subdomain name",
        ),
        (
            &[
                "--capability",
                "inference",
                "--port",
                "8000",
                "--route",
                "llm",
            ],
            "needs BASE_DOMAIN",
        ),
        (&["--route", "llm"], "--port"),
        (&["--no-guard"], "--route"),
    ];
    for (flags, want) in cases {
        let mut args = vec!["compute", "run"];
        args.extend_from_slice(flags);
        args.push("img:1");
        let r = run(d.path(), &args);
        assert_eq!(r.code, 2, "{flags:?}: {}{}", r.stdout, r.stderr);
        assert!(r.stderr.contains(want), "{flags:?}: {}", r.stderr);
    }
    // Nothing was queued.
    assert!(
        !d.path().join("data/state.db").exists() || {
            let r = run(d.path(), &["compute", "list", "-o", "json"]);
            !r.stdout.contains("img:1")
        }
    );
}
