"""Many callers, one text each: minilm_fast's throughput and latency under concurrency.

    python benches/concurrency.py --model-dir DIR --threads 2     # the full run, ~15 min
    python benches/concurrency.py --quick                         # ~2 min, .cache/concurrency
    python benches/concurrency.py --baseline-python .cache/baseline/venv/bin/python

1, 4, 16 and 64 callers each encode one STS-B sentence per call, in a loop, for ``--duration``
seconds per cell, float32 and int8:

- ``threads``: N threads calling ``Encoder.encode(text)`` (one caller: back to back, no thread);
- ``asyncio``: N coroutines on one event loop awaiting ``Encoder.aencode(text)``;
- ``batch``: ``encode`` of 16 and of 64 texts per call, back to back: the batched rate (the
  upper line) and the time of one full batch of 64 (the yardstick of the p99 target);
- ``http``: ``python -m minilm_fast serve`` on a loopback port, driven by 1 and
  ``--http-clients`` keep-alive connections, one text per request (``concurrency_http.py``);
  and infinity-emb serving the same model folder with the same threads, float32, when its venv
  exists (``make infinity``; ``--infinity-python``).

Each configuration runs in a process of its own (``concurrency_worker.py``): minilm_fast as
users build it (coalescing on, the default), with ``coalesce=False`` (the "before" of the same
wheel), and with ``--baseline-python`` an earlier revision's wheel ("today's"). Every round runs
every cell on every configuration, in an order shuffled anew each round; tables give the median
over rounds of each rate, p50 and p99 over the calls of all rounds, and the targets' ratios as
the median of the ratios within each round. Before measuring, each configuration and server
embeds the same texts, checked against minilm_fast float32 (cosine >= 0.9999; int8 0.98).

Output: tables on the console and, in ``--out-dir`` (docs/; .cache/concurrency with
``--quick``), ``concurrency-latest.md``, ``.json`` and ``.png`` (throughput against callers,
one panel per compute, drawn by the first of this Python and the peers' that has matplotlib).
docs/COMPARE.md says how to read them.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import random
import shlex
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

import concurrency_report as report  # noqa: E402
from compare import (  # noqa: E402
    MachineBusy,
    Worker,
    WorkerError,
    baseline_meta,
    cosines,
    resolve_model_dir,
    wait_until_idle,
)
from concurrency_http import Server, ServerError, build_requests, drive, free_port  # noqa: E402
from peers import workloads  # noqa: E402
from peers.report import machine_description  # noqa: E402

DEFAULT_TEXTS = REPO_ROOT.parent / "shared" / "data" / "stsb_dev.tsv"
DEFAULT_PEERS_PYTHON = REPO_ROOT / ".cache" / "peers" / "venv" / "bin" / "python"
DEFAULT_INFINITY_PYTHON = REPO_ROOT / ".cache" / "infinity" / "venv" / "bin" / "python"
PIP_LOG = REPO_ROOT / ".cache" / "infinity" / "pip-install.log"  # make infinity writes it
MIN_COSINE = {"float32": 0.9999, "int8": 0.98, "bfloat16": 0.999}
# compare.py's check texts, less the empty one (an HTTP API may refuse it) and the two long
# ones (this run sends sentences)
CHECK_TEXTS = [t for t in workloads.VERIFY_TEXTS[:7] if t]


def thread_env(threads: int) -> dict[str, str]:
    n = str(threads)
    return {
        **os.environ,
        "OMP_NUM_THREADS": n,
        "MKL_NUM_THREADS": n,
        "OPENBLAS_NUM_THREADS": n,
        "RAYON_NUM_THREADS": n,
        "TOKENIZERS_PARALLELISM": "false" if threads == 1 else "true",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }


class EncoderWorker(Worker):
    """compare.py's pipe protocol, for concurrency_worker.py (one Encoder per process)."""

    def __init__(self, key: str, python: str, args: list[str], threads: int, log: Path) -> None:
        self.key = key
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log = log.open("a", encoding="utf-8")
        self.proc = subprocess.Popen(
            [python, str(BENCHES / "concurrency_worker.py"), *args],
            cwd=BENCHES,
            env=thread_env(threads),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            encoding="utf-8",
        )
        self.ready = self._read()


