//! `autogit serve` as users run it: the real binary on loopback over a scratch data dir, keys
//! made with `autogit api-key create`, requests written byte by byte on a TCP socket (so
//! hostile input reaches the server exactly as sent).
//!
//! - the role × operation matrix, generated from the served OpenAPI document and checked
//!   against the operation table: no credentials → 401, a lower role → 403, the role it
//!   names → neither (and no server error);
//! - hostile input: oversized and deep bodies, invalid UTF-8, path traversal, SQL-looking
//!   strings, header injection, forged / `alg: none` / revoked tokens and keys: each gets its
//!   status and a problem+json body, the server keeps answering and nothing is written;
//! - the committed `docs/api/openapi.json` is what the binary serves;
//! - `autogit --api URL status` drives the server with the typed client.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const CONFIG: &str = "platform:\n  socket: /nonexistent/autogit-test/docker.sock\n";
const ENV: &str = "BASE_DOMAIN=example.test\nINGRESS_IP=192.0.2.10\nDNS_PROVIDER=manual\n";

struct Server {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
    keys: [String; 3],
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cli(dir: &Path, args: &[&str]) -> Run {
    run_platform(dir, args)
}

fn key(dir: &Path, role: &str) -> String {
    let r = cli(
        dir,
        &["api-key", "create", &format!("test {role}"), "--role", role],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    v["key"].as_str().unwrap().to_owned()
}

impl Server {
    fn start(dir: &Path) -> Server {
        std::fs::write(dir.join("autogit.yml"), CONFIG).unwrap();
        std::fs::write(dir.join(".env"), ENV).unwrap();
        let keys = [key(dir, "viewer"), key(dir, "operator"), key(dir, "admin")];
        let log = std::fs::File::create(dir.join("serve.log")).unwrap();
        let mut c = cmd(dir);
        c.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--rate-per-addr",
            "0",
            "--rate-per-key",
            "0",
        ])
        .stdout(Stdio::null())
        .stderr(log);
        for (k, v) in platform_env(dir) {
            c.env(k, v);
        }
        let child = c.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            let text = std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
            if let Some(rest) = text.split("listening on http://").nth(1) {
                break rest.split_whitespace().next().unwrap().parse().unwrap();
            }
            assert!(Instant::now() < deadline, "serve did not start: {text}");
            std::thread::sleep(Duration::from_millis(50));
        };
        Server {
            child,
            addr,
            dir: dir.to_owned(),
            keys,
        }
    }

    fn key(&self, role: &str) -> &str {
        match role {
            "viewer" => &self.keys[0],
            "operator" => &self.keys[1],
            _ => &self.keys[2],
        }
    }

    /// Sends `head` (request line and headers, without the blank line) and `body` as they are.
    fn raw(&self, head: &str, body: &[u8]) -> Resp {
        let mut s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut req = head.as_bytes().to_vec();
        req.extend_from_slice(
            format!(
                "\r\nhost: test\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        req.extend_from_slice(body);
        let _ = s.write_all(&req);
        read_response(&mut s, head.contains("/api/v1/events"))
    }

    fn call(&self, method: &str, path: &str, bearer: Option<&str>, body: Option<&str>) -> Resp {
        let mut head = format!("{method} {path} HTTP/1.1");
        if let Some(b) = bearer {
            head.push_str(&format!("\r\nauthorization: Bearer {b}"));
        }
        if body.is_some() {
            head.push_str("\r\ncontent-type: application/json");
        }
        self.raw(&head, body.unwrap_or("").as_bytes())
    }
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    /// An RFC 9457 problem with this status.
    fn assert_problem(&self, status: u16, what: &str) {
        assert_eq!(self.status, status, "{what}: {}", self.body);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{what}"
        );
        let p = self.json();
        assert_eq!(p["status"], status, "{what}");
        assert!(
            p["type"]
                .as_str()
                .unwrap()
                .starts_with("urn:autogit:problem:"),
            "{what}"
        );
        assert!(!p["detail"].as_str().unwrap().is_empty(), "{what}");
    }
}

