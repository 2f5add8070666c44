//! `autogit_drivers::testing` (stand-in images, test daemons) stays out of the production
//! binary: it is behind the `testing` feature, which only dev-dependencies and xtask enable.
//! Checked with `cargo tree` on this workspace (offline, from Cargo.lock).

#![allow(clippy::disallowed_methods)]

use std::path::Path;
use std::process::Command;

/// `cargo tree -e normal,build,features -i autogit-drivers` with `args`: which features of the
/// drivers the selected packages build with, dev-dependencies left out.
fn drivers_features(args: &[&str]) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .current_dir(&root)
        .args([
            "tree",
            "--offline",
            "--locked",
            "-e",
            "normal,build,features",
        ])
        .args(["-i", "autogit-drivers"])
        .args(args)
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo tree {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

const TESTING: &str = "autogit-drivers feature \"testing\"";

#[test]
fn the_binary_is_built_without_the_testing_module() {
    // `cargo build -p autogit`, `cargo install --path crates/autogit`.
    let tree = drivers_features(&["-p", "autogit"]);
    assert!(tree.contains("autogit v"), "{tree}");
    assert!(!tree.contains(TESTING), "{tree}");
    // A plain `cargo build` in the workspace: xtask (which turns the feature on) is not a
    // default member, so feature unification does not carry it into the binary.
    let tree = drivers_features(&[]);
    assert!(!tree.contains(TESTING), "{tree}");
    // The check sees the feature where it is on.
    let tree = drivers_features(&["-p", "xtask"]);
    assert!(tree.contains(TESTING), "{tree}");
}
