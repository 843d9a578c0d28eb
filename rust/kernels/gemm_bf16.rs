//! The bfloat16 GEMM: `C = bf16(A) · W (+ epilogue)` with `W` stored as bf16 at load
//! ([`PackedBf16`]) and `A` converted (round to nearest even) by the task that reads it, into
//! a buffer that stays in L1/L2. The entry points run the driver in `gemm` with the kernel a
//! [`Bf16Dot`] holds (AVX512-BF16 `vdpbf16ps`, in `gemm_bf16_x86`), which multiplies bf16
//! pairs and accumulates in f32, so only the inputs are rounded (8 significant bits), never
//! the sums.

#[cfg(target_arch = "x86_64")]
use super::gemm;
use super::gemm::Epilogue;
use super::{Bf16Dot, Isa};

/// Columns of a panel: the AVX512-BF16 kernel's tile width.
pub(super) const NR: usize = 32;

/// `x` rounded to bf16 (nearest, ties to even), as the upper 16 bits of an f32.
pub fn to_bf16(x: f32) -> u16 {
    if x.is_nan() {
        return 0x7fc0;
    }
    let bits = x.to_bits();
    let rounding = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(rounding) >> 16) as u16
}

/// The f32 a bf16 stands for.
pub fn from_bf16(x: u16) -> f32 {
    f32::from_bits((x as u32) << 16)
}

/// A `K × N` matrix in bf16, packed in panels of `NR` columns: panel `p`, step `s` holds
/// columns `p*NR..p*NR+NR` × rows `2s, 2s+1` as 32 pairs (one `vdpbf16ps` lane each). K is
/// padded to even and N to a multiple of `NR`, with zeros.
#[derive(Debug, Clone)]
pub struct PackedBf16 {
    k: usize,
    n: usize,
    /// K rounded up to even.
    k2: usize,
    data: Vec<u16>,
}

impl PackedBf16 {
    /// Rounds and packs the transpose of `wt` (row-major `N × K`: a PyTorch Linear weight).
    pub fn from_transposed(wt: &[f32], k: usize, n: usize) -> PackedBf16 {
        let mut packed = PackedBf16::empty();
        packed.refill_transposed(wt, k, n, k);
        packed
    }

    /// An unfilled buffer, to be refilled per attention head.
    pub fn empty() -> PackedBf16 {
        PackedBf16 {
            k: 0,
            n: 0,
            k2: 0,
            data: Vec::new(),
        }
    }

    /// Repacks from the transpose of a row-major `N × K` source with row stride `ldbt` (a
    /// weight, or one head's keys); no allocation when it fits.
    pub fn refill_transposed(&mut self, bt: &[f32], k: usize, n: usize, ldbt: usize) {
        self.reshape(k, n);
        for j in 0..n {
            for (kk, &w) in bt[j * ldbt..j * ldbt + k].iter().enumerate() {
                let at = self.slot(kk, j);
                self.data[at] = to_bf16(w);
            }
        }
    }

    /// Repacks from a row-major `K × N` source with row stride `ldb` (one head's values); no
    /// allocation when it fits.
    pub fn refill_rows(&mut self, b: &[f32], k: usize, n: usize, ldb: usize) {
        self.reshape(k, n);
        for kk in 0..k {
            for (j, &v) in b[kk * ldb..kk * ldb + n].iter().enumerate() {
                let at = self.slot(kk, j);
                self.data[at] = to_bf16(v);
            }
        }
    }

    /// Where element (row `kk`, column `j`) of B lives: its panel, its pair step, its lane.
    fn slot(&self, kk: usize, j: usize) -> usize {
        (j / NR) * self.k2 * NR + (kk / 2) * 2 * NR + (j % NR) * 2 + kk % 2
    }

    /// Sizes the buffer for `K × N`, zeroed so the padding (odd K, N past a panel) is zero.
    fn reshape(&mut self, k: usize, n: usize) {
        self.k = k;
        self.n = n;
        self.k2 = k.div_ceil(2) * 2;
        let needed = n.div_ceil(NR) * self.k2 * NR;
        self.data.clear();
        self.data.resize(needed, 0);
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn n(&self) -> usize {
        self.n
    }

    /// K rounded up to even: the bf16 values per row of a panel step pair, and per converted
    /// row of A.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(super) fn k2(&self) -> usize {
        self.k2
    }

    /// Bytes the packed weight occupies (what one query streams).
    pub fn bytes(&self) -> usize {
        2 * self.data.len()
    }

    /// Panel `p`: `k2 / 2` steps of `NR` pairs.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(super) fn panel(&self, p: usize) -> &[u16] {
        &self.data[p * self.k2 * NR..(p + 1) * self.k2 * NR]
    }
}

