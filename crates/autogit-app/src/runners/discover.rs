//! Finding runner hosts: `autogit agent` announcements over mDNS, or an SSH scan of hosts and
//! IPv4 ranges (one `ssh-keyscan` over all), each answering host's key fingerprints and, for
//! hosts already trusted, their inventory. Trusting a host adds its keys to autogit's own
//! known_hosts. Neither needs the configuration: only how autogit reaches hosts.

use super::register::RunnerError;
use autogit_core::inventory::Inventory;
use autogit_drivers::mdns::Agent;
use autogit_drivers::remote::RemoteError;
use autogit_drivers::remote::inventory::probe;
use autogit_drivers::remote::ssh::{self, SshConfig, TrustReport, TrustedKey};
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
