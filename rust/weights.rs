//! Weights from a memory-mapped safetensors file: every tensor's dtype and shape is checked
//! against the configuration before a byte of it is copied, so a lying or truncated file is
//! refused with its name instead of crashing or allocating what its header claims.

use std::path::Path;

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{Device, Tensor};

use crate::error::{Error, Result};

/// Reads tensors by name from a memory-mapped safetensors file, checking dtype and shape
/// against the configuration before any data is copied.
pub struct WeightReader<'a> {
    file: MmapedSafetensors,
    path: &'a Path,
    /// "" or "bert.", whichever prefix the checkpoint uses.
    prefix: &'static str,
}

impl<'a> WeightReader<'a> {
    pub fn open(path: &'a Path) -> Result<Self> {
        std::fs::metadata(path).map_err(|source| crate::config::io_error(path, source))?;
        // SAFETY: the file is mapped read-only and every tensor is copied out during `load`; the
        // map is dropped when loading ends. Another process truncating the file during those
        // milliseconds is the one case a memory map cannot guard against (it would raise SIGBUS),
        // an accepted risk shared by every mmap-based loader.
        let file = unsafe { MmapedSafetensors::new(path) }.map_err(|e| Error::BadWeights {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let prefix = if file.get("embeddings.word_embeddings.weight").is_ok() {
            ""
        } else {
            "bert."
        };
        Ok(Self { file, path, prefix })
    }

    fn bad(&self, message: String) -> Error {
        Error::BadWeights {
            path: self.path.to_owned(),
            message,
        }
    }

    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let full = format!("{}{name}", self.prefix);
        let view = self
            .file
            .get(&full)
            .map_err(|_| self.bad(format!("tensor {full} is missing")))?;
        if view.dtype() != safetensors::Dtype::F32 {
            return Err(self.bad(format!(
                "tensor {full} has dtype {}, expected F32",
                dtype_name(view.dtype())
            )));
        }
        if view.shape() != shape {
            return Err(self.bad(format!(
                "tensor {full} has shape {:?}, the configuration needs {:?}",
                view.shape(),
                shape
            )));
        }
        Ok(self.file.load(&full, &Device::Cpu)?)
    }
}

fn dtype_name(dtype: safetensors::Dtype) -> String {
    // The safetensors dtype names (F16, BF16, I64, ...) are what users see in their tools.
    format!("{dtype:?}")
}
