//! The element-wise work of the forward pass (bias + activation, bias + residual, scaled and
//! masked softmax, the embedding sum) as Candle custom ops, fused so each is one pass over memory.
//!
//! Why not Candle's own ops: above 64K elements Candle 0.11 runs element-wise ops on a global
//! pool sized to the machine, which would ignore the caller's `threads`. These run with rayon
//! on whatever pool the caller installed (the encoder's own), so `threads = 1` is one core.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape};
use rayon::prelude::*;

use crate::config::Activation;

type OpResult<T> = candle_core::Result<T>;

/// The contiguous f32 data a layout describes, or an error naming the op.
fn f32_slice<'a>(op: &str, storage: &'a CpuStorage, layout: &Layout) -> OpResult<&'a [f32]> {
    let data = storage.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{op}: input must be contiguous"),
    }
}

fn last_dim(op: &str, layout: &Layout) -> OpResult<usize> {
    match layout.dims().last() {
        Some(&d) if d > 0 => Ok(d),
        _ => candle_core::bail!("{op}: input has no last dimension"),
    }
}

/// Exact GELU, x * Φ(x), with libm's erff as in Candle and PyTorch.
#[inline]
fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + candle_core::cpu::erf::erf_f32(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// The tanh approximation (transformers' `gelu_new` / `gelu_pytorch_tanh`).
#[inline]
fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x)).tanh())
}

/// `act(x + bias)`, bias broadcast over the rows of `x` ([rows, d]).
pub struct BiasActivation {
    pub activation: Option<Activation>,
}

impl CustomOp2 for BiasActivation {
    fn name(&self) -> &'static str {
        "bias-activation"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        bias: &CpuStorage,
        bias_layout: &Layout,
    ) -> OpResult<(CpuStorage, Shape)> {
        let (xs, bs) = (
            f32_slice(self.name(), x, x_layout)?,
            f32_slice(self.name(), bias, bias_layout)?,
        );
        let d = last_dim(self.name(), x_layout)?;
        if bs.len() != d {
            candle_core::bail!(
                "bias-activation: bias has {} values for rows of {d}",
                bs.len()
            );
        }
        let mut out = vec![0f32; xs.len()];
        let activation = self.activation;
        out.par_chunks_mut(d)
            .zip(xs.par_chunks(d))
            .for_each(|(o, x)| {
                for ((o, &x), &b) in o.iter_mut().zip(x).zip(bs) {
                    let v = x + b;
                    *o = match activation {
                        None => v,
                        Some(Activation::GeluErf) => gelu_erf(v),
                        Some(Activation::GeluTanh) => gelu_tanh(v),
                        Some(Activation::Relu) => v.max(0.0),
                    };
                }
            });
        Ok((CpuStorage::F32(out), x_layout.shape().clone()))
    }
}

/// `x + bias + residual`: a projection's bias and the block's skip connection in one pass.
pub struct BiasResidual;

impl CustomOp3 for BiasResidual {
    fn name(&self) -> &'static str {
        "bias-residual"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        bias: &CpuStorage,
        bias_layout: &Layout,
        residual: &CpuStorage,
        residual_layout: &Layout,
    ) -> OpResult<(CpuStorage, Shape)> {
        let xs = f32_slice(self.name(), x, x_layout)?;
        let bs = f32_slice(self.name(), bias, bias_layout)?;
        let rs = f32_slice(self.name(), residual, residual_layout)?;
        let d = last_dim(self.name(), x_layout)?;
        if bs.len() != d || rs.len() != xs.len() {
            candle_core::bail!("bias-residual: shapes disagree");
        }
        let mut out = vec![0f32; xs.len()];
        out.par_chunks_mut(d)
            .zip(xs.par_chunks(d).zip(rs.par_chunks(d)))
            .for_each(|(o, (x, r))| {
                for (((o, &x), &r), &b) in o.iter_mut().zip(x).zip(r).zip(bs) {
                    *o = x + b + r;
                }
            });
        Ok((CpuStorage::F32(out), x_layout.shape().clone()))
    }
}

/// `softmax(scale * scores + mask_bias)` over the last dimension of attention scores
/// [batch, heads, seq, seq], with `mask_bias` [batch, seq] (0 for tokens, a huge negative
/// number for padding, so padded keys get exactly zero weight).
pub struct MaskedSoftmax {
    pub scale: f32,
}

impl CustomOp2 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "masked-softmax"
    }

    fn cpu_fwd(
        &self,
        scores: &CpuStorage,
        scores_layout: &Layout,
        mask: &CpuStorage,
        mask_layout: &Layout,
    ) -> OpResult<(CpuStorage, Shape)> {
        let ss = f32_slice(self.name(), scores, scores_layout)?;
        let ms = f32_slice(self.name(), mask, mask_layout)?;
        let (batch, heads, seq, keys) = scores_layout.shape().dims4()?;
        if seq != keys || ms.len() != batch * seq {
            candle_core::bail!("masked-softmax: scores and mask shapes disagree");
        }
        let rows_per_item = heads * seq;
        let scale = self.scale;
        let mut out = vec![0f32; ss.len()];
        out.par_chunks_mut(seq)
            .zip(ss.par_chunks(seq))
            .enumerate()
            .for_each(|(row, (o, s))| {
                let bias = &ms[(row / rows_per_item) * seq..][..seq];
                let mut max = f32::NEG_INFINITY;
                for ((o, &s), &b) in o.iter_mut().zip(s).zip(bias) {
                    *o = s * scale + b;
                    max = max.max(*o);
                }
                let mut sum = 0f32;
                for o in o.iter_mut() {
                    *o = (*o - max).exp();
                    sum += *o;
                }
                let inv = 1.0 / sum;
                for o in o.iter_mut() {
                    *o *= inv;
                }
            });
        Ok((CpuStorage::F32(out), scores_layout.shape().clone()))
    }
}

