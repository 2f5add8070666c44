//! `autogit extension list|info|check` through the binary, configured by `.env` only, with
//! small python3 extensions written by the test (speaking the protocol directly).

mod common;
use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// A python3 extension named `name`: its manifest is `manifest` (JSON text, `NAME` replaced by
/// its name); `health` answers `health` (JSON text).
fn install(ext: &Path, name: &str, manifest: &str, health: &str) {
    fs::create_dir_all(ext).unwrap();
    let script = format!(
        r#"#!/usr/bin/python3
import json, sys
for line in sys.stdin:
    msg = json.loads(line)
    m = msg["method"]
    r = {{}}
    if m == "handshake":
        r = json.loads({manifest:?})
    elif m == "health":
        r = json.loads({health:?})
    print(json.dumps({{"jsonrpc": "2.0", "id": msg["id"], "result": r}}), flush=True)
    if m == "shutdown":
        break
"#,
        manifest = manifest.replace("NAME", name),
    );
    let p = ext.join(name);
    fs::write(&p, script).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
}

const DNS_MANIFEST: &str = r#"{"name": "NAME", "version": "1.2.3", "protocol_version": 1,
  "providers": [{"type": "dns", "config": [
     {"key": "DEMO_URL", "required": true, "description": "where"},
     {"key": "DEMO_TOKEN", "secret": true, "required": true}]},
   {"type": "ssl", "config": []}],
  "secrets": ["DEMO_TOKEN"], "env": ["PATH"], "dependencies": DEPS}"#;

fn python_or_skip() -> bool {
    have("python3") && Path::new("/usr/bin/python3").exists()
}

fn ext(dir: &Path, args: &[&str]) -> Run {
    let data = dir.join("data");
    let mut all = vec!["extension"];
    all.extend_from_slice(args);
    all.extend(["--data-dir", data.to_str().unwrap()]);
    run(dir, &all)
}

fn write_env(dir: &Path, text: &str) {
    fs::write(dir.join(".env"), text).unwrap();
    fs::set_permissions(dir.join(".env"), fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn list_info_and_check() {
    if !python_or_skip() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let extdir = d.path().join("data/extensions");
    let ok = r#"{"status": "ok", "detail": "reachable"}"#;
    install(
        &extdir,
        "demo",
        &DNS_MANIFEST.replace("DEPS", r#"["base"]"#),
        ok,
    );
    install(&extdir, "base", &DNS_MANIFEST.replace("DEPS", "[]"), ok);
    install(
        &extdir,
        "sick",
        &DNS_MANIFEST.replace("DEPS", "[]"),
        r#"{"status": "failing", "detail": "backend down"}"#,
    );
    fs::write(extdir.join("README"), "not an extension").unwrap();
    write_env(
        d.path(),
        "EXTENSIONS_ENABLED=demo,base,sick,ghost\nDEMO_URL=https://dns.example\nDEMO_TOKEN=t0ken-value\n",
    );

    let list = ext(d.path(), &["list", "-o", "json"]);
    // `ghost` is enabled but not installed: exit 1, the rest still listed.
    assert_eq!(list.code, 1, "{}\n{}", list.stdout, list.stderr);
    let v: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    let names: Vec<&str> = v["extensions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["base", "demo", "ghost", "sick"]);
    assert_eq!(v["extensions"][1]["manifest"]["version"], "1.2.3");
    assert!(
        v["extensions"][2]["error"]
            .as_str()
            .unwrap()
            .contains("not installed"),
        "{v}"
    );
    assert_eq!(
        v["start_order"],
        serde_json::json!(["base", "demo", "ghost", "sick"])
    );
    let dns: Vec<&str> = v["dns_providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(dns.contains(&"demo") && dns.contains(&"rfc2136"), "{dns:?}");

    let table = ext(d.path(), &["list"]);
    assert!(table.stdout.contains("demo") && table.stdout.contains("1.2.3"));
    assert!(
        table
            .stderr
            .contains("README: `README` is not an extension name"),
        "{}",
        table.stderr
    );

    let info = ext(d.path(), &["info", "demo"]);
    assert_eq!(info.code, 0, "{}", info.stderr);
    for want in [
        "demo 1.2.3 (protocol 1)",
        "DEMO_URL",
        "secrets: DEMO_TOKEN",
        "environment: PATH",
        "depends on: base",
        "provides ssl",
    ] {
        assert!(info.stdout.contains(want), "{want}: {}", info.stdout);
    }

    let check = ext(d.path(), &["check", "demo"]);
    assert_eq!(check.code, 0, "{}\n{}", check.stdout, check.stderr);
    assert!(
        check
            .stdout
            .contains("dns: initialize ok, health ok reachable"),
        "{}",
        check.stdout
    );
    // Every type it provides is initialized and asked (an `ssl` source too).
    assert!(
        check
            .stdout
            .contains("ssl: initialize ok, health ok reachable"),
        "{}",
        check.stdout
    );
    // A relative data dir (the extension runs in its directory, so its path must not be).
    let rel = run(
        d.path(),
        &["extension", "check", "demo", "--data-dir", "data"],
    );
    assert_eq!(rel.code, 0, "{}\n{}", rel.stdout, rel.stderr);
    let sick = ext(d.path(), &["check", "sick"]);
    assert_eq!(sick.code, 1, "{}", sick.stdout);
    assert!(sick.stdout.contains("health failing backend down"));
    let ghost = ext(d.path(), &["check", "ghost"]);
    assert_eq!(ghost.code, 3, "{}", ghost.stderr);
    assert!(ghost.stderr.contains("extension `ghost` is not installed"));

    // Installed but not enabled: only the handshake runs (no setting or secret given).
    install(&extdir, "idle", &DNS_MANIFEST.replace("DEPS", "[]"), ok);
    let idle = ext(d.path(), &["check", "idle"]);
    assert_eq!(idle.code, 0, "{}", idle.stderr);
    assert!(
        idle.stderr
            .contains("idle is not in EXTENSIONS_ENABLED: it was given no setting or secret"),
        "{}",
        idle.stderr
    );
    assert!(!idle.stdout.contains("initialize ok"), "{}", idle.stdout);

    // A required setting missing: named, exit 3; the secret never printed.
    write_env(
        d.path(),
        "EXTENSIONS_ENABLED=demo,base\nDEMO_TOKEN=t0ken-value\n",
    );
    let r = ext(d.path(), &["check", "demo"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("extension `demo`: it needs DEMO_URL in .env or the environment"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("t0ken-value") && !r.stdout.contains("t0ken-value"));

    // A dependency that is not enabled: the start order cannot be made.
    write_env(d.path(), "EXTENSIONS_ENABLED=demo\n");
    let r = ext(d.path(), &["list"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("extension `demo` depends on `base`, which is not enabled"),
        "{}",
        r.stderr
    );
}
