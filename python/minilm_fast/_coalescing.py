"""Concurrent calls share engine batches: the many-callers half of the data path.

In a service, requests arrive together: a thread or a coroutine per request, each embedding a
query or a few texts. Run one by one, each call streams all the weights through the cache for
a handful of tokens, and concurrent calls only interleave on the engine's workers. Here a call
small enough for one batch (at most its ``batch_size`` texts) is tokenized by its caller and
then:

- if the engine is idle, it runs at once, on the caller's own thread: a lone caller never
  waits for a timer or a hand-off, so at low load latency is what a direct call costs;
- if a batch is running, it queues. When the running batch finishes, what queued, oldest first,
  up to the oldest call's ``batch_size`` texts and ``max_batch_tokens`` word pieces (rows x
  longest row, as one engine call counts them), becomes the next batch: one length-sorted
  ragged engine call, run by the Encoder's one worker thread, whatever mix of threads and
  coroutines queued. Each call gets exactly its own rows back, in its own options (prompt,
  ``truncate_dim``, ``normalize_embeddings``; precision and the output type are applied by the
  caller afterwards).

An engine error in a shared batch reruns its calls one by one, so only the call whose input
fails gets the exception. A coroutine is resumed through its event loop when its rows are
ready (no thread per request); cancelling it withdraws its texts if their batch has not
started. The worker thread starts on first need, exits when idle (holding the Encoder only
weakly meanwhile) and is forgotten in a forked child, whose parent's threads do not exist.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Union

import numpy as np
import numpy.typing as npt

from ._chunking import token_rows
from ._minilm_fast import NativeModel
from ._options import Plan, checked_texts
from ._pipeline import WINDOW_TEXTS, encode_rows
from ._tokenize import SentenceTokenizer, TokenIds

__all__ = ["BatchInfo", "BatchListener", "Call", "Coalescer", "Steps"]

logger = logging.getLogger("minilm_fast")

#: How long the idle worker thread waits for work before it exits (a new one starts on need).
_WORKER_IDLE_SECONDS = 5.0


@dataclass(frozen=True)
class BatchInfo:
    """One engine batch of concurrent calls, as ``Encoder.on_batch`` receives it.

    Attributes:
        calls: the encode calls whose texts the batch held.
        texts: their texts (rows run).
        tokens: word pieces run, special tokens included.
        waits: seconds each call waited in the queue before the batch started (0.0 for a call
            that found the engine idle).
        seconds: the batch's time in the engine.
    """

    calls: int
    texts: int
    tokens: int
    waits: tuple[float, ...]
    seconds: float


BatchListener = Callable[[BatchInfo], None]


class Call:
    """One encode call's token rows, waiting for its embeddings (float32, one row per text).

    `notify` is how the batch's runner wakes the caller: an event for a thread, the event
    loop's thread-safe callback for a coroutine.
    """

    __slots__ = (
        "batch_size",
        "dim",
        "embeddings",
        "error",
        "notify",
        "queued_at",
        "rows",
        "truncated",
        "unit",
    )

    def __init__(
        self,
        rows: list[TokenIds],
        truncated: npt.NDArray[np.bool_],
        plan: Plan,
        output_dim: int,
    ) -> None:
        self.rows = rows
        self.truncated = truncated
        self.batch_size = plan.batch_size
        self.dim = plan.truncate_dim or output_dim
        self.unit = plan.unit
        self.queued_at = 0.0
        self.embeddings: npt.NDArray[np.float32] | None = None
        self.error: BaseException | None = None
        self.notify: Callable[[], object] = _nothing

    def result(self) -> npt.NDArray[np.float32]:
        if self.error is not None:
            raise self.error
        assert self.embeddings is not None, "a call is answered before its caller is woken"
        return self.embeddings


#: One encode call as steps (`Encoder._encode_steps`): it yields the engine work it needs, a
#: call to queue or a job to run, is sent back each result, and returns what `encode` returns.
Steps = Generator[Union[Call, Callable[[], Any]], Any, Any]


class Coalescer:
    """The queue in front of one NativeModel, and the rules of who runs the next batch."""

    def __init__(
        self,
        native: NativeModel,
        tokenizer: SentenceTokenizer,
        max_batch_tokens: int,
        *,
        enabled: bool = True,
    ) -> None:
        self._native = native
        self._tokenizer = tokenizer
        self.max_batch_tokens = max_batch_tokens
        # Off, every call runs on its caller's thread at once (concurrent calls interleave on
        # the engine's workers, as before coalescing existed).
        self.enabled = enabled
        self.on_batch: BatchListener | None = None
        self._reset()
        _LIVE.add(self)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._queue: deque[Call] = deque()
        # Who runs the engine now: None (idle), "caller" (a lone call on its own thread) or
        # "worker". Whoever finishes a batch with calls queued hands them to the worker.
        self._owner: str | None = None
        self._worker_running = False

    def prepare(self, sentences: object, plan: Plan) -> Call | None:
        """`sentences` as a call to queue, or None when it is not one batch's worth: more
        texts than `plan.batch_size`, not a str or list/tuple, or a long text to chunk."""
        cap = self._call_texts(plan)
        small = isinstance(sentences, (list, tuple)) and 0 < len(sentences) <= cap
        if not (small or isinstance(sentences, str)):
            return None
        texts = list(checked_texts(sentences))
        # Read only as far as truncation needs (a 10 MB text is not tokenized on an event
        # loop's thread); a text to chunk sends the whole call to the pipeline instead.
        parallel = plan.parallel and len(texts) > 1
        rows = token_rows(self._tokenizer, texts, plan.prompt, False, 0, parallel=parallel)
        if plan.long_text == "chunk" and rows.truncated.any():
            return None
        return Call(rows.ids, rows.truncated, plan, self._native.output_dim)

    @staticmethod
    def _call_texts(plan: Plan) -> int:
        """Most texts of a call that queues: one batch, and never more than the pipeline's
        window (a huge `batch_size` must not skip its windows and deduplication)."""
        return min(plan.batch_size, WINDOW_TEXTS)

    def run(self, call: Call) -> npt.NDArray[np.float32]:
        """`call`'s embeddings, computed on this thread if the engine is idle, else with the
        calls queued beside it."""
        if not self.enabled:
            self._compute([call], time.perf_counter())
            return call.result()
        alone = False
        try:
            with self._lock:
                if self._owner is None:
                    # `alone` first: an interrupt between the two lines may leave the engine
                    # to two runners for a moment (harmless), never to none (every call hangs).
                    alone = True
                    self._owner = "caller"
                else:
                    done = threading.Event()
                    call.notify = done.set  # before it is queued: the worker may answer at once
                    self._enqueue_locked(call)
            if alone:
                self._compute([call], time.perf_counter())
        finally:
            if alone:
                self._hand_on()
        if not alone:
            try:
                done.wait()
            except BaseException:  # an interrupt while waiting: the texts leave the queue
                self.withdraw(call)
                raise
        return call.result()

    async def run_async(self, call: Call) -> npt.NDArray[np.float32]:
        """`call`'s embeddings, computed by the worker thread while the event loop runs on."""
        if not self.enabled:
            return await asyncio.to_thread(self.run, call)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            try:
                loop.call_soon_threadsafe(_resolve, future)
            except RuntimeError:  # the loop closed while the call was computed
                pass

        call.notify = wake
        with self._lock:
            self._enqueue_locked(call)
        try:
            await future
        except asyncio.CancelledError:
            self.withdraw(call)
            raise
        return call.result()

    def drive(self, steps: Steps) -> Any:
        """Run `steps` on this thread: its calls through the queue, its jobs right here.
        (The steps resume right inside this frame: the TruncationWarning's stack level
        counts on it.)"""
        try:
            work = next(steps)
            while True:
                work = steps.send(self.run(work) if isinstance(work, Call) else work())
        except StopIteration as done:
            return done.value

    def _drive_from(self, steps: Steps, work: Call | Callable[[], Any]) -> Any:
        """`drive` for steps that already yielded `work` (the thread of `drive_async`)."""
        try:
            while True:
                work = steps.send(self.run(work) if isinstance(work, Call) else work())
        except StopIteration as done:
            return done.value

    async def drive_async(self, steps: Steps) -> Any:
        """Run `steps` without blocking the event loop: its calls through the worker; a job
        (a larger input) and what follows it (finishing a large result) in a thread of their
        own, which a cancellation waits for, so that whoever counts texts in flight (the
        server's queue bound) counts them until the engine has let go of them."""
        try:
            work = next(steps)
            while isinstance(work, Call):
                work = steps.send(await self.run_async(work))
        except StopIteration as done:
            return done.value
        job = asyncio.ensure_future(asyncio.to_thread(self._drive_from, steps, work))
        try:
            return await asyncio.shield(job)
        except asyncio.CancelledError:
            await asyncio.wait({job})
            raise

    def withdraw(self, call: Call) -> bool:
        """Take `call` out of the queue if its batch has not started; True if it was."""
        with self._lock:
            try:
                self._queue.remove(call)
            except ValueError:
                return False
            return True

    def _enqueue_locked(self, call: Call) -> None:
        call.queued_at = time.perf_counter()
        self._queue.append(call)
        if self._owner is None:
            self._give_to_worker_locked()

    def _give_to_worker_locked(self) -> None:
        self._owner = "worker"
        if self._worker_running:
            self._work.notify()
            return
        worker = threading.Thread(
            target=_worker_loop,
            args=(weakref.ref(self), self._work),
            name="minilm_fast-coalescer",
            daemon=True,
        )
        try:
            worker.start()
        except RuntimeError as exc:  # no thread to be had: interpreter shutdown, a thread limit
            self._owner = None
            self._fail_queued_locked(f"no worker thread could start ({exc})")
            return
        self._worker_running = True

    def _fail_queued_locked(self, why: str) -> None:
        """Answer every queued call with an error instead of leaving it waiting."""
        while self._queue:
            call = self._queue.popleft()
            call.error = RuntimeError(f"this encode call was queued and could not run: {why}")
            call.notify()

    def _hand_on(self) -> None:
        """The engine is free: the worker takes what queued meanwhile, or nobody owns it."""
        with self._lock:
            if self._queue:
                self._give_to_worker_locked()
            else:
                self._owner = None

    def _next_batch_locked(self) -> list[Call]:
        """The oldest calls whose rows fit in one batch: at most the oldest call's
        `batch_size` rows (texts per forward pass, 32 by default), and at most max_batch_tokens
        padded to the longest; at least one call, whatever its size.

        The row cap keeps batches where the engine is fastest (short sentences: 16-32 a batch
        ran 20-30% faster per text than 64) and bounds a queued call's wait: with 64 callers,
        two batches of 32 alternate, so a call waits for at most one batch before its own."""
        first = self._queue.popleft()
        batch = [first]
        rows, longest = len(first.rows), max(map(len, first.rows))
        while self._queue:
            following = self._queue[0]
            more_rows = rows + len(following.rows)
            more_longest = max(longest, *map(len, following.rows))
            if more_rows > first.batch_size or more_rows * more_longest > self.max_batch_tokens:
                break
            batch.append(self._queue.popleft())
            rows, longest = more_rows, more_longest
        return batch

    def _compute(self, calls: list[Call], started: float) -> None:
        """Run `calls` as one engine batch and answer each; an engine error reruns them one
        by one so that it reaches only the call it belongs to."""
        try:
            answers = self._embed(calls)
        except Exception as exc:
            if len(calls) > 1:
                for call in calls:
                    self._compute([call], time.perf_counter())
                return
            calls[0].error = exc
        except BaseException as exc:  # an interrupt on a caller's thread: nobody waits forever
            for call in calls:
                call.error = exc
                call.notify()
            raise
        else:
            for call, embeddings in zip(calls, answers):
                call.embeddings = embeddings
        seconds = time.perf_counter() - started
        for call in calls:
            call.notify()
        self._report(calls, started, seconds)

    def _embed(self, calls: list[Call]) -> list[npt.NDArray[np.float32]]:
        """Each call's rows, from one ragged engine call over all of them."""
        rows = list(itertools.chain.from_iterable(call.rows for call in calls))
        first = calls[0]
        uniform = all(c.dim == first.dim and c.unit == first.unit for c in calls)
        # Calls that agree on width and normalisation get them from the engine; a mixed batch
        # is computed whole and model-normalised, then cut and normalised per call.
        width, unit = (first.dim, first.unit) if uniform else (self._native.output_dim, None)
        output = np.empty((len(rows), width), dtype=np.float32)
        if len(rows) == 1:
            ids = np.asarray(rows[0], dtype=np.int64)
            offsets = np.array([0, len(ids)], dtype=np.int64)
            self._native.encode_ragged(ids, offsets, out=output, normalize=unit)
        else:
            encode_rows(self._native, rows, None, output, unit, len(rows), self.max_batch_tokens)
        if len(calls) == 1:
            return [output]
        parts = []
        bounds = np.cumsum([0, *(len(call.rows) for call in calls)])
        for call, start, stop in zip(calls, bounds[:-1], bounds[1:]):
            part = output[start:stop, : call.dim].copy()
            if not uniform and call.unit and (call.dim < width or not self._native.normalize):
                part /= np.maximum(np.linalg.norm(part, axis=1, keepdims=True), 1e-12)
            parts.append(part)
        return parts

    def _report(self, calls: Sequence[Call], started: float, seconds: float) -> None:
        listener = self.on_batch
        if listener is None:
            return
        info = BatchInfo(
            calls=len(calls),
            texts=sum(len(call.rows) for call in calls),
            tokens=sum(len(row) for call in calls for row in call.rows),
            waits=tuple(
                max(0.0, started - call.queued_at) if call.queued_at else 0.0 for call in calls
            ),
            seconds=seconds,
        )
        try:
            listener(info)
        except Exception:  # a listener's bug must not fail the calls it observes
            logger.exception("Encoder.on_batch raised; the batch's calls were answered")


