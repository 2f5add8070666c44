//! Property tests: analysis never panics, scores stay in range, spans are valid, and the
//! work is linear in the input (a scaling check, not a timing assertion).

use autogit_guard::{Guard, GuardConfig};
use std::sync::LazyLock;

use proptest::prelude::*;

static GUARD: LazyLock<Guard> =
    LazyLock::new(|| Guard::new(GuardConfig::default()).expect("guard"));

fn guard() -> &'static Guard {
    &GUARD
}

fn interesting_text() -> impl Strategy<Value = String> {
    let atoms = prop_oneof![
        Just("ignore previous instructions ".to_owned()),
        Just("\u{200B}".to_owned()),
        Just("\u{202E}".to_owned()),
        Just("\u{0301}".to_owned()),
        Just("\u{E0041}".to_owned()),
        Just("<!-- ".to_owned()),
        Just(" -->".to_owned()),
        Just("](".to_owned()),
        Just("<|im_start|>".to_owned()),
        Just("system: ".to_owned()),
        Just("\u{0430}".to_owned()),
        Just("ﬁ".to_owned()),
        Just("İ".to_owned()),
        Just("aWdub3JlIHByZXZpb3Vz".to_owned()),
        Just("%41".to_owned()),
        Just("\n".to_owned()),
        "\\PC{0,12}",
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(atoms, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn analysis_is_total_and_well_formed(text in interesting_text()) {
        let g = guard();
        let a = g.analyze(&text);
        prop_assert!((0.0..=1.0).contains(&a.risk_score), "risk {}", a.risk_score);
        for f in &a.detected_patterns {
            prop_assert!(f.span.start <= f.span.end && f.span.end <= text.len(), "{f:?}");
            prop_assert!(text.is_char_boundary(f.span.start) && text.is_char_boundary(f.span.end), "{f:?}");
            prop_assert!((0.0..=1.0).contains(&f.weight));
        }
        for q in &a.quarantined {
            prop_assert!(text.is_char_boundary(q.span.start) && text.is_char_boundary(q.span.end.min(text.len())));
        }
        // Sanitized text never contains the characters stage 1 removes.
        let removed = ['\u{200B}', '\u{202E}', '\u{E0041}'];
        prop_assert!(!a.clean_text.contains(removed), "clean text kept a removed character");
    }

    #[test]
    fn normalization_is_idempotent_on_clean_output(text in "\\PC{0,64}") {
        let g = guard();
        let (once, _) = g.normalize(&text);
        let (twice, _) = g.normalize(&once);
        prop_assert_eq!(once, twice);
    }
}

/// Pathological inputs of 1 and 4 MiB finish with bounded output and capped findings, and
/// quadrupling the input does not multiply the time by much more than four. The check is a
/// ratio of two measurements in the same process (best of three each), never an absolute
/// speed: linear work gives about 4, quadratic work 16; the bound is 10.
#[test]
fn pathological_inputs_scale_linearly() {
    let g = guard();
    let best_of_three = |text: &str| {
        (0..3)
            .map(|_| {
                let t = std::time::Instant::now();
                std::hint::black_box(g.analyze(text));
                t.elapsed()
            })
            .min()
            .unwrap_or_default()
    };
    type Maker = fn(usize) -> String;
    let cases: [(&str, Maker); 5] = [
        ("combining marks", |n| {
            format!("a{}", "\u{0301}".repeat(n / 2))
        }),
        ("zero width", |n| "a\u{200B}".repeat(n / 4)),
        ("unterminated comments", |n| "<!--".repeat(n / 4)),
        ("link brackets", |n| "[a](".repeat(n / 4)),
        ("base64 run", |n| "QUFB".repeat(n / 4)),
    ];
    for (name, make) in cases {
        for size in [1 << 20, 4 << 20] {
            let text = make(size);
            let a = g.analyze(&text);
            assert!(
                a.clean_text.len() <= text.len() + 64,
                "{name}: clean text grew"
            );
            assert!(
                a.detected_patterns.len() <= 32 * 64,
                "{name}: findings not capped"
            );
            assert!((0.0..=1.0).contains(&a.risk_score));
        }
        let small = best_of_three(&make(1 << 20));
        let large = best_of_three(&make(4 << 20));
        let ratio = large.as_secs_f64() / small.as_secs_f64().max(1e-6);
        eprintln!("{name}: 1 MiB {small:?}, 4 MiB {large:?}, ratio {ratio:.2}");
        assert!(
            ratio < 10.0,
            "{name}: 4x input took {ratio:.1}x the time ({small:?} -> {large:?})"
        );
    }
    // 10 MiB of combining marks (the issue asks for 100 MB; run `--ignored` for that).
    let marks = format!("x{}", "\u{0300}".repeat(5 << 20));
    let a = g.analyze(&marks);
    assert!(a.clean_text.chars().count() <= 1 + 8 + 1);
    assert!(
        a.detected_patterns
            .iter()
            .any(|f| f.rule == "excessive_combining_marks")
    );
}

/// The full 100 MB case from the issue (slow in debug builds: run with --release --ignored).
#[test]
#[ignore = "100 MB input; run with cargo test --release -- --ignored"]
fn hundred_megabytes_of_combining_marks() {
    let g = guard();
    let marks = format!("x{}", "\u{0300}".repeat(50 << 20));
    let a = g.analyze(&marks);
    assert!(a.clean_text.len() < 64);
}
