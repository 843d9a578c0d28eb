//! The sentence encoder a caller holds: a BERT model, its sentence-transformers pipeline
//! (pooling, normalisation) and a private thread pool sized by the caller, so `threads = 1`
//! really uses one core and two encoders never fight over a global pool. On the fused
//! backend a batch is packed and cut into groups of sequences, each run through the whole
//! encoder on a thread of its own.

use std::path::Path;

use rayon::prelude::*;

use crate::batch::{OutputRows, RaggedBatch, TokenBatch};
use crate::compute::Compute;
use crate::config::{BertConfig, SentenceConfig};
use crate::error::{Error, Result};
use crate::kernels::Isa;
use crate::model::{Backend, BertModel};
use crate::packing::PackedTokens;
use crate::pooling::{normalize_in_place, Pooling};
use crate::workspace::with_floats;

/// Far beyond any sensible count; refuses typos like `threads=10_000` before spawning.
const MAX_THREADS: usize = 1024;

pub struct SentenceEncoder {
    model: BertModel,
    sentence: SentenceConfig,
    pooling: Pooling,
    pool: rayon::ThreadPool,
    threads: usize,
    isa: Isa,
}

impl SentenceEncoder {
    /// Loads `config.json`, `model.safetensors` and the sentence-transformers module files from
    /// `model_dir`. `threads = None` uses every CPU this process may run on (affinity and cgroup
    /// quota included). Computes in float32; see [`SentenceEncoder::load_with_compute`].
    pub fn load(model_dir: &Path, threads: Option<usize>) -> Result<Self> {
        Self::load_with_compute(model_dir, threads, Compute::Float32)
    }

    /// [`SentenceEncoder::load`] with the linear layers in `compute` (resolved for this CPU by
    /// [`Compute::resolve`]).
    pub fn load_with_compute(
        model_dir: &Path,
        threads: Option<usize>,
        compute: Compute,
    ) -> Result<Self> {
        Self::load_on(model_dir, threads, compute, Backend::Fused)
    }

