"""Python-side cost per batch of the two native calls, in one process, alternating.

``padded``: the rows of a batch padded into int64 (ids, mask) arrays, ``NativeModel.encode``,
the batch's rows scattered into the output (the pipeline before the ragged call).
``ragged``: the window's rows laid out once, longest first, in one flat id array; per batch a
slice of the offsets, ``NativeModel.encode_ragged`` writing into the output rows in place.

Both run the same length-sorted batches of the same token ids; the forward pass is the same.
Printed per batch: the median wall time, and the median time outside the native call (the
Python side), over ``--repeats`` rounds of a window of ``--texts`` short texts.

    python benches/ragged_overhead.py MODEL_DIR [--texts 4096] [--batch-size 32] [--repeats 15]
        [--threads N] [--compute float32|bfloat16|int8]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import numpy as np

from minilm_fast import Encoder


def padded(native, rows, order, batch_size, output):  # type: ignore[no-untyped-def]
    inside = 0.0
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        chosen = [rows[i] for i in batch]
        width = max(len(r) for r in chosen)
        ids = np.zeros((len(chosen), width), dtype=np.int64)
        mask = np.zeros((len(chosen), width), dtype=np.int64)
        for index, row in enumerate(chosen):
            ids[index, : len(row)] = row
            mask[index, : len(row)] = 1
        t = time.perf_counter()
        vectors = native.encode(ids, mask)
        inside += time.perf_counter() - t
        output[batch] = vectors
    return inside


def ragged(native, rows, order, batch_size, output):  # type: ignore[no-untyped-def]
    inside = 0.0
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))[order]
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.fromiter(
        itertools.chain.from_iterable([rows[i] for i in order]),
        dtype=np.int64,
        count=int(offsets[-1]),
    )
    for start in range(0, len(order), batch_size):
        stop = min(start + batch_size, len(order))
        t = time.perf_counter()
        native.encode_ragged(flat, offsets[start : stop + 1], out=output, rows=order[start:stop])
        inside += time.perf_counter() - t
    return inside


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("--texts", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--compute", default="float32")
    args = parser.parse_args()
    encoder = Encoder(args.model_dir, threads=args.threads, compute=args.compute)
    native = encoder.native
    words = "a man is eating food while the girl plays the violin in a park".split()
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(words, size=rng.integers(4, 16))) for _ in range(args.texts)]
    rows = encoder._tokenizer.encode(texts)
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    order = np.argsort(-lengths, kind="stable")
    batches = -(-len(rows) // args.batch_size)
    results: dict[str, list[tuple[float, float]]] = {"padded": [], "ragged": []}
    outputs = {}
    for _ in range(args.repeats):
        for name, run in (("padded", padded), ("ragged", ragged)):
            output = np.empty((len(rows), native.output_dim), dtype=np.float32)
            t = time.perf_counter()
            inside = run(native, rows, order, args.batch_size, output)
            total = time.perf_counter() - t
            results[name].append((total / batches, (total - inside) / batches))
            outputs[name] = output
    np.testing.assert_allclose(outputs["padded"], outputs["ragged"], atol=1e-6)
    print(
        f"{len(rows)} texts of {lengths.mean():.1f} tokens, batch {args.batch_size}, "
        f"{batches} batches, threads {native.threads}, {encoder.compute}, {args.repeats} rounds"
    )
    for name, values in results.items():
        total = statistics.median(v[0] for v in values) * 1e6
        python = statistics.median(v[1] for v in values) * 1e6
        print(f"{name}: {total:8.1f} us per batch in all, {python:6.1f} us outside the native call")


if __name__ == "__main__":
    main()
