"""The contract of the native module's boundary, on a tiny random model.

Outputs (dtype, layout, ownership), inputs (int32/int64, any memory layout), every argument and
model-folder error with its exception type and message, and the GIL being released in encode.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from support.tiny_bert import (
    random_batch,
    random_bert_weights,
    read_config,
    write_safetensors,
    write_tiny_bert,
)

from minilm_fast._minilm_fast import MiniLMError, NativeModel

HIDDEN = 32
VOCAB = 50
MAX_POSITIONS = 16
TYPE_VOCAB = 2
BATCH = 3
SEQ = 8
ARGS = ("input_ids", "attention_mask", "token_type_ids")
METHODS = ("encode", "token_embeddings")

Ids = npt.NDArray[np.int64]


def _all_of(*words: str) -> str:
    """A ``match=`` pattern that needs every one of ``words`` somewhere in the message."""
    return "(?s)" + "".join(f"(?=.*{re.escape(word)})" for word in words)


def _write_model(folder: Path, **overrides: Any) -> dict[str, npt.NDArray[np.float32]]:
    """The tiny model of this module (mean pooling, normalised) written to ``folder``."""
    kwargs: dict[str, Any] = {
        "hidden": HIDDEN,
        "layers": 2,
        "heads": 4,
        "intermediate": 64,
        "vocab": VOCAB,
        "max_positions": MAX_POSITIONS,
        "type_vocab": TYPE_VOCAB,
        "seed": 3,
    }
    kwargs.update(overrides)
    return write_tiny_bert(folder, **kwargs)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model folder shared by the tests of this module; tests must not modify it."""
    folder = tmp_path_factory.mktemp("tiny")
    _write_model(folder)
    return folder


@pytest.fixture(scope="module")
def model(tiny_dir: Path) -> NativeModel:
    """The tiny model, loaded once."""
    return NativeModel(str(tiny_dir), threads=1)


def _inputs(dtype: type[np.integer[Any]] = np.int64) -> tuple[Ids, Ids, Ids]:
    """A fixed valid batch: ``(input_ids, attention_mask, token_type_ids)`` of shape (3, 8)."""
    ids, mask, types = random_batch(
        np.random.default_rng(7), batch=BATCH, seq=SEQ, vocab=VOCAB, type_vocab=TYPE_VOCAB
    )
    return ids.astype(dtype), mask.astype(dtype), types.astype(dtype)


@pytest.fixture(scope="module")
def baseline(model: NativeModel) -> tuple[np.ndarray, np.ndarray]:
    """``encode`` and ``token_embeddings`` of the fixed batch, before any error was raised."""
    ids, mask, types = _inputs()
    return model.encode(ids, mask, types), model.token_embeddings(ids, mask, types)


def _assert_still_works(model: NativeModel, baseline: tuple[np.ndarray, np.ndarray]) -> None:
    """After an error, the model gives exactly the same results as before it."""
    ids, mask, types = _inputs()
    np.testing.assert_array_equal(model.encode(ids, mask, types), baseline[0])
    np.testing.assert_array_equal(model.token_embeddings(ids, mask, types), baseline[1])


def _call(model: NativeModel, method: str, ids: Any, mask: Any, types: Any) -> np.ndarray:
    result: np.ndarray = getattr(model, method)(ids, mask, types)
    return result


def _replace(arg: str, value: Any) -> tuple[Any, Any, Any]:
    """The fixed batch with argument ``arg`` replaced by ``value``."""
    args: list[Any] = list(_inputs())
    args[ARGS.index(arg)] = value
    return args[0], args[1], args[2]


# --- outputs ----------------------------------------------------------------------------------


def test_model_attributes(model: NativeModel) -> None:
    """Sizes come from config.json; pooling and normalisation from modules.json."""
    assert model.hidden_size == HIDDEN
    assert model.output_dim == HIDDEN
    assert model.num_layers == 2
    assert model.vocab_size == VOCAB
    assert model.max_position_embeddings == MAX_POSITIONS
    assert model.type_vocab_size == TYPE_VOCAB
    assert model.threads == 1
    assert model.pooling == ["mean"]
    assert model.normalize is True


