//! Test support: a random tiny BERT model folder as sentence-transformers lays one out
//! (`config.json`, `modules.json`, `1_Pooling/config.json`, `model.safetensors` written by the
//! `safetensors` crate), of any size, with deterministic weights from a seed.
//!
//! Compiled for this crate's own tests and, behind the `tiny-bert` feature, for other crates (the
//! fuzz targets in `fuzz/`); never part of the engine or the wheel. As test support it panics on
//! I/O errors instead of returning them.
//!
//! ```
//! use minilm_fast::tiny_bert::{Pooling, TinyBert};
//!
//! let dir = std::env::temp_dir().join(format!("tiny_bert_doc_{}", std::process::id()));
//! let tiny = TinyBert { layers: 2, pooling: Pooling::All, ..TinyBert::DEFAULT };
//! tiny.write(&dir);
//! let encoder = minilm_fast::SentenceEncoder::load(&dir, Some(1)).unwrap();
//! assert_eq!(encoder.output_dim(), 4 * tiny.hidden);
//! std::fs::remove_dir_all(&dir).unwrap();
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::Dtype;

/// The Pooling module's config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// all-MiniLM-L6-v2's (one flag per mode): mean pooling.
    Mean,
    /// The sentence-transformers >= 6 format naming every mode this engine has, concatenated:
    /// cls, max, mean, mean_sqrt_len_tokens.
    All,
}

/// A tiny BERT model: its sizes, its sentence-transformers pipeline and the seed of its weights.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TinyBert {
    pub hidden: usize,
    pub heads: usize,
    pub layers: usize,
    pub intermediate: usize,
    pub vocab: usize,
    pub max_positions: usize,
    pub type_vocab: usize,
    /// `hidden_act` as `config.json` names it: "gelu", "gelu_new", "relu", ...
    pub activation: &'static str,
    pub layer_norm_eps: f64,
    /// Put before every tensor name: "" (as `BertModel` saves them) or "bert.".
    pub prefix: &'static str,
    pub pooling: Pooling,
    /// Whether `modules.json` ends with a Normalize module.
    pub normalize: bool,
    /// Seeds the weights; the same seed and sizes give the same bytes.
    pub seed: u64,
}

/// One f32 tensor of a model: its full name, shape and values.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// One tensor as it goes into a file: name, dtype, shape and little-endian bytes, which need not
/// agree (to write files that lie).
#[derive(Clone, Debug, PartialEq)]
pub struct RawTensor {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl Tensor {
    /// The tensor as F32 little-endian bytes.
    pub fn raw(&self) -> RawTensor {
        RawTensor {
            name: self.name.clone(),
            dtype: Dtype::F32,
            shape: self.shape.clone(),
            data: self.values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
}

impl TinyBert {
    /// Hidden 8, two heads, one layer, vocabulary 50, 16 positions; GELU, mean pooling and
    /// Normalize (all-MiniLM-L6-v2's pipeline), seed 7.
    pub const DEFAULT: TinyBert = TinyBert {
        hidden: 8,
        heads: 2,
        layers: 1,
        intermediate: 16,
        vocab: 50,
        max_positions: 16,
        type_vocab: 2,
        activation: "gelu",
        layer_norm_eps: 1e-12,
        prefix: "",
        pooling: Pooling::Mean,
        normalize: true,
        seed: 7,
    };

    /// `config.json`, as transformers writes it.
    pub fn config_json(&self) -> String {
        format!(
            r#"{{"architectures":["BertModel"],"model_type":"bert","hidden_act":"{}",
"hidden_size":{},"intermediate_size":{},"layer_norm_eps":{:e},
"max_position_embeddings":{},"num_attention_heads":{},
"num_hidden_layers":{},"position_embedding_type":"absolute","type_vocab_size":{},
"vocab_size":{}}}"#,
            self.activation,
            self.hidden,
            self.intermediate,
            self.layer_norm_eps,
            self.max_positions,
            self.heads,
            self.layers,
            self.type_vocab,
            self.vocab
        )
    }

    /// `modules.json`: Transformer, Pooling, and Normalize if `normalize`.
    pub fn modules_json(&self) -> String {
        let mut modules = vec![
            r#"{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"}"#,
            r#"{"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"}"#,
        ];
        if self.normalize {
            modules.push(
                r#"{"idx":2,"name":"2","path":"2_Normalize","type":"sentence_transformers.models.Normalize"}"#,
            );
        }
        format!("[{}]", modules.join(","))
    }

