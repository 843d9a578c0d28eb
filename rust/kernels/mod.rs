//! Hand-written SIMD kernels for the encoder and what follows it, with the instruction set
//! picked once at run time so one portable wheel uses AVX-512 on machines that have it and
//! still runs on any x86-64 or aarch64 CPU. They know nothing of the model: they take slices,
//! shapes and the few options they apply (an [`Activation`], an epilogue).
//!
//! - GEMM: one driver (`gemm`: blocking, task split, epilogue) over a micro-kernel trait, with
//!   the float32 (`gemm_f32`), bfloat16 (`gemm_bf16`) and int8 (`gemm_int8`) formats and
//!   their x86 kernels (`gemm_*_x86`; `simd_x86` holds what those share).
//! - Row-wise vector math of the forward pass (`vecmath`: bias + activation, LayerNorm,
//!   softmax) and the attention of short sequences in registers (`short_attention`).
//! - The pooling and normalisation ops below (`add_assign`, `max_assign`, `scale`,
//!   `sum_squares`; `pooling_x86`, `pooling_neon`, `pooling_scalar`).
//!
//! Every public function here is safe. An [`Isa`] can only be obtained from [`Isa::detected`],
//! [`Isa::available`] or [`Isa::scalar`], so holding one proves the CPU supports it; that is what
//! justifies the `unsafe` calls into `#[target_feature]` code.

pub mod gemm;
pub mod gemm_bf16;
#[cfg(target_arch = "x86_64")]
mod gemm_bf16_x86;
mod gemm_f32;
#[cfg(target_arch = "x86_64")]
mod gemm_f32_x86;
pub mod gemm_int8;
#[cfg(target_arch = "x86_64")]
mod gemm_int8_x86;
#[cfg(target_arch = "aarch64")]
mod pooling_neon;
mod pooling_scalar;
#[cfg(target_arch = "x86_64")]
mod pooling_x86;
pub mod short_attention;
#[cfg(target_arch = "x86_64")]
mod simd_x86;
#[cfg(test)]
mod test_data;
pub mod vecmath;

use std::sync::OnceLock;

pub use vecmath::Activation;

/// The instruction set a kernel call runs with. Opaque: a caller cannot name an instruction set
/// the CPU lacks, so the safe kernel functions below cannot reach an illegal instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Isa(Kind);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "aarch64")]
    Neon,
}

impl Isa {
    /// The plain-Rust kernels, valid on every CPU.
    pub fn scalar() -> Isa {
        Isa(Kind::Scalar)
    }

    /// The best instruction set this CPU supports, detected once per process.
    pub fn detected() -> Isa {
        static DETECTED: OnceLock<Isa> = OnceLock::new();
        *DETECTED.get_or_init(detect)
    }

    /// Every instruction set usable on this CPU, best last; tests compare each against scalar.
    pub fn available() -> Vec<Isa> {
        #[allow(unused_mut)]
        let mut kinds = vec![Kind::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                kinds.push(Kind::Avx2Fma);
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                kinds.push(Kind::Avx512);
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            if std::arch::is_aarch64_feature_detected!("neon") {
                kinds.push(Kind::Neon);
            }
        }
        kinds.into_iter().map(Isa).collect()
    }

    pub fn name(self) -> &'static str {
        match self.0 {
            Kind::Scalar => "scalar",
            #[cfg(target_arch = "x86_64")]
            Kind::Avx2Fma => "avx2+fma",
            #[cfg(target_arch = "x86_64")]
            Kind::Avx512 => "avx512f",
            #[cfg(target_arch = "aarch64")]
            Kind::Neon => "neon",
        }
    }
}

/// Proof that the CPU can run one of the int8 kernels, and which: AVX-512 VNNI (`vpdpbusd`,
/// u8 × s8 dot products into i32, with AVX-512 F/BW/VL) or, without it, AVX2
/// (`vpmaddubsw` + `vpmaddwd`, which saturates unless the weights keep to 7 bits). Opaque like
/// [`Isa`]: it holds the kernel itself, which only its CPU check constructs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Int8Dot(Int8Kind);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Int8Kind {
    #[cfg(target_arch = "x86_64")]
    Vnni512(gemm_int8_x86::Vnni512),
    #[cfg(target_arch = "x86_64")]
    Avx2(gemm_int8_x86::Avx2),
}

