//! The x86 float32 GEMM micro-kernels ([`Kernel`] implementations): an MR × NR tile of C held
//! in registers over the whole K loop, B from a packed `K × NR` panel ([`PackedB`]).
//! AVX-512 (14 × 32 in 28 zmm) reads A in place (the broadcast folds into the FMA; a kernel
//! per row count keeps partial tiles exact); AVX2+FMA (6 × 16 in 12 ymm) reads a packed
//! `K × MR` tile of A.

use std::arch::x86_64::*;
use std::ops::Range;

use super::gemm::Kernel;
use super::gemm_f32::{with_packed_rows, PackedB};
use super::simd_x86::{lanes, with_rows};

/// The AVX-512F kernel. Exists only on CPUs with AVX-512F ([`Avx512::new`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Avx512(());

impl Avx512 {
    /// `Some` on CPUs with AVX-512F.
    pub(super) fn new() -> Option<Avx512> {
        is_x86_feature_detected!("avx512f").then_some(Avx512(()))
    }
}

/// A task's rows of A, read in place: row `i` of the task at `a[i * lda..]`.
pub(super) struct InPlace<'a> {
    a: &'a [f32],
    lda: usize,
}

impl Kernel for Avx512 {
    type PackedB = PackedB;
    type Rows<'a> = InPlace<'a>;
    /// 14 rows × 32 columns = 28 zmm accumulators, 2 for B, 1 broadcast (31 of 32).
    const MR: usize = 14;
    const NR: usize = 32;

    fn shape(self, b: &PackedB) -> (usize, usize) {
        b.shape_for(Self::NR)
    }

    fn with_rows<R>(
        self,
        a: &[f32],
        lda: usize,
        rows: Range<usize>,
        _b: &PackedB,
        f: impl FnOnce(&InPlace<'_>) -> R,
    ) -> R {
        f(&InPlace {
            a: &a[rows.start * lda..],
            lda,
        })
    }

    unsafe fn tile(
        self,
        block: &InPlace<'_>,
        first: usize,
        rows: usize,
        b: &PackedB,
        panel: usize,
        c: *mut f32,
        ldc: usize,
        cols: usize,
    ) {
        let (k, lda) = (b.k(), block.lda);
        let a = block.a[first * lda..].as_ptr();
        let b = b.panel(panel).as_ptr();
        // SAFETY: `self` proves AVX-512F; the caller guarantees the block holds `rows` rows
        // of K floats from `first` (the driver checked A's length against m × lda), the panel
        // is K × 32 and `c` is a rows × cols rectangle only this task writes.
        unsafe { with_rows!(rows, rows_avx512(k, a, lda, b, c, ldc, cols)) }
    }
}

/// Tiles of at most this many rows (a query or two) prefetch their B panel PREFETCH_STEPS
/// rows of K (4 KB) ahead: with so few rows the tile does too little arithmetic per byte of
/// weights to hide a miss, and the weights (42 MB for all-MiniLM-L6-v2) come from DRAM on
/// every call. One query: ~3% at threads=2 (1.54 -> 1.50 ms median, alternating builds).
/// Larger tiles reuse the panel from L1/L2 and skip the extra instructions.
const PREFETCH_ROWS: usize = 10;
const PREFETCH_STEPS: usize = 32;

/// `C[R × cols] = A·B` for one tile, A read in place: row `i` at `a + i * lda`.
///
/// # Safety
/// The CPU must support AVX-512F. `a` points at `R` rows of `k` readable floats with row
/// stride `lda`, `b` at a packed `k × 32` panel, `c` at `R` rows of `cols ≤ 32` writable
/// floats with row stride `ldc`.
#[target_feature(enable = "avx512f")]
unsafe fn rows_avx512<const R: usize>(
    k: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    const NR: usize = Avx512::NR;
    let mut low = [_mm512_setzero_ps(); R];
    let mut high = [_mm512_setzero_ps(); R];
    // SAFETY: kk < k and i < R keep every read inside the rows and the panel.
    unsafe {
        for kk in 0..k {
            if R <= PREFETCH_ROWS {
                // A prefetch never faults, so running past the panel's end is harmless;
                // `wrapping_add` keeps the address arithmetic itself defined.
                let ahead = b.wrapping_add((kk + PREFETCH_STEPS) * NR) as *const i8;
                _mm_prefetch::<_MM_HINT_T0>(ahead);
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64));
            }
            let b0 = _mm512_loadu_ps(b.add(kk * NR));
            let b1 = _mm512_loadu_ps(b.add(kk * NR + 16));
            for i in 0..R {
                let ai = _mm512_set1_ps(*a.add(i * lda + kk));
                low[i] = _mm512_fmadd_ps(ai, b0, low[i]);
                high[i] = _mm512_fmadd_ps(ai, b1, high[i]);
            }
        }
    }
    let mask_low = lanes(cols.min(16));
    let mask_high = lanes(cols.saturating_sub(16));
    // SAFETY: only the R rows and (masked) columns < `cols` are written.
    unsafe {
        for i in 0..R {
            let row = c.add(i * ldc);
            _mm512_mask_storeu_ps(row, mask_low, low[i]);
            if cols > 16 {
                _mm512_mask_storeu_ps(row.add(16), mask_high, high[i]);
            }
        }
    }
}

