"""Side by side on this CPU: minilm_fast against ONNX Runtime, OpenVINO, CTranslate2 and
sentence-transformers, in one run, same threads, same texts, engines alternating.
minilm_fast's bfloat16 and int8 modes (``Encoder(compute=...)``) run as engines of their own,
``minilm_fast-bf16`` and ``minilm_fast-int8``, as CTranslate2's int8 mode does
(``ctranslate2-int8``).

    make peers                       # once: the peers' venv and model files (.cache/peers)
    python benches/compare.py --threads 2 --texts ../shared/data/stsb_dev.tsv
    python benches/compare.py --quick                  # a short run while developing
    python benches/compare.py --threads 1 --engines minilm_fast,onnxruntime
    make baseline BASELINE_REV=HEAD~1  # once: an earlier revision's wheel (.cache/baseline)
    python benches/compare.py --baseline-python .cache/baseline/venv/bin/python

Every engine runs in its own worker process (benches/peers/worker.py): minilm_fast with this
Python, the peers with ``--peers-python`` (the venv ``make peers`` made). With
``--baseline-python`` (the venv ``make baseline`` made) minilm_fast's three engines run a second
time, as ``minilm_fast-baseline``, ``minilm_fast-bf16-baseline`` and
``minilm_fast-int8-baseline``, with that venv's wheel: before and after a change in one run, the
report's "Against the baseline" table giving current / baseline. The driver sends one
command at a time, so one engine computes while the others wait, and the order of engines is
shuffled every round, so drift and noisy neighbours hit all of them alike. Reported numbers are
medians over rounds. Peak RSS comes from separate fresh processes, one per engine and workload, that
load the engine and run that workload once (nothing else in the process).

Before measuring, every engine embeds the same check texts; a float32 engine whose vectors are
not within cosine 0.9999 of sentence-transformers' and minilm_fast float32's stops the run
(bf16: 0.999, int8: 0.98). Then every engine embeds all the short texts (the whole file, also
with ``--quick``) for the quality columns: mean and min cosine to minilm_fast float32's vectors
and, when ``--texts`` is STS-B's TSV, Spearman x 100 of gold score against the pair's cosine.
When minilm_fast float32 is not among ``--engines``, a worker of its own gives its vectors.

Workloads (texts in benches/peers/workloads.py; one tokenizer, truncation 256, length-sorted
batches of ``--batch-size`` padded to their longest text, mean pooling + normalisation):

- ``short``: STS-B-like sentences; ``--texts`` gives a file (STS-B's ``stsb_dev.tsv``: its 3,000
  sentences), else 3,000 generated ones. One ``encode(all, batch_size=32)`` per round; the
  latency columns are separate calls with 32 texts each (one request of 32).
- ``long``: documents of 300+ word pieces, truncated at 256.
- ``query``: one short query (~10 word pieces) per call, each engine's single-text path.
- the sweep: batch size 1, 8, 32, 128 x text length 16, 64, 256 word pieces, for the chart.

Output: tables on the console, and in ``--out-dir`` (docs/ for full runs, .cache/compare for
``--quick``): ``compare-latest.md`` (the tables), ``compare-latest.png`` (the sweep chart, drawn
by the peers' Python when this one has no matplotlib) and ``compare-latest.json`` (raw samples).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import platform
import random
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BENCHES = Path(__file__).resolve().parent
REPO_ROOT = BENCHES.parent
sys.path.insert(0, str(BENCHES))

from peers import engines as engine_specs  # noqa: E402
from peers import report, workloads  # noqa: E402
from peers.pipeline import load_tokenizer  # noqa: E402

DEFAULT_PEERS_DIR = REPO_ROOT / ".cache" / "peers"
DEFAULT_PEERS_PYTHON = DEFAULT_PEERS_DIR / "venv" / "bin" / "python"
# Check texts: the lowest cosine to the reference engines each precision may give.
MIN_COSINE = {"fp32": 0.9999, "bf16": 0.999, "int8": 0.98}


class WorkerError(RuntimeError):
    pass


class Worker:
    """One engine's process (benches/peers/worker.py), one JSON command at a time."""

    def __init__(
        self, key: str, python: str, model_dir: Path, peers_dir: Path, threads: int, log: Path
    ) -> None:
        self.key = key
        env = dict(os.environ)
        n = str(threads)
        # Every library's own thread knobs at the same count; tokenizers' Rayon pool included.
        env.update(
            OMP_NUM_THREADS=n,
            MKL_NUM_THREADS=n,
            OPENBLAS_NUM_THREADS=n,
            RAYON_NUM_THREADS=n,
            TOKENIZERS_PARALLELISM="false" if threads == 1 else "true",
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_VERBOSITY="error",
        )
        env.update(engine_specs.SPECS[key].env)
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log = log.open("a", encoding="utf-8")
        cmd = [
            python,
            "-m",
            "peers.worker",
            "--engine",
            key,
            "--model-dir",
            str(model_dir),
            "--peers-dir",
            str(peers_dir),
            "--threads",
            n,
        ]
        self.proc = subprocess.Popen(
            cmd,
            cwd=BENCHES,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            encoding="utf-8",
        )
        self.ready = self._read()
        wanted = engine_specs.MINILM_FAST_COMPUTE.get(key)
        if wanted is not None and self.ready.get("compute") != wanted:
            self.close()
            raise WorkerError(
                f"{key}: asked for compute={wanted!r}, "
                f"the worker runs {self.ready.get('compute')!r}"
            )

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            raise WorkerError(f"{self.key}: worker exited ({self.proc.returncode}); see the log")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise WorkerError(f"{self.key}: {answer['error']}")
        return answer

    def call(self, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.call(op="quit")
        except (WorkerError, OSError, ValueError):
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


class MachineBusy:
    """CPU seconds the whole machine spent busy (Linux /proc/stat), to tell others' load apart
    from the measured worker's own CPU time."""

    @staticmethod
    def seconds() -> float | None:
        try:
            with open("/proc/stat", encoding="ascii") as f:
                fields = [int(x) for x in f.readline().split()[1:9]]
        except (OSError, ValueError):
            return None
        return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def wait_until_idle(window_s: float = 0.05, busy_share: float = 0.1, limit_s: float = 1.0) -> None:
    """Return once the machine was idle (busy below `busy_share` of its CPUs) over a window of
    `window_s`, or after `limit_s`. Runtimes that spin-wait keep burning CPU for milliseconds
    after a call returns (the OpenMP pools of CTranslate2 and torch, ONNX Runtime's own): in
    the run of 2026-11-29, minilm_fast's five slowest single queries were all among the first
    four calls of a block, and every one of its blocks followed CTranslate2 int8's. Each
    timed call now starts on a machine the previous engine has left."""
    cpus = os.cpu_count() or 1
    deadline = time.perf_counter() + limit_s
    while time.perf_counter() < deadline:
        before = MachineBusy.seconds()
        time.sleep(window_s)
        after = MachineBusy.seconds()
        if before is None or after is None or after - before <= busy_share * window_s * cpus:
            return


@dataclass
class Noise:
    """Other processes' CPU time while workers were measured, as a share of the machine."""

    other_s: float = 0.0
    wall_cpus_s: float = 0.0
    by_engine: dict[str, list[float]] = field(default_factory=dict)

    def measured(self, key: str, worker: Worker, **cmd: Any) -> dict[str, Any]:
        wait_until_idle()
        before, t0 = MachineBusy.seconds(), time.perf_counter()
        answer = worker.call(**cmd)
        after, wall = MachineBusy.seconds(), time.perf_counter() - t0
        if before is not None and after is not None and "cpu" in answer:
            other = max(0.0, (after - before) - answer["cpu"])
            self.other_s += other
            self.wall_cpus_s += wall * (os.cpu_count() or 1)
            pair = self.by_engine.setdefault(key, [0.0, 0.0])
            pair[0] += other
            pair[1] += wall * (os.cpu_count() or 1)
        return answer

    def share(self) -> float | None:
        return self.other_s / self.wall_cpus_s if self.wall_cpus_s else None


def round_order(items: Sequence[str], r: int) -> list[str]:
    """The engines' order in round `r`: a permutation drawn anew each round (seeded by `r`, so
    a run can be repeated). A rotation would keep every engine behind the same neighbour in
    every round; in two six-engine runs that put float32 minilm_fast's one-query median 14%
    and 26% behind its baseline, which always ran right after it, where the same two wheels
    alone measured within 1%."""
    return random.Random(r).sample(list(items), len(items))


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return np.asarray((a * b).sum(axis=1), dtype=np.float64)


def spearman(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Spearman's rank correlation, ties ranked by their mean rank (as scipy.stats.spearmanr)."""

    def ranks(x: np.ndarray) -> np.ndarray:
        order = np.argsort(x, kind="stable")
        xs = x[order]
        starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
        ends = np.r_[starts[1:], len(xs)]
        out = np.empty(len(x), dtype=np.float64)
        out[order] = np.repeat((starts + ends - 1) / 2.0, ends - starts)
        return out

    ra = ranks(np.asarray(a, dtype=np.float64))
    rb = ranks(np.asarray(b, dtype=np.float64))
    return float(np.corrcoef(ra, rb)[0, 1])


def decode(answer: dict[str, Any]) -> np.ndarray:
    raw = base64.b64decode(answer["b64"])
    return np.frombuffer(raw, dtype="<f4").reshape(answer["shape"])


def resolve_model_dir(given: Path | None) -> Path:
    if given is None:
        try:
            from minilm_fast import resolve_model
        except ImportError:
            raise SystemExit("--model-dir is needed (minilm_fast is not importable here)") from None
        given = Path(resolve_model())
    folder = given.resolve()
    names = ("config.json", "model.safetensors", "tokenizer.json")
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise SystemExit(f"{folder} is not a model folder: no {', '.join(missing)}")
    return folder


def peers_manifest(peers_dir: Path, model_dir: Path) -> dict[str, Any] | None:
    path = peers_dir / "manifest.json"
    if not path.is_file():
        return None
    manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if "verification" not in manifest:
        raise SystemExit(
            f"{path}: the peers were not verified (prepare_peers.py stopped early); "
            "rerun scripts/prepare_peers.py (make peers)"
        )
    digest = hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()
    if manifest.get("model_sha256") != digest:
        raise SystemExit(
            f"{path} was prepared from other weights than {model_dir}/model.safetensors; "
            "rerun scripts/prepare_peers.py (make peers)"
        )
    return manifest


def baseline_meta(python: str | None) -> dict[str, Any] | None:
    """Which revisions the baseline engines and the current ones come from: the baseline's from
    the BASELINE_REV file `make baseline` leaves in its venv, the current ones' as the checkout
    (`make` builds .venv's wheel from the working tree)."""
    if python is None:
        return None
    stamp = Path(python).parent.parent / "BASELINE_REV"  # venv/bin/python -> venv/BASELINE_REV
    try:
        revision: str | None = stamp.read_text(encoding="utf-8").strip()
    except OSError:
        revision = None
    try:
        checkout: str | None = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "log", "-1", "--format=%h %s"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if dirty:
            checkout = f"{checkout} (with uncommitted changes)"
    except (OSError, subprocess.CalledProcessError):
        checkout = None
    return {"python": python, "revision": revision, "checkout": checkout}


@dataclass
class Settings:
    threads: int
    batch_size: int
    repeats: int
    requests: dict[str, int]  # requests of batch_size texts per round, per workload
    latency_runs: int
    latency_block: int
    sweep_batch_sizes: list[int]
    sweep_lengths: list[int]
    sweep_tokens: int
    sweep_repeats: int
    rss: bool


def probe(
    keys: list[str],
    pythons: dict[str, str],
    args: argparse.Namespace,
    texts: dict[str, list[str]],
    s: Settings,
    logs: Path,
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Load time and peak RSS of each engine, each workload in a fresh process of its own."""
    info: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    for key in keys:
        loads, imports, rss_load = [], [], []
        peaks: dict[str, float] = {}
        versions: dict[str, str] = {}
        compute: str | None = None
        for wl in ("query", "short", "long")[: 3 if s.rss else 1]:
            print(f"  {key}: fresh process, {wl} ...", flush=True)
            try:
                w = Worker(
                    key,
                    pythons[key],
                    args.model_dir,
                    args.peers_dir,
                    s.threads,
                    logs / f"{key}.log",
                )
            except WorkerError as exc:
                skipped[key] = str(exc)
                break
            try:
                loads.append(w.ready["load_s"])
                imports.append(w.ready["import_s"])
                rss_load.append(w.ready.get("rss_mb", float("nan")))
                versions = w.ready["versions"]
                compute = w.ready.get("compute")
                if wl == "query":
                    w.call(op="latency", texts=workloads.QUERIES, calls=50)
                else:
                    w.call(op="set", name=wl, texts=texts[wl])
                    w.call(op="run", name=wl, batch_size=s.batch_size)
                peaks[wl] = w.call(op="memory").get("peak_mb", float("nan"))
            finally:
                w.close()
        if key in skipped:
            continue
        info[key] = {
            "load_s": statistics.median(loads),
            "import_s": statistics.median(imports),
            "rss_load_mb": statistics.median(rss_load),
            "peak_mb": peaks,
            "versions": versions,
            "compute": compute,
            "python": pythons[key],
        }
    return info, skipped


def thread_checks(
    args: argparse.Namespace, texts: dict[str, list[str]], logs: Path, threads: int
) -> tuple[dict[str, float], dict[str, float]]:
    """minilm_fast at threads=1: process CPU time over wall time per workload (1.00 = one
    core); and long-text throughput at threads=1 against `threads`, the two alternating."""
    single, multi = (
        Worker("minilm_fast", sys.executable, args.model_dir, args.peers_dir, n, logs / name)
        for n, name in ((1, "minilm_fast-t1.log"), (threads, f"minilm_fast-t{threads}.log"))
    )
    cpu_use: dict[str, float] = {}
    rates: dict[int, list[float]] = {1: [], threads: []}
    try:
        for wl, sample in (("short", texts["short"][:1024]), ("long", texts["long"][:32])):
            single.call(op="set", name=wl, texts=sample)
            single.call(op="run", name=wl, batch_size=32)  # warm-up
            answer = single.call(op="run", name=wl, batch_size=32)
            cpu_use[wl] = answer["cpu"] / answer["wall"]
        answer = single.call(op="latency", texts=workloads.QUERIES, calls=100)
        cpu_use["query"] = answer["cpu"] / answer["wall"]
        multi.call(op="set", name="long", texts=texts["long"][:32])
        multi.call(op="run", name="long", batch_size=32)  # warm-up
        for _ in range(3):
            for n, worker in ((1, single), (threads, multi)):
                answer = worker.call(op="run", name="long", batch_size=32)
                rates[n].append(32 / answer["wall"])
    finally:
        single.close()
        multi.close()
    one, many = statistics.median(rates[1]), statistics.median(rates[threads])
    scaling = {"threads": threads, "t1_sps": one, "tn_sps": many, "ratio": many / one}
    return cpu_use, scaling


def verify(workers: dict[str, Worker], reference: Worker | None) -> dict[str, dict[str, float]]:
    """Every engine's vectors for VERIFY_TEXTS against the reference engines' (sentence-
    transformers, minilm_fast float32: `reference`, an engine or a worker of its own); fail
    loudly."""

    def embed(w: Worker) -> np.ndarray:
        return decode(w.call(op="embed", texts=workloads.VERIFY_TEXTS, batch_size=32))

    vectors = {key: embed(w) for key, w in workers.items()}
    refs = {k: vectors[k] for k in ("sentence-transformers",) if k in vectors}
    if reference is not None:
        refs["minilm_fast"] = (
            vectors["minilm_fast"] if "minilm_fast" in vectors else embed(reference)
        )
    result: dict[str, dict[str, float]] = {}
    failures = []
    for key, got in vectors.items():
        result[key] = {}
        floor = MIN_COSINE[engine_specs.SPECS[key].precision]
        for ref, expected in refs.items():
            if ref == key:
                continue
            worst = float(cosines(got, expected).min())
            result[key][ref] = worst
            if worst < floor:
                failures.append(f"{key} vs {ref}: min cosine {worst:.6f} < {floor}")
    for key, cos in result.items():
        shown = ", ".join(f"{ref} {c:.7f}" for ref, c in cos.items())
        print(f"  {key:<22} min cosine: {shown or '(no reference engine)'}")
    if failures:
        raise SystemExit(
            "engines disagree, numbers would be meaningless:\n  " + "\n  ".join(failures)
        )
    return result


def quality(
    workers: dict[str, Worker],
    texts: list[str],
    gold: list[float] | None,
    reference: Worker | None,
) -> dict[str, dict[str, float]]:
    """Every engine's vectors for `texts` (the short workload's whole file) against those of
    `reference` (minilm_fast float32): mean and min cosine over the texts; with STS-B's gold
    scores (pair i = texts i and n + i), Spearman x 100 of gold score against the pair's cosine.
    The reference's own figures are under the key "reference"."""

    def scores(vectors: np.ndarray, ref: np.ndarray | None) -> dict[str, float]:
        out: dict[str, float] = {}
        if gold is not None:
            n = len(gold)
            out["spearman"] = 100 * spearman(gold, cosines(vectors[:n], vectors[n : 2 * n]))
        if ref is not None:
            cos = cosines(vectors, ref)
            out["mean_cos"], out["min_cos"] = float(cos.mean()), float(cos.min())
        return out

    def embed(w: Worker) -> np.ndarray:
        return decode(w.call(op="embed", texts=texts, batch_size=32))

    ref = embed(reference) if reference is not None else None
    result = {"reference": scores(ref, ref)} if ref is not None else {}
    for key, w in workers.items():
        result[key] = scores(ref if w is reference and ref is not None else embed(w), ref)
    for key, q in result.items():
        shown = ", ".join(
            f"{name} {q[name]:.{d}f}"
            for name, d in (("spearman", 2), ("mean_cos", 6), ("min_cos", 6))
            if name in q
        )
        print(f"  {key:<22} {shown or '(no reference, no gold scores)'}")
    return result


def measure(
    workers: dict[str, Worker],
    texts: dict[str, list[str]],
    sweep_texts: dict[int, list[str]],
    s: Settings,
    noise: Noise,
) -> dict[str, Any]:
    keys = list(workers)
    for w in workers.values():
        for wl, items in texts.items():
            w.call(op="set", name=wl, texts=items)
            w.call(op="set", name=f"warm-{wl}", texts=items[: 2 * s.batch_size])
            w.call(op="run", name=f"warm-{wl}", batch_size=s.batch_size)
        w.call(op="latency", texts=workloads.QUERIES, calls=10)

    throughput: dict[str, dict[str, dict[str, list[float]]]] = {
        wl: {k: {"sps": [], "cpu_use": [], "request_ms": []} for k in keys} for wl in texts
    }
    for r in range(s.repeats):
        print(f"  round {r + 1}/{s.repeats}: short, long", flush=True)
        for wl in texts:
            for key in round_order(keys, r):
                a = noise.measured(key, workers[key], op="run", name=wl, batch_size=s.batch_size)
                throughput[wl][key]["sps"].append(a["n"] / a["wall"])
                throughput[wl][key]["cpu_use"].append(a["cpu"] / a["wall"])
            for key in round_order(keys, r + 1):
                a = noise.measured(
                    key,
                    workers[key],
                    op="requests",
                    name=wl,
                    size=s.batch_size,
                    start=r * s.requests[wl] * s.batch_size,
                    count=s.requests[wl],
                )
                throughput[wl][key]["request_ms"].extend(a["ms"])

    latency: dict[str, dict[str, list[float]]] = {k: {"ms": [], "cpu_use": []} for k in keys}
    blocks = max(1, s.latency_runs // s.latency_block)
    print(f"  single queries: {blocks} blocks of {s.latency_block} calls per engine", flush=True)
    for r in range(blocks):
        for key in round_order(keys, r):
            # Untimed calls for 30 ms first: the block starts on an idle machine, after another
            # engine's block, and its first calls run slower than in a service under steady
            # load (see COMPARE.md). The first of them is kept apart as "after idle".
            a = noise.measured(
                key,
                workers[key],
                op="latency",
                texts=workloads.QUERIES,
                calls=s.latency_block,
                warmup_s=0.03,
            )
            latency[key]["ms"].extend(a["ms"])
            latency[key].setdefault("first_ms", []).append(a["first_ms"])
            latency[key]["cpu_use"].append(a["cpu"] / a["wall"])

    sweep: dict[str, dict[str, dict[str, list[float]]]] = {}
    for length, items in sweep_texts.items():
        for w in workers.values():
            w.call(op="set", name=f"sweep-{length}", texts=items)
        for bs in s.sweep_batch_sizes:
            # about sweep_tokens word pieces per run, and at least one full batch
            limit = max(bs, s.sweep_tokens // length)
            print(f"  sweep: {length} word pieces, batch {bs}, {limit} texts", flush=True)
            cell: dict[str, list[float]] = {k: [] for k in keys}
            run = {"op": "run", "name": f"sweep-{length}", "batch_size": bs, "limit": limit}
            for key in keys:  # warm-up: one batch at this shape
                workers[key].call(**{**run, "limit": max(bs, 4)})
            for r in range(s.sweep_repeats):
                for key in round_order(keys, r):
                    a = noise.measured(key, workers[key], **run)
                    cell[key].append(a["n"] / a["wall"])
            sweep.setdefault(str(length), {})[str(bs)] = cell
    return {"throughput": throughput, "latency": latency, "sweep": sweep}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2, help="per engine (default: %(default)s)")
    parser.add_argument("--texts", type=Path, help="short texts: stsb_dev.tsv, or one per line")
    parser.add_argument("--model-dir", type=Path, help="default: minilm_fast.resolve_model()")
    parser.add_argument(
        "--peers-dir", type=Path, default=DEFAULT_PEERS_DIR, help="default: %(default)s"
    )
    parser.add_argument(
        "--peers-python",
        default=str(DEFAULT_PEERS_PYTHON) if DEFAULT_PEERS_PYTHON.exists() else sys.executable,
        help="Python of the peers' venv (default: %(default)s)",
    )
    parser.add_argument(
        "--baseline-python",
        help="Python of a venv with an earlier revision's wheel (make baseline: "
        f".cache/baseline/venv/bin/python); adds {', '.join(engine_specs.BASELINE_OF)}",
    )
    current = [k for k in engine_specs.SPECS if k not in engine_specs.BASELINE_OF]
    parser.add_argument(
        "--engines",
        help=f"comma-separated subset (default: {','.join(current)}, and with "
        "--baseline-python the baseline engines)",
    )
    parser.add_argument("--quick", action="store_true", help="a short run for development")
    parser.add_argument("--repeats", type=int, help="rounds of short + long (default 5; quick 2)")
    parser.add_argument("--batch-size", type=int, default=32, help="default: %(default)s")
    parser.add_argument("--n-long", type=int, help="long documents (default 128; quick 32)")
    parser.add_argument("--latency-runs", type=int, help="calls per engine (default 300; quick 60)")
    parser.add_argument(
        "--no-rss", action="store_true", help="no peak-RSS processes for short/long (quick: none)"
    )
    parser.add_argument("--no-sweep", action="store_true", help="skip the batch-size sweep")
    parser.add_argument("--out-dir", type=Path, help="default: docs/ (quick: .cache/compare/)")
    args = parser.parse_args(argv)

    quick = args.quick
    s = Settings(
        threads=args.threads,
        batch_size=args.batch_size,
        repeats=args.repeats or (2 if quick else 5),
        requests={"short": 4 if quick else 16, "long": 1 if quick else 4},
        latency_runs=args.latency_runs or (60 if quick else 300),
        latency_block=20 if quick else 30,
        sweep_batch_sizes=[] if args.no_sweep else ([1, 32] if quick else [1, 8, 32, 128]),
        sweep_lengths=[] if args.no_sweep else ([16, 256] if quick else [16, 64, 256]),
        sweep_tokens=1024 if quick else 4096,
        sweep_repeats=1 if quick else 3,
        rss=not (args.no_rss or quick),
    )
    args.model_dir = resolve_model_dir(args.model_dir)
    args.peers_dir = args.peers_dir.resolve()
    # Workers start in benches/: absolute interpreter paths, but not resolved (a venv's python
    # is a symlink out of the venv).
    args.peers_python = os.path.abspath(args.peers_python)
    out_dir: Path = args.out_dir or (
        REPO_ROOT / ".cache" / "compare" if quick else REPO_ROOT / "docs"
    )
    logs = REPO_ROOT / ".cache" / "compare" / "logs"
    for old in logs.glob("*.log"):
        old.unlink()

    if args.baseline_python is not None:
        if not Path(args.baseline_python).is_file():
            parser.error(f"--baseline-python {args.baseline_python}: no such file (make baseline)")
        args.baseline_python = os.path.abspath(args.baseline_python)
    manifest = peers_manifest(args.peers_dir, args.model_dir)
    if args.engines is None:
        keys = current + (list(engine_specs.BASELINE_OF) if args.baseline_python else [])
    else:
        keys = [k.strip() for k in args.engines.split(",") if k.strip()]
    unknown = [k for k in keys if k not in engine_specs.SPECS]
    if unknown:
        parser.error(f"unknown engines {unknown}; known: {', '.join(engine_specs.SPECS)}")
    if args.baseline_python is None and any(k in engine_specs.BASELINE_OF for k in keys):
        parser.error("the baseline engines need --baseline-python (make baseline)")
    notes: list[str] = []
    if manifest is None:
        missing = [k for k in keys if k in engine_specs.PEER_FILES]
        if missing:
            notes.append(
                f"no prepared peers in {args.peers_dir} (make peers): skipped {', '.join(missing)}"
            )
        keys = [k for k in keys if k not in engine_specs.PEER_FILES]
    if not Path(args.peers_python).exists():
        peers = [k for k in keys if engine_specs.SPECS[k].interpreter == "peers"]
        if peers:
            notes.append(
                f"no peers' Python at {args.peers_python} (make peers): skipped {', '.join(peers)}"
            )
        keys = [k for k in keys if k not in peers]
    interpreters = {
        "self": sys.executable,
        "peers": args.peers_python,
        "baseline": args.baseline_python,
    }
    pythons = {k: interpreters[engine_specs.SPECS[k].interpreter] for k in keys}

    tok = load_tokenizer(args.model_dir)
    gold: list[float] | None = None
    if args.texts is not None:
        sentences = workloads.read_texts(args.texts)
        gold = workloads.stsb_scores(args.texts)
        short_desc = f"{args.texts.name}, {len(sentences)} texts"
    else:
        sentences = workloads.generate_sentences(3000)
        short_desc = "3000 generated STS-B-like sentences"
    n_long = args.n_long or (32 if quick else 128)
    texts = {
        # quick: every 6th text, so the sample has the file's mix of lengths
        "short": sentences[:: 6 if quick else 1],
        "long": workloads.long_documents(sentences, n_long, tok),
    }
    sweep_texts = {
        length: workloads.texts_of_length(
            sentences, max([*s.sweep_batch_sizes, s.sweep_tokens // length]), length, tok
        )
        for length in s.sweep_lengths
    }

    def mean_tokens(items: Sequence[str]) -> float:
        return float(np.mean([len(e.ids) for e in tok.encode_batch(list(items))]))

    meta = {
        "command": "python "
        + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": report.machine_description(),
        "python": platform.python_version(),
        "threads": s.threads,
        "batch_size": s.batch_size,
        "repeats": s.repeats,
        "quick": quick,
        "model_dir": str(args.model_dir),
        "peers": manifest,
        "baseline": baseline_meta(args.baseline_python),
    }
    work_meta = {
        "short": {
            "texts": len(texts["short"]),
            "tokens": mean_tokens(texts["short"]),
            "desc": short_desc,
        },
        "long": {
            "texts": len(texts["long"]),
            "tokens": mean_tokens(texts["long"]),
            "desc": f"{len(texts['long'])} documents of 300+ word pieces, cut at 256",
        },
        "query": {
            "texts": 1,
            "tokens": mean_tokens(workloads.QUERIES),
            "desc": f"one query per call, {len(workloads.QUERIES)} different ones in turn",
        },
        "sweep": {
            str(k): {"texts": len(v), "tokens": mean_tokens(v)} for k, v in sweep_texts.items()
        },
    }
    print(
        f"{meta['machine']}; python {meta['python']}; threads {s.threads}, batch {s.batch_size}, "
        f"{s.repeats} rounds; model {args.model_dir}"
    )
    if meta["baseline"] is not None:
        b = meta["baseline"]
        print(
            f"baseline: {b['revision'] or 'unknown revision'} ({b['python']}); "
            f"current: {sys.executable}, checkout {b['checkout'] or '?'}"
        )

    for note in notes:
        print(f"note: {note}")
    t_start = time.perf_counter()
    print("load time and peak RSS, one fresh process per engine and workload:")
    info, skipped = probe(keys, pythons, args, texts, s, logs)
    for key, why in skipped.items():
        notes.append(f"{key} skipped: {why.splitlines()[0]}")
        print(f"  note: {notes[-1]}")
    keys = [k for k in keys if k in info]
    if not keys:
        print("nothing to measure")
        return 1
    # at --threads 1 the tables' CPU / wall column says it already
    t1, scaling = (
        thread_checks(args, texts, logs, s.threads)
        if "minilm_fast" in keys and s.threads != 1
        else ({}, {})
    )

    print("measuring in persistent workers, engines alternating:")
    workers: dict[str, Worker] = {}
    reference: Worker | None = None
    noise = Noise()
    try:
        for key in keys:
            workers[key] = Worker(
                key, pythons[key], args.model_dir, args.peers_dir, s.threads, logs / f"{key}.log"
            )
        reference = workers.get("minilm_fast")
        if reference is None:  # minilm_fast float32's vectors, the reference, are still wanted
            try:
                reference = Worker(
                    "minilm_fast",
                    sys.executable,
                    args.model_dir,
                    args.peers_dir,
                    s.threads,
                    logs / "minilm_fast-reference.log",
                )
            except WorkerError as exc:
                notes.append(f"no cosines to minilm_fast float32: {str(exc).splitlines()[0]}")
                print(f"  note: {notes[-1]}")
        print("verify: the same check texts through every engine")
        verification = verify(workers, reference)
        print(
            f"quality: {len(sentences)} short texts through every engine"
            + (f", Spearman on {len(gold)} STS-B pairs" if gold else "")
        )
        scores = quality(workers, sentences, gold, reference)
        if reference is not None and "minilm_fast" not in workers:
            reference.close()
        measured = measure(workers, texts, sweep_texts, s, noise)
    finally:
        for w in workers.values():
            w.close()
        if reference is not None and "minilm_fast" not in workers:
            reference.close()  # again, if the run stopped before the first close

    results = {
        "meta": {**meta, "seconds": time.perf_counter() - t_start, "notes": notes},
        "workloads": work_meta,
        "engines": {
            k: {
                **info[k],
                "label": engine_specs.SPECS[k].label,
                "precision": engine_specs.SPECS[k].precision,
                "how": engine_specs.SPECS[k].how,
            }
            for k in keys
        },
        "verification": verification,
        "quality": {
            "texts": len(sentences),
            "desc": short_desc,
            "pairs": len(gold) if gold else 0,
            "reference": "minilm_fast float32" if reference is not None else None,
            "reference_scores": scores.pop("reference", {}),
            "engines": scores,
        },
        "skipped": skipped,
        "threads1_cpu_use": t1,
        "thread_scaling": scaling,
        "noise": {
            "share": noise.share(),
            "by_engine": {k: o / w for k, (o, w) in noise.by_engine.items() if w},
        },
        **measured,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "compare-latest.json"
    md_path = out_dir / "compare-latest.md"
    png_path = out_dir / "compare-latest.png"
    json_path.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    chart_note = report.draw_chart_somewhere(
        json_path, png_path, [sys.executable, args.peers_python]
    )
    markdown = report.markdown(results, png_path.name if chart_note is None else None)
    md_path.write_text(markdown, encoding="utf-8")
    print()
    print(markdown)
    print(
        f"wrote {md_path}, {json_path}"
        + (f", {png_path}" if chart_note is None else f" ({chart_note})")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
