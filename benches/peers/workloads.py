"""The texts every engine is given: deterministic, built once by the driver, sent to each worker.

- ``short``: the 3,000 sentences of the STS-B dev split when ``--texts stsb_dev.tsv`` is given
  (``score<TAB>sentence1<TAB>sentence2``; a file of one text per line works too), otherwise
  3,000 STS-B-like sentences from :func:`generate_sentences` (5-40 word pieces, seeded). With
  STS-B, :func:`stsb_scores` gives the pairs' gold scores for the quality columns.
- ``long``: documents of consecutive sentences, each at least 300 word pieces, so every engine
  truncates all of them at 256.
- ``query``: one short query (~10 word pieces) at a time, cycling through :data:`QUERIES`.
- the sweep: texts cut to a target number of word pieces (:func:`texts_of_length`).
"""

from __future__ import annotations

import csv
import random
from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer

# Searches people type: 8-10 word pieces each, [CLS] and [SEP] included.
QUERIES = [
    "how do I reset my email password?",
    "best pizza places near the central station",
    "what time does the science museum open today",
    "symptoms of a vitamin d deficiency in adults",
    "cheap flights from berlin to rome in may",
    "how to fix a leaking kitchen tap quickly",
    "who won the football match last night",
    "recipe for a simple tomato soup with basil",
    "is it going to rain here tomorrow morning",
    "train tickets from the city to the airport",
    "how long should I boil an egg",
    "return policy for orders placed online",
    "python read a text file line by line",
    "weather forecast for the coming weekend",
    "how many calories are in one banana",
    "opening hours of the public city library",
]

# Used by scripts/prepare_peers.py and by compare.py before it measures: every engine must
# give these the same vectors (cosine >= 0.9999 for float32 engines).
VERIFY_TEXTS = [
    "A man is playing a guitar.",
    "The new movie is awesome!",
    "",
    "Das ist ein Satz auf Deutsch, mit Umlauten: äöü.",
    "東京は日本の首都です。",
    "Emoji 🙂 and punctuation ... (really?) -- yes; 42% of 1,000.",
    "how do I reset my password?",
    " ".join(["The committee reviewed the annual budget and approved new funding."] * 40),
    "word " * 300,
]

_SUBJECTS = [
    "A man", "A woman", "The girl", "A small boy", "Two dogs", "An old woman", "The chef",
    "A group of children", "The president", "A cat", "Three men", "The police officer",
    "A young couple", "The team", "Several protesters", "A bird", "The company",
    "A musician wearing a red hat", "Local officials", "The stock market",
]  # fmt: skip
_VERBS = [
    "is playing", "is cutting", "is riding", "watches", "is painting", "carries", "is eating",
    "reported", "announced", "is jumping over", "is slicing", "is walking along", "rejected",
    "is climbing", "is cleaning", "signed", "is reading", "is chasing", "defended", "sold",
]  # fmt: skip
_OBJECTS = [
    "a guitar", "an onion", "a horse", "the sunset", "a fence", "a heavy box", "a bicycle",
    "the new budget plan", "a ball", "the agreement", "a newspaper", "the mountain",
    "a large pizza", "the proposal", "a wooden boat", "the quarterly results", "a kite",
    "the old bridge", "a bowl of soup", "the election results",
]  # fmt: skip
_TAILS = [
    "", "", "", " in the park", " on Tuesday", " near the river", " after a long meeting",
    " despite heavy rain", " with great enthusiasm", " for the third time this year",
    " while the crowd cheered loudly", " according to a statement released late on Friday",
    " in front of the crumbling nineteenth-century town hall", " at 5:30 pm",
]  # fmt: skip
_SECOND = [
    "", "", "", "", " and then leaves.", " but nobody notices.",
    " while another person watches from a distance.",
    " and the officials said further talks would take place next week.",
    " because the weather forecast predicted strong winds along the coast.",
]  # fmt: skip


def generate_sentences(n: int, seed: int = 0) -> list[str]:
    """STS-B-like sentences (captions, headlines): 5-40 word pieces, about 15 on average."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        text = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}"
        text += rng.choice(_TAILS)
        second = rng.choice(_SECOND)
        out.append(text + (second if second else "."))
    return out


def _stsb_rows(lines: list[str]) -> list[list[str]] | None:
    rows = list(csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE))
    return rows if rows and all(len(r) == 3 for r in rows) else None


def read_texts(path: Path) -> list[str]:
    """STS-B ``score<TAB>s1<TAB>s2`` lines give s1 then s2 of each pair, file order (the order of
    stsb_dev_reference.npy); other files give one text per non-empty line."""
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = _stsb_rows(lines)
    if rows is not None:
        return [r[1] for r in rows] + [r[2] for r in rows]
    texts = [line for line in lines if line.strip()]
    if not texts:
        raise SystemExit(f"{path}: no texts")
    return texts


def stsb_scores(path: Path) -> list[float] | None:
    """The gold similarity of each pair when ``path`` is STS-B's ``score<TAB>s1<TAB>s2`` (first
    column a number), else None. Pair ``i`` is texts ``i`` and ``n + i`` of :func:`read_texts`
    (``n`` pairs)."""
    rows = _stsb_rows(path.read_text(encoding="utf-8").splitlines())
    if rows is None:
        return None
    try:
        return [float(r[0]) for r in rows]
    except ValueError:
        return None


def long_documents(sentences: Sequence[str], n: int, tokenizer: Tokenizer) -> list[str]:
    """``n`` documents of consecutive sentences (wrapping), each >= 300 word pieces."""
    docs = []
    for d in range(n):
        i = (d * 37) % len(sentences)
        parts: list[str] = []
        pieces = 0
        while pieces < 300:
            s = sentences[i % len(sentences)].strip()
            parts.append(s)
            pieces += len(tokenizer.encode(s, add_special_tokens=False).ids)
            i += 1
        docs.append(" ".join(parts))
    return docs


def texts_of_length(
    sentences: Sequence[str], n: int, pieces: int, tokenizer: Tokenizer
) -> list[str]:
    """``n`` texts of about ``pieces`` word pieces ([CLS]/[SEP] included), cut at a word end."""
    if pieces >= 256:
        return long_documents(sentences, n, tokenizer)
    out = []
    for doc in long_documents(sentences, n, tokenizer):
        enc = tokenizer.encode(doc, add_special_tokens=False)
        # offsets of the last word piece that fits beside [CLS] and [SEP]
        end = enc.offsets[min(pieces - 2, len(enc.offsets)) - 1][1]
        while end < len(doc) and not doc[end].isspace():  # don't split a word
            end += 1
        out.append(doc[:end])
    return out


def repeat_to(texts: Sequence[str], n: int) -> list[str]:
    return [texts[i % len(texts)] for i in range(n)]
