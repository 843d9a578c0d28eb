"""The sentence-transformers encode API: arguments, outputs, prompts, quantization, streaming,
async, pickling. Long texts are in test_long_text.py."""

from __future__ import annotations

import asyncio
import itertools
import pathlib
import pickle
from collections.abc import Iterator

import numpy as np
import pytest
from support.event_loop import while_ticking

import minilm_fast._pipeline as pipeline_module
from minilm_fast import Encoder, quantization_ranges, quantize_embeddings

TEXTS = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A monkey is playing drums.",
    "",
]


@pytest.fixture(scope="module")
def reference(encoder: Encoder) -> np.ndarray:
    return encoder.encode(TEXTS)


# --------------------------------------------------------------------------------------------
# Arguments as sentence-transformers takes them


def test_positional_order_is_sentence_transformers(encoder: Encoder, reference: np.ndarray) -> None:
    # encode(sentences, prompt_name, prompt, batch_size, show_progress_bar, output_value, ...)
    got = encoder.encode(TEXTS, None, None, 3, False, "sentence_embedding", "float32")
    np.testing.assert_allclose(got, reference, atol=1e-6)


def test_normalize_embeddings_default_follows_the_model(
    encoder: Encoder, reference: np.ndarray
) -> None:
    assert encoder.native.normalize  # all-MiniLM-L6-v2 ends in a Normalize module
    np.testing.assert_allclose(np.linalg.norm(reference[:-1], axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(
        encoder.encode(TEXTS, normalize_embeddings=True), reference, atol=1e-6
    )


def test_convert_to_numpy_false_gives_a_list_of_vectors(
    encoder: Encoder, reference: np.ndarray
) -> None:
    rows = encoder.encode(TEXTS, convert_to_numpy=False)
    assert isinstance(rows, list) and len(rows) == len(TEXTS)
    assert all(row.shape == (384,) and row.dtype == np.float32 for row in rows)
    np.testing.assert_allclose(np.stack(rows), reference, atol=1e-6)


def test_convert_to_tensor_needs_torch_and_says_so(encoder: Encoder, reference: np.ndarray) -> None:
    try:
        import torch  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        with pytest.raises(ImportError, match="torch"):
            encoder.encode(TEXTS, convert_to_tensor=True)
        return
    tensor = encoder.encode(TEXTS, convert_to_tensor=True)
    assert isinstance(tensor, torch.Tensor)
    np.testing.assert_allclose(tensor.numpy(), reference, atol=1e-6)


def test_device_cpu_is_accepted_others_refused(encoder: Encoder) -> None:
    assert encoder.encode("x", device="cpu").shape == (384,)
    with pytest.raises(ValueError, match="CPU"):
        encoder.encode("x", device="cuda")


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"output_value": "logits"}, ValueError, "output_value"),
        ({"precision": "float16"}, ValueError, "precision"),
        ({"truncate_dim": 0}, ValueError, "truncate_dim"),
        ({"truncate_dim": 385}, ValueError, "truncate_dim"),
        ({"truncate_dim": "64"}, TypeError, "truncate_dim"),
        ({"normalize_embeddings": "yes"}, TypeError, "normalize_embeddings"),
        ({"prompt_name": "query"}, ValueError, "prompt_name"),
        ({"prompt": 3}, TypeError, "prompt"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"batch_size": 2.5}, TypeError, "batch_size"),
        ({"output_value": "token_embeddings", "precision": "int8"}, ValueError, "float32"),
        ({"output_value": "token_embeddings", "long_text": "chunk"}, ValueError, "truncate"),
    ],
)
def test_bad_arguments_are_refused_by_name(
    encoder: Encoder, kwargs: dict[str, object], exc: type[Exception], match: str
) -> None:
    with pytest.raises(exc, match=match):
        encoder.encode(TEXTS, **kwargs)  # type: ignore[call-overload]
    assert encoder.encode("still works").shape == (384,)


def test_unknown_keyword_is_a_type_error(encoder: Encoder) -> None:
    with pytest.raises(TypeError, match="convert_to_pandas"):
        encoder.encode(TEXTS, convert_to_pandas=True)  # type: ignore[call-overload]


# --------------------------------------------------------------------------------------------
# Outputs


def test_token_embeddings_are_unpadded_and_mean_pool_to_the_sentence(
    encoder: Encoder, reference: np.ndarray
) -> None:
    tokens = encoder.encode(TEXTS, output_value="token_embeddings", batch_size=4)
    lengths = [len(ids) for ids in encoder._tokenizer.encode(TEXTS)]
    assert [t.shape for t in tokens] == [(n, 384) for n in lengths]
    for token_rows, sentence in zip(tokens, reference):
        pooled = token_rows.mean(axis=0)
        np.testing.assert_allclose(pooled / np.linalg.norm(pooled), sentence, atol=1e-5)
    single = encoder.encode("One text.", output_value="token_embeddings")
    assert single.shape == (5, 384)  # [CLS] one text . [SEP]


