//! The BERT encoder: embeddings, then per layer self-attention and a feed-forward block, each
//! closed by residual + LayerNorm (post-norm, as in BERT). One struct per block, each with
//! `load` and `forward`.
//!
//! Candle loads the weights (memory-mapped safetensors, every dtype and shape checked); the
//! forward pass then runs on plain slices: the batch is packed into its real tokens
//! ([`PackedTokens`]) so each linear layer is one GEMM over `tokens × hidden` with weights
//! packed once at load, bias / activation / residual fused into the GEMM's tiles, and a
//! handful of buffers (a workspace) kept from one batch to the next.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use rayon::prelude::*;

use crate::attention::self_attention;
use crate::batch::TokenBatch;
use crate::compute::Compute;
use crate::config::{Activation, BertConfig};
use crate::error::Result;
use crate::kernels::{vecmath, Bf16Dot, Isa};
use crate::linear::{dense, Finish, Linear};
use crate::memory;
use crate::packing::PackedTokens;
use crate::weights::WeightReader;

/// Rows per parallel task in the row-wise passes (embeddings, LayerNorm).
const ROWS_PER_TASK: usize = 64;

/// The linear layer stacked from `names` (PyTorch layout), reading the output of `input_norm`
/// when a LayerNorm feeds it.
fn load_linear(
    (compute, isa): (Compute, Isa),
    weights: &WeightReader,
    names: &[String],
    (inputs, outputs): (usize, usize),
    input_norm: Option<&LayerNorm>,
) -> Result<Box<dyn Linear>> {
    // Several names (Q, K, V) are stacked into one projection: one GEMM instead of three.
    let mut weight = Vec::with_capacity(names.len() * outputs * inputs);
    let mut bias = Vec::with_capacity(names.len() * outputs);
    for name in names {
        weight.extend(weights.values(&format!("{name}.weight"), &[outputs, inputs])?);
        bias.extend(weights.values(&format!("{name}.bias"), &[outputs])?);
    }
    let total = names.len() * outputs;
    let range = input_norm.map(LayerNorm::output_range);
    Ok(dense(
        compute,
        isa,
        &weight,
        bias,
        (inputs, total),
        range.as_deref(),
    ))
}

struct LayerNorm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    eps: f32,
}

impl LayerNorm {
    fn load(weights: &WeightReader, name: &str, size: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            gamma: weights.values(&format!("{name}.weight"), &[size])?,
            beta: weights.values(&format!("{name}.bias"), &[size])?,
            eps: eps as f32,
        })
    }

    /// An estimate of each output channel's magnitude, `|β_c| + 2|γ_c|` (the normalised input
    /// is ~unit variance): the channels whose γ or β are large are the outliers of BERT's
    /// hidden states, and they are large for every token.
    fn output_range(&self) -> Vec<f32> {
        let k: f32 = std::env::var("XR")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2.0);
        self.gamma
            .iter()
            .zip(&self.beta)
            .map(|(&g, &b)| b.abs() + k * g.abs())
            .collect()
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
            word: weights.values("embeddings.word_embeddings.weight", &[config.vocab_size, h])?,
            position: weights.values(
                "embeddings.position_embeddings.weight",
                &[config.max_position_embeddings, h],
            )?,
            token_type: weights.values(
                "embeddings.token_type_embeddings.weight",
                &[config.type_vocab_size, h],
            )?,
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
    /// Layer `index`, whose input is the output of `input_norm` (the embeddings' LayerNorm or
    /// the previous layer's last).
    fn load(
        kernels: (Compute, Isa),
        weights: &WeightReader,
        index: usize,
        config: &BertConfig,
        input_norm: &LayerNorm,
    ) -> Result<Self> {
        let (h, i, eps) = (
            config.hidden_size,
            config.intermediate_size,
            config.layer_norm_eps,
        );
        let prefix = format!("encoder.layer.{index}");
        let qkv_names = ["query", "key", "value"].map(|p| format!("{prefix}.attention.self.{p}"));
        let name = |suffix: &str| [format!("{prefix}.{suffix}")];
        let attention_norm = LayerNorm::load(
            weights,
            &format!("{prefix}.attention.output.LayerNorm"),
            h,
            eps,
        )?;
        Ok(Self {
            qkv: load_linear(kernels, weights, &qkv_names, (h, h), Some(input_norm))?,
            attention_output: load_linear(
                kernels,
                weights,
                &name("attention.output.dense"),
                (h, h),
                None,
            )?,
            intermediate: load_linear(
                kernels,
                weights,
                &name("intermediate.dense"),
                (h, i),
                Some(&attention_norm),
            )?,
            attention_norm,
            output: load_linear(kernels, weights, &name("output.dense"), (i, h), None)?,
            output_norm: LayerNorm::load(weights, &format!("{prefix}.output.LayerNorm"), h, eps)?,
        })
    }
}

