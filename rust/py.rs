//! The Python boundary: the only code that touches PyO3 or NumPy.
//!
//! Arguments are checked and the token arrays read (in place, no copy) while the GIL is held;
//! the forward pass runs with the GIL released; the result is a buffer Rust allocated, handed to
//! NumPy without a copy.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use numpy::ndarray::{Array2, Array3};
use numpy::prelude::*;
use numpy::{PyArray2, PyArray3, PyReadonlyArray2, PyUntypedArray};
use pyo3::exceptions::{PyException, PyFileNotFoundError, PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::batch::{IdsView, TokenBatch};
use crate::compute::Compute;
use crate::engine::SentenceEncoder;
use crate::error::Error;

pyo3::create_exception!(
    _minilm_fast,
    MiniLMError,
    PyException,
    "Raised when a model cannot be loaded or run (bad weights, unsupported configuration)."
);

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        let message = err.to_string();
        match err {
            Error::MissingFile { .. } => PyFileNotFoundError::new_err(message),
            Error::Io { .. } => PyOSError::new_err(message),
            Error::InvalidInput(_) => PyValueError::new_err(message),
            Error::BadConfig { .. }
            | Error::BadWeights { .. }
            | Error::Unsupported(_)
            | Error::Compute(_) => MiniLMError::new_err(message),
        }
    }
}

/// A token array borrowed read-only from NumPy for the duration of one call.
enum Ids<'py> {
    I32(PyReadonlyArray2<'py, i32>),
    I64(PyReadonlyArray2<'py, i64>),
}

impl Ids<'_> {
    fn view(&self) -> IdsView<'_> {
        match self {
            Ids::I32(a) => IdsView::I32(a.as_array()),
            Ids::I64(a) => IdsView::I64(a.as_array()),
        }
    }
}

fn extract_ids<'py>(name: &str, obj: &Bound<'py, PyAny>) -> PyResult<Ids<'py>> {
    let py = obj.py();
    let array = obj.cast::<PyUntypedArray>().map_err(|_| {
        let type_name = obj
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "object".to_owned());
        PyTypeError::new_err(format!(
            "{name} must be a numpy.ndarray of int32 or int64, got {type_name}"
        ))
    })?;
    if array.ndim() != 2 {
        return Err(PyValueError::new_err(format!(
            "{name} must be 2-D (batch, sequence), got a {}-D array of shape {:?}",
            array.ndim(),
            array.shape()
        )));
    }
    let dtype = array.dtype();
    // rust-numpy views memory in place assuming aligned elements and strides that are whole
    // elements; a field of a packed record array (stride 9 for int64) or a buffer at an odd
    // offset breaks both, and would be read as other numbers. Such arrays, and byte-swapped
    // ones, are copied once into an aligned native-order array (numpy does the conversion).
    let is_id_dtype = dtype.kind() == b'i' && matches!(dtype.itemsize(), 4 | 8);
    if is_id_dtype && (!array.is_aligned() || dtype.is_native_byteorder() == Some(false)) {
        let native = dtype.call_method1("newbyteorder", ("=",))?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("dtype", native)?;
        kwargs.set_item("copy", true)?;
        // `copy=True`: `ascontiguousarray` would hand back an unaligned C-contiguous input as is.
        let copy = py
            .import("numpy")?
            .getattr("array")?
            .call((obj,), Some(&kwargs))?;
        let copied = copy.cast::<PyUntypedArray>()?;
        if !copied.is_aligned() || copied.dtype().is_native_byteorder() == Some(false) {
            return Err(PyValueError::new_err(format!(
                "{name} could not be copied into aligned memory"
            )));
        }
        return extract_ids(name, &copy);
    }
    let borrowed =
        |e: numpy::BorrowError| PyValueError::new_err(format!("{name} cannot be read: {e}"));
    if dtype.is_equiv_to(&numpy::dtype::<i64>(py)) {
        let typed = obj.cast::<PyArray2<i64>>()?;
        Ok(Ids::I64(typed.try_readonly().map_err(borrowed)?))
    } else if dtype.is_equiv_to(&numpy::dtype::<i32>(py)) {
        let typed = obj.cast::<PyArray2<i32>>()?;
        Ok(Ids::I32(typed.try_readonly().map_err(borrowed)?))
    } else {
        Err(PyTypeError::new_err(format!(
            "{name} must have dtype int32 or int64, got {}",
            dtype.str()?
        )))
    }
}