def test_default_threads_is_positive(tiny_dir: Path) -> None:
    """Without ``threads`` the model picks a thread count of its own."""
    threads = NativeModel(str(tiny_dir)).threads
    assert isinstance(threads, int) and threads >= 1


@pytest.mark.parametrize("threads", [0, -1])
def test_threads_below_one_is_value_error(tiny_dir: Path, threads: int) -> None:
    """A thread count must be at least 1 (or None)."""
    with pytest.raises(ValueError, match="threads"):
        NativeModel(str(tiny_dir), threads=threads)


def test_model_dir_may_be_a_path(tiny_dir: Path, model: NativeModel) -> None:
    """``tiny_dir`` may be a ``pathlib.Path`` as well as a ``str``."""
    ids, mask, types = _inputs()
    np.testing.assert_array_equal(
        NativeModel(tiny_dir, threads=1).encode(ids, mask, types), model.encode(ids, mask, types)
    )


@pytest.mark.parametrize("method", METHODS)
def test_output_dtype_layout_and_shape(model: NativeModel, method: str) -> None:
    """A float32, C-contiguous, writeable array of the documented shape."""
    out = _call(model, method, *_inputs())
    shape = (BATCH, HIDDEN) if method == "encode" else (BATCH, SEQ, HIDDEN)
    assert isinstance(out, np.ndarray)
    assert out.shape == shape
    assert out.dtype == np.float32
    assert out.flags.c_contiguous
    assert out.flags.writeable
    assert np.isfinite(out).all()


@pytest.mark.parametrize("method", METHODS)
def test_output_is_rust_memory_handed_over_without_copy(model: NativeModel, method: str) -> None:
    """The result wraps the Rust buffer: numpy does not own it, a Rust container object does.

    rust-numpy's ``into_pyarray`` (for a ``Vec`` or an owned ``ndarray::Array``) moves the
    buffer into a ``PySliceContainer`` Python object and builds the array over it with that
    object as ``base``, so ``flags.owndata`` is False and ``base`` is the container (numpy
    collapses chains of views, so a reshape on top still has the container as its ``base``).
    A copy into numpy-allocated memory (``to_pyarray``, ``from_vec2``) would have ``owndata``.
    """
    out = _call(model, method, *_inputs())
    assert not out.flags.owndata
    base: Any = out
    while isinstance(base, np.ndarray):
        base = base.base
    assert type(base).__name__ == "PySliceContainer"


def test_each_call_returns_a_new_array(model: NativeModel) -> None:
    """Results do not share memory, so writing into one leaves the next call alone."""
    ids, mask, types = _inputs()
    first = model.encode(ids, mask, types)
    second = model.encode(ids, mask, types)
    assert not np.shares_memory(first, second)
    expected = second.copy()
    first[:] = 0.0
    np.testing.assert_array_equal(model.encode(ids, mask, types), expected)


