//! What autogit renders is accepted by the real tools that will read it: `nginx -t` for the
//! ingress configuration, `promtool check config` for Prometheus (with node-exporter, cAdvisor,
//! Alertmanager and the DCGM exporters of two GPU hosts), `docker-compose config` for
//! the compose file (see cli.rs). Rendered through the real binary (`install --dry-run`).

mod common;
use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn render(dir: &Path, ingress: &str) -> std::path::PathBuf {
    render_with(dir, ingress, "")
}

fn render_with(dir: &Path, ingress: &str, extra_yaml: &str) -> std::path::PathBuf {
    fs::write(
        dir.join("autogit.yml"),
        format!("platform:\n  ingress: {ingress}\n{extra_yaml}"),
    )
    .unwrap();
    fs::write(
        dir.join(".env"),
        "BASE_DOMAIN=example.com\nSERVICES_ENABLED=gitlab,grafana,loki,tempo,prometheus\n",
    )
    .unwrap();
    fs::set_permissions(dir.join(".env"), fs::Permissions::from_mode(0o600)).unwrap();
    let data = dir.join("data");
    // Prometheus's directory is mounted whole into a container running as nobody: readable
    // whatever mode it had (here: made 0700 beforehand).
    let prom = data.join("rendered/prometheus");
    fs::create_dir_all(&prom).unwrap();
    fs::set_permissions(&data, fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(&prom, fs::Permissions::from_mode(0o700)).unwrap();
    // Grafana's too (it runs as uid 472), down to the subdirectories.
    let provisioning = data.join("rendered/grafana/provisioning/datasources");
    fs::create_dir_all(&provisioning).unwrap();
    fs::set_permissions(&provisioning, fs::Permissions::from_mode(0o700)).unwrap();
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

/// With a platform certificate in the data dir, the nginx ingress serves HTTPS with it (and
/// redirects HTTP), the certificate is copied next to the rendered files (key 0600), and
/// `nginx -t` accepts the result with the real certificate files.
#[test]
fn nginx_accepts_the_rendered_ingress_with_tls() {
    if !have("nginx") || !have("openssl") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let tls = d.path().join("data/tls/example.com");
    fs::create_dir_all(&tls).unwrap();
    let out = std::process::Command::new("openssl")
        .current_dir(&tls)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "fullchain.pem",
            "-days",
            "30",
            "-subj",
            "/CN=example.com",
            "-addext",
            "subjectAltName=DNS:*.example.com,DNS:example.com",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered = render(d.path(), "nginx");
    let key = rendered.join("tls/key.pem");
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let conf = rendered.join("nginx/autogit.conf");
    let text = fs::read_to_string(&conf).unwrap();
    assert!(
        text.contains("listen 443 ssl;")
            && text.contains("return 308 https://$host$request_uri;")
            && text.contains("Strict-Transport-Security"),
        "{text}"
    );
    // The container sees the files at /etc/autogit/tls; here they are in rendered/tls.
    let local = text.replace("/etc/autogit/tls", rendered.join("tls").to_str().unwrap());
    let local_conf = d.path().join("autogit-local.conf");
    fs::write(&local_conf, local).unwrap();
    let main = d.path().join("nginx.conf");
    fs::write(
        &main,
        format!(
            "pid {0}/nginx.pid;\nerror_log {0}/error.log;\nevents {{}}\nhttp {{\n    access_log off;\n    client_body_temp_path {0};\n    proxy_temp_path {0};\n    include {1};\n}}\n",
            d.path().display(),
            local_conf.display()
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
    // Traefik: the dynamic configuration names the same files.
    let d2 = tempfile::tempdir().unwrap();
    fs::create_dir_all(d2.path().join("data/tls")).unwrap();
    std::process::Command::new("cp")
        .arg("-r")
        .arg(&tls)
        .arg(d2.path().join("data/tls/"))
        .status()
        .unwrap();
    let rendered = render(d2.path(), "traefik");
    let dynamic = fs::read_to_string(rendered.join("traefik/dynamic/autogit.yml")).unwrap();
    assert!(
        dynamic.contains("certFile: \"/etc/autogit/tls/fullchain.pem\""),
        "{dynamic}"
    );
}

#[test]
fn promtool_accepts_the_rendered_prometheus_config() {
    if !have("promtool") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    // Two NVIDIA runner hosts: one `dcgm` job with both targets.
    let rendered = render_with(
        d.path(),
        "traefik",
        "runners:\n  gpu:\n    - name: rig\n      host: gpu1.lan\n    - name: rig2\n      host: gpu2.lan\n",
    );
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
    assert_eq!(
        fs::metadata(rendered.join("prometheus"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
    for sub in [
        "grafana/provisioning",
        "grafana/provisioning/datasources",
        "grafana/dashboards",
        "alertmanager",
    ] {
        assert_eq!(
            fs::metadata(rendered.join(sub))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o755,
            "{sub}"
        );
    }
    let text = fs::read_to_string(&conf).unwrap();
    for job in [
        "prometheus",
        "loki",
        "tempo",
        "grafana",
        "node",
        "cadvisor",
        "alertmanager",
        "dcgm",
    ] {
        assert!(
            text.contains(&format!("job_name: {job}")),
            "{job} scraped: {text}"
        );
    }
    assert!(text.contains("\"gpu1.lan:9400\"") && text.contains("\"gpu2.lan:9400\""));
    assert!(rendered.join("dcgm-exporter/docker-compose.yml").is_file());
    assert!(rendered.join("loki/loki.yaml").is_file());
}
