"""Test helpers: random tiny BERT model folders and a NumPy reference forward pass.

``write_tiny_bert`` writes a folder laid out like a sentence-transformers model on the Hub
(``config.json``, ``model.safetensors`` and, optionally, ``modules.json`` with a
``1_Pooling/config.json``), filled with random weights. ``numpy_bert_forward`` and ``numpy_pool``
compute what HF transformers' ``BertModel`` (eval mode) and sentence-transformers' ``Pooling`` /
``Normalize`` modules would return for it, in float64, so the native encoder can be checked
against an independent implementation without torch.

Example::

    weights = write_tiny_bert(tmp_path, hidden=32, layers=2, heads=4, intermediate=64,
                              vocab=100, max_positions=16)
    config = read_config(tmp_path)
    hidden = numpy_bert_forward(weights, config, ids, mask, token_types)
    pooled = numpy_pool(hidden, mask, ("mean",), normalize=True)
"""

from __future__ import annotations

import importlib
import json
import math
import struct
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.integer[Any]]
PathLike = Union[str, Path]

#: Pooling modes in the order sentence-transformers concatenates them, named as its ``Pooling``
#: module names them.
POOLING_ORDER: tuple[str, ...] = ("cls", "max", "mean", "mean_sqrt_len_tokens")

#: The key of each pooling mode in ``1_Pooling/config.json``.
POOLING_CONFIG_KEYS: dict[str, str] = {
    "cls": "pooling_mode_cls_token",
    "max": "pooling_mode_max_tokens",
    "mean": "pooling_mode_mean_tokens",
    "mean_sqrt_len_tokens": "pooling_mode_mean_sqrt_len_tokens",
}

_SAFETENSORS_DTYPES: dict[str, str] = {"float32": "F32", "float16": "F16", "float64": "F64"}

# scipy is optional: its vectorised erf is used when present, math.erf otherwise.
_scipy_special: Any
try:
    _scipy_special = importlib.import_module("scipy.special")
except ImportError:  # pragma: no cover - depends on the environment
    _scipy_special = None

_vectorised_math_erf = np.vectorize(math.erf, otypes=[np.float64])


def _erf(x: F64) -> F64:
    """Element-wise error function in float64."""
    if _scipy_special is not None:
        return np.asarray(_scipy_special.erf(x), dtype=np.float64)
    return np.asarray(_vectorised_math_erf(x), dtype=np.float64)


def gelu(x: F64) -> F64:
    """Exact GELU, ``x * Phi(x)`` with the error function (HF's ``"gelu"``, not the tanh one)."""
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def gelu_tanh(x: F64) -> F64:
    """The tanh approximation of GELU (HF's ``"gelu_new"`` / ``"gelu_pytorch_tanh"``)."""
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def relu(x: F64) -> F64:
    """``max(x, 0)``."""
    return np.maximum(x, 0.0)


#: The feed-forward activations by their ``hidden_act`` name in ``config.json``.
ACTIVATIONS: dict[str, Callable[[F64], F64]] = {
    "gelu": gelu,
    "gelu_new": gelu_tanh,
    "gelu_pytorch_tanh": gelu_tanh,
    "relu": relu,
}


def write_safetensors(
    path: PathLike, tensors: Mapping[str, np.ndarray], *, header_extra: str = ""
) -> None:
    """Write ``tensors`` to ``path`` in the safetensors format.

    Layout: an 8-byte little-endian header length ``N``, ``N`` bytes of JSON header (padded with
    spaces to a multiple of 8, as the reference implementation does), then the raw little-endian
    tensor data back to back; each header entry gives ``dtype``, ``shape`` and ``data_offsets``
    (``[begin, end)`` relative to the start of the data). ``header_extra`` is appended verbatim to
    the JSON text, only to write deliberately broken files.
    """
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    chunks: list[bytes] = []
    offset = 0
    for name, tensor in tensors.items():
        array = np.asarray(tensor)
        dtype = _SAFETENSORS_DTYPES.get(array.dtype.name)
        if dtype is None:
            raise ValueError(f"{name}: dtype {array.dtype} is not supported by this writer")
        data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
        header[name] = {
            "dtype": dtype,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")) + header_extra
    encoded = text.encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        f.writelines(chunks)


def bert_config(
    *,
    hidden: int,
    layers: int,
    heads: int,
    intermediate: int,
    vocab: int,
    max_positions: int,
    type_vocab: int = 2,
    eps: float = 1e-12,
    hidden_act: str = "gelu",
) -> dict[str, Any]:
    """The ``config.json`` contents of a BERT model with these sizes (HF ``BertConfig`` keys)."""
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "attention_probs_dropout_prob": 0.1,
        "hidden_act": hidden_act,
        "hidden_dropout_prob": 0.1,
        "hidden_size": hidden,
        "initializer_range": 0.02,
        "intermediate_size": intermediate,
        "layer_norm_eps": eps,
        "max_position_embeddings": max_positions,
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
        "torch_dtype": "float32",
        "type_vocab_size": type_vocab,
        "vocab_size": vocab,
    }