def test_encode_is_mean_pooled_and_normalised(model: NativeModel) -> None:
    """``encode`` is the normalised masked mean of ``token_embeddings``; normalize overrides."""
    ids, mask, types = _inputs()
    tokens = model.token_embeddings(ids, mask, types).astype(np.float64)
    mean = (tokens * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
    raw = model.encode(ids, mask, types, normalize=False)
    np.testing.assert_allclose(raw, mean, atol=1e-5)
    unit = mean / np.linalg.norm(mean, axis=1, keepdims=True)
    np.testing.assert_allclose(model.encode(ids, mask, types), unit, atol=1e-6)
    np.testing.assert_allclose(model.encode(ids, mask, types, normalize=True), unit, atol=1e-6)
    np.testing.assert_allclose(model.encode(ids, mask, types, normalize=None), unit, atol=1e-6)


def test_fully_masked_row_pools_to_zero(model: NativeModel) -> None:
    """A row with no attended token mean-pools to zero, and normalising keeps it zero."""
    ids, mask, types = _inputs()
    mask[1] = 0
    for normalize in (True, False):
        out = model.encode(ids, mask, types, normalize=normalize)
        assert np.isfinite(out).all()
        np.testing.assert_array_equal(out[1], np.zeros(HIDDEN, dtype=np.float32))


@pytest.mark.parametrize("threads", [2, 3, 7])
def test_batch_split_between_threads_matches_one_thread(tiny_dir: Path, threads: int) -> None:
    """With several threads a batch is cut into groups of whole sequences, one group per
    thread (rust/engine.rs): every row still lands in its place, fully masked rows and
    left-padded rows included, and agrees with the one-thread model."""
    rng = np.random.default_rng(threads)
    ids, mask, types = random_batch(
        rng, batch=64, seq=16, vocab=VOCAB, full_rows=3, left_padded_rows=9
    )
    mask[[5, 17, 63]] = 0
    one = NativeModel(str(tiny_dir), threads=1).encode(ids, mask, types)
    split = NativeModel(str(tiny_dir), threads=threads).encode(ids, mask, types)
    np.testing.assert_allclose(split, one, rtol=0, atol=2e-6)
    assert not split[[5, 17, 63]].any()


def test_inputs_are_not_modified(model: NativeModel) -> None:
    """The inputs are read in place and left as they were."""
    ids, mask, types = _inputs()
    copies = (ids.copy(), mask.copy(), types.copy())
    model.encode(ids, mask, types)
    model.token_embeddings(ids, mask, types)
    for got, want in zip((ids, mask, types), copies):
        np.testing.assert_array_equal(got, want)


# --- inputs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_int32_and_int64_give_identical_results(model: NativeModel, method: str) -> None:
    """Each argument may be int32 or int64, independently of the others."""
    want = _call(model, method, *_inputs(np.int64))
    np.testing.assert_array_equal(_call(model, method, *_inputs(np.int32)), want)
    ids32, mask32, types32 = _inputs(np.int32)
    ids64, mask64, types64 = _inputs(np.int64)
    np.testing.assert_array_equal(_call(model, method, ids32, mask64, types32), want)
    np.testing.assert_array_equal(_call(model, method, ids64, mask32, types64), want)


def test_token_type_ids_default_to_zeros(model: NativeModel) -> None:
    """``token_type_ids`` None (or left out) is all zeros."""
    ids, mask, _ = _inputs()
    zeros = np.zeros_like(ids)
    want = model.encode(ids, mask, zeros)
    np.testing.assert_array_equal(model.encode(ids, mask), want)
    np.testing.assert_array_equal(model.encode(ids, mask, None), want)
    np.testing.assert_array_equal(
        model.token_embeddings(ids, mask), model.token_embeddings(ids, mask, zeros)
    )


def _layouts(array: Ids) -> dict[str, np.ndarray]:
    """``array`` (B, T) in other memory layouts, each with the same values."""
    batch, seq = array.shape
    wide = np.zeros((batch * 2, seq * 3), dtype=array.dtype)
    wide[::2, ::3] = array
    reversed_rows = np.ascontiguousarray(array[::-1])[::-1]
    readonly = array.copy()
    readonly.flags.writeable = False
    return {
        "fortran": np.asfortranarray(array),
        "strided": wide[::2, ::3],
        "negative-strides": reversed_rows,
        "readonly": readonly,
        "int32-strided": np.ascontiguousarray(wide.astype(np.int32))[::2, ::3],
    }


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "layout", ["fortran", "strided", "negative-strides", "readonly", "int32-strided"]
)
def test_memory_layouts_give_the_same_result(model: NativeModel, method: str, layout: str) -> None:
    """Non-contiguous, Fortran-ordered, reversed and read-only inputs equal contiguous copies."""
    ids, mask, types = _inputs()
    want = _call(model, method, ids, mask, types)
    views = [_layouts(a)[layout] for a in (ids, mask, types)]
    assert not all(v.flags.c_contiguous for v in views) or layout == "readonly"
    np.testing.assert_array_equal(_call(model, method, *views), want)
    # One argument at a time in the unusual layout, the others contiguous.
    for i in range(3):
        args: list[np.ndarray] = [ids, mask, types]
        args[i] = views[i]
        np.testing.assert_array_equal(_call(model, method, *args), want)


