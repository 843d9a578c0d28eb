//! `model.safetensors` from fuzzed bytes (lying header lengths, offsets, dtypes and shapes,
//! truncated data, NaN weights), loaded by `SentenceEncoder::load` against a fixed tiny
//! configuration: every file must either load or be refused with an error, never panic, read
//! out of bounds or allocate what a header claims. A file that loads is then used to encode a
//! fixed batch, which must give the right number of values (NaN weights may give NaN vectors).

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use minilm_fast::{IdsView, SentenceEncoder, TokenBatch};
use minilm_fast_fuzz::{scratch_dir, TINY};
use ndarray::array;

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch_dir("weights");
        TINY.write(&dir);
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let dir = dir();
    std::fs::write(dir.join("model.safetensors"), data).expect("writing model.safetensors");
    let encoder = match SentenceEncoder::load(dir, Some(1)) {
        Ok(encoder) => encoder,
        Err(err) => {
            assert!(!err.to_string().is_empty());
            return;
        }
    };
    let ids = array![[1i64, 7, 49, 3], [2, 0, 0, 0]];
    let mask = array![[1i64, 1, 1, 1], [1, 1, 0, 0]];
    let batch = TokenBatch::new(
        IdsView::I64(ids.view()),
        IdsView::I64(mask.view()),
        None,
        encoder.config(),
    )
    .expect("a valid batch for the tiny model");
    let out = encoder
        .encode(&batch, None)
        .expect("a loaded model encodes");
    assert_eq!(out.len(), 2 * encoder.output_dim());
});
