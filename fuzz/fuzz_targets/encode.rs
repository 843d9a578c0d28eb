//! The native encode arguments: token arrays of any dtype, memory layout, shape and values go
//! through `TokenBatch::new` (the checks `encoder.native.encode` relies on) and, when accepted,
//! through `SentenceEncoder::encode` on a tiny random model.
//!
//! Beyond "no panic, no memory error", each run checks:
//! - validation accepts exactly the inputs an independent reading of the rules accepts, and
//!   converts them unchanged;
//! - an accepted batch always encodes, to `rows * output_dim` finite values, unit (or zero) rows
//!   when normalising;
//! - a row's vector does not depend on the other rows of its batch, nor on trailing padding.
//!
//! Input layout: flags, flags2, rows, cols, then the values (see `decode`).

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use minilm_fast::{IdsView, SentenceEncoder, TokenBatch};
use minilm_fast_fuzz::{scratch_dir, Reader, TINY, TINY_ALL_MODES};
use ndarray::{s, Array2, ArrayView2, ShapeBuilder};

/// Most rows hold up to this many tokens; a few bytes more reach "longer than the positions".
const MAX_COLS: u8 = TINY.max_positions as u8 + 4;
const MAX_ROWS: u8 = 6;
/// Rows encoded alone may differ from the batch only by summation order.
const TOLERANCE: f32 = 1e-4;

/// Three encoders over two folders written once per process: mean + Normalize (all-MiniLM-L6-v2's
/// pipeline) with one thread, every pooling mode concatenated without Normalize, and the first
/// again with two threads.
fn encoders() -> &'static [SentenceEncoder; 3] {
    static ENCODERS: OnceLock<[SentenceEncoder; 3]> = OnceLock::new();
    ENCODERS.get_or_init(|| {
        let mean = scratch_dir("encode-mean");
        TINY.write(&mean);
        let all = scratch_dir("encode-all");
        TINY_ALL_MODES.write(&all);
        let load = |dir: &std::path::Path, threads| {
            SentenceEncoder::load(dir, Some(threads)).expect("the tiny model loads")
        };
        let encoders = [load(&mean, 1), load(&all, 1), load(&mean, 2)];
        // Loaded into memory; the folders are not needed any more.
        let _ = std::fs::remove_dir_all(&mean);
        let _ = std::fs::remove_dir_all(&all);
        encoders
    })
}

/// How a logical array is laid out in memory for the call.
#[derive(Clone, Copy)]
enum Layout {
    C,
    Fortran,
    /// Every other column of a wider array (non-unit stride).
    Strided,
    /// Columns stored in reverse, read through a negative stride.
    Reversed,
}

/// An array in the dtype and layout the input asked for, keeping its storage alive.
enum Owned {
    I32(Array2<i32>, Layout),
    I64(Array2<i64>, Layout),
}

fn arrange<T: Copy + Default>(logical: &Array2<T>, layout: Layout) -> Array2<T> {
    let (rows, cols) = logical.dim();
    match layout {
        Layout::C => logical.as_standard_layout().into_owned(),
        Layout::Fortran => {
            let mut f = Array2::default((rows, cols).f());
            f.assign(logical);
            f
        }
        Layout::Strided => {
            let mut wide = Array2::default((rows, cols * 2));
            wide.slice_mut(s![.., ..;2]).assign(logical);
            wide
        }
        Layout::Reversed => {
            let mut reversed = Array2::default((rows, cols));
            reversed.slice_mut(s![.., ..;-1]).assign(logical);
            reversed
        }
    }
}

fn view_of<T>(storage: &Array2<T>, layout: Layout) -> ArrayView2<'_, T> {
    match layout {
        Layout::C | Layout::Fortran => storage.view(),
        Layout::Strided => storage.slice(s![.., ..;2]),
        Layout::Reversed => storage.slice(s![.., ..;-1]),
    }
}