/// word[ids] + position[0..seq] + token_type[types]: rows of `words` and `types` ([batch*seq,
/// hidden]) plus the position row of each token ([seq, hidden]).
pub struct EmbeddingSum {
    pub seq_len: usize,
}

impl CustomOp3 for EmbeddingSum {
    fn name(&self) -> &'static str {
        "embedding-sum"
    }

    fn cpu_fwd(
        &self,
        words: &CpuStorage,
        words_layout: &Layout,
        positions: &CpuStorage,
        positions_layout: &Layout,
        types: &CpuStorage,
        types_layout: &Layout,
    ) -> OpResult<(CpuStorage, Shape)> {
        let ws = f32_slice(self.name(), words, words_layout)?;
        let ps = f32_slice(self.name(), positions, positions_layout)?;
        let ts = f32_slice(self.name(), types, types_layout)?;
        let d = last_dim(self.name(), words_layout)?;
        if ts.len() != ws.len() || ps.len() != self.seq_len * d {
            candle_core::bail!("embedding-sum: shapes disagree");
        }
        let seq = self.seq_len;
        let mut out = vec![0f32; ws.len()];
        out.par_chunks_mut(d)
            .zip(ws.par_chunks(d).zip(ts.par_chunks(d)))
            .enumerate()
            .for_each(|(token, (o, (w, t)))| {
                let p = &ps[(token % seq) * d..][..d];
                for (((o, &w), &t), &p) in o.iter_mut().zip(w).zip(t).zip(p) {
                    *o = w + p + t;
                }
            });
        Ok((CpuStorage::F32(out), words_layout.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    fn tensor(values: &[f32], shape: &[usize]) -> Tensor {
        Tensor::from_slice(values, shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn bias_activation_matches_candle() {
        let x = Tensor::randn(0f32, 2.0, (5, 7), &Device::Cpu).unwrap();
        let b = Tensor::randn(0f32, 1.0, 7, &Device::Cpu).unwrap();
        let sum = x.broadcast_add(&b).unwrap();
        let cases = [
            (None, sum.clone()),
            (Some(Activation::GeluErf), sum.gelu_erf().unwrap()),
            (Some(Activation::GeluTanh), sum.gelu().unwrap()),
            (Some(Activation::Relu), sum.relu().unwrap()),
        ];
        for (activation, want) in cases {
            let got = x
                .apply_op2_no_bwd(&b, &BiasActivation { activation })
                .unwrap();
            let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap();
            assert!(diff.to_scalar::<f32>().unwrap() < 1e-6, "{activation:?}");
        }
    }

    #[test]
    fn masked_softmax_ignores_padded_keys_and_sums_to_one() {
        // batch 2, heads 1, seq 3; the second item's last key is padding.
        let scores = tensor(
            &[
                1., 2., 3., 0., 0., 0., -1., 5., 2., 1., 2., 3., 0., 0., 0., -1., 5., 2.,
            ],
            &[2, 1, 3, 3],
        );
        let mask = tensor(&[0., 0., 0., 0., 0., f32::MIN], &[2, 3]);
        let probs = scores
            .apply_op2_no_bwd(&mask, &MaskedSoftmax { scale: 0.5 })
            .unwrap();
        let rows = probs.reshape((6, 3)).unwrap().to_vec2::<f32>().unwrap();
        for row in &rows {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        for row in &rows[3..] {
            assert_eq!(row[2], 0.0);
        }
        // The first row is the plain softmax of [0.5, 1.0, 1.5].
        let e: Vec<f32> = [0.5f32, 1.0, 1.5].iter().map(|v| v.exp()).collect();
        let total: f32 = e.iter().sum();
        for (got, want) in rows[0].iter().zip(&e) {
            assert!((got - want / total).abs() < 1e-6);
        }
    }

    #[test]
    fn bias_residual_and_embedding_sum_add_the_right_rows() {
        let x = tensor(&[1., 2., 3., 4.], &[2, 2]);
        let b = tensor(&[10., 20.], &[2]);
        let r = tensor(&[100., 200., 300., 400.], &[2, 2]);
        let got = x.apply_op3_no_bwd(&b, &r, &BiasResidual).unwrap();
        assert_eq!(
            got.to_vec2::<f32>().unwrap(),
            vec![vec![111., 222.], vec![313., 424.]]
        );

        // Two sequences of two tokens: positions repeat per sequence.
        let words = tensor(&[1., 1., 2., 2., 3., 3., 4., 4.], &[4, 2]);
        let positions = tensor(&[10., 10., 20., 20.], &[2, 2]);
        let types = tensor(&[100., 100., 100., 100., 200., 200., 200., 200.], &[4, 2]);
        let got = words
            .apply_op3_no_bwd(&positions, &types, &EmbeddingSum { seq_len: 2 })
            .unwrap();
        assert_eq!(
            got.to_vec2::<f32>().unwrap(),
            vec![
                vec![111., 111.],
                vec![122., 122.],
                vec![213., 213.],
                vec![224., 224.]
            ]
        );
    }
}
