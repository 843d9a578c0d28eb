//! Our CPU kernels as Candle ops: each stage of the fused forward pass is a Candle in-place op
//! (`InplaceOp1/2/3`) that writes into a tensor the caller keeps (see `workspace.rs`), the way
//! candle's own `QMatMul` and candle-nn's `layer_norm` / `softmax_last_dim` are built: the
//! packed weights live inside the op struct and `cpu_fwd` runs our kernels on the storages'
//! slices. In-place, because an op returning a fresh tensor allocates its output, and a fresh
//! 38-50 MB buffer per layer costs page faults on long batches (docs/PERFORMANCE.md).
//!
//! The ops have only a CPU implementation; on other devices the blocks of `model.rs` run
//! Candle's stock ops instead. Every op checks dtypes, contiguity and sizes before it touches
//! memory, so calling one with the wrong tensors is a Candle error, never a panic.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, InplaceOp1, InplaceOp2, InplaceOp3, Layout, Result};
use rayon::prelude::*;

use crate::attention::self_attention;
use crate::config::{Activation, PoolingMode};
use crate::kernels::{vecmath, Bf16Dot, Isa};
use crate::linear::{Finish, Linear};
use crate::pooling;

/// Rows per parallel task in the row-wise passes (embeddings, LayerNorm).
const ROWS_PER_TASK: usize = 64;

/// The contiguous f32 elements `layout` views in `storage`.
fn floats<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        bail!("{op}: expected an f32 tensor, got {:?}", storage.dtype())
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("{op}: expected a contiguous tensor"),
    }
}

/// As [`floats`], writable.
fn floats_mut<'a>(storage: &'a mut CpuStorage, layout: &Layout, op: &str) -> Result<&'a mut [f32]> {
    let dtype = storage.dtype();
    let CpuStorage::F32(data) = storage else {
        bail!("{op}: expected an f32 output tensor, got {dtype:?}")
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&mut data[start..end]),
        None => bail!("{op}: expected a contiguous output tensor"),
    }
}

/// The contiguous u32 elements `layout` views in `storage`.
fn indices<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [u32]> {
    let CpuStorage::U32(data) = storage else {
        bail!("{op}: expected a u32 tensor, got {:?}", storage.dtype())
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("{op}: expected a contiguous tensor"),
    }
}

/// Sequence offsets (`offsets[s]..offsets[s + 1]` are sequence `s`'s packed rows), checked to
/// rise from 0 to `rows`.
fn sequence_offsets<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    rows: usize,
    op: &str,
) -> Result<&'a [u32]> {
    let offsets = indices(storage, layout, op)?;
    let rising = offsets.windows(2).all(|w| w[0] <= w[1]);
    if offsets.first() != Some(&0) || offsets.last().map(|&o| o as usize) != Some(rows) || !rising {
        bail!("{op}: sequence offsets must rise from 0 to the {rows} packed rows")
    }
    Ok(offsets)
}

/// Word + position + token-type embeddings and their LayerNorm, one packed token per row.
/// Output `[tokens, hidden]`; input: u32 `[tokens, 3]` rows of (word id, position, token type).
pub struct EmbeddingsOp {
    pub isa: Isa,
    pub hidden: usize,
    pub word: Vec<f32>,
    pub position: Vec<f32>,
    pub token_type: Vec<f32>,
    pub norm: LayerNormOp,
}

impl EmbeddingsOp {
    /// Whether every id of `tokens` has a row in its table (batches are checked when built;
    /// this keeps the op sound for any caller, at one compare per id).
    fn in_range(&self, tokens: &[u32]) -> bool {
        let rows = |table: &[f32]| (table.len() / self.hidden.max(1)) as u32;
        let (words, positions, kinds) = (
            rows(&self.word),
            rows(&self.position),
            rows(&self.token_type),
        );
        tokens
            .chunks_exact(3)
            .all(|t| t[0] < words && t[1] < positions && t[2] < kinds)
    }
}