impl Owned {
    fn new(logical: &Array2<i64>, wide_dtype: bool, layout: Layout) -> Self {
        if wide_dtype {
            Owned::I64(arrange(logical, layout), layout)
        } else {
            Owned::I32(arrange(&logical.mapv(|v| v as i32), layout), layout)
        }
    }

    fn view(&self) -> IdsView<'_> {
        match self {
            Owned::I32(a, layout) => IdsView::I32(view_of(a, *layout)),
            Owned::I64(a, layout) => IdsView::I64(view_of(a, *layout)),
        }
    }

    /// The values as the call sees them, widened to i64 (an i32 array truncates what it holds).
    fn values(&self) -> Vec<i64> {
        match self {
            Owned::I32(a, layout) => view_of(a, *layout).iter().map(|&v| i64::from(v)).collect(),
            Owned::I64(a, layout) => view_of(a, *layout).iter().copied().collect(),
        }
    }
}

struct Case {
    encoder: usize,
    ids: Owned,
    mask: Owned,
    types: Option<Owned>,
    normalize: Option<bool>,
}

/// flags:  bit 0 ids are i64, bit 1 mask is i64, bit 2 token_type_ids given, bit 3 they are i64,
///         bits 4-5 memory layout, bit 6 normalize given, bit 7 its value.
/// flags2: bits 0-1 encoder, bit 2 mask one column short (shape mismatch), bit 3 ids read as
///         8-byte values, bit 4 mask read as 8-byte values.
fn decode(data: &[u8]) -> Case {
    let mut r = Reader::new(data);
    let flags = r.u8();
    let flags2 = r.u8();
    let rows = usize::from(r.u8() % (MAX_ROWS + 1));
    let cols = usize::from(r.u8() % (MAX_COLS + 1));
    let layout = match (flags >> 4) & 3 {
        0 => Layout::C,
        1 => Layout::Fortran,
        2 => Layout::Strided,
        _ => Layout::Reversed,
    };

    let wide_ids = flags2 & 8 != 0;
    let ids = Array2::from_shape_fn((rows, cols), |_| {
        if wide_ids {
            return r.i64();
        }
        // Mostly valid ids; 200.. reach just past the vocabulary, 250.. are negative.
        match r.u8() {
            b @ 0..=199 => i64::from(b) % TINY.vocab as i64,
            b @ 200..=249 => i64::from(b) - 200 + TINY.vocab as i64 - 5,
            b => 249 - i64::from(b),
        }
    });
    let mask_cols = if flags2 & 4 != 0 {
        cols.saturating_sub(1)
    } else {
        cols
    };
    let wide_mask = flags2 & 16 != 0;
    let mask = Array2::from_shape_fn((rows, mask_cols), |_| {
        if wide_mask {
            return r.i64();
        }
        match r.u8() {
            0..=159 => 1,
            160..=253 => 0,
            254 => 2,
            _ => -1,
        }
    });
    let types = (flags & 4 != 0).then(|| {
        Array2::from_shape_fn((rows, cols), |_| match r.u8() {
            b @ 0..=249 => i64::from(b) % TINY.type_vocab as i64,
            b => i64::from(b) - 250 + TINY.type_vocab as i64 - 1,
        })
    });
    Case {
        encoder: usize::from(flags2 & 3) % 3,
        ids: Owned::new(&ids, flags & 1 != 0, layout),
        mask: Owned::new(&mask, flags & 2 != 0, layout),
        types: types.map(|t| Owned::new(&t, flags & 8 != 0, layout)),
        normalize: (flags & 64 != 0).then_some(flags & 128 != 0),
    }
}

