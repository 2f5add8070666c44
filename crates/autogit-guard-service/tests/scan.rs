//! `scan-repo` over a small repository written to a temporary directory.

use autogit_guard_service::scan::{scan_repo, to_sarif, to_text};

#[test]
fn reports_trojan_source_invisible_chars_and_homoglyphs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    std::fs::create_dir_all(root.join("src")).expect("mkdir");
    std::fs::create_dir_all(root.join("target")).expect("mkdir");
    // Trojan Source "commenting-out" example (RLO + isolates).
    std::fs::write(
        root.join("src/auth.rs"),
        "fn main() {\n    let access_level = \"user\";\n    if access_level != \"user\u{202E} \u{2066}// Check if admin\u{2069} \u{2066}\" {\n    }\n}\n",
    )
    .expect("write");
    std::fs::write(
        root.join("src/zw.py"),
        "def f():\n    x = 1\u{200B}\n    return x\n",
    )
    .expect("write");
    std::fs::write(
        root.join("src/login.js"),
        "const p\u{0430}ssword = 1;\nconst password = 2;\n",
    )
    .expect("write");
    std::fs::write(
        root.join("src/ok.md"),
        "Emoji 👨\u{200D}👩\u{200D}👧 and Русский текст and 日本語\n",
    )
    .expect("write");
    std::fs::write(root.join("target/ignored.rs"), "\u{202E}").expect("write");
    std::fs::write(root.join(".gitignore"), "target/\n").expect("write");
    std::fs::write(root.join("logo.bin"), [0u8, 1, 2, 0xE2, 0x80, 0xAE]).expect("write");

    let report = scan_repo(root).expect("scan");
    assert!(report.has_errors());
    assert_eq!(report.files_skipped, 1, "binary file skipped");
    let text = to_text(&report);
    let expected = [
        "src/auth.rs:3:29: error[bidi-control]: bidirectional control U+202E RIGHT-TO-LEFT OVERRIDE",
        "src/auth.rs:3:31: error[bidi-control]: bidirectional control U+2066 LEFT-TO-RIGHT ISOLATE",
        "src/login.js:1:7: error[homoglyph-identifier]: identifier `p\u{0430}ssword` contains look-alike letters: U+0430 looks like 'a'",
        "src/zw.py:2:10: error[invisible-char]: zero_width_space: U+200B ZERO WIDTH SPACE",
    ];
    for line in expected {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(!text.contains("ok.md"), "benign file flagged:\n{text}");
    assert!(!text.contains("target/"), "ignored file scanned:\n{text}");

    let sarif = to_sarif(&report);
    assert_eq!(sarif["version"], "2.1.0");
    let results = sarif["runs"][0]["results"].as_array().expect("results");
    assert_eq!(results.len(), report.findings.len());
    assert_eq!(
        results[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "src/auth.rs"
    );
    assert_eq!(
        results[0]["locations"][0]["physicalLocation"]["region"]["startLine"],
        3
    );
}

#[test]
fn clean_repository_has_no_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("main.rs"),
        "fn main() { println!(\"héllo wörld\"); }\n",
    )
    .expect("write");
    let report = scan_repo(dir.path()).expect("scan");
    assert_eq!(report.files_scanned, 1);
    assert!(!report.has_errors(), "{report:?}");
}