impl InplaceOp2 for EmbeddingsOp {
    fn name(&self) -> &'static str {
        "minilm-embeddings"
    }

    fn cpu_fwd(&self, out: &mut CpuStorage, lo: &Layout, s: &CpuStorage, l: &Layout) -> Result<()> {
        let name = InplaceOp2::name(self);
        let h = self.hidden;
        let out = floats_mut(out, lo, name)?;
        let tokens = indices(s, l, name)?;
        if h == 0 || tokens.len() % 3 != 0 || out.len() != tokens.len() / 3 * h {
            bail!("{name}: expected [tokens, 3] ids for a [tokens, {h}] output")
        }
        if !self.in_range(tokens) {
            bail!("{name}: an id is outside its embedding table")
        }
        let norm = &self.norm;
        out.par_chunks_mut(h * ROWS_PER_TASK)
            .zip(tokens.par_chunks(3 * ROWS_PER_TASK))
            .for_each(|(rows, ids)| {
                for (row, id) in rows.chunks_exact_mut(h).zip(ids.chunks_exact(3)) {
                    let word = &self.word[id[0] as usize * h..][..h];
                    let position = &self.position[id[1] as usize * h..][..h];
                    let kind = &self.token_type[id[2] as usize * h..][..h];
                    row.copy_from_slice(word);
                    vecmath::add2(self.isa, row, position, kind);
                    vecmath::layer_norm(self.isa, row, &norm.gamma, &norm.beta, norm.eps);
                }
            });
        Ok(())
    }
}

/// LayerNorm over the last dimension, in place, rows in parallel.
pub struct LayerNormOp {
    pub isa: Isa,
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    pub eps: f32,
}

impl LayerNormOp {
    /// An estimate of each output channel's magnitude, `|β_c| + 2|γ_c|` (the normalised input
    /// is ~unit variance): the channels whose γ or β are large are the outliers of BERT's
    /// hidden states, and they are large for every token. int8 smooths the layers it feeds
    /// by it.
    pub fn output_range(&self) -> Vec<f32> {
        self.gamma
            .iter()
            .zip(&self.beta)
            .map(|(&g, &b)| b.abs() + 2.0 * g.abs())
            .collect()
    }
}

impl InplaceOp1 for LayerNormOp {
    fn name(&self) -> &'static str {
        "minilm-layer-norm"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let name = InplaceOp1::name(self);
        let size = self.gamma.len();
        let x = floats_mut(storage, layout, name)?;
        if size == 0 || layout.dims().last() != Some(&size) {
            bail!("{name}: expected rows of {size}, got {:?}", layout.dims())
        }
        x.par_chunks_mut(size * ROWS_PER_TASK).for_each(|rows| {
            for row in rows.chunks_exact_mut(size) {
                vecmath::layer_norm(self.isa, row, &self.gamma, &self.beta, self.eps);
            }
        });
        Ok(())
    }
}

/// A linear layer with its weights packed for our GEMM (float32, bfloat16 or int8) and the
/// bias, activation or residual fused into the GEMM's tiles. As an `InplaceOp2`
/// (`out.inplace_op2(x)`): `out = act(x W + b)`, or `x W + b` without an activation. As an
/// `InplaceOp3` (`out.inplace_op3(x, residual)`): `out = x W + b + residual`.
pub struct DenseOp {
    pub linear: Box<dyn Linear>,
    pub activation: Option<Activation>,
}

impl DenseOp {
    /// `x` as `rows × inputs` and `out` as `rows × outputs`, or an error saying which is off.
    fn check(&self, x: &[f32], out: &[f32], name: &str) -> Result<usize> {
        let (k, n) = (self.linear.inputs(), self.linear.outputs());
        let rows = x.len() / k.max(1);
        if k == 0 || x.len() != rows * k || out.len() != rows * n {
            bail!(
                "{name}: expected [rows, {k}] in and [rows, {n}] out, got {} and {} values",
                x.len(),
                out.len()
            )
        }
        Ok(rows)
    }
}

impl InplaceOp2 for DenseOp {
    fn name(&self) -> &'static str {
        "minilm-dense"
    }

    fn cpu_fwd(&self, out: &mut CpuStorage, lo: &Layout, s: &CpuStorage, l: &Layout) -> Result<()> {
        let name = InplaceOp2::name(self);
        let out = floats_mut(out, lo, name)?;
        let x = floats(s, l, name)?;
        let rows = self.check(x, out, name)?;
        let finish = match self.activation {
            Some(activation) => Finish::Activation(activation),
            None => Finish::Bias,
        };
        self.linear.forward(x, rows, out, finish);
        Ok(())
    }
}