fn read_response(s: &mut TcpStream, stream: bool) -> Resp {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if stream && buf.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect::<Vec<_>>();
    let body = if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A body the operation accepts (the matrix tests roles, not validation).
fn sample_body(op: &str) -> Option<&'static str> {
    Some(match op {
        "services.deploy" => r#"{"wait_seconds": 0}"#,
        "dns.create" => r#"{"name": "nas.example.test", "type": "A", "value": "192.0.2.20"}"#,
        "security.analyze" => r#"{"text": "hello", "quarantine": false}"#,
        "mirrors.sync" => r#"{}"#,
        "compute.submit" => r#"{"image": "busybox:1.36", "vram": "1G"}"#,
        "backups.restore" => r#"{"confirm": "nothing"}"#,
        "keys.create" => r#"{"name": "matrix", "role": "viewer"}"#,
        "auth.token" => r#"{}"#,
        "tls.renew" => r#"{"force": false}"#,
        "auth.revoke" => r#"{"token_id": "nothing"}"#,
        _ => return None,
    })
}

fn fill(path: &str) -> String {
    path.replace("{service}", "gitlab")
        .replace("{id}", "q-20260101-001")
        .replace("{name}", "nas.example.test")
        .replace("{type}", "A")
        .replace("{prefix}", "aaaaaaaa")
}

const RANK: [&str; 3] = ["viewer", "operator", "admin"];

#[test]
fn every_operation_enforces_its_role() {
    let d = tempfile::tempdir().unwrap();
    let s = Server::start(d.path());
    let doc = s.call("GET", "/api/v1/openapi.json", None, None).json();
    // The document and the operation table name the same operations.
    let table: Vec<_> = autogit_api::ops::all();
    let mut seen = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            seen += 1;
            let id = op["operationId"].as_str().unwrap();
            let info = table
                .iter()
                .find(|i| i.id == id)
                .unwrap_or_else(|| panic!("{id} is served but not in the operation table"));
            assert_eq!(info.path, path);
            assert_eq!(info.verb.as_str(), method.to_ascii_uppercase());
            let security = &op["security"][0];
            let role = security["bearer"][0].as_str();
            match info.access {
                autogit_api::op::Access::Public => assert!(role.is_none(), "{id}"),
                autogit_api::op::Access::Role(r) => {
                    assert_eq!(
                        role,
                        Some(r.as_str()),
                        "{id}: the document must name its role"
                    )
                }
            }
            let url = fill(path);
            let m = method.to_ascii_uppercase();
            let body = sample_body(id);
            if let Some(role) = role {
                // No credentials.
                s.call(&m, &url, None, body).assert_problem(401, id);
                // Every lower role.
                let rank = RANK.iter().position(|r| *r == role).unwrap();
                for lower in &RANK[..rank] {
                    s.call(&m, &url, Some(s.key(lower)), body)
                        .assert_problem(403, &format!("{id} as {lower}"));
                }
                // Its own role: past the gate.
                let r = s.call(&m, &url, Some(s.key(role)), body);
                // No engine here for a container's log (503: the engine cannot be reached).
                assert!(
                    !matches!(r.status, 401 | 403) && (r.status < 500 || id == "services.logs"),
                    "{id} as {role}: {} {}",
                    r.status,
                    r.body
                );
            }
        }
    }
    assert_eq!(
        seen,
        table.len(),
        "every operation of the table is in the document"
    );
}

