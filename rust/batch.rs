//! Caller-supplied token arrays, checked and converted to what the encoder indexes with.
//! Every id is range-checked here, once, so nothing later can read outside an embedding table.

use std::sync::OnceLock;

use ndarray::{ArrayView1, ArrayView2};

use crate::config::BertConfig;
use crate::error::{Error, Result};
use crate::packing::PackedTokens;

/// A 2-D integer array in either of the dtypes tokenizers produce. Any memory layout (C order,
/// Fortran order, strided slices) is read in place through the view.
#[derive(Debug, Clone, Copy)]
pub enum IdsView<'a> {
    I32(ArrayView2<'a, i32>),
    I64(ArrayView2<'a, i64>),
}

impl IdsView<'_> {
    pub fn shape(&self) -> (usize, usize) {
        match self {
            IdsView::I32(a) => a.dim(),
            IdsView::I64(a) => a.dim(),
        }
    }

    /// Visits every element in row-major order with its position, widened to i64.
    fn try_for_each(&self, mut f: impl FnMut(usize, usize, i64) -> Result<()>) -> Result<()> {
        match self {
            IdsView::I32(a) => {
                for ((row, col), &value) in a.indexed_iter() {
                    f(row, col, i64::from(value))?;
                }
            }
            IdsView::I64(a) => {
                for ((row, col), &value) in a.indexed_iter() {
                    f(row, col, value)?;
                }
            }
        }
        Ok(())
    }
}

/// A 1-D integer array in either dtype: token ids as the tokenizer gives them, one sequence
/// after another, or the offsets, or destination rows. Any stride is read in place.
#[derive(Debug, Clone, Copy)]
pub enum IntsView<'a> {
    I32(ArrayView1<'a, i32>),
    I64(ArrayView1<'a, i64>),
}

impl IntsView<'_> {
    pub fn len(&self) -> usize {
        match self {
            IntsView::I32(a) => a.len(),
            IntsView::I64(a) => a.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values widened to i64, in order.
    fn values(&self) -> Box<dyn Iterator<Item = i64> + '_> {
        self.values_in(0..self.len())
    }

    /// The values at positions `range` (within `0..len()`), widened to i64, in order.
    fn values_in(&self, range: std::ops::Range<usize>) -> Box<dyn Iterator<Item = i64> + '_> {
        let range = ndarray::s![range];
        match self {
            IntsView::I32(a) => Box::new(a.slice(range).into_iter().map(|&v| i64::from(v))),
            IntsView::I64(a) => Box::new(a.slice(range).into_iter().copied()),
        }
    }
}

/// Sequences of token ids without padding: sequence `s` is `ids[offsets[s]..offsets[s + 1]]`.
/// The offsets need not start at 0 nor end at `ids.len()`, so a caller can lay out many
/// batches in one id array and pass a slice of the offsets per call; only the ids between the
/// first and the last offset are read. Checked like [`TokenBatch`] (every id in the vocabulary, every sequence 1 to
/// `max_position_embeddings` tokens long, the working memory bounded) and packed as the fused
/// encoder runs it; token type ids are 0, positions count from 0 in each sequence.
pub struct RaggedBatch {
    pub(crate) tokens: PackedTokens,
}

impl RaggedBatch {
    pub fn new(ids: IntsView<'_>, offsets: IntsView<'_>, config: &BertConfig) -> Result<Self> {
        let starts = read_offsets(offsets, ids.len())?;
        let sequences = starts.len() - 1;
        let mut longest = 0;
        for (s, pair) in starts.windows(2).enumerate() {
            let length = pair[1] - pair[0];
            if length == 0 {
                return Err(Error::InvalidInput(format!(
                    "sequence {s} is empty (offsets[{s}] = offsets[{}] = {}); every sequence \
                     needs at least one token",
                    s + 1,
                    pair[0]
                )));
            }
            if length > config.max_position_embeddings {
                return Err(Error::InvalidInput(format!(
                    "sequence {s} has {length} tokens, more than the model's {} position \
                     embeddings; truncate it to at most {} tokens",
                    config.max_position_embeddings, config.max_position_embeddings
                )));
            }
            longest = longest.max(length);
        }
        check_working_memory(sequences, longest, config, memory_limit())?;
        let (first, last) = (starts[0], starts[sequences]);
        let mut token_ids = Vec::with_capacity(last - first);
        for (index, value) in (first..).zip(ids.values_in(first..last)) {
            if value < 0 || value as u64 >= config.vocab_size as u64 {
                return Err(Error::InvalidInput(format!(
                    "input_ids[{index}] = {value} is outside the model's range 0..{}",
                    config.vocab_size
                )));
            }
            token_ids.push(value as u32);
        }
        let total = token_ids.len();
        let starts: Vec<usize> = starts.iter().map(|s| s - first).collect();
        let mut positions = Vec::with_capacity(total);
        for pair in starts.windows(2) {
            positions.extend(0..(pair[1] - pair[0]) as u32);
        }
        Ok(Self {
            tokens: PackedTokens {
                starts,
                ids: token_ids,
                type_ids: vec![0; total],
                positions,
                origin: (0..total).collect(),
            },
        })
    }