    /// The Pooling module's `config.json`.
    pub fn pooling_json(&self) -> String {
        let dim = self.hidden;
        match self.pooling {
            Pooling::Mean => format!(
                r#"{{"word_embedding_dimension":{dim},"pooling_mode_cls_token":false,
"pooling_mode_mean_tokens":true,"pooling_mode_max_tokens":false,
"pooling_mode_mean_sqrt_len_tokens":false}}"#
            ),
            Pooling::All => format!(
                r#"{{"embedding_dimension":{dim},"pooling_mode":["cls","max","mean","mean_sqrt_len_tokens"]}}"#
            ),
        }
    }

    /// Every tensor, named as `BertModel` names them (after `prefix`), in a fixed order; each
    /// has its own seed, counted up from `seed`.
    pub fn tensors(&self) -> Vec<Tensor> {
        let (h, i) = (self.hidden, self.intermediate);
        let mut t = Tensors {
            prefix: self.prefix,
            seed: self.seed,
            out: Vec::new(),
        };
        t.embedding("embeddings.word_embeddings", self.vocab, h);
        t.embedding("embeddings.position_embeddings", self.max_positions, h);
        t.embedding("embeddings.token_type_embeddings", self.type_vocab, h);
        t.layer_norm("embeddings.LayerNorm", h);
        for layer in 0..self.layers {
            let p = format!("encoder.layer.{layer}");
            for part in ["query", "key", "value"] {
                t.linear(&format!("{p}.attention.self.{part}"), h, h);
            }
            t.linear(&format!("{p}.attention.output.dense"), h, h);
            t.layer_norm(&format!("{p}.attention.output.LayerNorm"), h);
            t.linear(&format!("{p}.intermediate.dense"), i, h);
            t.linear(&format!("{p}.output.dense"), h, i);
            t.layer_norm(&format!("{p}.output.LayerNorm"), h);
        }
        t.out
    }

    /// `model.safetensors`: every tensor as F32.
    pub fn weights(&self) -> Vec<u8> {
        serialize_f32(&self.tensors())
    }

    /// Writes the model folder into `dir` (created if missing; files there are replaced).
    ///
    /// # Panics
    /// If a file cannot be written.
    pub fn write(&self, dir: &Path) {
        let write = |name: &str, contents: &[u8]| {
            let path = dir.join(name);
            if let Err(err) = std::fs::write(&path, contents) {
                panic!("writing {}: {err}", path.display());
            }
        };
        let pooling_dir = dir.join("1_Pooling");
        if let Err(err) = std::fs::create_dir_all(&pooling_dir) {
            panic!("creating {}: {err}", pooling_dir.display());
        }
        write("config.json", self.config_json().as_bytes());
        write("modules.json", self.modules_json().as_bytes());
        write("1_Pooling/config.json", self.pooling_json().as_bytes());
        write("model.safetensors", &self.weights());
    }
}

/// A safetensors file holding `tensors`, written by the `safetensors` crate.
///
/// # Panics
/// If a tensor's bytes are not its dtype times its shape.
pub fn serialize(tensors: &[RawTensor]) -> Vec<u8> {
    let views: BTreeMap<&str, TensorView<'_>> = tensors
        .iter()
        .map(|t| {
            let view = TensorView::new(t.dtype, t.shape.clone(), &t.data)
                .unwrap_or_else(|err| panic!("tensor {}: {err}", t.name));
            (t.name.as_str(), view)
        })
        .collect();
    safetensors::serialize(views, None)
        .unwrap_or_else(|err| panic!("serialising a safetensors file: {err}"))
}

/// A safetensors file of `tensors`, each as F32.
pub fn serialize_f32(tensors: &[Tensor]) -> Vec<u8> {
    serialize(&tensors.iter().map(Tensor::raw).collect::<Vec<_>>())
}

/// Collects a model's tensors, each with the next seed.
struct Tensors {
    prefix: &'static str,
    seed: u64,
    out: Vec<Tensor>,
}

impl Tensors {
    /// `name` with values uniform in `offset ± scale`.
    fn add(&mut self, name: &str, shape: Vec<usize>, scale: f32, offset: f32) {
        self.seed += 1;
        let n = shape.iter().product();
        let values = values(n, self.seed, scale);
        self.out.push(Tensor {
            name: format!("{}{name}", self.prefix),
            shape,
            values: values.into_iter().map(|v| v + offset).collect(),
        });
    }

    fn embedding(&mut self, name: &str, rows: usize, hidden: usize) {
        self.add(&format!("{name}.weight"), vec![rows, hidden], 0.8, 0.0);
    }

    /// Weight near 1, small bias.
    fn layer_norm(&mut self, name: &str, hidden: usize) {
        self.add(&format!("{name}.weight"), vec![hidden], 0.1, 1.0);
        self.add(&format!("{name}.bias"), vec![hidden], 0.1, 0.0);
    }

    /// Weight [outputs, inputs] uniform at 1.6 x Kaiming's bound, small bias.
    fn linear(&mut self, name: &str, outputs: usize, inputs: usize) {
        let scale = 1.6 * (3.0 / inputs as f32).sqrt();
        self.add(&format!("{name}.weight"), vec![outputs, inputs], scale, 0.0);
        self.add(&format!("{name}.bias"), vec![outputs], 0.1, 0.0);
    }
}

/// `n` deterministic values in [-scale, scale): a 64-bit LCG, no dependency.
fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    const A: u64 = 6364136223846793005;
    const C: u64 = 1442695040888963407;
    let mut state = seed.wrapping_mul(A).wrapping_add(C);
    (0..n)
        .map(|_| {
            state = state.wrapping_mul(A).wrapping_add(C);
            (((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0) * scale
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_folder_the_engine_loads() {
        let dir = std::env::temp_dir().join(format!("minilm_fast_tiny_{}", std::process::id()));
        let tiny = TinyBert {
            layers: 2,
            prefix: "bert.",
            pooling: Pooling::All,
            normalize: false,
            ..TinyBert::DEFAULT
        };
        tiny.write(&dir);
        let encoder = crate::SentenceEncoder::load(&dir, Some(1)).unwrap();
        assert_eq!(encoder.config().num_layers, 2);
        assert_eq!(encoder.output_dim(), 4 * tiny.hidden);
        assert!(!encoder.sentence_config().normalize);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn weights_depend_on_the_seed_only() {
        let tiny = TinyBert::DEFAULT;
        assert_eq!(tiny.weights(), tiny.weights());
        assert_ne!(tiny.weights(), TinyBert { seed: 8, ..tiny }.weights());
        let tensors = tiny.tensors();
        assert_eq!(tensors.len(), 5 + 16 * tiny.layers);
        for t in &tensors {
            assert_eq!(
                t.values.len(),
                t.shape.iter().product::<usize>(),
                "{}",
                t.name
            );
            assert!(t.values.iter().all(|v| v.is_finite()), "{}", t.name);
        }
    }
}