def test_sliced_columns_match_their_copy(model: NativeModel) -> None:
    """``a[:, ::2]`` is encoded like ``np.ascontiguousarray(a[:, ::2])``."""
    ids, mask, types = random_batch(
        np.random.default_rng(9), batch=4, seq=MAX_POSITIONS, vocab=VOCAB, full_rows=4
    )
    views = (ids[:, ::2], mask[:, ::2], types[:, ::2])
    copies = tuple(np.ascontiguousarray(v) for v in views)
    np.testing.assert_array_equal(model.encode(*views), model.encode(*copies))
    np.testing.assert_array_equal(model.token_embeddings(*views), model.token_embeddings(*copies))


def test_broadcast_inputs(model: NativeModel) -> None:
    """Zero-stride (broadcast) arrays are read like their materialised copies."""
    ids, _, _ = _inputs()
    mask = np.broadcast_to(np.ones(SEQ, dtype=np.int64), (BATCH, SEQ))
    types = np.broadcast_to(np.zeros((1, 1), dtype=np.int32), (BATCH, SEQ))
    np.testing.assert_array_equal(
        model.encode(ids, mask, types), model.encode(ids, mask.copy(), types.copy())
    )


def test_sequence_of_max_length(model: NativeModel) -> None:
    """T == max_position_embeddings is allowed."""
    ids, mask, types = random_batch(
        np.random.default_rng(10), batch=2, seq=MAX_POSITIONS, vocab=VOCAB, full_rows=2
    )
    assert model.encode(ids, mask, types).shape == (2, HIDDEN)


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_empty_batch(model: NativeModel, dtype: type[np.integer[Any]]) -> None:
    """B == 0 gives an empty result of the right trailing shape."""
    empty = np.zeros((0, 5), dtype=dtype)
    out = model.encode(empty, empty, empty)
    assert out.shape == (0, HIDDEN)
    assert out.dtype == np.float32
    assert out.flags.c_contiguous
    tokens = model.token_embeddings(empty, empty)
    assert tokens.shape == (0, 5, HIDDEN)
    assert tokens.dtype == np.float32


# --- argument errors --------------------------------------------------------------------------

BAD_DTYPES: list[Any] = [
    np.float32,
    np.float64,
    np.float16,
    np.bool_,
    np.uint64,
    np.uint32,
    np.int16,
    np.int8,
    object,
]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("arg", ARGS)
@pytest.mark.parametrize("dtype", BAD_DTYPES, ids=lambda d: np.dtype(d).name)
def test_wrong_dtype_is_type_error(
    model: NativeModel,
    baseline: tuple[np.ndarray, np.ndarray],
    method: str,
    arg: str,
    dtype: Any,
) -> None:
    """Any dtype other than int32/int64 is a TypeError naming the argument and both dtypes."""
    value = _inputs()[ARGS.index(arg)].astype(dtype)
    with pytest.raises(TypeError, match=_all_of(arg, "int32", "int64")):
        _call(model, method, *_replace(arg, value))
    _assert_still_works(model, baseline)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("arg", ARGS)
@pytest.mark.parametrize("ndim", [0, 1, 3])
def test_wrong_ndim_is_value_error(
    model: NativeModel, baseline: tuple[np.ndarray, np.ndarray], method: str, arg: str, ndim: int
) -> None:
    """Arrays that are not 2-D are a ValueError naming the argument."""
    array = _inputs()[ARGS.index(arg)]
    value = {0: array[:1, :1].reshape(()), 1: array[0], 3: array[None]}[ndim]
    assert value.ndim == ndim
    with pytest.raises(ValueError, match=arg):
        _call(model, method, *_replace(arg, value))
    _assert_still_works(model, baseline)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("arg", ["attention_mask", "token_type_ids"])
@pytest.mark.parametrize("shape", [(BATCH, SEQ + 1), (BATCH + 1, SEQ), (BATCH, SEQ - 1)])
def test_shape_mismatch_is_value_error(
    model: NativeModel,
    baseline: tuple[np.ndarray, np.ndarray],
    method: str,
    arg: str,
    shape: tuple[int, int],
) -> None:
    """An argument whose shape differs from ``input_ids`` is a ValueError naming it."""
    value = np.ones(shape, dtype=np.int64) if arg == "attention_mask" else np.zeros(shape, np.int64)
    with pytest.raises(ValueError, match=arg):
        _call(model, method, *_replace(arg, value))
    _assert_still_works(model, baseline)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
