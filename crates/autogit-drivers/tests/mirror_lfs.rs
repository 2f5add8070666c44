//! LFS through the git mirror driver: source and target served over smart HTTP (`git
//! http-backend` as CGI behind a small axum server) with a fake LFS batch API and object store,
//! so `git lfs fetch --all` / `git lfs push --all` really move objects between two servers.
//! Skips without `git lfs` or `git http-backend` unless `AUTOGIT_REQUIRE_TOOLS=1`.

mod git_support;

use autogit_drivers::mirror::{Job, Options, Outcome, sync_all};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use git_support::{Work, git, refs};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

#[derive(Debug, Default)]
struct Lfs {
    root: PathBuf,
    base: String,
    /// (repository path, oid) → content.
    objects: BTreeMap<(String, String), Vec<u8>>,
    /// (method, path) of every request.
    requests: Vec<(String, String)>,
    /// The user agent of every request, in the same order.
    agents: Vec<String>,
}

type Shared = Arc<Mutex<Lfs>>;

fn lfs_json(status: u16, v: Value) -> Response {
    let mut r = (StatusCode::from_u16(status).unwrap(), v.to_string()).into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/vnd.git-lfs+json"),
    );
    r
}

async fn handle(
    State(st): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let (root, base) = {
        let mut s = st.lock().unwrap();
        s.requests.push((method.to_string(), path.clone()));
        let agent = headers
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        s.agents.push(agent);
        (s.root.clone(), s.base.clone())
    };
    if let Some((repo, rest)) = path.trim_start_matches('/').split_once("/info/lfs/") {
        if rest == "objects/batch" {
            let req: Value = serde_json::from_slice(&body).unwrap_or_default();
            let op = req["operation"].as_str().unwrap_or("");
            let s = st.lock().unwrap();
            let objects: Vec<Value> = req["objects"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|o| {
                    let oid = o["oid"].as_str().unwrap_or("").to_owned();
                    let have = s.objects.contains_key(&(repo.to_owned(), oid.clone()));
                    let href = format!("{base}/objects/{repo}/{oid}");
                    match (op, have) {
                        ("download", true) => {
                            json!({"oid": oid, "size": o["size"], "actions": {"download": {"href": href}}})
                        }
                        ("download", false) => {
                            json!({"oid": oid, "size": o["size"], "error": {"code": 404, "message": "not found"}})
                        }
                        (_, true) => json!({"oid": oid, "size": o["size"]}),
                        (_, false) => {
                            json!({"oid": oid, "size": o["size"], "actions": {"upload": {"href": href}}})
                        }
                    }
                })
                .collect();
            return lfs_json(200, json!({"transfer": "basic", "objects": objects}));
        }
        return lfs_json(404, json!({"message": "not found"}));
    }
    if let Some(rest) = path.strip_prefix("/objects/")
        && let Some((repo, oid)) = rest.rsplit_once('/')
    {
        let key = (repo.to_owned(), oid.to_owned());
        let mut s = st.lock().unwrap();
        return match method {
            Method::PUT => {
                s.objects.insert(key, body.to_vec());
                StatusCode::OK.into_response()
            }
            _ => match s.objects.get(&key) {
                Some(b) => (StatusCode::OK, b.clone()).into_response(),
                None => StatusCode::NOT_FOUND.into_response(),
            },
        };
    }
    cgi(&root, &method, &uri, &headers, body).await
}

/// Smart HTTP through `git http-backend`.
async fn cgi(root: &PathBuf, method: &Method, uri: &Uri, h: &HeaderMap, body: Bytes) -> Response {
    let header = |k: &str| {
        h.get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let mut child = tokio::process::Command::new("git")
        .arg("http-backend")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("REMOTE_USER", "tester")
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("REQUEST_METHOD", method.as_str())
        .env("PATH_INFO", uri.path())
        .env("QUERY_STRING", uri.query().unwrap_or(""))
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("GIT_PROTOCOL", header("git-protocol"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
    });
    let out = child.wait_with_output().await.unwrap();
    let text = out.stdout;
    let split = text
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| text.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((end, sep)) = split else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let head = String::from_utf8_lossy(&text[..end]).into_owned();
    let mut resp = Response::new(axum::body::Body::from(text[end + sep..].to_vec()));
    for line in head.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("status") {
            let code = v
                .split(' ')
                .next()
                .and_then(|c| c.parse().ok())
                .unwrap_or(500);
            *resp.status_mut() = StatusCode::from_u16(code).unwrap();
        } else if let (Ok(name), Ok(val)) = (
            axum::http::HeaderName::from_bytes(k.trim().as_bytes()),
            HeaderValue::from_str(v),
        ) {
            resp.headers_mut().insert(name, val);
        }
    }
    resp
}

