//! Model configuration: the BERT hyper-parameters from `config.json`, the sentence-transformers
//! pipeline (pooling modes, normalisation) from `modules.json` and the Pooling module's config,
//! and how text becomes tokens (length limit, lowercasing, prompts) from
//! `sentence_bert_config.json`, `config_sentence_transformers.json` and `tokenizer_config.json`.
//! Nothing about the model's size is assumed; every number comes from these files. Every file
//! is read by [`read_text`]: a regular file of at most 16 MiB, or an error naming it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// The feed-forward activation (`hidden_act`) is defined with the kernels that apply it and
/// re-exported here, where the rest of the crate names it.
pub use crate::kernels::Activation;

/// Upper bounds that keep a corrupt or hostile `config.json` from asking for absurd allocations.
/// They are far above any BERT-shaped model in use (BERT-large: 1024 hidden, 24 layers, 4096 ff).
const MAX_HIDDEN_SIZE: usize = 16_384;
const MAX_LAYERS: usize = 256;
const MAX_INTERMEDIATE_SIZE: usize = 65_536;
const MAX_VOCAB_SIZE: usize = 4_000_000;
const MAX_POSITIONS: usize = 65_536;

/// The BERT encoder's hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct BertConfig {
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub intermediate_size: usize,
    pub vocab_size: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    pub activation: Activation,
}

/// `config.json` as written by transformers; only the fields the forward pass needs.
#[derive(Deserialize)]
struct RawBertConfig {
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    vocab_size: usize,
    max_position_embeddings: usize,
    #[serde(default = "default_type_vocab_size")]
    type_vocab_size: usize,
    #[serde(default = "default_layer_norm_eps")]
    layer_norm_eps: f64,
    #[serde(default = "default_hidden_act")]
    hidden_act: String,
    #[serde(default)]
    position_embedding_type: Option<String>,
    #[serde(default)]
    model_type: Option<String>,
}

fn default_type_vocab_size() -> usize {
    2
}
fn default_layer_norm_eps() -> f64 {
    1e-12
}
fn default_hidden_act() -> String {
    "gelu".to_owned()
}

impl BertConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }

    /// Reads and checks `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = read_text(path)?;
        Self::from_json(&text).map_err(|message| Error::BadConfig {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses and checks the text of a `config.json`; the error is a message without the path.
    pub fn from_json(text: &str) -> std::result::Result<Self, String> {
        let raw: RawBertConfig = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if let Some(kind) = raw.model_type.as_deref() {
            // RoBERTa-style models share the tensor names but offset position ids; loading them
            // here would run without error and give wrong vectors, so only BERT is accepted.
            if kind != "bert" {
                return Err(format!(
                    "model_type {kind:?} is not supported; only \"bert\" models are"
                ));
            }
        }
        if let Some(kind) = raw.position_embedding_type.as_deref() {
            if kind != "absolute" {
                return Err(format!(
                    "position_embedding_type {kind:?} is not supported (only \"absolute\")"
                ));
            }
        }
        let activation = Activation::from_name(&raw.hidden_act).ok_or_else(|| {
            format!(
                "hidden_act {:?} is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu)",
                raw.hidden_act
            )
        })?;
        check_range("hidden_size", raw.hidden_size, MAX_HIDDEN_SIZE)?;
        check_range("num_hidden_layers", raw.num_hidden_layers, MAX_LAYERS)?;
        check_range(
            "num_attention_heads",
            raw.num_attention_heads,
            raw.hidden_size,
        )?;
        check_range(
            "intermediate_size",
            raw.intermediate_size,
            MAX_INTERMEDIATE_SIZE,
        )?;
        check_range("vocab_size", raw.vocab_size, MAX_VOCAB_SIZE)?;
        check_range(
            "max_position_embeddings",
            raw.max_position_embeddings,
            MAX_POSITIONS,
        )?;
        check_range("type_vocab_size", raw.type_vocab_size, MAX_VOCAB_SIZE)?;
        if !raw.hidden_size.is_multiple_of(raw.num_attention_heads) {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                raw.hidden_size, raw.num_attention_heads
            ));
        }
        if !(raw.layer_norm_eps.is_finite() && raw.layer_norm_eps > 0.0) {
            return Err(format!(
                "layer_norm_eps must be a positive number, got {}",
                raw.layer_norm_eps
            ));
        }
        Ok(Self {
            hidden_size: raw.hidden_size,
            num_layers: raw.num_hidden_layers,
            num_heads: raw.num_attention_heads,
            intermediate_size: raw.intermediate_size,
            vocab_size: raw.vocab_size,
            max_position_embeddings: raw.max_position_embeddings,
            type_vocab_size: raw.type_vocab_size,
            layer_norm_eps: raw.layer_norm_eps,
            activation,
        })
    }
}

