//! A small W3C WebDriver client for the dashboard's browser tests: `chromedriver` (Debian's
//! `chromium-driver`) driving headless Chromium, over the protocol's JSON endpoints
//! (<https://www.w3.org/TR/webdriver2/>). Only what the tests use.

#![allow(dead_code)]

use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A running chromedriver; stopped on drop together with every browser it started (they
/// share its process group), also when a test panics before quitting its session. It logs to
/// `log`, never to the test's output.
pub struct Driver {
    child: Child,
    base: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    pub fn start(chromedriver: &Path, log: &Path) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        use std::os::unix::process::CommandExt;
        let child = Command::new(chromedriver)
            .process_group(0)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .arg("--log-level=WARNING")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver { child, base }
    }

    /// A new headless Chromium session.
    pub async fn session(&self, chromium: &Path, profile: &Path) -> Session {
        let c = reqwest::Client::new();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--no-first-run", "--disable-extensions", "--window-size=1280,900",
                         format!("--user-data-dir={}", profile.display())]
            }
        }}});
        let v: Value = c
            .post(format!("{}/session", self.base))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_owned();
        Session {
            c,
            url: format!("{}/session/{id}", self.base),
        }
    }
}

/// One browser session; closed on [`Session::quit`].
pub struct Session {
    c: reqwest::Client,
    url: String,
}

/// An element in the page.
#[derive(Clone, Debug)]
pub struct Element(String);

impl Session {
    async fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        let rb = self
            .c
            .request(method.parse().unwrap(), format!("{}{path}", self.url));
        let rb = if method == "GET" || method == "DELETE" {
            rb
        } else {
            rb.json(&body)
        };
        let v: Value = rb.send().await.unwrap().json().await.unwrap();
        if let Some(e) = v["value"].get("error") {
            panic!("WebDriver {method} {path}: {e}: {}", v["value"]["message"]);
        }
        v["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", json!({ "url": url })).await;
    }

    pub async fn current_url(&self) -> String {
        self.cmd("GET", "/url", Value::Null)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        self.cmd(
            "POST",
            "/elements",
            json!({"using": "css selector", "value": css}),
        )
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|e| Element(e[ELEMENT].as_str().unwrap().to_owned()))
        .collect()
    }

    pub async fn find(&self, css: &str) -> Element {
        self.find_all(css)
            .await
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no element matches `{css}`"))
    }

    pub async fn text(&self, e: &Element) -> String {
        self.cmd("GET", &format!("/element/{}/text", e.0), Value::Null)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub async fn click(&self, e: &Element) {
        self.cmd("POST", &format!("/element/{}/click", e.0), json!({}))
            .await;
    }

    pub async fn type_into(&self, e: &Element, text: &str) {
        self.cmd(
            "POST",
            &format!("/element/{}/value", e.0),
            json!({ "text": text }),
        )
        .await;
    }

    /// Runs `script` (a function body) in the page and returns its value.
    pub async fn js(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": args}),
        )
        .await
    }

    /// Runs `script` with a callback as its last argument; returns what it passes.
    pub async fn js_async(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/async",
            json!({"script": script, "args": args}),
        )
        .await
    }

    pub async fn set_timeouts(&self, script_ms: u64) {
        self.cmd("POST", "/timeouts", json!({ "script": script_ms }))
            .await;
    }

    pub async fn window_size(&self, width: u32, height: u32) {
        self.cmd(
            "POST",
            "/window/rect",
            json!({"width": width, "height": height}),
        )
        .await;
    }

    pub async fn screenshot(&self, to: &Path) {
        use base64::Engine;
        let b64 = self.cmd("GET", "/screenshot", Value::Null).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        std::fs::write(to, png).unwrap();
    }

    pub async fn delete_cookies(&self) {
        self.cmd("DELETE", "/cookie", Value::Null).await;
    }

    pub async fn cookies(&self) -> Value {
        self.cmd("GET", "/cookie", Value::Null).await
    }

    /// Waits until `script` returns a truthy value; returns it and how long it took.
    pub async fn wait_for(&self, script: &str, timeout: Duration) -> (Value, Duration) {
        let started = Instant::now();
        loop {
            let v = self.js(script, json!([])).await;
            let truthy = !(v.is_null() || v == json!(false) || v == json!("") || v == json!(0));
            if truthy {
                return (v, started.elapsed());
            }
            assert!(
                started.elapsed() < timeout,
                "timed out after {timeout:?} waiting for: {script}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn quit(self) {
        let _ = self.c.delete(&self.url).send().await;
    }
}
