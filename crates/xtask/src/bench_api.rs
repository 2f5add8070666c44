//! `cargo run -p xtask --release -- bench api [--secs N] [--connections N] [--autogit PATH]`
//!
//! The REST API against the spec's Python design, in one run: `GET /api/v1/services` and
//! `POST /api/v1/security/analyze` served by `autogit serve` (release build, its defaults, rate
//! limits off) and by the FastAPI app of `bench/api/app.py` on uvicorn (`--workers` = CPU count),
//! both with authentication on, over the same data: the `plan.json` that `autogit install
//! --dry-run` renders and one `state.db`, filled here through the drivers' state store.
//!
//! The load generator is this file's: `--connections` keep-alive HTTP/1.1 connections (hyper's
//! client), each sending its next request when the previous answer is read in full (closed
//! loop), for `--secs` after a warm-up; every answer's latency is recorded, any answer that is
//! not 200 counts as an error. Both sides get the same generator, requests and concurrency.
//! Prints requests per second, p50 and p99 per side and endpoint, and the ratios. Timing is
//! measured here, never asserted.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, header};
use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A benign issue comment of about 1 KiB (Markdown, code, accents): the common case, a text
/// that both filters read to the end and let through, so neither side writes a quarantine row.
pub(crate) const ANALYZE_TEXT: &str = "Thanks for the quick review! I rebased on main and re-ran the pipeline.\n\n\
## What changed\n\n\
- The mirror job now retries with exponential backoff (initial 1 s, max 60 s) instead of failing at once.\n\
- `autogit mirror sync --all` reports each repository's outcome in the summary table.\n\
- Renamed `sync_one` to `sync_repository`; the old name stays as a deprecated alias for one release.\n\n\
```rust\nlet delay = backoff.next().unwrap_or(Duration::from_secs(60));\ntokio::time::sleep(delay).await;\n```\n\n\
Zoë from the Zürich team tested it against our staging GitLab (about 240 projects) and the nightly \
sync went from 41 minutes to 12. The two failures we saw were both expired deploy tokens, which \
are now reported with the project path and a hint to rotate the token. Could you have another look \
at the error messages in `mirror_cmd.rs`? I am not sure the wording is clear enough for someone who \
has never configured a mirror before. Happy to split this into two merge requests if that is easier \
to review. Résumé of the numbers is in the attached CSV.";

