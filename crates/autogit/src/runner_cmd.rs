//! `autogit runner trust|health` and `autogit compute …`: runner hosts reached through
//! `drivers::remote` (SSH with autogit's own known_hosts, or this machine for `local`).

use crate::cli::Global;
use crate::ctx::ssh_config;
use crate::exit;
use crate::ui::Ui;
use autogit_drivers::remote::ssh::trust as ssh_trust;
use serde_json::json;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// `runner trust HOST`: ssh-keyscan, fingerprints, add to the managed known_hosts.
pub fn trust(ui: &Ui, g: &Global, host: &str, replace: bool) -> u8 {
    let cfg = ssh_config(g);
    match runtime().block_on(ssh_trust(&cfg, host, replace)) {
        Ok(r) => {
            if ui.json {
                ui.print_json(&json!({
                    "host": r.host,
                    "added": r.added,
                    "known_hosts": cfg.known_hosts,
                    "keys": r.keys,
                }));
            } else {
                for k in &r.keys {
                    println!("{}  {}  {}", r.host, k.key_type, k.fingerprint);
                }
                ui.note(&format!(
                    "{} {} in {}",
                    if r.added {
                        "trusted"
                    } else {
                        "already trusted:"
                    },
                    r.host,
                    cfg.known_hosts.display()
                ));
            }
            exit::OK
        }
        Err(e) => {
            ui.error(&e.to_string());
            exit::FAILURE
        }
    }
}
