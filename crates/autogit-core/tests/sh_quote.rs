//! `sh_join` against a real `sh`: hostile arguments come back byte for byte.

#![allow(clippy::disallowed_types)] // the test runs `sh`; the no-I/O rule is for the library

use autogit_core::remote::sh_join;
use proptest::prelude::*;
use std::process::Command;

/// Runs `sh -c "<joined> "` with a `printf '%s\0'` prefix and returns the arguments it saw.
fn through_sh(args: &[String]) -> Vec<String> {
    let mut argv = vec!["printf".to_owned(), "%s\\0".to_owned()];
    argv.extend(args.iter().cloned());
    let out = Command::new("sh")
        .arg("-c")
        .arg(sh_join(&argv))
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut got: Vec<String> = text.split('\0').map(str::to_owned).collect();
    got.pop(); // after the last NUL
    got
}

fn hostile() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "'", "\"", "$(id)", "`id`", "\n", ";", "-", "--", "&&", "|", "\\", "$HOME", "*", "~", " ",
        "\t", "=", "!", "#", "{a,b}", "é", "a", "${x:-y}", ">", "<", "(", ")",
    ]);
    prop::collection::vec(pieces, 0..8).prop_map(|v| v.concat())
}

#[test]
fn fixed_hostile_arguments_survive_sh() {
    let args: Vec<String> = [
        "",
        "'",
        "''",
        "a'b",
        "$(touch /tmp/pwned)",
        "`id`",
        "x\ny",
        ";rm -rf /",
        "-n",
        "-e",
        "--help",
        "=ls",
        "~root",
        "*",
        "a\\",
        "\\'",
        "!!",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    assert_eq!(through_sh(&args), args);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn hostile_arguments_round_trip_through_sh(args in prop::collection::vec(hostile(), 1..5)) {
        prop_assert_eq!(through_sh(&args), args);
    }
}
