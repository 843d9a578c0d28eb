"""Score minilm_fast on the STS Benchmark dev split, optionally against ST's own embeddings.

Why: parity tests compare vectors; this checks the number users care about. A faithful float32
implementation reproduces sentence-transformers' Spearman correlation (0.86716 for
all-MiniLM-L6-v2 on the dev split) to the third decimal. No torch needed.

How:

    python scripts/stsb_eval.py PATH/stsb_dev.tsv
    python scripts/stsb_eval.py PATH/stsb_dev.tsv --reference PATH/stsb_dev_reference.npy \\
        --model PATH/TO/all-MiniLM-L6-v2 --threads 2

The TSV has one pair per line, ``score<TAB>sentence1<TAB>sentence2``, no quoting. The optional
reference is ST's normalized embeddings, float32 (2n, 384): rows 0..n-1 the first sentences in
file order, rows n..2n-1 the second ones.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
FloatArray = npt.NDArray[np.float64]


def read_stsb(path: Path) -> tuple[list[float], list[str], list[str]]:
    """Gold scores and both sentence columns of a ``score<TAB>s1<TAB>s2`` file."""
    scores: list[float] = []
    first: list[str] = []
    second: list[str] = []
    with path.open(encoding="utf-8", newline="") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            fields = line.split("\t")
            if len(fields) != 3:
                raise ValueError(
                    f"{path}:{lineno}: expected 3 tab-separated fields, got {len(fields)}"
                )
            scores.append(float(fields[0]))
            first.append(fields[1])
            second.append(fields[2])
    if not scores:
        raise ValueError(f"{path}: no sentence pairs")
    return scores, first, second


def rankdata(x: npt.ArrayLike) -> FloatArray:
    """Ranks 1..n, ties get the average of the ranks they span (as scipy.stats.rankdata)."""
    a = np.asarray(x, dtype=np.float64)
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    # Start index of each run of equal values in sorted order, and the run lengths.
    starts = np.flatnonzero(np.r_[True, sorted_a[1:] != sorted_a[:-1]])
    lengths = np.diff(np.r_[starts, a.size])
    avg = starts + (lengths + 1) / 2.0  # mean of 1-based ranks start+1 .. start+length
    ranks = np.empty(a.size, dtype=np.float64)
    ranks[order] = np.repeat(avg, lengths)
    return ranks


def spearman(x: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Spearman's rho: scipy when importable, else Pearson correlation of average ranks."""
    try:
        from scipy.stats import spearmanr
    except ImportError:
        rx, ry = rankdata(x), rankdata(y)
        return float(np.corrcoef(rx, ry)[0, 1])
    return float(spearmanr(x, y)[0])


def row_cosines(a: npt.ArrayLike, b: npt.ArrayLike) -> FloatArray:
    """Cosine similarity of a[i] and b[i], in float64."""
    a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    den = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    cos: FloatArray = (a64 * b64).sum(axis=1) / np.maximum(den, 1e-12)
    return cos


def pair_cosines(emb: npt.ArrayLike, n: int) -> FloatArray:
    """Cosine similarity of row i and row n + i, for i < n."""
    e = np.asarray(emb)
    return row_cosines(e[:n], e[n : 2 * n])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tsv", type=Path, help="stsb_dev.tsv: score<TAB>sentence1<TAB>sentence2")
    parser.add_argument(
        "--reference", type=Path, help="ST's normalized embeddings, float32 (2n, 384), .npy"
    )
    parser.add_argument(
        "--model", default=DEFAULT_MODEL, help="Hub id or local folder (default: %(default)s)"
    )
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="default: %(default)s"
    )
    parser.add_argument("--batch-size", type=int, default=32, help="default: %(default)s")
    args = parser.parse_args(argv)

    from minilm_fast import Encoder

    scores, first, second = read_stsb(args.tsv)
    n = len(scores)
    encoder = Encoder(args.model, threads=args.threads)
    start = time.perf_counter()
    emb = np.asarray(encoder.encode(first + second, batch_size=args.batch_size))
    elapsed = time.perf_counter() - start
    if emb.shape[0] != 2 * n:
        raise SystemExit(f"encode returned {emb.shape[0]} rows for {2 * n} sentences")

    rho = spearman(scores, pair_cosines(emb, n))
    print(f"pairs:                {n} ({2 * n} sentences, {2 * n / elapsed:.0f} sentences/s)")
    print(f"minilm_fast Spearman: {rho:.5f}  (model {args.model}, threads {args.threads})")

    if args.reference is not None:
        ref = np.load(args.reference)
        if ref.shape != emb.shape:
            raise SystemExit(f"{args.reference}: shape {ref.shape}, embeddings are {emb.shape}")
        cos = row_cosines(emb, ref)
        max_abs = float(np.abs(emb.astype(np.float64) - ref.astype(np.float64)).max())
        ref_rho = spearman(scores, pair_cosines(ref, n))
        print(f"ST Spearman (ref):    {ref_rho:.5f}  (difference {rho - ref_rho:+.5f})")
        print(f"cosine to reference:  min {cos.min():.7f}  mean {cos.mean():.7f}")
        print(f"max |difference|:     {max_abs:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
