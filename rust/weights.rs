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

#[cfg(test)]
mod tests {
    //! `open` is the crate's one memory map (the `unsafe` above): these load real files through it,
    //! good and bad, so `make valgrind` checks those reads too.

    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use safetensors::tensor::TensorView;
    use safetensors::Dtype;

    use super::*;

    /// A fresh file path under the temp folder, unique to this process and test.
    fn temp_file(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("minilm_fast_weights_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    /// A safetensors file with `tensors` (name, dtype, shape), each filled with 0, 1, 2, ...
    fn write(path: &Path, tensors: &[(&str, Dtype, &[usize])]) {
        let data: Vec<Vec<u8>> = tensors
            .iter()
            .map(|(_, dtype, shape)| {
                let n: usize = shape.iter().product();
                let bytes = n * dtype.bitsize() / 8;
                (0..bytes).map(|i| i as u8).collect::<Vec<u8>>()
            })
            .collect();
        let views: BTreeMap<&str, TensorView<'_>> = tensors
            .iter()
            .zip(&data)
            .map(|((name, dtype, shape), raw)| {
                (*name, TensorView::new(*dtype, shape.to_vec(), raw).unwrap())
            })
            .collect();
        std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
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
            let tensor = reader
                .tensor("embeddings.word_embeddings.weight", &[5, 3])
                .unwrap();
            assert_eq!(tensor.dims(), &[5, 3]);
            let bias = reader
                .tensor("encoder.layer.0.output.dense.bias", &[3])
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let want = f32::from_le_bytes([0, 1, 2, 3]);
            assert_eq!(bias[0], want);
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
            .tensor("embeddings.word_embeddings.weight", &[3, 5])
            .unwrap_err();
        assert!(err.to_string().contains("shape [5, 3]"), "{err}");
        let err = reader.tensor("half", &[4]).unwrap_err();
        assert!(err.to_string().contains("dtype F16"), "{err}");
        let err = reader.tensor("absent", &[1]).unwrap_err();
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
