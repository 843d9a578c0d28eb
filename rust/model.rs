//! The BERT encoder over Candle tensors, block by block in the shape of candle-transformers'
//! `models/bert.rs`: `BertEmbeddings`, `BertSelfAttention`, `BertSelfOutput`, `BertAttention`,
//! `BertIntermediate`, `BertOutput`, `BertLayer`, `BertEncoder`, `BertModel`, each with `load`
//! and `forward` (post-norm residual blocks, as in BERT).
//!
//! Every block has two forms, chosen once at load ([`Backend`]), as candle's `QMatMul` is:
//! - **Fused** (CPU): the batch is packed into its real tokens (`[tokens, hidden]`, sequence
//!   offsets as a u32 tensor) and each stage is one of our in-place Candle ops (`ops.rs`),
//!   writing into tensors kept between batches (`workspace.rs`), with weights packed for our
//!   GEMM at load and bias / activation / residual fused into its tiles.
//! - **Stock** (any device): Candle's own ops on the padded batch (`matmul`, `broadcast_add`,
//!   `gelu_erf`, `softmax_last_dim`, `candle_nn::ops::layer_norm`, attention with an additive
//!   mask). What a CUDA or Metal build of candle runs, and on CPU the reference the fused form
//!   is tested against. It computes in float32.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Embedding, Linear as StockLinear};

use crate::batch::TokenBatch;
use crate::compute::Compute;
use crate::config::{Activation, BertConfig};
use crate::error::{Error, Result};
use crate::kernels::{Bf16Dot, Isa};
use crate::linear::dense;
use crate::ops::{AttentionOp, DenseOp, EmbeddingsOp, LayerNormOp};
use crate::packing::PackedTokens;
use crate::stage_timing::{timed, Stage};
use crate::weights::WeightReader;
use crate::workspace::{with_floats, Buffers, Widths, Workspace};

/// Which form the blocks take (see the module comment).
#[derive(Debug, Clone)]
pub enum Backend {
    /// Our kernels as in-place Candle ops on packed tokens; CPU only.
    Fused,
    /// Candle's stock ops on padded batches, on this device.
    Stock(Device),
}

impl Backend {
    /// What runs on `device`: the fused ops on the CPU, Candle's stock ops elsewhere.
    pub fn for_device(device: &Device) -> Backend {
        if device.is_cpu() {
            Backend::Fused
        } else {
            Backend::Stock(device.clone())
        }
    }
}

/// What every block's `forward` needs besides its input, by backend.
pub enum Pass<'a> {
    /// Packed tokens: sequence `s` is rows `offsets[s]..offsets[s + 1]` (u32), and the kept
    /// tensors the ops write into.
    Fused {
        offsets: &'a Tensor,
        buffers: &'a Buffers,
    },
    /// A padded batch: its attention mask as f32 `[batch, seq]` (1 for a token, 0 for
    /// padding), and the same as attention adds it to the scores, `[batch, 1, 1, seq]` (0 for
    /// a token, a huge negative number for padding).
    Stock {
        tokens: &'a Tensor,
        mask: &'a Tensor,
    },
}

impl Pass<'_> {
    pub fn buffers(&self) -> Option<&Buffers> {
        match self {
            Pass::Fused { buffers, .. } => Some(buffers),
            Pass::Stock { .. } => None,
        }
    }
}

/// A block loaded for one backend called with the other's pass: a bug, never user input.
pub(crate) fn mismatch(block: &str) -> Error {
    Error::Compute(format!("{block}: called with the other backend's inputs"))
}

/// What a block's `load` reads from: the weights, the backend, and how the fused ops compute.
struct Loader<'a> {
    weights: WeightReader<'a>,
    backend: Backend,
    compute: Compute,
    isa: Isa,
}

