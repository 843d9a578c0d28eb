//! The BERT encoder: embeddings, then per layer self-attention and a feed-forward block, each
//! closed by residual + LayerNorm (post-norm, as in BERT). One struct per block, each with
//! `load` and `forward`.
//!
//! Candle loads the weights (memory-mapped safetensors, every dtype and shape checked); the
//! forward pass then runs on plain slices: the batch is packed into its real tokens
//! ([`PackedTokens`]) so each linear layer is one GEMM over `tokens × hidden` with weights
//! packed once at load, bias / activation / residual fused into the GEMM's tiles, and a
//! handful of buffers allocated once per batch.

use std::path::Path;

use candle_core::Tensor;
use rayon::prelude::*;

use crate::attention::self_attention;
use crate::batch::TokenBatch;
use crate::config::{Activation, BertConfig};
use crate::error::Result;
use crate::kernels::{vecmath, Isa};
use crate::linear::{DenseF32, Finish, Linear};
use crate::packing::PackedTokens;
use crate::weights::WeightReader;

/// Rows per parallel task in the row-wise passes (embeddings, LayerNorm).
const ROWS_PER_TASK: usize = 64;

fn values(tensor: Tensor) -> Result<Vec<f32>> {
    Ok(tensor.flatten_all()?.to_vec1::<f32>()?)
}

fn load_linear(
    isa: Isa,
    weights: &WeightReader,
    names: &[String],
    inputs: usize,
    outputs: usize,
) -> Result<Box<dyn Linear>> {
    // Several names (Q, K, V) are stacked into one projection: one GEMM instead of three.
    let mut weight = Vec::with_capacity(names.len() * outputs * inputs);
    let mut bias = Vec::with_capacity(names.len() * outputs);
    for name in names {
        weight.extend(values(
            weights.tensor(&format!("{name}.weight"), &[outputs, inputs])?,
        )?);
        bias.extend(values(
            weights.tensor(&format!("{name}.bias"), &[outputs])?,
        )?);
    }
    let total = names.len() * outputs;
    Ok(Box::new(DenseF32::new(isa, &weight, bias, inputs, total)))
}

struct LayerNorm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    eps: f32,
}

impl LayerNorm {
    fn load(weights: &WeightReader, name: &str, size: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            gamma: values(weights.tensor(&format!("{name}.weight"), &[size])?)?,
            beta: values(weights.tensor(&format!("{name}.bias"), &[size])?)?,
            eps: eps as f32,
        })
    }

    /// Normalises every row of `x` ([rows, size]) in place, rows in parallel.
    fn forward(&self, isa: Isa, x: &mut [f32]) {
        let size = self.gamma.len();
        x.par_chunks_mut(size * ROWS_PER_TASK).for_each(|rows| {
            for row in rows.chunks_exact_mut(size) {
                vecmath::layer_norm(isa, row, &self.gamma, &self.beta, self.eps);
            }
        });
    }
}

struct Embeddings {
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    norm: LayerNorm,
}

impl Embeddings {
    fn load(weights: &WeightReader, config: &BertConfig) -> Result<Self> {
        let h = config.hidden_size;
        Ok(Self {
            word: values(
                weights.tensor("embeddings.word_embeddings.weight", &[config.vocab_size, h])?,
            )?,
            position: values(weights.tensor(
                "embeddings.position_embeddings.weight",
                &[config.max_position_embeddings, h],
            )?)?,
            token_type: values(weights.tensor(
                "embeddings.token_type_embeddings.weight",
                &[config.type_vocab_size, h],
            )?)?,
            norm: LayerNorm::load(weights, "embeddings.LayerNorm", h, config.layer_norm_eps)?,
        })
    }

    /// `out` [tokens, hidden] = LayerNorm(word + position + token type) of every packed token.
    /// Ids were checked against the table sizes when the batch was built.
    fn forward(&self, isa: Isa, tokens: &PackedTokens, out: &mut [f32]) {
        let h = self.norm.gamma.len();
        out.par_chunks_mut(h * ROWS_PER_TASK)
            .enumerate()
            .for_each(|(chunk, rows)| {
                for (i, row) in rows.chunks_exact_mut(h).enumerate() {
                    let t = chunk * ROWS_PER_TASK + i;
                    let word = &self.word[tokens.ids[t] as usize * h..][..h];
                    let position = &self.position[tokens.positions[t] as usize * h..][..h];
                    let kind = &self.token_type[tokens.type_ids[t] as usize * h..][..h];
                    row.copy_from_slice(word);
                    vecmath::add2(isa, row, position, kind);
                    vecmath::layer_norm(isa, row, &self.norm.gamma, &self.norm.beta, self.norm.eps);
                }
            });
    }
}

struct Layer {
    qkv: Box<dyn Linear>,
    attention_output: Box<dyn Linear>,
    attention_norm: LayerNorm,
    intermediate: Box<dyn Linear>,
    output: Box<dyn Linear>,
    output_norm: LayerNorm,
}

