"""Helpers for the reliability tests (``tests/reliability/test_reliability_*.py``).

Isolated runs: :func:`run_python` runs a snippet in a fresh interpreter, so a crash, a hang or
an allocation shows up as that process's exit status, timeout or peak RSS, not as damage to the
test process. The snippet gets :data:`PRELUDE` (``rss_mb``, ``peak_mb``, ``reset_peak``,
``emit``) and reports
with ``emit(key=value, ...)``, one JSON line that :func:`run_python` returns as a dict.

Figures for ``docs/RELIABILITY.md``: tests call :func:`record` with pytest's ``record_property``;
``scripts/reliability_report.py`` runs the tests with ``--junitxml`` and reads the properties back
(``category``: the row of the table; ``cases``: inputs tried; ``fault``, ``load`` and
``soak_*``: the other sections).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.tiny_bert import write_tiny_bert

TESTS = Path(__file__).resolve().parents[1]

#: Files a model folder needs besides config.json and the weights: the real tokenizer's.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "sentence_bert_config.json",
)

PRELUDE = textwrap.dedent(
    """
    import json as _json, os as _os, resource as _resource, sys as _sys

    def rss_mb():
        # Resident memory now, from /proc (Linux); the peak where /proc is missing.
        try:
            with open("/proc/self/statm") as f:
                pages = int(f.read().split()[1])
            return pages * _os.sysconf("SC_PAGE_SIZE") / 2**20
        except OSError:
            return peak_mb()

    def peak_mb():
        # Peak resident memory since the start or the last reset_peak() (VmHWM on Linux).
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 2**10
        except OSError:
            pass
        peak = _resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if _sys.platform == "darwin" else peak / 2**10

    def reset_peak():
        # Start a new peak at the current resident memory (Linux >= 4.0; else a no-op).
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass

    def emit(**figures):
        print("RESULT " + _json.dumps(figures), flush=True)
    """
)


@dataclass
class Outcome:
    """What an isolated run did: its exit status, its ``emit``-ted figures and its output."""

    returncode: int
    result: dict[str, Any]
    stdout: str
    stderr: str

    def describe(self) -> str:
        return f"exit status {self.returncode}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


def run_python(
    code: str,
    *,
    timeout: float,
    args: tuple[str, ...] = (),
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> Outcome:
    """Run ``PRELUDE + code`` in a fresh interpreter; fail the test on a crash or a hang.

    The tests folder is on ``sys.path`` (for ``_tiny_bert``), ``sys.argv[1:]`` is ``args``.
    With ``check`` a non-zero exit status fails the test with the process's output.
    """
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])}
    full_env.update(env or {})
    try:
        proc = subprocess.run(
            [sys.executable, "-c", PRELUDE + textwrap.dedent(code), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"the isolated run hung: no exit within {timeout} s") from exc
    result: dict[str, Any] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result.update(json.loads(line[len("RESULT ") :]))
    outcome = Outcome(proc.returncode, result, proc.stdout, proc.stderr)
    if check:
        assert proc.returncode == 0, outcome.describe()
    return outcome


def record(record_property: Callable[[str, object], None], **figures: object) -> None:
    """Record figures for the reliability report (JUnit XML properties)."""
    for name, value in figures.items():
        record_property(name, value)


def tiny_model_with_tokenizer(folder: Path, model_dir: Path, **sizes: Any) -> Path:
    """A random tiny BERT that uses the real model's tokenizer (vocabulary of 30522).

    Everything an Encoder runs (tokenization, batching, the native boundary, the engine) runs
    as for all-MiniLM-L6-v2, at a small fraction of the compute.
    """
    settings: dict[str, Any] = {
        "hidden": 32,
        "layers": 2,
        "heads": 4,
        "intermediate": 64,
        "vocab": 30522,
        "max_positions": 512,
        "seed": 5,
    }
    settings.update(sizes)
    write_tiny_bert(folder, **settings)
    for name in TOKENIZER_FILES:
        if (model_dir / name).is_file():
            shutil.copyfile(model_dir / name, folder / name)
    return folder
