//! What autogit renders is accepted by the real tools that will read it: `nginx -t` for the
//! ingress configuration, `promtool check config` for Prometheus, `docker-compose config` for
//! the compose file (see cli.rs). Rendered through the real binary (`install --dry-run`).

mod common;
use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn render(dir: &Path, ingress: &str) -> std::path::PathBuf {
    fs::write(
        dir.join("autogit.yml"),
        format!("platform:\n  ingress: {ingress}\n"),
    )
    .unwrap();
    fs::write(
        dir.join(".env"),
        "BASE_DOMAIN=example.com\nSERVICES_ENABLED=gitlab,grafana,loki,tempo,prometheus\n",
    )
    .unwrap();
    fs::set_permissions(dir.join(".env"), fs::Permissions::from_mode(0o600)).unwrap();
    let data = dir.join("data");
    let r = run(
        dir,
        &[
            "install",
            "--dry-run",
            "-q",
            "--data-dir",
            data.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    data.join("rendered")
}

#[test]
fn nginx_accepts_the_rendered_ingress() {
    if !have("nginx") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let rendered = render(d.path(), "nginx");
    let conf = rendered.join("nginx/autogit.conf");
    let text = fs::read_to_string(&conf).unwrap();
    assert!(
        text.contains("server_name grafana.example.com;")
            && text.contains("server_name gitlab.example.com;"),
        "{text}"
    );
    // A main configuration around it, as the nginx image's own nginx.conf includes conf.d.
    let main = d.path().join("nginx.conf");
    fs::write(
        &main,
        format!(
            "pid {0}/nginx.pid;\nerror_log {0}/error.log;\nevents {{}}\nhttp {{\n    access_log off;\n    client_body_temp_path {0};\n    proxy_temp_path {0};\n    include {1};\n}}\n",
            d.path().display(),
            conf.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new("nginx")
        .args(["-t", "-q", "-c"])
        .arg(&main)
        .arg("-p")
        .arg(d.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nginx -t: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_accepts_the_rendered_prometheus_config() {
    if !have("promtool") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let rendered = render(d.path(), "traefik");
    let conf = rendered.join("prometheus/prometheus.yml");
    let out = std::process::Command::new("promtool")
        .args(["check", "config"])
        .arg(&conf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = fs::read_to_string(&conf).unwrap();
    for job in ["prometheus", "loki", "tempo", "grafana"] {
        assert!(
            text.contains(&format!("job_name: {job}")),
            "{job} scraped: {text}"
        );
    }
}
