"""The progress bar of an encode call: tqdm's when shown, one that shows nothing otherwise.

The bar counts the sequences the engine runs: one per text that fits in ``max_seq_length``,
one per window of a chunked long text. A 5 MB text chunked into thousands of windows thus
moves the bar window by window instead of sitting at ``0/1`` until the end.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Protocol

__all__ = ["Bar", "add_to_total", "progress", "shows_bar"]

logger = logging.getLogger("minilm_fast")


class Bar(Protocol):
    """What the pipeline asks of a progress bar (a subset of tqdm's interface)."""

    total: float | None

    def update(self, n: float = 1) -> object: ...

    def refresh(self) -> object: ...


class _Hidden:
    """A bar that shows nothing."""

    total: float | None = None

    def update(self, n: float = 1) -> object:
        return None

    def refresh(self) -> object:
        return None


def shows_bar(show: bool | None) -> bool:
    """Whether a call with ``show_progress_bar=show`` shows a bar: `None` shows one when the
    ``minilm_fast`` logger is at INFO level or lower, as sentence-transformers does."""
    return logger.getEffectiveLevel() <= logging.INFO if show is None else bool(show)


@contextlib.contextmanager
def progress(total: int | None, show: bool | None) -> Iterator[Bar]:
    """A bar over `total` sequences (None: unknown yet), if `shows_bar(show)`."""
    if not shows_bar(show):
        yield _Hidden()
        return
    from tqdm.auto import tqdm  # type: ignore[import-untyped]  # lazily: most calls never show one

    # "text": a chunk window counts as one (the bar total grows by the extra windows).
    with tqdm(total=total, desc="Encoding", unit="text") as bar:
        yield bar


def add_to_total(bar: Bar, extra: int) -> None:
    """Grow the bar's total by `extra` sequences: chunk windows found once a window of texts
    has been tokenized (a text of unknown length counts once until then)."""
    if extra and bar.total is not None:
        bar.total += extra
        bar.refresh()
