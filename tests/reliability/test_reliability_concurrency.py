"""Reliability under load: threads, fork, worker processes, interrupts; and determinism.

One Encoder shared by 8 Python threads gives exactly the serial results with the GIL released;
a process forked after the Encoder was used can encode (the parent's worker threads do not exist
in the child, which used to wait for them forever); multiprocessing works with the fork and
spawn start methods; a KeyboardInterrupt between batches leaves the Encoder usable; and the
same input gives the same bits run after run, within 1e-6 across thread counts and batches.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import multiprocessing
import os
import pathlib
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from support.reliability import record, run_python

import minilm_fast._pipeline as pipeline_module
from minilm_fast import Encoder

SHORT = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "",
    "CJK 中文 and emoji 😀 mixed in.",
]
LONG = "The committee reviewed the annual budget and approved new funding. " * 40

#: Python 3.12+ warns when a process with threads forks (the engine's workers are threads).
FORK_WARNING = r"This process \(pid=\d+\) is multi-threaded, use of fork\(\) may lead to deadlocks"


@pytest.fixture(autouse=True)
def _category(record_property: Any) -> None:
    record(record_property, category="concurrency")


def _inputs(seed: int) -> list[str]:
    """A different mix of short, empty and long texts for each thread."""
    rng = np.random.default_rng(seed)
    texts = [SHORT[i] + f" #{seed}" for i in rng.integers(0, len(SHORT), 6)]
    if seed % 2:
        texts.append(LONG + str(seed))
    return texts


def _tick(stop: threading.Event, ticks: list[float]) -> None:
    while not stop.is_set():
        ticks.append(time.perf_counter())
        time.sleep(0.0005)


@pytest.mark.timeout(300)
def test_eight_threads_share_one_encoder(encoder: Encoder, record_property: Any) -> None:
    """8 threads, one Encoder, different inputs: bit for bit the serial results, no deadlock.

    The GIL is measured to be released: a ticker thread keeps recording times inside the
    middle of encode calls, which it could not do if a call held the GIL while it computes.
    """
    threads, rounds = 8, 3
    inputs = [_inputs(seed) for seed in range(threads)]
    serial = [encoder.encode(texts) for texts in inputs]
    intervals: list[tuple[float, float]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def work(index: int) -> list[npt.NDArray[np.float32]]:
        barrier.wait(timeout=60)
        results = []
        for _ in range(rounds):
            start = time.perf_counter()
            results.append(encoder.encode(inputs[index]))
            with lock:
                intervals.append((start, time.perf_counter()))
        return results

    stop = threading.Event()
    ticks: list[float] = []
    ticker = threading.Thread(target=_tick, args=(stop, ticks))
    ticker.start()
    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            results = list(pool.map(work, range(threads), timeout=240))
    finally:
        stop.set()
        ticker.join()
    for index, runs in enumerate(results):
        for got in runs:
            np.testing.assert_array_equal(got, serial[index])
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    in_flight = max(itertools.accumulate(step for _, step in events))
    inside = sum(
        any(s + 0.1 * (e - s) < t < e - 0.1 * (e - s) for s, e in intervals if e - s > 0.02)
        for t in ticks
    )
    assert in_flight >= 4, f"at most {in_flight} calls were ever in flight at once"
    assert inside >= 5, f"only {inside} ticks of another thread ran inside encode calls"
    record(record_property, cases=threads * rounds, load=f"{threads} threads x {rounds} calls")


@pytest.mark.timeout(300)
def test_threads_with_their_own_encoders_and_the_native_call(
    model_dir: pathlib.Path, encoder: Encoder, record_property: Any
) -> None:
    """Mixed load: Encoder.encode, token embeddings and the native call from 8 threads."""
    other = Encoder(model_dir, threads=1)
    ids = np.array([[101, 7592, 2088, 102], [101, 2088, 102, 0]], dtype=np.int64)
    mask = (ids != 0).astype(np.int64)
    want = {
        "encode": encoder.encode(SHORT),
        "other": other.encode(SHORT),
        "native": encoder.native.encode(ids, mask),
        "tokens": encoder.encode(SHORT, output_value="token_embeddings"),
    }

    def work(kind: str) -> bool:
        for _ in range(5):
            if kind == "encode":
                np.testing.assert_array_equal(encoder.encode(SHORT), want[kind])
            elif kind == "other":
                np.testing.assert_array_equal(other.encode(SHORT), want[kind])
            elif kind == "native":
                np.testing.assert_array_equal(encoder.native.encode(ids, mask), want[kind])
            else:
                got = encoder.encode(SHORT, output_value="token_embeddings")
                for g, w in zip(got, want[kind]):
                    np.testing.assert_array_equal(g, w)
        return True

    kinds = ["encode", "other", "native", "tokens"] * 2
    with ThreadPoolExecutor(max_workers=len(kinds)) as pool:
        assert all(pool.map(work, kinds, timeout=240))
    record(record_property, cases=len(kinds) * 5, load="8 threads x 5 calls, 2 encoders")


# --- fork and worker processes ----------------------------------------------------------------


def _fork_and_encode(encoder: Encoder, texts: list[str], want: np.ndarray) -> int:
    """Fork; the child encodes ``texts`` and exits 0 if it got ``want`` (3: other vectors,
    4: an exception). Returns the child's exit code, -1 if it had not finished within 60 s."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", FORK_WARNING, DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 4
        try:
            got = encoder.encode(texts)
            native = encoder.native.encode(np.array([[101, 102]]), np.array([[1, 1]]))
            code = 0 if np.array_equal(got, want) and np.isfinite(native).all() else 3
        finally:
            os._exit(code)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return -1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.timeout(180)
