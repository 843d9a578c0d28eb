"""The quick start: get the model, embed a small sample of real text, show what came out.

Run with `make run` (builds and installs first) or `python examples/quickstart.py`.
"""

from __future__ import annotations

import time

import numpy as np

from minilm_fast import Encoder

# Short news-style and caption-style sentences, the kind of text people embed most.
SAMPLE = [
    "A man is playing a guitar on stage.",
    "Someone performs a song with an acoustic guitar.",
    "The central bank raised interest rates by a quarter point.",
    "Borrowing costs went up after the policy meeting.",
    "A cat is sleeping on a sunny windowsill.",
    "A kitten naps in the sunshine by the window.",
    "The football team won the championship in overtime.",
    "Heavy rain caused flooding across the northern districts.",
]
QUERIES = ["Who won the final?", "What did the central bank do?", "pets resting in the sun"]


def main() -> None:
    started = time.perf_counter()
    encoder = Encoder()
    print(f"{encoder}  (ready in {time.perf_counter() - started:.2f} s)")
    print(f"model files: {encoder.model_path}")

    vectors = encoder.encode(SAMPLE)
    print(f"\nencode(SAMPLE) -> shape {vectors.shape}, dtype {vectors.dtype}")

    print("\ncosine similarity (rows and columns: sample sentences)")
    similarity = vectors @ vectors.T
    for i, row in enumerate(similarity):
        print(f"  [{i}] " + " ".join(f"{v:5.2f}" for v in row) + f"  {SAMPLE[i][:40]}")

    print("\nnearest neighbours")
    for query, scores in zip(QUERIES, encoder.encode(QUERIES) @ vectors.T):
        best = int(np.argmax(scores))
        print(f"  {query!r:38} -> {SAMPLE[best]!r} ({scores[best]:.3f})")

    corpus = [f"{s} ({i})" for i, s in enumerate(SAMPLE * 64)]
    encoder.encode(corpus[:32])  # warm-up
    started = time.perf_counter()
    encoder.encode(corpus, batch_size=32)
    elapsed = time.perf_counter() - started
    print(
        f"\nthroughput: {len(corpus) / elapsed:,.0f} sentences/s "
        f"({len(corpus)} short sentences, {encoder.threads} threads)"
    )


if __name__ == "__main__":
    main()