def test_truncate_dim_keeps_the_leading_dimensions(encoder: Encoder, reference: np.ndarray) -> None:
    cut = encoder.encode(TEXTS, truncate_dim=64)
    assert cut.shape == (len(TEXTS), 64) and cut.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(cut, reference[:, :64], atol=1e-6)  # the model normalised first
    unit = encoder.encode(TEXTS, truncate_dim=64, normalize_embeddings=True)
    expected = reference[:, :64] / np.linalg.norm(reference[:, :64], axis=1, keepdims=True)
    np.testing.assert_allclose(unit, expected, atol=1e-6)


def test_encoder_level_truncate_dim(model_dir: pathlib.Path, reference: np.ndarray) -> None:
    small = Encoder(model_dir, threads=1, truncate_dim=128)
    assert small.get_sentence_embedding_dimension() == 128
    np.testing.assert_allclose(small.encode(TEXTS), reference[:, :128], atol=1e-6)
    assert small.encode(TEXTS, truncate_dim=32).shape == (len(TEXTS), 32)


def test_precision_ubinary_and_binary_pack_the_signs(
    encoder: Encoder, reference: np.ndarray
) -> None:
    ubinary = encoder.encode(TEXTS, precision="ubinary")
    assert ubinary.dtype == np.uint8 and ubinary.shape == (len(TEXTS), 48)
    bits = np.unpackbits(ubinary, axis=1).astype(bool)
    np.testing.assert_array_equal(bits, reference > 0)
    binary = encoder.encode(TEXTS, precision="binary")
    assert binary.dtype == np.int8
    np.testing.assert_array_equal(binary.astype(np.int16) + 128, ubinary)


@pytest.mark.parametrize("precision", ["int8", "uint8"])
def test_scalar_quantization_uses_the_batch_ranges(
    encoder: Encoder, reference: np.ndarray, precision: str
) -> None:
    quantized = encoder.encode(TEXTS, precision=precision)
    assert quantized.dtype == np.dtype(precision) and quantized.shape == reference.shape
    offset = 128 if precision == "int8" else 0
    buckets = quantized.astype(np.int32) + offset
    low, high = reference.min(axis=0), reference.max(axis=0)
    step = (high - low) / 255
    # Each value lies in its bucket; each dimension's minimum is bucket 0, its maximum the
    # top one (floor of 255 * (max - min) / (max - min), which float rounding may put at 254).
    assert np.all(buckets >= 0) and np.all(buckets <= 255)
    decoded = low + buckets * step
    assert np.all(np.abs(decoded - reference) <= step * 1.0001 + 1e-7)
    assert np.all(buckets[reference.argmin(axis=0), np.arange(384)] == 0)
    assert np.all(buckets[reference.argmax(axis=0), np.arange(384)] >= 254)


def test_quantization_ranges_given_make_calls_comparable(
    encoder: Encoder, reference: np.ndarray
) -> None:
    ranges = quantization_ranges(reference)
    one = encoder.encode(TEXTS[0], precision="int8", quantization_ranges=ranges)
    together = encoder.encode(TEXTS, precision="int8", quantization_ranges=ranges)
    np.testing.assert_array_equal(one, together[0])
    with pytest.raises(ValueError, match="quantization_ranges"):
        encoder.encode(TEXTS[0], precision="int8")  # one embedding cannot calibrate
    # Values outside the calibration range clip to the end buckets, never wrap around.
    narrow = np.stack([reference.min(0) / 2, reference.max(0) / 2])
    clipped = quantize_embeddings(reference, "uint8", ranges=narrow)
    assert clipped.min() == 0 and clipped.max() == 255


def test_quantize_embeddings_edge_cases() -> None:
    assert quantize_embeddings(np.zeros((0, 8), np.float32), "int8").shape == (0, 8)
    constant = quantize_embeddings(np.ones((3, 4), np.float32), "uint8")
    assert constant.tolist() == [[0] * 4] * 3  # a constant dimension: first bucket, no NaN
    with pytest.raises(TypeError, match="floats"):
        quantize_embeddings(np.ones((2, 4), np.int8), "int8")
    with pytest.raises(ValueError, match="shape"):
        quantize_embeddings(np.ones((2, 4), np.float32), "int8", ranges=np.ones((2, 3)))


