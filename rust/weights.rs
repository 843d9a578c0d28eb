//! Weights from a memory-mapped safetensors file: every tensor's dtype and shape is checked
//! against the configuration before a byte of it is copied, so a lying or truncated file is
//! refused with its name instead of crashing or allocating what its header claims.

use std::path::Path;

use candle_core::safetensors::MmapedSafetensors;

use crate::error::{Error, Result};
use crate::memory;

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
        let metadata =
            std::fs::metadata(path).map_err(|source| crate::config::io_error(path, source))?;
        if !metadata.is_file() {
            // Opening a FIFO would wait for a writer forever; a folder or device is no weights.
            return Err(Error::BadWeights {
                path: path.to_owned(),
                message: "not a regular file".to_owned(),
            });
        }
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

    /// The values of tensor `name`, which must be F32 of exactly `shape`, as native floats.
    ///
    /// Copied out of the map a few MiB at a time, each piece's pages given back to the kernel as
    /// soon as it is copied: the file's pages (90 MB for all-MiniLM-L6-v2) then never sit in
    /// the process's resident memory next to the copies, and peak RSS during a load is little
    /// more than what the model keeps.
    pub fn values(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
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
        // The safetensors crate checked that the data is exactly shape × 4 bytes.
        let bytes = view.data();
        let mut values = Vec::with_capacity(bytes.len() / 4);
        for piece in bytes.chunks(RELEASE_BYTES) {
            values.extend(
                piece
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
            memory::release_file_pages(piece);
        }
        Ok(values)
    }
}

/// Bytes copied between two page releases; a multiple of 4, so no float spans two pieces.
const RELEASE_BYTES: usize = 4 << 20;

fn dtype_name(dtype: safetensors::Dtype) -> String {
    // The safetensors dtype names (F16, BF16, I64, ...) are what users see in their tools.
    format!("{dtype:?}")
}

#[cfg(test)]
mod tests {
    //! `open` is the crate's one memory map (the `unsafe` above): these load real files through it,
    //! good and bad, so `make valgrind` checks those reads too.

    use std::path::PathBuf;

    use safetensors::Dtype;

    use super::*;
    use crate::tiny_bert::{serialize, RawTensor};

    /// A fresh file path under the temp folder, unique to this process and test.
    fn temp_file(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("minilm_fast_weights_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    /// A safetensors file with `tensors` (name, dtype, shape), each filled with bytes 0, 1, 2, ...
    fn write(path: &Path, tensors: &[(&str, Dtype, &[usize])]) {
        let raw: Vec<RawTensor> = tensors
            .iter()
            .map(|&(name, dtype, shape)| {
                let bytes = shape.iter().product::<usize>() * dtype.bitsize() / 8;
                RawTensor {
                    name: name.to_owned(),
                    dtype,
                    shape: shape.to_vec(),
                    data: (0..bytes).map(|i| i as u8).collect(),
                }
            })
            .collect();
        std::fs::write(path, serialize(&raw)).unwrap();
    }

    #[test]
    fn reads_checked_tensors_with_either_name_prefix() {
        for prefix in ["", "bert."] {
            let path = temp_file(&format!("good_{}.safetensors", prefix.len()));
            let word = format!("{prefix}embeddings.word_embeddings.weight");
            let bias = format!("{prefix}encoder.layer.0.output.dense.bias");
            write(
                &path,
                &[(&word, Dtype::F32, &[5, 3]), (&bias, Dtype::F32, &[3])],
            );
            let reader = WeightReader::open(&path).unwrap();
            let word = reader
                .values("embeddings.word_embeddings.weight", &[5, 3])
                .unwrap();
            assert_eq!(word.len(), 15);
            // The file's bytes are 0, 1, 2, ... per tensor (see `write`).
            assert_eq!(word[14], f32::from_le_bytes([56, 57, 58, 59]));
            let bias = reader
                .values("encoder.layer.0.output.dense.bias", &[3])
                .unwrap();
            assert_eq!(
                bias,
                [0, 4, 8].map(|i| f32::from_le_bytes([i, i + 1, i + 2, i + 3]))
            );
            std::fs::remove_file(&path).unwrap();
        }
    }

    #[test]
    fn refuses_wrong_dtype_shape_and_missing_tensors_by_name() {
        let path = temp_file("bad.safetensors");
        write(
            &path,
            &[
                ("embeddings.word_embeddings.weight", Dtype::F32, &[5, 3]),
                ("half", Dtype::F16, &[4]),
            ],
        );
        let reader = WeightReader::open(&path).unwrap();
        let err = reader
            .values("embeddings.word_embeddings.weight", &[3, 5])
            .unwrap_err();
        assert!(err.to_string().contains("shape [5, 3]"), "{err}");
        let err = reader.values("half", &[4]).unwrap_err();
        assert!(err.to_string().contains("dtype F16"), "{err}");
        let err = reader.values("absent", &[1]).unwrap_err();
        assert!(err.to_string().contains("absent is missing"), "{err}");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn refuses_truncated_lying_and_missing_files() {
        let path = temp_file("cut.safetensors");
        write(
            &path,
            &[("embeddings.word_embeddings.weight", Dtype::F32, &[5, 3])],
        );
        let whole = std::fs::read(&path).unwrap();
        std::fs::write(&path, &whole[..whole.len() - 4]).unwrap();
        assert!(matches!(
            WeightReader::open(&path),
            Err(Error::BadWeights { .. })
        ));
        // A header length far beyond the file.
        let mut lying = whole.clone();
        lying[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
        std::fs::write(&path, &lying).unwrap();
        assert!(matches!(
            WeightReader::open(&path),
            Err(Error::BadWeights { .. })
        ));
        std::fs::write(&path, b"").unwrap();
        assert!(WeightReader::open(&path).is_err());
        assert!(WeightReader::open(path.parent().unwrap()).is_err());
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            WeightReader::open(&path),
            Err(Error::MissingFile { .. })
        ));
    }
}
