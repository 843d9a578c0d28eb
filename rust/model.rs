//! The BERT encoder on Candle tensors: embeddings, then per layer self-attention and a
//! feed-forward block, each followed by residual + LayerNorm (post-norm, as in BERT).
//! One struct per block, each with `load` and `forward`. Linear weights are transposed once at
//! load to [in, out] so every projection is a single GEMM over all tokens of the batch.

use std::path::Path;

use candle_core::{Device, Tensor};

use crate::batch::TokenBatch;
use crate::config::{Activation, BertConfig};
use crate::error::Result;
use crate::ops::{BiasActivation, BiasResidual, EmbeddingSum, MaskedSoftmax};
use crate::weights::WeightReader;

/// y = x W + b, with W stored transposed as [in, out].
struct Linear {
    weight_t: Tensor,
    bias: Tensor,
}

impl Linear {
    fn load(weights: &WeightReader, name: &str, inputs: usize, outputs: usize) -> Result<Self> {
        let weight = weights.tensor(&format!("{name}.weight"), &[outputs, inputs])?;
        let bias = weights.tensor(&format!("{name}.bias"), &[outputs])?;
        Ok(Self {
            weight_t: weight.t()?.contiguous()?,
            bias,
        })
    }

    /// Q, K and V side by side as one [in, 3*out] projection: one GEMM instead of three.
    fn load_fused(
        weights: &WeightReader,
        names: &[&str],
        inputs: usize,
        outputs: usize,
    ) -> Result<Self> {
        let parts = names
            .iter()
            .map(|name| Linear::load(weights, name, inputs, outputs))
            .collect::<Result<Vec<_>>>()?;
        let weight_t = Tensor::cat(&parts.iter().map(|p| &p.weight_t).collect::<Vec<_>>(), 1)?;
        let bias = Tensor::cat(&parts.iter().map(|p| &p.bias).collect::<Vec<_>>(), 0)?;
        Ok(Self { weight_t, bias })
    }

    /// `act(x W + b)` for `x` [tokens, in] -> [tokens, out]; no activation when `None`.
    fn forward(&self, x: &Tensor, activation: Option<Activation>) -> Result<Tensor> {
        let op = BiasActivation { activation };
        Ok(x.matmul(&self.weight_t)?
            .apply_op2_no_bwd(&self.bias, &op)?)
    }

    /// `x W + b + residual`, the projection that closes a residual block.
    fn forward_residual(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        Ok(x.matmul(&self.weight_t)?
            .apply_op3_no_bwd(&self.bias, residual, &BiasResidual)?)
    }
}

struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl LayerNorm {
    fn load(weights: &WeightReader, name: &str, size: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: weights.tensor(&format!("{name}.weight"), &[size])?,
            bias: weights.tensor(&format!("{name}.bias"), &[size])?,
            eps: eps as f32,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::layer_norm(
            x,
            &self.weight,
            &self.bias,
            self.eps,
        )?)
    }
}

struct Embeddings {
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    norm: LayerNorm,
}

impl Embeddings {
    fn load(weights: &WeightReader, config: &BertConfig) -> Result<Self> {
        let h = config.hidden_size;
        Ok(Self {
            word: weights.tensor("embeddings.word_embeddings.weight", &[config.vocab_size, h])?,
            position: weights.tensor(
                "embeddings.position_embeddings.weight",
                &[config.max_position_embeddings, h],
            )?,
            token_type: weights.tensor(
                "embeddings.token_type_embeddings.weight",
                &[config.type_vocab_size, h],
            )?,
            norm: LayerNorm::load(weights, "embeddings.LayerNorm", h, config.layer_norm_eps)?,
        })
    }

    /// -> [batch * seq_len, hidden]. Positions are 0..seq_len for every row, as in transformers.
    fn forward(&self, batch: &TokenBatch) -> Result<Tensor> {
        let tokens = batch.batch * batch.seq_len;
        let ids = Tensor::from_slice(&batch.ids, tokens, &Device::Cpu)?;
        let types = Tensor::from_slice(&batch.type_ids, tokens, &Device::Cpu)?;
        let positions = self.position.narrow(0, 0, batch.seq_len)?;
        let sum = self.word.index_select(&ids, 0)?.apply_op3_no_bwd(
            &positions,
            &self.token_type.index_select(&types, 0)?,
            &EmbeddingSum {
                seq_len: batch.seq_len,
            },
        )?;
        self.norm.forward(&sum)
    }
}

struct SelfAttention {
    qkv: Linear,
    output: Linear,
    norm: LayerNorm,
    heads: usize,
    head_dim: usize,
}