@pytest.mark.parametrize(
    ("value", "row", "col"),
    [(-1, 1, 2), (VOCAB, 2, 5), (VOCAB + 7, 0, 7), (-(2**31), 2, 0), (2**31 - 1, 1, 1)],
)
def test_id_out_of_range_is_value_error(
    model: NativeModel,
    baseline: tuple[np.ndarray, np.ndarray],
    method: str,
    dtype: type[np.integer[Any]],
    value: int,
    row: int,
    col: int,
) -> None:
    """An id outside [0, vocab_size) is a ValueError naming the argument, value and position."""
    ids, mask, types = _inputs(dtype)
    ids[row, col] = value
    position = rf"\b{row}\b\D+\b{col}\b"
    with pytest.raises(ValueError, match=_all_of("input_ids", str(value))) as info:
        _call(model, method, ids, mask, types)
    assert re.search(position, str(info.value)), str(info.value)
    _assert_still_works(model, baseline)


@pytest.mark.parametrize("value", [2**32 + 3, -(2**32) + 3, 2**62])
def test_int64_id_that_wraps_in_32_bits_is_value_error(
    model: NativeModel, baseline: tuple[np.ndarray, np.ndarray], value: int
) -> None:
    """Large int64 ids are rejected, not truncated to an in-range 32-bit id."""
    ids, mask, types = _inputs()
    ids[2, 3] = value
    with pytest.raises(ValueError, match=_all_of("input_ids", str(value))):
        model.encode(ids, mask, types)
    _assert_still_works(model, baseline)


def test_out_of_range_id_under_padding_is_value_error(
    model: NativeModel, baseline: tuple[np.ndarray, np.ndarray]
) -> None:
    """Ids are checked everywhere, also where the mask is 0."""
    ids, mask, types = _inputs()
    row, col = np.argwhere(mask == 0)[0]
    ids[row, col] = VOCAB
    with pytest.raises(ValueError, match="input_ids"):
        model.encode(ids, mask, types)
    _assert_still_works(model, baseline)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("value", [-1, TYPE_VOCAB, 1000])
def test_token_type_out_of_range_is_value_error(
    model: NativeModel, baseline: tuple[np.ndarray, np.ndarray], method: str, value: int
) -> None:
    """A token type outside [0, type_vocab_size) is a ValueError naming ``token_type_ids``."""
    ids, mask, types = _inputs()
    types[1, 0] = value
    with pytest.raises(ValueError, match="token_type_ids"):
        _call(model, method, ids, mask, types)
    _assert_still_works(model, baseline)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("value", [2, -1, 255])
def test_mask_not_zero_or_one_is_value_error(
    model: NativeModel, baseline: tuple[np.ndarray, np.ndarray], method: str, value: int
) -> None:
    """A mask value other than 0 or 1 is a ValueError naming ``attention_mask``."""
    ids, mask, types = _inputs()
    mask[0, 3] = value
    with pytest.raises(ValueError, match="attention_mask"):
        _call(model, method, ids, mask, types)
    _assert_still_works(model, baseline)


@pytest.mark.parametrize("method", METHODS)
def test_too_long_is_value_error(
    model: NativeModel, baseline: tuple[np.ndarray, np.ndarray], method: str
) -> None:
    """T > max_position_embeddings is a ValueError giving the length and the limit."""
    seq = MAX_POSITIONS + 1
    ids = np.ones((2, seq), dtype=np.int64)
    with pytest.raises(ValueError, match=_all_of(str(seq), str(MAX_POSITIONS))):
        _call(model, method, ids, np.ones_like(ids), None)
    _assert_still_works(model, baseline)


@pytest.mark.parametrize("method", METHODS)
def test_empty_sequence_is_value_error(
    model: NativeModel, baseline: tuple[np.ndarray, np.ndarray], method: str
) -> None:
    """T == 0 is a ValueError: a sequence needs at least one token."""
    ids = np.zeros((2, 0), dtype=np.int64)
    with pytest.raises(ValueError, match=_all_of("input_ids", "token")):
        _call(model, method, ids, ids, None)
    _assert_still_works(model, baseline)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("arg", ARGS)
