//! `autogit export` through the real binary, checked by the tools that read its output:
//! `kubernetes-validate` (PyPI: the Kubernetes OpenAPI schemas, strict) on every manifest
//! against two Kubernetes versions, `docker-compose config` on the compose file, and the
//! round trip on the real engine (install → capture → export compose → down → the export
//! brought up by docker-compose → capture again gives the same platform, healthy).
//!
//! No Kubernetes cluster runs here: the manifests are validated against the schemas, not
//! applied. cert-manager's and Traefik's custom resources have no schema in
//! `kubernetes-validate`; it warns about them, and the test accepts exactly those warnings
//! (`core::kubernetes::CUSTOM_KINDS`) and nothing else.

mod common;
use autogit_drivers::testing::bind::{Bind, KEY_NAME, TestZone, named_or_skip};
use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `kubernetes-validate`: `AUTOGIT_KUBERNETES_VALIDATE`, the venv `scripts/test.sh` makes
/// (`target/tools/kubernetes-validate`), or PATH. Missing: skip, unless
/// `AUTOGIT_REQUIRE_TOOLS` is set.
fn kubernetes_validate() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("AUTOGIT_KUBERNETES_VALIDATE") {
        return Some(PathBuf::from(p));
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/tools/kubernetes-validate/bin/kubernetes-validate");
    if venv.is_file() {
        return Some(venv);
    }
    have("kubernetes-validate").then(|| PathBuf::from("kubernetes-validate"))
}

/// The versions every manifest is validated against: the oldest and the newest schemas the
/// pinned kubernetes-validate (1.37.0) ships.
const VERSIONS: [&str; 2] = ["1.25.0", "1.37.0"];

fn write_env(dir: &Path, env: &str) {
    fs::write(dir.join(".env"), env).unwrap();
    fs::set_permissions(dir.join(".env"), fs::Permissions::from_mode(0o600)).unwrap();
}