fn check_range(name: &str, value: usize, max: usize) -> std::result::Result<(), String> {
    if value == 0 || value > max {
        return Err(format!("{name} must be between 1 and {max}, got {value}"));
    }
    Ok(())
}

/// One way of turning token vectors into a sentence vector, in the order sentence-transformers
/// concatenates them when several are enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolingMode {
    Cls,
    Max,
    Mean,
    MeanSqrtLen,
}

impl PoolingMode {
    pub fn name(self) -> &'static str {
        match self {
            Self::Cls => "cls",
            Self::Max => "max",
            Self::Mean => "mean",
            Self::MeanSqrtLen => "mean_sqrt_len_tokens",
        }
    }
}

/// What happens after the encoder: pooling modes (concatenated) and optional L2 normalisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentenceConfig {
    pub pooling: Vec<PoolingMode>,
    pub normalize: bool,
    /// Whether pooling counts a prompt's tokens (the Pooling config's `include_prompt`).
    pub include_prompt: bool,
}

impl Default for SentenceConfig {
    /// What sentence-transformers does with a plain transformers checkpoint: mean pooling, no
    /// normalisation.
    fn default() -> Self {
        Self {
            pooling: vec![PoolingMode::Mean],
            normalize: false,
            include_prompt: true,
        }
    }
}