@pytest.mark.parametrize("kind", ["list", "tuple", "string", "scalar"])
def test_non_array_is_type_error(
    model: NativeModel, baseline: tuple[np.ndarray, np.ndarray], method: str, arg: str, kind: str
) -> None:
    """Lists, tuples, strings and scalars are not arrays: TypeError."""
    array = _inputs()[ARGS.index(arg)]
    value = {
        "list": array.tolist(),
        "tuple": tuple(map(tuple, array.tolist())),
        "string": "1 2 3",
        "scalar": 1,
    }[kind]
    with pytest.raises(TypeError):
        _call(model, method, *_replace(arg, value))
    _assert_still_works(model, baseline)


@pytest.mark.parametrize("arg", ["input_ids", "attention_mask"])
def test_required_argument_none_is_type_error(
    model: NativeModel, baseline: tuple[np.ndarray, np.ndarray], arg: str
) -> None:
    """Only ``token_type_ids`` may be None."""
    with pytest.raises(TypeError):
        model.encode(*_replace(arg, None))
    _assert_still_works(model, baseline)


def test_normalize_is_keyword_only(model: NativeModel) -> None:
    """``normalize`` cannot be passed by position."""
    ids, mask, types = _inputs()
    encode: Callable[..., Any] = model.encode
    with pytest.raises(TypeError):
        encode(ids, mask, types, True)
    with pytest.raises(TypeError):
        encode(ids, mask, types, normalize="yes")


# --- model folder errors ----------------------------------------------------------------------


def test_missing_folder_is_file_not_found(tmp_path: Path) -> None:
    """A folder that does not exist: FileNotFoundError naming it or its config.json."""
    missing = tmp_path / "no-such-model"
    with pytest.raises(FileNotFoundError, match="no-such-model|config\\.json"):
        NativeModel(str(missing))


@pytest.mark.parametrize("name", ["config.json", "model.safetensors"])
def test_missing_file_is_file_not_found(tmp_path: Path, name: str) -> None:
    """A model folder without config.json or model.safetensors: FileNotFoundError naming it."""
    _write_model(tmp_path)
    (tmp_path / name).unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(name)):
        NativeModel(str(tmp_path))


def test_missing_pooling_config_is_file_not_found(tmp_path: Path) -> None:
    """modules.json names a Pooling folder whose config.json is missing."""
    _write_model(tmp_path)
    (tmp_path / "1_Pooling" / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="1_Pooling"):
        NativeModel(str(tmp_path))


def _edit_config(folder: Path, **changes: Any) -> None:
    config = read_config(folder)
    for key, value in changes.items():
        if value is None:
            del config[key]
        else:
            config[key] = value
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    "text",
    ["{not json", "", "[1, 2, 3]", '{"hidden_size": "wide"}'],
    ids=["broken", "empty", "not-an-object", "wrong-type"],
)
def test_unparseable_config_is_minilm_error(tmp_path: Path, text: str) -> None:
    """config.json that is not a BERT config: MiniLMError naming config.json."""
    _write_model(tmp_path)
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(MiniLMError, match="config\\.json"):
        NativeModel(str(tmp_path))


@pytest.mark.parametrize(
    "changes",
    [
        {"hidden_size": None},
        {"num_hidden_layers": None},
        {"num_attention_heads": 5},
        {"hidden_act": "silu"},
        {"model_type": "roberta"},
        {"position_embedding_type": "relative_key"},
    ],
    ids=[
        "no-hidden-size",
        "no-layers",
        "heads-do-not-divide-hidden",
        "silu",
        "roberta",
        "relative-positions",
    ],
)
def test_invalid_config_is_minilm_error(tmp_path: Path, changes: dict[str, Any]) -> None:
    """A config that parses but cannot describe this model: MiniLMError naming config.json."""
    _write_model(tmp_path)
    _edit_config(tmp_path, **changes)
    with pytest.raises(MiniLMError, match="config\\.json"):
        NativeModel(str(tmp_path))


