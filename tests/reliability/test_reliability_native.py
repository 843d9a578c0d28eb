"""Reliability of the native batch call, ``encoder.native.encode`` / ``.token_embeddings``.

``tests/native/test_native.py`` covers the common bad arrays (wrong dtypes incl. float, uint64 and
object, 1-D and 3-D, mismatched shapes, ids out of range, masks other than 0/1, too long, empty
sequences, non-arrays) and the usual layouts (Fortran, strided, negative strides, read-only,
broadcast). This file adds the arrays numpy makes that a view in place would misread (packed
record fields, unaligned buffers, byte-swapped), array subclasses, batches too large for memory,
rows that are all padding, and arrays another thread writes while the call reads them.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.reliability import record, run_python

from minilm_fast import Encoder
from minilm_fast._minilm_fast import NativeModel

IDS = np.array(
    [[101, 7592, 2088, 1010, 2129, 2024, 2017, 102], [101, 2088, 102, 0, 0, 0, 0, 0]],
    dtype=np.int64,
)
MASK = (IDS != 0).astype(np.int64)
TYPES = np.zeros_like(IDS)
METHODS = ("encode", "token_embeddings")


@pytest.fixture(autouse=True)
def _category(record_property: Any) -> None:
    record(record_property, category="native batch arrays")


@pytest.fixture(scope="module")
def native(encoder: Encoder) -> NativeModel:
    return encoder.native


@pytest.fixture(scope="module")
def want(native: NativeModel) -> dict[str, np.ndarray]:
    return {m: getattr(native, m)(IDS, MASK, TYPES) for m in METHODS}


def _packed_field(values: np.ndarray, dtype: str) -> np.ndarray:
    """``values`` as a field of a packed record array: 1 + itemsize bytes per element."""
    records = np.zeros(values.shape, dtype=[("flag", "i1"), ("value", dtype)])
    records["value"] = values
    return records["value"]


def _offset_by_one(values: np.ndarray, dtype: str) -> np.ndarray:
    """``values`` in a buffer that starts one byte past an aligned address."""
    item = np.dtype(dtype).itemsize
    buffer = np.zeros(values.size * item + 1, dtype=np.uint8)
    array: np.ndarray = np.ndarray(values.shape, dtype=dtype, buffer=buffer, offset=1)
    array[...] = values
    return array


def _matrix(values: np.ndarray) -> Any:
    """``np.matrix``, without numpy's PendingDeprecationWarning about using it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        return np.asmatrix(values)


def _memmap(values: np.ndarray, dtype: str, folder: Path) -> np.ndarray:
    path = folder / f"{dtype}-{values.sum()}.npy"
    np.save(path, values.astype(dtype))
    loaded: np.ndarray = np.load(path, mmap_mode="r")
    return loaded


LAYOUTS: dict[str, Callable[[np.ndarray, str, Path], Any]] = {
    "packed-record-field": lambda v, d, _: _packed_field(v, d),
    "unaligned-buffer": lambda v, d, _: _offset_by_one(v, d),
    "byte-swapped": lambda v, d, _: v.astype(np.dtype(d).newbyteorder(">")),
    "byte-swapped-fortran": lambda v, d, _: np.asfortranarray(
        v.astype(np.dtype(d).newbyteorder(">"))
    ),
    "matrix": lambda v, d, _: _matrix(v.astype(d)),
    "masked-array": lambda v, d, _: np.ma.masked_array(v.astype(d)),
    "memmap": lambda v, d, folder: _memmap(v, d, folder),
}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", ["int32", "int64"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_arrays_a_view_would_misread_give_the_same_result(
    native: NativeModel,
    want: dict[str, np.ndarray],
    tmp_path: Path,
    method: str,
    dtype: str,
    layout: str,
) -> None:
    """Packed record fields (stride 9 for int64), unaligned and byte-swapped arrays, subclasses.

    A packed field's stride is not a whole number of elements and its elements are unaligned:
    read in place as int64 it gave other numbers (refused as out-of-range ids at best, other
    vectors at worst). Such arrays are now copied once into aligned native-order memory.
    """
    make = LAYOUTS[layout]
    arrays = [make(a, dtype, tmp_path) for a in (IDS, MASK, TYPES)]
    if layout in ("packed-record-field", "unaligned-buffer"):
        assert not any(a.flags.aligned for a in arrays)
    np.testing.assert_array_equal(getattr(native, method)(*arrays), want[method])
    for i in range(3):  # one argument at a time
        args: list[Any] = [IDS, MASK, TYPES]
        args[i] = arrays[i]
        np.testing.assert_array_equal(getattr(native, method)(*args), want[method])


@pytest.mark.parametrize(
    "dtype", ["U5", "S5", "complex64", "datetime64[s]", "timedelta64[s]", ">f8", "V8", "i2"]
)
@pytest.mark.parametrize("arg", [0, 1, 2])
def test_other_dtypes_are_type_errors(
    native: NativeModel, want: dict[str, np.ndarray], dtype: str, arg: int
) -> None:
    """Strings, complex, dates, durations, raw bytes: TypeError naming the argument."""
    args: list[Any] = [IDS, MASK, TYPES]
    args[arg] = np.zeros(IDS.shape, dtype=dtype)
    name = ("input_ids", "attention_mask", "token_type_ids")[arg]
    with pytest.raises(TypeError, match=f"{name}.*int32 or int64"):
        native.encode(*args)
    np.testing.assert_array_equal(native.encode(IDS, MASK, TYPES), want["encode"])


