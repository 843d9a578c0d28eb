"""Throughput of plain ``Encoder.encode`` against Ray Data (``minilm_fast.ray.embed_dataset``)
with 1 and 2 actors of 1 and 2 threads: the figures of docs/SCALING.md.

Why: to know what Ray costs on top of the engine, and what a corpus of 100 million documents
costs in core-hours. Each configuration embeds the same real texts: STS-B-like sentences
(tests/data) and long documents cut at 256 word pieces (tests/data/long_docs.json). The Ray
runs read a folder of Parquet files and write one, end to end, on a local Ray.

CPU time is measured beside wall time, for this process and every process it started (Ray's
GCS, raylet, workers and actors, from /proc), so documents per CPU-second stay meaningful on a
machine shared with other jobs; wall-time documents/s are only as good as the machine was idle.

How (Linux; needs minilm-fast[ray]):

    python scripts/scaling_bench.py --model PATH/TO/all-MiniLM-L6-v2
    python scripts/scaling_bench.py --model PATH --sentences 3000 --long 240 --json out.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

DATA = pathlib.Path(__file__).resolve().parent.parent / "tests" / "data"
sys.path.insert(
    0, str(DATA.parent)
)  # tests/support/corpus.py: the real sentences the tests use too

from _corpus import real_sentences  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def corpus(kind: str, count: int) -> list[str]:
    """``count`` distinct texts; the number goes first so truncation cannot make twins (the
    Encoder computes a repeated text once, which would flatter every figure)."""
    if kind in ("sentences", "startup"):
        base = real_sentences()
    else:
        base = json.loads((DATA / "long_docs.json").read_text(encoding="utf-8"))["documents"]
    return [f"({i}) {base[i % len(base)]}" for i in range(count)]


class CpuMeter:
    """CPU seconds (user + system) used by this process and every Ray process while it runs.

    A thread samples /proc every 50 ms: this process, its descendants and any process whose
    command line names Ray (Ray workers and actors are not always children of this process,
    and an actor exits when its job ends, so its time is read while it lives; at most one
    interval of a dying process is lost). The sampling thread's own CPU is left out.
    """

    def __init__(self) -> None:
        self.me = os.getpid()
        self.baseline: dict[int, int] = {}
        self.last: dict[int, int] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.own = 0

    def start(self) -> None:
        self.baseline = self._sample()
        self.last = dict(self.baseline)
        self.thread.start()

    def finish(self) -> None:
        self.stop.set()
        self.thread.join()
        self.last.update(self._sample())

    def seconds(self) -> float:
        ticks = sum(t - self.baseline.get(pid, 0) for pid, t in self.last.items())
        return (ticks - self.own) / TICKS

    def _loop(self) -> None:
        tid = threading.get_native_id()
        started = _ticks(f"/proc/{self.me}/task/{tid}/stat")
        while not self.stop.wait(0.05):
            self.last.update(self._sample())
        self.own = _ticks(f"/proc/{self.me}/task/{tid}/stat") - started

    def _sample(self) -> dict[int, int]:
        parents: dict[int, int] = {}
        times: dict[int, int] = {}
        ray_pids: set[int] = set()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            try:
                with open(f"/proc/{entry}/stat", "rb") as handle:
                    stat = handle.read().decode("ascii", "replace")
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    command = handle.read()
            except OSError:
                continue  # exited meanwhile
            fields = stat[stat.rindex(")") + 2 :].split()
            parents[pid] = int(fields[1])
            times[pid] = int(fields[11]) + int(fields[12])  # utime, stime
            if b"/ray/" in command or b"ray::" in command:
                ray_pids.add(pid)
        chosen = {self.me} | ray_pids
        frontier = [self.me]
        while frontier:
            parent = frontier.pop()
            children = [pid for pid, ppid in parents.items() if ppid == parent]
            chosen.update(children)
            frontier.extend(children)
        return {pid: times[pid] for pid in chosen if pid in times}


def _ticks(path: str) -> int:
    with open(path, "rb") as handle:
        stat = handle.read().decode("ascii", "replace")
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def measure(run: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and Ray's) of ``run()``."""
    meter = CpuMeter()
    meter.start()
    wall0 = time.perf_counter()
    try:
        run()
    finally:
        wall = time.perf_counter() - wall0
        meter.finish()
    return wall, meter.seconds()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="all-MiniLM-L6-v2 folder")
    parser.add_argument("--sentences", type=int, default=3000, help="short documents per run")
    parser.add_argument("--long", type=int, default=240, help="long documents per run")
    parser.add_argument("--configs", default="1x1,1x2,2x1,2x2", help="Ray actors x threads")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray

    from minilm_fast import Encoder
    from minilm_fast.ray import embed_dataset

    configs = [tuple(int(n) for n in c.split("x")) for c in args.configs.split(",")]
    # "startup": a 16-sentence job, Ray's fixed cost per job (actors started, model loaded,
    # files listed and written), subtracted to get the steady-state rates.
    kinds = (("startup", 16), ("sentences", args.sentences), ("long", args.long))
    texts = {kind: corpus(kind, count) for kind, count in kinds}
    results: list[dict[str, Any]] = []
    # Plain encode first, before Ray runs: its CPU is this process's alone.
    for kind, count in kinds:
        for threads in (1, 2):
            encoder = Encoder(args.model, threads=threads)
            encoder.encode(texts[kind][:64])  # warm: first-call allocations
            cpu0, wall0 = time.process_time(), time.perf_counter()
            encoder.encode(texts[kind], show_progress_bar=False)
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            results.append(row(kind, "encode", 0, threads, count, wall, cpu))
            print(format_row(results[-1]), file=sys.stderr)

    most = max(actors * threads for actors, threads in configs)
    # Logical CPUs beyond the actors' reservation, for Ray's read and write tasks.
    ray.init(
        num_cpus=most + 2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR
    )
    ray.data.DataContext.get_current().enable_progress_bars = False
    with tempfile.TemporaryDirectory(prefix="scaling-") as scratch:
        for kind, count in kinds:
            folder = pathlib.Path(scratch) / kind
            folder.mkdir()
            step = -(-count // 8)
            for part, start in enumerate(range(0, count, step)):
                chunk = texts[kind][start : start + step]
                table = pa.table({"id": list(range(start, start + len(chunk))), "text": chunk})
                pq.write_table(table, folder / f"part-{part}.parquet")
            for actors, threads in configs:
                out = pathlib.Path(scratch) / f"out-{kind}-{actors}x{threads}"

                def job(
                    actors: int = actors,
                    threads: int = threads,
                    out: pathlib.Path = out,
                    src: pathlib.Path = folder,
                ) -> None:
                    ds = ray.data.read_parquet(str(src))
                    embed_dataset(
                        ds, model=args.model, num_actors=actors, threads_per_actor=threads
                    ).write_parquet(str(out))

                wall, cpu = measure(job)
                assert pq.read_table(out).num_rows == count
                results.append(row(kind, "ray", actors, threads, count, wall, cpu))
                print(format_row(results[-1]), file=sys.stderr)
    ray.shutdown()
    print(markdown(results))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


def row(
    kind: str, how: str, actors: int, threads: int, docs: int, wall: float, cpu: float
) -> dict[str, Any]:
    return {
        "corpus": kind,
        "how": how,
        "actors": actors,
        "threads": threads,
        "docs": docs,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "docs_per_s": round(docs / wall, 1),
        "docs_per_cpu_s": round(docs / cpu, 1),
    }


def format_row(r: dict[str, Any]) -> str:
    what = "encode" if r["how"] == "encode" else f"ray {r['actors']}x{r['threads']}"
    return (
        f"{r['corpus']:9} {what:10} {r['docs']} docs: {r['wall_s']:.1f} s wall, "
        f"{r['cpu_s']:.1f} CPU-s -> {r['docs_per_s']}/s, {r['docs_per_cpu_s']}/CPU-s"
    )


def markdown(results: list[dict[str, Any]]) -> str:
    """The SCALING.md tables.

    Steady state is the run less the 16-document job of the same configuration (Ray's fixed
    cost per job). Ray's overhead is its CPU-seconds per document, in steady state, over those
    of plain encode with the same threads per process.
    """
    startup = {(r["actors"], r["threads"]): r for r in results if r["corpus"] == "startup"}
    base = {(r["corpus"], r["threads"]): r for r in results if r["how"] == "encode"}
    lines = [
        "| corpus | run | cores | docs/s end to end | docs/s steady | docs per CPU-s steady "
        "| Ray's CPU overhead |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r["corpus"] == "startup":
            continue
        cores = r["threads"] * max(r["actors"], 1)
        if r["how"] == "encode":
            run, overhead = f"encode, threads={r['threads']}", "-"
            steady, per_cpu = r["docs_per_s"], r["docs_per_cpu_s"]
        else:
            run = f"Ray Data, {r['actors']} x {r['threads']}"
            fixed = startup[(r["actors"], r["threads"])]
            docs = r["docs"] - fixed["docs"]
            steady = docs / max(r["wall_s"] - fixed["wall_s"], 1e-9)
            per_cpu = docs / max(r["cpu_s"] - fixed["cpu_s"], 1e-9)
            plain = base[(r["corpus"], r["threads"])]["docs_per_cpu_s"]
            overhead = f"{(plain / per_cpu - 1) * 100:+.0f} %"
        lines.append(
            f"| {r['corpus']} | {run} | {cores} | {r['docs_per_s']:,.0f} | {steady:,.0f} | "
            f"{per_cpu:,.0f} | {overhead} |"
        )
    lines += ["", "| Ray job start-up (16 docs) | wall s | CPU s |", "|---|---|---|"]
    for (actors, threads), r in sorted(startup.items()):
        if actors:
            lines.append(f"| {actors} x {threads} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