impl Loader<'_> {
    /// `name`'s values, `shape` checked, as a tensor on the stock backend's device.
    fn tensor(&self, name: &str, shape: &[usize], device: &Device) -> Result<Tensor> {
        let values = self.weights.values(name, shape)?;
        Ok(Tensor::from_vec(values, shape, &Device::Cpu)?.to_device(device)?)
    }
}

/// A linear layer, with the activation (if any) that follows it.
enum Dense {
    Fused(DenseOp),
    Stock {
        linear: StockLinear,
        activation: Option<Activation>,
    },
}

impl Dense {
    /// The projection stacked from `names` (PyTorch layout `[outputs, inputs]` each): Q, K and
    /// V become one GEMM instead of three. `input_range` estimates each input channel's
    /// magnitude when a LayerNorm feeds the layer: int8 uses it to smooth outlier channels.
    fn load(
        loader: &Loader,
        names: &[String],
        (inputs, outputs): (usize, usize),
        activation: Option<Activation>,
        input_range: Option<&[f32]>,
    ) -> Result<Self> {
        let total = names.len() * outputs;
        match &loader.backend {
            Backend::Fused => {
                let mut weight = Vec::with_capacity(total * inputs);
                let mut bias = Vec::with_capacity(total);
                for name in names {
                    let w = &loader.weights;
                    weight.extend(w.values(&format!("{name}.weight"), &[outputs, inputs])?);
                    bias.extend(w.values(&format!("{name}.bias"), &[outputs])?);
                }
                let linear = dense(
                    loader.compute,
                    loader.isa,
                    &weight,
                    bias,
                    (inputs, total),
                    input_range,
                );
                Ok(Dense::Fused(DenseOp { linear, activation }))
            }
            Backend::Stock(device) => {
                let mut weights = Vec::with_capacity(names.len());
                let mut biases = Vec::with_capacity(names.len());
                for name in names {
                    let shape = [outputs, inputs];
                    weights.push(loader.tensor(&format!("{name}.weight"), &shape, device)?);
                    biases.push(loader.tensor(&format!("{name}.bias"), &[outputs], device)?);
                }
                let linear =
                    StockLinear::new(Tensor::cat(&weights, 0)?, Some(Tensor::cat(&biases, 0)?));
                Ok(Dense::Stock { linear, activation })
            }
        }
    }

    /// `act(x W + b)`, plus `residual` when given. The fused form writes into `into`.
    fn forward(
        &self,
        x: &Tensor,
        into: Option<&Tensor>,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        match self {
            Dense::Fused(op) => {
                let out = into.ok_or_else(|| mismatch("Dense"))?;
                match residual {
                    Some(residual) => out.inplace_op3(x, residual, op)?,
                    None => out.inplace_op2(x, op)?,
                }
                Ok(out.clone())
            }
            Dense::Stock { linear, activation } => {
                let y = linear.forward(x)?;
                let y = match activation {
                    Some(Activation::GeluErf) => y.gelu_erf()?,
                    // candle's `gelu` is the tanh approximation.
                    Some(Activation::GeluTanh) => y.gelu()?,
                    Some(Activation::Relu) => y.relu()?,
                    None => y,
                };
                Ok(match residual {
                    Some(residual) => (y + residual)?,
                    None => y,
                })
            }
        }
    }
}

enum LayerNorm {
    Fused(LayerNormOp),
    Stock {
        gamma: Tensor,
        beta: Tensor,
        eps: f32,
    },
}

impl LayerNorm {
    fn load(loader: &Loader, name: &str, size: usize, eps: f64) -> Result<Self> {
        let (gamma, beta) = (format!("{name}.weight"), format!("{name}.bias"));
        Ok(match &loader.backend {
            Backend::Fused => LayerNorm::Fused(LayerNormOp {
                isa: loader.isa,
                gamma: loader.weights.values(&gamma, &[size])?,
                beta: loader.weights.values(&beta, &[size])?,
                eps: eps as f32,
            }),
            Backend::Stock(device) => LayerNorm::Stock {
                gamma: loader.tensor(&gamma, &[size], device)?,
                beta: loader.tensor(&beta, &[size], device)?,
                eps: eps as f32,
            },
        })
    }