    pub fn sequences(&self) -> usize {
        self.tokens.sequences()
    }
}

/// `offsets` as starts: at least one entry, never decreasing, each within `0..=tokens`.
fn read_offsets(offsets: IntsView<'_>, tokens: usize) -> Result<Vec<usize>> {
    if offsets.is_empty() {
        return Err(Error::InvalidInput(
            "offsets is empty; it holds one more entry than there are sequences".to_owned(),
        ));
    }
    let mut starts = Vec::with_capacity(offsets.len());
    let mut previous = 0i64;
    for (index, value) in offsets.values().enumerate() {
        if value < 0 {
            return Err(Error::InvalidInput(format!(
                "offsets[{index}] = {value} is negative"
            )));
        }
        if index > 0 && value < previous {
            return Err(Error::InvalidInput(format!(
                "offsets[{index}] = {value} is less than offsets[{}] = {previous}; offsets \
                 must not decrease",
                index - 1
            )));
        }
        if value as u64 > tokens as u64 {
            return Err(Error::InvalidInput(format!(
                "offsets[{index}] = {value} is past the end of input_ids ({tokens} tokens)"
            )));
        }
        starts.push(value as usize);
        previous = value;
    }
    Ok(starts)
}

/// Where sentence vectors are written: a caller's row-major `[len / width, width]` buffer,
/// sequence `s` into row `rows[s]` (or row `s`), its first `width` values.
pub struct OutputRows<'a> {
    pub(crate) data: &'a mut [f32],
    pub(crate) width: usize,
    pub(crate) rows: Vec<usize>,
}

impl<'a> OutputRows<'a> {
    /// Checks that `data` holds whole rows of `width` (1 to `output_dim`), that there is one
    /// destination row per sequence, and that the rows are in range and distinct.
    pub fn new(
        data: &'a mut [f32],
        width: usize,
        output_dim: usize,
        rows: Option<IntsView<'_>>,
        sequences: usize,
    ) -> Result<Self> {
        if width == 0 || width > output_dim {
            return Err(Error::InvalidInput(format!(
                "out must have between 1 and {output_dim} columns (the model's output \
                 dimension), got {width}"
            )));
        }
        if !data.len().is_multiple_of(width) {
            return Err(Error::InvalidInput(format!(
                "out holds {} values, not whole rows of {width}",
                data.len()
            )));
        }
        let available = data.len() / width;
        let rows = match rows {
            None => {
                if available < sequences {
                    return Err(Error::InvalidInput(format!(
                        "out has {available} rows for {sequences} sequences; pass rows= or a \
                         larger array"
                    )));
                }
                (0..sequences).collect()
            }
            Some(view) => {
                if view.len() != sequences {
                    return Err(Error::InvalidInput(format!(
                        "rows has {} entries for {sequences} sequences",
                        view.len()
                    )));
                }
                let mut taken = vec![false; available];
                let mut rows = Vec::with_capacity(sequences);
                for (index, value) in view.values().enumerate() {
                    if value < 0 || value as u64 >= available as u64 {
                        return Err(Error::InvalidInput(format!(
                            "rows[{index}] = {value} is outside out's {available} rows"
                        )));
                    }
                    let row = value as usize;
                    if std::mem::replace(&mut taken[row], true) {
                        return Err(Error::InvalidInput(format!(
                            "rows[{index}] = {value} appears twice; each sequence needs a row \
                             of its own"
                        )));
                    }
                    rows.push(row);
                }
                rows
            }
        };
        Ok(Self { data, width, rows })
    }
}

/// A validated batch: `batch` rows of `seq_len` tokens, row-major, right or left padded.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBatch {
    pub batch: usize,
    pub seq_len: usize,
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    /// 1 for a real token, 0 for padding.
    pub mask: Vec<u8>,
}

