"""Side-by-side throughput: minilm_fast against sentence-transformers, in one process.

Why: a speed claim needs the peer measured on the same machine, at the same thread count, in the
same run. Engines alternate inside every repeat, so a noisy neighbour or thermal drift hits both
alike, and each number is the median of the repeats.

Workloads:

- ``short``: one sentence per line from ``--texts FILE`` (e.g. STS-B sentences), or by default
  the texts of tests/data/parity_texts.json with 5..40 word pieces (per the fixture metadata).
- ``long``: documents of ~240+ word pieces, built deterministically by concatenating those
  sentences until a document has at least 220 words (ST truncates them at 256 word pieces).
- single-query latency of ``encode("one short sentence")``: median and p99.

How:

    python benches/compare.py --threads 2 --model-dir PATH/TO/all-MiniLM-L6-v2
    python benches/compare.py --texts sentences.txt --threads 1 --repeats 7

The table gives median sentences/s, the ratio to minilm_fast, and CPU use (process CPU time over
wall time: 2.0 means two cores busy throughout). The last line says how much CPU other processes
took meanwhile (Linux); on a shared machine, rerun when that is not near 0%.

sentence-transformers (and torch) are optional: without them only minilm_fast is measured, and a
note says so; likewise minilm_fast is skipped when it is not installed. Without ``--model-dir``
both engines load sentence-transformers/all-MiniLM-L6-v2 from the Hub cache.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
PARITY_TEXTS = REPO_ROOT / "tests" / "data" / "parity_texts.json"
PARITY_META = REPO_ROOT / "tests" / "data" / "parity_reference_meta.json"
HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
QUERY = "one short sentence"
LONG_MIN_WORDS = 220

EncodeFn = Callable[[Sequence[str]], Any]


@dataclass
class Engine:
    name: str
    encode_batch: EncodeFn  # list of texts -> (n, 384)
    encode_one: Callable[[str], Any]  # one text -> (384,)


def short_texts(texts_file: Path | None) -> list[str]:
    """The short workload: lines of ``texts_file``, or the short parity fixture texts."""
    if texts_file is not None:
        lines = texts_file.read_text(encoding="utf-8").splitlines()
        texts = [line for line in lines if line.strip()]
        if not texts:
            raise SystemExit(f"{texts_file}: no non-empty lines")
        return texts
    texts = json.loads(PARITY_TEXTS.read_text(encoding="utf-8"))
    n_tokens = json.loads(PARITY_META.read_text(encoding="utf-8"))["n_tokens"]
    return [t for t, n in zip(texts, n_tokens) if 5 <= n <= 40]


def long_texts(sentences: list[str], n_docs: int) -> list[str]:
    """Documents of at least LONG_MIN_WORDS words, from consecutive sentences (wrapping)."""
    docs: list[str] = []
    for d in range(n_docs):
        i = (d * 7) % len(sentences)
        parts: list[str] = []
        words = 0
        while words < LONG_MIN_WORDS:
            s = sentences[i % len(sentences)].strip()
            parts.append(s)
            words += len(s.split())
            i += 1
        docs.append(" ".join(parts))
    return docs


def repeat_to(texts: list[str], n: int) -> list[str]:
    return [texts[i % len(texts)] for i in range(n)]


def load_minilm_fast(model: str, threads: int, batch_size: int) -> Engine | None:
    try:
        from minilm_fast import Encoder
    except ImportError as e:
        print(f"note: minilm_fast not importable ({e}); skipped")
        return None
    enc = Encoder(model, threads=threads)
    return Engine(
        "minilm_fast",
        lambda texts: enc.encode(list(texts), batch_size=batch_size),
        lambda text: enc.encode(text),
    )


def load_sentence_transformers(model: str, threads: int, batch_size: int) -> Engine | None:
    try:
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        print(f"note: sentence-transformers/torch not importable ({e}); skipped")
        return None
    torch.set_num_threads(threads)
    st = SentenceTransformer(model, device="cpu")

    def batch(texts: Sequence[str]) -> Any:
        return st.encode(list(texts), batch_size=batch_size, show_progress_bar=False)

    def one(text: str) -> Any:
        return st.encode(text, show_progress_bar=False)

    label = f"sentence-transformers {_version('sentence_transformers')}"
    return Engine(label, batch, one)


def _version(module: str) -> str:
    try:
        return str(__import__(module).__version__)
    except (ImportError, AttributeError):
        return "?"


def token_stats(model_dir: Path | None, workloads: dict[str, list[str]]) -> dict[str, str]:
    """Mean word pieces per text (truncated at 256), when the `tokenizers` package is around."""
    out = {name: "" for name in workloads}
    if model_dir is None or not (model_dir / "tokenizer.json").is_file():
        return out
    try:
        from tokenizers import Tokenizer
    except ImportError:
        return out
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(256)
    for name, texts in workloads.items():
        lengths = [len(e.ids) for e in tok.encode_batch(texts)]
        out[name] = f"{np.mean(lengths):.0f}"
    return out


class CpuNoise:
    """Share of the machine's CPU time used by other processes between start() and stop().

    Linux only (/proc/stat); elsewhere ``stop()`` returns None. All CPU time the machine spent
    busy, minus this process's own, over wall time times CPUs: on a shared box, anything well
    above zero means the numbers are noisy.
    """

    def __init__(self) -> None:
        self._start: tuple[float, float, float] | None = None

    @staticmethod
    def _machine_busy_s() -> float:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:9]]
        idle = fields[3] + fields[4]  # idle + iowait
        return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")

    def _sample(self) -> tuple[float, float, float] | None:
        try:
            return self._machine_busy_s(), time.process_time(), time.perf_counter()
        except (OSError, ValueError, IndexError, AttributeError):
            return None

    def start(self) -> None:
        self._start = self._sample()

    def stop(self) -> float | None:
        end = self._sample()
        if self._start is None or end is None:
            return None
        busy, own, wall = (e - s for e, s in zip(end, self._start))
        return max(0.0, busy - own) / (wall * (os.cpu_count() or 1))


def time_batches(
    engines: list[Engine], workloads: dict[str, list[str]], repeats: int
) -> dict[tuple[str, str], tuple[float, float]]:
    """Per (engine, workload): median sentences/s and median CPU use (process CPU s / wall s).

    Engines alternate within each repeat, in flipped order every other repeat. CPU use shows
    whether an engine keeps to its thread count (2.0 = two cores busy throughout).
    """
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for name, texts in workloads.items():
        for engine in engines:  # warm-up: lazy init, allocator, caches
            engine.encode_batch(texts[: min(len(texts), 64)])
        for r in range(repeats):
            order = engines if r % 2 == 0 else engines[::-1]
            for engine in order:
                cpu0, start = time.process_time(), time.perf_counter()
                out = engine.encode_batch(texts)
                elapsed = time.perf_counter() - start
                cpu = time.process_time() - cpu0
                if np.shape(out)[0] != len(texts):
                    raise SystemExit(f"{engine.name}: {np.shape(out)} for {len(texts)} texts")
                key = (engine.name, name)
                samples.setdefault(key, []).append((len(texts) / elapsed, cpu / elapsed))
    return {
        key: (statistics.median(s for s, _ in v), statistics.median(c for _, c in v))
        for key, v in samples.items()
    }


def time_latency(engines: list[Engine], runs: int) -> dict[str, tuple[float, float]]:
    """Median and p99 milliseconds of encode(QUERY); engines alternate call by call."""
    samples: dict[str, list[float]] = {e.name: [] for e in engines}
    for engine in engines:
        for _ in range(10):
            engine.encode_one(QUERY)
    for _ in range(runs):
        for engine in engines:
            start = time.perf_counter()
            engine.encode_one(QUERY)
            samples[engine.name].append((time.perf_counter() - start) * 1e3)
    return {
        name: (float(np.median(ms)), float(np.percentile(ms, 99))) for name, ms in samples.items()
    }


def print_report(
    engines: list[Engine],
    workloads: dict[str, list[str]],
    pieces: dict[str, str],
    throughput: dict[tuple[str, str], tuple[float, float]],
    latency: dict[str, tuple[float, float]],
) -> None:
    names = [e.name for e in engines]
    width = max(len(n) for n in [*names, "engine"])
    print()
    header = f"{'engine':<{width}}  {'workload':<8}  {'texts':>6}  {'avg tok':>7}"
    print(f"{header}  {'sentences/s':>11}  {'vs minilm_fast':>14}  {'CPU use':>7}")
    for wl, texts in workloads.items():
        base = throughput.get(("minilm_fast", wl), (0.0, 0.0))[0]
        for name in names:
            sps, cpu = throughput[(name, wl)]
            ratio = f"{sps / base:.2f}x" if base else "-"
            row = f"{name:<{width}}  {wl:<8}  {len(texts):>6}  {pieces[wl]:>7}"
            print(f"{row}  {sps:>11.1f}  {ratio:>14}  {cpu:>7.2f}")
    print()
    print(f'single-query latency, encode("{QUERY}"):')
    for name in names:
        med, p99 = latency[name]
        print(f"{name:<{width}}  median {med:7.2f} ms   p99 {p99:7.2f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="default: %(default)s")
    parser.add_argument("--repeats", type=int, default=5, help="default: %(default)s")
    parser.add_argument("--model-dir", type=Path, help=f"local snapshot (default: {HUB_ID})")
    parser.add_argument("--texts", type=Path, help="short texts, one per line")
    parser.add_argument("--batch-size", type=int, default=32, help="default: %(default)s")
    parser.add_argument(
        "--n-short", type=int, default=1024, help="short texts per run (default: %(default)s)"
    )
    parser.add_argument(
        "--n-long", type=int, default=128, help="long documents per run (default: %(default)s)"
    )
    parser.add_argument("--latency-runs", type=int, default=200, help="default: %(default)s")
    args = parser.parse_args(argv)
    model = str(args.model_dir) if args.model_dir is not None else HUB_ID

    sentences = short_texts(args.texts)
    workloads = {
        "short": repeat_to(sentences, args.n_short),
        "long": long_texts(sentences, args.n_long),
    }
    engines = [
        e
        for e in (
            load_minilm_fast(model, args.threads, args.batch_size),
            load_sentence_transformers(model, args.threads, args.batch_size),
        )
        if e is not None
    ]
    if not engines:
        print("nothing to measure: neither minilm_fast nor sentence-transformers is importable")
        return 1

    print(
        f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs; "
        f"threads {args.threads}, batch {args.batch_size}, repeats {args.repeats}, model {model}"
    )

    noise = CpuNoise()
    noise.start()
    throughput = time_batches(engines, workloads, args.repeats)
    latency = time_latency(engines, args.latency_runs)
    other = noise.stop()
    print_report(engines, workloads, token_stats(args.model_dir, workloads), throughput, latency)
    if other is not None:
        print(f"\nother processes used {100 * other:.0f}% of the CPUs during the measurements")
        if other > 0.05:
            print("warning: the machine was busy; these numbers are noisy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
