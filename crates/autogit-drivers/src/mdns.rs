//! LAN discovery over mDNS/DNS-SD: `autogit agent` announces `_autogit._tcp.local.` on a host,
//! `autogit runner discover` browses for it and then probes what answered over SSH (host keys
//! pinned as usual). The announcement carries no secret: the host name, its SSH port and a few
//! facts as TXT properties.

use mdns_sd::{ServiceDaemon, ServiceEvent, ServiceInfo};
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// The DNS-SD service type autogit agents announce.
pub const SERVICE: &str = "_autogit._tcp.local.";

/// A running announcement; withdrawn when dropped.
pub struct Announcement {
    daemon: ServiceDaemon,
    fullname: String,
}

impl std::fmt::Debug for Announcement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Announcement")
            .field("fullname", &self.fullname)
            .finish_non_exhaustive()
    }
}

impl Announcement {
    pub fn fullname(&self) -> &str {
        &self.fullname
    }
}

impl Drop for Announcement {
    fn drop(&mut self) {
        // Say goodbye so browsers forget the host at once, then stop the daemon's thread.
        if let Ok(rx) = self.daemon.unregister(&self.fullname) {
            let _ = rx.recv_timeout(Duration::from_secs(1));
        }
        let _ = self.daemon.shutdown();
    }
}

/// Announces this host as `instance` (its host name), with `port` (SSH) and `properties`, on
/// every non-loopback interface (`loopback: true` adds loopback, for tests on one machine).
pub fn announce(
    instance: &str,
    port: u16,
    properties: &BTreeMap<String, String>,
    loopback: bool,
) -> Result<Announcement, String> {
    let daemon = ServiceDaemon::new().map_err(|e| format!("mDNS: {e}"))?;
    if loopback {
        daemon
            .enable_interface(mdns_sd::IfKind::LoopbackV4)
            .map_err(|e| format!("mDNS: {e}"))?;
    }
    let props: HashMap<String, String> = properties.clone().into_iter().collect();
    let host = format!("{instance}.local.");
    let info = ServiceInfo::new(SERVICE, instance, &host, "", port, props)
        .map_err(|e| format!("mDNS: {e}"))?
        .enable_addr_auto();
    let fullname = info.get_fullname().to_owned();
    daemon
        .register(info)
        .map_err(|e| format!("mDNS: announcing {fullname}: {e}"))?;
    Ok(Announcement { daemon, fullname })
}

/// One agent that answered.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Agent {
    pub instance: String,
    pub host: String,
    pub addresses: Vec<Ipv4Addr>,
    pub port: u16,
    pub properties: BTreeMap<String, String>,
}

/// Browses for agents for `wait`, returning every one resolved, by instance name.
pub fn browse(wait: Duration, loopback: bool) -> Result<Vec<Agent>, String> {
    let daemon = ServiceDaemon::new().map_err(|e| format!("mDNS: {e}"))?;
    if loopback {
        daemon
            .enable_interface(mdns_sd::IfKind::LoopbackV4)
            .map_err(|e| format!("mDNS: {e}"))?;
    }
    let rx = daemon.browse(SERVICE).map_err(|e| format!("mDNS: {e}"))?;
    let deadline = Instant::now() + wait;
    let mut found: BTreeMap<String, Agent> = BTreeMap::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(ServiceEvent::ServiceResolved(info)) => {
                let instance = info
                    .get_fullname()
                    .strip_suffix(&format!(".{SERVICE}"))
                    .unwrap_or(info.get_fullname())
                    .to_owned();
                let mut addresses: Vec<Ipv4Addr> =
                    info.get_addresses_v4().into_iter().copied().collect();
                addresses.sort();
                let properties = info
                    .get_properties()
                    .iter()
                    .map(|p| (p.key().to_owned(), p.val_str().to_owned()))
                    .collect();
                found.insert(
                    instance.clone(),
                    Agent {
                        instance,
                        host: info.get_hostname().trim_end_matches('.').to_owned(),
                        addresses,
                        port: info.get_port(),
                        properties,
                    },
                );
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let _ = daemon.shutdown();
    Ok(found.into_values().collect())
}
