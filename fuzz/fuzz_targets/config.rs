//! `config.json`, `modules.json` and the Pooling module's `config.json` from fuzzed bytes, read
//! the way `SentenceEncoder::load` reads them (`BertConfig::from_file`, `SentenceConfig::from_dir`).
//!
//! Input: the three files' contents separated by NUL bytes (which JSON text never holds raw); a
//! file whose part is missing is not written, as in a plain transformers checkpoint. Each run
//! checks that an accepted configuration holds the invariants the forward pass relies on, and
//! that a refusal is an error with a message (never a panic).

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use minilm_fast::{BertConfig, SentenceConfig};
use minilm_fast_fuzz::scratch_dir;

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch_dir("config");
        std::fs::create_dir_all(dir.join("1_Pooling")).expect("creating 1_Pooling");
        dir
    })
}

fn put(path: PathBuf, contents: Option<&[u8]>) {
    match contents {
        Some(bytes) => std::fs::write(&path, bytes).expect("writing a scratch file"),
        None => {
            let _ = std::fs::remove_file(&path);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let dir = dir();
    let mut parts = data.splitn(3, |&b| b == 0);
    let (config, modules, pooling) = (parts.next(), parts.next(), parts.next());
    put(dir.join("config.json"), config);
    put(dir.join("modules.json"), modules);
    put(dir.join("1_Pooling/config.json"), pooling);

    match BertConfig::from_file(&dir.join("config.json")) {
        Ok(c) => {
            assert!(c.hidden_size > 0 && c.num_layers > 0 && c.num_heads > 0);
            assert!(c.intermediate_size > 0 && c.vocab_size > 0 && c.type_vocab_size > 0);
            assert!(c.max_position_embeddings > 0);
            assert!(c.num_heads <= c.hidden_size && c.hidden_size % c.num_heads == 0);
            assert_eq!(c.head_dim() * c.num_heads, c.hidden_size);
            assert!(c.layer_norm_eps.is_finite() && c.layer_norm_eps > 0.0);
            // The bounds that keep a hostile file from asking for absurd allocations.
            assert!(c.hidden_size <= 16_384 && c.num_layers <= 256);
            assert!(c.intermediate_size <= 65_536 && c.max_position_embeddings <= 65_536);
            assert!(c.vocab_size <= 4_000_000 && c.type_vocab_size <= 4_000_000);
        }
        Err(err) => assert!(!err.to_string().is_empty()),
    }

    match SentenceConfig::from_dir(dir) {
        Ok(s) => {
            assert!(!s.pooling.is_empty(), "a sentence config without pooling");
            if modules.is_none() {
                assert_eq!(s, SentenceConfig::default());
            }
        }
        Err(err) => assert!(!err.to_string().is_empty()),
    }
});