pub fn bench_api(secs: u64, conns: usize, autogit: Option<PathBuf>) {
    let root = workspace_root();
    let work = root.join("target/bench-api");
    let bin = autogit.unwrap_or_else(|| {
        // A separate build, so that the binary measured is the production one (xtask turns on
        // the drivers' `testing` feature, which a shared build would carry into autogit).
        let st = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--release", "-p", "autogit"])
            .current_dir(&root)
            .status()
            .expect("cargo build --release -p autogit");
        assert!(st.success(), "cargo build --release -p autogit failed");
        root.join("target/release/autogit")
    });
    assert!(bin.exists(), "no autogit binary at {}", bin.display());
    let venv = python_venv(&root, &work);

    // Same data: one configuration, its rendered plan, one state database.
    let run = work.join("run");
    let _ = std::fs::remove_dir_all(&run);
    let data = run.join("data");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(
        run.join("autogit.yml"),
        "platform:\n  socket: /nonexistent/autogit-bench/docker.sock\n",
    )
    .unwrap();
    std::fs::write(
        run.join(".env"),
        "BASE_DOMAIN=example.test\nINGRESS_IP=192.0.2.10\nDNS_PROVIDER=manual\n",
    )
    .unwrap();
    let autogit = |args: &[&str]| {
        let mut c = Command::new(&bin);
        c.current_dir(&run)
            .env("AUTOGIT_DATA_DIR", &data)
            .args(args);
        c
    };
    let st = autogit(&["install", "--dry-run", "-q"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "autogit install --dry-run");
    let plan_path = data.join("rendered/plan.json");
    let services = fill_state(&plan_path, &data.join("state.db"));
    let out = autogit(&["api-key", "create", "bench", "--role", "viewer"])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "autogit api-key create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).expect("api-key JSON");
    let key = created["key"].as_str().expect("the key").to_owned();

    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (p_autogit, p_fastapi) = (free_port(), free_port());
    let logs = work.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let log = |name: &str| std::fs::File::create(logs.join(name)).unwrap();
    let _autogit = Proc(
        autogit(&[
            "serve",
            "--listen",
            &format!("127.0.0.1:{p_autogit}"),
            "--rate-per-addr",
            "0",
            "--rate-per-key",
            "0",
        ])
        .stdout(log("autogit.log"))
        .stderr(log("autogit.err.log"))
        .spawn()
        .expect("autogit serve"),
    );
    let _uvicorn = Proc(
        Command::new(venv.join("bin/uvicorn"))
            .args(["app:app", "--app-dir"])
            .arg(root.join("bench/api"))
            .args(["--host", "127.0.0.1", "--port", &p_fastapi.to_string()])
            .args(["--workers", &cpus.to_string(), "--no-access-log"])
            .env("BENCH_PLAN", &plan_path)
            .env("BENCH_STATE_DB", data.join("state.db"))
            .env("BENCH_QUARANTINE_DB", run.join("fastapi-quarantine.db"))
            .env("BENCH_API_KEY", &key)
            .stdout(log("uvicorn.log"))
            .stderr(log("uvicorn.err.log"))
            .spawn()
            .expect("uvicorn"),
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let analyze_body = Bytes::from(
        serde_json::to_vec(&serde_json::json!({ "text": ANALYZE_TEXT, "source": "bench" }))
            .unwrap(),
    );
    let targets = |port: u16| {
        [
            Target::new(port, Method::GET, "/api/v1/services", None, &key),
            Target::new(
                port,
                Method::POST,
                "/api/v1/security/analyze",
                Some(analyze_body.clone()),
                &key,
            ),
        ]
    };
    let (ours, theirs) = (targets(p_autogit), targets(p_fastapi));
    let results = rt.block_on(async {
        for t in ours.iter().chain(&theirs) {
            t.wait_ready(Duration::from_secs(60)).await;
        }
        // Same answers: the services lists must be equal as JSON, the verdicts the same.
        let (a, b) = (ours[0].json().await, theirs[0].json().await);
        assert_eq!(a, b, "the two services lists differ");
        let (a, b) = (ours[1].json().await, theirs[1].json().await);
        assert_eq!(a["verdict"], b["verdict"], "the verdicts differ: {a} / {b}");
        println!(
            "same data: {services} services in both lists (equal as JSON); analyze verdict `{}` on both sides",
            a["verdict"].as_str().unwrap_or("?")
        );
        let mut results = Vec::new();
        for (i, endpoint) in ["GET /api/v1/services", "POST /api/v1/security/analyze"]
            .into_iter()
            .enumerate()
        {
            let mut pair = Vec::new();
            for (side, t) in [("autogit", &ours[i]), ("FastAPI", &theirs[i])] {
                let _ = load(t, conns, Duration::from_secs(2)).await;
                let s = load(t, conns, Duration::from_secs(secs)).await;
                println!(
                    "  {endpoint:<32} {side:<8} {:>9.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  ({} errors)",
                    s.rps, s.p50_ms, s.p99_ms, s.errors
                );
                pair.push(s);
            }
            results.push((endpoint, pair));
        }
        results
    });

    println!(
        "\n== REST API, autogit serve vs FastAPI {} on uvicorn {} ({cpus} workers); {conns} connections, {secs} s per run, after a 2 s warm-up",
        pip_version(&venv, "fastapi"),
        pip_version(&venv, "uvicorn")
    );
    println!(
        "   machine: {cpus} CPU(s), {}; generator and servers share it",
        cpu_model()
    );
    println!(
        "| endpoint | autogit req/s | p50 | p99 | FastAPI req/s | p50 | p99 | req/s ratio | p99 ratio |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (endpoint, pair) in &results {
        let (a, b) = (&pair[0], &pair[1]);
        println!(
            "| `{endpoint}` | {:.0} | {:.2} ms | {:.2} ms | {:.0} | {:.2} ms | {:.2} ms | {:.1}× | {:.2} |",
            a.rps,
            a.p50_ms,
            a.p99_ms,
            b.rps,
            b.p50_ms,
            b.p99_ms,
            a.rps / b.rps,
            a.p99_ms / b.p99_ms
        );
    }
    println!("(req/s ratio: autogit / FastAPI; p99 ratio: autogit / FastAPI, below 1 is lower)");
    println!("logs: {}", logs.display());
}

pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/xtask is two levels down")
        .to_owned()
}

/// `target/bench-api/venv` with `bench/api/requirements.txt` installed from PyPI.
fn python_venv(root: &Path, work: &Path) -> PathBuf {
    let venv = work.join("venv");
    if !venv.join("bin/python").exists() {
        let st = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 -m venv (install python3 and python3-venv)");
        assert!(st.success(), "python3 -m venv {}", venv.display());
    }
    let st = Command::new(venv.join("bin/pip"))
        .args(["install", "-q", "-r"])
        .arg(root.join("bench/api/requirements.txt"))
        .status()
        .expect("pip");
    assert!(st.success(), "pip install -r bench/api/requirements.txt");
    venv
}

fn pip_version(venv: &Path, package: &str) -> String {
    let out = Command::new(venv.join("bin/pip"))
        .args(["show", package])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .unwrap_or("?")
        .to_owned()
}

pub(crate) fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// Puts every local service of the plan in the state database through the drivers' store (as
/// the daemon would): healthy, except one degraded and one failed and flagged, so that the
/// status mapping and the flag columns are exercised. Returns how many services it wrote.
fn fill_state(plan: &Path, db: &Path) -> usize {
    use autogit_core::lifecycle::State;
    let plan: serde_json::Value =
        serde_json::from_slice(&std::fs::read(plan).expect("plan.json")).expect("plan JSON");
    let store = autogit_drivers::state::Store::open(db).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = plan["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter(|s| s["placement"]["kind"] == "local")
        .filter_map(|s| s["name"].as_str())
        .collect();
    let at = 1_780_000_000;
    for (i, name) in names.iter().enumerate() {
        let to = match i {
            1 => State::Degraded,
            2 => State::Failed,
            _ => State::Healthy,
        };
        store
            .transition(name, Some(State::Deploying), to, "bench", at + i as u64)
            .unwrap_or_else(|e| panic!("{e}"));
        if i == 2 {
            store
                .set_flag(name, "restart budget exhausted (bench data)")
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    names.len()
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A server process, stopped with SIGTERM (uvicorn's master stops its workers), then SIGKILL
/// after 10 s.
pub(crate) struct Proc(pub(crate) Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) struct Target {
    port: u16,
    method: Method,
    path: &'static str,
    body: Option<Bytes>,
    /// The `Host` header: the routers of `bench ingress` tell services apart by it.
    host: String,
    auth: Option<String>,
}

pub(crate) struct Stats {
    pub(crate) rps: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) errors: u64,
}

impl Target {
    fn new(
        port: u16,
        method: Method,
        path: &'static str,
        body: Option<Bytes>,
        key: &str,
    ) -> Arc<Target> {
        Arc::new(Target {
            port,
            method,
            path,
            body,
            host: format!("127.0.0.1:{port}"),
            auth: Some(format!("Bearer {key}")),
        })
    }

    /// A request for `host` (its `Host` header) sent to loopback `port`, without credentials.
    pub(crate) fn for_host(
        port: u16,
        method: Method,
        path: &'static str,
        body: Option<Bytes>,
        host: &str,
    ) -> Arc<Target> {
        Arc::new(Target {
            port,
            method,
            path,
            body,
            host: host.to_owned(),
            auth: None,
        })
    }

    fn request(&self) -> Request<Full<Bytes>> {
        let mut b = Request::builder()
            .method(self.method.clone())
            .uri(self.path)
            .header(header::HOST, &self.host);
        if let Some(auth) = &self.auth {
            b = b.header(header::AUTHORIZATION, auth);
        }
        match &self.body {
            Some(body) => b
                .header(header::CONTENT_TYPE, "application/json")
                .body(Full::new(body.clone())),
            None => b.body(Full::new(Bytes::new())),
        }
        .expect("a valid request")
    }

    async fn connect(
        &self,
    ) -> std::io::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
        stream.set_nodelay(true)?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(conn);
        Ok(send)
    }

    /// One request on a new connection: status and body.
    pub(crate) async fn once(&self) -> std::io::Result<(u16, Bytes)> {
        let mut send = self.connect().await?;
        let resp = send
            .send_request(self.request())
            .await
            .map_err(std::io::Error::other)?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(std::io::Error::other)?;
        Ok((status, body.to_bytes()))
    }

    pub(crate) async fn wait_ready(&self, limit: Duration) {
        let start = Instant::now();
        loop {
            match self.once().await {
                Ok((200, _)) => return,
                Ok((status, body)) if start.elapsed() >= limit => panic!(
                    "port {} {}: {status} {}",
                    self.port,
                    self.path,
                    String::from_utf8_lossy(&body)
                ),
                Err(e) if start.elapsed() >= limit => {
                    panic!("port {} {}: {e}", self.port, self.path)
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    async fn json(&self) -> serde_json::Value {
        let (_, body) = self.once().await.expect("a request");
        serde_json::from_slice(&body).expect("a JSON answer")
    }
}

/// `conns` connections in a closed loop for `length`.
pub(crate) async fn load(t: &Arc<Target>, conns: usize, length: Duration) -> Stats {
    let start = Instant::now();
    let deadline = start + length;
    let tasks: Vec<_> = (0..conns)
        .map(|_| {
            let t = t.clone();
            tokio::spawn(async move {
                let mut lat: Vec<u32> = Vec::with_capacity(1 << 16);
                let mut errors = 0u64;
                'conn: while Instant::now() < deadline {
                    let Ok(mut send) = t.connect().await else {
                        errors += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    while Instant::now() < deadline {
                        if send.ready().await.is_err() {
                            continue 'conn;
                        }
                        let t0 = Instant::now();
                        let Ok(resp) = send.send_request(t.request()).await else {
                            errors += 1;
                            continue 'conn;
                        };
                        let ok = resp.status() == hyper::StatusCode::OK;
                        let body = resp.into_body().collect().await;
                        if ok && body.is_ok() {
                            lat.push(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX));
                        } else {
                            errors += 1;
                        }
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (lat, e) = task.await.expect("a load task");
        all.extend(lat);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(f64::NAN, |&us| f64::from(us) / 1000.0)
    };
    Stats {
        rps: all.len() as f64 / elapsed,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        errors,
    }
}