    /// [`SentenceEncoder::load_with_compute`] on `backend`: [`Backend::Fused`] is the fast CPU
    /// engine; [`Backend::Stock`] runs Candle's own ops (on the CPU, the reference the fused
    /// engine is tested against; float32 only).
    pub fn load_on(
        model_dir: &Path,
        threads: Option<usize>,
        compute: Compute,
        backend: Backend,
    ) -> Result<Self> {
        if !model_dir.is_dir() {
            return Err(Error::MissingFile {
                path: model_dir.to_owned(),
            });
        }
        let threads = match threads {
            Some(0) => {
                return Err(Error::InvalidInput(
                    "threads must be at least 1 (or None for every available CPU)".to_owned(),
                ))
            }
            Some(n) if n > MAX_THREADS => {
                return Err(Error::InvalidInput(format!(
                    "threads = {n} is more than the {MAX_THREADS} this engine allows"
                )))
            }
            Some(n) => n,
            None => default_threads(),
        };
        let config = BertConfig::from_file(&model_dir.join("config.json"))?;
        let sentence = SentenceConfig::from_dir(model_dir)?;
        let hidden_size = config.hidden_size;
        let output_dim = hidden_size * sentence.pooling.len();
        let weights = model_dir.join("model.safetensors");
        let model = BertModel::load(&weights, config, compute, backend, output_dim)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("minilm-fast-{i}"))
            .build()
            .map_err(|e| Error::Compute(format!("starting {threads} worker threads: {e}")))?;
        Ok(Self {
            model,
            pooling: Pooling::load(&sentence, hidden_size),
            sentence,
            pool,
            threads,
            isa: Isa::detected(),
        })
    }

    pub fn config(&self) -> &BertConfig {
        self.model.config()
    }

    /// The arithmetic the linear layers run in.
    pub fn compute(&self) -> Compute {
        self.model.compute()
    }

    /// Which form the encoder's blocks run in.
    pub fn backend(&self) -> &Backend {
        self.model.backend()
    }

    pub fn sentence_config(&self) -> &SentenceConfig {
        &self.sentence
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The instruction set the float32 kernels run with (GEMM, attention, LayerNorm, pooling).
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Width of a sentence vector: hidden size times the number of pooling modes.
    pub fn output_dim(&self) -> usize {
        self.config().hidden_size * self.sentence.pooling.len()
    }

    /// Sentence vectors, [batch, output_dim] row-major. `normalize` overrides the model's own
    /// Normalize module when given.
    pub fn encode(&self, batch: &TokenBatch, normalize: Option<bool>) -> Result<Vec<f32>> {
        let normalize = normalize.unwrap_or(self.sentence.normalize);
        if let Backend::Stock(_) = self.model.backend() {
            return self.pool.install(|| self.encode_stock(batch, normalize));
        }
        self.encode_packed(&PackedTokens::new(batch), normalize)
    }

    /// Sentence vectors of ragged sequences written into `out`: sequence `s` into its row,
    /// the first `out.width` values. `normalize: None` applies the model's own Normalize
    /// module (to the whole vector, before it is cut to `out.width`); `Some(true)` makes each
    /// written row unit length, `Some(false)` writes the raw pooled values.
    pub fn encode_ragged(
        &self,
        batch: &RaggedBatch,
        normalize: Option<bool>,
        out: OutputRows<'_>,
    ) -> Result<()> {
        let whole = out.width == self.output_dim();
        // A cut vector is normalised after the cut; the model's own Normalize comes before it.
        let before_cut = match normalize {
            Some(wanted) if whole => wanted,
            Some(false) => false,
            _ => self.sentence.normalize,
        };
        let after_cut = !whole && normalize == Some(true);
        let vectors = match self.model.backend() {
            Backend::Fused => self.encode_packed(&batch.tokens, before_cut)?,
            Backend::Stock(_) => {
                let padded = batch.tokens.padded();
                self.pool
                    .install(|| self.encode_stock(&padded, before_cut))?
            }
        };
        let OutputRows { data, width, rows } = out;
        for (vector, &row) in vectors.chunks_exact(self.output_dim()).zip(&rows) {
            let target = &mut data[row * width..(row + 1) * width];
            target.copy_from_slice(&vector[..width]);
            if after_cut {
                normalize_in_place(self.isa, target);
            }
        }
        Ok(())
    }

    /// Sentence vectors of packed sequences on the fused backend, [sequences, output_dim].
    fn encode_packed(&self, tokens: &PackedTokens, normalize: bool) -> Result<Vec<f32>> {
        let out_dim = self.output_dim();
        let mut out = vec![0.0f32; tokens.sequences() * out_dim];
        // Each group of sequences runs the whole encoder on its own thread (its GEMMs still
        // split into tasks another thread can steal once it is idle). One batch on all
        // threads meets at seven fork-joins per layer, where on short sentences one thread
        // waits for the other: ~5% of two threads' time. So a batch of two or more sequences
        // gets a group per thread, however few its tokens (2-6 STS-B sentences, what
        // concurrent calls coalesce into, ran 8-22% faster than as one group with split
        // GEMMs); a single query keeps every thread on its one sequence.
        let groups = tokens.sequences().clamp(1, self.threads);
        let parts = tokens.split(groups);
        let mut jobs = Vec::with_capacity(parts.len());
        let mut rest = out.as_mut_slice();
        for (_, part) in &parts {
            let (rows, tail) = rest.split_at_mut(part.sequences() * out_dim);
            jobs.push((part, rows));
            rest = tail;
        }
        self.pool.install(|| {
            jobs.into_par_iter()
                .map(|(part, rows)| self.pool_sequences(part, normalize, rows))
                .collect::<Result<()>>()
        })?;
        Ok(out)
    }

    /// The sentence vectors of `tokens` into `out` ([sequences, output_dim]), fused backend.
    fn pool_sequences(
        &self,
        tokens: &PackedTokens,
        normalize: bool,
        out: &mut [f32],
    ) -> Result<()> {
        self.model.forward_packed(tokens, |hidden, pass| {
            let pooled = self.pooling.forward(hidden, pass, normalize)?;
            with_floats(&pooled, |pooled| {
                if pooled.len() == out.len() {
                    out.copy_from_slice(pooled);
                    Ok(())
                } else {
                    Err(Error::Compute(format!(
                        "pooling gave {} values for {} outputs",
                        pooled.len(),
                        out.len()
                    )))
                }
            })?
        })
    }

    /// Sentence vectors on Candle's stock ops: the padded batch through the encoder, then
    /// masked pooling and normalisation as tensor ops.
    fn encode_stock(&self, batch: &TokenBatch, normalize: bool) -> Result<Vec<f32>> {
        if batch.batch == 0 {
            return Ok(Vec::new());
        }
        self.model.forward_stock(batch, |hidden, pass| {
            let pooled = self.pooling.forward(hidden, pass, normalize)?;
            Ok(pooled.flatten_all()?.to_vec1()?)
        })
    }

    /// The last hidden state, [batch, seq_len, hidden] row-major.
    pub fn token_embeddings(&self, batch: &TokenBatch) -> Result<Vec<f32>> {
        self.pool.install(|| self.model.forward(batch))
    }
}