fn export_k8s(dir: &Path, config: &str, env: &str) -> PathBuf {
    fs::write(dir.join("autogit.yml"), config).unwrap();
    write_env(dir, env);
    let out = dir.join("k8s");
    let r = run_data(
        dir,
        &["export", "kubernetes", "--out", out.to_str().unwrap(), "-q"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    out
}

const GPU_RUNNERS: &str = "runners:\n  mode: always\n  cpu:\n    - name: build\n      host: local\n  gpu:\n    - name: rtx\n      host: gpu1.lan\n      gpu: nvidia\n";

#[test]
fn every_manifest_validates_against_the_kubernetes_schemas() {
    let Some(tool) = kubernetes_validate() else {
        return;
    };
    let cases = [
        (
            GPU_RUNNERS.to_owned(),
            "BASE_DOMAIN=example.com\nSERVICES_ENABLED=gitlab,grafana,loki,tempo,prometheus,meilisearch\nDNS_PROVIDER=cloudflare\nCLOUDFLARE_API_TOKEN=cf-token-value\n",
        ),
        (
            format!("{GPU_RUNNERS}platform:\n  ingress: nginx\n  ingress_allow: [10.0.0.0/8]\n"),
            "BASE_DOMAIN=example.com\nSERVICES_ENABLED=gitlab,grafana\nACME_CHALLENGE=http-01\n",
        ),
        (
            "platform:\n  guard_forward_auth: http://guard:8080/check\n  guard_services: [gitlab]\n".to_owned(),
            "BASE_DOMAIN=example.com\nSERVICES_ENABLED=gitlab,prometheus\nDNS_PROVIDER=rfc2136\nRFC2136_SERVER=192.0.2.53:53\nRFC2136_TSIG_KEY_NAME=autogit\nRFC2136_TSIG_SECRET=dHNpZy12YWx1ZQ==\n",
        ),
        (
            String::new(),
            "BASE_DOMAIN=example.com\nSERVICES_ENABLED=gitlab\nDNS_PROVIDER=route53\nAWS_ACCESS_KEY_ID=AKIAEXAMPLE\nAWS_SECRET_ACCESS_KEY=aws-secret-value\nAWS_HOSTED_ZONE_ID=Z123\n",
        ),
        // No domain: no ingress, no certificate, services on their ports.
        (String::new(), "SERVICES_ENABLED=gitlab,loki\n"),
    ];
    for (i, (config, env)) in cases.iter().enumerate() {
        let d = tempfile::tempdir().unwrap();
        let out = export_k8s(d.path(), config, env);
        let mut files: Vec<PathBuf> = fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(files.len() >= 3, "case {i}: {files:?}");
        for f in &files {
            let text = fs::read_to_string(f).unwrap();
            for secret in ["cf-token-value", "dHNpZy12YWx1ZQ==", "aws-secret-value"] {
                assert!(
                    !text.contains(secret),
                    "case {i}: {} inlines a secret",
                    f.display()
                );
            }
        }
        for version in VERSIONS {
            let o = Command::new(&tool)
                .args(["--strict", "-k", version])
                .args(&files)
                .output()
                .expect("run kubernetes-validate");
            let stdout = String::from_utf8_lossy(&o.stdout);
            let stderr = String::from_utf8_lossy(&o.stderr);
            assert!(
                o.status.success(),
                "case {i}, Kubernetes {version}:\n{stdout}\n{stderr}"
            );
            for line in stdout.lines().chain(stderr.lines()) {
                let known_crd = autogit_core::kubernetes::CUSTOM_KINDS
                    .iter()
                    .any(|(api, kind)| {
                        line.contains(&format!("for kind {kind} with api version {api}"))
                    });
                assert!(
                    !line.starts_with("WARN") || known_crd,
                    "case {i}, Kubernetes {version}: unexpected warning: {line}"
                );
                assert!(!line.starts_with("ERROR"), "case {i}: {line}");
            }
        }
    }
}

/// The Kustomize base rendered by Kustomize itself (`kubectl kustomize`, which embeds it;
/// scripts/test.sh installs Debian's kubernetes-client where no kubectl is found): the same
/// objects as the Kubernetes export, valid against the schemas, with the images as pinned.
#[test]
fn kustomize_base_renders_with_kustomize_to_the_same_objects() {
    let Some(tool) = kubernetes_validate() else {
        return;
    };
    if !have("kubectl") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let env = "BASE_DOMAIN=example.com\nSERVICES_ENABLED=gitlab,grafana,meilisearch\nDNS_PROVIDER=cloudflare\nCLOUDFLARE_API_TOKEN=cf-token-value\n";
    let k8s = export_k8s(d.path(), GPU_RUNNERS, env);
    let base = d.path().join("base");
    let r = run_data(
        d.path(),
        &["export", "kustomize", "--out", base.to_str().unwrap(), "-q"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(base.join("kustomization.yaml").is_file());
    let o = Command::new("kubectl")
        .arg("kustomize")
        .arg(&base)
        .output()
        .expect("run kubectl kustomize");
    let rendered = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // As many objects as the Kubernetes export holds, each kind/name once.
    let count = |text: &str| text.lines().filter(|l| l.starts_with("kind: ")).count();
    let exported: usize = fs::read_dir(&k8s)
        .unwrap()
        .map(|e| count(&fs::read_to_string(e.unwrap().path()).unwrap()))
        .sum();
    assert_eq!(count(&rendered), exported, "{rendered}");
    assert!(rendered.contains("image: gitlab/gitlab-ce:"), "{rendered}");
    assert!(!rendered.contains("cf-token-value"));
    let out = d.path().join("rendered.yaml");
    fs::write(&out, &rendered).unwrap();
    let o = Command::new(&tool)
        .args(["--strict", "-k", VERSIONS[1]])
        .arg(&out)
        .output()
        .expect("run kubernetes-validate");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for line in stdout.lines() {
        assert!(!line.starts_with("ERROR"), "{line}");
    }
}

#[test]
fn out_refuses_to_write_outside_its_directory() {
    let d = tempfile::tempdir().unwrap();
    write_env(
        d.path(),
        "BASE_DOMAIN=example.com\nSERVICES_ENABLED=gitlab,prometheus\n",
    );
    let out = d.path().join("out");
    let elsewhere = d.path().join("elsewhere");
    fs::create_dir_all(&out).unwrap();
    fs::create_dir_all(&elsewhere).unwrap();
    // A directory the compose export writes into links out of the output directory.
    std::os::unix::fs::symlink(&elsewhere, out.join("prometheus")).unwrap();
    let r = run_data(
        d.path(),
        &["export", "compose", "--out", out.to_str().unwrap(), "-q"],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("outside"), "{}", r.stderr);
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
    // Kubernetes into a directory: every manifest is there, and only there.
    let k8s = d.path().join("k8s");
    let r = run_data(
        d.path(),
        &[
            "export",
            "kubernetes",
            "-O",
            k8s.to_str().unwrap(),
            "-o",
            "json",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["format"], "kubernetes");
    assert_eq!(v["from"], "config");
    for f in v["files"].as_array().unwrap() {
        assert!(Path::new(f.as_str().unwrap()).starts_with(&k8s), "{f}");
    }
    // Printed, the manifests are one multi-document stream.
    let r = run_data(d.path(), &["export", "kubernetes", "-q"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("kind: StatefulSet") && r.stdout.contains("\n---\n"));
    // Sized by the preset (the default, homelab: GitLab 6 CPUs, 6 GiB), not by this host.
    let gitlab = fs::read_to_string(k8s.join("gitlab.yaml")).unwrap();
    assert!(
        gitlab.contains("cpu: \"6\"\n") && gitlab.contains("memory: \"6Gi\"\n"),
        "{gitlab}"
    );
}

#[test]
fn from_running_without_an_engine_fails_and_says_why() {
    let d = tempfile::tempdir().unwrap();
    let r = run_env(
        d.path(),
        &[
            "export",
            "compose",
            "--from",
            "running",
            "-q",
            "--data-dir",
            "data",
        ],
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("--from running needs the container engine"),
        "{}",
        r.stderr
    );
}

fn compose(project: &str, file: &Path, args: &[&str]) -> std::process::Output {
    Command::new("docker-compose")
        .args(["-p", project, "-f", file.to_str().unwrap()])
        .args(args)
        .output()
        .expect("docker-compose")
}

fn export_running(dir: &Path, out: &Path) -> serde_json::Value {
    let r = run_data(
        dir,
        &[
            "export",
            "compose",
            "--from",
            "running",
            "--out",
            out.to_str().unwrap(),
            "-o",
            "json",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    serde_json::from_str(&r.stdout).unwrap()
}

/// A platform installed on the real engine with the stand-in GitLab image (ports `base` to
/// `base + 2`), its project named `prefix-<pid>`; taken down when the returned `Down` drops
/// (before the directory).
fn installed(prefix: &str, base: u16) -> (tempfile::TempDir, String, Down) {
    fake_gitlab_image("0.0.16", &[]);
    let d = tempfile::tempdir().unwrap();
    let project = format!("{prefix}-{}", std::process::id());
    let (http, https, ssh) = (base, base + 1, base + 2);
    fs::write(
        d.path().join("autogit.yml"),
        format!("gitlab:\n  image: autogit-test/gitlab-ce\n  version: \"0.0.16\"\n  ports: {{http: {http}, https: {https}, ssh: {ssh}}}\n  resources: {{preset: minimal, cpu: 0.5, memory: 64M}}\n  start_period: 3s\nrunners: {{}}\nhealth:\n  check_interval: 1s\n  timeout: 1s\n  failure_threshold: 1\nplatform:\n  project: {project}\n"),
    )
    .unwrap();
    let down = Down(d.path().to_owned());
    let r = run_data(
        d.path(),
        &["install", "--no-bootstrap", "--wait", "60s", "-q"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    (d, project, down)
}

/// The round trip on the real engine with the stand-in GitLab image.
#[test]
fn capture_export_down_up_capture_gives_the_same_platform() {
    if !have_engine() || !have("docker-compose") {
        return;
    }
    let (d, project, _down) = installed("agt-export", 31680);

    let first = d.path().join("first");
    let v = export_running(d.path(), &first);
    assert_eq!(v["from"], "running");
    assert_eq!(v["drift"], serde_json::json!([]), "{v:#}");
    let file = first.join("docker-compose.yml");
    // The manifests of what runs pass the schemas too.
    let k8s = d.path().join("k8s-running");
    let r = run_data(
        d.path(),
        &[
            "export",
            "kubernetes",
            "--from",
            "running",
            "-O",
            k8s.to_str().unwrap(),
            "-q",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let gitlab = fs::read_to_string(k8s.join("gitlab.yaml")).unwrap();
    assert!(
        gitlab.contains("kind: StatefulSet") && gitlab.contains("path: \"/-/health\""),
        "{gitlab}"
    );
    if let Some(tool) = kubernetes_validate() {
        let o = Command::new(&tool)
            .args(["--strict", "-k", VERSIONS[1]])
            .arg(k8s.join("namespace.yaml"))
            .arg(k8s.join("gitlab.yaml"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    }
    let check = compose(&project, &file, &["config", "-q"]);
    assert!(
        check.status.success(),
        "docker-compose config: {}",
        String::from_utf8_lossy(&check.stderr)
    );

    // Down (volumes stay), then the export brought up by compose alone.
    let r = run_data(d.path(), &["down", "-q"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let up = compose(&project, &file, &["up", "-d"]);
    assert!(
        up.status.success(),
        "docker-compose up: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    let result = std::panic::catch_unwind(|| {
        // autogit sees it healthy.
        let start = std::time::Instant::now();
        loop {
            let r = run_data(d.path(), &["status", "-o", "json"]);
            let s: serde_json::Value = serde_json::from_str(&r.stdout).unwrap_or_default();
            if s["services"][0]["health"] == "healthy" {
                break;
            }
            assert!(
                start.elapsed().as_secs() < 60,
                "not healthy under compose: {s:#}"
            );
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        // Captured again: the same platform (no drift, the same export).
        let second = d.path().join("second");
        let v = export_running(d.path(), &second);
        assert_eq!(v["drift"], serde_json::json!([]), "{v:#}");
        assert_eq!(
            fs::read_to_string(&file).unwrap(),
            fs::read_to_string(second.join("docker-compose.yml")).unwrap()
        );
    });
    let _ = compose(&project, &file, &["down"]);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// `--from running` reads the platform's records from the DNS provider's zone (a real BIND):
/// before `dns sync` each wanted record is drift, after it none is.
#[test]
fn running_export_reads_the_zone_and_reports_dns_drift() {
    if !have_engine() {
        return;
    }
    let Some(named) = named_or_skip() else {
        return;
    };
    let bind =
        Bind::start(&named, &[TestZone::new("example.test", "")]).unwrap_or_else(|e| panic!("{e}"));
    let d = tempfile::tempdir().unwrap();
    let project = format!("agt-exportdns-{}", std::process::id());
    fs::write(
        d.path().join("autogit.yml"),
        format!("platform:\n  project: {project}\n"),
    )
    .unwrap();
    write_env(
        d.path(),
        &format!(
            "BASE_DOMAIN=example.test\nINGRESS_IP=203.0.113.7\nSERVICES_ENABLED=gitlab\nDNS_PROVIDER=rfc2136\nRFC2136_SERVER={}\nRFC2136_TSIG_KEY_NAME={KEY_NAME}\nRFC2136_TSIG_SECRET={}\n",
            bind.server(),
            bind.secret()
        ),
    );
    let dns_drift = |v: &serde_json::Value| -> Vec<String> {
        v["drift"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["field"] == "dns")
            .map(|d| {
                format!(
                    "{} | {}",
                    d["expected"].as_str().unwrap(),
                    d["found"].as_str().unwrap()
                )
            })
            .collect()
    };
    let export = || {
        let r = run_data(
            d.path(),
            &["export", "kubernetes", "--from", "running", "-o", "json"],
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        serde_json::from_str::<serde_json::Value>(&r.stdout).unwrap()
    };
    let before = dns_drift(&export());
    assert_eq!(before.len(), 4, "{before:#?}");
    assert!(
        before.contains(&"*.example.test 300 A 203.0.113.7 | absent".to_owned()),
        "{before:#?}"
    );
    let r = run_data(d.path(), &["dns", "sync", "-q"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let after = export();
    assert_eq!(dns_drift(&after), Vec::<String>::new(), "{after:#}");
    // Nothing runs on the engine for this project: every service is drift.
    assert!(
        after["drift"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["service"] == "gitlab" && d["found"] == "absent")
    );
}

/// The Python of a venv with `python-hcl2` (PyPI, HashiCorp's HCL2 grammar in Lark):
/// `AUTOGIT_PYTHON_HCL2`, or the venv `scripts/test.sh` makes (`target/tools/python-hcl2`).
/// Missing: skip, unless `AUTOGIT_REQUIRE_TOOLS` is set.
fn python_hcl2() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("AUTOGIT_PYTHON_HCL2") {
        return Some(PathBuf::from(p));
    }
    let venv =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/tools/python-hcl2/bin/python");
    if venv.is_file() {
        return Some(venv);
    }
    assert!(
        std::env::var_os("AUTOGIT_REQUIRE_TOOLS").is_none(),
        "python-hcl2 is required (AUTOGIT_REQUIRE_TOOLS=1): run scripts/test.sh or set AUTOGIT_PYTHON_HCL2"
    );
    eprintln!("skipping: python-hcl2 not installed");
    None
}

/// Parses every `.tf` file of `dir` with python-hcl2: `{file name: the file as JSON}`.
fn parse_hcl(python: &Path, dir: &Path) -> serde_json::Map<String, serde_json::Value> {
    const SCRIPT: &str = "import hcl2, json, pathlib, sys\nout = {}\nfor p in sorted(pathlib.Path(sys.argv[1]).glob('*.tf')):\n    with open(p) as f:\n        out[p.name] = hcl2.load(f)\nprint(json.dumps(out))\n";
    let o = Command::new(python)
        .args(["-c", SCRIPT])
        .arg(dir)
        .output()
        .expect("run python-hcl2");
    assert!(
        o.status.success(),
        "python-hcl2 rejects the export:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice::<serde_json::Value>(&o.stdout)
        .unwrap()
        .as_object()
        .unwrap()
        .clone()
}

/// python-hcl2 keeps a string literal's quotes; expressions are `${...}` or bare.
fn unquote(v: &serde_json::Value) -> String {
    v.as_str().unwrap_or_default().trim_matches('"').to_owned()
}

fn strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
        serde_json::Value::Object(m) => m.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// `export terraform-kubernetes`: python-hcl2 parses it, the provider is pinned, there is one
/// `kubernetes_manifest` per object of `export kubernetes` (same kinds and names, in order),
/// each depends only on declared resources, and no secret value is written.
#[test]
fn terraform_kubernetes_export_holds_every_manifest() {
    let Some(python) = python_hcl2() else {
        return;
    };
    use autogit_core::terraform::KUBERNETES_PROVIDER;
    let d = tempfile::tempdir().unwrap();
    fs::write(d.path().join("autogit.yml"), GPU_RUNNERS).unwrap();
    write_env(
        d.path(),
        "BASE_DOMAIN=example.com\nSERVICES_ENABLED=gitlab,grafana,prometheus,api\nINGRESS_IP=192.0.2.10\nDNS_PROVIDER=cloudflare\nCLOUDFLARE_API_TOKEN=cf-token-value\n",
    );
    let out = d.path().join("tfk");
    let r = run_data(
        d.path(),
        &[
            "export",
            "terraform-kubernetes",
            "--out",
            out.to_str().unwrap(),
            "-q",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let k8s = run_data(d.path(), &["export", "kubernetes"]);
    assert_eq!(k8s.code, 0, "{}", k8s.stderr);
    // (kind, name) of every object of the Kubernetes export, in order.
    let mut want = Vec::new();
    for doc in k8s.stdout.split("\n---\n") {
        let top = |key: &str| {
            doc.lines()
                .find_map(|l| l.strip_prefix(&format!("{key}: ")))
                .map(|v| v.trim().trim_matches('"').to_owned())
        };
        let name = doc
            .lines()
            .skip_while(|l| *l != "metadata:")
            .find_map(|l| l.strip_prefix("  name: "))
            .map(|v| v.trim().trim_matches('"').to_owned());
        if let (Some(kind), Some(name)) = (top("kind"), name) {
            want.push((kind, name));
        }
    }
    assert!(want.len() > 10, "{}", k8s.stdout);
    for e in fs::read_dir(&out).unwrap() {
        let text = fs::read_to_string(e.unwrap().path()).unwrap();
        assert!(!text.contains("cf-token-value"), "a secret inlined");
    }
    let parsed = parse_hcl(&python, &out);
    assert_eq!(
        parsed.keys().collect::<Vec<_>>(),
        ["main.tf", "manifests.tf", "variables.tf"]
    );
    let k = &parsed["main.tf"]["terraform"][0]["required_providers"][0]["kubernetes"];
    assert_eq!(unquote(&k["source"]), KUBERNETES_PROVIDER.0);
    assert_eq!(unquote(&k["version"]), KUBERNETES_PROVIDER.1);
    let key = |m: &serde_json::Value, k: &str| -> serde_json::Value {
        m.as_object()
            .unwrap()
            .iter()
            .find(|(x, _)| x.trim_matches('"') == k)
            .map(|(_, v)| v.clone())
            .unwrap_or(serde_json::Value::Null)
    };
    let mut got = Vec::new();
    let mut declared = std::collections::BTreeSet::new();
    let mut depends = Vec::new();
    for block in parsed["manifests.tf"]["resource"].as_array().unwrap() {
        for (kind, named) in block.as_object().unwrap() {
            assert_eq!(kind.trim_matches('"'), "kubernetes_manifest");
            for (name, body) in named.as_object().unwrap() {
                declared.insert(format!("kubernetes_manifest.{}", name.trim_matches('"')));
                let m = &body["manifest"];
                got.push((
                    unquote(&key(m, "kind")),
                    unquote(&key(&key(m, "metadata"), "name")),
                ));
                for d in body["depends_on"].as_array().into_iter().flatten() {
                    depends.push(
                        d.as_str()
                            .unwrap()
                            .trim_matches(|c| c == '$' || c == '{' || c == '}')
                            .to_owned(),
                    );
                }
            }
        }
    }
    assert_eq!(got, want);
    assert_eq!(
        depends.len(),
        want.len() - 1,
        "everything after the Namespace waits for it"
    );
    for d in &depends {
        assert!(declared.contains(d), "{d} undeclared");
    }
}

#[test]
fn terraform_export_parses_and_every_reference_is_defined() {
    let Some(python) = python_hcl2() else {
        return;
    };
    use autogit_core::terraform::{DOCKER_PROVIDER, RESOURCE_TYPES};
    let secrets = [
        "cf-token-value",
        "dHNpZy12YWx1ZQ==",
        "aws-secret-value",
        "meili-key-value",
    ];
    let cases = [
        (
            GPU_RUNNERS,
            "BASE_DOMAIN=example.com\nSERVICES_ENABLED=gitlab,grafana,loki,tempo,prometheus,meilisearch,api\nINGRESS_IP=192.0.2.10\nDNS_PROVIDER=cloudflare\nCLOUDFLARE_API_TOKEN=cf-token-value\nMEILI_MASTER_KEY=meili-key-value\n",
        ),
        (
            "",
            "BASE_DOMAIN=example.com\nSERVICES_ENABLED=gitlab,prometheus\nINGRESS_IP=192.0.2.10\nDNS_PROVIDER=rfc2136\nRFC2136_SERVER=192.0.2.53:53\nRFC2136_TSIG_KEY_NAME=autogit\nRFC2136_TSIG_SECRET=dHNpZy12YWx1ZQ==\n",
        ),
        (
            "",
            "BASE_DOMAIN=example.com\nSERVICES_ENABLED=gitlab\nINGRESS_IP=192.0.2.10\nDNS_PROVIDER=route53\nAWS_ACCESS_KEY_ID=AKIAEXAMPLE\nAWS_SECRET_ACCESS_KEY=aws-secret-value\nAWS_HOSTED_ZONE_ID=Z123\n",
        ),
        ("", "SERVICES_ENABLED=gitlab,loki\n"),
    ];
    for (i, (config, env)) in cases.iter().enumerate() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("autogit.yml"), config).unwrap();
        write_env(d.path(), env);
        let out = d.path().join("tf");
        let r = run_data(
            d.path(),
            &["export", "terraform", "--out", out.to_str().unwrap(), "-q"],
        );
        assert_eq!(r.code, 0, "case {i}: {}", r.stderr);
        for e in fs::read_dir(&out).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                let text = fs::read_to_string(&p).unwrap();
                for s in secrets {
                    assert!(
                        !text.contains(s),
                        "case {i}: {} inlines a secret",
                        p.display()
                    );
                }
            }
        }
        let parsed = parse_hcl(&python, &out);
        assert_eq!(
            parsed.keys().collect::<Vec<_>>(),
            ["dns.tf", "main.tf", "services.tf", "variables.tf"],
            "case {i}"
        );
        let docker = &parsed["main.tf"]["terraform"][0]["required_providers"][0]["docker"];
        assert_eq!(unquote(&docker["source"]), DOCKER_PROVIDER.0, "case {i}");
        assert_eq!(
            unquote(&docker["version"]),
            DOCKER_PROVIDER.1,
            "case {i}: pinned"
        );
        // What the files declare: resources (type.name) and variables (name → sensitive).
        let mut declared = std::collections::BTreeSet::new();
        let mut variables = std::collections::BTreeMap::new();
        for file in parsed.values() {
            for block in file["resource"].as_array().into_iter().flatten() {
                for (kind, named) in block.as_object().unwrap() {
                    let kind = kind.trim_matches('"');
                    assert!(RESOURCE_TYPES.contains(&kind), "case {i}: {kind}");
                    for name in named.as_object().unwrap().keys() {
                        declared.insert(format!("{kind}.{}", name.trim_matches('"')));
                    }
                }
            }
            for block in file["variable"].as_array().into_iter().flatten() {
                for (name, body) in block.as_object().unwrap() {
                    variables.insert(
                        name.trim_matches('"').to_owned(),
                        body["sensitive"].as_bool().unwrap_or(false),
                    );
                }
            }
        }
        assert!(
            declared.iter().any(|r| r.starts_with("docker_container.")),
            "case {i}"
        );
        // Every reference in an expression names something declared.
        let mut all = Vec::new();
        parsed.values().for_each(|f| strings(f, &mut all));
        let mut used_vars = std::collections::BTreeSet::new();
        for s in &all {
            for token in s.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.')) {
                let parts: Vec<&str> = token.split('.').collect();
                if parts.len() < 2 {
                    continue;
                }
                if parts[0] == "var" {
                    assert!(
                        variables.contains_key(parts[1]),
                        "case {i}: var.{} undeclared",
                        parts[1]
                    );
                    used_vars.insert(parts[1].to_owned());
                } else if RESOURCE_TYPES.contains(&parts[0]) && !s.starts_with('"') {
                    let r = format!("{}.{}", parts[0], parts[1]);
                    assert!(declared.contains(&r), "case {i}: {r} undeclared in {s}");
                }
            }
            // A bind mount of a rendered file names a file the export wrote.
            if let Some(rel) = s.strip_prefix("\"${abspath(path.module)}/") {
                let rel = rel.trim_end_matches('"');
                assert!(out.join(rel).exists(), "case {i}: {rel} not written");
            }
        }
        // Secrets are sensitive variables; every declared variable is used.
        for v in [
            "meili_master_key",
            "gf_security_admin_password",
            "cloudflare_api_token",
        ] {
            if let Some(sensitive) = variables.get(v) {
                assert!(*sensitive, "case {i}: {v} is not sensitive");
            }
        }
        for v in variables.keys() {
            assert!(used_vars.contains(v), "case {i}: variable {v} unused");
        }
        if i == 0 {
            assert_eq!(variables.get("cloudflare_api_token"), Some(&true));
            assert!(
                declared
                    .iter()
                    .any(|r| r.starts_with("cloudflare_dns_record."))
            );
        }
        if i == 2 {
            assert!(
                declared
                    .iter()
                    .any(|r| r.starts_with("aws_route53_record."))
            );
        }
    }
}

/// Debian's `ansible` (ansible-core and the community collections, community.docker among
/// them): the playbook passes `ansible-playbook --syntax-check` (which resolves every module
/// name) and `ansible-inventory --list` reads the inventory into the `autogit` group.
#[test]
fn ansible_export_passes_syntax_check_and_inventory_list() {
    if !have("ansible-playbook") || !have("ansible-inventory") {
        return;
    }
    let cases = [
        (
            GPU_RUNNERS,
            "BASE_DOMAIN=example.com\nSERVICES_ENABLED=gitlab,grafana,loki,tempo,prometheus,meilisearch,api\nINGRESS_IP=192.0.2.10\nDNS_PROVIDER=cloudflare\nCLOUDFLARE_API_TOKEN=cf-token-value\nMEILI_MASTER_KEY=meili-key-value\n",
        ),
        ("", "SERVICES_ENABLED=gitlab,loki\n"),
    ];
    for (i, (config, env)) in cases.iter().enumerate() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("autogit.yml"), config).unwrap();
        write_env(d.path(), env);
        let out = d.path().join("ansible");
        let r = run_data(
            d.path(),
            &["export", "ansible", "--out", out.to_str().unwrap(), "-q"],
        );
        assert_eq!(r.code, 0, "case {i}: {}", r.stderr);
        let playbook = fs::read_to_string(out.join("playbook.yml")).unwrap();
        for s in ["cf-token-value", "meili-key-value"] {
            assert!(
                !playbook.contains(s),
                "case {i}: the playbook inlines a secret"
            );
        }
        // Ansible writes its temporary files under HOME; keep them in the test's directory.
        let ansible = |tool: &str, args: &[&str]| {
            Command::new(tool)
                .args(args)
                .current_dir(&out)
                .env("HOME", d.path())
                .env("ANSIBLE_LOCAL_TEMP", d.path().join("ansible-tmp"))
                .output()
                .expect("run ansible")
        };
        let o = ansible(
            "ansible-playbook",
            &["-i", "inventory.yml", "--syntax-check", "playbook.yml"],
        );
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.status.success(), "case {i}: syntax check:\n{text}");
        assert!(!text.contains("WARNING"), "case {i}: {text}");
        let o = ansible("ansible-inventory", &["-i", "inventory.yml", "--list"]);
        assert!(
            o.status.success(),
            "case {i}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let inv: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(
            inv["autogit"]["hosts"],
            serde_json::json!(["localhost"]),
            "case {i}: {inv}"
        );
        let vars = &inv["_meta"]["hostvars"]["localhost"];
        assert_eq!(vars["ansible_connection"], "local", "case {i}: {inv}");
        // The rendered files the playbook copies are where it copies them from.
        if playbook.contains("src: rendered/") {
            assert!(out.join("rendered").is_dir(), "case {i}");
        }
    }
}

/// The Ansible export of what runs, run by `ansible-playbook` against this host's engine
/// (Debian's ansible with community.docker and python3-docker) after `autogit down`:
/// autogit's `status` sees it healthy, and capturing again gives no drift and the same
/// playbook.
#[test]
fn ansible_playbook_of_a_capture_brings_the_platform_back() {
    if !have_engine() || !have("ansible-playbook") {
        return;
    }
    let (d, _, _down) = installed("agt-ansible", 31690);
    let export = |out: &Path| {
        let r = run_data(
            d.path(),
            &[
                "export",
                "ansible",
                "--from",
                "running",
                "--out",
                out.to_str().unwrap(),
                "-o",
                "json",
            ],
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(v["drift"], serde_json::json!([]), "{v:#}");
        fs::read_to_string(out.join("playbook.yml")).unwrap()
    };
    let first = d.path().join("first");
    let playbook = export(&first);
    let r = run_data(d.path(), &["down", "-q"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let o = Command::new("ansible-playbook")
        .args(["-i", "inventory.yml", "playbook.yml"])
        .current_dir(&first)
        .env("HOME", d.path())
        .env("ANSIBLE_LOCAL_TEMP", d.path().join("ansible-tmp"))
        .env("ANSIBLE_NOCOLOR", "1")
        .output()
        .expect("ansible-playbook");
    assert!(
        o.status.success(),
        "ansible-playbook:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let start = std::time::Instant::now();
    loop {
        let r = run_data(d.path(), &["status", "-o", "json"]);
        let s: serde_json::Value = serde_json::from_str(&r.stdout).unwrap_or_default();
        if s["services"][0]["health"] == "healthy" {
            break;
        }
        assert!(
            start.elapsed().as_secs() < 60,
            "not healthy under Ansible: {s:#}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert_eq!(export(&d.path().join("second")), playbook);
}