@pytest.mark.parametrize("file", ["modules.json", "1_Pooling/config.json"])
def test_unparseable_modules_is_minilm_error(tmp_path: Path, file: str) -> None:
    """A broken modules.json or pooling config: MiniLMError naming the file."""
    _write_model(tmp_path)
    (tmp_path / file).write_text("{not json")
    with pytest.raises(MiniLMError, match=re.escape(file.split("/")[0])):
        NativeModel(str(tmp_path))


@pytest.mark.parametrize(
    "cut",
    [lambda n: n // 2, lambda n: n - 1, lambda n: 20, lambda n: 4],
    ids=["half", "last-byte", "in-header", "in-header-length"],
)
def test_truncated_safetensors_is_minilm_error(tmp_path: Path, cut: Callable[[int], int]) -> None:
    """A model.safetensors cut short (in the data or in the header): MiniLMError naming it."""
    _write_model(tmp_path)
    path = tmp_path / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: cut(len(data))])
    with pytest.raises(MiniLMError, match="model\\.safetensors"):
        NativeModel(str(tmp_path))


def test_garbage_safetensors_is_minilm_error(tmp_path: Path) -> None:
    """A header that is not JSON: MiniLMError naming model.safetensors."""
    _write_model(tmp_path)
    weights = random_bert_weights(read_config(tmp_path), seed=3)
    write_safetensors(tmp_path / "model.safetensors", weights, header_extra="}garbage")
    with pytest.raises(MiniLMError, match="model\\.safetensors"):
        NativeModel(str(tmp_path))


def test_wrong_tensor_shape_is_minilm_error(tmp_path: Path) -> None:
    """A tensor whose shape does not fit the config: MiniLMError naming the tensor."""
    _write_model(tmp_path)
    weights = random_bert_weights(read_config(tmp_path), seed=3)
    name = "encoder.layer.1.intermediate.dense.weight"
    weights[name] = np.ascontiguousarray(weights[name].T)
    write_safetensors(tmp_path / "model.safetensors", weights)
    with pytest.raises(MiniLMError, match=re.escape(name)):
        NativeModel(str(tmp_path))


def test_vocab_size_disagreeing_with_embeddings_is_minilm_error(tmp_path: Path) -> None:
    """config.json's vocab_size must match the word embedding table."""
    _write_model(tmp_path)
    _edit_config(tmp_path, vocab_size=VOCAB + 1)
    with pytest.raises(MiniLMError, match="word_embeddings"):
        NativeModel(str(tmp_path))


def test_missing_tensor_is_minilm_error(tmp_path: Path) -> None:
    """A tensor the config needs is absent: MiniLMError naming the tensor."""
    _write_model(tmp_path)
    weights = random_bert_weights(read_config(tmp_path), seed=3)
    name = "encoder.layer.1.output.LayerNorm.bias"
    del weights[name]
    write_safetensors(tmp_path / "model.safetensors", weights)
    with pytest.raises(MiniLMError, match=re.escape(name)):
        NativeModel(str(tmp_path))


def test_minilm_error_is_an_exception() -> None:
    """MiniLMError can be caught as an ordinary Exception."""
    assert issubclass(MiniLMError, Exception)


# --- the GIL ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model big enough that one encode takes a noticeable time (~0.1 s and more)."""
    folder = tmp_path_factory.mktemp("big")
    write_tiny_bert(
        folder, hidden=256, layers=4, heads=4, intermediate=1024, vocab=64, max_positions=64
    )
    return folder


@pytest.fixture(scope="module")
def big_model(big_model_dir: Path) -> NativeModel:
    """The big model on one thread."""
    return NativeModel(str(big_model_dir), threads=1)


def _big_batch() -> tuple[Ids, Ids]:
    """64 full rows of 64 tokens: ~0.2 s for one encode on one thread, long enough that a
    scheduler delay of tens of milliseconds (a 2-CPU VM with neighbours) stays small beside it.
    At 16 rows (~50 ms on an Emerald Rapids VM) the overlap test failed all its attempts once."""
    rng = np.random.default_rng(12)
    ids, mask, _ = random_batch(rng, batch=64, seq=64, vocab=64, full_rows=64)
    return ids, mask