/// The AVX2+FMA kernel. Exists only on CPUs with AVX2 and FMA ([`Avx2Fma::new`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Avx2Fma(());

impl Avx2Fma {
    /// `Some` on CPUs with AVX2 and FMA.
    pub(super) fn new() -> Option<Avx2Fma> {
        (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")).then_some(Avx2Fma(()))
    }
}

impl Kernel for Avx2Fma {
    type PackedB = PackedB;
    type Rows<'a> = &'a [f32];
    /// 6 rows × 16 columns = 12 ymm accumulators, 2 for B, 1 broadcast (15 of 16).
    const MR: usize = 6;
    const NR: usize = 16;

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
        with_packed_rows(a, lda, rows, b.k(), Self::MR, |packed| f(&packed))
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
        let k = b.k();
        let a = block[first * k..][..Self::MR * k].as_ptr();
        let b = b.panel(panel).as_ptr();
        // SAFETY: `self` proves AVX2 and FMA; `a` is the packed k × 6 tile of rows `first..`
        // (sliced above), `b` a k × 16 panel, `c` a rows × cols rectangle only this task
        // writes (the caller's guarantee).
        unsafe { tile_avx2(k, a, b, c, ldc, rows, cols) }
    }
}

/// `C[rows × cols] = A·B` for one tile.
///
/// # Safety
/// The CPU must support AVX2 and FMA. `a` points at a packed `k × 6` tile, `b` at a packed
/// `k × 16` panel, `c` at `rows ≤ 6` rows of `cols ≤ 16` writable floats with row stride
/// `ldc`.
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2(
    k: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
) {
    const MR: usize = Avx2Fma::MR;
    const NR: usize = Avx2Fma::NR;
    let mut low = [_mm256_setzero_ps(); MR];
    let mut high = [_mm256_setzero_ps(); MR];
    // SAFETY: kk < k keeps every read inside the packed tile (k × 6) and panel (k × 16).
    unsafe {
        for kk in 0..k {
            let b0 = _mm256_loadu_ps(b.add(kk * NR));
            let b1 = _mm256_loadu_ps(b.add(kk * NR + 8));
            let ak = a.add(kk * MR);
            for i in 0..MR {
                let ai = _mm256_broadcast_ss(&*ak.add(i));
                low[i] = _mm256_fmadd_ps(ai, b0, low[i]);
                high[i] = _mm256_fmadd_ps(ai, b1, high[i]);
            }
        }
    }
    // SAFETY: full rows are stored directly; a partial row goes through a stack buffer so
    // nothing past column `cols` is written.
    unsafe {
        for i in 0..rows {
            let row = c.add(i * ldc);
            if cols == NR {
                _mm256_storeu_ps(row, low[i]);
                _mm256_storeu_ps(row.add(8), high[i]);
            } else {
                let mut buffer = [0.0f32; NR];
                _mm256_storeu_ps(buffer.as_mut_ptr(), low[i]);
                _mm256_storeu_ps(buffer.as_mut_ptr().add(8), high[i]);
                std::ptr::copy_nonoverlapping(buffer.as_ptr(), row, cols);
            }
        }
    }
}