impl Int8Dot {
    /// The best int8 kernel of the detected instruction set (so `MINILM_FAST_ISA=avx2` gives
    /// the AVX2 one); `None` on other CPUs and when `MINILM_FAST_ISA` forced scalar.
    pub fn detected() -> Option<Int8Dot> {
        #[cfg(target_arch = "x86_64")]
        {
            let isa = Isa::detected().0;
            Self::available().into_iter().rev().find(|dot| match dot.0 {
                Int8Kind::Vnni512(_) => isa == Kind::Avx512,
                Int8Kind::Avx2(_) => isa == Kind::Avx512 || isa == Kind::Avx2Fma,
            })
        }
        #[cfg(not(target_arch = "x86_64"))]
        None
    }

    /// Every int8 kernel this CPU can run, best last (tests compare each against the
    /// integer arithmetic).
    pub fn available() -> Vec<Int8Dot> {
        #[allow(unused_mut)]
        let mut kinds = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            kinds.extend(gemm_int8_x86::Avx2::new().map(Int8Kind::Avx2));
            kinds.extend(gemm_int8_x86::Vnni512::new().map(Int8Kind::Vnni512));
        }
        kinds.into_iter().map(Int8Dot).collect()
    }

    /// The instructions the int8 kernel runs on.
    pub fn name(self) -> &'static str {
        match self.0 {
            #[cfg(target_arch = "x86_64")]
            Int8Kind::Vnni512(_) => "avx512-vnni",
            #[cfg(target_arch = "x86_64")]
            Int8Kind::Avx2(_) => "avx2",
        }
    }

    fn kind(self) -> Int8Kind {
        self.0
    }
}

/// Proof that the CPU has AVX512-BF16 (with BW and VL) (`vdpbf16ps`, bf16 pairs dotted into
/// f32) on top of the detected AVX-512: what the bfloat16 kernel runs on. Opaque like
/// [`Isa`]: it holds the kernel itself, which only its CPU check constructs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bf16Dot(Bf16Kernel);

#[cfg(target_arch = "x86_64")]
type Bf16Kernel = gemm_bf16_x86::Avx512Bf16;
/// No bfloat16 kernel off x86-64: a `Bf16Dot` cannot exist there.
#[cfg(not(target_arch = "x86_64"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bf16Kernel {}

impl Bf16Dot {
    /// `Some` when the bfloat16 kernels can run here (not when `MINILM_FAST_ISA` forced less).
    pub fn detected() -> Option<Bf16Dot> {
        #[cfg(target_arch = "x86_64")]
        {
            if Isa::detected().0 == Kind::Avx512 {
                return gemm_bf16_x86::Avx512Bf16::new().map(Bf16Dot);
            }
        }
        None
    }
}

fn detect() -> Isa {
    // `MINILM_FAST_ISA=scalar` (or avx2) forces a lesser kernel, for debugging and benchmarks.
    let forced = std::env::var("MINILM_FAST_ISA").ok();
    let available = Isa::available();
    if let Some(name) = forced {
        if let Some(isa) = available
            .iter()
            .find(|isa| isa.name().starts_with(name.as_str()))
        {
            return *isa;
        }
    }
    available.last().copied().unwrap_or_else(Isa::scalar)
}

/// `acc[i] += x[i]` over the common length.
pub fn add_assign(isa: Isa, acc: &mut [f32], x: &[f32]) {
    let n = acc.len().min(x.len());
    let (acc, x) = (&mut acc[..n], &x[..n]);
    // SAFETY: an `Isa` only exists for instruction sets the CPU supports (see `Isa`), and the
    // slices have the same length, as the kernels require.
    unsafe {
        match isa.0 {
            Kind::Scalar => pooling_scalar::add_assign(acc, x),
            #[cfg(target_arch = "x86_64")]
            Kind::Avx2Fma => pooling_x86::add_assign_avx2(acc, x),
            #[cfg(target_arch = "x86_64")]
            Kind::Avx512 => pooling_x86::add_assign_avx512(acc, x),
            #[cfg(target_arch = "aarch64")]
            Kind::Neon => pooling_neon::add_assign(acc, x),
        }
    }
}

