"""Build tests/data/long_docs.json: a retrieval set of long documents for the chunking test.

Why: sentence-transformers cuts every text at 256 word pieces, so a query about the end of a
long document cannot find it. `long_text="chunk"` should fix that without hurting queries
about the beginning. The test needs documents well past 256 word pieces whose relevant
passage sits at a known position, and queries that are paraphrases of that passage.

How: from the STS Benchmark dev split (score<TAB>sentence1<TAB>sentence2), pairs scored >= 4
are paraphrases. Each document is 24 sentences of pairs scored below 4 (≈ 280-420 word pieces);
one of them is the target and each query is the target pair's sentence2. Targets are spread
evenly over the document, so about half sit beyond the first 256 word pieces. Deterministic
(seeded), no model needed:

    python scripts/make_long_docs.py --stsb ../shared/data/stsb_dev.tsv
"""

from __future__ import annotations

import argparse
import json
import pathlib
import random

SENTENCES_PER_DOC = 24
DOCS = 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stsb", type=pathlib.Path, required=True, help="stsb_dev.tsv")
    parser.add_argument(
        "--out",
        type=pathlib.Path,
        default=pathlib.Path(__file__).resolve().parent.parent / "tests/data/long_docs.json",
    )
    args = parser.parse_args()
    pairs = []
    for line in args.stsb.read_text(encoding="utf-8").splitlines():
        score, first, second = line.split("\t")
        pairs.append((float(score), first.strip(), second.strip()))
    rng = random.Random(20261129)
    paraphrases = [p for p in pairs if p[0] >= 4.0 and p[1].lower() != p[2].lower()]
    rng.shuffle(paraphrases)
    targets = paraphrases[:DOCS]
    used = {p[1] for p in targets}
    filler = sorted({s for p in pairs if p[0] < 4.0 for s in p[1:]} - used)
    rng.shuffle(filler)
    documents, queries = [], []
    for index, (_, passage, query) in enumerate(targets):
        body = filler[index * (SENTENCES_PER_DOC - 1) : (index + 1) * (SENTENCES_PER_DOC - 1)]
        assert len(body) == SENTENCES_PER_DOC - 1, "not enough filler sentences"
        position = round(index * (SENTENCES_PER_DOC - 1) / (DOCS - 1))  # spread evenly
        body.insert(position, passage)
        documents.append(" ".join(body))
        queries.append({"query": query, "document": index, "sentence": position})
    payload = {
        "source": "STS Benchmark dev split (CC BY-SA 4.0 scores; sentences: their sources)",
        "generator": "scripts/make_long_docs.py",
        "sentences_per_document": SENTENCES_PER_DOC,
        "documents": documents,
        "queries": queries,
    }
    args.out.write_text(json.dumps(payload, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {len(documents)} documents and {len(queries)} queries to {args.out}")


if __name__ == "__main__":
    main()
