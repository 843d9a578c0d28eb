"""Long texts: what truncation cuts, what chunking keeps, and retrieval quality on long documents.

tests/data/long_docs.json (scripts/make_long_docs.py) holds documents of ~300-440 word pieces
built from STS-B sentences, each hiding one passage whose STS-B paraphrase is the query.
"""

from __future__ import annotations

import json
import pathlib
import warnings

import numpy as np
import numpy.typing as npt
import pytest
from tokenizers import Tokenizer

from minilm_fast import Encoder, TruncationWarning

DATA = pathlib.Path(__file__).parents[1] / "data"
WORDS = "The committee reviewed the annual budget and approved new funding for schools. "


@pytest.fixture(scope="module")
def long_docs() -> dict[str, object]:
    payload: dict[str, object] = json.loads((DATA / "long_docs.json").read_text("utf-8"))
    return payload


def _ranks(
    queries: npt.NDArray[np.float32], docs: npt.NDArray[np.float32], gold: list[int]
) -> npt.NDArray[np.int64]:
    """0-based rank of each query's relevant document among all documents."""
    scores = queries @ docs.T
    relevant = scores[np.arange(len(gold)), gold]
    ranks: npt.NDArray[np.int64] = (scores > relevant[:, None]).sum(axis=1)
    return ranks


def test_chunking_retrieves_at_least_as_well_as_truncation(
    encoder: Encoder, long_docs: dict[str, object]
) -> None:
    documents = long_docs["documents"]
    queries = long_docs["queries"]
    assert isinstance(documents, list) and isinstance(queries, list)
    gold = [q["document"] for q in queries]
    query_vectors = encoder.encode_query([q["query"] for q in queries])
    truncated, cut = encoder.encode_document(
        documents, long_text="truncate", return_truncation=True
    )
    chunked = encoder.encode_document(documents, long_text="chunk")
    assert cut.all(), "every document must be longer than the limit for this test to mean much"

    # Which targets start beyond the first window, i.e. are invisible to a truncating encoder.
    budget = encoder.max_seq_length - 2
    pieces_before = [
        len(encoder._tokenizer.word_pieces([" ".join(doc.split(". ")[: q["sentence"]])])[0])
        for doc, q in ((documents[q["document"]], q) for q in queries)
    ]
    hidden = np.array([n >= budget for n in pieces_before])
    assert hidden.sum() >= 10

    rank_truncated = _ranks(query_vectors, truncated, gold)
    rank_chunked = _ranks(query_vectors, chunked, gold)
    mrr_truncated = float((1 / (rank_truncated + 1)).mean())
    mrr_chunked = float((1 / (rank_chunked + 1)).mean())
    print(
        f"MRR truncate {mrr_truncated:.3f}, chunk {mrr_chunked:.3f}; hidden targets {hidden.sum()}"
    )
    assert mrr_chunked >= mrr_truncated
    # Where the answer lies past the cut, chunking must do strictly better.
    assert (1 / (rank_chunked[hidden] + 1)).mean() > (1 / (rank_truncated[hidden] + 1)).mean()


def test_chunk_is_the_word_piece_weighted_mean_of_window_embeddings(
    encoder: Encoder, model_dir: pathlib.Path
) -> None:
    """Rebuilt independently: tokenizers' own ids, windows cut by hand, the native encoder."""
    text = WORDS * 40  # ~600 word pieces
    stride = 20
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    pieces = tokenizer.encode(text, add_special_tokens=False).ids
    width = encoder.max_seq_length - 2
    starts = list(range(0, len(pieces) - stride, width - stride))
    assert len(starts) >= 3
    windows = [[101, *pieces[s : s + width], 102] for s in starts]
    assert windows[-1][-2] == pieces[-1], "the windows must cover the whole text"
    vectors = np.stack(
        [encoder.native.encode(np.array([w]), np.ones((1, len(w)), np.int64))[0] for w in windows]
    )
    weights = np.array([len(w) - 2 for w in windows], dtype=np.float64)
    expected = (vectors * weights[:, None]).sum(0) / weights.sum()
    expected /= np.linalg.norm(expected)

    got = encoder.encode(text, long_text="chunk", chunk_stride=stride)
    np.testing.assert_allclose(got, expected, atol=2e-6)
    assert np.linalg.norm(got) == pytest.approx(1.0, abs=1e-6)
    assert float(got @ encoder.encode(text)) < 0.9999  # it is not the truncated embedding


