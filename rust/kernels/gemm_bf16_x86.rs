//! The AVX512-BF16 GEMM micro-kernel ([`Kernel`] implementation) and the row conversion that
//! feeds it. Same shape as the float32 AVX-512 kernel: a tile of R ≤ 14 rows × 32 columns in
//! 28 zmm accumulators over the whole K loop, A read from the task's converted bf16 rows (one
//! broadcast per row and step, folded into `vdpbf16ps`), B from a packed panel
//! ([`PackedBf16`]). One step covers 2 values of K per lane, so per instruction a tile does
//! twice the float32 work, and the weights it streams are half the size.

use std::arch::x86_64::*;
use std::cell::RefCell;
use std::ops::Range;

use super::gemm::Kernel;
use super::gemm_bf16::{PackedBf16, NR};
use super::simd_x86::{lanes, with_rows};

/// Tiles of at most this many rows prefetch their panel `PREFETCH_BYTES` ahead: with a query's
/// few rows the weights come from DRAM on every call and a tile does too little work per byte
/// to hide the miss (the float32 and int8 kernels do the same).
const PREFETCH_ROWS: usize = 10;
const PREFETCH_BYTES: usize = 4096;

/// The AVX512-BF16 kernel. Exists only on CPUs with AVX-512F/BW/VL and BF16
/// ([`Avx512Bf16::new`]); a [`super::Bf16Dot`] holds one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Avx512Bf16(());

impl Avx512Bf16 {
    /// `Some` on CPUs with AVX-512F/BW/VL and AVX512-BF16.
    pub(super) fn new() -> Option<Avx512Bf16> {
        (is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512bf16"))
        .then_some(Avx512Bf16(()))
    }

    /// Rounds one row to bf16 into `out`, zero-padded past `x.len()`.
    pub(super) fn convert_row(self, x: &[f32], out: &mut [u16]) {
        assert!(out.len() >= x.len());
        // SAFETY: `self` proves AVX-512F/BW/VL and BF16; `out` is at least as long as `x`.
        unsafe { bf16_row(x, out) }
    }
}

thread_local! {
    /// The bf16 rows of A a task reads, `k2` per row; one per worker thread, reused.
    static CONVERTED_ROWS: RefCell<Vec<u16>> = const { RefCell::new(Vec::new()) };
}

/// A task's rows of A in bf16: row `i` at `values[i * k2..]`, `k2` values each.
pub(super) struct Bf16Rows<'a> {
    values: &'a [u16],
    k2: usize,
}

impl Kernel for Avx512Bf16 {
    type PackedB = PackedBf16;
    type Rows<'a> = Bf16Rows<'a>;
    const MR: usize = 14;
    const NR: usize = NR;

    fn shape(self, b: &PackedBf16) -> (usize, usize) {
        (b.k(), b.n())
    }