    /// Each output channel's estimated magnitude ([`LayerNormOp::output_range`]); the fused
    /// form's only, as only int8 uses it.
    fn output_range(&self) -> Option<Vec<f32>> {
        match self {
            LayerNorm::Fused(op) => Some(op.output_range()),
            LayerNorm::Stock { .. } => None,
        }
    }

    /// The fused form normalises `x` in place and returns it.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            LayerNorm::Fused(op) => {
                x.inplace_op1(op)?;
                Ok(x.clone())
            }
            LayerNorm::Stock { gamma, beta, eps } => {
                Ok(candle_nn::ops::layer_norm(x, gamma, beta, *eps)?)
            }
        }
    }
}

/// Word + position + token-type embeddings, then LayerNorm. Input: u32 `[..., 3]` rows of
/// (word id, position, token type), `[tokens, 3]` packed or `[batch, seq, 3]` padded.
pub struct BertEmbeddings {
    inner: EmbeddingsForm,
}

enum EmbeddingsForm {
    Fused(EmbeddingsOp),
    Stock {
        word: Embedding,
        position: Embedding,
        token_type: Embedding,
        norm: LayerNorm,
    },
}

impl BertEmbeddings {
    fn load(loader: &Loader, config: &BertConfig) -> Result<Self> {
        let h = config.hidden_size;
        let tables = [
            ("embeddings.word_embeddings.weight", config.vocab_size),
            (
                "embeddings.position_embeddings.weight",
                config.max_position_embeddings,
            ),
            (
                "embeddings.token_type_embeddings.weight",
                config.type_vocab_size,
            ),
        ];
        let norm = LayerNorm::load(loader, "embeddings.LayerNorm", h, config.layer_norm_eps)?;
        let inner = match (&loader.backend, norm) {
            (Backend::Fused, LayerNorm::Fused(norm)) => {
                let [word, position, token_type] =
                    tables.map(|(name, rows)| loader.weights.values(name, &[rows, h]));
                EmbeddingsForm::Fused(EmbeddingsOp {
                    isa: loader.isa,
                    hidden: h,
                    word: word?,
                    position: position?,
                    token_type: token_type?,
                    norm,
                })
            }
            (Backend::Stock(device), norm) => {
                let [word, position, token_type] = tables.map(|(name, rows)| {
                    loader
                        .tensor(name, &[rows, h], device)
                        .map(|t| Embedding::new(t, h))
                });
                EmbeddingsForm::Stock {
                    word: word?,
                    position: position?,
                    token_type: token_type?,
                    norm,
                }
            }
            (Backend::Fused, LayerNorm::Stock { .. }) => return Err(mismatch("BertEmbeddings")),
        };
        Ok(Self { inner })
    }

    /// As [`LayerNorm::output_range`], for the embeddings' LayerNorm.
    fn output_range(&self) -> Option<Vec<f32>> {
        match &self.inner {
            EmbeddingsForm::Fused(op) => Some(op.norm.output_range()),
            EmbeddingsForm::Stock { norm, .. } => norm.output_range(),
        }
    }

    fn forward(&self, tokens: &Tensor, pass: &Pass) -> Result<Tensor> {
        match &self.inner {
            EmbeddingsForm::Fused(op) => {
                let out = &pass
                    .buffers()
                    .ok_or_else(|| mismatch("BertEmbeddings"))?
                    .hidden;
                out.inplace_op2(tokens, op)?;
                Ok(out.clone())
            }
            EmbeddingsForm::Stock {
                word,
                position,
                token_type,
                norm,
            } => {
                let column = |i: usize| tokens.narrow(D::Minus1, i, 1)?.squeeze(D::Minus1);
                let sum = ((word.forward(&column(0)?)? + position.forward(&column(1)?)?)?
                    + token_type.forward(&column(2)?)?)?;
                norm.forward(&sum)
            }
        }
    }
}

