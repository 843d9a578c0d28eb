//! The float32 GEMM: the packed weight format ([`PackedB`]), the entry points
//! (`gemm::matmul`, `gemm::matmul_to`), which run the driver in `gemm` with the kernel the
//! [`Isa`] names, and the portable micro-kernel (any CPU, also the one NEON machines run).
//!
//! Why our own: Candle's CPU matmul (the `gemm` crate) repacks the weights on every call, runs
//! single-threaded below a size threshold and reached ~45 GFLOP/s per core on these shapes,
//! half of what a Zen 4 core does (2 × 256-bit FMA per cycle, ~95 GFLOP/s). The x86 kernels
//! (`gemm_f32_x86`) keep a 14 × 32 (AVX-512) or 6 × 16 (AVX2) tile of C in registers; the
//! AVX2 and portable ones read A from packed `K × MR` tiles ([`with_packed_rows`]).

use std::cell::RefCell;
use std::ops::Range;

use super::gemm::{self, Epilogue, Kernel};
use super::{Isa, Kind};

#[cfg(target_arch = "x86_64")]
use super::gemm_f32_x86::{Avx2Fma, Avx512};

/// A `K × N` matrix packed in panels of `nr` columns: panel `p` holds rows `0..K` of columns
/// `p*nr .. p*nr+nr` contiguously (`K × nr`), zero-padded past `N`.
#[derive(Debug, Clone)]
pub struct PackedB {
    k: usize,
    n: usize,
    nr: usize,
    data: Vec<f32>,
}

impl PackedB {
    /// Packs `b[kk * ldb + j]` (row-major `K × N`) for the kernels of `isa`.
    pub fn from_rows(isa: Isa, b: &[f32], k: usize, n: usize, ldb: usize) -> PackedB {
        let mut packed = PackedB::empty(isa, k, n);
        packed.refill_rows(b, k, n, ldb);
        packed
    }

    /// Packs the transpose of `bt` (row-major `N × K`, e.g. a Linear weight [out, in] or the
    /// keys of one head): column `j` of B is row `j` of `bt`.
    pub fn from_transposed(isa: Isa, bt: &[f32], k: usize, n: usize, ldbt: usize) -> PackedB {
        let mut packed = PackedB::empty(isa, k, n);
        packed.refill_transposed(bt, k, n, ldbt);
        packed
    }

    /// An unfilled packing buffer, to be refilled with `refill_*` (reused per attention head).
    pub fn empty(isa: Isa, k: usize, n: usize) -> PackedB {
        let nr = Float32::of(isa).nr();
        let panels = n.div_ceil(nr);
        PackedB {
            k,
            n,
            nr,
            data: vec![0.0; panels * k * nr],
        }
    }

    /// Repacks from a row-major `K × N` source (no allocation when it fits). Attention repacks
    /// V for every (sequence, head), so this copies whole row pieces, not element by element.
    pub fn refill_rows(&mut self, b: &[f32], k: usize, n: usize, ldb: usize) {
        self.reshape(k, n);
        let nr = self.nr;
        for (p, panel) in self.panels_mut() {
            let (first, width) = (p * nr, nr.min(n - p * nr));
            for (kk, row) in panel.chunks_exact_mut(nr).enumerate() {
                let source = &b[kk * ldb + first..][..width];
                row[..width].copy_from_slice(source);
                row[width..].fill(0.0);
            }
        }
    }

    /// Repacks from the transpose of a row-major `N × K` source (no allocation when it fits).
    /// Reads each source row once, contiguously (it is a key vector or a weight row), and
    /// scatters it down its column of the panel, which stays in L1.
    pub fn refill_transposed(&mut self, bt: &[f32], k: usize, n: usize, ldbt: usize) {
        self.reshape(k, n);
        let nr = self.nr;
        for (p, panel) in self.panels_mut() {
            let (first, width) = (p * nr, nr.min(n - p * nr));
            if width < nr {
                panel.fill(0.0);
            }
            for jj in 0..width {
                let source = &bt[(first + jj) * ldbt..][..k];
                for (kk, &value) in source.iter().enumerate() {
                    panel[kk * nr + jj] = value;
                }
            }
        }
    }

