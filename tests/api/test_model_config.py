"""What the native module reads from a model folder for the Python side: the pooling's
``include_prompt``, the text settings (``read_text_config``) and the compute modes, with one
rule for every configuration file (a regular file of at most 16 MiB holding JSON, or a
MiniLMError naming it)."""

from __future__ import annotations

import inspect
import json
import os
import typing
from pathlib import Path

import pytest
from support.tiny_bert import write_tiny_bert

from minilm_fast import Encoder, MiniLMError, NativeModel
from minilm_fast._minilm_fast import COMPUTE_MODES, read_text_config
from minilm_fast._options import Compute, EncoderArgs


def test_compute_modes_come_from_the_native_module() -> None:
    assert COMPUTE_MODES == ("float32", "bfloat16", "int8", "auto")
    assert typing.get_args(Compute) == COMPUTE_MODES
    with pytest.raises(ValueError, match="'float32', 'bfloat16', 'int8', 'auto'"):
        Encoder("unused", compute="fp8")  # type: ignore[arg-type]


def test_encoder_args_are_the_encoder_keywords() -> None:
    """The adapters' EncoderArgs is the keyword part of Encoder's signature, name for name."""
    parameters = inspect.signature(Encoder.__init__).parameters
    keywords = {n: p for n, p in parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert list(EncoderArgs.__annotations__) == list(keywords)
    for name, annotation in EncoderArgs.__annotations__.items():
        written = getattr(annotation, "__forward_arg__", annotation)  # from __future__ annotations
        assert written == keywords[name].annotation, name


def test_real_model_text_config(model_dir: Path, encoder: Encoder) -> None:
    config = read_text_config(model_dir)
    assert config.max_seq_length == 256
    assert config.do_lower_case is False
    assert config.prompts == {}
    assert config.default_prompt_name is None
    assert encoder.native.include_prompt is True
    assert encoder.max_seq_length == 256


def test_text_config_files(tmp_path: Path) -> None:
    assert read_text_config(tmp_path).max_seq_length is None  # no file at all: defaults
    (tmp_path / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": 128, "do_lower_case": True})
    )
    (tmp_path / "config_sentence_transformers.json").write_text(
        json.dumps({"prompts": {"query": "q: ", "document": ""}, "default_prompt_name": "query"})
    )
    config = read_text_config(str(tmp_path))
    assert (config.max_seq_length, config.do_lower_case) == (128, True)
    assert config.prompts == {"query": "q: ", "document": ""}
    assert config.default_prompt_name == "query"
    # Without a length in sentence_bert_config.json, tokenizer_config.json's counts; the
    # "no limit" value transformers writes (1e30) is a very large number, not an error.
    (tmp_path / "sentence_bert_config.json").write_text("{}")
    (tmp_path / "tokenizer_config.json").write_text('{"model_max_length": 512}')
    assert read_text_config(tmp_path).max_seq_length == 512
    (tmp_path / "tokenizer_config.json").write_text(
        '{"model_max_length": 1000000000000000019884624838656}'
    )
    assert read_text_config(tmp_path).max_seq_length == 2**64 - 1


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("sentence_bert_config.json", "{not json", ("sentence_bert_config.json", "key must")),
        ("config_sentence_transformers.json", "[1, 2]", ("config_sentence_transformers.json",)),
        (
            "config_sentence_transformers.json",
            '{"prompts": {"query": 3}}',
            ("config_sentence_transformers.json", "invalid type"),
        ),
        ("tokenizer_config.json", "", ("tokenizer_config.json", "EOF")),
    ],
)
def test_broken_text_config_is_minilm_error_naming_the_file(
    tmp_path: Path, name: str, text: str, words: tuple[str, ...]
) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(MiniLMError) as info:
        read_text_config(tmp_path)
    for word in words:
        assert word in str(info.value)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_text_config_fifo_and_folder_are_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "sentence_bert_config.json")
    with pytest.raises(MiniLMError, match="sentence_bert_config.json: not a regular file"):
        read_text_config(tmp_path)
    (tmp_path / "sentence_bert_config.json").unlink()
    (tmp_path / "config_sentence_transformers.json").mkdir()
    with pytest.raises(MiniLMError, match="config_sentence_transformers.json: not a regular"):
        read_text_config(tmp_path)


def test_include_prompt_false_is_read_and_prompts_are_refused(
    tmp_path: Path, model_dir: Path
) -> None:
    write_tiny_bert(tmp_path, hidden=32, layers=1, heads=4, intermediate=64, vocab=30522,
                    max_positions=64)  # fmt: skip
    native = NativeModel(tmp_path, threads=1)
    assert native.include_prompt is True
    pooling = tmp_path / "1_Pooling" / "config.json"
    pooling.write_text(json.dumps({**json.loads(pooling.read_text()), "include_prompt": False}))
    assert NativeModel(tmp_path, threads=1).include_prompt is False
    (tmp_path / "tokenizer.json").write_bytes((model_dir / "tokenizer.json").read_bytes())
    encoder = Encoder(tmp_path, threads=1, prompts={"query": "query: "})
    assert encoder.encode(["no prompt"]).shape == (1, 32)
    with pytest.raises(ValueError, match="include_prompt=false"):
        encoder.encode(["text"], prompt_name="query")