/// A forward pass's buffers, shared by every layer of the batch and kept for the next batch.
#[derive(Default)]
struct Workspace {
    hidden: Vec<f32>,
    qkv: Vec<f32>,
    context: Vec<f32>,
    intermediate: Vec<f32>,
    scratch: Vec<f32>,
}

/// Tokens' worth of idle workspaces kept between batches: 8192 (~126 MB for all-MiniLM-L6-v2)
/// is what one call of the Python `Encoder` can need, so a stream of batches, long or short,
/// runs on buffers that are already mapped (fresh ones cost page faults, or a huge-page
/// compaction, on first touch: 1-4% of a long batch). Like an inference runtime's arena, the
/// memory stays at the largest batch seen; concurrent calls beyond it get buffers of their own.
const KEPT_WORKSPACE_TOKENS: usize = 8192;

/// Resizes `buffer` to `len`. A buffer that must grow is allocated afresh (its contents are
/// dead) and, before its first touch, offered transparent huge pages: a long batch's ~126 MB
/// of new buffers otherwise costs ~30,000 page faults, 4% of the batch.
fn fit_buffer(buffer: &mut Vec<f32>, len: usize) {
    if len > buffer.capacity() {
        *buffer = Vec::with_capacity(len);
        memory::advise_huge_pages(buffer.spare_capacity_mut());
    }
    buffer.resize(len, 0.0);
}

impl Workspace {
    /// Sized for `tokens` rows. Every element is written before it is read, so only buffers
    /// that grow are filled (with zeros, the cheapest initialised value).
    fn fit(&mut self, tokens: usize, hidden: usize, intermediate: usize) {
        fit_buffer(&mut self.hidden, tokens * hidden);
        fit_buffer(&mut self.qkv, tokens * 3 * hidden);
        fit_buffer(&mut self.context, tokens * hidden);
        fit_buffer(&mut self.intermediate, tokens * intermediate);
        fit_buffer(&mut self.scratch, tokens * hidden);
    }

    fn capacity_tokens(&self, intermediate: usize) -> usize {
        self.intermediate.capacity() / intermediate.max(1)
    }
}

/// A BERT encoder with its weights, immutable after `load` (shared across threads freely).
pub struct BertModel {
    config: BertConfig,
    isa: Isa,
    compute: Compute,
    embeddings: Embeddings,
    layers: Vec<Layer>,
    /// Idle workspaces; concurrent batches each take their own.
    workspaces: Mutex<Vec<Workspace>>,
}

impl BertModel {
    /// Loads `model.safetensors` (memory-mapped) for `config`, checking every tensor's dtype and
    /// shape before copying it, and packs the linear layers' weights for this CPU's kernels
    /// in `compute`.
    pub fn load(weights_path: &Path, config: BertConfig, compute: Compute) -> Result<Self> {
        let isa = Isa::detected();
        let weights = WeightReader::open(weights_path)?;
        let embeddings = Embeddings::load(&weights, &config)?;
        let mut layers: Vec<Layer> = Vec::with_capacity(config.num_layers);
        for index in 0..config.num_layers {
            let input_norm = layers.last().map_or(&embeddings.norm, |l| &l.output_norm);
            let layer = Layer::load((compute, isa), &weights, index, &config, input_norm)?;
            layers.push(layer);
        }
        Ok(Self {
            config,
            isa,
            compute,
            embeddings,
            layers,
            workspaces: Mutex::new(Vec::new()),
        })
    }

    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// The arithmetic the linear layers run in.
    pub fn compute(&self) -> Compute {
        self.compute
    }