def test_similarity_is_the_cosine_matrix(encoder: Encoder, reference: np.ndarray) -> None:
    scores = encoder.similarity(reference[:3], reference)
    assert scores.shape == (3, len(TEXTS)) and scores.dtype == np.float32
    np.testing.assert_allclose(scores, reference[:3] @ reference.T, atol=1e-6)
    assert encoder.similarity(reference[0], reference[1]).shape == (1, 1)
    raw = reference[:2] * np.array([[3.0], [0.5]], dtype=np.float32)
    np.testing.assert_allclose(
        encoder.similarity(raw, raw), reference[:2] @ reference[:2].T, atol=1e-6
    )
    np.testing.assert_allclose(
        encoder.similarity_pairwise(reference[:3], reference[1:4]),
        (reference[:3] * reference[1:4]).sum(1),
        atol=1e-6,
    )
    assert encoder.similarity(np.zeros(384), reference[0])[0, 0] == 0.0


# --------------------------------------------------------------------------------------------
# Prompts


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"prompt": "query: "},
        {"truncate_dim": 64},
        {"truncate_dim": 64, "normalize_embeddings": True},
        {"long_text": "chunk"},
        {"precision": "ubinary"},
        {"return_truncation": True},
    ],
    ids=lambda options: ",".join(options) or "defaults",
)
@pytest.mark.parametrize("text", ["A man is eating food.", "", "bread " * 400])
def test_one_text_equals_a_batch_of_one(encoder: Encoder, text: str, options: dict) -> None:
    # encode("...") has its own short path (no batching machinery); it must give what the
    # batch path gives, bit for bit, including the truncation flag and chunked long texts.
    one = encoder.encode(text, **options)
    batch = encoder.encode([text], **options)
    if options.get("return_truncation"):
        (one, one_cut), (batch, batch_cut) = one, batch
        assert one_cut == bool(batch_cut[0]) == (len(text) > 1000)
    assert one.shape == batch.shape[1:]
    np.testing.assert_array_equal(one, batch[0])


def test_prompts_as_sentence_transformers_applies_them(model_dir: pathlib.Path) -> None:
    prompted = Encoder(model_dir, threads=1, prompts={"query": "query: ", "passage": "passage: "})
    text = "Where do penguins live?"
    plain = prompted.encode("query: " + text)
    np.testing.assert_allclose(prompted.encode_query(text), plain, atol=1e-6)
    np.testing.assert_allclose(prompted.encode(text, prompt_name="query"), plain, atol=1e-6)
    np.testing.assert_allclose(prompted.encode(text, prompt="query: "), plain, atol=1e-6)
    # encode_document falls back from "document" to "passage" to "corpus".
    np.testing.assert_allclose(
        prompted.encode_document(text), prompted.encode("passage: " + text), atol=1e-6
    )
    # An explicit prompt wins over the task's.
    np.testing.assert_allclose(
        prompted.encode_query(text, prompt="passage: "),
        prompted.encode("passage: " + text),
        atol=1e-6,
    )


def test_default_prompt_applies_to_encode_not_to_task_methods(model_dir: pathlib.Path) -> None:
    tagged = Encoder(
        model_dir, threads=1, prompts={"clustering": "topic: "}, default_prompt_name="clustering"
    )
    text = "Penguins live in the southern hemisphere."
    np.testing.assert_allclose(
        tagged.encode(text), tagged.encode("topic: " + text, prompt=""), atol=1e-6
    )
    np.testing.assert_allclose(tagged.encode_query(text), tagged.encode(text, prompt=""), atol=1e-6)
    with pytest.raises(ValueError, match="default_prompt_name"):
        Encoder(model_dir, threads=1, default_prompt_name="missing")


def test_model_without_prompts_encode_query_equals_encode(
    encoder: Encoder, reference: np.ndarray
) -> None:
    assert encoder.prompts == {}
    np.testing.assert_allclose(encoder.encode_query(TEXTS), reference, atol=1e-6)
    np.testing.assert_allclose(encoder.encode_document(TEXTS), reference, atol=1e-6)


# --------------------------------------------------------------------------------------------
# Iterables, streaming, async


def test_generators_and_other_iterables(encoder: Encoder, reference: np.ndarray) -> None:
    np.testing.assert_allclose(encoder.encode(t for t in TEXTS), reference, atol=1e-6)
    np.testing.assert_allclose(encoder.encode(tuple(TEXTS)), reference, atol=1e-6)
    np.testing.assert_allclose(encoder.encode(np.array(TEXTS)), reference, atol=1e-6)
    assert encoder.encode(iter([])).shape == (0, 384)


