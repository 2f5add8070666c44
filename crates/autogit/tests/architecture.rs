//! ARCHITECTURE.md stays true: every file or directory its code map names exists. A path is a
//! backticked token that ends in a known extension or `/`, or a bullet's leading token in a
//! crate's section (`- \`yaml.rs\`:`, `- \`engine/\`:`, `- \`fsx\`:`). It is looked up from the
//! repository root, then the section's crate, then its `src/` (and `tests/`).

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const EXTENSIONS: [&str; 7] = [".rs", ".md", ".toml", ".yml", ".sh", ".json", ".jsonl"];

/// Files the text names that live on the user's machine, not in the repository.
const RUNTIME_FILES: [&str; 3] = ["autogit.yml", "config.toml", "tls/acme-challenges.json"];

/// Where `token` may be: from the root; in the section's crate, its `src/` (and the directory
/// of the bullet it is in, `src/dns/` for the `dns/` bullet) and `tests/`; in any crate or its
/// `tests/` (the Testing section names test files by their crate-relative path).
fn candidates(token: &str, krate: Option<&str>, dir: Option<&str>) -> Vec<PathBuf> {
    let root = root();
    let mut v = vec![root.join(token)];
    if let Some(k) = krate {
        let k = root.join(k);
        v.push(k.join(token));
        v.push(k.join("src").join(token));
        v.push(k.join("src").join(format!("{token}.rs")));
        v.push(k.join("tests").join(token));
        if let Some(d) = dir {
            v.push(k.join("src").join(d).join(token));
        }
    }
    for c in std::fs::read_dir(root.join("crates")).unwrap().flatten() {
        v.push(c.path().join(token));
        v.push(c.path().join("tests").join(token));
    }
    v
}

#[test]
fn every_path_the_code_map_names_exists() {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let mut krate: Option<String> = None;
    // The directory a bullet's lead names (`dns/`), for the files its text names.
    let mut dir: Option<String> = None;
    let mut missing = Vec::new();
    let mut checked = 0;
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("### ") {
            // `### \`crates/autogit-core\`` (a section naming two crates checks from the root).
            let names: Vec<&str> = h.split('`').skip(1).step_by(2).collect();
            krate = (names.len() == 1).then(|| names[0].to_owned());
            continue;
        }
        if line.starts_with("## ") {
            krate = None;
        }
        let tokens: Vec<&str> = line.split('`').skip(1).step_by(2).collect();
        let bullet_lead = line
            .trim_start()
            .strip_prefix("- `")
            .and_then(|r| r.split('`').next());
        if let Some(lead) = bullet_lead {
            dir = lead.strip_suffix('/').map(str::to_owned);
        } else if line.trim().is_empty() {
            dir = None;
        }
        for (i, t) in tokens.iter().enumerate() {
            let pathish = EXTENSIONS.iter().any(|e| t.ends_with(e)) || t.ends_with('/');
            let lead = i == 0 && bullet_lead == Some(*t) && krate.is_some();
            if !(pathish || lead)
                || t.contains(['<', '>', '*', ' ', '{', '$'])
                || t.starts_with('.') && !t.starts_with("./")
                || RUNTIME_FILES.contains(t)
            {
                continue;
            }
            // `render.rs` + `emit.rs` style leads name files; words such as `fsx` name modules.
            checked += 1;
            if !candidates(t, krate.as_deref(), dir.as_deref())
                .iter()
                .any(|p| p.exists())
            {
                missing.push(format!("{t} (section {})", krate.as_deref().unwrap_or("-")));
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} paths found: is the parser still right?"
    );
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names paths that do not exist:\n{}",
        missing.join("\n")
    );
}