    /// The panels covering the current `N`, each `K × nr`, with their index.
    fn panels_mut(&mut self) -> impl Iterator<Item = (usize, &mut [f32])> {
        let panels = self.n.div_ceil(self.nr);
        self.data
            .chunks_exact_mut(self.k * self.nr)
            .take(panels)
            .enumerate()
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn n(&self) -> usize {
        self.n
    }

    fn reshape(&mut self, k: usize, n: usize) {
        self.k = k;
        self.n = n;
        let needed = n.div_ceil(self.nr) * k * self.nr;
        if self.data.len() < needed {
            self.data.resize(needed, 0.0);
        }
    }

    /// `(K, N)`, after asserting the panels are `nr` wide: the kernels' `Kernel::shape`.
    pub(super) fn shape_for(&self, nr: usize) -> (usize, usize) {
        assert!(self.nr == nr, "B was packed for another instruction set");
        (self.k, self.n)
    }

    /// Panel `p`: `K × nr` floats.
    pub(super) fn panel(&self, p: usize) -> &[f32] {
        let size = self.k * self.nr;
        &self.data[p * size..(p + 1) * size]
    }
}

/// The float32 kernel an [`Isa`] names.
#[derive(Clone, Copy)]
enum Float32 {
    #[cfg(target_arch = "x86_64")]
    Avx512(Avx512),
    #[cfg(target_arch = "x86_64")]
    Avx2Fma(Avx2Fma),
    Portable(Portable),
}

impl Float32 {
    fn of(isa: Isa) -> Float32 {
        // The constructors check the CPU again; an `Isa` of their kind already guarantees
        // they succeed, and the portable kernel runs anywhere.
        match isa.0 {
            #[cfg(target_arch = "x86_64")]
            Kind::Avx512 => {
                if let Some(kernel) = Avx512::new() {
                    return Float32::Avx512(kernel);
                }
            }
            #[cfg(target_arch = "x86_64")]
            Kind::Avx2Fma => {
                if let Some(kernel) = Avx2Fma::new() {
                    return Float32::Avx2Fma(kernel);
                }
            }
            _ => {}
        }
        Float32::Portable(Portable)
    }

    fn nr(self) -> usize {
        match self {
            #[cfg(target_arch = "x86_64")]
            Float32::Avx512(_) => Avx512::NR,
            #[cfg(target_arch = "x86_64")]
            Float32::Avx2Fma(_) => Avx2Fma::NR,
            Float32::Portable(_) => Portable::NR,
        }
    }
}

/// `C[m × n] = epilogue(A[m × k] · B)`, `A` row-major with row stride `lda`, `C` with `ldc`.
/// Runs on the current rayon pool when `parallel` (the encoder's own pool); the caller
/// guarantees the slices cover the rows and columns named.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    isa: Isa,
    a: &[f32],
    lda: usize,
    m: usize,
    b: &PackedB,
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
    unsafe { matmul_to(isa, a, lda, m, b, c.as_mut_ptr(), ldc, epilogue, parallel) }
}

/// `matmul` writing through a raw pointer, for callers whose outputs interleave with other
/// writers' (attention heads write disjoint column ranges of the same rows).
///
/// # Safety
/// `c` must point at `m` rows of `b.n()` writable floats with row stride `ldc >= b.n()`, and
/// no one else may access those elements during the call.
#[allow(clippy::too_many_arguments)]
pub unsafe fn matmul_to(
    isa: Isa,
    a: &[f32],
    lda: usize,
    m: usize,
    b: &PackedB,
    c: *mut f32,
    ldc: usize,
    epilogue: Epilogue,
    parallel: bool,
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match Float32::of(isa) {
            #[cfg(target_arch = "x86_64")]
            Float32::Avx512(kernel) => {
                gemm::run(kernel, isa, a, lda, m, b, c, ldc, &epilogue, parallel)
            }
            #[cfg(target_arch = "x86_64")]
            Float32::Avx2Fma(kernel) => {
                gemm::run(kernel, isa, a, lda, m, b, c, ldc, &epilogue, parallel)
            }
            Float32::Portable(kernel) => {
                gemm::run(kernel, isa, a, lda, m, b, c, ldc, &epilogue, parallel)
            }
        }
    }
}