/// A loaded model. Immutable after construction, so one instance serves many threads at once.
#[pyclass(frozen, module = "minilm_fast._minilm_fast", name = "NativeModel")]
struct NativeModel {
    model_dir: PathBuf,
    threads: Option<usize>,
    compute: Compute,
    loaded: Mutex<Loaded>,
}

/// The engine, and the process it was loaded in.
struct Loaded {
    pid: u32,
    engine: Arc<SentenceEncoder>,
}

impl NativeModel {
    /// The engine as loaded; for attributes, which need no worker threads.
    fn current(&self) -> Arc<SentenceEncoder> {
        let loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(&loaded.engine)
    }

    /// The engine to compute with in this process.
    ///
    /// After `os.fork()` the child has a copy of the engine whose worker threads do not exist
    /// (fork copies only the calling thread), so a call would wait for them forever. The child
    /// therefore loads the model again on its first call. The lock is only ever taken with the
    /// GIL held and released before it is, so no thread holds it while another forks.
    fn engine(&self, py: Python<'_>) -> PyResult<Arc<SentenceEncoder>> {
        let pid = std::process::id();
        {
            let loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
            if loaded.pid == pid {
                return Ok(Arc::clone(&loaded.engine));
            }
        }
        let fresh = py.detach(|| {
            SentenceEncoder::load_with_compute(&self.model_dir, self.threads, self.compute)
        })?;
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        if loaded.pid != pid {
            let inherited = std::mem::replace(
                &mut *loaded,
                Loaded {
                    pid,
                    engine: Arc::new(fresh),
                },
            );
            // Dropping the parent's pool here would signal threads that do not exist, through
            // locks that one of them may have held at the fork: leak it instead (its memory is
            // the parent's, shared copy-on-write).
            std::mem::forget(inherited);
        }
        Ok(Arc::clone(&loaded.engine))
    }

    /// Reads and validates the arrays while the GIL is held; after this, no NumPy memory is
    /// touched, so the compute can run without the GIL.
    fn batch(
        engine: &SentenceEncoder,
        input_ids: &Bound<'_, PyAny>,
        attention_mask: &Bound<'_, PyAny>,
        token_type_ids: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<TokenBatch> {
        let ids = extract_ids("input_ids", input_ids)?;
        let mask = extract_ids("attention_mask", attention_mask)?;
        let types = token_type_ids
            .map(|t| extract_ids("token_type_ids", t))
            .transpose()?;
        Ok(TokenBatch::new(
            ids.view(),
            mask.view(),
            types.as_ref().map(Ids::view),
            engine.config(),
        )?)
    }
}

#[pymethods]
impl NativeModel {
    /// Loads the model in `model_dir` (config.json, model.safetensors, optional modules.json).
    /// `threads=None` uses every CPU the process may run on; `compute` is "float32",
    /// "bfloat16", "int8" or "auto", resolved to what this CPU has kernels for.
    #[new]
    #[pyo3(signature = (model_dir, threads=None, compute="float32"))]
    fn new(
        py: Python<'_>,
        model_dir: PathBuf,
        threads: Option<i64>,
        compute: &str,
    ) -> PyResult<Self> {
        let compute = Compute::resolve(compute)?;
        let threads = match threads {
            Some(n) if n < 1 => {
                return Err(PyValueError::new_err(format!(
                    "threads must be at least 1 (or None for every available CPU), got {n}"
                )))
            }
            Some(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            None => None,
        };
        let engine =
            py.detach(|| SentenceEncoder::load_with_compute(&model_dir, threads, compute))?;
        Ok(Self {
            model_dir,
            threads,
            compute,
            loaded: Mutex::new(Loaded {
                pid: std::process::id(),
                engine: Arc::new(engine),
            }),
        })
    }

    /// Sentence embeddings, float32 (batch, output_dim), C-contiguous, owned by the caller.
    #[pyo3(signature = (input_ids, attention_mask, token_type_ids=None, *, normalize=None))]
    fn encode<'py>(
        &self,
        py: Python<'py>,
        input_ids: &Bound<'py, PyAny>,
        attention_mask: &Bound<'py, PyAny>,
        token_type_ids: Option<&Bound<'py, PyAny>>,
        normalize: Option<bool>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let engine = self.engine(py)?;
        let batch = Self::batch(&engine, input_ids, attention_mask, token_type_ids)?;
        let values = py.detach(|| engine.encode(&batch, normalize))?;
        let array = Array2::from_shape_vec((batch.batch, engine.output_dim()), values)
            .map_err(|e| MiniLMError::new_err(format!("shaping the output: {e}")))?;
        Ok(array.into_pyarray(py))
    }

