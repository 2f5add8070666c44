//! The log store's configuration (`logs:` in autogit.yml): the retention the daemon trims to
//! and the extra scrub patterns, applied before anything is stored.

mod support;

use autogit_app::logs::LogController;
use autogit_core::logs::enrich;
use autogit_drivers::engine::memory::MemoryEngine;
use autogit_drivers::logstore::{Line, LogStore};
use std::sync::Arc;
use std::time::Duration;

const NOW: u64 = 2_000_000;

#[tokio::test]
async fn configured_retention_and_scrub_patterns_apply() {
    let data = tempfile::tempdir().unwrap();
    let settings = support::settings(
        "logs:\n  retention: 1h\n  max_lines: 1000\n  scrub: ['cust-[0-9]{6}']\n",
        "",
        data.path(),
    );
    let (_, clock) = support::bus_at(NOW);
    let logs = LogController::new(settings, Arc::new(clock));
    assert_eq!(logs.retention().max_age, Duration::from_secs(3600));
    assert_eq!(logs.retention().max_lines, 1000);

    // Two lines already stored: one two hours old, one a minute old.
    {
        let mut store = LogStore::open(&data.path().join("logs.db")).unwrap();
        let line = |ago: u64, text: &str| Line {
            at_ns: ((NOW - ago) as i64) * 1_000_000_000,
            service: "gitlab".into(),
            enriched: enrich(text, &[]),
        };
        store
            .insert(&[
                line(7200, "INFO two hours ago"),
                line(60, "INFO a minute ago"),
            ])
            .unwrap();
    }
    // What the daemon records (here: a transition whose reason names a customer number) is
    // stored by the next pass, with the configured pattern scrubbed.
    {
        let state = autogit_drivers::state::Store::open(&data.path().join("state.db")).unwrap();
        state
            .transition(
                "gitlab",
                None,
                autogit_core::lifecycle::State::Failed,
                "customer cust-123456 lost the disk",
                NOW - 10,
            )
            .unwrap();
    }
    let engine = MemoryEngine::new(&[]);
    logs.follow_pass(&engine).await.unwrap();
    let found = logs.search("service:gitlab", None, 10).unwrap();
    let texts: Vec<&str> = found.hits.iter().map(|h| h.message.as_str()).collect();
    assert!(
        texts.iter().any(|t| t.contains("a minute ago")),
        "{texts:?}"
    );
    assert!(
        !texts.iter().any(|t| t.contains("two hours ago")),
        "older than logs.retention: trimmed: {texts:?}"
    );
    let failed = logs.search("service:autogit cust", None, 10).unwrap();
    assert!(failed.hits.is_empty(), "{:?}", failed.hits);
    let failed = logs.search("service:autogit lost", None, 10).unwrap();
    assert_eq!(failed.hits.len(), 1, "{:?}", failed.hits);
    assert!(
        failed.hits[0].message.contains("<redacted>"),
        "{:?}",
        failed.hits
    );
    // In no file of the store.
    for f in std::fs::read_dir(data.path()).unwrap() {
        let p = f.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("logs.db")
        {
            let bytes = std::fs::read(&p).unwrap();
            assert!(
                !bytes.windows(11).any(|w| w == b"cust-123456"),
                "{} holds the customer number",
                p.display()
            );
        }
    }
}
