//! schemathesis (from PyPI; `scripts/test.sh` installs it) against the served OpenAPI
//! document: every check, every phase (examples, coverage, fuzzing, stateful links), with an
//! admin key, on a server over a temporary data dir. Zero failures.

mod support;

use support::{Server, tool, unlimited};

#[test]
fn schemathesis_finds_nothing() {
    let Some(st) = tool("st", "AUTOGIT_SCHEMATHESIS") else {
        return;
    };
    let server = Server::start(unlimited());
    let report = server.data.path().join("st-report");
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemathesis.toml");
    // Its cache (`.schemathesis/`) goes to the temporary dir, not the source tree.
    let run = || {
        std::process::Command::new(&st)
            .current_dir(server.data.path())
            .arg("--config-file")
            .arg(config)
            .arg("run")
            .arg(server.url("/api/v1/openapi.json"))
            .args(["--checks", "all"])
            .args(["--max-examples", "30"])
            .args(["--workers", "2"])
            .args(["--request-timeout", "30"])
            .arg("--header")
            .arg(format!("Authorization: Bearer {}", server.admin))
            .arg("--report-dir")
            .arg(&report)
            .args(["--report", "junit"])
            .output()
            .expect("schemathesis runs")
    };
    let mut out = run();
    // CPython 3.11's AST constructor can fail with a SystemError when Hypothesis describes a
    // lambda deep in its own recursion (python/cpython#106905): a crash of the test generator
    // for one operation, not a finding about the API. Seen once in CI; then run it again once.
    // A real problem (a failed check) is never retried.
    if !out.status.success()
        && String::from_utf8_lossy(&out.stdout).contains("AST constructor recursion depth mismatch")
        && !String::from_utf8_lossy(&out.stdout).contains("FAILURES")
    {
        eprintln!(
            "schemathesis crashed on CPython's AST bug (python/cpython#106905); running it again"
        );
        out = run();
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{stdout}\n{stderr}"
    );
    // It really tested something.
    assert!(
        stdout.contains("passed") || stdout.contains("Passed"),
        "{stdout}"
    );
}