impl TokenBatch {
    /// Checks shapes and value ranges against the model and copies the ids into the encoder's
    /// index type. The copy is the conversion the embedding lookup needs anyway; the caller's
    /// arrays are read in place.
    pub fn new(
        input_ids: IdsView<'_>,
        attention_mask: IdsView<'_>,
        token_type_ids: Option<IdsView<'_>>,
        config: &BertConfig,
    ) -> Result<Self> {
        let (batch, seq_len) = input_ids.shape();
        check_same_shape("attention_mask", attention_mask.shape(), (batch, seq_len))?;
        if let Some(types) = &token_type_ids {
            check_same_shape("token_type_ids", types.shape(), (batch, seq_len))?;
        }
        if batch > 0 && seq_len == 0 {
            return Err(Error::InvalidInput(
                "input_ids has 0 columns; every sequence needs at least one token".to_owned(),
            ));
        }
        if seq_len > config.max_position_embeddings {
            return Err(Error::InvalidInput(format!(
                "sequence length {seq_len} exceeds the model's {} position embeddings; \
                 truncate the input to at most {} tokens",
                config.max_position_embeddings, config.max_position_embeddings
            )));
        }
        check_working_memory(batch, seq_len, config, memory_limit())?;

        let ids = read_in_range("input_ids", input_ids, config.vocab_size)?;
        let type_ids = match token_type_ids {
            Some(types) => read_in_range("token_type_ids", types, config.type_vocab_size)?,
            None => vec![0; batch * seq_len],
        };
        let mut mask = Vec::with_capacity(batch * seq_len);
        attention_mask.try_for_each(|row, col, value| match value {
            0 | 1 => {
                mask.push(value as u8);
                Ok(())
            }
            _ => Err(Error::InvalidInput(format!(
                "attention_mask[{row}, {col}] = {value}; a mask holds 0 (padding) or 1 (token)"
            ))),
        })?;
        Ok(Self {
            batch,
            seq_len,
            ids,
            type_ids,
            mask,
        })
    }

    /// Number of real (unmasked) tokens in each row.
    pub fn lengths(&self) -> Vec<usize> {
        if self.seq_len == 0 {
            return vec![0; self.batch];
        }
        self.mask
            .chunks_exact(self.seq_len)
            .map(|row| row.iter().map(|&m| usize::from(m)).sum())
            .collect()
    }
}

/// Bytes the forward pass may hold at once for `batch` rows of `seq_len` tokens: per token a few
/// hidden-size activations, the feed-forward intermediate and a row of attention scores per
/// head (twice: scores and probabilities), in f32. Deliberately generous (the measured peak is
/// about 0.6 of it), so that a batch it lets through fits.
pub fn working_bytes(batch: usize, seq_len: usize, config: &BertConfig) -> u128 {
    let per_token = 8 * config.hidden_size as u128
        + config.intermediate_size as u128
        + 2 * config.num_heads as u128 * seq_len as u128;
    batch as u128 * seq_len as u128 * per_token * 4
}

/// Refuses a batch whose working memory would exceed `limit` bytes. Without this, a caller's
/// (batch, sequence) array of a few hundred MB asks the forward pass for tens of GB: the
/// allocation aborts the process, or the kernel's OOM killer ends it. A ValueError leaves the
/// process running and says how to split the batch.
fn check_working_memory(
    batch: usize,
    seq_len: usize,
    config: &BertConfig,
    limit: u64,
) -> Result<()> {
    let needed = working_bytes(batch, seq_len, config);
    if needed <= u128::from(limit) {
        return Ok(());
    }
    let per_row = working_bytes(1, seq_len, config).max(1);
    let rows = u128::from(limit) / per_row;
    let gib = |bytes: u128| bytes as f64 / f64::from(1u32 << 30);
    Err(Error::InvalidInput(format!(
        "a batch of {batch} sequences of {seq_len} tokens needs about {:.1} GiB of working \
         memory, more than the {:.1} GiB this process may use; split it into batches of at \
         most {rows} sequences",
        gib(needed),
        gib(u128::from(limit)),
    )))
}

/// Memory this process may use: the machine's RAM, or less when a cgroup (container) limit or
/// an address-space limit (`ulimit -v`) is set. Read once; 64 GiB when none can be read.
fn memory_limit() -> u64 {
    static LIMIT: OnceLock<u64> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        let number = |text: &str| text.trim().parse::<u64>().ok();
        let total = read("/proc/meminfo").and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            number(line.split_whitespace().nth(1)?)?.checked_mul(1024)
        });
        let address_space = read("/proc/self/limits").and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("Max address space"))?;
            number(line.split_whitespace().nth(3)?) // "unlimited" is no number
        });
        let cgroup_v2 = read("/sys/fs/cgroup/memory.max").and_then(|t| number(&t));
        let cgroup_v1 =
            read("/sys/fs/cgroup/memory/memory.limit_in_bytes").and_then(|t| number(&t));
        [total, address_space, cgroup_v2, cgroup_v1]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(64 << 30)
    })
}