fn have_tools() -> bool {
    let ok = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let have = ok(&["lfs", "version"]) && ok(&["help", "-a"]);
    if !have {
        assert!(
            std::env::var_os("AUTOGIT_REQUIRE_TOOLS").is_none(),
            "git and git-lfs are required (AUTOGIT_REQUIRE_TOOLS=1)"
        );
        eprintln!("skipping: git-lfs is not installed");
    }
    have
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lfs_objects_are_mirrored_between_servers() {
    if !have_tools() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repos");
    for r in ["src/big.git", "dst/big.git"] {
        let p = root.join(r);
        std::fs::create_dir_all(&p).unwrap();
        git(&p, &["init", "--bare", "--quiet", "--initial-branch=main"]);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state: Shared = Arc::new(Mutex::new(Lfs {
        root: root.clone(),
        base: base.clone(),
        ..Default::default()
    }));
    let app = axum::Router::new()
        .fallback(handle)
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    // The source: one LFS-tracked file, pushed with its object (git-lfs's pre-push hook).
    let src_url = format!("{base}/src/big.git");
    let w = Work::new(&tmp.path().join("work"), &root.join("src/big.git"));
    let wd = w.dir.clone();
    let content = "large file content\n".repeat(1000);
    let url = src_url.clone();
    tokio::task::spawn_blocking(move || {
        git(&wd, &["lfs", "install", "--local"]);
        git(&wd, &["lfs", "track", "*.bin"]);
        std::fs::write(wd.join("data.bin"), &content).unwrap();
        git(&wd, &["add", ".gitattributes", "data.bin"]);
        git(&wd, &["commit", "--quiet", "-m", "lfs"]);
        git(
            &wd,
            &[
                "-c",
                "lfs.locksverify=false",
                "push",
                "--quiet",
                &url,
                "main",
            ],
        );
    })
    .await
    .unwrap();
    let oid = {
        let s = state.lock().unwrap();
        let keys: Vec<_> = s.objects.keys().cloned().collect();
        assert_eq!(keys.len(), 1, "the source has the object: {keys:?}");
        assert_eq!(keys[0].0, "src/big.git");
        keys[0].1.clone()
    };

    let mut opts = Options::new(tmp.path().join("cache"));
    opts.retries = 0;
    opts.timeout = Duration::from_secs(60);
    opts.allow_private = true; // the LFS server is on loopback
    let job = Job {
        name: "big".into(),
        source: src_url.clone(),
        target: format!("{base}/dst/big.git"),
        source_token: None,
        target_token: None,
    };
    let r = sync_all(vec![job.clone()], &opts, None, |_| {})
        .await
        .remove(0);
    match &r.result {
        Ok(Outcome::Synced { lfs: true, .. }) => {}
        other => panic!("expected a sync with LFS: {other:?}"),
    }
    {
        let s = state.lock().unwrap();
        assert!(
            s.objects
                .contains_key(&("dst/big.git".to_owned(), oid.clone())),
            "the target has the LFS object: {:?}",
            s.objects.keys().collect::<Vec<_>>()
        );
        assert_eq!(
            s.objects[&("dst/big.git".to_owned(), oid.clone())],
            s.objects[&("src/big.git".to_owned(), oid)]
        );
    }
    let (a, b) = (src_url.clone(), format!("{base}/dst/big.git"));
    let (sr, tr) = tokio::task::spawn_blocking(move || (refs(&a), refs(&b)))
        .await
        .unwrap();
    assert_eq!(sr, tr);

    // Nothing changed: one smart-HTTP advertisement per side, read in-process
    // (`mirror/advert.rs`: its user agent, not git's), and nothing else.
    let seen = state.lock().unwrap().requests.len();
    let r = sync_all(vec![job.clone()], &opts, None, |_| {})
        .await
        .remove(0);
    assert!(matches!(r.result, Ok(Outcome::UpToDate)), "{:?}", r.result);
    {
        let s = state.lock().unwrap();
        let mut new: Vec<(String, String)> = s.requests[seen..]
            .iter()
            .zip(&s.agents[seen..])
            .map(|((m, p), a)| (format!("{m} {p}"), a.clone()))
            .collect();
        new.sort();
        let paths: Vec<&str> = new.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            ["GET /dst/big.git/info/refs", "GET /src/big.git/info/refs"],
            "{new:?}"
        );
        assert!(
            new.iter().all(|(_, a)| a.starts_with("git/autogit-")),
            "{new:?}"
        );
    }
    // A source that is not there fails the step as git's would, without a git child.
    let mut missing = job.clone();
    missing.name = "missing".into();
    missing.source = format!("{base}/src/missing.git");
    let r = sync_all(vec![missing], &opts, None, |_| {}).await.remove(0);
    let e = r.result.expect_err("a missing source").to_string();
    assert!(e.contains("git ls-remote failed"), "{e}");
}
