"""Many callers at once: concurrent ``encode`` (threads) and ``aencode`` (coroutines) calls share
engine batches, and every caller gets exactly its own rows, in its own options.

The engine is made busy on purpose (a call of long texts runs first), so that the calls made
meanwhile must queue; ``Encoder.on_batch`` shows which calls shared a batch. Every expected
value is the same Encoder's plain serial ``encode`` of the same input.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import pathlib
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from support.event_loop import while_ticking

import minilm_fast._coalescing as coalescing_module
from minilm_fast import BatchInfo, Encoder, MiniLMError

SENTENCES = [
    "A man is playing a guitar.",
    "A woman is slicing an onion.",
    "Two dogs run across a snowy field.",
    "The stock market fell sharply on Monday.",
    "How do I reset my password?",
    "Le chat dort sur le canapé.",
    "",
    "CJK 中文 and emoji 😀 mixed in.",
]
#: Long enough that one call of them keeps the engine busy for a while (~0.1-0.3 s).
BUSY = ["The committee reviewed the annual budget and approved new funding. " * 30] * 24

#: Per-caller options that change the rows (each checked against a serial encode).
OPTIONS: list[dict[str, Any]] = [
    {},
    {"truncate_dim": 64},
    {"truncate_dim": 32, "normalize_embeddings": True},
    {"normalize_embeddings": True},
    {"prompt": "query: "},
    {"precision": "binary"},
    {"convert_to_numpy": False},
    {"return_truncation": True},
]


@pytest.fixture(scope="module")
def coalescing(model_dir: pathlib.Path) -> Iterator[Encoder]:
    """An Encoder of this module's own, so its batches are not shared with other tests."""
    encoder = Encoder(model_dir, threads=2)
    yield encoder
    encoder.on_batch = None


@pytest.fixture
def batches(coalescing: Encoder) -> Iterator[list[BatchInfo]]:
    """Every batch the module's Encoder runs during the test."""
    seen: list[BatchInfo] = []
    lock = threading.Lock()

    def listen(info: BatchInfo) -> None:
        with lock:
            seen.append(info)

    coalescing.on_batch = listen
    yield seen
    coalescing.on_batch = None


def _texts(index: int) -> str | list[str]:
    """Caller `index`'s input: distinct texts, one str or a short list."""
    base = SENTENCES[index % len(SENTENCES)] + f" (caller {index})"
    return base if index % 3 else [base, f"second text of caller {index}"][: 1 + index % 2]


def _same(got: Any, want: Any) -> None:
    if isinstance(want, tuple):  # return_truncation
        _same(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    elif isinstance(want, list):  # convert_to_numpy=False
        assert isinstance(got, list) and len(got) == len(want)
        for row, expected in zip(got, want):
            np.testing.assert_allclose(row, expected, atol=1e-6)
    else:
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), atol=1e-6)


def _busy_engine(encoder: Encoder) -> threading.Thread:
    """Start a long call on another thread and return once it holds the engine."""
    started = threading.Event()

    def hold() -> None:
        started.set()
        encoder.encode(BUSY)

    holder = threading.Thread(target=hold)
    holder.start()
    started.wait()
    time.sleep(0.02)  # into the engine call
    return holder


def test_threads_share_batches_and_get_their_own_rows(
    coalescing: Encoder, batches: list[BatchInfo]
) -> None:
    callers = 48
    want = [coalescing.encode(_texts(i), **OPTIONS[i % len(OPTIONS)]) for i in range(callers)]
    batches.clear()
    barrier = threading.Barrier(callers)

    def call(index: int) -> Any:
        barrier.wait()
        return coalescing.encode(_texts(index), **OPTIONS[index % len(OPTIONS)])

    holder = _busy_engine(coalescing)
    with ThreadPoolExecutor(callers) as pool:
        got = list(pool.map(call, range(callers)))
    holder.join()
    for index in range(callers):
        _same(got[index], want[index])
    shared = [info for info in batches if info.calls > 1]
    assert shared, f"no batch held two calls: {[info.calls for info in batches]}"
    # every text ran exactly once: the busy call's 24 and each caller's
    texts = sum(1 if isinstance(_texts(i), str) else len(_texts(i)) for i in range(callers))
    assert sum(info.texts for info in batches) == texts + len(BUSY)
    assert all(wait >= 0 for info in batches for wait in info.waits)
    assert max(max(info.waits) for info in shared) > 0


