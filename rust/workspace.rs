//! The fused forward pass's buffers as Candle tensors kept from one batch to the next: hidden
//! states, the QKV projection, the attention context, the FFN's intermediate and a scratch for
//! the residual's other side, each a full-capacity `[tokens, width]` tensor `narrow`ed to the
//! batch's tokens. Every group of sequences that runs on its own thread takes a workspace of
//! its own, so no two threads ever wait on one storage's lock.

use candle_core::{Device, Storage, Tensor};

use crate::error::{Error, Result};
use crate::memory;

/// The tensors one batch runs in, each narrowed to its tokens (or sequences, for `pooled`).
pub struct Buffers {
    /// `[tokens, hidden]`: the embeddings' output, then every layer's input and output.
    pub hidden: Tensor,
    /// `[tokens, hidden]`: the attention block's output (the FFN's input and residual).
    pub scratch: Tensor,
    /// `[tokens, 3 * hidden]`: Q | K | V.
    pub qkv: Tensor,
    /// `[tokens, hidden]`: attention's output before its projection.
    pub context: Tensor,
    /// `[tokens, intermediate]`: the FFN's activations.
    pub intermediate: Tensor,
    /// `[sequences, output_dim]`: the sentence vectors.
    pub pooled: Tensor,
}

/// Widths of the kept tensors, from the model's configuration.
#[derive(Clone, Copy)]
pub struct Widths {
    pub hidden: usize,
    pub intermediate: usize,
    pub output: usize,
}

pub struct Workspace {
    tokens: usize,
    sequences: usize,
    full: Buffers,
}

/// A `[rows, width]` f32 CPU tensor over freshly allocated memory. Every element is written
/// before it is read, so zeros (the cheapest initialised value) do; before their first touch
/// the pages are offered as transparent huge pages: a long batch's ~126 MB of buffers would
/// otherwise cost ~30,000 page faults, 4% of the batch.
fn kept_tensor(rows: usize, width: usize) -> Result<Tensor> {
    let len = rows * width;
    let mut values = Vec::<f32>::with_capacity(len);
    memory::advise_huge_pages(values.spare_capacity_mut());
    values.resize(len, 0.0);
    Ok(Tensor::from_vec(values, (rows, width), &Device::Cpu)?)
}

impl Workspace {
    /// Room for `tokens` packed tokens in `sequences` sequences.
    pub fn new(tokens: usize, sequences: usize, widths: Widths) -> Result<Self> {
        let h = widths.hidden;
        Ok(Self {
            tokens,
            sequences,
            full: Buffers {
                hidden: kept_tensor(tokens, h)?,
                scratch: kept_tensor(tokens, h)?,
                qkv: kept_tensor(tokens, 3 * h)?,
                context: kept_tensor(tokens, h)?,
                intermediate: kept_tensor(tokens, widths.intermediate)?,
                pooled: kept_tensor(sequences, widths.output)?,
            },
        })
    }

    /// Whether a batch of `tokens` in `sequences` fits.
    pub fn fits(&self, tokens: usize, sequences: usize) -> bool {
        tokens <= self.tokens && sequences <= self.sequences
    }

    pub fn capacity_tokens(&self) -> usize {
        self.tokens
    }

    /// Views of the kept tensors sized for the batch (a `narrow` shares the storage).
    pub fn narrowed(&self, tokens: usize, sequences: usize) -> Result<Buffers> {
        let rows = |t: &Tensor, n: usize| t.narrow(0, 0, n);
        let full = &self.full;
        Ok(Buffers {
            hidden: rows(&full.hidden, tokens)?,
            scratch: rows(&full.scratch, tokens)?,
            qkv: rows(&full.qkv, tokens)?,
            context: rows(&full.context, tokens)?,
            intermediate: rows(&full.intermediate, tokens)?,
            pooled: rows(&full.pooled, sequences)?,
        })
    }
}

/// Calls `read` with the f32 values of `tensor`, a contiguous CPU tensor, in place.
pub fn with_floats<R>(tensor: &Tensor, read: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let (storage, layout) = tensor.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        return Err(Error::Compute(
            "reading a tensor that is not on the CPU".to_owned(),
        ));
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        return Err(Error::Compute(
            "reading a tensor that is not contiguous".to_owned(),
        ));
    };
    Ok(read(&cpu.as_slice::<f32>()?[start..end]))
}
