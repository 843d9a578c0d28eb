"""Soak: 200,000 ``Encoder.encode`` calls of mixed sizes in one process; memory must not grow.

The calls run in a fresh process (so the figure is that of the calls alone), on two Python
threads with a ``threads=1`` Encoder each (two cores busy), through the public API: mostly
tiny texts, with larger batches, truncated and chunked long texts, token embeddings, int8
output and ``encode_iter`` mixed in. Resident memory is read after a warm-up of 10% of the
calls and at the end; the growth must stay under 10 MB. ``MINILM_FAST_SOAK_CALLS`` changes the
number of calls (for a longer soak, or a quick look).
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import pytest
from support.reliability import record, run_python

CALLS = int(os.environ.get("MINILM_FAST_SOAK_CALLS", "200000"))
MAX_GROWTH_MB = 10.0

_SOAK = """
import gc, sys, threading, time
import numpy as np
from minilm_fast import Encoder, quantization_ranges

model, calls = sys.argv[1], int(sys.argv[2])
encoders = [Encoder(model, threads=1) for _ in range(2)]
words = "the a committee budget river school reviewed approved new funding it is".split()
long_text = " ".join(words[i % len(words)] for i in range(400))   # 400 words: cut at 256
short = [" ".join(words[: 1 + i % 5]) for i in range(40)]
ranges = quantization_ranges(encoders[0].encode(short))


def one_call(encoder, i):
    # Mostly a tiny text; every so often something larger, each call through encode().
    if i % 3001 == 3000:
        return list(encoder.encode_iter(iter(short), batch_size=8))
    if i % 5000 == 4999:
        return encoder.encode(long_text * 3, long_text="chunk")
    if i % 1000 == 999:
        return encoder.encode([long_text, *short[:7]], return_truncation=True)
    if i % 500 == 499:
        return encoder.encode(short[:16], batch_size=4, precision="int8",
                              quantization_ranges=ranges)
    if i % 250 == 249:
        return encoder.encode(short[:3], output_value="token_embeddings")
    if i % 100 == 99:
        return encoder.encode(short[i % 40 :], batch_size=16)
    if i % 10 == 0:
        return encoder.encode(["", words[i % len(words)], f"call {i}"])
    return encoder.encode("" if i % 3 else words[i % len(words)])


#: One call of every kind, three times over: run by both threads before the warm-up ends.
EVERY_KIND = [3000, 4999, 999, 499, 249, 99, 0, 1, 3] * 3


def run(encoder, calls, errors):
    try:
        for i in calls:
            one_call(encoder, i)
    except BaseException as exc:
        errors.append(repr(exc))


def phase(first, last, extra=()):
    errors = []
    half = (last - first) // 2
    workers = [
        threading.Thread(
            target=run, args=(encoders[0], [*extra, *range(first, first + half)], errors)
        ),
        threading.Thread(
            target=run, args=(encoders[1], [*extra, *range(first + half, last)], errors)
        ),
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors, errors
    gc.collect()
    return rss_mb()


start = time.perf_counter()
warm = calls // 10
after_warm_up = phase(0, warm - 2 * len(EVERY_KIND), EVERY_KIND)
samples = []
step = max((calls - warm) // 9, 1)
for first in range(warm, calls, step):
    samples.append(round(phase(first, min(first + step, calls)) - after_warm_up, 2))
seconds = time.perf_counter() - start
emit(
    calls=calls,
    seconds=round(seconds, 1),
    rss_after_warm_up_mb=round(after_warm_up, 1),
    growth_mb=samples[-1],
    growth_samples_mb=samples,
    peak_mb=round(peak_mb(), 1),
)
"""


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_soak_memory_does_not_grow(model_dir: pathlib.Path, record_property: Any) -> None:
    out = run_python(_SOAK, timeout=1750, args=(str(model_dir), str(CALLS))).result
    print(
        f"\nsoak: {out['calls']} encode calls in {out['seconds']} s; resident memory after "
        f"warm-up {out['rss_after_warm_up_mb']} MB, then grew by {out['growth_mb']} MB "
        f"(samples {out['growth_samples_mb']}); peak {out['peak_mb']} MB"
    )
    record(
        record_property,
        category="soak",
        cases=out["calls"],
        soak_calls=out["calls"],
        soak_seconds=out["seconds"],
        soak_growth_mb=out["growth_mb"],
        soak_samples_mb=" ".join(map(str, out["growth_samples_mb"])),
        load=f"2 threads x {out['calls'] // 2} calls (soak)",
    )
    assert out["growth_mb"] < MAX_GROWTH_MB, out