def test_coroutines_share_batches_without_a_thread_each(
    coalescing: Encoder, batches: list[BatchInfo]
) -> None:
    callers = 64
    want = [coalescing.encode(_texts(i), **OPTIONS[i % len(OPTIONS)]) for i in range(callers)]
    batches.clear()
    threads_seen: list[int] = []

    async def main() -> list[Any]:
        threads_before = threading.active_count()
        tasks = [
            asyncio.create_task(coalescing.aencode(_texts(i), **OPTIONS[i % len(OPTIONS)]))
            for i in range(callers)
        ]
        await asyncio.sleep(0)  # every call is queued now
        threads_seen.append(threading.active_count() - threads_before)
        return await asyncio.gather(*tasks)

    got = asyncio.run(main())
    for index in range(callers):
        _same(got[index], want[index])
    assert threads_seen[0] <= 1, f"{threads_seen[0]} threads for {callers} queued coroutines"
    assert max(info.calls for info in batches) > 1
    assert len(batches) < callers


def test_one_failing_caller_fails_alone(coalescing: Encoder) -> None:
    """Bad input is refused in its caller (before it queues), an engine error in a shared
    batch reaches only the call it belongs to, and the others get their rows."""
    want = [coalescing.encode(_texts(i)) for i in range(12)]

    async def bad_input() -> list[Any]:
        calls: list[Any] = [coalescing.aencode(_texts(i)) for i in range(12)]
        calls.insert(5, coalescing.aencode(["fine", 42]))  # type: ignore[list-item]
        calls.insert(7, coalescing.aencode("text", truncate_dim=10_000))
        return await asyncio.gather(*calls, return_exceptions=True)

    got = asyncio.run(bad_input())
    assert isinstance(got[5], TypeError) and "sentences[1] must be a str" in str(got[5])
    assert isinstance(got[7], ValueError) and "truncate_dim" in str(got[7])
    rest = [result for index, result in enumerate(got) if index not in (5, 7)]
    for result, expected in zip(rest, want):
        _same(result, expected)


