//! Finding runner hosts: `autogit agent` announcements over mDNS, or an SSH scan of hosts and
//! IPv4 ranges (one `ssh-keyscan` over all), each answering host's key fingerprints and, for
//! hosts already trusted, their inventory. Trusting a host adds its keys to autogit's own
//! known_hosts. Neither needs the configuration: only how autogit reaches hosts.

use super::RunnerController;
use super::register::RunnerError;
use crate::Event;
use autogit_core::inventory::Inventory;
use autogit_core::runner::{Candidate, resolve_auto};
use autogit_drivers::mdns::Agent;
use autogit_drivers::remote::RemoteError;
use autogit_drivers::remote::inventory::probe;
use autogit_drivers::remote::ssh::{self, SshConfig, TrustReport, TrustedKey};
use autogit_drivers::state::RegistrationRow;
use serde::Serialize;
use std::time::Duration;

/// One host that was looked at.
#[derive(Clone, Debug, Serialize)]
pub struct Found {
    pub host: String,
    pub ssh: bool,
    pub trusted: bool,
    pub keys: Vec<TrustedKey>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inventory: Option<Inventory>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Found {
    /// The engine it reported (`docker 27.3.1`), or `-`.
    pub fn engine(&self) -> String {
        let e = self.inventory.as_ref().and_then(|i| i.engine.as_ref());
        e.map_or("-".to_owned(), |e| {
            format!("{:?} {}", e.kind, e.version).to_lowercase()
        })
    }
}

/// One line about an `autogit agent` announcement: name, host, addresses, port, facts.
pub fn agent_line(a: &Agent) -> String {
    let facts: Vec<String> = a
        .properties
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let addrs: Vec<String> = a.addresses.iter().map(ToString::to_string).collect();
    format!(
        "mDNS: {} ({}) at {} port {} {}",
        a.instance,
        a.host,
        addrs.join(", "),
        a.port,
        facts.join(" ")
    )
}

/// What a discovery found: the mDNS announcements (when no target was given), how many
/// addresses were scanned, and every host, sorted.
#[derive(Clone, Debug, Serialize)]
pub struct Discovery {
    #[serde(skip)]
    pub agents: Vec<Agent>,
    pub scanned: usize,
    pub hosts: Vec<Found>,
}

/// `runner trust HOST`: ssh-keyscan, fingerprints, the keys added to `cfg.known_hosts`.
pub async fn trust(cfg: &SshConfig, host: &str, replace: bool) -> Result<TrustReport, RemoteError> {
    ssh::trust(cfg, host, replace).await
}

/// Announcements of `autogit agent` heard within `wait`; none is an error that says what to
/// do.
pub async fn browse(wait: Duration) -> Result<Vec<Agent>, RunnerError> {
    let agents = tokio::task::spawn_blocking(move || autogit_drivers::mdns::browse(wait, false))
        .await
        .map_err(|e| RunnerError::Failed(format!("mDNS: {e}")))??;
    if agents.is_empty() {
        return Err(RunnerError::Failed(format!(
            "no autogit agent answered over mDNS within {}s: run `autogit agent` on the GPU hosts (same LAN segment), or give hosts or IPv4 ranges to probe over SSH",
            wait.as_secs()
        )));
    }
    Ok(agents)
}

/// Discovers hosts: `targets` (names, addresses, IPv4 ranges) over SSH, or, when there are
/// none, the hosts `autogit agent` announces over mDNS within `wait`.
pub async fn discover(
    cfg: &SshConfig,
    targets: &[String],
    wait: Duration,
) -> Result<Discovery, RunnerError> {
    let mut targets = targets.to_vec();
    let mut agents = Vec::new();
    if targets.is_empty() {
        agents = browse(wait).await?;
        targets.extend(
            agents
                .iter()
                .filter_map(|a| a.addresses.first().map(ToString::to_string)),
        );
    }
    let hosts =
        autogit_core::remote::expand_targets(&targets, 1024).map_err(RunnerError::Targets)?;
    let scanned = ssh::scan(cfg, &hosts).await.map_err(|e| e.to_string())?;
    let mut set = tokio::task::JoinSet::new();
    for (host, lines) in scanned {
        let cfg = cfg.clone();
        set.spawn(async move { look_at(&cfg, host, &lines).await });
    }
    let mut found = Vec::new();
    while let Some(Ok(f)) = set.join_next().await {
        found.push(f);
    }
    for n in targets.iter().filter(|t| !t.contains('/')) {
        if !found.iter().any(|f| &f.host == n) {
            found.push(Found {
                host: n.clone(),
                ssh: false,
                trusted: false,
                keys: Vec::new(),
                inventory: None,
                error: Some("no SSH server answered".into()),
            });
        }
    }
    found.sort_by(|a, b| a.host.cmp(&b.host));
    Ok(Discovery {
        agents,
        scanned: hosts.len(),
        hosts: found,
    })
}

/// Fingerprints of a host that answered, and its inventory when it is trusted.
async fn look_at(cfg: &SshConfig, host: String, lines: &[String]) -> Found {
    let trusted = ssh::is_trusted(cfg, lines);
    let keys = ssh::fingerprints(&lines.join("\n")).await;
    let (inventory, error) = if trusted {
        match ssh::Ssh::new(cfg.clone(), &host) {
            Ok(s) => match probe(&s).await {
                Ok(i) => (Some(i), None),
                Err(e) => (None, Some(e.to_string())),
            },
            Err(e) => (None, Some(e.to_string())),
        }
    } else {
        (
            None,
            Some(format!(
                "not trusted: compare the fingerprint, then `autogit runner trust {host}`"
            )),
        )
    };
    Found {
        host,
        ssh: true,
        trusted,
        keys,
        inventory,
        error,
    }
}

/// What discovery made of one `host: auto` runner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AutoHost {
    pub runner: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Why it could not be resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl AutoHost {
    /// `runner NAME (host: auto): runs on HOST`, or why it could not be resolved.
    pub fn summary(&self) -> String {
        let what = match (&self.host, &self.error) {
            (Some(h), _) => format!("runs on {h}"),
            (None, e) => e.clone().unwrap_or_default(),
        };
        format!("runner {} (host: auto): {what}", self.runner)
    }
}

impl RunnerController {
    /// Fills in the host of every `host: auto` runner from what discovery found
    /// (`core::runner::resolve_auto` over the trusted hosts that reported an inventory, with
    /// the names their agents announced) and records it in the state store, where
    /// [`RunnerController::runners`] reads it. A runner already registered keeps its host.
    pub fn resolve_auto(&self, found: &Discovery) -> Result<Vec<AutoHost>, RunnerError> {
        let auto: Vec<_> = self
            .settings
            .config
            .all_runners()
            .filter(|r| r.host == "auto")
            .collect();
        if auto.is_empty() {
            return Ok(Vec::new());
        }
        let candidates: Vec<Candidate> = found
            .hosts
            .iter()
            .filter(|f| f.trusted)
            .filter_map(|f| {
                let inv = f.inventory.as_ref()?;
                let names = found
                    .agents
                    .iter()
                    .filter(|a| a.addresses.iter().any(|ip| ip.to_string() == f.host))
                    .flat_map(|a| [a.instance.clone(), a.host.clone()])
                    .collect();
                Some(Candidate {
                    host: f.host.clone(),
                    names,
                    gpus: inv.gpus.len(),
                    wsl2: inv.wsl2,
                })
            })
            .collect();
        let store = self.store()?;
        let rows = store.registrations().map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for r in auto {
            if let Some(row) = rows
                .iter()
                .find(|x| x.name == r.name && x.state != "discovered")
            {
                out.push(AutoHost {
                    runner: r.name.clone(),
                    host: Some(row.host.clone()),
                    error: None,
                });
                continue;
            }
            match resolve_auto(r, &candidates) {
                Ok(host) => {
                    store
                        .set_registration(&RegistrationRow {
                            name: r.name.clone(),
                            host: host.clone(),
                            runner_id: 0,
                            secret: String::new(),
                            state: "discovered".into(),
                            at: self.clock.now() as i64,
                            message: String::new(),
                        })
                        .map_err(|e| e.to_string())?;
                    self.bus.publish(Event::RunnerHostResolved {
                        runner: r.name.clone(),
                        host: host.clone(),
                    });
                    out.push(AutoHost {
                        runner: r.name.clone(),
                        host: Some(host),
                        error: None,
                    });
                }
                Err(e) => out.push(AutoHost {
                    runner: r.name.clone(),
                    host: None,
                    error: Some(e),
                }),
            }
        }
        Ok(out)
    }
}
