//! The Python boundary: the only code that touches PyO3 or NumPy.
//!
//! Arguments are checked and the token arrays read (in place, no copy) while the GIL is held;
//! the forward pass runs with the GIL released; the result is a buffer Rust allocated, handed to
//! NumPy without a copy.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use std::collections::BTreeMap;

use numpy::ndarray::{Array2, Array3, Dimension, Ix1, Ix2};
use numpy::prelude::*;
use numpy::{PyArray, PyArray2, PyArray3, PyReadonlyArray, PyUntypedArray};
use pyo3::exceptions::{PyException, PyFileNotFoundError, PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::batch::{IdsView, IntsView, OutputRows, RaggedBatch, TokenBatch};
use crate::compute::{Compute, REQUESTS};
use crate::config::TextConfig;
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

/// An integer array borrowed read-only from NumPy for the duration of one call.
enum Ids<'py, D: Dimension> {
    I32(PyReadonlyArray<'py, i32, D>),
    I64(PyReadonlyArray<'py, i64, D>),
}

impl Ids<'_, Ix2> {
    fn view(&self) -> IdsView<'_> {
        match self {
            Ids::I32(a) => IdsView::I32(a.as_array()),
            Ids::I64(a) => IdsView::I64(a.as_array()),
        }
    }
}

impl Ids<'_, Ix1> {
    fn view(&self) -> IntsView<'_> {
        match self {
            Ids::I32(a) => IntsView::I32(a.as_array()),
            Ids::I64(a) => IntsView::I64(a.as_array()),
        }
    }
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "object".to_owned())
}

