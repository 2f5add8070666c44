//! Shared by the API's tests: a server on loopback over a temporary data dir, with the
//! embedded default configuration, the engine socket pointed at nothing (a deploy or backup
//! started by a test fails at once instead of touching a real engine) and manual DNS.

#![allow(dead_code)]

pub mod webdriver;

use autogit_api::server::{Api, ServeOptions};
use autogit_app::access::{AccessController, NewKey};
use autogit_app::audit::AuditLog;
use autogit_app::{Bus, Settings};
use autogit_core::access::Role;
use autogit_core::load::{LoadInput, load};
use autogit_core::platform::load_platform;
use autogit_core::source::Sources;
use secrecy::ExposeSecret;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub const CONFIG: &str = "platform:\n  socket: /nonexistent/autogit-test/docker.sock\n";
pub const ENV: &str = "BASE_DOMAIN=example.test\nINGRESS_IP=192.0.2.10\nDNS_PROVIDER=manual\n";

pub fn settings(data: &Path) -> Arc<Settings> {
    settings_env(data, ENV)
}

/// [`settings`] with more `.env` lines (`KEY=value\n`...) after [`ENV`]'s.
pub fn settings_with(data: &Path, extra_env: &str) -> Arc<Settings> {
    settings_env(data, &format!("{ENV}{extra_env}"))
}

/// The settings of [`CONFIG`] with another `.env` altogether.
pub fn settings_env(data: &Path, env: &str) -> Arc<Settings> {
    let loaded = load(&LoadInput {
        file: Some(("autogit.yml", CONFIG)),
        ..Default::default()
    });
    assert!(!loaded.diagnostics.has_errors(), "{:?}", loaded.diagnostics);
    let mut sources = Sources::new();
    let mut diags = Default::default();
    let (platform, entries) = load_platform(Some((".env", env)), &[], &mut sources, &mut diags);
    let mut s = Settings::new(loaded.config, platform, data.to_owned());
    s.values = entries.into_iter().map(|(k, e)| (k, e.value)).collect();
    Arc::new(s)
}

/// A running server and a key of each role.
pub struct Server {
    pub addr: SocketAddr,
    pub viewer: String,
    pub operator: String,
    pub admin: String,
    pub api: Arc<Api>,
    pub data: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Server {
    pub fn start(options: ServeOptions) -> Server {
        Self::start_env(options, ENV)
    }

    /// A server whose `.env` has `extra_env`'s lines too.
    pub fn start_with_env(options: ServeOptions, extra_env: &str) -> Server {
        Self::start_env(options, &format!("{ENV}{extra_env}"))
    }

    /// A server on another `.env` altogether (its DNS provider, say).
    pub fn start_env(options: ServeOptions, env: &str) -> Server {
        let data = tempfile::tempdir().unwrap();
        let settings = settings_env(data.path(), env);
        settings.ensure_data_dir().unwrap();
        let clock = autogit_app::clock::system();
        let bus = Bus::new(clock.clone());
        let access = AccessController::open(&settings, clock.clone()).unwrap();
        let key = |role: Role| {
            access
                .create_key(NewKey {
                    name: format!("test-{role}"),
                    role,
                    scopes: Vec::new(),
                    ttl: None,
                })
                .unwrap()
                .secret
                .expose_secret()
                .to_owned()
        };
        let (viewer, operator, admin) = (key(Role::Viewer), key(Role::Operator), key(Role::Admin));
        let audit = AuditLog::open(&settings, clock).unwrap();
        let api = Arc::new(Api::new(settings, bus, access, audit, options).unwrap());
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let api2 = api.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async move {
                // As `autogit serve` does: events go to the state store (the event stream
                // follows it), the log and the notifiers.
                let sinks = autogit_app::sinks::Sinks::all(&api2.bus, &api2.settings);
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let bus = api2.bus.clone();
                autogit_api::server::serve(listener, api2, async {
                    let _ = stopped.await;
                })
                .await;
                sinks.finish(bus, Duration::from_secs(5)).await;
            });
        });
        let addr = addr_rx.recv().unwrap();
        Server {
            addr,
            viewer,
            operator,
            admin,
            api,
            data,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn key(&self, role: Role) -> &str {
        match role {
            Role::Viewer => &self.viewer,
            Role::Operator => &self.operator,
            Role::Admin => &self.admin,
        }
    }
}

/// Options without rate limits (the tests send many requests from one address).
pub fn unlimited() -> ServeOptions {
    ServeOptions {
        rate_per_addr: (0.0, 1.0),
        rate_per_principal: (0.0, 1.0),
        ..Default::default()
    }
}

/// A tool from PATH (or `$AUTOGIT_<NAME>`), or `None` when it is missing and the run does not
/// require tools.
pub fn tool(name: &str, env: &str) -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(p.into());
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("AUTOGIT_REQUIRE_TOOLS").is_none(),
            "{name} is required (set {env} or put it on PATH)"
        );
        eprintln!("skipping: {name} not found");
    }
    found
}