/// What `TokenBatch::new` must decide, from the documented rules alone.
fn expected_valid(case: &Case, max_positions: usize, vocab: usize, type_vocab: usize) -> bool {
    let (rows, cols) = case.ids.view().shape();
    let in_range = |values: Vec<i64>, limit: usize| {
        values.iter().all(|&v| v >= 0 && (v as u64) < limit as u64)
    };
    case.mask.view().shape() == (rows, cols)
        && !(rows > 0 && cols == 0)
        && cols <= max_positions
        && in_range(case.ids.values(), vocab)
        && case
            .types
            .as_ref()
            .is_none_or(|t| in_range(t.values(), type_vocab))
        && case.mask.values().iter().all(|&m| m == 0 || m == 1)
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= TOLERANCE * w.abs().max(1.0),
            "{what}: element {i} is {g}, expected {w}"
        );
    }
}

fn one_row(batch: &TokenBatch, row: usize, len: usize) -> TokenBatch {
    let range = row * batch.seq_len..row * batch.seq_len + len;
    TokenBatch {
        batch: 1,
        seq_len: len,
        ids: batch.ids[range.clone()].to_vec(),
        type_ids: batch.type_ids[range.clone()].to_vec(),
        mask: batch.mask[range].to_vec(),
    }
}

fuzz_target!(|data: &[u8]| {
    let case = decode(data);
    let encoder = &encoders()[case.encoder];
    let config = encoder.config();
    let result = TokenBatch::new(
        case.ids.view(),
        case.mask.view(),
        case.types.as_ref().map(Owned::view),
        config,
    );
    let valid = expected_valid(
        &case,
        config.max_position_embeddings,
        config.vocab_size,
        config.type_vocab_size,
    );
    let batch = match result {
        Ok(batch) => {
            assert!(valid, "TokenBatch::new accepted an input the rules refuse");
            batch
        }
        Err(err) => {
            assert!(!valid, "TokenBatch::new refused a valid input: {err}");
            assert!(!err.to_string().is_empty());
            return;
        }
    };

    // Accepted values arrive unchanged, in row-major order.
    let (rows, cols) = case.ids.view().shape();
    assert_eq!((batch.batch, batch.seq_len), (rows, cols));
    let as_u32 = |v: Vec<i64>| v.into_iter().map(|x| x as u32).collect::<Vec<_>>();
    assert_eq!(batch.ids, as_u32(case.ids.values()));
    assert_eq!(
        batch.mask,
        case.mask
            .values()
            .into_iter()
            .map(|x| x as u8)
            .collect::<Vec<_>>()
    );
    match &case.types {
        Some(types) => assert_eq!(batch.type_ids, as_u32(types.values())),
        None => assert!(batch.type_ids.iter().all(|&t| t == 0)),
    }

    let dim = encoder.output_dim();
    let out = encoder
        .encode(&batch, case.normalize)
        .expect("a validated batch encodes");
    assert_eq!(out.len(), rows * dim);
    assert!(
        out.iter().all(|v| v.is_finite()),
        "non-finite output: {out:?}"
    );
    let normalize = case
        .normalize
        .unwrap_or(encoder.sentence_config().normalize);
    if normalize {
        for row in out.chunks_exact(dim) {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!(
                (norm - 1.0).abs() < 1e-3 || norm == 0.0,
                "row norm {norm} after normalising"
            );
        }
    }

    // Each row alone, and without its trailing padding, gives the vector it got in the batch.
    for (row, want) in out.chunks_exact(dim).enumerate() {
        if rows > 1 {
            let alone = encoder
                .encode(&one_row(&batch, row, cols), case.normalize)
                .expect("one row encodes");
            assert_close(&alone, want, &format!("row {row} encoded alone"));
        }
        let mask = &batch.mask[row * cols..(row + 1) * cols];
        if let Some(last) = mask.iter().rposition(|&m| m == 1) {
            if last + 1 < cols {
                let trimmed = encoder
                    .encode(&one_row(&batch, row, last + 1), case.normalize)
                    .expect("a trimmed row encodes");
                assert_close(
                    &trimmed,
                    want,
                    &format!("row {row} without trailing padding"),
                );
            }
        }
    }
});