/// Q, K and V in one projection, then `softmax(Q Kᵀ / √d) V` per head.
pub struct BertSelfAttention {
    qkv: Dense,
    /// The fused form's op; its `heads` and `head_dim` serve the stock form too.
    attention: AttentionOp,
}

impl BertSelfAttention {
    fn load(
        loader: &Loader,
        prefix: &str,
        config: &BertConfig,
        input_range: Option<&[f32]>,
    ) -> Result<Self> {
        let h = config.hidden_size;
        let names = ["query", "key", "value"].map(|p| format!("{prefix}.{p}"));
        let qkv = Dense::load(loader, &names, (h, h), None, input_range)?;
        let bf16 = match loader.compute {
            Compute::BFloat16 => Bf16Dot::detected(),
            Compute::Float32 | Compute::Int8 => None,
        };
        Ok(Self {
            qkv,
            attention: AttentionOp {
                isa: loader.isa,
                bf16,
                heads: config.num_heads,
                head_dim: config.head_dim(),
            },
        })
    }

    /// The attention context, `[tokens, hidden]` (fused) or `[batch, seq, hidden]` (stock).
    fn forward(&self, hidden: &Tensor, pass: &Pass) -> Result<Tensor> {
        let into = pass.buffers().map(|b| &b.qkv);
        let qkv = timed(Stage::Qkv, || self.qkv.forward(hidden, into, None))?;
        timed(Stage::Attention, || match pass {
            Pass::Fused { offsets, buffers } => {
                buffers
                    .context
                    .inplace_op3(&qkv, offsets, &self.attention)?;
                Ok(buffers.context.clone())
            }
            Pass::Stock { mask, .. } => self.padded_attention(&qkv, mask),
        })
    }

