"""One minilm_fast Encoder in its own process, driven by benches/concurrency.py over a pipe.

    python benches/concurrency_worker.py --model-dir DIR --compute C --threads N [--coalesce off]
    python benches/concurrency_worker.py --model-dir DIR --compute C --threads N --idle-rss

Why a process per configuration: an earlier revision's wheel (``--baseline-python``) lives in
a venv of its own, and two Encoders in one process would share its cores and its GIL. Only the
standard library and minilm_fast are imported, so any venv with the wheel runs it.

``--coalesce on|off`` passes ``coalesce=`` to ``Encoder`` (the worker refuses when this
minilm_fast has no such argument); without it the Encoder is built as users build it.
``--idle-rss`` loads the Encoder, encodes one text, prints its memory as one JSON line and exits:
the yardstick of the serve RSS target.

The first line written is ``{"ready": ...}`` (version, compute, whether ``coalesce=`` exists)
or ``{"error": ...}``. Then one JSON command per input line, one JSON answer per output line:

- ``{"op": "set", "texts": [...]}``: the texts callers cycle through;
- ``{"op": "threads", "callers": N, "warmup": W, "duration": D, "start": I}``: N threads (one
  caller: the main thread) each calling ``encode(text)`` in a loop, one text per call, texts
  taken in turn from text I by all callers together; untimed for W seconds, then D seconds
  timed -> ``calls`` completed in the timed window, ``ms`` of each call started in it;
- ``{"op": "asyncio", ...}``: the same with N coroutines on one event loop awaiting
  ``aencode(text)``;
- ``{"op": "batch", "size": B, "warmup": W, "duration": D, "start": I}``: ``encode`` of B
  consecutive texts per call, back to back -> ``ms`` per call and ``texts`` encoded;
- ``{"op": "embed", "texts": [...]}``: the float32 vectors (base64), one ``encode`` call;
- ``{"op": "memory"}``: current and peak RSS (MB); ``{"op": "quit"}``.

Every timed answer carries ``wall`` and ``cpu`` (process CPU seconds, all threads) of the whole
command. Library output on stdout is moved to stderr so it cannot corrupt the protocol.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import inspect
import itertools
import json
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from peers.worker import memory_mb, protocol_stream

PROBE = "A man is playing a guitar."

Calls = list[tuple[float, float]]  # (start, end) of each call, perf_counter seconds


def load(model_dir: Path, compute: str, threads: int, coalesce: bool | None, max_tokens: int):
    import minilm_fast

    params = inspect.signature(minilm_fast.Encoder).parameters
    kwargs: dict[str, Any] = {"threads": threads, "compute": compute}
    if coalesce is not None:
        if "coalesce" not in params:
            raise RuntimeError(
                f"minilm_fast {minilm_fast.__version__} ({minilm_fast.__file__}) has no "
                "Encoder(coalesce=...)"
            )
        kwargs["coalesce"] = coalesce
    if max_tokens:
        if "max_batch_tokens" not in params:
            raise RuntimeError("this minilm_fast has no Encoder(max_batch_tokens=...)")
        kwargs["max_batch_tokens"] = max_tokens
    encoder = minilm_fast.Encoder(model_dir, **kwargs)
    if encoder.compute != compute:  # a CPU without the instructions falls back to float32
        raise RuntimeError(f"asked for compute={compute!r}, the Encoder runs {encoder.compute!r}")
    info = {
        "version": minilm_fast.__version__,
        "module": str(Path(minilm_fast.__file__).parent),
        "compute": encoder.compute,
        "has_coalesce": "coalesce" in params,
        "coalesce": coalesce,
        "python": sys.executable,
    }
    return encoder, info


def summarise(calls: Calls, warm: float, end: float, t0: float, c0: float) -> dict[str, Any]:
    """Calls completed inside [warm, end] give the rate; every call started in it its latency
    (the ones still running at `end` included: dropping them would flatter p99)."""
    done = sum(1 for a, b in calls if warm <= b <= end)
    ms = [round((b - a) * 1e3, 4) for a, b in calls if a >= warm]
    return {
        "calls": done,
        "window": end - warm,
        "ms": ms,
        "wall": time.perf_counter() - t0,
        "cpu": time.process_time() - c0,
    }


def run_threads(encoder: Any, texts: list[str], cmd: dict[str, Any]) -> dict[str, Any]:
    callers, n = cmd["callers"], len(texts)
    counter = itertools.count(cmd.get("start", 0))
    per_caller: list[Calls] = [[] for _ in range(callers)]
    errors: list[BaseException] = []
    t0, c0 = time.perf_counter(), time.process_time()
    warm = t0 + cmd["warmup"]
    end = warm + cmd["duration"]
    barrier = threading.Barrier(callers)

    def caller(out: Calls, wait: bool) -> None:
        try:
            if wait:
                barrier.wait()
            while True:
                a = time.perf_counter()
                if a >= end:
                    break
                encoder.encode(texts[next(counter) % n])
                out.append((a, time.perf_counter()))
        except BaseException as exc:  # reported after join, with the others stopped
            errors.append(exc)
            barrier.abort()

    if callers == 1:  # one caller back to back: no thread in between
        caller(per_caller[0], wait=False)
    else:
        workers = [
            threading.Thread(target=caller, args=(out, True), daemon=True) for out in per_caller
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    if errors:
        raise errors[0]
    return summarise([c for out in per_caller for c in out], warm, end, t0, c0)


def run_asyncio(encoder: Any, texts: list[str], cmd: dict[str, Any]) -> dict[str, Any]:
    callers, n = cmd["callers"], len(texts)
    counter = itertools.count(cmd.get("start", 0))
    per_caller: list[Calls] = [[] for _ in range(callers)]
    t0, c0 = time.perf_counter(), time.process_time()
    warm = t0 + cmd["warmup"]
    end = warm + cmd["duration"]

    async def caller(out: Calls) -> None:
        while True:
            a = time.perf_counter()
            if a >= end:
                break
            await encoder.aencode(texts[next(counter) % n])
            out.append((a, time.perf_counter()))

    async def main() -> None:
        await asyncio.gather(*(caller(out) for out in per_caller))

    asyncio.run(main())
    return summarise([c for out in per_caller for c in out], warm, end, t0, c0)


def run_batch(encoder: Any, texts: list[str], cmd: dict[str, Any]) -> dict[str, Any]:
    size, n, at = cmd["size"], len(texts), cmd.get("start", 0)
    t0, c0 = time.perf_counter(), time.process_time()
    warm = t0 + cmd["warmup"]
    ms: list[float] = []
    while True:
        chunk = [texts[(at + i) % n] for i in range(size)]
        at += size
        a = time.perf_counter()
        encoder.encode(chunk)
        b = time.perf_counter()
        if a >= warm:
            ms.append(round((b - a) * 1e3, 4))
            if b >= warm + cmd["duration"] and len(ms) >= 3:
                break
    return {
        "ms": ms,
        "texts": size * len(ms),
        "wall": time.perf_counter() - t0,
        "cpu": time.process_time() - c0,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--compute", default="float32")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--coalesce", choices=("on", "off"))
    parser.add_argument("--max-batch-tokens", type=int, default=0)
    parser.add_argument("--idle-rss", action="store_true")
    args = parser.parse_args()
    out = protocol_stream()

    def send(obj: dict[str, Any]) -> None:
        out.write(json.dumps(obj) + "\n")

    coalesce = None if args.coalesce is None else args.coalesce == "on"
    try:
        encoder, info = load(
            args.model_dir, args.compute, args.threads, coalesce, args.max_batch_tokens
        )
        encoder.encode(PROBE)
    except Exception as exc:  # reported to the driver, which skips this configuration
        send({"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})
        return 1
    if args.idle_rss:
        send({**info, **memory_mb()})
        return 0
    send({"ready": True, **info, **memory_mb()})

    texts: list[str] = [PROBE]
    ops = {"threads": run_threads, "asyncio": run_asyncio, "batch": run_batch}
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        try:
            if op == "quit":
                send({"ok": True})
                break
            if op == "set":
                texts = cmd["texts"]
                send({"ok": True})
            elif op in ops:
                send(ops[op](encoder, texts, cmd))
            elif op == "embed":
                vectors = encoder.encode(cmd["texts"]).astype("<f4")
                send(
                    {
                        "shape": list(vectors.shape),
                        "b64": base64.b64encode(vectors.tobytes()).decode("ascii"),
                    }
                )
            elif op == "memory":
                send(memory_mb())
            else:
                send({"error": f"unknown op {op!r}"})
        except Exception as exc:
            send({"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