@pytest.mark.parametrize("shape", [(0, 0), (0, 1), (0, 512)])
def test_zero_rows(native: NativeModel, shape: tuple[int, int]) -> None:
    empty = np.zeros(shape, dtype=np.int64)
    assert native.encode(empty, empty).shape == (0, 384)
    assert native.token_embeddings(empty, empty).shape == (0, shape[1], 384)


@pytest.mark.parametrize("normalize", [None, True, False])
def test_rows_that_are_all_padding(native: NativeModel, normalize: bool | None) -> None:
    """Every row masked out: zero vectors (never NaN), and the other rows are unaffected."""
    mask = MASK.copy()
    mask[0] = 0
    out = native.encode(IDS, mask, normalize=normalize)
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out[0], np.zeros(384, dtype=np.float32))
    alone = native.encode(IDS[1:], MASK[1:], normalize=normalize)
    np.testing.assert_allclose(out[1], alone[0], atol=1e-6)
    everything_masked = native.encode(IDS, np.zeros_like(MASK), normalize=normalize)
    np.testing.assert_array_equal(everything_masked, np.zeros((2, 384), dtype=np.float32))
    assert np.isfinite(native.token_embeddings(IDS, np.zeros_like(MASK))).all()


_HUGE_BATCHES = """
import resource
import numpy as np
from minilm_fast import Encoder

# A regression must fail this process, not the machine: cap its address space at 4 GiB.
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
native = Encoder(MODEL, threads=2).native
outcomes = {}
cases = {
    # 40,000 x 256 int32: 40 MB of ids, ~400 GB of activations.
    "dense": np.full((40_000, 256), 1000, dtype=np.int32),
    # 10 million rows of 512, broadcast: 4 KB of ids, reading them alone would take 20 GB.
    "broadcast": np.broadcast_to(np.full((1, 512), 1000, dtype=np.int64), (10_000_000, 512)),
}
for name, ids in cases.items():
    for method in ("encode", "token_embeddings"):
        try:
            getattr(native, method)(ids, np.broadcast_to(np.ones(1, np.int64), ids.shape))
            outcomes[f"{name}/{method}"] = "computed"
        except ValueError as exc:
            outcomes[f"{name}/{method}"] = str(exc)
ids = np.full((4, 16), 1000, dtype=np.int64)
outcomes["then"] = native.encode(ids, np.ones_like(ids)).shape[0]
emit(outcomes=outcomes, peak_mb=peak_mb())
"""


@pytest.mark.timeout(120)
def test_batch_too_large_for_memory_is_value_error(model_dir: Path, record_property: Any) -> None:
    """A batch whose activations cannot fit is refused before anything is allocated.

    Before, a (40000, 256) int32 array (40 MB) made the forward pass allocate until the kernel's
    OOM killer ended the process.
    """
    out = run_python(f"MODEL = {str(model_dir)!r}\n" + _HUGE_BATCHES, timeout=110).result
    for case, outcome in out["outcomes"].items():
        if case != "then":
            assert "split it into batches of at most" in outcome, (case, outcome)
            assert "GiB of working memory" in outcome
    assert out["outcomes"]["then"] == 4
    assert out["peak_mb"] < 1024, out
    record(record_property, cases=4, fault="batches needing ~400 GB and ~20 TB of activations")


def _flip_forever(
    target: np.ndarray, states: list[np.ndarray], stop: threading.Event, copies: list[int]
) -> None:
    """Thread body: copy each state into ``target`` in turn (numpy releases the GIL while it
    copies) until ``stop``; count the copies in ``copies[0]``."""
    while not stop.is_set():
        np.copyto(target, states[copies[0] % len(states)])
        copies[0] += 1


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", METHODS)
def test_arrays_written_by_another_thread_during_the_call(
    native: NativeModel, method: str, record_property: Any
) -> None:
    """Another thread rewrites the ids while calls read them: no crash, never a bad read.

    What happens: the arrays are read once, while the call holds the GIL, into the engine's own
    copy, which is range-checked value by value; the forward pass never looks at them again.
    A writer that runs without the GIL (numpy's copy does) can land in the middle of that read,
    so a row may mix old and new ids, but every id used was checked: either the call computes
    from ids that were in the array (finite, unit-length rows), or, when it read an
    out-of-range value being written, raises ValueError naming input_ids.
    """
    rng = np.random.default_rng(3)
    good = [rng.integers(1000, 2000, size=(16, 32)) for _ in range(2)]
    bad = np.full((16, 32), 10**9)  # outside the vocabulary
    ids = good[0].copy()
    mask = np.ones_like(ids)
    outcomes = {"computed": 0, "refused": 0}
    for states in (good, [good[0], bad]):
        stop = threading.Event()
        writer_copies = [0]
        writer = threading.Thread(target=_flip_forever, args=(ids, states, stop, writer_copies))
        writer.start()
        try:
            for _ in range(20):
                try:
                    out = getattr(native, method)(ids, mask)
                except ValueError as exc:
                    assert "input_ids" in str(exc) and states[1] is bad, exc
                    outcomes["refused"] += 1
                    continue
                outcomes["computed"] += 1
                assert np.isfinite(out).all()
                if method == "encode":
                    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
        finally:
            stop.set()
            writer.join(timeout=30)
        assert writer_copies[0] > 0
    assert outcomes["computed"] > 0
    ids = good[0].copy()
    np.testing.assert_array_equal(
        getattr(native, method)(ids, mask), getattr(native, method)(good[0], mask)
    )
    record(record_property, cases=40, fault="arrays rewritten by another thread while read")
