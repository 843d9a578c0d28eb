//! The sentence encoder a caller holds: a BERT model, its sentence-transformers pipeline
//! (pooling, normalisation) and a private thread pool sized by the caller, so `threads = 1`
//! really uses one core and two encoders never fight over a global pool.

use std::path::Path;

use rayon::prelude::*;

use crate::batch::TokenBatch;
use crate::compute::Compute;
use crate::config::{BertConfig, SentenceConfig};
use crate::error::{Error, Result};
use crate::kernels::Isa;
use crate::model::BertModel;
use crate::packing::PackedTokens;
use crate::pooling;

/// Far beyond any sensible count; refuses typos like `threads=10_000` before spawning.
const MAX_THREADS: usize = 1024;

/// Fewest tokens worth a thread of their own in `encode`: below this a group's GEMMs stream
/// the weights for too few rows, and a single query keeps all threads on its one sequence.
const MIN_GROUP_TOKENS: usize = 64;

pub struct SentenceEncoder {
    model: BertModel,
    sentence: SentenceConfig,
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
        let model = BertModel::load(&model_dir.join("model.safetensors"), config, compute)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("minilm-fast-{i}"))
            .build()
            .map_err(|e| Error::Compute(format!("starting {threads} worker threads: {e}")))?;
        Ok(Self {
            model,
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

    pub fn sentence_config(&self) -> &SentenceConfig {
        &self.sentence
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The instruction set the pooling kernels use.
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
        let tokens = PackedTokens::new(batch);
        let out_dim = self.output_dim();
        let mut out = vec![0.0f32; batch.batch * out_dim];
        // Each group of sequences runs the whole encoder on its own thread (its GEMMs still
        // split into tasks another thread can steal once it is idle). One batch on all
        // threads meets at seven fork-joins per layer, where on short sentences one thread
        // waits for the other: ~5% of two threads' time.
        let groups = (tokens.len() / MIN_GROUP_TOKENS).clamp(1, self.threads);
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
                .for_each(|(part, rows)| self.pool_sequences(part, normalize, rows));
        });
        Ok(out)
    }

    /// The sentence vectors of `tokens` into `out` ([sequences, output_dim]).
    fn pool_sequences(&self, tokens: &PackedTokens, normalize: bool, out: &mut [f32]) {
        let (dim, out_dim) = (self.config().hidden_size, self.output_dim());
        self.model.with_last_hidden(tokens, |hidden| {
            // Straight from the packed tokens: padding was never computed, so it needs no mask.
            crate::stage_timing::timed(crate::stage_timing::Stage::Pooling, || {
                for (sequence, row) in out.chunks_exact_mut(out_dim).enumerate() {
                    let range = tokens.range(sequence);
                    let real = &hidden[range.start * dim..range.end * dim];
                    let modes = &self.sentence.pooling;
                    pooling::pool_sequence(self.isa, real, dim, modes, normalize, row);
                }
            })
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
