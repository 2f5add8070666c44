//! The provider registry: an extension registered under a built-in's name replaces it, and
//! the DNS controller syncs through it as through any provider (a python3 extension keeping
//! its zone in a JSON file, speaking the protocol directly).

mod support;

use autogit_app::dns::DnsController;
use autogit_app::extensions::Registry;
use autogit_core::dns::RecordType;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const MEMDNS: &str = r#"#!/usr/bin/python3
import json, os, sys
NAME = os.path.basename(sys.argv[0])
ZONE = "zone.json"  # in its directory (autogit starts it there)
def load():
    return json.load(open(ZONE)) if os.path.exists(ZONE) else []
for line in sys.stdin:
    msg = json.loads(line)
    m, p = msg["method"], msg.get("params") or {}
    r = {}
    if m == "handshake":
        r = {"name": NAME, "version": "2.0.0", "protocol_version": 1,
             "providers": [{"type": "dns", "config": []}]}
    elif m == "dns.list":
        r = {"records": load()}
    elif m == "dns.apply":
        recs = load()
        for c in p["changes"]:
            if c["op"] in ("delete", "update"):
                old = c.get("record") or c["from"]
                recs = [x for x in recs if not (x["name"], x["type"], x["value"]) == (old["name"], old["type"], old["value"])]
            if c["op"] in ("create", "update"):
                recs.append(c.get("record") or c["to"])
        tmp = ZONE + ".tmp"
        json.dump(recs, open(tmp, "w"))
        os.replace(tmp, ZONE)
    print(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": r}), flush=True)
    if m == "shutdown":
        break
"#;

fn install(dir: &Path, name: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, MEMDNS).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn env(ext_dir: &Path, enabled: &str) -> String {
    format!(
        "BASE_DOMAIN=example.test\nINGRESS_IP=203.0.113.7\nDNS_PROVIDER=cloudflare\n\
         EXTENSIONS_ENABLED={enabled}\nEXTENSIONS_DIR={}\nEXTENSIONS_TIMEOUT=20\n",
        ext_dir.display()
    )
}

#[tokio::test]
async fn an_extension_replaces_the_built_in_of_its_name_and_the_dns_controller_syncs_through_it() {
    if !Path::new("/usr/bin/python3").exists() {
        assert!(std::env::var_os("AUTOGIT_REQUIRE_TOOLS").is_none());
        eprintln!("skipping: no /usr/bin/python3");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let ext_dir = d.path().join("ext");
    install(&ext_dir, "cloudflare");

    // Not enabled: `cloudflare` is the built-in (which wants its token).
    let s = support::settings("", &env(&ext_dir, ""), d.path());
    let r = Registry::load(&s).unwrap();
    assert!(
        r.dns_names()
            .contains(&("cloudflare".into(), "built-in".into()))
    );
    let e = r.dns_provider(&s).await.err().unwrap();
    assert!(e.to_string().contains("CLOUDFLARE_API_TOKEN"), "{e}");

    // Enabled: the extension of that name.
    let s = support::settings("", &env(&ext_dir, "cloudflare"), d.path());
    let r = Registry::load(&s).unwrap();
    let origin = ext_dir.join("cloudflare").display().to_string();
    assert!(r.dns_names().contains(&("cloudflare".into(), origin)));
    let p = r.dns_provider(&s).await.unwrap().unwrap();
    assert_eq!(p.describe(), "extension cloudflare 2.0.0");
    p.close().await;

    // The controller, unchanged, plans and syncs through it, and a second sync has nothing
    // to do (its read-back went through the extension too).
    let plan = autogit_app::plan::quiet(&s).unwrap();
    let (bus, _) = support::bus_at(1_700_000_000);
    let dns = DnsController::new(s.clone(), bus);
    let synced = dns.sync(&plan).await.unwrap();
    assert_eq!(synced.view.provider, "cloudflare");
    assert_eq!(synced.view.target, "extension cloudflare 2.0.0");
    assert!(!synced.view.plan.changes.is_empty());
    let zone: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(ext_dir.join("zone.json")).unwrap()).unwrap();
    assert!(
        zone.iter().any(|r| r["name"] == "*.example.test"
            && r["type"] == RecordType::A.as_str()
            && r["value"] == "203.0.113.7"),
        "{zone:?}"
    );
    let again = dns.sync(&plan).await.unwrap();
    assert!(again.view.plan.changes.is_empty(), "{:?}", again.view.plan);
}
