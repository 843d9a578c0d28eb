//! Row-wise vector math of the forward pass: bias + activation (the feed-forward
//! [`Activation`] is defined here), bias + residual, LayerNorm and the scaled softmax of
//! attention, with branch-free `exp` / `erfc` approximations.
//!
//! Each function is written once as plain Rust over lanes the compiler can vectorise, then
//! compiled again inside `#[target_feature]` wrappers (AVX-512, AVX2+FMA) and picked by `Isa`:
//! the portable wheel gets wide vectors without `target-cpu=native`. Reductions keep 16
//! partial sums, because the compiler may not reorder a single float sum.

use super::{Isa, Kind};

const LANES: usize = 16;

/// The activation of the feed-forward block, as named by `hidden_act` in `config.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Exact GELU with erf; what BERT and MiniLM were trained with (`"gelu"`).
    GeluErf,
    /// The tanh approximation (`"gelu_new"`, `"gelu_pytorch_tanh"`).
    GeluTanh,
    Relu,
}

impl Activation {
    /// The activation `hidden_act` names, `None` for one the kernels do not have.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "gelu" => Some(Self::GeluErf),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Some(Self::GeluTanh),
            "relu" => Some(Self::Relu),
            _ => None,
        }
    }
}

/// `a * b + c`, fused into one FMA where the instruction set has it. Rust never fuses on its
/// own, and `f32::mul_add` without FMA hardware is a slow library call, hence two flavours.
trait MulAdd {
    fn mul_add(a: f32, b: f32, c: f32) -> f32;
}

/// For the AVX2+FMA and AVX-512 builds of a body.
struct Fused;
/// For the portable build.
struct Separate;

impl MulAdd for Fused {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}

impl MulAdd for Separate {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

/// Runs `body(args...)` compiled for the instruction set `isa` names.
macro_rules! with_isa {
    ($isa:expr, fn $body:ident($($name:ident: $ty:ty),*) $(-> $ret:ty)?) => {{
        /// # Safety
        /// The CPU must support AVX-512F (an `Isa` of that kind vouches for it).
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f")]
        unsafe fn avx512($($name: $ty),*) $(-> $ret)? {
            $body::<Fused>($($name),*)
        }
        /// # Safety
        /// The CPU must support AVX2 and FMA (an `Isa` of that kind vouches for it).
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2($($name: $ty),*) $(-> $ret)? {
            $body::<Fused>($($name),*)
        }
        match $isa.0 {
            // SAFETY: an `Isa` names only instruction sets this CPU supports; the bodies are
            // safe Rust.
            #[cfg(target_arch = "x86_64")]
            Kind::Avx512 => unsafe { avx512($($name),*) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Kind::Avx2Fma => unsafe { avx2($($name),*) },
            _ => $body::<Separate>($($name),*),
        }
    }};
}

/// `out[i] += x[i]`.
pub fn add(isa: Isa, out: &mut [f32], x: &[f32]) {
    with_isa!(isa, fn add_body(out: &mut [f32], x: &[f32]))
}

/// `out[i] += x[i] + y[i]` (bias and residual in one pass).
pub fn add2(isa: Isa, out: &mut [f32], x: &[f32], y: &[f32]) {
    with_isa!(isa, fn add2_body(out: &mut [f32], x: &[f32], y: &[f32]))
}

/// `out[i] = activation(out[i] + bias[i])`.
pub fn bias_activation(isa: Isa, out: &mut [f32], bias: &[f32], activation: Activation) {
    with_isa!(isa, fn bias_activation_body(out: &mut [f32], bias: &[f32], activation: Activation))
}

/// LayerNorm of one row in place: `(x - mean) / sqrt(var + eps) * gamma + beta`.
pub fn layer_norm(isa: Isa, row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    with_isa!(isa, fn layer_norm_body(row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32))
}

/// `row = softmax(row * scale)` in place (`scale > 0`), the attention probabilities.
pub fn softmax_scaled(isa: Isa, row: &mut [f32], scale: f32) {
    with_isa!(isa, fn softmax_body(row: &mut [f32], scale: f32))
}

#[inline(always)]
fn add_body<M: MulAdd>(out: &mut [f32], x: &[f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o += v;
    }
}

#[inline(always)]
fn add2_body<M: MulAdd>(out: &mut [f32], x: &[f32], y: &[f32]) {
    for ((o, &a), &b) in out.iter_mut().zip(x).zip(y) {
        *o += a + b;
    }
}

#[inline(always)]
fn bias_activation_body<M: MulAdd>(out: &mut [f32], bias: &[f32], activation: Activation) {
    let pairs = out.iter_mut().zip(bias);
    match activation {
        Activation::GeluErf => pairs.for_each(|(o, &b)| *o = gelu_erf::<M>(*o + b)),
        Activation::GeluTanh => pairs.for_each(|(o, &b)| *o = gelu_tanh::<M>(*o + b)),
        Activation::Relu => pairs.for_each(|(o, &b)| *o = (*o + b).max(0.0)),
    }
}

#[inline(always)]
fn layer_norm_body<M: MulAdd>(row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let n = row.len() as f32;
    let mean = lane_sum(row, |x| x) / n;
    let var = lane_sum(row, |x| (x - mean) * (x - mean)) / n;
    let inv_std = 1.0 / (var + eps).sqrt();
    for ((x, &g), &b) in row.iter_mut().zip(gamma).zip(beta) {
        *x = M::mul_add((*x - mean) * inv_std, g, b);
    }
}

#[inline(always)]
fn softmax_body<M: MulAdd>(row: &mut [f32], scale: f32) {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (m, &x) in lanes.iter_mut().zip(chunk) {
            *m = m.max(x);
        }
    }
    let tail_max = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    let max = lanes.iter().fold(tail_max, |m, &x| m.max(x)) * scale;
    // Exponentials and their sum in one pass over the row.
    let mut sums = [0.0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (x, sum) in chunk.iter_mut().zip(sums.iter_mut()) {
            *x = exp::<M>(M::mul_add(*x, scale, -max));
            *sum += *x;
        }
    }
    // The tail as one more full vector, padded with -inf (whose exponential, clamped, is ~1e-38
    // and vanishes in the sum): scores of a short sentence are all tail (15 of them for 15
    // tokens), and exp one lane at a time cost more than the attention GEMMs around it.
    let tail = chunks.into_remainder();
    let mut padded = [f32::NEG_INFINITY; LANES];
    padded[..tail.len()].copy_from_slice(tail);
    for (x, sum) in padded.iter_mut().zip(sums.iter_mut()) {
        *x = exp::<M>(M::mul_add(*x, scale, -max));
        *sum += *x;
    }
    tail.copy_from_slice(&padded[..tail.len()]);
    let inv_sum = 1.0 / sums.iter().sum::<f32>();
    for x in row.iter_mut() {
        *x *= inv_sum;
    }
}

/// `Σ f(x)` with 16 partial sums, which the compiler turns into vector adds.
#[inline(always)]
fn lane_sum(values: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let mut chunks = values.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (acc, &x) in lanes.iter_mut().zip(chunk) {
            *acc += f(x);
        }
    }
    let tail: f32 = chunks.remainder().iter().map(|&x| f(x)).sum();
    lanes.iter().sum::<f32>() + tail
}