thread_local! {
    /// The packed tiles of A a task reads (AVX2 and portable kernels); one per worker thread,
    /// reused.
    static PACKED_ROWS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Packs rows `rows` of `a` (row stride `lda`, `k` columns) into consecutive `k × mr` tiles
/// (`tile[kk * mr + i]`), zero rows past the end, so a kernel broadcasts from one contiguous
/// stream; runs `f` on them. Tile `t` starts at `t * mr * k`.
pub(super) fn with_packed_rows<R>(
    a: &[f32],
    lda: usize,
    rows: Range<usize>,
    k: usize,
    mr: usize,
    f: impl FnOnce(&[f32]) -> R,
) -> R {
    PACKED_ROWS.with(|cell| {
        let mut packed = cell.borrow_mut();
        // Every element is written below, so a resize (no clearing) is enough.
        packed.resize(rows.len().div_ceil(mr) * mr * k, 0.0);
        let a = &a[rows.start * lda..];
        for (t, tile) in packed.chunks_exact_mut(mr * k).enumerate() {
            for i in 0..mr {
                let row = t * mr + i;
                if row < rows.len() {
                    let src = &a[row * lda..row * lda + k];
                    for (kk, &v) in src.iter().enumerate() {
                        tile[kk * mr + i] = v;
                    }
                } else {
                    for kk in 0..k {
                        tile[kk * mr + i] = 0.0;
                    }
                }
            }
        }
        f(&packed)
    })
}

/// The portable micro-kernel (any CPU): a 4 × 8 tile, plain loops the compiler vectorises,
/// over packed A tiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Portable;

impl Kernel for Portable {
    type PackedB = PackedB;
    type Rows<'a> = &'a [f32];
    const MR: usize = 4;
    const NR: usize = 8;

    fn shape(self, b: &PackedB) -> (usize, usize) {
        b.shape_for(Self::NR)
    }

    fn with_rows<R>(
        self,
        a: &[f32],
        lda: usize,
        rows: Range<usize>,
        b: &PackedB,
        f: impl FnOnce(&&[f32]) -> R,
    ) -> R {
        with_packed_rows(a, lda, rows, b.k, Self::MR, |packed| f(&packed))
    }

    unsafe fn tile(
        self,
        block: &&[f32],
        first: usize,
        rows: usize,
        b: &PackedB,
        panel: usize,
        c: *mut f32,
        ldc: usize,
        cols: usize,
    ) {
        let k = b.k;
        // Tile `first / MR` of the packed block: k × MR values.
        let a = &block[first * k..][..Self::MR * k];
        // SAFETY: forwarded from the caller: `c` is a rows × cols rectangle this task owns.
        unsafe { tile_portable(k, a, b.panel(panel), c, ldc, rows, cols) }
    }
}

/// `C[rows × cols] = A·B` for one portable tile: `a` a packed `k × 4` tile, `b` a `k × 8`
/// panel, plain loops the compiler vectorises.
///
/// # Safety
/// `c` must point at `rows ≤ 4` rows of `cols ≤ 8` writable floats with row stride `ldc`.
// Compiled on its own, not inlined into the driver: how well the loops vectorise then does not
// depend on the code around them (inlined: 15 instead of 17 GFLOP/s at 480 × 384 × 384).
#[inline(never)]
unsafe fn tile_portable(
    k: usize,
    a: &[f32],
    b: &[f32],
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
) {
    const MR: usize = Portable::MR;
    const NR: usize = Portable::NR;
    // Held transposed (`acc[j][i]`, C's column j, row i): a step's MR values of A are one
    // contiguous vector, times a broadcast of each of B's NR values. With `acc[i][j]` the
    // compiler's vectoriser shuffled lanes across rows (SSE2: 13 instead of 17 GFLOP/s at
    // 480 × 384 × 384, one thread). Each sum still adds its products in k order, so the
    // results are the same to the bit.
    let mut acc = [[0.0f32; MR]; NR];
    let (a_steps, b_steps) = (a.as_chunks::<MR>().0, b.as_chunks::<NR>().0);
    for (ak, bk) in a_steps.iter().zip(b_steps).take(k) {
        for (acc_column, &bv) in acc.iter_mut().zip(bk) {
            for (slot, &aik) in acc_column.iter_mut().zip(ak) {
                *slot += aik * bv;
            }
        }
    }
    for (j, acc_column) in acc.iter().enumerate().take(cols) {
        for (i, &v) in acc_column.iter().enumerate().take(rows) {
            // SAFETY: i < rows and j < cols, inside the rectangle the caller owns.
            unsafe { *c.add(i * ldc + j) = v };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_data::uniform as data;
    use crate::kernels::Activation;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut c = vec![0.0f64; m * n];
        for i in 0..m {
            for kk in 0..k {
                for j in 0..n {
                    c[i * n + j] += a[i * k + kk] as f64 * b[kk * n + j] as f64;
                }
            }
        }
        c
    }

    #[test]
    fn every_isa_matches_the_f64_reference_on_odd_shapes() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        for isa in Isa::available() {
            for &(m, k, n) in &[
                (1, 7, 5),
                (13, 64, 33),
                (29, 384, 96),
                (100, 31, 100),
                (57, 5, 1),
            ] {
                let a = data(m * k, 1);
                let b = data(k * n, 2);
                let expected = naive(&a, &b, m, k, n);
                for parallel in [false, true] {
                    let packed = PackedB::from_rows(isa, &b, k, n, n);
                    let mut c = vec![f32::NAN; m * n];
                    pool.install(|| {
                        matmul(isa, &a, k, m, &packed, &mut c, n, Epilogue::None, parallel)
                    });
                    for (i, (&got, &want)) in c.iter().zip(&expected).enumerate() {
                        assert!(
                            (got as f64 - want).abs() <= 1e-4 * (1.0 + want.abs()),
                            "{} m{m} k{k} n{n} at {i}: {got} vs {want}",
                            isa.name()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn strides_transposed_packing_and_epilogues() {
        let (m, k, n) = (17, 40, 37);
        let (lda, ldc) = (k + 3, n + 5);
        for isa in Isa::available() {
            let a_dense = data(m * k, 3);
            let mut a = vec![9.0f32; m * lda];
            for i in 0..m {
                a[i * lda..i * lda + k].copy_from_slice(&a_dense[i * k..(i + 1) * k]);
            }
            let b = data(k * n, 4);
            let bt: Vec<f32> = (0..n * k).map(|idx| b[(idx % k) * n + idx / k]).collect();
            let bias = data(n, 5);
            let residual = data(m * n, 6);
            let expected = naive(&a_dense, &b, m, k, n);
            let packed = PackedB::from_transposed(isa, &bt, k, n, k);
            let mut c = vec![7.0f32; m * ldc];
            let epilogue = Epilogue::BiasResidual {
                bias: &bias,
                residual: &residual,
                ldr: n,
            };
            matmul(isa, &a, lda, m, &packed, &mut c, ldc, epilogue, false);
            for i in 0..m {
                for j in 0..n {
                    let want = expected[i * n + j] + bias[j] as f64 + residual[i * n + j] as f64;
                    let got = c[i * ldc + j] as f64;
                    assert!(
                        (got - want).abs() < 1e-4,
                        "{} ({i},{j}) {got} {want}",
                        isa.name()
                    );
                }
                assert!(
                    c[i * ldc + n..(i + 1) * ldc].iter().all(|&v| v == 7.0),
                    "wrote past n"
                );
            }
            let mut g = vec![0.0f32; m * n];
            let gelu = Epilogue::BiasActivation {
                bias: &bias,
                activation: Activation::GeluErf,
            };
            matmul(isa, &a, lda, m, &packed, &mut g, n, gelu, false);
            for (idx, &got) in g.iter().enumerate() {
                let x = expected[idx] + bias[idx % n] as f64;
                let want = 0.5 * x * (1.0 + erf64(x / std::f64::consts::SQRT_2));
                assert!(
                    (got as f64 - want).abs() < 1e-5,
                    "{} gelu {got} {want}",
                    isa.name()
                );
            }
        }
    }

    /// erf in f64, the reference for the vectorised GELU.
    fn erf64(x: f64) -> f64 {
        // The Taylor series, exact to ~1e-9 for |x| <= 4.5; beyond, erf is ±1 within 2e-10.
        if x.abs() > 4.5 {
            return x.signum();
        }
        let mut sum = x;
        let mut term = x;
        let mut n = 0.0;
        while term.abs() > 1e-17 * sum.abs().max(1e-300) {
            n += 1.0;
            term *= -x * x / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }
}