    /// The last hidden state of every packed token, [tokens.len(), hidden] row-major. Runs on
    /// the current rayon pool (the encoder's own).
    pub fn forward_packed(&self, tokens: &PackedTokens) -> Vec<f32> {
        self.with_last_hidden(tokens, <[f32]>::to_vec)
    }

    /// Runs the encoder over `tokens` and hands `read` the last hidden state
    /// ([tokens.len(), hidden] row-major) while it is still in the workspace, so pooling reads
    /// it without a copy. Runs on the current rayon pool (the encoder's own).
    pub fn with_last_hidden<R>(&self, tokens: &PackedTokens, read: impl FnOnce(&[f32]) -> R) -> R {
        let (h, i) = (self.config.hidden_size, self.config.intermediate_size);
        let n = tokens.len();
        if n == 0 {
            return read(&[]);
        }
        let mut ws = self.take_workspace();
        ws.fit(n, h, i);
        self.run_layers(tokens, &mut ws);
        let result = read(&ws.hidden);
        let mut idle = self.idle_workspaces();
        let kept: usize = idle.iter().map(|w| w.capacity_tokens(i)).sum();
        if kept + ws.capacity_tokens(i) <= KEPT_WORKSPACE_TOKENS {
            idle.push(ws);
        }
        result
    }

    fn take_workspace(&self) -> Workspace {
        self.idle_workspaces().pop().unwrap_or_default()
    }

    /// The lock guards only a push or a pop; a panic elsewhere cannot leave the list
    /// half-changed, so a poisoned lock is still sound to use.
    fn idle_workspaces(&self) -> MutexGuard<'_, Vec<Workspace>> {
        self.workspaces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn run_layers(&self, tokens: &PackedTokens, ws: &mut Workspace) {
        use crate::stage_timing::{timed, Stage};
        let n = tokens.len();
        timed(Stage::Embeddings, || {
            self.embeddings.forward(self.isa, tokens, &mut ws.hidden)
        });
        let activation: Activation = self.config.activation;
        let attention_bf16 = match self.compute {
            Compute::BFloat16 => Bf16Dot::detected(),
            Compute::Float32 | Compute::Int8 => None,
        };
        for layer in &self.layers {
            timed(Stage::Qkv, || {
                layer.qkv.forward(&ws.hidden, n, &mut ws.qkv, Finish::Bias)
            });
            timed(Stage::Attention, || {
                self_attention(
                    self.isa,
                    attention_bf16,
                    tokens,
                    &ws.qkv,
                    self.config.num_heads,
                    self.config.head_dim(),
                    &mut ws.context,
                )
            });
            let residual = Finish::Residual(&ws.hidden);
            timed(Stage::AttentionOutput, || {
                layer
                    .attention_output
                    .forward(&ws.context, n, &mut ws.scratch, residual)
            });
            timed(Stage::AttentionNorm, || {
                layer.attention_norm.forward(self.isa, &mut ws.scratch)
            });
            std::mem::swap(&mut ws.hidden, &mut ws.scratch);

            let act = Finish::Activation(activation);
            timed(Stage::Intermediate, || {
                layer
                    .intermediate
                    .forward(&ws.hidden, n, &mut ws.intermediate, act)
            });
            let residual = Finish::Residual(&ws.hidden);
            timed(Stage::Output, || {
                layer
                    .output
                    .forward(&ws.intermediate, n, &mut ws.scratch, residual)
            });
            timed(Stage::OutputNorm, || {
                layer.output_norm.forward(self.isa, &mut ws.scratch)
            });
            std::mem::swap(&mut ws.hidden, &mut ws.scratch);
        }
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
