//! Every `AUTOGIT_*` variable the binary reads itself (a flag's `env = …`, or a lookup in its
//! sources) is reserved in `core::load`, so configuration loading does not warn that it "is
//! neither an autogit setting nor a configuration override". Checked against the sources so
//! a new flag cannot drift.

use autogit_core::load::RESERVED_ENV;

#[test]
fn every_variable_the_binary_reads_is_reserved() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut missing = Vec::new();
    let mut seen = 0;
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, _) in text.match_indices("\"AUTOGIT_") {
            let name: String = text[i + 1..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            // `AUTOGIT_SECTION__KEY` names are configuration overrides, not the CLI's own.
            if name.contains("__") || name.ends_with('_') {
                continue;
            }
            seen += 1;
            if !RESERVED_ENV.contains(&name.as_str()) {
                missing.push(format!("{name} ({})", path.display()));
            }
        }
    }
    assert!(
        seen >= 8,
        "found only {seen} variables: is the scan broken?"
    );
    assert!(
        missing.is_empty(),
        "add to core::load::RESERVED_ENV: {missing:?}"
    );
}