    /// Attention on Candle's stock ops over a padded batch.
    fn padded_attention(&self, qkv: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (batch, seq, _) = qkv.dims3()?;
        let (heads, d) = (self.attention.heads, self.attention.head_dim);
        let head = |i: usize| -> Result<Tensor> {
            Ok(qkv
                .narrow(2, i * heads * d, heads * d)?
                .reshape((batch, seq, heads, d))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let (q, k, v) = (head(0)?, head(1)?, head(2)?);
        let scale = 1.0 / (d as f64).sqrt();
        let scores = (q.matmul(&k.t()?.contiguous()?)? * scale)?.broadcast_add(mask)?;
        let weights = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = weights.matmul(&v)?.transpose(1, 2)?;
        Ok(context.reshape((batch, seq, heads * d))?)
    }
}

/// The attention projection, residual and LayerNorm.
pub struct BertSelfOutput {
    dense: Dense,
    norm: LayerNorm,
}

impl BertSelfOutput {
    fn load(loader: &Loader, prefix: &str, config: &BertConfig) -> Result<Self> {
        let h = config.hidden_size;
        let name = format!("{prefix}.LayerNorm");
        Ok(Self {
            dense: Dense::load(loader, &[format!("{prefix}.dense")], (h, h), None, None)?,
            norm: LayerNorm::load(loader, &name, h, config.layer_norm_eps)?,
        })
    }

    /// `LayerNorm(context W + b + input)`; the fused form writes the workspace's scratch.
    fn forward(&self, context: &Tensor, input: &Tensor, pass: &Pass) -> Result<Tensor> {
        let into = pass.buffers().map(|b| &b.scratch);
        let sum = timed(Stage::AttentionOutput, || {
            self.dense.forward(context, into, Some(input))
        })?;
        timed(Stage::AttentionNorm, || self.norm.forward(&sum))
    }
}

pub struct BertAttention {
    self_attention: BertSelfAttention,
    output: BertSelfOutput,
}

impl BertAttention {
    fn forward(&self, hidden: &Tensor, pass: &Pass) -> Result<Tensor> {
        let context = self.self_attention.forward(hidden, pass)?;
        self.output.forward(&context, hidden, pass)
    }
}

/// The feed-forward block's first projection and its activation.
pub struct BertIntermediate {
    dense: Dense,
}

impl BertIntermediate {
    fn forward(&self, x: &Tensor, pass: &Pass) -> Result<Tensor> {
        let into = pass.buffers().map(|b| &b.intermediate);
        timed(Stage::Intermediate, || self.dense.forward(x, into, None))
    }
}

/// The feed-forward block's second projection, residual and LayerNorm.
pub struct BertOutput {
    dense: Dense,
    norm: LayerNorm,
}

impl BertOutput {
    /// `LayerNorm(x W + b + input)`; the fused form writes the workspace's hidden states (the
    /// layer's input, dead once the attention block has read it).
    fn forward(&self, x: &Tensor, input: &Tensor, pass: &Pass) -> Result<Tensor> {
        let into = pass.buffers().map(|b| &b.hidden);
        let sum = timed(Stage::Output, || self.dense.forward(x, into, Some(input)))?;
        timed(Stage::OutputNorm, || self.norm.forward(&sum))
    }
}

pub struct BertLayer {
    attention: BertAttention,
    intermediate: BertIntermediate,
    output: BertOutput,
}

impl BertLayer {
    /// Layer `index`; `input_range` is the output range of the LayerNorm that feeds it (the
    /// embeddings' or the previous layer's last), see [`LayerNorm::output_range`].
    fn load(
        loader: &Loader,
        index: usize,
        config: &BertConfig,
        input_range: Option<&[f32]>,
    ) -> Result<Self> {
        let (h, i) = (config.hidden_size, config.intermediate_size);
        let prefix = format!("encoder.layer.{index}");
        let self_attention = BertSelfAttention::load(
            loader,
            &format!("{prefix}.attention.self"),
            config,
            input_range,
        )?;
        let attention_output =
            BertSelfOutput::load(loader, &format!("{prefix}.attention.output"), config)?;
        let intermediate = Dense::load(
            loader,
            &[format!("{prefix}.intermediate.dense")],
            (h, i),
            Some(config.activation),
            attention_output.norm.output_range().as_deref(),
        )?;
        let output = BertOutput {
            dense: Dense::load(
                loader,
                &[format!("{prefix}.output.dense")],
                (i, h),
                None,
                None,
            )?,
            norm: LayerNorm::load(
                loader,
                &format!("{prefix}.output.LayerNorm"),
                h,
                config.layer_norm_eps,
            )?,
        };
        Ok(Self {
            attention: BertAttention {
                self_attention,
                output: attention_output,
            },
            intermediate: BertIntermediate {
                dense: intermediate,
            },
            output,
        })
    }

    fn forward(&self, hidden: &Tensor, pass: &Pass) -> Result<Tensor> {
        let attention = self.attention.forward(hidden, pass)?;
        let intermediate = self.intermediate.forward(&attention, pass)?;
        self.output.forward(&intermediate, &attention, pass)
    }
}

pub struct BertEncoder {
    layers: Vec<BertLayer>,
}

impl BertEncoder {
    /// `embeddings_range`: the output range of the embeddings' LayerNorm, which feeds layer 0.
    fn load(
        loader: &Loader,
        config: &BertConfig,
        embeddings_range: Option<Vec<f32>>,
    ) -> Result<Self> {
        let mut layers: Vec<BertLayer> = Vec::with_capacity(config.num_layers);
        for index in 0..config.num_layers {
            let input_range = match layers.last() {
                Some(previous) => previous.output.norm.output_range(),
                None => embeddings_range.clone(),
            };
            let layer = BertLayer::load(loader, index, config, input_range.as_deref())?;
            layers.push(layer);
        }
        Ok(Self { layers })
    }

    fn forward(&self, hidden: &Tensor, pass: &Pass) -> Result<Tensor> {
        let mut hidden = hidden.clone();
        for layer in &self.layers {
            hidden = layer.forward(&hidden, pass)?;
        }
        Ok(hidden)
    }
}

/// Tokens' worth of idle workspaces kept between batches: 8192 (~126 MB for all-MiniLM-L6-v2)
/// is what one call of the Python `Encoder` can need, so a stream of batches, long or short,
/// runs on buffers that are already mapped (fresh ones cost page faults, or a huge-page
/// compaction, on first touch: 1-4% of a long batch). Like an inference runtime's arena, the
/// memory stays at the largest batch seen; concurrent calls beyond it get buffers of their own.
const KEPT_WORKSPACE_TOKENS: usize = 8192;

/// A BERT encoder with its weights, immutable after `load` (shared across threads freely).
pub struct BertModel {
    config: BertConfig,
    backend: Backend,
    compute: Compute,
    embeddings: BertEmbeddings,
    encoder: BertEncoder,
    /// Width of the sentence vectors the workspaces' `pooled` tensor holds.
    output_dim: usize,
    /// Idle workspaces (fused backend); concurrent batches each take their own.
    workspaces: Mutex<Vec<Workspace>>,
}

impl BertModel {
    /// Loads `model.safetensors` (memory-mapped) for `config`, checking every tensor's dtype
    /// and shape before copying it. The fused backend packs the linear layers' weights for
    /// this CPU's kernels in `compute`; the stock backend computes in float32 only.
    /// `output_dim` is the width of the sentence vectors pooled from it.
    pub fn load(
        weights_path: &Path,
        config: BertConfig,
        compute: Compute,
        backend: Backend,
        output_dim: usize,
    ) -> Result<Self> {
        if matches!(backend, Backend::Stock(_)) && compute != Compute::Float32 {
            return Err(Error::Unsupported(format!(
                "compute {} on Candle's stock ops (they run float32)",
                compute.name()
            )));
        }
        let loader = Loader {
            weights: WeightReader::open(weights_path)?,
            backend: backend.clone(),
            compute,
            isa: Isa::detected(),
        };
        let embeddings = BertEmbeddings::load(&loader, &config)?;
        let encoder = BertEncoder::load(&loader, &config, embeddings.output_range())?;
        Ok(Self {
            config,
            backend,
            compute,
            embeddings,
            encoder,
            output_dim,
            workspaces: Mutex::new(Vec::new()),
        })
    }

    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The arithmetic the linear layers run in.
    pub fn compute(&self) -> Compute {
        self.compute
    }

    /// Runs the fused encoder over `tokens` and hands `then` the last hidden state
    /// (`[tokens, hidden]`, in the workspace) and the pass (sequence offsets, the workspace's
    /// buffers), so pooling reads the hidden states in place. Runs on the current rayon pool.
    pub fn forward_packed<R>(
        &self,
        tokens: &PackedTokens,
        then: impl FnOnce(&Tensor, &Pass) -> Result<R>,
    ) -> Result<R> {
        if !matches!(self.backend, Backend::Fused) {
            return Err(mismatch("BertModel::forward_packed"));
        }
        let (n, sequences) = (tokens.len(), tokens.sequences());
        let mut table = Vec::with_capacity(3 * n);
        for t in 0..n {
            table.extend([tokens.ids[t], tokens.positions[t], tokens.type_ids[t]]);
        }
        let table = Tensor::from_vec(table, (n, 3), &Device::Cpu)?;
        let offsets: Vec<u32> = tokens.starts.iter().map(|&s| s as u32).collect();
        let offsets = Tensor::from_vec(offsets, sequences + 1, &Device::Cpu)?;

        let workspace = match self.idle_workspaces().pop() {
            Some(w) if w.fits(n, sequences) => w,
            _ => {
                let widths = Widths {
                    hidden: self.config.hidden_size,
                    intermediate: self.config.intermediate_size,
                    output: self.output_dim,
                };
                Workspace::new(n, n.max(sequences), widths)?
            }
        };
        let buffers = workspace.narrowed(n, sequences)?;
        let pass = Pass::Fused {
            offsets: &offsets,
            buffers: &buffers,
        };
        let result = if n == 0 {
            // No real token: nothing to run, only pooling (of nothing) to do.
            then(&buffers.hidden, &pass)
        } else {
            let embedded = timed(Stage::Embeddings, || self.embeddings.forward(&table, &pass))?;
            let hidden = self.encoder.forward(&embedded, &pass)?;
            then(&hidden, &pass)
        };
        drop(buffers);
        let mut idle = self.idle_workspaces();
        let kept: usize = idle.iter().map(Workspace::capacity_tokens).sum();
        if kept + workspace.capacity_tokens() <= KEPT_WORKSPACE_TOKENS {
            idle.push(workspace);
        }
        result
    }

    /// Runs the stock encoder over a padded batch, on the backend's device, and hands `then`
    /// the last hidden state (`[batch, seq, hidden]`, padding positions hold whatever
    /// attention made of them) and the pass (the masks).
    pub fn forward_stock<R>(
        &self,
        batch: &TokenBatch,
        then: impl FnOnce(&Tensor, &Pass) -> Result<R>,
    ) -> Result<R> {
        let Backend::Stock(device) = &self.backend else {
            return Err(mismatch("BertModel::forward_stock"));
        };
        let (b, s) = (batch.batch, batch.seq_len);
        let mut table = Vec::with_capacity(3 * b * s);
        for i in 0..b * s {
            table.extend([batch.ids[i], (i % s) as u32, batch.type_ids[i]]);
        }
        let table = Tensor::from_vec(table, (b, s, 3), device)?;
        let mask: Vec<f32> = batch.mask.iter().map(|&m| f32::from(m)).collect();
        let mask = Tensor::from_vec(mask, (b, s), device)?;
        // 0 for a token, f32::MIN for padding: exp() of a padded score is exactly 0.
        let additive = ((mask.clone() - 1.0)? * f64::from(f32::MAX))?.reshape((b, 1, 1, s))?;
        let pass = Pass::Stock {
            tokens: &mask,
            mask: &additive,
        };
        let embedded = self.embeddings.forward(&table, &pass)?;
        let hidden = self.encoder.forward(&embedded, &pass)?;
        then(&hidden, &pass)
    }

    /// The last hidden state in the padded layout, [batch * seq_len, hidden]; padding
    /// positions are zero (nothing attends to them, and they attend to nothing).
    pub fn forward(&self, batch: &TokenBatch) -> Result<Vec<f32>> {
        let h = self.config.hidden_size;
        if let Backend::Stock(_) = self.backend {
            return self.forward_stock(batch, |hidden, pass| {
                let Pass::Stock { tokens, .. } = pass else {
                    return Err(mismatch("BertModel::forward"));
                };
                let hidden = hidden.broadcast_mul(&tokens.unsqueeze(2)?)?;
                Ok(hidden.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?)
            });
        }
        let tokens = PackedTokens::new(batch);
        let mut padded = vec![0.0f32; batch.batch * batch.seq_len * h];
        self.forward_packed(&tokens, |hidden, _| {
            with_floats(hidden, |packed| {
                for (row, &origin) in packed.chunks_exact(h).zip(&tokens.origin) {
                    padded[origin * h..(origin + 1) * h].copy_from_slice(row);
                }
            })
        })?;
        Ok(padded)
    }

    /// The lock guards only a push or a pop; a panic elsewhere cannot leave the list
    /// half-changed, so a poisoned lock is still sound to use.
    fn idle_workspaces(&self) -> MutexGuard<'_, Vec<Workspace>> {
        self.workspaces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