impl InplaceOp3 for DenseOp {
    fn name(&self) -> &'static str {
        "minilm-dense-residual"
    }

    fn cpu_fwd(
        &self,
        out: &mut CpuStorage,
        lo: &Layout,
        s: &CpuStorage,
        l: &Layout,
        residual: &CpuStorage,
        lr: &Layout,
    ) -> Result<()> {
        let name = InplaceOp3::name(self);
        if self.activation.is_some() {
            bail!("{name}: a residual layer has no activation")
        }
        let out = floats_mut(out, lo, name)?;
        let x = floats(s, l, name)?;
        let residual = floats(residual, lr, name)?;
        self.check(x, out, name)?;
        if residual.len() != out.len() {
            bail!("{name}: the residual must be shaped like the output")
        }
        let rows = x.len() / self.linear.inputs();
        self.linear
            .forward(x, rows, out, Finish::Residual(residual));
        Ok(())
    }
}

/// Multi-head self-attention over packed tokens: `context.inplace_op3(qkv, offsets)` with
/// `qkv` `[tokens, 3 * hidden]` (Q | K | V), `offsets` u32 `[sequences + 1]` and `context`
/// `[tokens, hidden]`. Each sequence attends to its own tokens only, which is what the padding
/// mask does in a padded batch.
pub struct AttentionOp {
    pub isa: Isa,
    /// Run the two GEMMs of long sequences in bf16 (bfloat16 mode).
    pub bf16: Option<Bf16Dot>,
    pub heads: usize,
    pub head_dim: usize,
}

impl InplaceOp3 for AttentionOp {
    fn name(&self) -> &'static str {
        "minilm-attention"
    }

    fn cpu_fwd(
        &self,
        context: &mut CpuStorage,
        lc: &Layout,
        qkv: &CpuStorage,
        lq: &Layout,
        offsets: &CpuStorage,
        lo: &Layout,
    ) -> Result<()> {
        let name = InplaceOp3::name(self);
        let hidden = self.heads * self.head_dim;
        let context = floats_mut(context, lc, name)?;
        let qkv = floats(qkv, lq, name)?;
        let rows = context.len() / hidden.max(1);
        if hidden == 0 || context.len() != rows * hidden || qkv.len() != rows * 3 * hidden {
            bail!(
                "{name}: expected [tokens, {}] in and [tokens, {hidden}] out",
                3 * hidden
            )
        }
        let offsets = sequence_offsets(offsets, lo, rows, name)?;
        self_attention(
            self.isa,
            self.bf16,
            offsets,
            qkv,
            self.heads,
            self.head_dim,
            context,
        );
        Ok(())
    }
}

/// sentence-transformers pooling (CLS / max / mean / mean-sqrt-len, concatenated) and the
/// optional L2 normalisation: `out.inplace_op3(hidden, offsets)` with `hidden`
/// `[tokens, dim]`, `offsets` u32 `[sequences + 1]` and `out` `[sequences, dim * modes]`.
pub struct PoolOp<'a> {
    pub isa: Isa,
    pub dim: usize,
    pub modes: &'a [PoolingMode],
    pub normalize: bool,
}

impl InplaceOp3 for PoolOp<'_> {
    fn name(&self) -> &'static str {
        "minilm-pooling"
    }

    fn cpu_fwd(
        &self,
        out: &mut CpuStorage,
        lout: &Layout,
        hidden: &CpuStorage,
        lh: &Layout,
        offsets: &CpuStorage,
        lo: &Layout,
    ) -> Result<()> {
        let name = InplaceOp3::name(self);
        let (dim, out_dim) = (self.dim, self.dim * self.modes.len());
        let out = floats_mut(out, lout, name)?;
        let hidden = floats(hidden, lh, name)?;
        let rows = hidden.len() / dim.max(1);
        if dim == 0 || hidden.len() != rows * dim {
            bail!("{name}: expected [tokens, {dim}] hidden states")
        }
        let offsets = sequence_offsets(offsets, lo, rows, name)?;
        if out.len() != (offsets.len() - 1) * out_dim {
            bail!("{name}: expected [sequences, {out_dim}] out")
        }
        // Straight from the packed tokens: padding was never computed, so it needs no mask.
        for (row, range) in out.chunks_exact_mut(out_dim).zip(offsets.windows(2)) {
            let real = &hidden[range[0] as usize * dim..range[1] as usize * dim];
            pooling::pool_sequence(self.isa, real, dim, self.modes, self.normalize, row);
        }
        Ok(())
    }
}
