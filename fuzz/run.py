#!/usr/bin/env python3
"""Build the fuzz targets once and run each for a bounded time; `make fuzz` calls this.

Works with the stable toolchain: cargo fuzz passes nightly-only flags (-Z sanitizer=...), which
stable rustc accepts when RUSTC_BOOTSTRAP=1 is set (its AddressSanitizer runtime ships with
stable's rust-std). Each target runs its committed seeds (fuzz/seeds/TARGET, read only) plus a
working corpus that grows between runs (fuzz/corpus/TARGET, not committed); crashes, leaks,
timeouts and out-of-memory inputs go to fuzz/artifacts/TARGET/. Writes target/fuzz-summary.json:

    {"targets": [{"name": ..., "executions": ..., "seconds": ..., "findings": ...}, ...], ...}

and exits 1 if any target had a finding, printing how to reproduce it.

Usage: python3 fuzz/run.py [--seconds 50] [--sanitizer address|none] [TARGET ...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FUZZ = ROOT / "fuzz"
TARGETS = ("encode", "config", "weights")
# Per target: the largest input worth trying (the tiny model's weights file is ~7 KB).
MAX_LEN = {"encode": 4096, "config": 4096, "weights": 16384}
FINDING_PREFIXES = ("crash-", "leak-", "timeout-", "oom-")
TRIPLE = (
    "x86_64-unknown-linux-gnu" if os.uname().machine == "x86_64" else "aarch64-unknown-linux-gnu"
)


def build(sanitizer: str, env: dict[str, str]) -> float:
    start = time.monotonic()
    # cargo fuzz's default build: optimised, with debug assertions and overflow checks. Sixteen
    # codegen units instead of one: the build (candle under ASan and coverage) takes ~half as long
    # on two cores, for a little less speed per run.
    cmd = ["cargo", "fuzz", "build", "--sanitizer", sanitizer, "--codegen-units", "16"]
    print("==", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)
    return time.monotonic() - start


def stat(log: str, name: str) -> int | None:
    match = re.search(rf"^stat::{name}:\s+(\d+)", log, re.MULTILINE)
    return int(match.group(1)) if match else None


def run_target(name: str, seconds: int, env: dict[str, str]) -> dict[str, object]:
    binary = FUZZ / "target" / TRIPLE / "release" / name
    corpus = FUZZ / "corpus" / name
    artifacts = FUZZ / "artifacts" / name
    corpus.mkdir(parents=True, exist_ok=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    before = set(artifacts.iterdir())
    cmd = [
        str(binary),
        str(corpus),
        str(FUZZ / "seeds" / name),
        f"-max_total_time={seconds}",
        f"-max_len={MAX_LEN[name]}",
        "-timeout=20",
        "-rss_limit_mb=2048",
        "-print_final_stats=1",
        f"-artifact_prefix={artifacts}/",
    ]
    dictionary = FUZZ / f"{name}.dict"
    if dictionary.exists():
        cmd.append(f"-dict={dictionary}")
    print(f"== fuzzing {name} for {seconds} s", flush=True)
    start = time.monotonic()
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True, errors="replace"
    )
    elapsed = time.monotonic() - start
    log = proc.stderr
    log_path = ROOT / "target" / f"fuzz-{name}.log"
    log_path.write_text(log)

    new = sorted(
        p for p in set(artifacts.iterdir()) - before if p.name.startswith(FINDING_PREFIXES)
    )
    executions = stat(log, "number_of_executed_units")
    if executions is None:
        done = re.search(r"^Done (\d+) runs", log, re.MULTILINE)
        executions = int(done.group(1)) if done else 0
    findings = len(new)
    if proc.returncode != 0 and findings == 0:
        findings = 1  # it stopped on something it did not save (the log says what)
    # The last lines say why a run stopped; keep them on the console, the rest in the log file.
    tail = [line for line in log.splitlines() if line.startswith(("Done", "stat::average"))]
    print("\n".join(tail))
    if findings:
        print("\n".join(log.splitlines()[-60:]), file=sys.stderr)
    return {
        "name": name,
        "executions": executions,
        "seconds": round(elapsed, 1),
        "findings": findings,
        "new_corpus_units": stat(log, "new_units_added"),
        "corpus_files": sum(1 for _ in corpus.iterdir()),
        "peak_rss_mb": stat(log, "peak_rss_mb"),
        "exit_code": proc.returncode,
        "artifacts": [str(p.relative_to(ROOT)) for p in new],
        "log": str(log_path.relative_to(ROOT)),
    }


def remove_scratch() -> None:
    """Delete the scratch folders of target processes that have ended (see scratch_dir)."""
    for base in {Path("/dev/shm"), Path(tempfile.gettempdir())}:
        for folder in base.glob("minilm-fast-fuzz-*"):
            pid = folder.name.split("-")[3]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("targets", nargs="*", help=f"some of {', '.join(TARGETS)} (default: all)")
    parser.add_argument("--seconds", type=int, default=50, help="fuzzing time per target")
    parser.add_argument("--sanitizer", default="address", choices=["address", "none"])
    args = parser.parse_args()
    targets = args.targets or list(TARGETS)
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown:
        parser.error(f"unknown targets {unknown}; the targets are {', '.join(TARGETS)}")

    env = dict(os.environ, RUSTC_BOOTSTRAP="1")
    (ROOT / "target").mkdir(exist_ok=True)
    rustc = subprocess.run(
        ["rustc", "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    build_seconds = build(args.sanitizer, env)

    results = [run_target(name, args.seconds, env) for name in targets]
    remove_scratch()
    summary = {
        "targets": results,
        "build_seconds": round(build_seconds, 1),
        "sanitizer": args.sanitizer,
        "toolchain": rustc,
    }
    out = ROOT / "target" / "fuzz-summary.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"== wrote {out.relative_to(ROOT)} (build {build_seconds:.0f} s)")
    for r in results:
        runs, seconds = r["executions"], r["seconds"]
        print(f"   {r['name']:8} {runs:>9} runs in {seconds:>5} s, {r['findings']} findings")
    found = [r for r in results if r["findings"]]
    for r in found:
        for artifact in r["artifacts"]:
            binary = (FUZZ / "target" / TRIPLE / "release" / str(r["name"])).relative_to(ROOT)
            reproduce = f"{binary} {artifact}  (runs that input once, with the backtrace)"
            print(f"FINDING in {r['name']}: {artifact}\n  reproduce: {reproduce}", file=sys.stderr)
        if not r["artifacts"]:
            print(
                f"FINDING in {r['name']}: exit code {r['exit_code']}, see {r['log']}",
                file=sys.stderr,
            )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
