"""One caller, calls back to back: this wheel's median latency per call against a baseline
wheel's, over several fresh processes of each, alternating.

    make baseline BASELINE_REV=376f5f6 BASELINE_DIR=$PWD/.cache/baseline-376
    python benches/one_caller.py --model-dir DIR \
        --baseline-python .cache/baseline-376/venv/bin/python

Why processes: in one run of `benches/concurrency.py` (2026-12-06) the float32 coalescing
worker ran its one-caller cells ~30% slower than the other two float32 workers in every round,
while the same wheel toggled between `coalesce=True` and `False` inside one process measured
the same. A process's own luck (where its weights' pages landed, say) is worth tens of percent
here, so each side gets several processes and the report gives the median of their medians.
Inside each process of this wheel, blocks with coalescing on and off alternate.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from peers import workloads

#: What each process runs: `blocks` blocks of `calls` one-text encodes, coalescing on and off
#: alternating when the Encoder has it; prints the median latency (ms) of each setting.
WORKER = """
import json, statistics, sys, time
from minilm_fast import Encoder
model_dir, compute, texts_path, blocks, calls = sys.argv[1:6]
texts = json.load(open(texts_path))
encoder = Encoder(model_dir, threads=2, compute=compute)
coalescer = getattr(encoder, "_coalescer", None)
settings = ["on", "off"] if coalescer is not None else ["on"]
medians = {s: [] for s in settings}
for block in range(int(blocks)):
    for setting in settings if block % 2 else settings[::-1]:
        if coalescer is not None:
            coalescer.enabled = setting == "on"
        times = []
        for call in range(int(calls)):  # every setting and side: the same texts in a block
            text = texts[(block * int(calls) + call) % len(texts)]
            start = time.perf_counter()
            encoder.encode(text)
            times.append(time.perf_counter() - start)
        medians[setting].append(statistics.median(times) * 1e3)
print(json.dumps({s: statistics.median(v) for s, v in medians.items()}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--baseline-python", required=True)
    parser.add_argument("--texts", type=Path, default=Path("../shared/data/stsb_dev.tsv"))
    parser.add_argument("--computes", default="float32,int8")
    parser.add_argument("--processes", type=int, default=3, help="per side (default 3)")
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--calls", type=int, default=200, help="per block")
    args = parser.parse_args()
    texts = workloads.read_texts(args.texts) if args.texts.is_file() else None
    texts = texts or workloads.generate_sentences(3000)
    texts_path = Path(".cache/one_caller_texts.json")
    texts_path.parent.mkdir(exist_ok=True)
    texts_path.write_text(json.dumps(texts), encoding="utf-8")
    sides = {"this wheel": sys.executable, "baseline": args.baseline_python}
    print("| compute | side | median ms per process | median |")
    print("|---|---|---|---:|")
    for compute in args.computes.split(","):
        results: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
        for _ in range(args.processes):
            for side, python in sides.items():
                command = [python, "-c", WORKER, args.model_dir, compute, str(texts_path)]
                command += [str(args.blocks), str(args.calls)]
                out = subprocess.run(command, check=True, capture_output=True, text=True)
                results[side].append(json.loads(out.stdout))
        summary = {}
        for side, rows in results.items():
            for setting in rows[0]:
                values = [row[setting] for row in rows]
                name = side if setting == "on" else f"{side}, coalesce=False"
                summary[name] = statistics.median(values)
                shown = ", ".join(f"{v:.3f}" for v in values)
                print(f"| {compute} | {name} | {shown} | {summary[name]:.3f} |")
        ratio = summary["this wheel"] / summary["baseline"]
        print(f"| {compute} | this wheel ÷ baseline | | **{ratio:.3f}** |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
