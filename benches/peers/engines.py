"""The engines benches/compare.py measures, each behind the same two calls.

``load(key, model_dir, peers_dir, threads)`` returns an :class:`Engine` with

- ``encode(texts, batch_size)``: texts -> float32 ``(n, 384)``, unit rows, input order;
- ``encode_one(text)``: the engine's single-text path, text -> ``(384,)``.

Engines are imported lazily, inside their loader, so this module is cheap to import anywhere
(the driver reads ``SPECS`` without torch or onnxruntime installed). The graph-only peers share
``pipeline.Pipeline`` (same tokenizer, batching and pooling), so they differ from minilm_fast
only in the forward pass. Their model files come from ``scripts/prepare_peers.py``
(``.cache/peers/`` by default); ``PEER_FILES`` says where in that folder.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Literal

import numpy as np

from .pipeline import Pipeline


@dataclass(frozen=True)
class Spec:
    key: str
    label: str  # what the tables call it
    precision: str  # "fp32", "bf16" or "int8": ratios are taken against the best fp32 peer only
    # "self": the driver's Python (minilm_fast's venv); "peers": the peers' venv; "baseline":
    # the venv with an earlier revision's wheel (--baseline-python)
    interpreter: str
    how: str  # one line for the docs: what exactly runs
    env: dict[str, str] = field(default_factory=dict)  # set in the worker before any import


SPECS: dict[str, Spec] = {
    s.key: s
    for s in (
        Spec(
            "minilm_fast",
            "minilm_fast",
            "fp32",
            "self",
            "minilm_fast.Encoder(model_dir, threads=N).encode(texts, batch_size=32)",
        ),
        Spec(
            "onnxruntime",
            "ONNX Runtime",
            "fp32",
            "peers",
            "InferenceSession on the transformer-optimized graph (EmbedLayerNormalization, "
            "Attention, SkipLayerNormalization, BiasGelu), intra_op_num_threads=N",
        ),
        Spec(
            "openvino",
            "OpenVINO",
            "fp32",
            "peers",
            "Core().compile_model(IR from the exported ONNX, 'CPU', INFERENCE_NUM_THREADS=N, "
            "INFERENCE_PRECISION_HINT=f32, PERFORMANCE_HINT=LATENCY)",
        ),
        Spec(
            "ctranslate2",
            "CTranslate2",
            "fp32",
            "peers",
            "ctranslate2.Encoder(converted dir, compute_type='float32', intra_threads=N)"
            ".forward_batch, CT2_USE_MKL=1",
            # On AMD CPUs CTranslate2 picks oneDNN's unpacked SGEMM by default, 3-4x slower
            # here than Intel MKL on batches; the peer gets its faster setting.
            {"CT2_USE_MKL": "1"},
        ),
        Spec(
            "sentence-transformers",
            "sentence-transformers",
            "fp32",
            "peers",
            "SentenceTransformer(model_dir, device='cpu').encode(texts, batch_size=32), "
            "torch.set_num_threads(N)",
        ),
        Spec(
            "ctranslate2-int8",
            "CTranslate2 int8",
            "int8",
            "peers",
            "ctranslate2.Encoder(dir converted with --quantization int8, compute_type='int8', "
            "intra_threads=N).forward_batch",
            # The default (oneDNN s8 GEMM) is the fast one for int8: MKL's is ~4x slower here.
        ),
        Spec(
            "minilm_fast-bf16",
            "minilm_fast bf16",
            "bf16",
            "self",
            "minilm_fast.Encoder(model_dir, threads=N, compute='bfloat16')"
            ".encode(texts, batch_size=32)",
        ),
        Spec(
            "minilm_fast-int8",
            "minilm_fast int8",
            "int8",
            "self",
            "minilm_fast.Encoder(model_dir, threads=N, compute='int8')"
            ".encode(texts, batch_size=32)",
        ),
    )
}

# Before and after a change: minilm_fast's three engines again, each run exactly as its twin
# but by another Python, one with the wheel of an earlier revision (``make baseline``, then
# ``compare.py --baseline-python``). baseline key -> its twin.
BASELINE_OF: dict[str, str] = {
    "minilm_fast-baseline": "minilm_fast",
    "minilm_fast-bf16-baseline": "minilm_fast-bf16",
    "minilm_fast-int8-baseline": "minilm_fast-int8",
}
SPECS.update(
    {
        key: Spec(
            key,
            f"{SPECS[twin].label} (baseline)",
            SPECS[twin].precision,
            "baseline",
            f"as {twin}, with the baseline's wheel (--baseline-python)",
            SPECS[twin].env,
        )
        for key, twin in BASELINE_OF.items()
    }
)

# minilm_fast's engines: key -> the ``compute=`` mode its Encoder is built with.
MINILM_FAST_COMPUTE: dict[str, Literal["float32", "bfloat16", "int8"]] = {
    "minilm_fast": "float32",
    "minilm_fast-bf16": "bfloat16",
    "minilm_fast-int8": "int8",
}
MINILM_FAST_COMPUTE.update({key: MINILM_FAST_COMPUTE[twin] for key, twin in BASELINE_OF.items()})

# Where scripts/prepare_peers.py puts each peer's files, relative to the peers folder.
PEER_FILES: dict[str, str] = {
    "onnxruntime": "onnx/model-optimized.onnx",
    "openvino": "openvino/model.xml",
    "ctranslate2": "ct2-float32",
    "ctranslate2-int8": "ct2-int8",
}


@dataclass
class Engine:
    key: str
    encode: Callable[[Sequence[str], int], np.ndarray]
    encode_one: Callable[[str], np.ndarray]
    versions: dict[str, str] = field(default_factory=dict)
    compute: str | None = None  # minilm_fast's engines: what its Encoder says it runs


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def peer_path(key: str, peers_dir: Path) -> Path:
    path = peers_dir / PEER_FILES[key]
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: prepare the peers first "
            f"(make peers, or python scripts/prepare_peers.py --out {peers_dir})"
        )
    return path


def load(key: str, model_dir: Path, peers_dir: Path, threads: int) -> Engine:
    """The engine ``key`` of ``SPECS``, loaded and ready for its first text."""
    loaders: dict[str, Callable[[Path, Path, int], Engine]] = {
        **{k: functools.partial(_minilm_fast, key=k) for k in MINILM_FAST_COMPUTE},
        "onnxruntime": _onnxruntime,
        "openvino": _openvino,
        "ctranslate2": lambda m, p, t: _ctranslate2(m, p, t, "ctranslate2", "float32"),
        "ctranslate2-int8": lambda m, p, t: _ctranslate2(m, p, t, "ctranslate2-int8", "int8"),
        "sentence-transformers": _sentence_transformers,
    }
    if key not in loaders:
        raise KeyError(f"unknown engine {key!r}; known: {', '.join(loaders)}")
    return loaders[key](model_dir, peers_dir, threads)


def _pipeline_engine(
    key: str, model_dir: Path, forward: Callable[[np.ndarray, np.ndarray], np.ndarray]
) -> Engine:
    pipe = Pipeline(model_dir)

    def encode(texts: Sequence[str], batch_size: int) -> np.ndarray:
        return pipe.encode(texts, batch_size, forward)

    def encode_one(text: str) -> np.ndarray:
        return pipe.encode([text], 1, forward)[0]

    return Engine(key, encode, encode_one)


def _minilm_fast(model_dir: Path, peers_dir: Path, threads: int, key: str) -> Engine:
    from minilm_fast import Encoder

    compute = MINILM_FAST_COMPUTE[key]
    # On a CPU without the mode's instructions Encoder warns and computes in float32: that
    # would measure float32 under another name, so the worker stops instead.
    enc = Encoder(model_dir, threads=threads, compute=compute)
    if enc.compute != compute:
        raise RuntimeError(
            f"{key}: asked for compute={compute!r}, but Encoder.compute is {enc.compute!r} "
            "(a CPU without the mode's instructions falls back to float32)"
        )
    return Engine(
        key,
        lambda texts, bs: enc.encode(list(texts), batch_size=bs),
        lambda text: enc.encode(text),
        {"minilm_fast": version("minilm-fast")},
        compute=enc.compute,
    )


def _onnxruntime(model_dir: Path, peers_dir: Path, threads: int) -> Engine:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(
        str(peer_path("onnxruntime", peers_dir)), opts, providers=["CPUExecutionProvider"]
    )

    def forward(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        return session.run(["last_hidden_state"], feed)[0]

    engine = _pipeline_engine("onnxruntime", model_dir, forward)
    engine.versions = {"onnxruntime": ort.__version__}
    return engine


def _openvino(model_dir: Path, peers_dir: Path, threads: int) -> Engine:
    import openvino as ov

    core = ov.Core()
    # Without the precision hint OpenVINO runs bf16 on CPUs with AVX512-BF16 / AMX: not fp32.
    config = {
        "INFERENCE_NUM_THREADS": threads,
        "INFERENCE_PRECISION_HINT": "f32",
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1,
    }
    compiled = core.compile_model(str(peer_path("openvino", peers_dir)), "CPU", config)
    if str(compiled.get_property("INFERENCE_PRECISION_HINT")) not in ("f32", "<Type: 'float32'>"):
        raise RuntimeError(
            f"OpenVINO compiled for {compiled.get_property('INFERENCE_PRECISION_HINT')}, not f32"
        )
    request = compiled.create_infer_request()
    output = compiled.output(0)

    def forward(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        return request.infer(feed)[output]

    engine = _pipeline_engine("openvino", model_dir, forward)
    engine.versions = {"openvino": ov.__version__.split("-")[0]}
    return engine


def _ctranslate2(
    model_dir: Path, peers_dir: Path, threads: int, key: str, compute_type: str
) -> Engine:
    import ctranslate2

    encoder = ctranslate2.Encoder(
        str(peer_path(key, peers_dir)),
        device="cpu",
        compute_type=compute_type,
        intra_threads=threads,
        inter_threads=1,
    )

    def forward(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        lengths = mask.sum(axis=1, dtype=np.int32)
        out = encoder.forward_batch(
            ctranslate2.StorageView.from_array(np.ascontiguousarray(ids, dtype=np.int32)),
            ctranslate2.StorageView.from_array(lengths),
        )
        return np.asarray(out.last_hidden_state)

    engine = _pipeline_engine(key, model_dir, forward)
    engine.versions = {"ctranslate2": ctranslate2.__version__}
    return engine


def _sentence_transformers(model_dir: Path, peers_dir: Path, threads: int) -> Engine:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import sentence_transformers
    import torch

    torch.set_num_threads(threads)
    model = sentence_transformers.SentenceTransformer(str(model_dir), device="cpu")

    def encode(texts: Sequence[str], batch_size: int) -> np.ndarray:
        return model.encode(list(texts), batch_size=batch_size, show_progress_bar=False)

    def encode_one(text: str) -> np.ndarray:
        return model.encode(text, show_progress_bar=False)

    return Engine(
        "sentence-transformers",
        encode,
        encode_one,
        {"sentence-transformers": sentence_transformers.__version__, "torch": torch.__version__},
    )
