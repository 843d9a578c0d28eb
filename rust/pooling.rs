//! Sentence vectors from token vectors: CLS / max / mean / mean-sqrt-len pooling over the tokens
//! the attention mask marks as real, concatenated in the order sentence-transformers uses, then
//! optional L2 normalisation. Written straight into the caller's output rows with the SIMD
//! kernels (`ops::PoolOp` runs them as a Candle op); [`pool_padded`] is the same on Candle's
//! stock ops; [`Pooling`] is the step as a block of the encoder, choosing between the two.

use candle_core::Tensor;

use crate::config::{PoolingMode, SentenceConfig};
use crate::error::Result;
use crate::kernels::{self, Isa};
use crate::model::Pass;
use crate::ops::PoolOp;
use crate::stage_timing::{timed, Stage};

/// sentence-transformers' floor for the token count (avoids 0/0 for an all-padding row).
const MIN_TOKEN_COUNT: f32 = 1e-9;
/// torch.nn.functional.normalize's floor for the norm: a zero vector stays zero.
const MIN_NORM: f32 = 1e-12;
/// sentence-transformers masks padding with this before max pooling.
const MAX_POOL_FILL: f32 = -1e9;

/// Pools `hidden` ([batch, seq, dim] row-major) into `out` ([batch, dim * modes.len()]).
///
/// `mask` is [batch, seq] with 1 for tokens and 0 for padding. Returns without writing if the
/// sizes disagree; callers size the buffers from the same batch, so that cannot happen.
#[allow(clippy::too_many_arguments)]
pub fn pool_into(
    isa: Isa,
    hidden: &[f32],
    mask: &[u8],
    seq: usize,
    dim: usize,
    modes: &[PoolingMode],
    normalize: bool,
    out: &mut [f32],
) {
    let out_dim = dim * modes.len();
    if seq == 0 || dim == 0 || out_dim == 0 {
        return;
    }
    let batch = mask.len() / seq;
    if hidden.len() != batch * seq * dim || out.len() != batch * out_dim {
        return;
    }
    let mut real = Vec::with_capacity(seq * dim);
    for ((row_out, tokens), row_mask) in out
        .chunks_exact_mut(out_dim)
        .zip(hidden.chunks_exact(seq * dim))
        .zip(mask.chunks_exact(seq))
    {
        real.clear();
        for (token, _) in tokens
            .chunks_exact(dim)
            .zip(row_mask)
            .filter(|(_, &m)| m == 1)
        {
            real.extend_from_slice(token);
        }
        pool_sequence(isa, &real, dim, modes, normalize, row_out);
    }
}

/// Pools one sequence's real tokens (`tokens`: [n, dim], padding already removed, as the
/// packed forward pass produces them) into `out` ([dim * modes.len()]).
pub fn pool_sequence(
    isa: Isa,
    tokens: &[f32],
    dim: usize,
    modes: &[PoolingMode],
    normalize: bool,
    out: &mut [f32],
) {
    if dim == 0 || out.len() != dim * modes.len() || !tokens.len().is_multiple_of(dim) {
        return;
    }
    let count = (tokens.len() / dim) as f32;
    for (segment, mode) in out.chunks_exact_mut(dim).zip(modes) {
        match mode {
            // The first real token, as sentence-transformers >= 6 takes it; with right
            // padding that is position 0, the [CLS] token. No tokens: a zero vector.
            PoolingMode::Cls => match tokens.get(..dim) {
                Some(first) => segment.copy_from_slice(first),
                None => segment.fill(0.0),
            },
            PoolingMode::Max => {
                segment.fill(MAX_POOL_FILL);
                for token in tokens.chunks_exact(dim) {
                    kernels::max_assign(isa, segment, token);
                }
            }
            PoolingMode::Mean | PoolingMode::MeanSqrtLen => {
                segment.fill(0.0);
                for token in tokens.chunks_exact(dim) {
                    kernels::add_assign(isa, segment, token);
                }
                let count = count.max(MIN_TOKEN_COUNT);
                let divisor = if *mode == PoolingMode::Mean {
                    count
                } else {
                    count.sqrt()
                };
                kernels::scale(isa, segment, 1.0 / divisor);
            }
        }
    }
    if normalize {
        normalize_in_place(isa, out);
    }
}

/// x / max(||x||, 1e-12).
pub fn normalize_in_place(isa: Isa, x: &mut [f32]) {
    let norm = kernels::sum_squares(isa, x).sqrt();
    kernels::scale(isa, x, 1.0 / norm.max(MIN_NORM));
}