@dataclass
class Config:
    """One thing measured: an Encoder in a worker, or an HTTP server."""

    key: str  # "float32:coalesced", "int8:serve", ...
    compute: str
    kind: str  # coalesced, uncoalesced, baseline, serve, infinity
    label: str
    cells: list[str]
    worker: EncoderWorker | None = None
    server: Server | None = None
    requests: list[bytes] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()
        if self.server is not None:
            self.info["memory_end"] = self.server.memory()
            self.server.stop()


@dataclass
class Plan:
    computes: list[str]
    callers: list[int]
    http_clients: list[int]
    rounds: int
    warmup: float
    duration: float
    threads: int
    batch_sizes: tuple[int, ...] = (16, 64)


def inprocess_cells(plan: Plan, extra: Sequence[int] = ()) -> list[str]:
    counts = sorted({*plan.callers, *extra})
    return (
        [f"threads/{n}" for n in counts]
        + [f"asyncio/{n}" for n in counts]
        + [f"batch/{b}" for b in plan.batch_sizes]
    )


def start_configs(
    args: argparse.Namespace, plan: Plan, texts: list[str], logs: Path, notes: list[str]
) -> list[Config]:
    """Every worker and server of the run, started and ready; what failed is a note."""
    configs: list[Config] = []
    base = ["--model-dir", str(args.model_dir), "--threads", str(plan.threads)]
    http_all = sorted({1, *plan.http_clients})
    for compute in plan.computes:
        wanted = [
            ("coalesced", sys.executable, ["--coalesce", "on"], "minilm_fast, coalescing"),
            ("uncoalesced", sys.executable, ["--coalesce", "off"], "minilm_fast coalesce=False"),
        ]
        if args.baseline_python:
            rev = (baseline_meta(args.baseline_python) or {}).get("revision") or ""
            label = f"minilm_fast baseline {rev.split(' ')[0]}".strip()
            wanted.append(("baseline", args.baseline_python, [], label))
        for kind, python, extra, label in wanted:
            key = f"{compute}:{kind}"
            print(f"  {key}: starting a worker ...", flush=True)
            more = list(extra)
            if args.max_batch_tokens and kind != "baseline":
                more += ["--max-batch-tokens", str(args.max_batch_tokens)]
            try:
                worker = EncoderWorker(
                    key,
                    python,
                    [*base, "--compute", compute, *more],
                    plan.threads,
                    logs / f"{key}.log",
                )
            except WorkerError as exc:
                if kind == "coalesced" and "no Encoder(coalesce" in str(exc):
                    # a wheel without coalescing: measure it as it is, and say so
                    notes.append(f"{key}: this minilm_fast has no coalesce=; measured as built")
                    worker = EncoderWorker(
                        key,
                        python,
                        [*base, "--compute", compute],
                        plan.threads,
                        logs / f"{key}.log",
                    )
                    label = "minilm_fast (no coalesce= in this build)"
                else:
                    notes.append(f"{key} skipped: {str(exc).splitlines()[0]}")
                    print(f"    {notes[-1]}")
                    continue
            worker.call(op="set", texts=texts)
            extra = plan.http_clients if kind == "coalesced" and not args.no_http else []
            cells = inprocess_cells(plan, extra)
            configs.append(Config(key, compute, kind, label, cells, worker, info=worker.ready))
        if not args.no_http:
            configs += start_servers(args, plan, compute, texts, logs, notes, http_all)
    return configs