def random_bert_weights(config: Mapping[str, Any], seed: int = 0) -> dict[str, F32]:
    """Random float32 weights for ``config``, named as HF ``BertModel`` names them (no prefix).

    Linear weights are ``[out_features, in_features]`` with a standard deviation of
    ``1.6 / sqrt(in_features)`` so activations stay of order one at any width (attention neither
    uniform nor one-hot, GELU in its curved region); biases are ``N(0, 0.1)``, LayerNorm weights
    ``1 + N(0, 0.1)``, embeddings ``N(0, 0.5)``.
    """
    rng = np.random.default_rng(seed)
    hidden = int(config["hidden_size"])
    inter = int(config["intermediate_size"])

    def normal(shape: tuple[int, ...], std: float) -> F32:
        return (rng.standard_normal(shape) * std).astype(np.float32)

    def linear(prefix: str, out_features: int, in_features: int) -> None:
        weights[f"{prefix}.weight"] = normal((out_features, in_features), 1.6 / in_features**0.5)
        weights[f"{prefix}.bias"] = normal((out_features,), 0.1)

    def layer_norm(prefix: str) -> None:
        weights[f"{prefix}.weight"] = (1.0 + normal((hidden,), 0.1)).astype(np.float32)
        weights[f"{prefix}.bias"] = normal((hidden,), 0.1)

    weights: dict[str, F32] = {
        "embeddings.word_embeddings.weight": normal((int(config["vocab_size"]), hidden), 0.5),
        "embeddings.position_embeddings.weight": normal(
            (int(config["max_position_embeddings"]), hidden), 0.5
        ),
        "embeddings.token_type_embeddings.weight": normal(
            (int(config["type_vocab_size"]), hidden), 0.5
        ),
    }
    layer_norm("embeddings.LayerNorm")
    for i in range(int(config["num_hidden_layers"])):
        p = f"encoder.layer.{i}"
        for part in ("query", "key", "value"):
            linear(f"{p}.attention.self.{part}", hidden, hidden)
        linear(f"{p}.attention.output.dense", hidden, hidden)
        layer_norm(f"{p}.attention.output.LayerNorm")
        linear(f"{p}.intermediate.dense", inter, hidden)
        linear(f"{p}.output.dense", hidden, inter)
        layer_norm(f"{p}.output.LayerNorm")
    return weights


def write_modules(
    folder: PathLike, pooling: Sequence[str], normalize: bool, word_embedding_dimension: int
) -> None:
    """Write sentence-transformers' ``modules.json`` and ``1_Pooling/config.json``.

    The pipeline is Transformer -> Pooling (with the modes in ``pooling``) -> Normalize (if
    ``normalize``). As on the Hub, no ``2_Normalize`` folder is written: Normalize has no files.
    """
    unknown = set(pooling) - set(POOLING_ORDER)
    if unknown:
        raise ValueError(f"unknown pooling modes {sorted(unknown)}; known: {POOLING_ORDER}")
    folder = Path(folder)
    modules: list[dict[str, Any]] = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
    ]
    if normalize:
        modules.append(
            {
                "idx": 2,
                "name": "2",
                "path": "2_Normalize",
                "type": "sentence_transformers.models.Normalize",
            }
        )
    (folder / "modules.json").write_text(json.dumps(modules, indent=2))
    pooling_config: dict[str, Any] = {"word_embedding_dimension": word_embedding_dimension}
    for mode in POOLING_ORDER:
        pooling_config[POOLING_CONFIG_KEYS[mode]] = mode in pooling
    pooling_config["pooling_mode_weightedmean_tokens"] = False
    pooling_config["pooling_mode_lasttoken"] = False
    pooling_config["include_prompt"] = True
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling_config, indent=2))


