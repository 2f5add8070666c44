//! The extension host against real processes (python3 scripts written by the test, speaking
//! the protocol directly, without the SDK): the handshake, the environment and secrets an
//! extension gets (only what it declared), ids, and a refused manifest.

use autogit_core::extension::ProviderType;
use autogit_drivers::extension::{ExtensionError, Found, Grant, Limits, handshake, start};
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

/// A python3 extension named `name` whose handshake answers `manifest` and whose `health`
/// reports its environment and what `initialize` gave it (names of secrets, not values).
fn write_ext(dir: &Path, name: &str, manifest: &Value) -> Found {
    let script = format!(
        r#"#!/usr/bin/python3
import json, os, sys
MANIFEST = json.loads({manifest:?})
got = {{}}
for line in sys.stdin:
    msg = json.loads(line)
    m, p = msg["method"], msg.get("params") or {{}}
    if m == "handshake":
        r = MANIFEST
    elif m == "initialize":
        got = p
        r = {{}}
    elif m == "health":
        r = {{"status": "ok", "env": sorted(os.environ), "config": got.get("config"),
              "secrets": got.get("secrets"), "context": got.get("context")}}
    else:
        r = {{}}
    print(json.dumps({{"jsonrpc": "2.0", "id": msg["id"], "result": r}}), flush=True)
    if m == "shutdown":
        break
"#,
        manifest = manifest.to_string()
    );
    let path = dir.join(name);
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    Found {
        name: name.to_owned(),
        path,
    }
}

fn python_or_skip() -> bool {
    let ok = Path::new("/usr/bin/python3").exists();
    if !ok {
        assert!(
            std::env::var_os("AUTOGIT_REQUIRE_TOOLS").is_none(),
            "/usr/bin/python3 is required"
        );
        eprintln!("skipping: no /usr/bin/python3");
    }
    ok
}

fn manifest(name: &str) -> Value {
    json!({
        "name": name, "version": "0.1.0", "protocol_version": 1,
        "providers": [{"type": "dns", "config": [
            {"key": "MEM_ZONE_NOTE", "required": true},
            {"key": "MEM_PORT", "type": "integer"},
            {"key": "MEM_API_TOKEN", "secret": true, "required": true}
        ]}],
        "secrets": ["MEM_API_TOKEN"],
        "env": ["LANG"]
    })
}

fn grant() -> Grant<'static> {
    Grant {
        env: Box::new(|k| match k {
            "LANG" => Some("C.UTF-8".to_owned()),
            "HOME" => Some("/root".to_owned()),
            "CLOUDFLARE_API_TOKEN" => Some("cf-token-value".to_owned()),
            _ => None,
        }),
        setting: Box::new(|k| match k {
            "MEM_ZONE_NOTE" => Some("hello".to_owned()),
            "MEM_PORT" => Some("5353".to_owned()),
            "RFC2136_TSIG_SECRET" => Some("tsig-value".to_owned()),
            _ => None,
        }),
        secret: Box::new(|k| {
            Ok(match k {
                "MEM_API_TOKEN" => Some("mem-token-value".to_owned()),
                "RFC2136_TSIG_SECRET" => Some("tsig-value".to_owned()),
                _ => None,
            })
        }),
        available: Box::new(|name| name == "base"),
    }
}

#[tokio::test]
async fn an_extension_gets_exactly_the_environment_settings_and_secrets_it_declared() {
    if !python_or_skip() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let found = write_ext(d.path(), "mem", &manifest("mem"));
    let limits = Limits::new(Duration::from_secs(20));
    let m = handshake(&found, limits).await.unwrap();
    assert_eq!((m.name.as_str(), m.version.as_str()), ("mem", "0.1.0"));

    let started = start(
        &found,
        ProviderType::Dns,
        &grant(),
        json!({"zone": "example.test", "ttl": 300}),
        limits,
    )
    .await
    .unwrap();
    let mut p = started.process;
    let h = p.call("health", json!({})).await.unwrap();
    // Only the declared variable; not HOME, not another provider's token. (Python may add
    // LC_CTYPE when it coerces a C locale; LANG=C.UTF-8 keeps it from doing so.)
    assert_eq!(h["env"], json!(["LANG"]), "{h}");
    assert_eq!(
        h["config"],
        json!({"MEM_ZONE_NOTE": "hello", "MEM_PORT": 5353})
    );
    assert_eq!(h["secrets"], json!({"MEM_API_TOKEN": "mem-token-value"}));
    assert_eq!(h["context"]["zone"], "example.test");
    // Ids keep counting; the process answers each in turn.
    assert_eq!(p.call("anything", json!({})).await.unwrap(), json!({}));
    p.shutdown().await;
}

