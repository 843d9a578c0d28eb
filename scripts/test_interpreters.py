"""Install the one release wheel into a fresh virtualenv of every supported CPython and run the
smoke suite (tests/smoke) there.

    python scripts/test_interpreters.py dist/minilm_fast-*.whl     # `make test-interpreters`

Each interpreter 3.9 to 3.13 is looked up under pyenv (~/.pyenv/versions/3.X.*, the newest
patch release), then as `python3.X` on PATH; a missing one is an error, not a skip, so the
check cannot pass by finding nothing. Dependencies and pytest come from the package index; the
optional extras the smoke suite exercises ([parquet], [langchain]) are installed where the
interpreter has wheels for them, and the tests that need them skip with the reason where it has
not. The tests themselves run with the caller's environment (the Makefile's offline test
settings).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
MINORS = (9, 10, 11, 12, 13)
EXTRAS = "parquet,langchain"
TEST_PACKAGES = ["pytest>=8", "pytest-timeout>=2"]


def find_interpreter(minor: int) -> pathlib.Path | None:
    pyenv = pathlib.Path(os.environ.get("PYENV_ROOT", pathlib.Path.home() / ".pyenv"))
    installed = sorted(
        (pyenv / "versions").glob(f"3.{minor}.*/bin/python"),
        key=lambda p: [int(n) for n in re.findall(r"\d+", p.parent.parent.name)],
    )
    if installed:
        return installed[-1]
    # pyenv's shims are on PATH too, but fail for a version that is not selected.
    on_path = shutil.which(f"python3.{minor}")
    if on_path and "shims" not in pathlib.Path(on_path).parts:
        return pathlib.Path(on_path)
    return None


def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, text=True, **kwargs)  # type: ignore[call-overload,no-any-return]


def install(python: pathlib.Path, wheel: pathlib.Path) -> str:
    """The wheel, its dependencies and pytest from the index; returns what was left out."""
    env = {k: v for k, v in os.environ.items() if k not in ("PIP_NO_INDEX", "PIP_FIND_LINKS")}
    pip = [str(python), "-m", "pip", "install", "-q", "--only-binary=:all:"]
    if run([*pip, f"{wheel}[{EXTRAS}]", *TEST_PACKAGES], env=env).returncode == 0:
        return ""
    # No wheels of an extra for this interpreter: the wheel itself must still install.
    run([*pip, str(wheel), *TEST_PACKAGES], env=env, check=True)
    return f"extras [{EXTRAS}] not installable"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheel", type=pathlib.Path, help="the release wheel to install")
    parser.add_argument(
        "--venvs", type=pathlib.Path, default=ROOT / ".cache" / "interpreters",
        help="where the fresh virtualenvs go (each is recreated)",
    )  # fmt: skip
    args = parser.parse_args()
    wheel = args.wheel.resolve()
    if not wheel.is_file():
        parser.error(f"no wheel at {wheel}")

    results: list[tuple[str, str, str]] = []
    failed = False
    for minor in MINORS:
        interpreter = find_interpreter(minor)
        if interpreter is None:
            results.append((f"3.{minor}", "-", "FAILED: no interpreter found"))
            failed = True
            continue
        venv = args.venvs / f"py3.{minor}"
        shutil.rmtree(venv, ignore_errors=True)
        run([str(interpreter), "-m", "venv", str(venv)], check=True)
        python = venv / "bin" / "python"
        note = install(python, wheel)
        version = run(
            [str(python), "-c", "import platform; print(platform.python_version())"],
            capture_output=True,
            check=True,
        ).stdout.strip()
        tests = run(
            [str(python), "-m", "pytest", "tests/smoke", "-p", "no:cacheprovider", "-q", "-rs"],
            cwd=ROOT,
            capture_output=True,
        )
        print(tests.stdout[-4000:], tests.stderr[-2000:], sep="\n", flush=True)
        lines = tests.stdout.strip().splitlines()
        summary = lines[-1].strip("= ") if lines else "no output"
        skips = [line for line in lines if line.startswith("SKIPPED")]
        detail = "; ".join(filter(None, [summary, note, *skips]))
        results.append((f"3.{minor}", version, detail))
        failed |= tests.returncode != 0

    print(f"\nwheel: {wheel.name}")
    print("| Python | interpreter | smoke suite |\n|---|---|---|")
    for python_minor, version, detail in results:
        print(f"| {python_minor} | {version} | {detail} |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
