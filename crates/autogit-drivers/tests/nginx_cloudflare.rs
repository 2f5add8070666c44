//! Cloudflare's proxy in front of the real nginx (Debian's, as `crates/autogit/tests/ingress.rs`
//! uses): the configuration autogit renders for CLOUDFLARE_PROXIED (`set_real_ip_from` each of
//! Cloudflare's ranges, `real_ip_header CF-Connecting-IP`) must make nginx believe a
//! `CF-Connecting-IP` from Cloudflare's edge and ignore one from anyone else, so that the rate
//! limit counts real clients.
//!
//! nginx and curl run in a private network namespace (`unshare --net`) where the loopback
//! carries an address inside Cloudflare's 173.245.48.0/20, one outside every range, and the
//! server's: the client picks its source address with `curl --interface`. Nothing on the host's
//! network changes. Without nginx, unshare or the privilege to create a namespace the test says
//! "skipping" and passes, unless `AUTOGIT_REQUIRE_TOOLS` is set.

mod support;

use std::process::Command;
use support::skip;

const CONFIG: &str = "platform:\n  ingress: nginx\n";
const ENV: &str = "BASE_DOMAIN=example.test\nSERVICES_ENABLED=gitlab,grafana\nDNS_PROVIDER=cloudflare\nCLOUDFLARE_API_TOKEN=t\nCLOUDFLARE_PROXIED=grafana\n";

/// The nginx configuration `autogit install` renders for [`CONFIG`] and [`ENV`].
fn rendered() -> String {
    autogit_core::render::nginx(&support::plan_of(CONFIG, ENV))
}

#[test]
fn cf_connecting_ip_is_believed_from_cloudflare_only_and_rate_limits_per_real_client() {
    let ok = |c: &str| {
        Command::new(c)
            .arg(if c == "nginx" { "-v" } else { "--version" })
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !ok("nginx") || !ok("unshare") || !ok("curl") {
        return skip("nginx, unshare and curl");
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    // The rendered file is included in `http {}` (as the image's conf.d is); beside it, a
    // server that answers with the client address nginx believes (`/`), and a file limited to
    // one request per minute per address (`/limited`; the rendered zone's 100 r/s is too fast
    // to see in a test, and `return` runs before limit_req would).
    let conf = format!(
        "daemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n\
         access_log off;\nclient_body_temp_path {d}/t1;\nproxy_temp_path {d}/t2;\n\
         fastcgi_temp_path {d}/t3;\nuwsgi_temp_path {d}/t4;\nscgi_temp_path {d}/t5;\n\
         include {d}/autogit.conf;\n\
         limit_req_zone $binary_remote_addr zone=slow:1m rate=1r/m;\n\
         server {{\n listen 198.51.100.1:8080;\n location / {{\n  return 200 \"$remote_addr\\n\";\n }}\n\
         location /limited {{\n  limit_req zone=slow nodelay;\n  root {d}/www;\n }}\n}}\n}}\n"
    );
    std::fs::write(dir.path().join("autogit.conf"), rendered()).unwrap();
    std::fs::create_dir(dir.path().join("www")).unwrap();
    std::fs::write(dir.path().join("www/limited"), "ok\n").unwrap();
    std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
    let script = format!(
        r#"set -e
ip link set lo up
ip addr add 173.245.48.1/32 dev lo
ip addr add 203.0.113.9/32 dev lo
ip addr add 198.51.100.1/32 dev lo
nginx -t -c {d}/nginx.conf 2>&1 | tail -1
nginx -c {d}/nginx.conf &
pid=$!
for i in $(seq 50); do curl -s -o /dev/null --interface 198.51.100.1 http://198.51.100.1:8080/ && break; sleep 0.1; done
ask() {{ curl -s -o /dev/null -w "%{{http_code}}" --interface "$1" -H "CF-Connecting-IP: $2" http://198.51.100.1:8080/limited; echo " $1 $2"; }}
echo "edge: $(curl -s --interface 173.245.48.1 -H 'CF-Connecting-IP: 192.0.2.55' http://198.51.100.1:8080/)"
echo "forged: $(curl -s --interface 203.0.113.9 -H 'CF-Connecting-IP: 192.0.2.66' http://198.51.100.1:8080/)"
ask 173.245.48.1 192.0.2.55
ask 173.245.48.1 192.0.2.55
ask 173.245.48.1 192.0.2.77
kill $pid
wait $pid || true
"#
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
    assert!(out.status.success(), "{text}\n{err}");
    assert!(text.contains("test is successful"), "{text}\n{err}");
    // From Cloudflare's edge the header is the client; from elsewhere it is ignored.
    assert!(text.contains("edge: 192.0.2.55\n"), "{text}\n{err}");
    assert!(text.contains("forged: 203.0.113.9\n"), "{text}\n{err}");
    // The rate limit counts the real client: 192.0.2.55's second request this minute is
    // refused (429); 192.0.2.77, behind the same edge address, still gets through (200).
    assert!(
        text.contains("200 173.245.48.1 192.0.2.55\n429 173.245.48.1 192.0.2.55\n"),
        "{text}\n{err}"
    );
    assert!(
        text.contains("200 173.245.48.1 192.0.2.77\n"),
        "{text}\n{err}"
    );
}