/// `e^x`, within 2 ulp for x in [-87, 88] (Cephes' expf polynomial), branch-free: n =
/// round(x / ln 2) and 2^n come from adding 1.5 · 2^23, which leaves n in the low mantissa
/// bits. (A float-to-int `as` cast would not vectorise: Rust's saturating semantics make the
/// compiler convert lane by lane.)
#[inline(always)]
fn exp<M: MulAdd>(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUNDER: f32 = 12_582_912.0; // 1.5 * 2^23
    let x = x.clamp(-87.0, 88.0);
    let shifted = M::mul_add(x, LOG2E, ROUNDER);
    let n = shifted - ROUNDER;
    let r = M::mul_add(-n, LN2_LO, M::mul_add(-n, LN2_HI, x));
    let mut p = 1.987_569_1e-4_f32;
    p = M::mul_add(p, r, 1.398_199_9e-3);
    p = M::mul_add(p, r, 8.333_452e-3);
    p = M::mul_add(p, r, 4.166_579_6e-2);
    p = M::mul_add(p, r, 1.666_666_5e-1);
    p = M::mul_add(p, r, 0.5);
    let y = M::mul_add(p * r, r, r + 1.0);
    // n + 127 in the exponent field: 2^n, with n in [-126, 127] after the clamp.
    let exponent = shifted
        .to_bits()
        .wrapping_sub(ROUNDER.to_bits())
        .wrapping_add(127);
    y * f32::from_bits(exponent << 23)
}

/// `erfc(z)` for `z >= 0`, relative error below 1.2e-7 (the Chebyshev fit of Numerical
/// Recipes' `erfcc`), branch-free.
#[inline(always)]
fn erfc_nonnegative<M: MulAdd>(z: f32) -> f32 {
    let t = 1.0 / M::mul_add(0.5, z, 1.0);
    let mut p = 0.170_872_77_f32;
    p = M::mul_add(p, t, -0.822_152_23);
    p = M::mul_add(p, t, 1.488_515_9);
    p = M::mul_add(p, t, -1.135_204);
    p = M::mul_add(p, t, 0.278_868_07);
    p = M::mul_add(p, t, -0.186_288_06);
    p = M::mul_add(p, t, 0.096_784_18);
    p = M::mul_add(p, t, 0.374_091_96);
    p = M::mul_add(p, t, 1.000_023_7);
    p = M::mul_add(p, t, -1.265_512_2);
    t * exp::<M>(M::mul_add(-z, z, p))
}

