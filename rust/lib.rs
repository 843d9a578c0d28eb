//! minilm_fast: a BERT sentence encoder (sentence-transformers compatible) for CPUs.
//!
//! The core (everything but `py`) is plain Rust: load a model folder with
//! [`SentenceEncoder::load`], check token arrays with [`TokenBatch::new`], and call
//! [`SentenceEncoder::encode`]. The `python` feature adds the PyO3 module `_minilm_fast`.

mod attention;
pub mod batch;
pub mod compute;
pub mod config;
pub mod engine;
pub mod error;
pub mod kernels;
mod linear;
mod memory;
pub mod model;
mod ops;
mod packing;
pub mod pooling;
pub mod stage_timing;
#[cfg(any(test, feature = "tiny-bert"))]
pub mod tiny_bert;
mod weights;
mod workspace;

#[cfg(feature = "python")]
mod py;

pub use batch::{IdsView, TokenBatch};
pub use compute::Compute;
pub use config::{BertConfig, PoolingMode, SentenceConfig};
pub use engine::SentenceEncoder;
pub use error::{Error, Result};
pub use model::Backend;

#[cfg(feature = "python")]
use pyo3::prelude::*;

/// The native module; all binding code lives in `py.rs`.
///
/// `gil_used = true`: on a free-threaded CPython the module asks for the GIL, because it has not
/// been tested there (PyO3 0.30 builds for 3.14t and newer, and no such interpreter could be
/// had here: docs/RELEASING.md). PyO3's default would declare it free-threading safe untested.
/// On every other CPython this changes nothing.
#[cfg(feature = "python")]
#[pymodule(gil_used = true)]
fn _minilm_fast(m: &Bound<'_, PyModule>) -> PyResult<()> {
    py::register(m)
}