#[tokio::test]
async fn a_missing_setting_and_a_refused_manifest_name_the_extension() {
    if !python_or_skip() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let limits = Limits::new(Duration::from_secs(20));
    let mut m = manifest("needy");
    m["providers"][0]["config"][0]["key"] = json!("NEEDY_UNSET");
    let found = write_ext(d.path(), "needy", &m);
    let e = start(&found, ProviderType::Dns, &grant(), json!({}), limits)
        .await
        .unwrap_err();
    assert!(matches!(e, ExtensionError::Config { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        "extension `needy`: it needs NEEDY_UNSET in .env or the environment"
    );

    // It asks for RFC2136_TSIG_SECRET as a plain setting: refused at the handshake, before
    // any value is looked up.
    let mut m = manifest("greedy");
    m["providers"][0]["config"]
        .as_array_mut()
        .unwrap()
        .push(json!({"key": "RFC2136_TSIG_SECRET"}));
    let found = write_ext(d.path(), "greedy", &m);
    let e = handshake(&found, limits).await.unwrap_err();
    assert!(
        e.to_string().starts_with("extension `greedy` is refused: its dns setting `RFC2136_TSIG_SECRET` holds a secret but is not declared as one"),
        "{e}"
    );

    // A dependency that is not available: refused before `initialize` (with the missing
    // setting, all in one message).
    let mut m = manifest("dependent");
    m["dependencies"] = json!(["base", "ghost"]);
    m["providers"][0]["config"][0]["key"] = json!("NEEDY_UNSET");
    let found = write_ext(d.path(), "dependent", &m);
    let e = start(&found, ProviderType::Dns, &grant(), json!({}), limits)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "extension `dependent`: it depends on `ghost`, which is not enabled or not installed; it needs NEEDY_UNSET in .env or the environment"
    );

    // Found under another name than its handshake says.
    let found = write_ext(d.path(), "alias", &manifest("mem"));
    let e = handshake(&found, limits).await.unwrap_err();
    assert!(e.to_string().contains("found as `alias`"), "{e}");

    // It does not provide the type asked for.
    let mut m = manifest("notdns");
    m["providers"][0]["type"] = json!("notify");
    let found = write_ext(d.path(), "notdns", &m);
    let e = start(&found, ProviderType::Dns, &grant(), json!({}), limits)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "extension `notdns`: it provides `notify` but not `dns`"
    );
}

/// A writer for the log, kept in memory.
#[derive(Clone, Default)]
struct LogBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn stderr_goes_to_the_log_line_by_line_cut_and_without_its_secrets() {
    if !python_or_skip() {
        return;
    }
    let log = LogBuf::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    // The test's runtime is this thread: the stderr reader task logs here too.
    let _guard = tracing::subscriber::set_default(subscriber);

    let d = tempfile::tempdir().unwrap();
    let mut m = manifest("chatty");
    m["env"] = json!([]);
    let found = write_ext(d.path(), "chatty", &m);
    // Wrap the script: before answering, it writes its token and a 10 000-byte line to stderr.
    let script = std::fs::read_to_string(&found.path).unwrap();
    let script = script.replace(
        "    elif m == \"health\":\n",
        "    elif m == \"health\":\n        sys.stderr.write(\"token is %s\\n\" % got[\"secrets\"][\"MEM_API_TOKEN\"] + \"y\" * 10000 + \"\\n\"); sys.stderr.flush()\n",
    );
    std::fs::write(&found.path, script).unwrap();
    let limits = Limits::new(Duration::from_secs(20));
    let started = start(&found, ProviderType::Dns, &grant(), json!({}), limits)
        .await
        .unwrap();
    let mut p = started.process;
    p.call("health", json!({})).await.unwrap();
    p.shutdown().await;
    // The reader task logs as it reads; give it its turn.
    for _ in 0..50 {
        if String::from_utf8_lossy(&log.0.lock().unwrap()).contains("[cut]") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = String::from_utf8_lossy(&log.0.lock().unwrap()).into_owned();
    assert!(text.contains("autogit::extension"), "{text}");
    assert!(
        text.contains("extension=\"chatty\"") || text.contains("extension=chatty"),
        "{text}"
    );
    assert!(text.contains("token is [secret]"), "{text}");
    assert!(!text.contains("mem-token-value"), "{text}");
    let long = text.lines().find(|l| l.contains("yyyy")).unwrap();
    assert!(
        long.contains(" [cut]") && long.len() < 4096 + 200,
        "{}",
        long.len()
    );
}
