//! The one error type of the pure-Rust core. No PyO3 here: `py.rs` maps each variant to a Python
//! exception, so the core stays usable (and testable) from plain Rust.

use std::path::PathBuf;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file the model needs is not there.
    #[error("{path}: no such file")]
    MissingFile { path: PathBuf },

    /// The file is there but could not be read.
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A JSON configuration file that does not parse or holds impossible values.
    #[error("reading {path}: {message}")]
    BadConfig { path: PathBuf, message: String },

    /// Weights that do not parse or do not fit the configuration.
    #[error("reading weights from {path}: {message}")]
    BadWeights { path: PathBuf, message: String },

    /// A model that parses but uses a feature this engine does not implement.
    #[error("unsupported model: {0}")]
    Unsupported(String),

    /// Caller-supplied values that are out of range (token ids, masks, shapes).
    #[error("{0}")]
    InvalidInput(String),

    /// A failure inside Candle or one of our Candle ops (`ops.rs`), which check their tensors'
    /// dtypes and sizes; should not happen on validated input.
    #[error("computation failed: {0}")]
    Compute(String),
}

impl From<candle_core::Error> for Error {
    fn from(err: candle_core::Error) -> Self {
        Error::Compute(err.to_string())
    }
}