/// `acc[i] = max(acc[i], x[i])` over the common length.
pub fn max_assign(isa: Isa, acc: &mut [f32], x: &[f32]) {
    let n = acc.len().min(x.len());
    let (acc, x) = (&mut acc[..n], &x[..n]);
    // SAFETY: as in `add_assign`: a supported instruction set, slices of equal length.
    unsafe {
        match isa.0 {
            Kind::Scalar => pooling_scalar::max_assign(acc, x),
            #[cfg(target_arch = "x86_64")]
            Kind::Avx2Fma => pooling_x86::max_assign_avx2(acc, x),
            #[cfg(target_arch = "x86_64")]
            Kind::Avx512 => pooling_x86::max_assign_avx512(acc, x),
            #[cfg(target_arch = "aarch64")]
            Kind::Neon => pooling_neon::max_assign(acc, x),
        }
    }
}

/// `x[i] *= factor`.
pub fn scale(isa: Isa, x: &mut [f32], factor: f32) {
    // SAFETY: an `Isa` only exists for instruction sets the CPU supports (see `Isa`).
    unsafe {
        match isa.0 {
            Kind::Scalar => pooling_scalar::scale(x, factor),
            #[cfg(target_arch = "x86_64")]
            Kind::Avx2Fma => pooling_x86::scale_avx2(x, factor),
            #[cfg(target_arch = "x86_64")]
            Kind::Avx512 => pooling_x86::scale_avx512(x, factor),
            #[cfg(target_arch = "aarch64")]
            Kind::Neon => pooling_neon::scale(x, factor),
        }
    }
}

/// `sum(x[i]^2)`, accumulated in f32 lanes.
pub fn sum_squares(isa: Isa, x: &[f32]) -> f32 {
    // SAFETY: an `Isa` only exists for instruction sets the CPU supports (see `Isa`).
    unsafe {
        match isa.0 {
            Kind::Scalar => pooling_scalar::sum_squares(x),
            #[cfg(target_arch = "x86_64")]
            Kind::Avx2Fma => pooling_x86::sum_squares_avx2(x),
            #[cfg(target_arch = "x86_64")]
            Kind::Avx512 => pooling_x86::sum_squares_avx512(x),
            #[cfg(target_arch = "aarch64")]
            Kind::Neon => pooling_neon::sum_squares(x),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random values in [-2, 2), without a dependency.
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
            })
            .collect()
    }

    // Lengths around every vector width and its tails, plus the model sizes.
    const LENGTHS: &[usize] = &[
        0, 1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 100, 384, 1000,
    ];

    #[test]
    fn every_isa_matches_scalar() {
        for isa in Isa::available() {
            for &n in LENGTHS {
                let x = values(n, n as u64 + 1);
                let base = values(n, n as u64 + 99);

                let (mut got, mut want) = (base.clone(), base.clone());
                add_assign(isa, &mut got, &x);
                pooling_scalar::add_assign(&mut want, &x);
                assert_eq!(got, want, "add_assign {isa:?} n={n}");

                let (mut got, mut want) = (base.clone(), base.clone());
                max_assign(isa, &mut got, &x);
                pooling_scalar::max_assign(&mut want, &x);
                assert_eq!(got, want, "max_assign {isa:?} n={n}");

                let (mut got, mut want) = (base.clone(), base.clone());
                scale(isa, &mut got, 0.37);
                pooling_scalar::scale(&mut want, 0.37);
                assert_eq!(got, want, "scale {isa:?} n={n}");

                let got = sum_squares(isa, &x);
                let want: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
                assert!(
                    (f64::from(got) - want).abs() <= 1e-5 * want.max(1.0),
                    "sum_squares {isa:?} n={n}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn mismatched_lengths_use_the_common_prefix() {
        for isa in Isa::available() {
            let mut acc = vec![1.0; 20];
            add_assign(isa, &mut acc, &[1.0; 5]);
            assert_eq!(&acc[..5], &[2.0; 5]);
            assert_eq!(&acc[5..], &[1.0; 15]);
        }
    }

    #[test]
    fn detected_is_among_available() {
        assert!(Isa::available().contains(&Isa::detected()));
    }
}