def test_generator_that_raises_midway_propagates_and_the_encoder_survives(
    encoder: Encoder, reference: np.ndarray
) -> None:
    def broken() -> Iterator[str]:
        yield "fine"
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError, match="source failed"):
        encoder.encode(broken())
    with pytest.raises(TypeError, match=r"sentences\[2\]"):
        encoder.encode(iter(["a", "b", 3]))  # type: ignore[list-item]
    with pytest.raises(TypeError, match="set"):
        encoder.encode({"a", "b"})
    np.testing.assert_allclose(encoder.encode(TEXTS), reference, atol=1e-6)


def test_iterables_are_read_a_window_at_a_time(
    encoder: Encoder, reference: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A generator is consumed window by window, never all at once; results are unchanged."""
    monkeypatch.setattr(pipeline_module, "WINDOW_TEXTS", 5)
    consumed = 0

    def counting() -> Iterator[str]:
        nonlocal consumed
        for text in itertools.islice(itertools.cycle(TEXTS), 40):
            consumed += 1
            yield text

    stream = encoder.encode_iter(counting(), batch_size=5)
    first = next(stream)
    assert consumed <= 5 + 1, f"read {consumed} texts before the first batch"
    rest = list(stream)
    got = np.concatenate([first, *rest])
    np.testing.assert_allclose(got, np.tile(reference, (5, 1)), atol=1e-6)
    np.testing.assert_allclose(encoder.encode(counting()), np.tile(reference, (5, 1)), atol=1e-6)


def test_encode_iter_batches_in_input_order(encoder: Encoder, reference: np.ndarray) -> None:
    batches = list(encoder.encode_iter(iter(TEXTS), batch_size=3))
    assert [b.shape for b in batches] == [(3, 384), (3, 384), (2, 384)]
    np.testing.assert_allclose(np.concatenate(batches), reference, atol=1e-6)
    ranges = quantization_ranges(reference)
    quantized = np.concatenate(
        list(encoder.encode_iter(TEXTS, batch_size=3, precision="int8", quantization_ranges=ranges))
    )
    np.testing.assert_array_equal(quantized, quantize_embeddings(reference, "int8", ranges=ranges))
    with pytest.raises(ValueError, match="quantization_ranges"):
        next(encoder.encode_iter(TEXTS, precision="int8"))
    with pytest.raises(TypeError, match="not one str"):
        next(encoder.encode_iter("one text"))


def test_aencode_matches_and_keeps_the_event_loop_running(
    encoder: Encoder, reference: np.ndarray
) -> None:
    # 480 distinct texts (trailing spaces tokenize to nothing): repeated texts would be
    # computed once, and the encode over before the event loop could tick.
    texts = [text + " " * i for i in range(60) for text in TEXTS]

    async def work() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        many = await encoder.aencode(texts)
        query = await encoder.aencode_query(TEXTS[0])
        docs = await encoder.aencode_document(TEXTS)
        return many, query, docs

    (many, query, docs), ticks = asyncio.run(while_ticking(work()))
    np.testing.assert_allclose(many, np.tile(reference, (60, 1)), atol=1e-6)
    np.testing.assert_allclose(query, reference[0], atol=1e-6)
    np.testing.assert_allclose(docs, reference, atol=1e-6)
    assert ticks >= 10, f"the event loop ticked only {ticks} times while encoding"


# --------------------------------------------------------------------------------------------
# Pickling


def test_pickle_carries_configuration_not_weights(model_dir: pathlib.Path) -> None:
    original = Encoder(
        model_dir,
        threads=1,
        max_seq_length=128,
        long_text="chunk",
        chunk_stride=16,
        truncate_dim=256,
    )
    payload = pickle.dumps(original)
    assert len(payload) < 4096, f"pickle is {len(payload)} bytes: weights must not travel"
    restored = pickle.loads(payload)
    assert isinstance(restored, Encoder)
    assert (restored.max_seq_length, restored.long_text, restored.chunk_stride) == (
        128,
        "chunk",
        16,
    )
    assert restored.threads == 1 and restored.get_sentence_embedding_dimension() == 256
    assert restored.model_name == original.model_name
    text = "The committee approved the budget. " * 40
    np.testing.assert_allclose(restored.encode(text), original.encode(text), atol=1e-6)


def test_pickle_reresolves_the_model_name_when_the_folder_is_gone(
    model_dir: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """On another machine the folder may not exist: the name is resolved again there."""
    original = Encoder(model_dir, threads=1)
    state = original.__getstate__()
    state["model_path"] = str(tmp_path / "not-here")
    clone = Encoder.__new__(Encoder)
    clone.__setstate__(state)
    assert clone.model_path == original.model_path
    np.testing.assert_allclose(clone.encode(TEXTS[0]), original.encode(TEXTS[0]), atol=1e-6)