fn check_same_shape(name: &str, got: (usize, usize), want: (usize, usize)) -> Result<()> {
    if got != want {
        return Err(Error::InvalidInput(format!(
            "{name} has shape ({}, {}) but input_ids has shape ({}, {})",
            got.0, got.1, want.0, want.1
        )));
    }
    Ok(())
}

fn read_in_range(name: &str, view: IdsView<'_>, limit: usize) -> Result<Vec<u32>> {
    let (rows, cols) = view.shape();
    let mut out = Vec::with_capacity(rows * cols);
    view.try_for_each(|row, col, value| {
        if value < 0 || value as u64 >= limit as u64 {
            return Err(Error::InvalidInput(format!(
                "{name}[{row}, {col}] = {value} is outside the model's range 0..{limit}"
            )));
        }
        // In range of a usize-sized table, so it fits u32 for any table the config allows.
        out.push(value as u32);
        Ok(())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array2, ShapeBuilder};

    fn config() -> BertConfig {
        BertConfig::from_json(
            r#"{"hidden_size":8,"num_hidden_layers":1,"num_attention_heads":2,
                "intermediate_size":16,"vocab_size":10,"max_position_embeddings":6}"#,
        )
        .unwrap()
    }

    #[test]
    fn converts_both_dtypes_and_layouts_identically() {
        let ids64 = array![[1i64, 2, 3], [4, 5, 0]];
        let mask64 = array![[1i64, 1, 1], [1, 1, 0]];
        let ids32 = ids64.mapv(|v| v as i32);
        let mask32 = mask64.mapv(|v| v as i32);
        let a = TokenBatch::new(
            IdsView::I64(ids64.view()),
            IdsView::I64(mask64.view()),
            None,
            &config(),
        )
        .unwrap();
        let b = TokenBatch::new(
            IdsView::I32(ids32.view()),
            IdsView::I32(mask32.view()),
            None,
            &config(),
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.ids, vec![1, 2, 3, 4, 5, 0]);
        assert_eq!(a.lengths(), vec![3, 2]);

        // The same values in Fortran order read the same, in row-major order.
        let mut fortran = Array2::<i64>::zeros((2, 3).f());
        fortran.assign(&ids64);
        let c = TokenBatch::new(
            IdsView::I64(fortran.view()),
            IdsView::I64(mask64.view()),
            None,
            &config(),
        )
        .unwrap();
        assert_eq!(a, c);
    }

    #[test]
    fn refuses_out_of_range_values_with_their_position() {
        let mask = array![[1i64, 1]];
        let bad_id = array![[1i64, 10]];
        let err = TokenBatch::new(
            IdsView::I64(bad_id.view()),
            IdsView::I64(mask.view()),
            None,
            &config(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("input_ids[0, 1] = 10"), "{err}");

        let negative = array![[-1i64, 1]];
        assert!(TokenBatch::new(
            IdsView::I64(negative.view()),
            IdsView::I64(mask.view()),
            None,
            &config()
        )
        .is_err());

        let ids = array![[1i64, 2]];
        let bad_mask = array![[1i64, 2]];
        let err = TokenBatch::new(
            IdsView::I64(ids.view()),
            IdsView::I64(bad_mask.view()),
            None,
            &config(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("attention_mask[0, 1] = 2"),
            "{err}"
        );

        let bad_types = array![[0i64, 2]];
        let err = TokenBatch::new(
            IdsView::I64(ids.view()),
            IdsView::I64(mask.view()),
            Some(IdsView::I64(bad_types.view())),
            &config(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("token_type_ids"), "{err}");
    }

    #[test]
    fn refuses_bad_shapes() {
        let ids = array![[1i64, 2, 3]];
        let mask = array![[1i64, 1]];
        let err = TokenBatch::new(
            IdsView::I64(ids.view()),
            IdsView::I64(mask.view()),
            None,
            &config(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("attention_mask has shape (1, 2)"),
            "{err}"
        );

        let long = Array2::<i64>::ones((1, 7));
        let err = TokenBatch::new(
            IdsView::I64(long.view()),
            IdsView::I64(long.view()),
            None,
            &config(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("exceeds"), "{err}");

        let empty_cols = Array2::<i64>::zeros((2, 0));
        assert!(TokenBatch::new(
            IdsView::I64(empty_cols.view()),
            IdsView::I64(empty_cols.view()),
            None,
            &config()
        )
        .is_err());

        // A batch whose activations would not fit in memory is refused before any is made.
        let big = crate::config::BertConfig::from_json(
            r#"{"hidden_size":384,"num_hidden_layers":6,"num_attention_heads":12,
                "intermediate_size":1536,"vocab_size":30522,"max_position_embeddings":512}"#,
        )
        .unwrap();
        let err = check_working_memory(40_000, 256, &big, 24 << 30).unwrap_err();
        assert!(
            err.to_string().contains("split it into batches of at most"),
            "{err}"
        );
        assert!(check_working_memory(32, 256, &big, 1 << 30).is_ok());
        assert!(check_working_memory(usize::MAX, usize::MAX, &big, u64::MAX).is_err());
        assert!(memory_limit() > 0);

        let no_rows = Array2::<i64>::zeros((0, 0));
        let batch = TokenBatch::new(
            IdsView::I64(no_rows.view()),
            IdsView::I64(no_rows.view()),
            None,
            &config(),
        )
        .unwrap();
        assert_eq!(batch.batch, 0);
    }
    #[test]
    fn ragged_sequences_are_checked_and_packed() {
        let ids = array![10i64, 1, 2, 3, 4, 5, 10];
        // A slice of a longer layout: ids outside offsets[0]..offsets[last] are never read.
        let offsets = array![1i64, 3, 6];
        let batch = RaggedBatch::new(
            IntsView::I64(ids.view()),
            IntsView::I64(offsets.view()),
            &config(),
        )
        .unwrap();
        assert_eq!(batch.sequences(), 2);
        assert_eq!(batch.tokens.ids, vec![1, 2, 3, 4, 5]);
        assert_eq!(batch.tokens.starts, vec![0, 2, 5]);
        assert_eq!(batch.tokens.positions, vec![0, 1, 0, 1, 2]);

        let check = |offsets: &[i64]| {
            let offsets = ndarray::Array1::from(offsets.to_vec());
            RaggedBatch::new(
                IntsView::I64(ids.view()),
                IntsView::I64(offsets.view()),
                &config(),
            )
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
        };
        assert!(check(&[]).contains("offsets is empty"));
        assert!(check(&[0, 3, 2]).contains("offsets[2] = 2"));
        assert!(check(&[0, 8]).contains("past the end"));
        assert!(check(&[-1, 2]).contains("negative"));
        assert!(check(&[1, 1, 3]).contains("sequence 0 is empty"));
        assert!(
            check(&[0, 1]).contains("input_ids[0] = 10"),
            "{}",
            check(&[0, 1])
        );
        let long = ndarray::Array1::from(vec![1i32; 7]);
        let whole = array![0i32, 7];
        let err = RaggedBatch::new(
            IntsView::I32(long.view()),
            IntsView::I32(whole.view()),
            &config(),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("7 tokens"), "{err}");
    }

    #[test]
    fn output_rows_are_checked() {
        let mut data = vec![0.0f32; 12];
        let rows = array![2i64, 0];
        let out = OutputRows::new(&mut data, 4, 8, Some(IntsView::I64(rows.view())), 2).unwrap();
        assert_eq!(out.rows, vec![2, 0]);
        let message = |width: usize, rows: Option<&[i64]>, sequences: usize| {
            let mut data = vec![0.0f32; 12];
            let rows = rows.map(|r| ndarray::Array1::from(r.to_vec()));
            OutputRows::new(
                &mut data,
                width,
                8,
                rows.as_ref().map(|r| IntsView::I64(r.view())),
                sequences,
            )
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
        };
        assert!(message(0, None, 1).contains("between 1 and 8"));
        assert!(message(9, None, 1).contains("between 1 and 8"));
        assert!(message(5, None, 1).contains("not whole rows"));
        assert!(message(4, None, 4).contains("3 rows for 4 sequences"));
        assert!(message(4, Some(&[0, 1]), 3).contains("2 entries for 3"));
        assert!(message(4, Some(&[0, 3]), 2).contains("rows[1] = 3"));
        assert!(message(4, Some(&[1, 1]), 2).contains("twice"));
        assert!(message(4, Some(&[-1, 1]), 2).contains("rows[0] = -1"));
    }
}