@pytest.mark.parametrize("threads", [1, 2])
def test_fork_after_use(model_dir: pathlib.Path, threads: int, record_property: Any) -> None:
    """A child forked after the Encoder computed can encode, with the same results.

    Before, the child waited forever for the parent's worker threads (fork copies only the
    calling thread): every call in the child hung.
    """
    encoder = Encoder(model_dir, threads=threads)
    want = encoder.encode(SHORT)
    assert _fork_and_encode(encoder, SHORT, want) == 0
    # The parent is unaffected, and a grandchild-free second fork works as well.
    np.testing.assert_array_equal(encoder.encode(SHORT), want)
    assert _fork_and_encode(encoder, SHORT, want) == 0
    record(record_property, cases=2, fault="os.fork() after the engine's threads started")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.timeout(180)
def test_fork_while_another_thread_is_encoding(
    model_dir: pathlib.Path, record_property: Any
) -> None:
    """Fork while the engine's workers are busy (their locks may be held): the child works."""
    encoder = Encoder(model_dir, threads=2)
    want = encoder.encode(SHORT)
    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            encoder.encode([LONG] * 8)

    worker = threading.Thread(target=busy)
    worker.start()
    try:
        time.sleep(0.3)
        codes = [_fork_and_encode(encoder, SHORT, want) for _ in range(3)]
    finally:
        stop.set()
        worker.join(timeout=120)
    assert codes == [0, 0, 0]
    record(record_property, cases=3, fault="os.fork() while another thread is encoding")


#: The Encoder the fork-started workers inherit (set by the test before the pool starts).
_INHERITED: Encoder | None = None