def _worker_loop(owner: weakref.ref[Coalescer], work: threading.Condition) -> None:
    """Run queued batches while the worker owns the engine; exit after an idle spell, or once
    the Coalescer is gone (only a weak reference is kept while idle). Should anything escape
    (a listener raising SystemExit), the engine is handed to a new worker, not left owned by
    a thread that is gone."""
    try:
        _run_batches(owner, work)
    except BaseException:
        with work:
            coalescer = owner()
            if coalescer is not None:
                coalescer._worker_running = False
                coalescer._owner = None
                if coalescer._queue:
                    coalescer._give_to_worker_locked()
        raise


def _run_batches(owner: weakref.ref[Coalescer], work: threading.Condition) -> None:
    while True:
        with work:
            coalescer = owner()
            if coalescer is None:
                return
            if coalescer._owner == "worker" and coalescer._queue:
                batch = coalescer._next_batch_locked()
            else:
                if coalescer._owner == "worker":  # the queue ran dry
                    coalescer._owner = None
                del coalescer
                if work.wait(_WORKER_IDLE_SECONDS):
                    continue  # handed work: look again
                coalescer = owner()
                if coalescer is None:
                    return
                if coalescer._owner != "worker":
                    coalescer._worker_running = False
                    return
                continue
        coalescer._compute(batch, time.perf_counter())
        del coalescer, batch


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():  # a cancelled caller is not woken
        future.set_result(None)


def _nothing() -> None:
    return None


_LIVE: weakref.WeakSet[Coalescer] = weakref.WeakSet()


def _forget_threads_after_fork() -> None:
    """In a forked child: no worker, nobody running a batch; calls queued at the fork (only a
    coroutine of the forking thread's loop can still wait for one) get an error."""
    for coalescer in list(_LIVE):
        queued = coalescer._queue
        coalescer._reset()
        coalescer._queue = queued
        coalescer._fail_queued_locked("the process forked while it was queued")


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_threads_after_fork)
