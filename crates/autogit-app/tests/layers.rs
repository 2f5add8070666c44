//! The layers depend one way only: the binary on the API server and the application layer, the
//! API server (a shell like the CLI) on the application layer, the application layer on the
//! drivers and core, the drivers on core, core on neither (`cargo tree -p autogit` shows
//! the same). Read from each crate's Cargo.toml, so a backwards dependency fails here.

use std::path::Path;

fn deps(krate: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(krate)
        .join("Cargo.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    // Only [dependencies]: dev-dependencies may reach further (test support).
    let mut out = Vec::new();
    let mut in_deps = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            in_deps = t == "[dependencies]";
            continue;
        }
        if in_deps && let Some((name, _)) = t.split_once('=') {
            let name = name.trim();
            if name.starts_with("autogit") {
                out.push(name.split('.').next().unwrap_or(name).to_owned());
            }
        }
    }
    out
}

#[test]
fn dependencies_point_down_only() {
    let allowed: [(&str, &[&str]); 5] = [
        ("autogit-core", &[]),
        ("autogit-drivers", &["autogit-core"]),
        (
            "autogit-app",
            &[
                "autogit-core",
                "autogit-drivers",
                "autogit-guard",
                "autogit-guard-service",
            ],
        ),
        (
            "autogit-api",
            &[
                "autogit-app",
                "autogit-core",
                "autogit-drivers",
                "autogit-guard",
                "autogit-guard-service",
            ],
        ),
        (
            "autogit",
            &[
                "autogit-api",
                "autogit-app",
                "autogit-core",
                "autogit-drivers",
                "autogit-guard",
                "autogit-guard-service",
            ],
        ),
    ];
    for (krate, ok) in allowed {
        for d in deps(krate) {
            assert!(ok.contains(&d.as_str()), "{krate} must not depend on {d}");
        }
    }
    assert!(deps("autogit").contains(&"autogit-app".to_owned()));
    assert!(deps("autogit-api").contains(&"autogit-app".to_owned()));
    assert!(!deps("autogit-app").contains(&"autogit-api".to_owned()));
    assert!(deps("autogit-app").contains(&"autogit-drivers".to_owned()));
}