#[derive(Deserialize)]
struct ModuleEntry {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

/// The Pooling module's `config.json`: sentence-transformers ≥ 6 writes `pooling_mode` (a name or
/// a list of names); older versions, including the Hub's all-MiniLM-L6-v2, one flag per mode.
#[derive(Deserialize)]
struct RawPoolingConfig {
    #[serde(default)]
    pooling_mode: Option<OneOrMany>,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
    #[serde(default = "yes")]
    include_prompt: bool,
}

fn yes() -> bool {
    true
}

impl SentenceConfig {
    /// Reads `modules.json` in `model_dir` and the Pooling module's `config.json` it points to.
    /// A folder without `modules.json` is a plain transformers checkpoint: the default applies.
    pub fn from_dir(model_dir: &Path) -> Result<Self> {
        let modules_path = model_dir.join("modules.json");
        // Only a modules.json that is not there at all means a plain checkpoint; one that is
        // there but unreadable (a symlink loop, no permission) is an error, not mean pooling.
        match std::fs::symlink_metadata(&modules_path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => return Err(io_error(&modules_path, source)),
            Ok(_) => {}
        }
        let bad = |path: &Path, message: String| Error::BadConfig {
            path: path.to_owned(),
            message,
        };
        let modules: Vec<ModuleEntry> = serde_json::from_str(&read_text(&modules_path)?)
            .map_err(|e| bad(&modules_path, e.to_string()))?;

        let mut config = Self::default();
        let mut saw_pooling = false;
        for module in &modules {
            let kind = module.kind.rsplit('.').next().unwrap_or_default();
            match kind {
                "Transformer" => {}
                "Pooling" => {
                    let pooling_path = model_dir.join(&module.path).join("config.json");
                    (config.pooling, config.include_prompt) = read_pooling(&pooling_path)?;
                    saw_pooling = true;
                }
                "Normalize" => config.normalize = true,
                _ => {
                    return Err(Error::Unsupported(format!(
                        "{}: module type {:?} is not supported (Transformer, Pooling and \
                         Normalize are)",
                        modules_path.display(),
                        module.kind
                    )))
                }
            }
        }
        if !saw_pooling {
            return Err(bad(
                &modules_path,
                "no sentence_transformers.models.Pooling module listed".to_owned(),
            ));
        }
        Ok(config)
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl PoolingMode {
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "cls" => Some(Self::Cls),
            "max" => Some(Self::Max),
            "mean" => Some(Self::Mean),
            "mean_sqrt_len_tokens" => Some(Self::MeanSqrtLen),
            _ => None,
        }
    }
}

/// The pooling modes of a Pooling module's `config.json`, and its `include_prompt`.
fn read_pooling(path: &Path) -> Result<(Vec<PoolingMode>, bool)> {
    let raw: RawPoolingConfig =
        serde_json::from_str(&read_text(path)?).map_err(|e| Error::BadConfig {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    if let Some(named) = raw.pooling_mode {
        let names = match named {
            OneOrMany::One(name) => vec![name],
            OneOrMany::Many(names) => names,
        };
        let modes = names
            .iter()
            .map(|name| {
                PoolingMode::from_name(name).ok_or_else(|| {
                    Error::Unsupported(format!(
                        "{}: pooling mode {name:?} is not supported (cls, max, mean, \
                         mean_sqrt_len_tokens are)",
                        path.display()
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if modes.is_empty() {
            return Err(Error::BadConfig {
                path: path.to_owned(),
                message: "pooling_mode lists no mode".to_owned(),
            });
        }
        return Ok((modes, raw.include_prompt));
    }
    if raw.pooling_mode_weightedmean_tokens || raw.pooling_mode_lasttoken {
        return Err(Error::Unsupported(format!(
            "{}: weighted-mean and last-token pooling are not supported",
            path.display()
        )));
    }
    let modes: Vec<PoolingMode> = [
        (raw.pooling_mode_cls_token, PoolingMode::Cls),
        (raw.pooling_mode_max_tokens, PoolingMode::Max),
        (raw.pooling_mode_mean_tokens, PoolingMode::Mean),
        (
            raw.pooling_mode_mean_sqrt_len_tokens,
            PoolingMode::MeanSqrtLen,
        ),
    ]
    .into_iter()
    .filter_map(|(enabled, mode)| enabled.then_some(mode))
    .collect();
    if modes.is_empty() {
        return Err(Error::BadConfig {
            path: path.to_owned(),
            message: "no pooling mode is enabled".to_owned(),
        });
    }
    Ok((modes, raw.include_prompt))
}

/// How text becomes the encoder's input, from the sentence-transformers files beside the
/// model; every file is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextConfig {
    /// `sentence_bert_config.json`'s `max_seq_length`, else `tokenizer_config.json`'s
    /// `model_max_length` (as transformers would use it); `None` when neither gives one.
    /// Not capped by the position table: the caller does that.
    pub max_seq_length: Option<usize>,
    /// `sentence_bert_config.json`'s `do_lower_case`.
    pub do_lower_case: bool,
    /// `config_sentence_transformers.json`'s named prompts.
    pub prompts: BTreeMap<String, String>,
    /// `config_sentence_transformers.json`'s `default_prompt_name`.
    pub default_prompt_name: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawSentenceBertConfig {
    #[serde(default)]
    max_seq_length: Option<serde_json::Value>,
    #[serde(default)]
    do_lower_case: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
struct RawPromptConfig {
    #[serde(default)]
    prompts: Option<BTreeMap<String, String>>,
    #[serde(default)]
    default_prompt_name: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawTokenizerConfig {
    #[serde(default)]
    model_max_length: Option<serde_json::Value>,
}

impl TextConfig {
    /// Reads the files in `model_dir`. A file that is absent gives the defaults; one that is
    /// there but unreadable, not JSON or of the wrong shape is an error naming it.
    /// `tokenizer_config.json` is read only when `sentence_bert_config.json` sets no length.
    pub fn from_dir(model_dir: &Path) -> Result<Self> {
        let sbert: RawSentenceBertConfig =
            read_optional_json(&model_dir.join("sentence_bert_config.json"))?;
        let prompts: RawPromptConfig =
            read_optional_json(&model_dir.join("config_sentence_transformers.json"))?;
        let mut max_seq_length = sbert.max_seq_length.as_ref().and_then(positive);
        if max_seq_length.is_none() {
            let tokenizer: RawTokenizerConfig =
                read_optional_json(&model_dir.join("tokenizer_config.json"))?;
            max_seq_length = tokenizer.model_max_length.as_ref().and_then(positive);
        }
        Ok(Self {
            max_seq_length,
            // sentence-transformers tests the value's truth: only `true` is usual.
            do_lower_case: sbert.do_lower_case.is_some_and(|v| truthy(&v)),
            prompts: prompts.prompts.unwrap_or_default(),
            default_prompt_name: prompts.default_prompt_name,
        })
    }
}

/// A whole number of at least 1 (saturating at `usize::MAX`: transformers writes 1e30 for "no
/// limit"), or `None` for anything else.
fn positive(value: &serde_json::Value) -> Option<usize> {
    if let Some(n) = value.as_u64() {
        return (n >= 1).then(|| usize::try_from(n).unwrap_or(usize::MAX));
    }
    let x = value.as_f64()?;
    // `as` saturates: 1e30 becomes usize::MAX.
    (x >= 1.0 && x.fract() == 0.0).then_some(x as usize)
}

/// Python's truth of a JSON value.
fn truthy(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Null => false,
        serde_json::Value::Bool(b) => *b,
        serde_json::Value::Number(n) => n.as_f64().is_some_and(|x| x != 0.0),
        serde_json::Value::String(s) => !s.is_empty(),
        serde_json::Value::Array(a) => !a.is_empty(),
        serde_json::Value::Object(o) => !o.is_empty(),
    }
}

/// A JSON object file parsed into `T`, or `T::default()` when there is nothing at `path` at all.
/// Anything else that keeps it from being read (a dangling or looping symlink, a FIFO, bad
/// JSON, a field of the wrong type) is [`Error::BadConfig`] naming the file: the file is
/// there, so ignoring it would silently change the embeddings.
fn read_optional_json<T: serde::de::DeserializeOwned + Default>(path: &Path) -> Result<T> {
    let bad = |message: String| Error::BadConfig {
        path: path.to_owned(),
        message,
    };
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(T::default()),
        Err(e) => return Err(bad(e.to_string())),
        Ok(_) => {}
    }
    let text = read_text(path).map_err(|err| match err {
        Error::MissingFile { .. } => bad("no such file (a dangling link?)".to_owned()),
        Error::Io { source, .. } => bad(source.to_string()),
        other => other,
    })?;
    serde_json::from_str(&text).map_err(|e| bad(e.to_string()))
}

/// Largest configuration file read. The real ones are a few hundred bytes; the cap keeps a path
/// that ends at a huge file or a device (`/dev/zero`) from filling memory.
const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// The text of a configuration file, which must be a regular file of at most 16 MiB: a FIFO
/// would block the open forever and a device would never end.
pub(crate) fn read_text(path: &Path) -> Result<String> {
    let bad = |message: String| Error::BadConfig {
        path: path.to_owned(),
        message,
    };
    let metadata = std::fs::metadata(path).map_err(|source| io_error(path, source))?;
    if !metadata.is_file() {
        return Err(bad("not a regular file".to_owned()));
    }
    let too_big = || {
        bad(format!(
            "larger than the {MAX_CONFIG_BYTES} bytes a configuration file may have"
        ))
    };
    if metadata.len() > MAX_CONFIG_BYTES {
        return Err(too_big());
    }
    let file = std::fs::File::open(path).map_err(|source| io_error(path, source))?;
    let mut text = String::new();
    // `take` also bounds a file that grows between the size check and the read.
    std::io::Read::read_to_string(
        &mut std::io::Read::take(file, MAX_CONFIG_BYTES + 1),
        &mut text,
    )
    .map_err(|source| io_error(path, source))?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(too_big());
    }
    Ok(text)
}

/// A missing file gets its own variant (FileNotFoundError in Python); other I/O errors keep the cause.
pub(crate) fn io_error(path: &Path, source: std::io::Error) -> Error {
    if source.kind() == std::io::ErrorKind::NotFound {
        Error::MissingFile {
            path: PathBuf::from(path),
        }
    } else {
        Error::Io {
            path: PathBuf::from(path),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINILM: &str = r#"{"architectures":["BertModel"],"hidden_act":"gelu","hidden_size":384,
        "intermediate_size":1536,"layer_norm_eps":1e-12,"max_position_embeddings":512,
        "model_type":"bert","num_attention_heads":12,"num_hidden_layers":6,"type_vocab_size":2,
        "vocab_size":30522,"position_embedding_type":"absolute"}"#;

    #[test]
    fn parses_minilm_config() {
        let config = BertConfig::from_json(MINILM).unwrap();
        assert_eq!(config.hidden_size, 384);
        assert_eq!(config.num_layers, 6);
        assert_eq!(config.head_dim(), 32);
        assert_eq!(config.activation, Activation::GeluErf);
        assert_eq!(config.layer_norm_eps, 1e-12);
    }

    #[test]
    fn refuses_absurd_and_inconsistent_sizes() {
        let huge = MINILM.replace("\"hidden_size\":384", "\"hidden_size\":100000000");
        assert!(BertConfig::from_json(&huge)
            .unwrap_err()
            .contains("hidden_size"));
        let uneven = MINILM.replace("\"num_attention_heads\":12", "\"num_attention_heads\":7");
        assert!(BertConfig::from_json(&uneven)
            .unwrap_err()
            .contains("multiple"));
        let zero = MINILM.replace("\"num_hidden_layers\":6", "\"num_hidden_layers\":0");
        assert!(BertConfig::from_json(&zero)
            .unwrap_err()
            .contains("num_hidden_layers"));
    }

    #[test]
    fn refuses_unknown_activation_and_architecture() {
        let act = MINILM.replace("\"hidden_act\":\"gelu\"", "\"hidden_act\":\"swish\"");
        assert!(BertConfig::from_json(&act).unwrap_err().contains("swish"));
        let arch = MINILM.replace("\"model_type\":\"bert\"", "\"model_type\":\"gpt2\"");
        assert!(BertConfig::from_json(&arch).unwrap_err().contains("gpt2"));
    }

    #[test]
    fn defaults_apply_to_missing_optional_fields() {
        let minimal = r#"{"hidden_size":8,"num_hidden_layers":1,"num_attention_heads":2,
            "intermediate_size":16,"vocab_size":10,"max_position_embeddings":4}"#;
        let config = BertConfig::from_json(minimal).unwrap();
        assert_eq!(config.type_vocab_size, 2);
        assert_eq!(config.activation, Activation::GeluErf);
    }

    #[test]
    fn reads_sentence_pipeline_from_modules_json() {
        let dir = std::env::temp_dir().join(format!("minilm_fast_cfg_{}", std::process::id()));
        std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
        std::fs::write(
            dir.join("modules.json"),
            r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
                {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
                {"idx":2,"name":"2","path":"2_Normalize","type":"sentence_transformers.models.Normalize"}]"#,
        )
        .unwrap();
        std::fs::write(
            dir.join("1_Pooling/config.json"),
            r#"{"pooling_mode_cls_token":true,"pooling_mode_mean_tokens":true}"#,
        )
        .unwrap();
        let config = SentenceConfig::from_dir(&dir).unwrap();
        assert_eq!(config.pooling, vec![PoolingMode::Cls, PoolingMode::Mean]);
        assert!(config.normalize);

        std::fs::write(
            dir.join("modules.json"),
            r#"[{"path":"","type":"sentence_transformers.models.Transformer"},
                {"path":"2_Dense","type":"sentence_transformers.models.Dense"}]"#,
        )
        .unwrap();
        let err = SentenceConfig::from_dir(&dir).unwrap_err();
        assert!(err.to_string().contains("Dense"), "{err}");

        // The sentence-transformers >= 6 format names the modes, in order.
        std::fs::write(
            dir.join("modules.json"),
            r#"[{"path":"","type":"sentence_transformers.models.Transformer"},
                {"path":"1_Pooling","type":"sentence_transformers.models.Pooling"}]"#,
        )
        .unwrap();
        std::fs::write(
            dir.join("1_Pooling/config.json"),
            r#"{"embedding_dimension":8,"pooling_mode":["mean","cls"],"include_prompt":true}"#,
        )
        .unwrap();
        let config = SentenceConfig::from_dir(&dir).unwrap();
        assert_eq!(config.pooling, vec![PoolingMode::Mean, PoolingMode::Cls]);
        std::fs::write(
            dir.join("1_Pooling/config.json"),
            r#"{"pooling_mode":"lasttoken"}"#,
        )
        .unwrap();
        let err = SentenceConfig::from_dir(&dir).unwrap_err();
        assert!(err.to_string().contains("lasttoken"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn configuration_files_must_be_small_regular_files() {
        let dir = std::env::temp_dir().join(format!("minilm_fast_read_{}", std::process::id()));
        std::fs::create_dir_all(dir.join("folder.json")).unwrap();
        let err = read_text(&dir.join("folder.json")).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        let big = dir.join("big.json");
        let file = std::fs::File::create(&big).unwrap();
        file.set_len(MAX_CONFIG_BYTES + 1).unwrap();
        let err = read_text(&big).unwrap_err();
        assert!(err.to_string().contains("larger than"), "{err}");
        assert!(matches!(
            read_text(&dir.join("missing.json")),
            Err(Error::MissingFile { .. })
        ));
        #[cfg(unix)]
        {
            let err = read_text(Path::new("/dev/zero")).unwrap_err();
            assert!(err.to_string().contains("not a regular file"), "{err}");
            // A modules.json that is a dangling or looping link is an error, not "absent".
            std::os::unix::fs::symlink("modules.json", dir.join("modules.json")).unwrap();
            assert!(SentenceConfig::from_dir(&dir).is_err());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn plain_checkpoint_means_mean_pooling_without_normalisation() {
        let dir = std::env::temp_dir().join(format!("minilm_fast_plain_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = SentenceConfig::from_dir(&dir).unwrap();
        assert_eq!(config, SentenceConfig::default());
        std::fs::remove_dir_all(&dir).unwrap();
    }
    #[test]
    fn text_config_reads_the_sentence_transformers_files() {
        let dir = std::env::temp_dir().join(format!("minilm_fast_text_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(TextConfig::from_dir(&dir).unwrap(), TextConfig::default());
        std::fs::write(
            dir.join("sentence_bert_config.json"),
            r#"{"max_seq_length": 128, "do_lower_case": true}"#,
        )
        .unwrap();
        std::fs::write(
            dir.join("config_sentence_transformers.json"),
            r#"{"prompts": {"query": "q: "}, "default_prompt_name": null, "__version__": {}}"#,
        )
        .unwrap();
        let config = TextConfig::from_dir(&dir).unwrap();
        assert_eq!(config.max_seq_length, Some(128));
        assert!(config.do_lower_case);
        assert_eq!(config.prompts.get("query").map(String::as_str), Some("q: "));
        assert_eq!(config.default_prompt_name, None);

        // No length there: tokenizer_config.json's, "no limit" (1e30) saturating.
        std::fs::write(dir.join("sentence_bert_config.json"), "{}").unwrap();
        std::fs::write(
            dir.join("tokenizer_config.json"),
            r#"{"model_max_length": 1000000000000000019884624838656}"#,
        )
        .unwrap();
        let config = TextConfig::from_dir(&dir).unwrap();
        assert_eq!(config.max_seq_length, Some(usize::MAX));

        // A file that is there but broken is an error naming it.
        std::fs::write(dir.join("config_sentence_transformers.json"), "[1]").unwrap();
        let err = TextConfig::from_dir(&dir).unwrap_err();
        assert!(matches!(err, Error::BadConfig { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("config_sentence_transformers.json"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn include_prompt_is_read_from_the_pooling_config() {
        let dir = std::env::temp_dir().join(format!("minilm_fast_prompt_{}", std::process::id()));
        std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
        std::fs::write(
            dir.join("modules.json"),
            r#"[{"path":"","type":"sentence_transformers.models.Transformer"},
                {"path":"1_Pooling","type":"sentence_transformers.models.Pooling"}]"#,
        )
        .unwrap();
        std::fs::write(
            dir.join("1_Pooling/config.json"),
            r#"{"pooling_mode_mean_tokens":true}"#,
        )
        .unwrap();
        assert!(SentenceConfig::from_dir(&dir).unwrap().include_prompt);
        std::fs::write(
            dir.join("1_Pooling/config.json"),
            r#"{"pooling_mode":"mean","include_prompt":false}"#,
        )
        .unwrap();
        assert!(!SentenceConfig::from_dir(&dir).unwrap().include_prompt);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