def start_servers(
    args: argparse.Namespace,
    plan: Plan,
    compute: str,
    texts: list[str],
    logs: Path,
    notes: list[str],
    http_all: list[int],
) -> list[Config]:
    """`python -m minilm_fast serve` (this Python's wheel) and, for float32, infinity-emb."""
    out = []
    cells = [f"http/{n}" for n in http_all]
    env = thread_env(plan.threads)
    key, port = f"{compute}:serve", free_port()
    cmd = [sys.executable, "-m", "minilm_fast", "serve", "--model", str(args.model_dir)]
    cmd += ["--compute", compute, "--threads", str(plan.threads), "--host", "127.0.0.1"]
    cmd += ["--port", str(port)]
    if args.max_batch_tokens:
        cmd += ["--max-batch-tokens", str(args.max_batch_tokens)]
    if "--no-access-log" in serve_help():
        cmd.append("--no-access-log")  # as infinity-emb at --log-level warning: no line per request
    print(f"  {key}: {shlex.join(cmd[1:])} ...", flush=True)
    log, name = logs / f"{key}.log", args.model_dir.name
    try:
        server = Server(key, cmd, env, port, "/v1/embeddings", "/v1/models", log, name)
    except ServerError as exc:
        notes.append(f"{key} not measured: {exc}")
        print(f"    {notes[-1]}")
    else:
        reqs = build_requests(texts, port, server.route, server.model)
        info = {"cmd": cmd, "start_s": server.start_s, "idle_memory": server.idle}
        label = "minilm-fast serve (HTTP)"
        out.append(Config(key, compute, "serve", label, cells, None, server, reqs, info))
    if compute == "float32":
        out += start_infinity(args, env, cells, texts, logs, notes)
    return out