/// `C[m × n] = epilogue(bf16(A[m × k]) · W)`, `A` row-major with row stride `lda`, `C` with
/// `ldc`, on the current rayon pool when `parallel`. `dot` proves the CPU has the kernel's
/// instructions; `isa` runs the epilogue.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    dot: Bf16Dot,
    isa: Isa,
    a: &[f32],
    lda: usize,
    m: usize,
    b: &PackedBf16,
    c: &mut [f32],
    ldc: usize,
    epilogue: Epilogue,
    parallel: bool,
) {
    if m == 0 || b.n == 0 {
        return;
    }
    assert!(ldc >= b.n && c.len() >= (m - 1) * ldc + b.n);
    // SAFETY: `c` is an exclusive borrow covering every element written (asserted above).
    unsafe {
        matmul_to(
            dot,
            isa,
            a,
            lda,
            m,
            b,
            c.as_mut_ptr(),
            ldc,
            epilogue,
            parallel,
        )
    }
}

/// `matmul` writing through a raw pointer, for attention heads, which write disjoint column
/// ranges of the same rows.
///
/// # Safety
/// `c` must point at `m` rows of `b.n()` writable floats with row stride `ldc >= b.n()`, and
/// no one else may access those elements during the call.
#[allow(clippy::too_many_arguments)]
pub unsafe fn matmul_to(
    dot: Bf16Dot,
    isa: Isa,
    a: &[f32],
    lda: usize,
    m: usize,
    b: &PackedBf16,
    c: *mut f32,
    ldc: usize,
    epilogue: Epilogue,
    parallel: bool,
) {
    // SAFETY: forwarded from the caller; `dot` holds a kernel, which proves its instructions.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        gemm::run(dot.0, isa, a, lda, m, b, c, ldc, &epilogue, parallel)
    }
    // No bfloat16 kernel elsewhere: a `Bf16Dot` cannot exist there.
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (isa, a, lda, m, b, c, ldc, epilogue, parallel);
        match dot.0 {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_data::uniform as data;

    #[test]
    fn rounding_is_to_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        // 1 + 2^-8 is halfway between two bf16 values: ties go to the even one (1.0).
        assert_eq!(to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
        assert_eq!(to_bf16(1.0 + 3.0 / 256.0), 0x3f82);
        assert_eq!(from_bf16(to_bf16(-2.5)), -2.5);
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
    }

    #[test]
    #[ignore = "needs a CPU with AVX512-BF16 (`make test-rust` runs it where there is one)"]
    fn the_kernel_matches_the_bf16_arithmetic_on_odd_shapes() {
        let dot = Bf16Dot::detected()
            .expect("this CPU has no AVX512-BF16: run this test only where it has");
        let isa = Isa::detected();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        for &(m, k, n) in &[
            (1, 7, 5),
            (13, 64, 33),
            (29, 384, 96),
            (100, 31, 100),
            (3, 1536, 384),
        ] {
            let a = data(m * k, 1);
            let wt = data(n * k, 2);
            let round = |v: f32| from_bf16(to_bf16(v)) as f64;
            let packed = PackedBf16::from_transposed(&wt, k, n);
            for parallel in [false, true] {
                let mut c = vec![f32::NAN; m * n];
                pool.install(|| {
                    matmul(
                        dot,
                        isa,
                        &a,
                        k,
                        m,
                        &packed,
                        &mut c,
                        n,
                        Epilogue::None,
                        parallel,
                    )
                });
                for i in 0..m {
                    for j in 0..n {
                        let want: f64 = (0..k)
                            .map(|kk| round(a[i * k + kk]) * round(wt[j * k + kk]))
                            .sum();
                        let got = c[i * n + j] as f64;
                        // Products of bf16 are exact in f32; only the f32 sums round.
                        assert!(
                            (got - want).abs() <= 1e-5 * (1.0 + (k as f64).sqrt()),
                            "m{m} k{k} n{n} ({i},{j}): {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn row_and_transposed_packings_agree_and_refills_reuse_the_buffer() {
        let (k, n) = (37, 45);
        let b = data(k * n, 7); // row-major K × N
        let bt: Vec<f32> = (0..n * k).map(|idx| b[(idx % k) * n + idx / k]).collect();
        let from_bt = PackedBf16::from_transposed(&bt, k, n);
        let mut refilled = PackedBf16::from_transposed(&data(64 * 64, 8), 64, 64);
        refilled.refill_rows(&b, k, n, n);
        assert_eq!((refilled.k(), refilled.n()), (k, n));
        assert_eq!(refilled.data, from_bt.data);
    }
}
