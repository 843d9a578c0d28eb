"""Real texts from the committed test data, for tests and the scaling benchmark
(``scripts/scaling_bench.py`` puts this folder on ``sys.path``)."""

from __future__ import annotations

import json
import pathlib
import re

DATA = pathlib.Path(__file__).resolve().parents[1] / "data"


def real_sentences() -> list[str]:
    """Distinct real sentences: the parity corpus's short texts and the STS-B sentences of
    long_docs.json, split at sentence ends."""
    parity = json.loads((DATA / "parity_texts.json").read_text(encoding="utf-8"))
    documents = json.loads((DATA / "long_docs.json").read_text(encoding="utf-8"))["documents"]
    split = [s.strip() for d in documents for s in re.split(r"(?<=[.!?])\s+", d)]
    sentences = [t for t in parity if 20 < len(t) < 200] + [s for s in split if len(s) > 10]
    return list(dict.fromkeys(sentences))