def write_tiny_bert(
    folder: PathLike,
    *,
    hidden: int,
    layers: int,
    heads: int,
    intermediate: int,
    vocab: int,
    max_positions: int,
    type_vocab: int = 2,
    eps: float = 1e-12,
    pooling: Sequence[str] | None = ("mean",),
    normalize: bool = True,
    seed: int = 0,
    prefix: str = "",
    hidden_act: str = "gelu",
) -> dict[str, F32]:
    """Write a random tiny BERT sentence-transformers model to ``folder`` (created if missing).

    Writes ``config.json`` and ``model.safetensors`` (every tensor name prefixed with ``prefix``,
    e.g. ``"bert."``; ``hidden_act`` is the feed-forward activation) and, unless ``pooling`` is
    None, ``modules.json`` and
    ``1_Pooling/config.json`` with those pooling modes and a Normalize module if ``normalize``.
    With ``pooling=None`` there is no ``modules.json`` (the encoder then mean-pools and does not
    normalise), so ``normalize`` must be False.

    Returns the weights keyed by their unprefixed names, ready for ``numpy_bert_forward``.
    """
    if pooling is None and normalize:
        raise ValueError("normalize=True needs a modules.json, so pooling must not be None")
    if hidden % heads:
        raise ValueError(f"heads={heads} does not divide hidden={hidden}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = bert_config(
        hidden=hidden,
        layers=layers,
        heads=heads,
        intermediate=intermediate,
        vocab=vocab,
        max_positions=max_positions,
        type_vocab=type_vocab,
        eps=eps,
        hidden_act=hidden_act,
    )
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    weights = random_bert_weights(config, seed=seed)
    write_safetensors(
        folder / "model.safetensors", {prefix + name: w for name, w in weights.items()}
    )
    if pooling is not None:
        write_modules(folder, pooling, normalize, hidden)
    return weights


def read_config(folder: PathLike) -> dict[str, Any]:
    """The parsed ``config.json`` of a model folder."""
    config: dict[str, Any] = json.loads((Path(folder) / "config.json").read_text())
    return config


def _layer_norm(x: F64, weight: np.ndarray, bias: np.ndarray, eps: float) -> F64:
    """LayerNorm over the last axis (biased variance, as torch)."""
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    out: F64 = (x - mean) / np.sqrt(var + eps) * weight.astype(np.float64) + bias.astype(np.float64)
    return out


def _linear(x: F64, weights: Mapping[str, np.ndarray], prefix: str) -> F64:
    """``x @ W.T + b`` for a PyTorch-layout ``[out, in]`` weight."""
    w = weights[f"{prefix}.weight"].astype(np.float64)
    b = weights[f"{prefix}.bias"].astype(np.float64)
    return x @ w.T + b