impl Layer {
    fn load(isa: Isa, weights: &WeightReader, index: usize, config: &BertConfig) -> Result<Self> {
        let (h, i, eps) = (
            config.hidden_size,
            config.intermediate_size,
            config.layer_norm_eps,
        );
        let prefix = format!("encoder.layer.{index}");
        let qkv_names = ["query", "key", "value"].map(|p| format!("{prefix}.attention.self.{p}"));
        let name = |suffix: &str| [format!("{prefix}.{suffix}")];
        Ok(Self {
            qkv: load_linear(isa, weights, &qkv_names, h, h)?,
            attention_output: load_linear(isa, weights, &name("attention.output.dense"), h, h)?,
            attention_norm: LayerNorm::load(
                weights,
                &format!("{prefix}.attention.output.LayerNorm"),
                h,
                eps,
            )?,
            intermediate: load_linear(isa, weights, &name("intermediate.dense"), h, i)?,
            output: load_linear(isa, weights, &name("output.dense"), i, h)?,
            output_norm: LayerNorm::load(weights, &format!("{prefix}.output.LayerNorm"), h, eps)?,
        })
    }
}

/// The per-batch buffers, allocated once per forward and reused by every layer.
struct Workspace {
    hidden: Vec<f32>,
    qkv: Vec<f32>,
    context: Vec<f32>,
    intermediate: Vec<f32>,
    scratch: Vec<f32>,
}

/// A BERT encoder with its weights, immutable after `load` (shared across threads freely).
pub struct BertModel {
    config: BertConfig,
    isa: Isa,
    embeddings: Embeddings,
    layers: Vec<Layer>,
}

impl BertModel {
    /// Loads `model.safetensors` (memory-mapped) for `config`, checking every tensor's dtype and
    /// shape before copying it, and packs the weights for this CPU's kernels.
    pub fn load(weights_path: &Path, config: BertConfig) -> Result<Self> {
        let isa = Isa::detected();
        let weights = WeightReader::open(weights_path)?;
        let embeddings = Embeddings::load(&weights, &config)?;
        let layers = (0..config.num_layers)
            .map(|index| Layer::load(isa, &weights, index, &config))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            config,
            isa,
            embeddings,
            layers,
        })
    }

    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// The last hidden state of every packed token, [tokens.len(), hidden] row-major. Runs on
    /// the current rayon pool (the encoder's own).
    pub fn forward_packed(&self, tokens: &PackedTokens) -> Vec<f32> {
        let (h, i) = (self.config.hidden_size, self.config.intermediate_size);
        let n = tokens.len();
        if n == 0 {
            return Vec::new();
        }
        let mut ws = Workspace {
            hidden: vec![0.0; n * h],
            qkv: vec![0.0; n * 3 * h],
            context: vec![0.0; n * h],
            intermediate: vec![0.0; n * i],
            scratch: vec![0.0; n * h],
        };
        self.embeddings.forward(self.isa, tokens, &mut ws.hidden);
        let activation: Activation = self.config.activation;
        for layer in &self.layers {
            layer.qkv.forward(&ws.hidden, n, &mut ws.qkv, Finish::Bias);
            self_attention(
                self.isa,
                tokens,
                &ws.qkv,
                self.config.num_heads,
                self.config.head_dim(),
                &mut ws.context,
            );
            let residual = Finish::Residual(&ws.hidden);
            layer
                .attention_output
                .forward(&ws.context, n, &mut ws.scratch, residual);
            layer.attention_norm.forward(self.isa, &mut ws.scratch);
            std::mem::swap(&mut ws.hidden, &mut ws.scratch);

            let act = Finish::Activation(activation);
            layer
                .intermediate
                .forward(&ws.hidden, n, &mut ws.intermediate, act);
            let residual = Finish::Residual(&ws.hidden);
            layer
                .output
                .forward(&ws.intermediate, n, &mut ws.scratch, residual);
            layer.output_norm.forward(self.isa, &mut ws.scratch);
            std::mem::swap(&mut ws.hidden, &mut ws.scratch);
        }
        ws.hidden
    }

    /// The last hidden state in the padded layout, [batch * seq_len, hidden]; padding
    /// positions are zero (nothing attends to them, and they attend to nothing).
    pub fn forward(&self, batch: &TokenBatch) -> Result<Vec<f32>> {
        let h = self.config.hidden_size;
        let tokens = PackedTokens::new(batch);
        let packed = self.forward_packed(&tokens);
        let mut padded = vec![0.0f32; batch.batch * batch.seq_len * h];
        for (row, &origin) in packed.chunks_exact(h).zip(&tokens.origin) {
            padded[origin * h..(origin + 1) * h].copy_from_slice(row);
        }
        Ok(padded)
    }
}