impl SelfAttention {
    fn load(weights: &WeightReader, prefix: &str, config: &BertConfig) -> Result<Self> {
        let h = config.hidden_size;
        let names = ["query", "key", "value"].map(|p| format!("{prefix}.attention.self.{p}"));
        let names = names.iter().map(String::as_str).collect::<Vec<_>>();
        Ok(Self {
            qkv: Linear::load_fused(weights, &names, h, h)?,
            output: Linear::load(weights, &format!("{prefix}.attention.output.dense"), h, h)?,
            norm: LayerNorm::load(
                weights,
                &format!("{prefix}.attention.output.LayerNorm"),
                h,
                config.layer_norm_eps,
            )?,
            heads: config.num_heads,
            head_dim: config.head_dim(),
        })
    }

    /// `x`: [batch * seq, hidden]; `mask_bias`: [batch, seq], 0 for tokens and a large
    /// negative number for padding, so padded keys get exactly zero attention weight.
    fn forward(&self, x: &Tensor, batch: usize, seq: usize, mask_bias: &Tensor) -> Result<Tensor> {
        let hidden = self.heads * self.head_dim;
        // [b*s, 3h] -> [3, b, heads, s, head_dim]
        let qkv = self
            .qkv
            .forward(x, None)?
            .reshape((batch, seq, 3, self.heads, self.head_dim))?
            .permute((2, 0, 3, 1, 4))?
            .contiguous()?;
        let (q, k, v) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
        let softmax = MaskedSoftmax {
            scale: 1.0 / (self.head_dim as f32).sqrt(),
        };
        let probs = q.matmul(&k.t()?)?.apply_op2_no_bwd(mask_bias, &softmax)?;
        let context = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((batch * seq, hidden))?;
        self.norm
            .forward(&self.output.forward_residual(&context, x)?)
    }
}

struct FeedForward {
    intermediate: Linear,
    output: Linear,
    norm: LayerNorm,
    activation: Activation,
}

impl FeedForward {
    fn load(weights: &WeightReader, prefix: &str, config: &BertConfig) -> Result<Self> {
        let (h, i) = (config.hidden_size, config.intermediate_size);
        Ok(Self {
            intermediate: Linear::load(weights, &format!("{prefix}.intermediate.dense"), h, i)?,
            output: Linear::load(weights, &format!("{prefix}.output.dense"), i, h)?,
            norm: LayerNorm::load(
                weights,
                &format!("{prefix}.output.LayerNorm"),
                h,
                config.layer_norm_eps,
            )?,
            activation: config.activation,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let activated = self.intermediate.forward(x, Some(self.activation))?;
        self.norm
            .forward(&self.output.forward_residual(&activated, x)?)
    }
}

struct Layer {
    attention: SelfAttention,
    feed_forward: FeedForward,
}

/// A BERT encoder with its weights, immutable after `load` (shared across threads freely).
pub struct BertModel {
    config: BertConfig,
    embeddings: Embeddings,
    layers: Vec<Layer>,
}

impl BertModel {
    /// Loads `model.safetensors` (memory-mapped) for `config`, checking every tensor's dtype and
    /// shape before copying it.
    pub fn load(weights_path: &Path, config: BertConfig) -> Result<Self> {
        let weights = WeightReader::open(weights_path)?;
        let embeddings = Embeddings::load(&weights, &config)?;
        let layers = (0..config.num_layers)
            .map(|i| {
                let prefix = format!("encoder.layer.{i}");
                Ok(Layer {
                    attention: SelfAttention::load(&weights, &prefix, &config)?,
                    feed_forward: FeedForward::load(&weights, &prefix, &config)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            config,
            embeddings,
            layers,
        })
    }

    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// The last hidden state, [batch * seq_len, hidden] row-major, as a flat vector.
    pub fn forward(&self, batch: &TokenBatch) -> Result<Vec<f32>> {
        if batch.batch == 0 {
            return Ok(Vec::new());
        }
        let (b, s) = (batch.batch, batch.seq_len);
        let mask_bias = mask_bias(&batch.mask, b, s)?;
        let mut x = self.embeddings.forward(batch)?;
        for layer in &self.layers {
            x = layer.attention.forward(&x, b, s, &mask_bias)?;
            x = layer.feed_forward.forward(&x)?;
        }
        Ok(x.flatten_all()?.to_vec1::<f32>()?)
    }
}

/// [batch, seq]: 0 where the mask is 1, f32::MIN where it is 0, as transformers does.
fn mask_bias(mask: &[u8], batch: usize, seq: usize) -> Result<Tensor> {
    let bias: Vec<f32> = mask
        .iter()
        .map(|&m| if m == 1 { 0.0 } else { f32::MIN })
        .collect();
    Ok(Tensor::from_vec(bias, (batch, seq), &Device::Cpu)?)
}