def _timed_encode(
    model: NativeModel, ids: Ids, mask: Ids, barrier: threading.Barrier
) -> tuple[float, float, np.ndarray]:
    """Thread body: wait for the other thread, then time one encode call."""
    barrier.wait(timeout=30)
    start = time.perf_counter()
    out = model.encode(ids, mask)
    return start, time.perf_counter(), out


def _tick_until(stop: threading.Event, ticks: list[float]) -> None:
    """Thread body: record the time every half millisecond until ``stop`` is set."""
    while not stop.is_set():
        ticks.append(time.perf_counter())
        time.sleep(0.0005)


def test_encode_calls_in_two_threads_overlap(big_model_dir: Path) -> None:
    """Two Python threads started together run encode at the same time, and agree.

    Each thread holds its own one-thread model (one model serves concurrent calls from its own
    pool of ``threads`` workers, so on a one-thread model they take turns). Each waits on a
    shared barrier, then times its encode call. Mere overlap of the two intervals would not prove
    much: with the GIL held, the second thread can take its start time just before the first
    enters encode, then wait out the whole first call inside its own, so the intervals overlap by
    half of the longer one. Run concurrently (on one CPU or more), they overlap by nearly all of
    it. Both models are warmed up first (a first call also allocates its buffers), and
    scheduling noise can spoil one attempt, so up to five are made.
    """
    models = [NativeModel(str(big_model_dir), threads=1) for _ in range(2)]
    ids, mask = _big_batch()
    want = models[0].encode(ids, mask)
    np.testing.assert_array_equal(models[1].encode(ids, mask), want)
    intervals: list[tuple[float, float]] = []
    for _attempt in range(5):
        barrier = threading.Barrier(2)
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = [pool.submit(_timed_encode, m, ids, mask, barrier) for m in models]
            calls = [future.result(timeout=120) for future in futures]
        for _, _, out in calls:
            np.testing.assert_array_equal(out, want)
        intervals = [(start, end) for start, end, _ in calls]
        (s1, e1), (s2, e2) = intervals
        overlap = min(e1, e2) - max(s1, s2)
        if overlap > 0.7 * max(e1 - s1, e2 - s2):
            return
    pytest.fail(f"encode calls did not run concurrently: {intervals}")


def test_one_model_serves_many_threads(tiny_dir: Path) -> None:
    """Concurrent calls on one shared model all return what a lone call returns."""
    shared = NativeModel(str(tiny_dir), threads=2)
    batches = [
        random_batch(np.random.default_rng(seed), batch=4, seq=MAX_POSITIONS, vocab=VOCAB)
        for seed in range(8)
    ]
    want = [shared.encode(*batch) for batch in batches]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _round in range(5):
            got = list(pool.map(lambda batch: shared.encode(*batch), batches))
            for g, w in zip(got, want):
                np.testing.assert_array_equal(g, w)


def test_encode_lets_other_python_threads_run(big_model: NativeModel) -> None:
    """While one thread is inside encode, another keeps running Python code.

    Overlapping timestamps alone cannot tell a released GIL from a held one: a thread can take
    its start time just before the other enters encode. Here a ticker thread records times in a
    loop; with the GIL held during encode it could not record any inside the call's middle.
    """
    ids, mask = _big_batch()
    big_model.encode(ids, mask)  # warm up
    inside: list[float] = []
    elapsed = 0.0
    for _attempt in range(3):
        stop = threading.Event()
        ticks: list[float] = []
        thread = threading.Thread(target=_tick_until, args=(stop, ticks))
        thread.start()
        time.sleep(0.01)
        start = time.perf_counter()
        big_model.encode(ids, mask)
        end = time.perf_counter()
        stop.set()
        thread.join()
        elapsed = end - start
        inside = [t for t in ticks if start + 0.1 * elapsed < t < end - 0.1 * elapsed]
        if len(inside) >= 5:
            return
    pytest.fail(f"no Python thread ran during encode ({elapsed:.3f} s, {len(inside)} ticks)")
