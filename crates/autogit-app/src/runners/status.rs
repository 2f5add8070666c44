//! What `runner list` shows besides the configuration: each host as `runner health` last saw
//! it and each runner's registration, in words, read from the state store.

use autogit_drivers::state::Store;
use std::collections::BTreeMap;
use std::path::Path;

/// What `runner health` last saw of each host, in words (`up · 2 GPUs · 3m ago`), as of
/// `now` (unix seconds), and what to do about `host: auto`.
pub fn last_seen(data_dir: &Path, now: i64) -> BTreeMap<String, String> {
    let rows = existing(data_dir)
        .and_then(|s| s.hosts().ok())
        .unwrap_or_default();
    let auto = ("auto".to_owned(), AUTO_HOST.to_owned());
    rows.into_iter()
        .filter(|r| r.host != "auto")
        .map(|r| {
            let ago = ago(now - r.checked_at);
            let text = if r.reachable {
                let gpus = r
                    .inventory
                    .as_deref()
                    .and_then(|i| serde_json::from_str::<serde_json::Value>(i).ok())
                    .and_then(|v| v["gpus"].as_array().map(Vec::len))
                    .unwrap_or(0);
                match gpus {
                    0 => format!("up · {ago}"),
                    1 => format!("up · 1 GPU · {ago}"),
                    n => format!("up · {n} GPUs · {ago}"),
                }
            } else {
                format!("unreachable · {ago}")
            };
            (r.host, text)
        })
        .chain(std::iter::once(auto))
        .collect()
}

/// Each runner's registration, in words.
pub fn registration_states(data_dir: &Path) -> BTreeMap<String, String> {
    let Some(store) = existing(data_dir) else {
        return BTreeMap::new();
    };
    let rows = store.registrations().unwrap_or_default();
    rows.into_iter()
        .map(|r| {
            let text = if r.state == "registered" {
                format!("registered (GitLab runner {})", r.runner_id)
            } else if r.state == "discovered" {
                format!("not registered; host: auto found at {}", r.host)
            } else {
                "token created; host step failed (run `runner register` again)".to_owned()
            };
            (r.name, text)
        })
        .collect()
}

/// What `runner list` says of a `host: auto` runner's host health: which host it resolved
/// to is in its state column (`registration_states`).
pub const AUTO_HOST: &str = "host: auto: `runner discover` finds it (see STATE)";

/// The state database when one exists (never created by a read).
fn existing(data_dir: &Path) -> Option<Store> {
    let path = data_dir.join("state.db");
    path.exists().then(|| Store::open(&path).ok()).flatten()
}

/// `42s ago`, `3m ago`, `5h ago`, `2d ago`.
pub fn ago(secs: i64) -> String {
    match secs.max(0) {
        s if s < 60 => format!("{s}s ago"),
        s if s < 3600 => format!("{}m ago", s / 60),
        s if s < 86400 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ages() {
        for (s, w) in [
            (-5, "0s ago"),
            (59, "59s ago"),
            (60, "1m ago"),
            (7200, "2h ago"),
            (172_800, "2d ago"),
        ] {
            assert_eq!(super::ago(s), w);
        }
    }
}