def start_infinity(
    args: argparse.Namespace,
    env: dict[str, str],
    cells: list[str],
    texts: list[str],
    logs: Path,
    notes: list[str],
) -> list[Config]:
    """infinity-emb on the same model folder: torch, CPU, float32, the same thread count
    (OMP_NUM_THREADS), its default batch of 32, no response cache; torch.compile only with
    --infinity-compile (BetterTransformer needs optimum, which it does not install)."""
    version = infinity_version(args.infinity_python) if args.infinity_python else None
    if version is None:
        why = (
            f"no infinity-emb in {args.infinity_python or DEFAULT_INFINITY_PYTHON} (make infinity)"
        )
        if PIP_LOG.is_file():
            errors = [x for x in PIP_LOG.read_text(errors="replace").splitlines() if "ERROR" in x]
            if errors:
                why += f"; its install failed: {errors[-1].strip()} ({PIP_LOG})"
        notes.append(f"infinity-emb not measured: {why}")
        print(f"  {notes[-1]}")
        return []
    key, port = "float32:infinity", free_port()
    cmd = [
        args.infinity_python, str(Path(args.infinity_python).parent / "infinity_emb"), "v2",
        "--model-id", str(args.model_dir), "--served-model-name", "all-MiniLM-L6-v2",
        "--engine", "torch", "--device", "cpu", "--dtype", "float32", "--batch-size", "32",
        "--no-bettertransformer", "--compile" if args.infinity_compile else "--no-compile",
        "--no-vector-disk-cache",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    env = {**env, "DO_NOT_TRACK": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0"}
    print(f"  {key}: infinity-emb {version} v2 --engine torch --device cpu ...", flush=True)
    try:
        server = Server(
            key, cmd, env, port, "/embeddings", "/models", logs / f"{key}.log", "all-MiniLM-L6-v2"
        )
    except ServerError as exc:
        notes.append(f"infinity-emb not measured: {exc}")
        print(f"    {notes[-1]}")
        return []
    reqs = build_requests(texts, port, server.route, server.model)
    info = {"cmd": cmd, "start_s": server.start_s, "idle_memory": server.idle, "version": version}
    label = (
        f"infinity-emb {version} (HTTP, torch fp32{', compiled' if args.infinity_compile else ''})"
    )
    return [Config(key, "float32", "infinity", label, cells, None, server, reqs, info)]


def serve_help() -> str:
    done = subprocess.run(
        [sys.executable, "-m", "minilm_fast", "serve", "--help"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return done.stdout


def infinity_version(python: str) -> str | None:
    done = subprocess.run(
        [python, "-c", "import importlib.metadata as m; print(m.version('infinity-emb'))"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return done.stdout.strip() or None


def embed(config: Config, texts: list[str]) -> np.ndarray:
    if config.worker is not None:
        a = config.worker.call(op="embed", texts=texts)
        return np.frombuffer(base64.b64decode(a["b64"]), dtype="<f4").reshape(a["shape"])
    assert config.server is not None
    return np.array([config.server.embed(t) for t in texts], dtype=np.float32)


def verify(configs: list[Config], notes: list[str]) -> dict[str, float]:
    """Each configuration's vectors for the check texts against minilm_fast float32's; one that
    disagrees is dropped (a rate for other vectors means nothing)."""
    ref_cfg = next((c for c in configs if c.compute == "float32" and c.worker), None)
    if ref_cfg is None:
        notes.append("no float32 worker: vectors not checked")
        return {}
    ref = embed(ref_cfg, CHECK_TEXTS)
    result = {}
    for c in list(configs):
        try:
            got = embed(c, CHECK_TEXTS)
            worst = float(cosines(got, ref).min())
        except Exception as exc:  # a server that answers garbage
            worst, why = float("nan"), f"{type(exc).__name__}: {exc}"
        else:
            why = f"min cosine {worst:.6f} < {MIN_COSINE[c.compute]}"
        result[c.key] = worst
        print(f"  {c.key:<22} min cosine to {ref_cfg.key}: {worst:.7f}")
        if not worst >= MIN_COSINE[c.compute]:
            notes.append(f"{c.key} dropped, its vectors differ: {why}")
            print(f"    {notes[-1]}")
            c.close()
            configs.remove(c)
    return result


def measure_cell(c: Config, cell: str, plan: Plan, start: int) -> dict[str, Any]:
    mode, n = cell.split("/")
    timing = {"warmup": plan.warmup, "duration": plan.duration, "start": start}
    if mode == "http":
        assert c.server is not None
        return drive(c.server, c.requests, int(n), **timing)
    assert c.worker is not None
    if mode == "batch":
        timing["duration"] = plan.duration / 2
        return c.worker.call(op="batch", size=int(n), **timing)
    return c.worker.call(op=mode, callers=int(n), **timing)


def steal_seconds() -> float | None:
    """CPU seconds the hypervisor gave to other guests so far (/proc/stat's steal column): on a
    shared VM the CPUs this machine shows are not always its own, whatever runs inside it."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            return int(f.readline().split()[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def steal_share(before: float | None, since: float) -> float:
    """The share of the machine's CPU time stolen since `before` (taken at `since`)."""
    after = steal_seconds()
    wall = (time.perf_counter() - since) * (os.cpu_count() or 1)
    if before is None or after is None or wall <= 0:
        return float("nan")
    return (after - before) / wall


def run_rounds(
    configs: list[Config], plan: Plan, n_texts: int, notes: list[str]
) -> tuple[dict[str, Any], float]:
    """Every cell on every configuration, each round in a fresh shuffled order. A cell that
    fails (an exception in the worker, a server that stops answering) is a note, and that
    configuration skips it from then on."""
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {c.key: {} for c in configs}
    other = wall_cpus = 0.0
    cpus = os.cpu_count() or 1
    for r in range(plan.rounds):
        computes = plan.computes if r % 2 == 0 else plan.computes[::-1]
        for compute in computes:
            group = [c for c in configs if c.compute == compute]
            cells = list(dict.fromkeys(cell for c in group for cell in c.cells))
            print(f"  round {r + 1}/{plan.rounds}, {compute}: {len(cells)} cells", flush=True)
            for i, cell in enumerate(cells):
                here = [c for c in group if cell in c.cells]
                rng = random.Random(r * 1000 + i)
                # One start for every configuration of the cell: STS-B's sentences are
                # grouped by source (captions, news, forums), so a stretch from elsewhere in
                # the file is a workload of other lengths, not the same one.
                start = rng.randrange(n_texts)
                for c in rng.sample(here, len(here)):
                    wait_until_idle()
                    before, t0 = MachineBusy.seconds(), time.perf_counter()
                    try:
                        a = measure_cell(c, cell, plan, start)
                    except (WorkerError, OSError, EOFError) as exc:
                        c.cells.remove(cell)
                        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                        notes.append(f"{c.key} {cell} failed: {first}")
                        print(f"    {notes[-1]}", flush=True)
                        continue
                    after, wall = MachineBusy.seconds(), time.perf_counter() - t0
                    if before is not None and after is not None:
                        own = a["cpu"] + a.get("client_cpu", 0.0)
                        a["other_cpu"] = max(0.0, after - before - own)
                        other += a["other_cpu"]
                        wall_cpus += wall * cpus
                    a["round"] = r
                    raw[c.key].setdefault(cell, []).append(a)
    return raw, (other / wall_cpus if wall_cpus else float("nan"))


def idle_rss(args: argparse.Namespace, plan: Plan, logs: Path) -> dict[str, dict[str, float]]:
    """A fresh process per compute: load the Encoder (as users build it), encode one text,
    read its memory."""
    out = {}
    for compute in plan.computes:
        cmd = [sys.executable, str(BENCHES / "concurrency_worker.py"), "--idle-rss"]
        cmd += ["--model-dir", str(args.model_dir), "--threads", str(plan.threads)]
        cmd += ["--compute", compute]
        with (logs / f"idle-{compute}.log").open("w", encoding="utf-8") as log:
            done = subprocess.run(
                cmd, cwd=BENCHES, env=thread_env(plan.threads), stdout=subprocess.PIPE,
                stderr=log, text=True, check=False,
            )  # fmt: skip
        try:
            answer = json.loads(done.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            continue
        if "error" not in answer:
            out[compute] = {k: answer[k] for k in ("rss_mb", "peak_mb") if k in answer}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model-dir", type=Path, help="default: minilm_fast.resolve_model()")
    p.add_argument("--texts", type=Path, help=f"STS-B TSV (default: {DEFAULT_TEXTS})")
    p.add_argument("--threads", type=int, default=2, help="per Encoder (default: %(default)s)")
    p.add_argument("--computes", default="float32,int8", help="default: %(default)s")
    p.add_argument("--callers", help="concurrent callers (default 1,4,16,64; quick 1,16)")
    p.add_argument("--duration", type=float, help="timed seconds per cell (default 3; quick 0.6)")
    p.add_argument("--warmup", type=float, help="untimed seconds per cell (default 0.5; quick 0.2)")
    p.add_argument("--rounds", type=int, help="default 3; quick 1")
    p.add_argument("--http-clients", default="32", help="HTTP concurrency besides 1 (%(default)s)")
    p.add_argument("--no-http", action="store_true", help="no serve, no infinity-emb")
    p.add_argument("--max-batch-tokens", type=int, default=0, help="passed to Encoder and serve")
    p.add_argument("--baseline-python", help="a venv with an earlier wheel (make baseline)")
    p.add_argument(
        "--infinity-python",
        default=str(DEFAULT_INFINITY_PYTHON) if DEFAULT_INFINITY_PYTHON.exists() else None,
        help="Python of infinity-emb's venv (make infinity; default: %(default)s)",
    )
    p.add_argument(
        "--infinity-compile",
        action="store_true",
        help="infinity-emb with torch.compile (its default)",
    )
    p.add_argument("--peers-python", default=str(DEFAULT_PEERS_PYTHON), help="draws the chart")
    p.add_argument("--quick", action="store_true", help="a few seconds per cell, for development")
    p.add_argument("--out-dir", type=Path, help="default: docs/ (quick: .cache/concurrency/)")
    args = p.parse_args(argv)

    quick = args.quick
    plan = Plan(
        computes=[c.strip() for c in args.computes.split(",") if c.strip()],
        callers=[int(x) for x in (args.callers or ("1,16" if quick else "1,4,16,64")).split(",")],
        http_clients=[int(x) for x in args.http_clients.split(",") if x.strip()],
        rounds=args.rounds or (1 if quick else 3),
        warmup=args.warmup if args.warmup is not None else (0.2 if quick else 0.5),
        duration=args.duration or (0.6 if quick else 3.0),
        threads=args.threads,
    )
    if 1 not in plan.callers:
        plan.callers.insert(0, 1)  # the yardstick of every scaling ratio
    args.model_dir = resolve_model_dir(args.model_dir)
    for name in ("baseline_python", "infinity_python", "peers_python"):
        value = getattr(args, name)
        if value is not None:
            if not Path(value).exists():
                if name == "baseline_python":
                    p.error(f"--baseline-python {value}: no such file (make baseline)")
                value = None
            setattr(args, name, None if value is None else os.path.abspath(value))
    out_dir: Path = args.out_dir or REPO_ROOT / (".cache/concurrency" if quick else "docs")
    logs = REPO_ROOT / ".cache" / "concurrency" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for old in logs.glob("*.log"):
        old.unlink()

    notes: list[str] = []
    texts_path = args.texts or (DEFAULT_TEXTS if DEFAULT_TEXTS.is_file() else None)
    if texts_path is not None:
        texts = workloads.read_texts(texts_path)
        texts_desc = f"{texts_path.name}: its {len(texts)} sentences, one per call, in turn"
    else:
        texts = workloads.generate_sentences(3000)
        texts_desc = "3000 generated STS-B-like sentences (no --texts)"
        notes.append(f"no {DEFAULT_TEXTS}: generated sentences instead of STS-B")
    meta = {
        "command": "python "
        + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": machine_description(),
        "python": platform.python_version(),
        "threads": plan.threads,
        "rounds": plan.rounds,
        "warmup_s": plan.warmup,
        "duration_s": plan.duration,
        "callers": plan.callers,
        "http_clients": plan.http_clients,
        "quick": quick,
        "model_dir": str(args.model_dir),
        "texts": texts_desc,
        "baseline": baseline_meta(args.baseline_python),
    }
    print(
        f"{meta['machine']}; threads {plan.threads}; {plan.rounds} rounds of "
        f"{plan.warmup:g} + {plan.duration:g} s per cell; callers {plan.callers}; {texts_desc}"
    )
    t_start = time.perf_counter()
    configs: list[Config] = []
    try:
        print("idle Encoder memory, a fresh process per compute")
        idle = idle_rss(args, plan, logs)
        print("starting the configurations:")
        configs = start_configs(args, plan, texts, logs, notes)
        print("check texts through every configuration:")
        cos = verify(configs, notes)
        cells = [cell for c in configs for cell in c.cells] * plan.rounds
        seconds = sum(  # batch cells run half as long; ~0.3 s each to settle and start
            plan.warmup + plan.duration / (2 if cell.startswith("batch") else 1) + 0.3
            for cell in cells
        )
        print(f"measuring: {len(cells)} cells, about {seconds / 60:.1f} min")
        steal_before, wall_before = steal_seconds(), time.perf_counter()
        raw, noise = run_rounds(configs, plan, len(texts), notes)
        steal = steal_share(steal_before, wall_before)
    finally:
        for c in configs:
            c.close()

    results = report.summarise(
        meta={
            **meta,
            "seconds": time.perf_counter() - t_start,
            "notes": notes,
            "noise": noise,
            "steal": steal,
        },
        configs={
            c.key: {"compute": c.compute, "kind": c.kind, "label": c.label, "info": c.info}
            for c in configs
        },
        raw=raw,
        idle=idle,
        cosines=cos,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "concurrency-latest.json"
    md_path = out_dir / "concurrency-latest.md"
    png_path = out_dir / "concurrency-latest.png"
    json_path.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    chart_note = report.draw_chart_somewhere(
        json_path, png_path, [sys.executable, *([args.peers_python] if args.peers_python else [])]
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