def test_chunk_mode_leaves_texts_that_fit_unchanged(encoder: Encoder) -> None:
    texts = ["A short sentence.", WORDS * 40, "", "Another short one about cats."]
    chunked, cut = encoder.encode(texts, long_text="chunk", return_truncation=True)
    truncated, cut_truncate = encoder.encode(texts, return_truncation=True)
    assert cut.tolist() == [False] * 4, "chunking cuts nothing"
    assert cut_truncate.tolist() == [False, True, False, False]
    for row in (0, 2, 3):  # other batch neighbours, hence float32 rounding, nothing more
        np.testing.assert_allclose(chunked[row], truncated[row], atol=1e-6)
    assert not np.allclose(chunked[1], truncated[1])


def test_chunked_long_texts_share_batches_and_do_not_depend_on_neighbours(encoder: Encoder) -> None:
    long_a, long_b = WORDS * 30, "Rivers flood the valley every spring. " * 90
    alone = [encoder.encode(t, long_text="chunk") for t in (long_a, long_b)]
    together = encoder.encode(["x", long_a, "y", long_b], long_text="chunk", batch_size=3)
    np.testing.assert_allclose(together[1], alone[0], atol=1e-6)
    np.testing.assert_allclose(together[3], alone[1], atol=1e-6)


def test_encoder_level_long_text_setting(model_dir: pathlib.Path) -> None:
    chunking = Encoder(model_dir, threads=1, long_text="chunk", chunk_stride=10)
    plain = Encoder(model_dir, threads=1)
    text = WORDS * 30
    np.testing.assert_allclose(
        chunking.encode(text), plain.encode(text, long_text="chunk", chunk_stride=10), atol=1e-6
    )
    np.testing.assert_allclose(
        chunking.encode(text, long_text="truncate"), plain.encode(text), atol=1e-6
    )


@pytest.mark.parametrize("stride", [-1, 254, 1000])
def test_bad_chunk_stride_is_refused(encoder: Encoder, stride: int) -> None:
    with pytest.raises(ValueError, match="chunk_stride"):
        encoder.encode(WORDS * 40, long_text="chunk", chunk_stride=stride)


def test_bad_long_text_mode_is_refused(encoder: Encoder, model_dir: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="long_text"):
        encoder.encode("x", long_text="split")  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="long_text"):
        Encoder(model_dir, long_text="middle")  # type: ignore[arg-type]


def test_truncation_warning_once_per_encoder(model_dir: pathlib.Path) -> None:
    fresh = Encoder(model_dir, threads=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fresh.encode(["short", WORDS * 30, WORDS * 40])
        fresh.encode([WORDS * 30])
    messages = [str(w.message) for w in caught if issubclass(w.category, TruncationWarning)]
    assert len(messages) == 1
    assert "2 of 3 texts" in messages[0] and "256 word pieces" in messages[0]
    assert caught[0].filename == __file__, "the warning points at the caller's line"


def test_no_warning_when_truncation_is_returned_or_chunked(model_dir: pathlib.Path) -> None:
    fresh = Encoder(model_dir, threads=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncationWarning)
        _, cut = fresh.encode([WORDS * 30], return_truncation=True)
        fresh.encode([WORDS * 30], long_text="chunk")
        fresh.encode(["short"])
    assert cut.tolist() == [True]


def test_progress_bar_counts_chunk_windows(
    encoder: Encoder, capsys: pytest.CaptureFixture[str]
) -> None:
    """One long text in chunk mode moves the bar window by window: its total is the number of
    windows the engine runs, not the one text (a 5 MB text used to sit at 0/1 for minutes)."""
    text = " ".join(f"word{i % 97} and more text" for i in range(3000))
    pieces = encoder._tokenizer.word_pieces([text])[0]
    windows = len(encoder._tokenizer.windows(pieces, [], 32))
    assert windows > 10
    encoder.encode([text, "a short one"], long_text="chunk", show_progress_bar=True)
    final = capsys.readouterr().err.rsplit("\r", 1)[-1]
    assert f"{windows + 1}/{windows + 1}" in final, final