def _encode_inherited(text: str) -> npt.NDArray[np.float32]:
    assert _INHERITED is not None
    return _INHERITED.encode(text)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_multiprocessing_pools(
    encoder: Encoder, method: str, record_property: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pools of worker processes: fork workers use the inherited Encoder, spawn workers get
    it pickled (settings travel, the weights are reloaded by path).

    Python 3.12+ warns (DeprecationWarning) when a process that has threads forks; the
    engine's workers are threads, so with "fork" the warning is expected there and only there.
    """
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} start method here")
    monkeypatch.setattr(sys.modules[__name__], "_INHERITED", encoder)
    want = encoder.encode(SHORT)
    context = multiprocessing.get_context(method)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with context.Pool(2) as pool:
            if method == "fork":
                rows = pool.map(_encode_inherited, SHORT, chunksize=1)
            else:
                rows = pool.map(encoder.encode, SHORT, chunksize=1)
            pool.close()
            pool.join()
    np.testing.assert_allclose(np.stack(rows), want, atol=1e-6)
    fork_warnings = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    others = [w for w in caught if w not in fork_warnings]
    assert not others, [str(w.message) for w in others]
    if method == "fork" and sys.version_info >= (3, 12):
        assert fork_warnings, "Python 3.12+ should warn about forking a threaded process"
    else:
        assert not fork_warnings, [str(w.message) for w in fork_warnings]
    record(record_property, cases=len(SHORT), load=f"multiprocessing {method} pool of 2")


# --- interrupts -------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_keyboard_interrupt_from_the_input_stream(
    encoder: Encoder, monkeypatch: pytest.MonkeyPatch, record_property: Any
) -> None:
    """Ctrl-C while a long encode is reading its input: the next call is exact."""
    want = encoder.encode(SHORT)
    monkeypatch.setattr(pipeline_module, "WINDOW_TEXTS", 8)

    def stream() -> Iterator[str]:
        for i, text in enumerate(itertools.cycle(SHORT)):
            if i == 50:
                raise KeyboardInterrupt
            yield text

    with pytest.raises(KeyboardInterrupt):
        encoder.encode(stream(), batch_size=4)
    with pytest.raises(KeyboardInterrupt):
        for _ in encoder.encode_iter(stream(), batch_size=4):
            pass
    np.testing.assert_array_equal(encoder.encode(SHORT), want)
    record(record_property, cases=2, fault="KeyboardInterrupt from the input between batches")


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs signal.pthread_kill")
@pytest.mark.timeout(300)
def test_keyboard_interrupt_by_signal_during_a_long_encode(
    encoder: Encoder, record_property: Any
) -> None:
    """SIGINT (Ctrl-C) while the engine computes: KeyboardInterrupt at the next batch boundary,
    then the Encoder is usable and exact.

    Python runs signal handlers in the main thread between bytecodes, so the interrupt lands
    when a native batch returns; the engine's workers are never left mid-batch. A handler of
    our own raises only while the encode is running, so a late signal cannot hit pytest.
    """
    want = encoder.encode(SHORT)
    texts = [f"{LONG} {i}" for i in range(200)]  # ~20 s of work: the signal lands inside it
    armed = threading.Event()
    interrupted_at: list[float] = []

    def handler(signum: int, frame: Any) -> None:
        if armed.is_set():
            interrupted_at.append(time.perf_counter())
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        for delay in (0.5, 1.5, 3.0):
            armed.set()
            timer = threading.Timer(
                delay, signal.pthread_kill, args=(threading.main_thread().ident, signal.SIGINT)
            )
            start = time.perf_counter()
            timer.start()
            try:
                encoder.encode(texts, batch_size=8)
            except KeyboardInterrupt:
                pass
            finally:
                armed.clear()
                timer.join()
            if interrupted_at and interrupted_at[-1] - start < 60:
                break
    finally:
        signal.signal(signal.SIGINT, previous)
    assert interrupted_at, "the signal never interrupted the encode"
    np.testing.assert_array_equal(encoder.encode(SHORT), want)
    record(record_property, fault="SIGINT during a long encode")


# --- determinism ------------------------------------------------------------------------------

_DIGEST = """
import hashlib, json, sys
from minilm_fast import Encoder
texts = json.loads(sys.argv[2])
encoder = Encoder(sys.argv[1], threads=2)
emit(digest=hashlib.sha256(encoder.encode(texts).tobytes()).hexdigest())
"""


@pytest.mark.timeout(300)
def test_same_input_same_bits_run_after_run(
    encoder: Encoder, model_dir: pathlib.Path, record_property: Any
) -> None:
    """The same texts in the same batch: identical bytes on every call and in fresh processes."""
    record(record_property, category="determinism", cases=12)
    texts = [*SHORT, LONG]
    first = encoder.encode(texts)
    for _ in range(9):
        np.testing.assert_array_equal(encoder.encode(texts), first)
    digest = hashlib.sha256(first.tobytes()).hexdigest()
    for _ in range(2):
        out = run_python(_DIGEST, timeout=120, args=(str(model_dir), json.dumps(texts))).result
        assert out["digest"] == digest


@pytest.mark.timeout(300)
def test_thread_count_and_batch_composition_change_little(
    encoder: Encoder, model_dir: pathlib.Path, record_property: Any
) -> None:
    """Other thread counts, batch sizes, neighbours, orders and duplicates: within 1e-6."""
    texts = [*SHORT, LONG, LONG[:200]]
    base = encoder.encode(texts)
    variants: dict[str, npt.NDArray[np.float32]] = {}
    for threads in (1, 3):
        variants[f"threads={threads}"] = Encoder(model_dir, threads=threads).encode(texts)
    for batch_size in (1, 2, 5, 64):
        variants[f"batch_size={batch_size}"] = encoder.encode(texts, batch_size=batch_size)
    variants["alone"] = np.stack([encoder.encode(t) for t in texts])
    order = np.random.default_rng(0).permutation(len(texts))
    variants["shuffled"] = encoder.encode([texts[i] for i in order])[np.argsort(order)]
    crowd = [*texts, *(f"neighbour {i} " * (i % 30) for i in range(100))]
    variants["with-neighbours"] = encoder.encode(crowd)[: len(texts)]
    variants["duplicated"] = encoder.encode(texts * 3)[len(texts) : 2 * len(texts)]
    worst = {name: float(np.abs(got - base).max()) for name, got in variants.items()}
    print(worst)
    assert max(worst.values()) <= 1e-6, worst
    record(record_property, category="determinism", cases=len(variants))