/// The sentence-transformers Pooling step (and Normalize, when asked) as a block of the
/// encoder: on the fused backend our kernels as a Candle op ([`PoolOp`]) writing the
/// workspace's `pooled` tensor, on the stock backend Candle's tensor ops ([`pool_padded`]).
pub struct Pooling {
    isa: Isa,
    dim: usize,
    modes: Vec<PoolingMode>,
}

impl Pooling {
    /// Pools token vectors of width `dim` by the modes of `sentence` (its Pooling config).
    pub fn load(sentence: &SentenceConfig, dim: usize) -> Self {
        Self {
            isa: Isa::detected(),
            dim,
            modes: sentence.pooling.clone(),
        }
    }

    /// Sentence vectors `[sequences, dim * modes]` from the last hidden state; `normalize`
    /// adds the L2 normalisation.
    pub fn forward(&self, hidden: &Tensor, pass: &Pass, normalize: bool) -> Result<Tensor> {
        match pass {
            Pass::Fused { offsets, buffers } => timed(Stage::Pooling, || {
                let op = PoolOp {
                    isa: self.isa,
                    dim: self.dim,
                    modes: &self.modes,
                    normalize,
                };
                buffers.pooled.inplace_op3(hidden, offsets, &op)?;
                Ok(buffers.pooled.clone())
            }),
            Pass::Stock { tokens, .. } => Ok(pool_padded(hidden, tokens, &self.modes, normalize)?),
        }
    }
}

