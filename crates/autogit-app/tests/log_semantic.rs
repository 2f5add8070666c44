//! `logs.semantic`: the controller's embed pass (off the ingest path) and its searches in the
//! three modes, with the real model (all-MiniLM-L6-v2 from the wheel scripts/test.sh
//! installs). Runs with `--features autogit-drivers/semantic` (scripts/test.sh); without it,
//! or without the model, the model-dependent test says "skipping" and passes.

mod support;

use autogit_app::logs::{LogController, LogError};
use autogit_core::logs::{SearchMode, enrich};
use autogit_drivers::logstore::{Line, LogStore};
use autogit_drivers::testing::minilm::model_dir_or_skip;
use std::sync::Arc;

const NOW: u64 = 2_000_000;

fn store_lines(dir: &std::path::Path, texts: &[&str]) {
    let mut store = LogStore::open(&dir.join("logs.db")).unwrap();
    let lines: Vec<Line> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| Line {
            at_ns: ((NOW - 1000) as i64 + i as i64) * 1_000_000_000,
            service: "gitlab".into(),
            enriched: enrich(t, &[]),
        })
        .collect();
    store.insert(&lines).unwrap();
}

#[test]
fn the_embed_pass_makes_paraphrases_findable() {
    let Some(model) = model_dir_or_skip() else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let settings = support::settings(
        &format!(
            "logs:\n  semantic:\n    enabled: true\n    model_dir: {}\n",
            model.display()
        ),
        "",
        data.path(),
    );
    let (_, clock) = support::bus_at(NOW);
    let logs = LogController::new(settings, Arc::new(clock));
    let mut texts: Vec<String> = (0..300)
        .map(|i| format!("Completed 200 OK in {i}ms"))
        .collect();
    texts.push("ERROR PG::ConnectionBad: could not connect to server: Connection refused".into());
    texts.push("write /var/opt/gitlab: no space left on device".into());
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    store_lines(data.path(), &refs);
    // Before the pass nothing has a vector: a paraphrase finds nothing yet.
    let f = logs
        .search_mode("database unreachable", None, 10, None)
        .unwrap();
    assert_eq!(f.mode, SearchMode::Hybrid, "hybrid is the default when on");
    assert!(f.hits.is_empty(), "{:?}", f.hits);
    // Three templates (300 lines share one), embedded in one pass; the next has nothing.
    assert_eq!(logs.embed_pass().unwrap(), 3);
    assert_eq!(logs.embed_pass().unwrap(), 0);
    let f = logs
        .search_mode("database unreachable", None, 10, None)
        .unwrap();
    assert!(f.hits[0].message.contains("ConnectionBad"), "{:#?}", f.hits);
    let f = logs
        .search_mode("disk full", Some("1h"), 1, Some(SearchMode::Semantic))
        .unwrap();
    assert_eq!(f.hits.len(), 1);
    assert!(f.hits[0].message.contains("no space left"), "{:?}", f.hits);
    let f = logs
        .search_mode("disk full", None, 10, Some(SearchMode::Lexical))
        .unwrap();
    assert!(f.hits.is_empty(), "the words are not in any line");
    // New lines are embedded by a later pass; a known template costs no model run.
    store_lines(data.path(), &["Completed 200 OK in 9999ms"]);
    assert_eq!(logs.embed_pass().unwrap(), 0);
}

#[test]
fn semantic_modes_are_refused_while_it_is_off() {
    let data = tempfile::tempdir().unwrap();
    let settings = support::settings("", "", data.path());
    let (_, clock) = support::bus_at(NOW);
    let logs = LogController::new(settings, Arc::new(clock));
    store_lines(data.path(), &["ERROR disk full"]);
    assert!(!logs.semantic());
    assert_eq!(logs.embed_pass().unwrap(), 0, "off: nothing embedded");
    let f = logs.search_mode("disk", None, 10, None).unwrap();
    assert_eq!((f.mode, f.hits.len()), (SearchMode::Lexical, 1));
    for mode in [SearchMode::Semantic, SearchMode::Hybrid] {
        let e = logs.search_mode("disk", None, 10, Some(mode)).unwrap_err();
        assert!(matches!(e, LogError::SemanticOff(_)), "{e}");
        assert!(e.to_string().contains("logs.semantic.enabled"), "{e}");
    }
}