    /// The encoder's last hidden state, float32 (batch, sequence, hidden); padding rows included.
    #[pyo3(signature = (input_ids, attention_mask, token_type_ids=None))]
    fn token_embeddings<'py>(
        &self,
        py: Python<'py>,
        input_ids: &Bound<'py, PyAny>,
        attention_mask: &Bound<'py, PyAny>,
        token_type_ids: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyArray3<f32>>> {
        let engine = self.engine(py)?;
        let batch = Self::batch(&engine, input_ids, attention_mask, token_type_ids)?;
        let values = py.detach(|| engine.token_embeddings(&batch))?;
        let shape = (batch.batch, batch.seq_len, engine.config().hidden_size);
        let array = Array3::from_shape_vec(shape, values)
            .map_err(|e| MiniLMError::new_err(format!("shaping the output: {e}")))?;
        Ok(array.into_pyarray(py))
    }

    #[getter]
    fn hidden_size(&self) -> usize {
        self.current().config().hidden_size
    }

    #[getter]
    fn output_dim(&self) -> usize {
        self.current().output_dim()
    }

    #[getter]
    fn num_layers(&self) -> usize {
        self.current().config().num_layers
    }

    #[getter]
    fn vocab_size(&self) -> usize {
        self.current().config().vocab_size
    }

    #[getter]
    fn max_position_embeddings(&self) -> usize {
        self.current().config().max_position_embeddings
    }

    #[getter]
    fn type_vocab_size(&self) -> usize {
        self.current().config().type_vocab_size
    }

    #[getter]
    fn threads(&self) -> usize {
        self.current().threads()
    }

    #[getter]
    fn pooling(&self) -> Vec<&'static str> {
        self.current()
            .sentence_config()
            .pooling
            .iter()
            .map(|mode| mode.name())
            .collect()
    }

    #[getter]
    fn normalize(&self) -> bool {
        self.current().sentence_config().normalize
    }

    /// The SIMD instruction set the float32 kernels run with (GEMM, attention, LayerNorm,
    /// pooling): "avx512f", "avx2+fma", "neon" or "scalar".
    #[getter]
    fn isa(&self) -> &'static str {
        self.current().isa().name()
    }

    /// The arithmetic the linear layers run in ("float32", "bfloat16" or "int8").
    #[getter]
    fn compute(&self) -> &'static str {
        self.compute.name()
    }

    fn __repr__(&self) -> String {
        let engine = self.current();
        let config = engine.config();
        format!(
            "NativeModel(hidden_size={}, layers={}, heads={}, output_dim={}, threads={}, isa={}, \
             compute={})",
            config.hidden_size,
            config.num_layers,
            config.num_heads,
            engine.output_dim(),
            engine.threads(),
            engine.isa().name(),
            engine.compute().name()
        )
    }
}

/// CPUs this process may use (affinity and cgroup quota), the default thread count.
#[pyfunction]
fn default_threads() -> usize {
    crate::engine::default_threads()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeModel>()?;
    m.add_function(wrap_pyfunction!(default_threads, m)?)?;
    m.add("MiniLMError", m.py().get_type::<MiniLMError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