/// Pooling and normalisation on Candle's stock ops, for the stock backend: `hidden`
/// `[batch, seq, dim]` and `mask` f32 `[batch, seq]` (1 for a token) to `[batch, dim * modes]`,
/// the same arithmetic as [`pool_sequence`] in tensor form.
pub fn pool_padded(
    hidden: &Tensor,
    mask: &Tensor,
    modes: &[PoolingMode],
    normalize: bool,
) -> candle_core::Result<Tensor> {
    let (batch, _, dim) = hidden.dims3()?;
    let weights = mask.unsqueeze(2)?;
    let count = mask.sum_keepdim(1)?;
    let mut parts = Vec::with_capacity(modes.len());
    for mode in modes {
        parts.push(match mode {
            PoolingMode::Cls => {
                // The first real token (argmax finds the first 1); zero for a row without one.
                let first = mask.argmax_keepdim(1)?.unsqueeze(2)?;
                let first = first.broadcast_as((batch, 1, dim))?.contiguous()?;
                let any = mask.max_keepdim(1)?;
                hidden.gather(&first, 1)?.squeeze(1)?.broadcast_mul(&any)?
            }
            PoolingMode::Max => {
                let fill = ((weights.clone() - 1.0)? * f64::from(-MAX_POOL_FILL))?;
                hidden
                    .broadcast_mul(&weights)?
                    .broadcast_add(&fill)?
                    .max(1)?
            }
            PoolingMode::Mean | PoolingMode::MeanSqrtLen => {
                let sum = hidden.broadcast_mul(&weights)?.sum(1)?;
                let count = count.clamp(MIN_TOKEN_COUNT, f32::MAX)?;
                let divisor = match mode {
                    PoolingMode::Mean => count,
                    _ => count.sqrt()?,
                };
                sum.broadcast_div(&divisor)?
            }
        });
    }
    let pooled = Tensor::cat(&parts, 1)?;
    if !normalize {
        return Ok(pooled);
    }
    let norm = pooled
        .sqr()?
        .sum_keepdim(1)?
        .sqrt()?
        .clamp(MIN_NORM, f32::MAX)?;
    pooled.broadcast_div(&norm)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straightforward reference in f64, written independently of the kernels.
    fn reference(
        hidden: &[f32],
        mask: &[u8],
        seq: usize,
        dim: usize,
        mode: PoolingMode,
    ) -> Vec<Vec<f64>> {
        let batch = mask.len() / seq;
        (0..batch)
            .map(|b| {
                let token = |t: usize, d: usize| f64::from(hidden[(b * seq + t) * dim + d]);
                let real: Vec<usize> = (0..seq).filter(|&t| mask[b * seq + t] == 1).collect();
                let count = (real.len() as f64).max(1e-9);
                (0..dim)
                    .map(|d| match mode {
                        // No real token (an all-padding row): nothing to pool, a zero vector.
                        PoolingMode::Cls => real.first().map_or(0.0, |&t| token(t, d)),
                        PoolingMode::Max => real.iter().map(|&t| token(t, d)).fold(-1e9, f64::max),
                        PoolingMode::Mean => real.iter().map(|&t| token(t, d)).sum::<f64>() / count,
                        PoolingMode::MeanSqrtLen => {
                            real.iter().map(|&t| token(t, d)).sum::<f64>() / count.sqrt()
                        }
                    })
                    .collect()
            })
            .collect()
    }

    fn sample(batch: usize, seq: usize, dim: usize) -> (Vec<f32>, Vec<u8>) {
        let hidden = (0..batch * seq * dim)
            .map(|i| ((i * 7919 % 1000) as f32 / 250.0) - 2.0)
            .collect();
        // Row b has b % seq + 1 real tokens, the last row none (all padding).
        let mask = (0..batch * seq)
            .map(|i| {
                let (b, t) = (i / seq, i % seq);
                u8::from(b + 1 < batch && t <= b % seq)
            })
            .collect();
        (hidden, mask)
    }

    #[test]
    fn every_mode_matches_the_reference_on_every_isa() {
        let (batch, seq, dim) = (5, 6, 37);
        let (hidden, mask) = sample(batch, seq, dim);
        for isa in Isa::available() {
            for mode in [
                PoolingMode::Cls,
                PoolingMode::Max,
                PoolingMode::Mean,
                PoolingMode::MeanSqrtLen,
            ] {
                let mut out = vec![f32::NAN; batch * dim];
                pool_into(isa, &hidden, &mask, seq, dim, &[mode], false, &mut out);
                let want = reference(&hidden, &mask, seq, dim, mode);
                for (b, row) in want.iter().enumerate() {
                    for (d, &w) in row.iter().enumerate() {
                        let got = f64::from(out[b * dim + d]);
                        assert!(
                            (got - w).abs() <= 1e-5 * w.abs().max(1.0),
                            "{isa:?} {mode:?} [{b},{d}] {got} vs {w}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn all_padding_row_pools_to_zero_and_stays_zero_when_normalised() {
        let (batch, seq, dim) = (5, 6, 37);
        let (hidden, mask) = sample(batch, seq, dim);
        let mut out = vec![f32::NAN; batch * dim];
        pool_into(
            Isa::detected(),
            &hidden,
            &mask,
            seq,
            dim,
            &[PoolingMode::Mean],
            true,
            &mut out,
        );
        assert!(out[(batch - 1) * dim..].iter().all(|&v| v == 0.0));
        for row in out[..(batch - 1) * dim].chunks_exact(dim) {
            let norm: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-6, "norm {norm}");
        }
    }

    #[test]
    fn concatenates_modes_in_order() {
        let (batch, seq, dim) = (2, 3, 4);
        let (hidden, mask) = sample(batch, seq, dim);
        let modes = [PoolingMode::Cls, PoolingMode::Mean];
        let mut both = vec![0.0; batch * dim * 2];
        pool_into(
            Isa::scalar(),
            &hidden,
            &mask,
            seq,
            dim,
            &modes,
            false,
            &mut both,
        );
        let mut cls = vec![0.0; batch * dim];
        pool_into(
            Isa::scalar(),
            &hidden,
            &mask,
            seq,
            dim,
            &modes[..1],
            false,
            &mut cls,
        );
        let mut mean = vec![0.0; batch * dim];
        pool_into(
            Isa::scalar(),
            &hidden,
            &mask,
            seq,
            dim,
            &modes[1..],
            false,
            &mut mean,
        );
        assert_eq!(&both[..dim], &cls[..dim]);
        assert_eq!(&both[dim..2 * dim], &mean[..dim]);
    }

    /// Says which kernels run-time dispatch picked; `make valgrind` prints this line (valgrind's
    /// emulated CPU has no AVX-512, so there the AVX2 kernels must be the ones chosen).
    #[test]
    fn reports_the_dispatched_isa() {
        let available: Vec<&str> = Isa::available().iter().map(|isa| isa.name()).collect();
        eprintln!(
            "minilm_fast kernels: dispatch picked {} (available: {})",
            Isa::detected().name(),
            available.join(", ")
        );
        // The best available, unless MINILM_FAST_ISA asks for less.
        if std::env::var_os("MINILM_FAST_ISA").is_none() {
            assert_eq!(Isa::available().last(), Some(&Isa::detected()));
        }
    }
}
