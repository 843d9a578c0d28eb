"""``NativeModel.encode_ragged``: token ids as the tokenizer gives them (one flat array and
offsets), written in place into a caller's rows; every argument checked, on a tiny random model.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from support.tiny_bert import write_tiny_bert

from minilm_fast._minilm_fast import NativeModel

VOCAB = 50
MAX_POSITIONS = 16
LENGTHS = (5, 1, 16, 9)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> NativeModel:
    folder = tmp_path_factory.mktemp("tiny_ragged")
    write_tiny_bert(
        folder, hidden=32, layers=2, heads=4, intermediate=64, vocab=VOCAB,
        max_positions=MAX_POSITIONS, pooling=("mean", "cls"), seed=5,
    )  # fmt: skip
    return NativeModel(str(folder), threads=2)


def _sequences() -> list[list[int]]:
    rng = np.random.default_rng(11)
    return [rng.integers(0, VOCAB, size=n).tolist() for n in LENGTHS]


def _flat(rows: list[list[int]], dtype: Any = np.int64) -> tuple[np.ndarray, np.ndarray]:
    ids = np.array([i for row in rows for i in row], dtype=dtype)
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(dtype)
    return ids, offsets


def _padded(model: NativeModel, rows: list[list[int]], **kwargs: Any) -> npt.NDArray[np.float32]:
    width = max(len(r) for r in rows)
    ids = np.zeros((len(rows), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return model.encode(ids, mask, **kwargs)


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_matches_the_padded_call(model: NativeModel, dtype: Any) -> None:
    rows = _sequences()
    got = model.encode_ragged(*_flat(rows, dtype))
    assert got.dtype == np.float32 and got.shape == (len(rows), model.output_dim)
    assert got.flags.c_contiguous
    np.testing.assert_allclose(got, _padded(model, rows), atol=1e-6)


def test_writes_in_place_into_the_given_rows(model: NativeModel) -> None:
    rows = _sequences()
    out = np.full((7, model.output_dim), 5.0, dtype=np.float32)
    targets = np.array([6, 0, 3, 2])
    returned = model.encode_ragged(*_flat(rows), out=out, rows=targets)
    assert returned is out
    want = _padded(model, rows)
    np.testing.assert_allclose(out[targets], want, atol=1e-6)
    untouched = [1, 4, 5]
    assert (out[untouched] == 5.0).all()


def test_a_slice_of_offsets_reads_only_its_sequences(model: NativeModel) -> None:
    """Many batches laid out in one id array: each call passes its slice of the offsets."""
    rows = _sequences()
    ids, offsets = _flat(rows)
    out = np.zeros((2, model.output_dim), dtype=np.float32)
    ids[: offsets[1]] = 10**9  # the first sequence is outside the slice: never read
    model.encode_ragged(ids, offsets[1:4], out=out)
    np.testing.assert_allclose(out, _padded(model, rows[1:3]), atol=1e-6)


def test_narrower_out_gets_the_first_dimensions(model: NativeModel) -> None:
    rows = _sequences()
    full = _padded(model, rows, normalize=False)
    out = np.empty((len(rows), 20), dtype=np.float32)
    model.encode_ragged(*_flat(rows), out=out, normalize=False)
    np.testing.assert_allclose(out, full[:, :20], atol=1e-6)
    # normalize=True makes the written (cut) rows unit length.
    model.encode_ragged(*_flat(rows), out=out, normalize=True)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    cut = full[:, :20] / np.linalg.norm(full[:, :20], axis=1, keepdims=True)
    np.testing.assert_allclose(out, cut, atol=1e-6)


def test_no_sequences(model: NativeModel) -> None:
    empty = np.zeros(0, dtype=np.int64)
    assert model.encode_ragged(empty, np.zeros(1, dtype=np.int64)).shape == (0, model.output_dim)


def _error(
    model: NativeModel, kind: type[Exception], words: tuple[str, ...], **changes: Any
) -> None:
    ids, offsets = _flat(_sequences())
    args: dict[str, Any] = {"input_ids": ids, "offsets": offsets, **changes}
    pattern = "(?s)" + "".join(f"(?=.*{re.escape(w)})" for w in words)
    with pytest.raises(kind, match=pattern):
        model.encode_ragged(args.pop("input_ids"), args.pop("offsets"), **args)


DIM = 64  # mean and cls of hidden 32


@pytest.mark.parametrize(
    ("changes", "kind", "words"),
    [
        ({"input_ids": [1, 2, 3]}, TypeError, ("input_ids", "numpy.ndarray")),
        ({"input_ids": np.ones(31, dtype=np.float32)}, TypeError, ("input_ids", "dtype")),
        ({"input_ids": np.ones((31, 1), dtype=np.int64)}, ValueError, ("input_ids", "1-D")),
        ({"offsets": np.array([0, 5, 6], dtype=np.uint8)}, TypeError, ("offsets", "dtype")),
        ({"offsets": np.zeros(0, dtype=np.int64)}, ValueError, ("offsets is empty",)),
        ({"offsets": np.array([0, 5, 4, 31])}, ValueError, ("offsets[2] = 4", "decrease")),
        ({"offsets": np.array([0, 5, 32])}, ValueError, ("offsets[2] = 32", "past the end")),
        ({"offsets": np.array([-1, 5])}, ValueError, ("offsets[0] = -1", "negative")),
        ({"offsets": np.array([0, 5, 5, 31])}, ValueError, ("sequence 1 is empty",)),
        ({"offsets": np.array([0, 31])}, ValueError, ("31 tokens", "position")),
        ({"input_ids": np.full(31, VOCAB)}, ValueError, ("input_ids[0] = 50", "range")),
        ({"input_ids": np.full(31, -1)}, ValueError, ("input_ids[0] = -1",)),
        ({"input_ids": np.full(31, 2**32 + 1)}, ValueError, ("input_ids[0] = 4294967297",)),
        ({"rows": np.arange(4)}, ValueError, ("rows= needs out=",)),
        ({"out": [[0.0] * DIM] * 4}, TypeError, ("out", "numpy.ndarray")),
        ({"out": np.zeros((4, DIM))}, TypeError, ("out", "float32", "float64")),
        ({"out": np.zeros((4 * DIM,), np.float32)}, ValueError, ("out", "2-D")),
        ({"out": np.zeros((DIM, 4), np.float32).T}, ValueError, ("C-contiguous",)),
        ({"out": np.zeros((4, DIM + 1), np.float32)}, ValueError, ("between 1 and 64 columns",)),
        ({"out": np.zeros((3, DIM), np.float32)}, ValueError, ("3 rows for 4 sequences",)),
        (
            {"out": np.zeros((5, DIM), np.float32), "rows": np.array([0, 1, 2])},
            ValueError,
            ("rows has 3 entries for 4 sequences",),
        ),
        (
            {"out": np.zeros((5, DIM), np.float32), "rows": np.array([0, 1, 5, 2])},
            ValueError,
            ("rows[2] = 5", "5 rows"),
        ),
        (
            {"out": np.zeros((5, DIM), np.float32), "rows": np.array([0, -1, 3, 2])},
            ValueError,
            ("rows[1] = -1",),
        ),
        (
            {"out": np.zeros((5, DIM), np.float32), "rows": np.array([0, 3, 3, 2])},
            ValueError,
            ("rows[2] = 3", "twice"),
        ),
        (
            {"out": np.zeros((5, DIM), np.float32), "rows": np.array([0.0, 1, 2, 3])},
            TypeError,
            ("rows", "dtype"),
        ),
    ],
)
def test_bad_arguments_raise_clear_errors(
    model: NativeModel, changes: dict[str, Any], kind: type[Exception], words: tuple[str, ...]
) -> None:
    _error(model, kind, words, **changes)
    # The model still works after the error.
    rows = _sequences()
    np.testing.assert_allclose(model.encode_ragged(*_flat(rows)), _padded(model, rows), atol=1e-6)


def test_read_only_out_is_refused_and_left_alone(model: NativeModel) -> None:
    out = np.zeros((4, DIM), dtype=np.float32)
    out.flags.writeable = False
    _error(model, ValueError, ("out cannot be written",), out=out)
    assert (out == 0).all()


def test_out_sharing_memory_with_the_ids_is_refused(model: NativeModel) -> None:
    """An out that overlaps input_ids would be written while the ids are read."""
    ids, offsets = _flat(_sequences(), np.int32)
    buffer = np.zeros(4 * DIM + len(ids), dtype=np.int32)
    buffer[: len(ids)] = ids
    out = buffer.view(np.float32)[: 4 * DIM].reshape(4, DIM)
    with pytest.raises(ValueError, match="out cannot be written"):
        model.encode_ragged(buffer[: len(ids)], offsets, out=out)


def test_arguments_are_keyword_only_after_the_ids(model: NativeModel) -> None:
    ids, offsets = _flat(_sequences())
    out = np.zeros((4, DIM), dtype=np.float32)
    with pytest.raises(TypeError):
        model.encode_ragged(ids, offsets, out)  # type: ignore[misc]


def test_gil_is_released_while_computing(model: NativeModel) -> None:
    """Another Python thread runs while encode_ragged computes a large batch."""
    import threading
    import time

    rows = [
        list(np.random.default_rng(i).integers(0, VOCAB, size=MAX_POSITIONS)) for i in range(3000)
    ]
    ids, offsets = _flat(rows)
    ticks = 0
    done = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            time.sleep(0)

    thread = threading.Thread(target=count)
    thread.start()
    try:
        start = ticks
        model.encode_ragged(ids, offsets)
        during = ticks - start
    finally:
        done.set()
        thread.join()
    assert during > 10
