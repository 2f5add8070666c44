//! A host's inventory over [`RemoteExec`]: one round trip running
//! [`autogit_core::inventory::PROBE_SCRIPT`] with `sh -c`, parsed by
//! [`autogit_core::inventory::parse_probe`].

use super::{RemoteError, RemoteExec};
use autogit_core::inventory::{Inventory, PROBE_SCRIPT, parse_probe};

pub async fn probe<R: RemoteExec>(host: &R) -> Result<Inventory, RemoteError> {
    let argv = ["sh".to_owned(), "-c".to_owned(), PROBE_SCRIPT.to_owned()];
    let out = host.run(&argv).await?;
    let mut inv = parse_probe(&out.stdout);
    if !out.success() && !out.stdout.contains("@@end") {
        inv.problems.push(format!(
            "the probe exited with {:?}: {}",
            out.code,
            out.stderr.trim()
        ));
    }
    Ok(inv)
}