/// GELU with erf: `x Φ(x) = x/2 · (1 + erf(x/√2))`, via erfc so large negative inputs keep
/// their tiny values instead of cancelling to zero.
#[inline(always)]
fn gelu_erf<M: MulAdd>(x: f32) -> f32 {
    let tail = erfc_nonnegative::<M>(x.abs() * std::f32::consts::FRAC_1_SQRT_2);
    let twice_phi = if x >= 0.0 { 2.0 - tail } else { tail };
    0.5 * x * twice_phi
}

/// transformers' `gelu_new`: `x/2 · (1 + tanh(√(2/π) (x + 0.044715 x³)))`.
#[inline(always)]
fn gelu_tanh<M: MulAdd>(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let u = SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x);
    // tanh(u) = 1 - 2 / (e^{2u} + 1), finite for every u after exp's clamp.
    let tanh = 1.0 - 2.0 / (exp::<M>(2.0 * u) + 1.0);
    0.5 * x * (1.0 + tanh)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_a_few_ulp() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let (got, want) = (exp::<Separate>(x) as f64, (x as f64).exp());
            assert!(
                ((got - want) / want).abs() < 3e-7,
                "exp({x}) = {got}, want {want}"
            );
            x += 0.013;
        }
        assert_eq!(exp::<Separate>(-1000.0), exp::<Separate>(-87.0));
        assert!(exp::<Separate>(1000.0).is_finite());
    }

    #[test]
    fn gelu_matches_the_exact_formula() {
        for i in -2000..2000 {
            let x = i as f32 * 0.005;
            let exact = 0.5 * x * (1.0 + candle_core::cpu::erf::erf_f32(x / 2f32.sqrt()));
            let got = gelu_erf::<Separate>(x);
            assert!((got - exact).abs() < 2e-6, "gelu({x}) {got} {exact}");
            let u = 0.797_884_6 * (x + 0.044_715 * x * x * x);
            let tanh_exact = 0.5 * x * (1.0 + u.tanh());
            let got = gelu_tanh::<Separate>(x);
            assert!((got - tanh_exact).abs() < 2e-6, "gelu_tanh({x})");
        }
        assert!(gelu_erf::<Separate>(-12.0).abs() < 1e-20 && gelu_erf::<Separate>(12.0) == 12.0);
    }

    #[test]
    fn every_isa_agrees_with_scalar() {
        let row: Vec<f32> = (0..389)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 13.0)
            .collect();
        let gamma: Vec<f32> = (0..389).map(|i| 1.0 + i as f32 / 500.0).collect();
        let beta: Vec<f32> = (0..389).map(|i| i as f32 / 1000.0).collect();
        let scalar = Isa::scalar();
        for isa in Isa::available() {
            let (mut a, mut b) = (row.clone(), row.clone());
            layer_norm(isa, &mut a, &gamma, &beta, 1e-12);
            layer_norm(scalar, &mut b, &gamma, &beta, 1e-12);
            close(&a, &b, 1e-5);
            let (mut a, mut b) = (row.clone(), row.clone());
            softmax_scaled(isa, &mut a, 0.125);
            softmax_scaled(scalar, &mut b, 0.125);
            close(&a, &b, 1e-7);
            assert!((a.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            let (mut a, mut b) = (row.clone(), row.clone());
            bias_activation(isa, &mut a, &beta, Activation::GeluErf);
            bias_activation(scalar, &mut b, &beta, Activation::GeluErf);
            close(&a, &b, 1e-6);
        }
    }

    #[test]
    fn layer_norm_and_softmax_against_f64() {
        let row: Vec<f32> = (0..384)
            .map(|i| ((i * 7919 % 997) as f32) / 100.0 - 5.0)
            .collect();
        let mut normed = row.clone();
        layer_norm(
            Isa::detected(),
            &mut normed,
            &[1.0; 384],
            &[0.0; 384],
            1e-12,
        );
        let mean = row.iter().map(|&x| x as f64).sum::<f64>() / 384.0;
        let var = row.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / 384.0;
        for (&x, &y) in row.iter().zip(&normed) {
            assert!(((x as f64 - mean) / var.sqrt() - y as f64).abs() < 1e-5);
        }
        let mut probs = row.clone();
        softmax_scaled(Isa::detected(), &mut probs, 0.5);
        let max = row.iter().fold(f64::MIN, |m, &x| m.max(x as f64 * 0.5));
        let total: f64 = row.iter().map(|&x| (x as f64 * 0.5 - max).exp()).sum();
        for (&x, &p) in row.iter().zip(&probs) {
            assert!(((x as f64 * 0.5 - max).exp() / total - p as f64).abs() < 1e-7);
        }
    }

    fn close(a: &[f32], b: &[f32], tolerance: f32) {
        for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= tolerance * (1.0 + y.abs()),
                "at {i}: {x} vs {y}"
            );
        }
    }
}
