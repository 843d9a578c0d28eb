"""One engine in its own process, driven by benches/compare.py over stdin/stdout.

Why a process per engine: peak RSS is only an engine's own in a process that holds nothing
else; idle torch or OpenMP threads of one engine cannot slow another; and minilm_fast, the
peers and an earlier revision's minilm_fast (the baseline) may live in different virtualenvs.
Throughput still alternates fairly: the driver sends one command at a time, so exactly one
engine computes while the others wait on a read.

    python -m peers.worker --engine KEY --model-dir DIR --peers-dir DIR --threads N

The first line written is ``{"ready": ...}`` (import and load timings, memory, versions; for
minilm_fast's engines the ``compute`` its Encoder runs, which loading has checked against the
mode the engine asks for) or ``{"error": ...}``. Then one JSON command per input line, one JSON
answer per output line:

- ``{"op": "set", "name": NAME, "texts": [...]}``: keep a workload;
- ``{"op": "run", "name": NAME, "batch_size": B, "limit": L}``: ``encode(texts[:L], B)`` once
  (all texts without ``limit``) -> wall and CPU seconds (process CPU time, all threads);
- ``{"op": "requests", "name": NAME, "size": S, "start": I, "count": K}``: ``K`` calls of
  ``encode`` on ``S`` consecutive texts each (from text ``I``, wrapping) -> ms per call;
- ``{"op": "latency", "texts": [...], "calls": K, "warmup_s": W}``: untimed calls for ``W``
  seconds (at least one, timed apart as ``first_ms``), then ``encode_one`` on each text in
  turn, ``K`` calls -> ms per call;
- ``{"op": "embed", "texts": [...], "batch_size": B}``: the float32 vectors (base64);
- ``{"op": "memory"}``: current and peak RSS (MB); ``{"op": "quit"}``.

Library output on stdout is moved to stderr so it cannot corrupt the protocol.
"""

from __future__ import annotations

import argparse
import base64
import importlib
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, TextIO

# What each engine imports before it loads; timed apart from loading.
IMPORTS = {
    "minilm_fast": ["minilm_fast"],
    "minilm_fast-bf16": ["minilm_fast"],
    "minilm_fast-int8": ["minilm_fast"],
    "onnxruntime": ["onnxruntime"],
    "openvino": ["openvino"],
    "ctranslate2": ["ctranslate2"],
    "ctranslate2-int8": ["ctranslate2"],
    "sentence-transformers": ["torch", "sentence_transformers"],
    "minilm_fast-baseline": ["minilm_fast"],
    "minilm_fast-bf16-baseline": ["minilm_fast"],
    "minilm_fast-int8-baseline": ["minilm_fast"],
}
LOAD_PROBE = "how do I reset my email password?"


def memory_mb() -> dict[str, float]:
    """VmRSS and VmHWM (peak resident set) of this process, in MB (Linux)."""
    out = {}
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out["rss_mb" if key == "VmRSS" else "peak_mb"] = int(value.split()[0]) / 1024
    except OSError:
        import resource

        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out["peak_mb"] = peak_kb / 1024
    return out


def protocol_stream() -> TextIO:
    """A private copy of stdout for answers; fd 1 then points at stderr."""
    fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(fd, "w", buffering=1, encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--engine", required=True)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--peers-dir", type=Path, required=True)
    parser.add_argument("--threads", type=int, required=True)
    args = parser.parse_args()
    out = protocol_stream()

    def send(obj: dict[str, Any]) -> None:
        out.write(json.dumps(obj) + "\n")

    try:
        start = time.perf_counter()
        for module in IMPORTS.get(args.engine, []):
            importlib.import_module(module)
        imported = time.perf_counter()
        from peers import engines

        engine = engines.load(args.engine, args.model_dir, args.peers_dir, args.threads)
        first = engine.encode_one(LOAD_PROBE)
        loaded = time.perf_counter()
        if first.ndim != 1:
            raise RuntimeError(f"encode_one gave shape {first.shape}, not one vector")
    except Exception as exc:  # reported to the driver, which skips this engine
        send({"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})
        return 1
    send(
        {
            "ready": True,
            "import_s": imported - start,
            "load_s": loaded - imported,
            "versions": engine.versions,
            "compute": engine.compute,
            "python": sys.executable,
            **memory_mb(),
        }
    )

    workloads: dict[str, list[str]] = {}
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        try:
            if op == "quit":
                send({"ok": True})
                break
            if op == "set":
                workloads[cmd["name"]] = cmd["texts"]
                send({"ok": True})
            elif op == "run":
                texts = workloads[cmd["name"]][: cmd.get("limit")]
                cpu0, t0 = time.process_time(), time.perf_counter()
                vectors = engine.encode(texts, cmd["batch_size"])
                wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
                if vectors.shape[0] != len(texts):
                    raise RuntimeError(f"{vectors.shape} for {len(texts)} texts")
                send({"wall": wall, "cpu": cpu, "n": len(texts)})
            elif op == "requests":
                texts = workloads[cmd["name"]]
                size, at = cmd["size"], cmd["start"]
                ms = []
                cpu0, t0 = time.process_time(), time.perf_counter()
                for _ in range(cmd["count"]):
                    chunk = [texts[(at + i) % len(texts)] for i in range(size)]
                    at += size
                    c0 = time.perf_counter()
                    engine.encode(chunk, size)
                    ms.append((time.perf_counter() - c0) * 1e3)
                wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
                send({"ms": ms, "wall": wall, "cpu": cpu})
            elif op == "latency":
                texts = cmd["texts"]
                # Untimed calls for `warmup_s` (at least one): the block starts after an idle
                # machine or another engine's block, and the first calls then run slower than
                # in a service under steady load. The first is reported on its own.
                first_ms: float | None = None
                warm_until = time.perf_counter() + cmd.get("warmup_s", 0.0)
                while first_ms is None or time.perf_counter() < warm_until:
                    c0 = time.perf_counter()
                    engine.encode_one(texts[0])
                    if first_ms is None:
                        first_ms = (time.perf_counter() - c0) * 1e3
                ms = []
                cpu0, t0 = time.process_time(), time.perf_counter()
                for i in range(cmd["calls"]):
                    c0 = time.perf_counter()
                    engine.encode_one(texts[i % len(texts)])
                    ms.append((time.perf_counter() - c0) * 1e3)
                wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
                send({"ms": ms, "wall": wall, "cpu": cpu, "first_ms": first_ms})
            elif op == "embed":
                vectors = engine.encode(cmd["texts"], cmd["batch_size"]).astype("<f4")
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