/// CPUs this process may use: `available_parallelism` honours the affinity mask and the cgroup
/// CPU quota on Linux, which is what a container limit sets.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    //! The fused engine against Candle's stock ops, both through `SentenceEncoder`: random tiny
    //! models of several shapes, and the real model when `MINILM_FAST_MODEL_DIR` names its
    //! folder (`make test-rust` sets it). Run under `MINILM_FAST_ISA=avx2` and `=scalar` too
    //! (`make test-rust` does), since the instruction set is picked once per process.

    use std::path::PathBuf;

    use ndarray::Array2;

    use super::*;
    use crate::batch::IdsView;
    use crate::tiny_bert::{Pooling, TinyBert};

    /// float32's bar: sentence-transformers parity is cosine ≥ 0.99999, so the two forms of
    /// the engine must agree at least that well.
    const MIN_COSINE: f64 = 0.99999;

    /// The tiny models' vocabulary and positions (past the short-attention kernel's 32 tokens).
    const TINY: TinyBert = TinyBert {
        vocab: 60,
        max_positions: 80,
        ..TinyBert::DEFAULT
    };

    /// `tiny`'s model folder under the temp folder.
    fn write_tiny(tiny: &TinyBert) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "minilm_fast_backends_{}_{}",
            std::process::id(),
            tiny.seed
        ));
        tiny.write(&dir);
        dir
    }

    /// A right-padded batch of sequences of `lengths` tokens (ids below `vocab`, [CLS] 101
    /// first when the vocabulary has it), with token types 0 then 1 in the second half.
    fn batch(lengths: &[usize], vocab: usize, config: &BertConfig) -> TokenBatch {
        let seq = lengths.iter().copied().max().unwrap_or(1);
        let mut ids = Array2::<i64>::zeros((lengths.len(), seq));
        let mut mask = Array2::<i64>::zeros((lengths.len(), seq));
        let mut types = Array2::<i64>::zeros((lengths.len(), seq));
        for (row, &n) in lengths.iter().enumerate() {
            for col in 0..n {
                ids[[row, col]] = ((row * 31 + col * 17 + 5) % (vocab - 1) + 1) as i64;
                mask[[row, col]] = 1;
                types[[row, col]] = i64::from(col >= n / 2 && n > 3);
            }
        }
        TokenBatch::new(
            IdsView::I64(ids.view()),
            IdsView::I64(mask.view()),
            Some(IdsView::I64(types.view())),
            config,
        )
        .unwrap()
    }

    fn cosine(a: &[f32], b: &[f32]) -> f64 {
        let dot: f64 = a
            .iter()
            .zip(b)
            .map(|(&x, &y)| f64::from(x) * f64::from(y))
            .sum();
        let norm = |v: &[f32]| v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
        dot / (norm(a) * norm(b)).max(1e-30)
    }

    /// Both backends on `lengths`: every sentence vector and every real token's hidden state
    /// at cosine ≥ MIN_COSINE.
    fn assert_backends_agree(dir: &Path, lengths: &[usize], vocab: usize) {
        let fused =
            SentenceEncoder::load_on(dir, Some(2), Compute::Float32, Backend::Fused).unwrap();
        let stock = SentenceEncoder::load_on(
            dir,
            Some(2),
            Compute::Float32,
            Backend::Stock(candle_core::Device::Cpu),
        )
        .unwrap();
        let batch = batch(lengths, vocab, fused.config());
        for normalize in [None, Some(true), Some(false)] {
            let a = fused.encode(&batch, normalize).unwrap();
            let b = stock.encode(&batch, normalize).unwrap();
            assert_eq!(a.len(), b.len());
            let dim = fused.output_dim();
            for (row, (x, y)) in a.chunks(dim).zip(b.chunks(dim)).enumerate() {
                let c = cosine(x, y);
                assert!(c >= MIN_COSINE, "{}: row {row} cosine {c}", dir.display());
            }
        }
        let h = fused.config().hidden_size;
        let a = fused.token_embeddings(&batch).unwrap();
        let b = stock.token_embeddings(&batch).unwrap();
        assert_eq!(a.len(), b.len());
        for (t, (x, y)) in a.chunks(h).zip(b.chunks(h)).enumerate() {
            if batch.mask[t] == 1 {
                let c = cosine(x, y);
                assert!(c >= MIN_COSINE, "token {t} cosine {c}");
            } else {
                assert!(x.iter().chain(y).all(|&v| v == 0.0), "padding {t} not zero");
            }
        }
    }

    #[test]
    fn fused_and_stock_backends_agree_on_random_tiny_models() {
        let shapes = [
            TinyBert {
                hidden: 32,
                heads: 4,
                layers: 2,
                intermediate: 64,
                activation: "gelu",
                pooling: Pooling::Mean,
                normalize: true,
                seed: 1000,
                ..TINY
            },
            TinyBert {
                hidden: 48,
                heads: 3,
                layers: 1,
                intermediate: 96,
                activation: "gelu_new",
                pooling: Pooling::All,
                normalize: false,
                seed: 2000,
                ..TINY
            },
            TinyBert {
                hidden: 64,
                heads: 2,
                layers: 2,
                intermediate: 100,
                activation: "relu",
                pooling: Pooling::All,
                normalize: true,
                seed: 3000,
                ..TINY
            },
        ];
        // One query, short sentences, and sequences past the short-attention kernel's 32.
        let batches: [&[usize]; 3] = [&[7], &[3, 12, 9, 1, 20], &[70, 33, 5, 48]];
        for tiny in &shapes {
            let dir = write_tiny(tiny);
            for lengths in batches {
                assert_backends_agree(&dir, lengths, tiny.vocab);
            }
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    #[ignore = "needs the real model in MINILM_FAST_MODEL_DIR (`make test-rust` sets it)"]
    fn fused_and_stock_backends_agree_on_the_real_model() {
        let dir = PathBuf::from(
            std::env::var_os("MINILM_FAST_MODEL_DIR")
                .expect("MINILM_FAST_MODEL_DIR must name the all-MiniLM-L6-v2 model folder"),
        );
        let vocab = BertConfig::from_file(&dir.join("config.json"))
            .unwrap()
            .vocab_size;
        assert_backends_agree(&dir, &[9], vocab);
        assert_backends_agree(&dir, &[14, 8, 31, 3, 25, 12], vocab);
        assert_backends_agree(&dir, &[256, 130, 40, 17], vocab);
    }

    #[test]
    fn stock_backend_refuses_quantized_compute() {
        let dir = write_tiny(&TinyBert {
            hidden: 16,
            intermediate: 32,
            seed: 99_000,
            ..TINY
        });
        let stock = Backend::Stock(candle_core::Device::Cpu);
        let err = SentenceEncoder::load_on(&dir, Some(1), Compute::Int8, stock).err();
        assert!(matches!(err, Some(Error::Unsupported(_))), "{err:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
