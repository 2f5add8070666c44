//! Throughput per stage and end to end on 256 B, 4 KiB and 1 MiB inputs, against a raw
//! Aho-Corasick scan of the same bytes (the baseline), plus p50/p99 latency of a 4 KiB
//! end-to-end analysis.
//!
//! `cargo bench -p autogit-guard --bench guard` (add `-- --quick` style criterion flags to
//! shorten). Numbers are per core: everything runs on one thread.

use std::hint::black_box;
use std::time::{Duration, Instant};

use aho_corasick::AhoCorasick;
use autogit_guard::{Guard, GuardConfig};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// A realistic, benign prompt: prose, a little non-Latin text, an emoji sequence, code and
/// markdown. Repeated and cut (at a char boundary) to the wanted size.
const SAMPLE: &str = "Please review the following pull request description and summarize the risks. \
The change moves the runner registration into the reconcile loop, adds a retry with backoff, \
and updates the documentation in docs/runners.md. Reviewers: Zoë, Jürgen and Дмитрий 👩\u{200D}💻.\n\
```rust\nfn register(token: &str) -> Result<Runner, Error> {\n    client.post(\"/api/v4/runners\").json(&token)\n}\n```\n\
See the [design note](https://example.invalid/design) for the state machine. 日本語のメモもあります。\n";

fn input(size: usize) -> String {
    let mut s = SAMPLE.repeat(size / SAMPLE.len() + 1);
    let mut end = size;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s
}

/// The baseline: the bare cost of one Aho-Corasick pass over the bytes with a phrase list of
/// the size stage 2 uses.
fn baseline() -> AhoCorasick {
    let words = [
        "ignore",
        "disregard",
        "forget",
        "reveal",
        "system prompt",
        "instructions",
        "jailbreak",
        "<|im_start|>",
        "[inst]",
        "you are now",
    ];
    let mut phrases = Vec::new();
    for a in words {
        for b in words {
            phrases.push(format!("{a} {b}"));
        }
    }
    AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build(phrases)
        .expect("baseline automaton")
}

/// Latency percentiles of a 4 KiB analysis, and throughput per core as a ratio against the
/// baseline measured in the same run.
fn p99_report(guard: &Guard, rules_only: &Guard, ac: &AhoCorasick) {
    let text = input(4096);
    let samples = |f: &dyn Fn()| -> Vec<Duration> {
        let mut lat: Vec<Duration> = (0..3000)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect();
        lat.sort();
        lat
    };
    let pct = |lat: &[Duration], p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    let mb_s = |d: Duration| text.len() as f64 / d.as_secs_f64() / 1e6;
    let base = samples(&|| {
        black_box(ac.find_iter(black_box(text.as_str())).count());
    });
    let base_p50 = pct(&base, 0.5);
    println!(
        "baseline 4 KiB raw aho-corasick scan: p50 {base_p50:?} ({:.0} MB/s)",
        mb_s(base_p50)
    );
    for (name, g) in [
        ("end_to_end (stages 1-4)", guard),
        ("end_to_end_rules (stages 1-3)", rules_only),
    ] {
        let lat = samples(&|| {
            black_box(g.analyze(black_box(&text)));
        });
        let p50 = pct(&lat, 0.50);
        println!(
            "latency 4 KiB {name}: p50 {p50:?}  p99 {:?}  max {:?}  ->  {:.0} MB/s per core, {:.2}x the baseline's time",
            pct(&lat, 0.99),
            lat[lat.len() - 1],
            mb_s(p50),
            p50.as_secs_f64() / base_p50.as_secs_f64()
        );
    }
}

fn benches(c: &mut Criterion) {
    let guard = Guard::new(GuardConfig::default()).expect("guard");
    let rules_only = Guard::new(GuardConfig {
        enable_model: false,
        ..GuardConfig::default()
    })
    .expect("guard");
    let ac = baseline();
    p99_report(&guard, &rules_only, &ac);
    let mut group = c.benchmark_group("guard");
    for (label, size) in [("256B", 256), ("4KiB", 4096), ("1MiB", 1 << 20)] {
        let text = input(size);
        let (normalized, _) = guard.normalize(&text);
        group.throughput(Throughput::Bytes(text.len() as u64));
        if size >= 1 << 20 {
            group.sample_size(10);
        } else {
            group.sample_size(30);
        }
        group.bench_with_input(
            BenchmarkId::new("baseline_aho_corasick", label),
            &text,
            |b, t| b.iter(|| ac.find_iter(black_box(t.as_str())).count()),
        );
        group.bench_with_input(BenchmarkId::new("stage1_unicode", label), &text, |b, t| {
            b.iter(|| guard.normalize(black_box(t)))
        });
        group.bench_with_input(
            BenchmarkId::new("stage2_patterns", label),
            &normalized,
            |b, t| b.iter(|| guard.pattern_hits(black_box(t))),
        );
        group.bench_with_input(
            BenchmarkId::new("stage3_structure", label),
            &normalized,
            |b, t| b.iter(|| guard.structure_hits(black_box(t))),
        );
        group.bench_with_input(
            BenchmarkId::new("stage4_model", label),
            &normalized,
            |b, t| b.iter(|| guard.model_score(black_box(t))),
        );
        group.bench_with_input(
            BenchmarkId::new("end_to_end_rules", label),
            &text,
            |b, t| b.iter(|| rules_only.analyze(black_box(t))),
        );
        group.bench_with_input(BenchmarkId::new("end_to_end", label), &text, |b, t| {
            b.iter(|| guard.analyze(black_box(t)))
        });
    }
    group.finish();
}

criterion_group! {
    name = guard;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(guard);