/// A token array of `D` dimensions (`shape` says which, for messages), int32 or int64.
fn extract_ids<'py, D: Dimension>(
    name: &str,
    shape: &str,
    obj: &Bound<'py, PyAny>,
) -> PyResult<Ids<'py, D>> {
    let py = obj.py();
    let array = obj.cast::<PyUntypedArray>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{name} must be a numpy.ndarray of int32 or int64, got {}",
            type_name(obj)
        ))
    })?;
    if Some(array.ndim()) != D::NDIM {
        return Err(PyValueError::new_err(format!(
            "{name} must be {shape}, got a {}-D array of shape {:?}",
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
        return extract_ids(name, shape, &copy);
    }
    let borrowed =
        |e: numpy::BorrowError| PyValueError::new_err(format!("{name} cannot be read: {e}"));
    if dtype.is_equiv_to(&numpy::dtype::<i64>(py)) {
        let typed = obj.cast::<PyArray<i64, D>>()?;
        Ok(Ids::I64(typed.try_readonly().map_err(borrowed)?))
    } else if dtype.is_equiv_to(&numpy::dtype::<i32>(py)) {
        let typed = obj.cast::<PyArray<i32, D>>()?;
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
        const PADDED: &str = "2-D (batch, sequence)";
        let ids = extract_ids::<Ix2>("input_ids", PADDED, input_ids)?;
        let mask = extract_ids::<Ix2>("attention_mask", PADDED, attention_mask)?;
        let types = token_type_ids
            .map(|t| extract_ids::<Ix2>("token_type_ids", PADDED, t))
            .transpose()?;
        Ok(TokenBatch::new(
            ids.view(),
            mask.view(),
            types.as_ref().map(|t| t.view()),
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

    /// Sentence embeddings of sequences given without padding, as a tokenizer returns them:
    /// sequence `s` is `input_ids[offsets[s]:offsets[s + 1]]` (1-D int32 or int64 arrays,
    /// `offsets` one longer than the number of sequences, from 0 to `len(input_ids)`).
    /// With `out` (float32, C-contiguous, writable, 2-D with 1 to `output_dim` columns) the
    /// first `out.shape[1]` values of sequence `s` are written into row `rows[s]` (or row `s`)
    /// and `out` is returned; otherwise a new (sequences, output_dim) array. `normalize=None`
    /// applies the model's Normalize module to the whole vector; `True` makes every written
    /// row unit length (after the cut to `out`'s width).
    #[pyo3(signature = (input_ids, offsets, *, out=None, rows=None, normalize=None))]
    fn encode_ragged<'py>(
        &self,
        py: Python<'py>,
        input_ids: &Bound<'py, PyAny>,
        offsets: &Bound<'py, PyAny>,
        out: Option<&Bound<'py, PyAny>>,
        rows: Option<&Bound<'py, PyAny>>,
        normalize: Option<bool>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        const FLAT: &str = "1-D";
        let engine = self.engine(py)?;
        let ids = extract_ids::<Ix1>("input_ids", FLAT, input_ids)?;
        let offsets = extract_ids::<Ix1>("offsets", FLAT, offsets)?;
        let batch = RaggedBatch::new(ids.view(), offsets.view(), engine.config())?;
        let rows = rows
            .map(|r| extract_ids::<Ix1>("rows", FLAT, r))
            .transpose()?;
        let rows = rows.as_ref().map(|r| r.view());
        let dim = engine.output_dim();
        let Some(out) = out else {
            if rows.is_some() {
                return Err(PyValueError::new_err(
                    "rows= needs out= (the array to write into)",
                ));
            }
            let mut values = vec![0.0f32; batch.sequences() * dim];
            let target = OutputRows::new(&mut values, dim, dim, None, batch.sequences())?;
            py.detach(|| engine.encode_ragged(&batch, normalize, target))?;
            let array = Array2::from_shape_vec((batch.sequences(), dim), values)
                .map_err(|e| MiniLMError::new_err(format!("shaping the output: {e}")))?;
            return Ok(array.into_pyarray(py));
        };
        let array = checked_output(out)?;
        let width = array.shape()[1];
        let mut writable = array
            .try_readwrite()
            .map_err(|e| PyValueError::new_err(format!("out cannot be written: {e}")))?;
        let data = writable
            .as_slice_mut()
            .map_err(|e| PyValueError::new_err(format!("out cannot be written: {e}")))?;
        let target = OutputRows::new(data, width, dim, rows, batch.sequences())?;
        py.detach(|| engine.encode_ragged(&batch, normalize, target))?;
        drop(writable);
        Ok(array)
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

    /// Whether the Pooling module counts a prompt's tokens (its config's `include_prompt`).
    #[getter]
    fn include_prompt(&self) -> bool {
        self.current().sentence_config().include_prompt
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

/// `out` of `encode_ragged` as an array Rust may write: a 2-D float32 array, C-contiguous,
/// aligned and in native byte order (writability is checked when it is borrowed).
fn checked_output<'py>(out: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let array = out.cast::<PyUntypedArray>().map_err(|_| {
        PyTypeError::new_err(format!(
            "out must be a numpy.ndarray of float32, got {}",
            type_name(out)
        ))
    })?;
    if !array.dtype().is_equiv_to(&numpy::dtype::<f32>(out.py())) {
        return Err(PyTypeError::new_err(format!(
            "out must have dtype float32, got {}",
            array.dtype().str()?
        )));
    }
    if array.ndim() != 2 {
        return Err(PyValueError::new_err(format!(
            "out must be 2-D (rows, dimensions), got a {}-D array of shape {:?}",
            array.ndim(),
            array.shape()
        )));
    }
    if !array.is_c_contiguous() || !array.is_aligned() {
        return Err(PyValueError::new_err(
            "out must be C-contiguous and aligned (numpy.empty((n, dim), numpy.float32) is)",
        ));
    }
    Ok(out.cast::<PyArray2<f32>>()?.clone())
}

/// The sentence-transformers settings of a model folder that shape its input text, read by
/// [`read_text_config`].
#[pyclass(frozen, module = "minilm_fast._minilm_fast", name = "TextConfig")]
struct PyTextConfig {
    inner: TextConfig,
}

#[pymethods]
impl PyTextConfig {
    /// `sentence_bert_config.json`'s `max_seq_length`, else `tokenizer_config.json`'s
    /// `model_max_length`; None when neither sets one. Not capped by the position table.
    #[getter]
    fn max_seq_length(&self) -> Option<usize> {
        self.inner.max_seq_length
    }

    #[getter]
    fn do_lower_case(&self) -> bool {
        self.inner.do_lower_case
    }

    /// `config_sentence_transformers.json`'s named prompts.
    #[getter]
    fn prompts(&self) -> BTreeMap<String, String> {
        self.inner.prompts.clone()
    }

    #[getter]
    fn default_prompt_name(&self) -> Option<String> {
        self.inner.default_prompt_name.clone()
    }

    fn __repr__(&self) -> String {
        let c = &self.inner;
        format!(
            "TextConfig(max_seq_length={}, do_lower_case={}, prompts={}, default_prompt_name={})",
            c.max_seq_length
                .map_or_else(|| "None".to_owned(), |n| n.to_string()),
            if c.do_lower_case { "True" } else { "False" },
            c.prompts.len(),
            c.default_prompt_name.as_deref().unwrap_or("None"),
        )
    }
}

/// Reads the optional sentence-transformers files of `model_dir` that say how text becomes
/// tokens (`sentence_bert_config.json`, `config_sentence_transformers.json` and, when the first
/// sets no length, `tokenizer_config.json`), with the rules of every configuration file: a
/// regular file of at most 16 MiB holding a JSON object. A broken file raises MiniLMError
/// naming it; an absent one gives the defaults.
#[pyfunction]
fn read_text_config(py: Python<'_>, model_dir: PathBuf) -> PyResult<PyTextConfig> {
    let inner = py.detach(|| TextConfig::from_dir(&model_dir))?;
    Ok(PyTextConfig { inner })
}

/// CPUs this process may use (affinity and cgroup quota), the default thread count.
#[pyfunction]
fn default_threads() -> usize {
    crate::engine::default_threads()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeModel>()?;
    m.add_class::<PyTextConfig>()?;
    m.add_function(wrap_pyfunction!(default_threads, m)?)?;
    m.add_function(wrap_pyfunction!(read_text_config, m)?)?;
    m.add("COMPUTE_MODES", PyTuple::new(m.py(), REQUESTS)?)?;
    m.add("MiniLMError", m.py().get_type::<MiniLMError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