def test_an_engine_error_in_a_shared_batch_reaches_its_call_only(
    coalescing: Encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine is wrapped to fail any batch holding one poisoned token id (what a broken
    model file would do for some input): the batch is rerun call by call."""
    real = coalescing.native
    poison = coalescing._tokenizer.word_pieces(["xylophone"])[0][0]
    engine_calls: list[int] = []

    class Failing:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def encode_ragged(self, ids: np.ndarray, offsets: np.ndarray, **kwargs: Any) -> Any:
            engine_calls.append(len(offsets) - 1)
            if poison in ids[offsets[0] : offsets[-1]]:
                raise MiniLMError("poisoned batch")
            return real.encode_ragged(ids, offsets, **kwargs)

    want = [coalescing.encode(_texts(i)) for i in range(10)]
    monkeypatch.setattr(coalescing._coalescer, "_native", Failing())
    holder = _busy_engine(coalescing)

    async def main() -> list[Any]:
        calls = [coalescing.aencode(_texts(i)) for i in range(10)]
        calls.insert(4, coalescing.aencode("a xylophone solo"))
        return await asyncio.gather(*calls, return_exceptions=True)

    got = asyncio.run(main())
    holder.join()
    assert isinstance(got[4], MiniLMError) and "poisoned" in str(got[4])
    for result, expected in zip(got[:4] + got[5:], want):
        _same(result, expected)
    assert max(engine_calls) > 1, "the poisoned call never shared a batch"


def test_cancelled_coroutine_texts_leave_the_queue(
    coalescing: Encoder, batches: list[BatchInfo]
) -> None:
    want = coalescing.encode("still wanted")
    batches.clear()

    async def main() -> tuple[Any, bool]:
        doomed = asyncio.create_task(coalescing.aencode(["never run 1", "never run 2"]))
        kept = asyncio.create_task(coalescing.aencode("still wanted"))
        await asyncio.sleep(0)  # both queued behind the busy call
        doomed.cancel()
        result = await kept
        try:
            await doomed
        except asyncio.CancelledError:
            return result, True
        return result, False

    holder = _busy_engine(coalescing)
    result, cancelled = asyncio.run(main())
    holder.join()
    assert cancelled
    _same(result, want)
    # the busy call's texts and the kept one: the cancelled texts never reached the engine
    assert sum(info.texts for info in batches) == len(BUSY) + 1


def test_a_lone_call_runs_at_once_on_its_own_thread(
    coalescing: Encoder, batches: list[BatchInfo]
) -> None:
    threads: list[int] = []

    def listen(info: BatchInfo) -> None:
        threads.append(threading.get_ident())
        batches.append(info)

    coalescing.on_batch = listen
    coalescing.encode(["alone", "with a friend"])
    assert threads == [threading.get_ident()]
    assert batches[-1].calls == 1 and batches[-1].waits == (0.0,) and batches[-1].texts == 2
    assert batches[-1].tokens == sum(coalescing.count_tokens(["alone", "with a friend"]))


def test_batches_keep_to_the_token_budget(model_dir: pathlib.Path) -> None:
    budget = 96
    encoder = Encoder(model_dir, threads=2, max_batch_tokens=budget)
    seen: list[BatchInfo] = []
    encoder.on_batch = seen.append
    texts = [f"caller {i} says a short sentence" for i in range(40)]
    want = encoder.encode(texts)

    async def main() -> list[Any]:
        return await asyncio.gather(*(encoder.aencode(text) for text in texts))

    got = asyncio.run(main())
    np.testing.assert_allclose(np.stack(got), want, atol=1e-6)
    longest = max(encoder.count_tokens(texts))
    queued = [info for info in seen[1:] if info.calls > 1]
    assert queued and all(info.texts * longest <= budget for info in queued)


def test_batches_hold_at_most_the_oldest_calls_batch_size(
    coalescing: Encoder, batches: list[BatchInfo]
) -> None:
    texts = [f"caller {i} asks a short question" for i in range(24)]
    want = coalescing.encode(texts)
    batches.clear()

    async def main() -> list[Any]:
        return await asyncio.gather(*(coalescing.aencode(t, batch_size=4) for t in texts))

    holder = _busy_engine(coalescing)
    got = asyncio.run(main())
    holder.join()
    np.testing.assert_allclose(np.stack(got), want, atol=1e-6)
    queued = [info for info in batches if info.texts != len(BUSY)]
    assert max(info.texts for info in queued) == 4, [info.texts for info in queued]


def test_coalesce_false_runs_every_call_alone(model_dir: pathlib.Path) -> None:
    encoder = Encoder(model_dir, threads=2, coalesce=False)
    seen: list[BatchInfo] = []
    encoder.on_batch = seen.append
    texts = [f"text {i}" for i in range(16)]
    want = encoder.encode(texts)
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(encoder.encode, texts))

    async def main() -> list[Any]:
        return await asyncio.gather(*(encoder.aencode(text) for text in texts))

    np.testing.assert_allclose(np.stack(got), want, atol=1e-6)
    np.testing.assert_allclose(np.stack(asyncio.run(main())), want, atol=1e-6)
    assert all(info.calls == 1 for info in seen)


def test_encoder_options_are_checked(model_dir: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="max_batch_tokens must be at least 1"):
        Encoder(model_dir, max_batch_tokens=0)
    with pytest.raises(TypeError, match="max_batch_tokens must be an int"):
        Encoder(model_dir, max_batch_tokens=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="coalesce must be a bool"):
        Encoder(model_dir, coalesce="yes")  # type: ignore[arg-type]


def test_a_listener_that_raises_does_not_fail_the_calls(
    coalescing: Encoder, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(info: BatchInfo) -> None:
        raise RuntimeError("listener bug")

    coalescing.on_batch = broken
    try:
        got = coalescing.encode("listener")
    finally:
        coalescing.on_batch = None
    assert got.shape == (384,)
    assert "on_batch raised" in caplog.text


def test_idle_worker_exits_and_a_new_one_starts(
    coalescing: Encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(coalescing_module, "_WORKER_IDLE_SECONDS", 0.05)
    want = coalescing.encode("after the worker left")

    def workers() -> int:
        return sum(t.name == "minilm_fast-coalescer" for t in threading.enumerate())

    asyncio.run(coalescing.aencode("start a worker"))
    deadline = time.monotonic() + 10
    while workers() and time.monotonic() < deadline:
        time.sleep(0.02)
    # the default idle spell may keep workers of earlier tests alive; this one's left
    assert not coalescing._coalescer._worker_running
    _same(asyncio.run(coalescing.aencode("after the worker left")), want)


def test_a_dropped_encoder_lets_its_worker_go(
    model_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker holds its Encoder weakly while idle: dropping the Encoder frees it."""
    monkeypatch.setattr(coalescing_module, "_WORKER_IDLE_SECONDS", 0.05)
    encoder = Encoder(model_dir, threads=1)
    asyncio.run(encoder.aencode("one call starts the worker"))
    gone = threading.Event()
    import weakref

    weakref.finalize(encoder._coalescer, gone.set)
    del encoder
    gc.collect()
    assert gone.wait(10), "the Coalescer outlived its Encoder"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.timeout(120)
def test_fork_while_calls_are_queued(model_dir: pathlib.Path) -> None:
    """A child forked while the parent's worker thread runs batches starts with an idle queue."""
    encoder = Encoder(model_dir, threads=2)
    want = encoder.encode(SENTENCES)
    stop = threading.Event()

    async def load() -> None:
        while not stop.is_set():
            await asyncio.gather(*(encoder.aencode(text) for text in SENTENCES))

    runner = threading.Thread(target=lambda: asyncio.run(load()))
    runner.start()
    try:
        time.sleep(0.2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # forking with threads, 3.12+
            pid = os.fork()
        if pid == 0:
            code = 4
            try:
                got = np.stack(asyncio.run(_gather(encoder, SENTENCES)))
                code = 0 if np.allclose(got, want, atol=1e-6) else 3
            finally:
                os._exit(code)
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung")
    finally:
        stop.set()
        runner.join(60)
    assert status is not None and os.waitstatus_to_exitcode(status) == 0


async def _gather(encoder: Encoder, texts: list[str]) -> list[Any]:
    return await asyncio.gather(*(encoder.aencode(text) for text in texts))


def test_aencode_refuses_what_encode_refuses(coalescing: Encoder) -> None:
    with pytest.raises(TypeError, match="got an unexpected keyword argument 'bogus'"):
        asyncio.run(coalescing.aencode("text", bogus=1))  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        asyncio.run(coalescing.aencode("text", batch_size=0))


def test_aencode_of_a_text_to_chunk_keeps_the_loop_running(model_dir: pathlib.Path) -> None:
    """A long text in chunk mode is tokenized and computed off the event loop."""
    encoder = Encoder(model_dir, threads=2, long_text="chunk")
    text = "The committee reviewed the annual budget and approved new funding. " * 2000
    want = encoder.encode(text)

    got, ticks = asyncio.run(while_ticking(encoder.aencode(text)))
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert ticks >= 10, f"the event loop ticked only {ticks} times"


def test_cancelling_a_large_aencode_waits_for_its_thread(coalescing: Encoder) -> None:
    """A call too large to queue runs in a thread; its cancellation returns once the thread
    let go of the engine, so texts counted as in flight really are."""
    texts = [f"document {i}: " + "words of a longer text " * 12 for i in range(400)]
    started = time.perf_counter()
    coalescing.encode(texts)
    whole = time.perf_counter() - started

    async def main() -> float:
        task = asyncio.create_task(coalescing.aencode(texts))
        await asyncio.sleep(0.02)
        began = time.perf_counter()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.perf_counter() - began

    assert asyncio.run(main()) > whole / 3


def test_a_progress_bar_at_info_level_is_shown_for_small_calls(
    coalescing: Encoder, capsys: pytest.CaptureFixture[str]
) -> None:
    logger = logging.getLogger("minilm_fast")
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        coalescing.encode(["a small call", "at INFO level"])
    finally:
        logger.setLevel(level)
    assert "Encoding" in capsys.readouterr().err


def test_no_worker_thread_fails_the_queued_calls_not_the_process(
    model_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoder = Encoder(model_dir, threads=1)

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    with monkeypatch.context() as patch:
        patch.setattr(threading.Thread, "start", refuse)
        with pytest.raises(RuntimeError, match="could not run: no worker thread could start"):
            asyncio.run(encoder.aencode("queued, with no worker to run it"))
    # nothing is left owned or queued: the next calls run
    assert encoder.encode("after").shape == (384,)
    assert asyncio.run(encoder.aencode("after, async")).shape == (384,)
