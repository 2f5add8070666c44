//! `scan_source` (the pure part of `guard scan-repo`): one line per case.

use autogit_guard::{SourceFindingKind as K, scan_source};

/// (source text, expected (kind, line, column) findings)
#[allow(clippy::type_complexity)]
const CASES: &[(&str, &[(K, usize, usize)])] = &[
    ("let x = 1;\n", &[]),
    ("s = \"abc\u{202E}def\"", &[(K::BidiControl, 1, 9)]),
    (
        "a\n  b\u{2066}c\u{2069}",
        &[(K::BidiControl, 2, 4), (K::BidiControl, 2, 6)],
    ),
    ("int p\u{0430}ss = 0;", &[(K::HomoglyphIdentifier, 1, 5)]),
    ("var \u{0441}ount = 1", &[(K::HomoglyphIdentifier, 1, 5)]),
    ("x = 1\u{200B};", &[(K::InvisibleChar, 1, 6)]),
    (
        "s = \"\u{E0041}\u{E0042}\u{E0043}\"",
        &[(K::InvisibleChar, 1, 6)],
    ),
    ("// 👨\u{200D}👩\u{200D}👧 family ❤\u{FE0F}", &[]),
    ("s = \"\\u0430bc \\u200cخواهم\"", &[]),
    ("// Привет, мир! 日本語 עברית العربية हिन्दी", &[]),
    ("abcд = 1", &[(K::MixedScriptIdentifier, 1, 1)]),
    // A leading byte-order mark is ordinary; one elsewhere is not.
    ("\u{FEFF}fn main() {}", &[]),
    ("fn\u{FEFF} main() {}", &[(K::InvisibleChar, 1, 3)]),
    ("icon = \"\u{E0B0}\"", &[]),
];

#[test]
fn source_table() {
    let mut failures = Vec::new();
    for (text, expected) in CASES {
        let got: Vec<(K, usize, usize)> = scan_source(text)
            .iter()
            .map(|f| (f.kind, f.line, f.column))
            .collect();
        if got != *expected {
            failures.push(format!("{text:?}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