def numpy_bert_forward(
    weights: Mapping[str, np.ndarray],
    config: Mapping[str, Any],
    ids: IntArray,
    mask: IntArray,
    token_types: IntArray | None = None,
) -> F64:
    """HF ``BertModel`` (eval mode) last hidden state, computed in float64: ``(B, T, hidden)``.

    Embeddings are ``LayerNorm(word[ids] + position[0..T] + token_type[token_types])``; each layer
    is self-attention with ``(1 - mask) * finfo.min`` added to the scores over keys, output dense,
    residual + LayerNorm, then dense -> activation (exact GELU for ``"gelu"``) -> dense, residual
    + LayerNorm.
    ``weights`` are keyed by unprefixed names; ``token_types`` None means all zeros.
    """
    ids = np.asarray(ids, dtype=np.int64)
    mask64 = np.asarray(mask, dtype=np.float64)
    types = np.zeros_like(ids) if token_types is None else np.asarray(token_types, dtype=np.int64)
    batch, seq = ids.shape
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    head_dim = hidden // heads
    eps = float(config["layer_norm_eps"])
    activation = ACTIVATIONS[str(config.get("hidden_act", "gelu"))]

    def w(name: str) -> F64:
        return np.asarray(weights[name], dtype=np.float64)

    x = (
        w("embeddings.word_embeddings.weight")[ids]
        + w("embeddings.position_embeddings.weight")[:seq][None, :, :]
        + w("embeddings.token_type_embeddings.weight")[types]
    )
    x = _layer_norm(x, w("embeddings.LayerNorm.weight"), w("embeddings.LayerNorm.bias"), eps)
    # (B, 1, 1, T): added to every query's scores, heads broadcast.
    key_bias = (1.0 - mask64)[:, None, None, :] * np.finfo(np.float64).min

    def split_heads(t: F64) -> F64:
        return t.reshape(batch, seq, heads, head_dim).transpose(0, 2, 1, 3)

    for i in range(int(config["num_hidden_layers"])):
        p = f"encoder.layer.{i}"
        q = split_heads(_linear(x, weights, f"{p}.attention.self.query"))
        k = split_heads(_linear(x, weights, f"{p}.attention.self.key"))
        v = split_heads(_linear(x, weights, f"{p}.attention.self.value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(head_dim) + key_bias
        scores = scores - scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(axis=-1, keepdims=True)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, seq, hidden)
        attn = _linear(context, weights, f"{p}.attention.output.dense")
        x = _layer_norm(
            attn + x,
            w(f"{p}.attention.output.LayerNorm.weight"),
            w(f"{p}.attention.output.LayerNorm.bias"),
            eps,
        )
        ff = _linear(
            activation(_linear(x, weights, f"{p}.intermediate.dense")), weights, f"{p}.output.dense"
        )
        x = _layer_norm(
            ff + x, w(f"{p}.output.LayerNorm.weight"), w(f"{p}.output.LayerNorm.bias"), eps
        )
    return x


def numpy_pool(
    hidden: np.ndarray, mask: IntArray, pooling: Sequence[str] = ("mean",), normalize: bool = False
) -> F64:
    """sentence-transformers ``Pooling`` (+ ``Normalize``) of a ``(B, T, H)`` last hidden state.

    Modes are concatenated in sentence-transformers' order (cls, max, mean, mean_sqrt_len_tokens),
    whatever the order of ``pooling``: mean is ``sum(h * mask) / max(sum(mask), 1e-9)``, cls is
    ``h[:, 0]``, max takes masked positions as -1e9, mean_sqrt_len_tokens divides by
    ``sqrt(max(sum(mask), 1e-9))``. Normalize is ``x / max(||x||, 1e-12)``.
    """
    h = np.asarray(hidden, dtype=np.float64)
    m = np.asarray(mask, dtype=np.float64)[:, :, None]
    unknown = set(pooling) - set(POOLING_ORDER)
    if unknown or not pooling:
        raise ValueError(f"pooling must be a non-empty subset of {POOLING_ORDER}, got {pooling}")
    summed = (h * m).sum(axis=1)
    count = np.maximum(m.sum(axis=1), 1e-9)
    parts: list[F64] = []
    for mode in POOLING_ORDER:
        if mode not in pooling:
            continue
        if mode == "cls":
            parts.append(h[:, 0])
        elif mode == "max":
            parts.append(np.where(m > 0, h, -1e9).max(axis=1))
        elif mode == "mean":
            parts.append(summed / count)
        else:
            parts.append(summed / np.sqrt(count))
    out = np.concatenate(parts, axis=1)
    if normalize:
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out = out / np.maximum(norms, 1e-12)
    return out


def random_batch(
    rng: np.random.Generator,
    *,
    batch: int,
    seq: int,
    vocab: int,
    type_vocab: int = 2,
    full_rows: int = 1,
    left_padded_rows: int = 0,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Random ``(input_ids, attention_mask, token_type_ids)`` of shape ``(batch, seq)``.

    The first ``full_rows`` rows use all ``seq`` tokens, the next ``left_padded_rows`` rows are
    padded on the left, the rest on the right, each with a random length in ``[1, seq]``.
    Real tokens are random ids in ``[1, vocab)`` (with ``vocab - 1`` appearing in row 0 to cover
    the top of the range); padding positions hold id 0 and token type 0, as tokenizers write them.
    """
    ids = np.zeros((batch, seq), dtype=np.int64)
    mask = np.zeros((batch, seq), dtype=np.int64)
    types = np.zeros((batch, seq), dtype=np.int64)
    for row in range(batch):
        length = seq if row < full_rows else int(rng.integers(1, seq + 1))
        start = seq - length if full_rows <= row < full_rows + left_padded_rows else 0
        span = slice(start, start + length)
        ids[row, span] = rng.integers(1, vocab, size=length)
        mask[row, span] = 1
        # A sentence pair: token type 0 for the first part, then the other types.
        split = int(rng.integers(0, length + 1))
        types[row, start + split : start + length] = rng.integers(
            0, type_vocab, size=length - split
        )
    ids[0, -1] = vocab - 1
    return ids, mask, types
