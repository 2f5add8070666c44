//! Architecture invariant: autogit-core does no I/O. `clippy.toml` refuses the std APIs; this
//! test refuses I/O crates in the dependency list and I/O paths in the source.

#![allow(clippy::disallowed_methods)] // tests read fixtures; the no-I/O rule is for the library

const ALLOWED_DEPS: &[&str] = &[
    "saphyr-parser",
    "serde",
    "serde_json",
    "thiserror",
    "strsim",
    "croner",
    // Without its `std` feature: no clock, no system time zone (clippy.toml refuses `now`).
    "jiff",
    // Regular expressions (`logs.scrub`): matching only, no I/O.
    "regex",
];
const FORBIDDEN_IN_SOURCE: &[&str] = &[
    "std::fs",
    "std::net::Tcp",
    "std::net::Udp",
    "std::process",
    "std::env::var",
    "tokio",
    "reqwest",
    "bollard",
    "rusqlite",
    "SystemTime::now",
    "Instant::now",
    "Timestamp::now",
    "Zoned::now",
];

#[test]
fn core_depends_only_on_pure_crates() {
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .unwrap()
        .split("\n[")
        .next()
        .unwrap();
    for line in deps
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let name = line.split(['=', '.', ' ']).next().unwrap();
        assert!(
            ALLOWED_DEPS.contains(&name),
            "autogit-core must stay pure; `{name}` is not on the allow-list {ALLOWED_DEPS:?}"
        );
    }
}

#[test]
fn core_source_names_no_io_api() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            for bad in FORBIDDEN_IN_SOURCE {
                assert!(
                    !text.contains(bad),
                    "{} mentions `{bad}`: core does no I/O",
                    path.display()
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 10, "expected the core sources, found {checked}");
}