#[test]
fn hostile_input_gets_a_problem_and_writes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let s = Server::start(d.path());
    let admin = s.key("admin").to_owned();
    // A token to forge from, issued before the snapshot (issuing one is audited).
    let token = s
        .call("POST", "/api/v1/auth/token", Some(&admin), Some("{}"))
        .json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let snapshot = || {
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        let mut stack = vec![s.dir.join("data")];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap().flatten() {
                let p = e.path();
                let name = p.strip_prefix(&s.dir).unwrap().display().to_string();
                // Denials are audited by design; SQLite's side files change on reads.
                if name.contains("audit") || name.ends_with("-wal") || name.ends_with("-shm") {
                    continue;
                }
                if p.is_dir() {
                    stack.push(p);
                } else {
                    files.push((name, std::fs::read(&p).unwrap()));
                }
            }
        }
        files.sort();
        files
    };
    let before = snapshot();

    let big = format!(r#"{{"text": "{}"}}"#, "a".repeat(2 << 20));
    s.call("POST", "/api/v1/security/analyze", Some(&admin), Some(&big))
        .assert_problem(413, "oversized body");
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    s.call(
        "POST",
        "/api/v1/security/analyze",
        Some(&admin),
        Some(&deep),
    )
    .assert_problem(400, "deep JSON");
    let deep_obj = format!("{}1{}", r#"{"text":"#.repeat(5_000), "}".repeat(5_000));
    let r = s.call(
        "POST",
        "/api/v1/security/analyze",
        Some(&admin),
        Some(&deep_obj),
    );
    assert!(matches!(r.status, 400 | 422), "deep object: {}", r.status);
    let r = s.raw(
        &format!("POST /api/v1/security/analyze HTTP/1.1\r\nauthorization: Bearer {admin}\r\ncontent-type: application/json"),
        b"{\"text\": \"\xff\xfe broken\"}",
    );
    r.assert_problem(400, "invalid UTF-8");
    s.call(
        "POST",
        "/api/v1/security/analyze",
        Some(&admin),
        Some(r#"["text"]"#),
    )
    .assert_problem(422, "an array for an object");
    s.call(
        "POST",
        "/api/v1/security/analyze",
        Some(&admin),
        Some(r#"{"text": "x", "extra": 1}"#),
    )
    .assert_problem(422, "unknown field");
    let r = s.raw(
        &format!("POST /api/v1/security/analyze HTTP/1.1\r\nauthorization: Bearer {admin}\r\ncontent-type: text/plain"),
        b"hello",
    );
    r.assert_problem(415, "wrong content type");
    for path in [
        "/api/v1/services/..%2F..%2Fetc%2Fpasswd",
        "/api/v1/services/%2e%2e",
        "/api/v1/security/quarantine/..%2F..%2Fstate.db",
        "/api/v1/compute/jobs/'%20OR%201=1%20--",
        "/api/v1/../../etc/passwd",
    ] {
        s.call("GET", path, Some(&admin), None)
            .assert_problem(404, &format!("traversal {path}"));
    }
    let r = s.call(
        "GET",
        "/api/v1/state/transitions?service=%27%20OR%201%3D1%3B%20DROP%20TABLE%20transitions%3B%20--",
        Some(&admin),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), serde_json::json!([]));
    // Header injection: an id that is not a plain token is replaced, never echoed.
    let r = s.raw(
        &format!("GET /api/v1/services HTTP/1.1\r\nauthorization: Bearer {admin}\r\nx-request-id: <script>alert(1)</script>"),
        b"",
    );
    assert_eq!(r.status, 200);
    assert!(!r.header("x-request-id").unwrap().contains('<'));
    // A line break inside a header value is refused by the HTTP parser.
    let r = s.raw(
        &format!("GET /api/v1/services HTTP/1.1\r\nauthorization: Bearer {admin}\r\nx-request-id: a\rset-cookie: x=1"),
        b"",
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.header("set-cookie").is_none());
    // Credentials: another scheme, garbage, forged and alg-none tokens.
    let r = s.raw(
        "GET /api/v1/services HTTP/1.1\r\nauthorization: Basic YWRtaW46YWRtaW4=",
        b"",
    );
    r.assert_problem(401, "basic auth");
    s.call("GET", "/api/v1/services", Some("agk_aaaaaaaa_bbbb"), None)
        .assert_problem(401, "malformed key");
    let mut forged = token.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    s.call("GET", "/api/v1/services", Some(&forged), None)
        .assert_problem(401, "forged signature");
    let parts: Vec<&str> = token.split('.').collect();
    let none_header = data_encoding::BASE64URL_NOPAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let alg_none = format!("{none_header}.{}.", parts[1]);
    s.call("GET", "/api/v1/services", Some(&alg_none), None)
        .assert_problem(401, "alg none");
    let hs = data_encoding::BASE64URL_NOPAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let hs256 = format!("{hs}.{}.{}", parts[1], parts[2]);
    s.call("GET", "/api/v1/services", Some(&hs256), None)
        .assert_problem(401, "algorithm confusion");
    // Nothing above wrote anything.
    assert!(
        before == snapshot(),
        "a refused request changed the data dir"
    );
    // The server still answers.
    assert_eq!(s.call("GET", "/healthz", None, None).status, 200);

    // Revocation: a revoked token replayed, a revoked key.
    let t2 = s
        .call("POST", "/api/v1/auth/token", Some(&admin), Some("{}"))
        .json();
    let t2_token = t2["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        s.call("GET", "/api/v1/services", Some(&t2_token), None)
            .status,
        200
    );
    let body = format!(r#"{{"token_id": "{}"}}"#, t2["token_id"].as_str().unwrap());
    assert_eq!(
        s.call("POST", "/api/v1/auth/revoke", Some(&admin), Some(&body))
            .status,
        200
    );
    s.call("GET", "/api/v1/services", Some(&t2_token), None)
        .assert_problem(401, "revoked token replayed");
    let viewer = s.key("viewer").to_owned();
    let list = s
        .call("GET", "/api/v1/auth/keys", Some(&admin), None)
        .json();
    let prefix = list
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["role"] == "viewer")
        .unwrap()["prefix"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        s.call(
            "DELETE",
            &format!("/api/v1/auth/keys/{prefix}"),
            Some(&admin),
            None
        )
        .status,
        200
    );
    s.call("GET", "/api/v1/services", Some(&viewer), None)
        .assert_problem(401, "revoked key");
    // An admin cannot revoke the key it is using.
    let me = list
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["role"] == "admin")
        .unwrap()["prefix"]
        .as_str()
        .unwrap()
        .to_owned();
    s.call(
        "DELETE",
        &format!("/api/v1/auth/keys/{me}"),
        Some(&admin),
        None,
    )
    .assert_problem(409, "self revocation");

    // The denials and changes are in the audit log, and its chain holds.
    let audit = s
        .call("GET", "/api/v1/audit?limit=500", Some(&admin), None)
        .json();
    let actions: Vec<(&str, &str)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap(),
                r["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        actions.contains(&("services.list", "denied")),
        "{actions:?}"
    );
    assert!(actions.contains(&("auth.revoke", "ok")), "{actions:?}");
    assert!(actions.contains(&("keys.revoke", "ok")), "{actions:?}");
    let v = cli(&s.dir, &["audit", "verify"]);
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
}

#[test]
fn the_committed_openapi_document_is_the_served_one() {
    let d = tempfile::tempdir().unwrap();
    let r = run(d.path(), &["serve", "--print-openapi"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let committed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/api/openapi.json"),
    )
    .unwrap();
    assert!(
        r.stdout == committed,
        "docs/api/openapi.json is stale: run `autogit serve --print-openapi > docs/api/openapi.json`"
    );
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
}

#[test]
fn the_cli_drives_a_remote_server() {
    let d = tempfile::tempdir().unwrap();
    let s = Server::start(d.path());
    let url = format!("http://{}", s.addr);
    let other = tempfile::tempdir().unwrap();
    let r = run_env(
        other.path(),
        &["--api", &url, "status"],
        &[("AUTOGIT_API_KEY", s.key("viewer"))],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("gitlab") && r.stdout.contains("unknown"),
        "{}",
        r.stdout
    );
    let r = run_env(
        other.path(),
        &["--api", &url, "--output", "json", "status", "gitlab"],
        &[("AUTOGIT_API_KEY", s.key("viewer"))],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["services"][0]["name"], "gitlab");
    let r = run_env(
        other.path(),
        &["--api", &url, "status"],
        &[("AUTOGIT_API_KEY", "agk_aaaaaaaa_nope")],
    );
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("401"), "{}", r.stderr);
    assert!(
        !r.stderr.contains("agk_aaaaaaaa_nope"),
        "the key is never printed"
    );
}
