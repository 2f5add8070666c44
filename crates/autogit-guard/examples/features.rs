#![allow(clippy::disallowed_methods)] // A training tool: reads stdin and argv; the library does no I/O.
//! Stage-4 features for training (`train/train.py` runs this): reads JSONL rows with `text`
//! from standard input, writes one line per row, `index:value` pairs separated by spaces, the
//! exact features the Rust scorer computes (first window, normalized per family).
//!
//! `cargo run --release -p autogit-guard --example features -- CHAR_BUCKETS WORD_BUCKETS PAIR_BUCKETS N_MIN N_MAX`

use std::io::{BufRead, Write};

fn main() {
    let a: Vec<u64> = std::env::args()
        .skip(1)
        .map(|s| s.parse().expect("numeric arguments"))
        .collect();
    assert_eq!(a.len(), 5, "usage: features CHAR WORD PAIR N_MIN N_MAX");
    let model = autogit_guard::Classifier::untrained(
        [a[0] as u32, a[1] as u32, a[2] as u32],
        (a[3] as usize, a[4] as usize),
    )
    .expect("bucket layout");
    let stdin = std::io::stdin();
    let mut out = std::io::BufWriter::new(std::io::stdout());
    for line in stdin.lock().lines() {
        let line = line.expect("stdin");
        let row: serde_json::Value = serde_json::from_str(&line).expect("a JSON row");
        let text = row["text"].as_str().expect("a `text` field");
        let f = model.features(text);
        let cells: Vec<String> = f.iter().map(|(i, v)| format!("{i}:{v}")).collect();
        writeln!(out, "{}", cells.join(" ")).expect("stdout");
    }
}