    fn with_rows<R>(
        self,
        a: &[f32],
        lda: usize,
        rows: Range<usize>,
        b: &PackedBf16,
        f: impl FnOnce(&Bf16Rows<'_>) -> R,
    ) -> R {
        let (k, k2) = (b.k(), b.k2());
        CONVERTED_ROWS.with(|cell| {
            let mut converted = cell.borrow_mut();
            converted.resize(rows.len() * k2, 0);
            for (r, row) in rows.enumerate() {
                let source = &a[row * lda..row * lda + k];
                self.convert_row(source, &mut converted[r * k2..(r + 1) * k2]);
            }
            f(&Bf16Rows {
                values: &converted,
                k2,
            })
        })
    }

    unsafe fn tile(
        self,
        block: &Bf16Rows<'_>,
        first: usize,
        rows: usize,
        b: &PackedBf16,
        panel: usize,
        c: *mut f32,
        ldc: usize,
        cols: usize,
    ) {
        let k2 = block.k2;
        let a = block.values[first * k2..].as_ptr();
        let b = b.panel(panel).as_ptr();
        // SAFETY: `self` proves AVX512-BF16; the caller guarantees the block holds `rows`
        // converted rows (k2 values each) from `first`, the panel holds k2 × NR values, and `c`
        // is a rows × cols rectangle only this task writes.
        unsafe { with_rows!(rows, bf16_rows(k2 / 2, a, k2, b, c, ldc, cols)) }
    }
}

/// `C[R × cols] = A·B` for one bfloat16 tile: `A` bf16 rows (row `i` at `a + i * lda`,
/// `pairs` pairs), `B` a packed panel (`pairs` steps of 32 columns × 2 bf16), accumulated in
/// f32.
///
/// # Safety
/// The CPU must support AVX-512F/BW and BF16. `a` points at `R` rows of `2 * pairs` readable
/// bf16 with stride `lda`, `b` at `pairs × 64` bf16, `c` at `R` rows of `cols ≤ 32` writable
/// floats with row stride `ldc`.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn bf16_rows<const R: usize>(
    pairs: usize,
    a: *const u16,
    lda: usize,
    b: *const u16,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    let mut low = [_mm512_setzero_ps(); R];
    let mut high = [_mm512_setzero_ps(); R];
    // SAFETY: step < pairs and i < R keep every read inside the rows and the panel; prefetches
    // never fault. `__m512i` and `__m512bh` are both 64 plain bytes, so the transmutes only
    // retype the same bits.
    unsafe {
        for step in 0..pairs {
            let panel = b.add(step * 2 * NR);
            if R <= PREFETCH_ROWS {
                let ahead = panel.cast::<i8>().wrapping_add(PREFETCH_BYTES);
                _mm_prefetch::<_MM_HINT_T0>(ahead);
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64));
            }
            let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(panel.cast()));
            let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(panel.add(32).cast()));
            for i in 0..R {
                let pair = a.add(i * lda + step * 2).cast::<i32>().read_unaligned();
                let ai: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair));
                low[i] = _mm512_dpbf16_ps(low[i], ai, b0);
                high[i] = _mm512_dpbf16_ps(high[i], ai, b1);
            }
        }
    }
    // SAFETY: only the R rows and (masked) columns < `cols` are written.
    unsafe {
        let (mask_low, mask_high) = (lanes(cols.min(16)), lanes(cols.saturating_sub(16)));
        for i in 0..R {
            let row = c.add(i * ldc);
            _mm512_mask_storeu_ps(row, mask_low, low[i]);
            if cols > 16 {
                _mm512_mask_storeu_ps(row.add(16), mask_high, high[i]);
            }
        }
    }
}

/// Converts one row to bf16 (round to nearest even), zero-padding `out` past `x.len()`.
///
/// # Safety
/// The CPU must support AVX-512F/BW/VL and BF16; `out.len() >= x.len()`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn bf16_row(x: &[f32], out: &mut [u16]) {
    let n = x.len();
    // SAFETY: masked loads read only lanes < n; masked stores write only elements < n. The
    // transmute retypes 32 bytes of bf16 as a 256-bit integer vector.
    unsafe {
        for start in (0..n).step_by(16) {
            let mask = lanes(n - start);
            let v = _mm512_maskz_loadu_ps(mask, x.as_ptr().add(start));
            let halves: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(v));
            _mm256_mask_storeu_epi16(out.as_mut_ptr().add(start).cast(), mask, halves);
        }
        out[n..].fill(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::gemm_bf16::to_bf16;
    use crate::kernels::test_data::uniform as data;

    #[test]
    #[ignore = "needs a CPU with AVX512-BF16 (`make test-rust` runs it where there is one)"]
    fn the_vector_row_conversion_matches_the_scalar_one() {
        let kernel = Avx512Bf16::new()
            .expect("this CPU has no AVX512-BF16: run this test only where it has");
        for len in [1, 15, 16, 17, 383, 384] {
            let x = data(len, len as u32);
            let mut out = vec![1u16; len + 1 + len % 2];
            kernel.convert_row(&x, &mut out);
            for (j, &v) in x.iter().enumerate() {
                assert_eq!(out[j], to_bf16(v), "len {len} at {j}");
            }
            assert!(out[len..].iter().all(|&b| b == 0));
        }
    }
}
