"""Prepare the peers' model files for benches/compare.py, from the model's own safetensors.

Run in the peers' environment (`make peers` creates it and runs this), offline:

    python scripts/prepare_peers.py --model-dir PATH/TO/all-MiniLM-L6-v2 [--out .cache/peers]

Steps (each skipped when its output exists for the same model.safetensors; --force redoes all):

1. ``onnx``: benches/peers/classic_bert.py (a torch BERT computing attention the classic way,
   mask added as ``(1 - mask) * -10000``) loads the safetensors and is exported with
   ``torch.onnx.export(dynamo=False, opset 14)``, batch and sequence axes dynamic ->
   ``onnx/model.onnx``. transformers 5's ``BertModel`` is not exported: its SDPA attention and
   mask utilities leave ``Attention`` unfused (see docs/COMPARE.md).
2. ``onnx-optimized``: ``onnxruntime.transformers.optimizer.optimize_model(model_type="bert")``
   -> ``onnx/model-optimized.onnx``. The fused operator counts are asserted (one
   EmbedLayerNormalization, one Attention and one BiasGelu per layer, two SkipLayerNormalization
   per layer): an unfused graph is not the peer, so the script stops if they are not there.
3. ``openvino``: ``openvino.convert_model(onnx/model.onnx)`` saved with
   ``compress_to_fp16=False`` (the default halves the weights) -> ``openvino/model.xml``.
4. ``ct2-float32`` / ``ct2-int8``: CTranslate2's Transformers converter, the same as
   ``ct2-transformers-converter --model DIR --output_dir OUT [--quantization int8]``.
5. ``verify``: every peer embeds benches/peers/workloads.py's VERIFY_TEXTS and is compared with
   sentence-transformers (and minilm_fast when it is importable here): float32 peers must reach
   cosine >= 0.9999 on every text, int8 >= 0.98 (a sanity bound); otherwise the script fails.

Everything, with timings, versions and the fused-operator statistics, goes to
``OUT/manifest.json``, which compare.py reads.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "benches"))

from peers import engines  # noqa: E402
from peers.workloads import VERIFY_TEXTS  # noqa: E402

MANIFEST_VERSION = 1
OPSET = 14
FP32_MIN_COSINE = 0.9999
INT8_MIN_COSINE = 0.98  # a sanity bound: int8 weights cost ~0.003 of cosine, the empty text 0.018


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_config(model_dir: Path) -> dict[str, Any]:
    return dict(json.loads((model_dir / "config.json").read_text(encoding="utf-8")))


def save(path: Path, manifest: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def export_onnx(model_dir: Path, out: Path) -> dict[str, Any]:
    """classic_bert -> ONNX file ``out``."""
    import torch
    from peers import classic_bert

    model = classic_bert.load(model_dir)
    ids = torch.tensor([[101, 2023, 2003, 1037, 3231, 102, 0], [101, 7592, 2088, 102, 0, 0, 0]])
    mask = (ids != 0).long()
    types = torch.zeros_like(ids)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            model,
            (ids, mask, types),
            str(out),
            dynamo=False,
            opset_version=OPSET,
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            do_constant_folding=True,
        )
    return {"torch": torch.__version__, "opset": OPSET, "exporter": "torch.onnx (TorchScript)"}


def optimize_onnx(model_dir: Path, plain: Path, out: Path) -> dict[str, Any]:
    """ONNX file ``plain`` -> transformer-optimized ONNX file ``out``, fusions asserted."""
    import onnxruntime
    from onnxruntime.transformers.optimizer import optimize_model

    cfg = model_config(model_dir)
    layers = int(cfg["num_hidden_layers"])
    optimized = optimize_model(
        str(plain),
        model_type="bert",
        num_heads=int(cfg["num_attention_heads"]),
        hidden_size=int(cfg["hidden_size"]),
    )
    stats = {k: int(v) for k, v in optimized.get_fused_operator_statistics().items()}
    wanted = {
        "EmbedLayerNormalization": (1, 1),
        "Attention": (layers, layers),
        "SkipLayerNormalization": (2 * layers, 2 * layers),
        "BiasGelu": (layers, layers),
    }
    missing = [
        f"{op}: {stats.get(op, 0)} (expected {lo}{'' if lo == hi else f'..{hi}'})"
        for op, (lo, hi) in wanted.items()
        if not lo <= stats.get(op, 0) <= hi
    ]
    if missing:
        raise SystemExit(
            "the ONNX Runtime transformer optimizer did not fuse the graph as expected, so it "
            "would not be the peer users get from optimum O2 / optimize_model:\n  "
            + "\n  ".join(missing)
            + f"\nall fused-operator statistics: {stats}"
        )
    optimized.save_model_to_file(str(out))
    return {"onnxruntime": onnxruntime.__version__, "fused_operators": stats}


def convert_openvino(plain: Path, out: Path) -> dict[str, Any]:
    """ONNX file ``plain`` -> OpenVINO IR folder ``out`` (model.xml + model.bin), fp32."""
    import openvino as ov

    out.mkdir()
    model = ov.convert_model(str(plain))
    ov.save_model(model, str(out / "model.xml"), compress_to_fp16=False)
    return {"openvino": ov.__version__.split("-")[0], "source": "onnx/model.onnx"}


def convert_ctranslate2(model_dir: Path, out: Path, quantization: str | None) -> dict[str, Any]:
    """The safetensors model -> CTranslate2 folder ``out``."""
    import ctranslate2
    from ctranslate2.converters import TransformersConverter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        TransformersConverter(str(model_dir)).convert(
            str(out), quantization=quantization, force=True
        )
    flag = f" --quantization {quantization}" if quantization else ""
    return {
        "ctranslate2": ctranslate2.__version__,
        "command": f"ct2-transformers-converter --model MODEL_DIR --output_dir OUT{flag}",
    }


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.asarray((a * b).sum(axis=1), dtype=np.float64)


def verify(model_dir: Path, out: Path, threads: int) -> dict[str, Any]:
    """Each peer against sentence-transformers (and minilm_fast, if importable here)."""
    references: dict[str, np.ndarray] = {}
    ref_engine = engines.load("sentence-transformers", model_dir, out, threads)
    references["sentence-transformers"] = ref_engine.encode(VERIFY_TEXTS, 32)
    try:
        mf = engines.load("minilm_fast", model_dir, out, threads)
        references["minilm_fast"] = mf.encode(VERIFY_TEXTS, 32)
    except ImportError:
        print("  (minilm_fast is not importable here: checked against sentence-transformers only)")
    results: dict[str, Any] = {}
    failures = []
    for key in engines.PEER_FILES:
        spec = engines.SPECS[key]
        got = engines.load(key, model_dir, out, threads).encode(VERIFY_TEXTS, 32)
        floor = FP32_MIN_COSINE if spec.precision == "fp32" else INT8_MIN_COSINE
        results[key] = {}
        for ref_name, ref in references.items():
            cos = cosines(got, ref)
            worst = float(cos.min())
            max_abs = float(np.abs(got - ref).max())
            results[key][ref_name] = {"min_cosine": worst, "max_abs_diff": max_abs}
            print(
                f"  {spec.label:<18} vs {ref_name:<22} "
                f"min cosine {worst:.7f}  max |diff| {max_abs:.1e}"
            )
            if worst < floor:
                failures.append(f"{spec.label} vs {ref_name}: min cosine {worst:.6f} < {floor}")
    if failures:
        raise SystemExit("peer embeddings disagree:\n  " + "\n  ".join(failures))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, help="model folder (default: resolve_model())")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / ".cache" / "peers")
    parser.add_argument("--force", action="store_true", help="redo every step")
    parser.add_argument("--threads", type=int, default=2, help="for the verify step")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    model_dir = args.model_dir
    if model_dir is None:
        try:
            from minilm_fast import resolve_model
        except ImportError:
            parser.error("--model-dir is needed (minilm_fast is not importable here)")
        model_dir = Path(resolve_model())
    model_dir = model_dir.resolve()
    missing = [
        n
        for n in ("config.json", "model.safetensors", "tokenizer.json")
        if not (model_dir / n).is_file()
    ]
    if missing:
        parser.error(f"{model_dir} is not a model folder: no {', '.join(missing)}")
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    manifest_path = out / "manifest.json"
    weights_sha = sha256(model_dir / "model.safetensors")
    old: dict[str, Any] = {}
    if manifest_path.is_file() and not args.force:
        old = json.loads(manifest_path.read_text(encoding="utf-8"))
        if old.get("model_sha256") != weights_sha or old.get("version") != MANIFEST_VERSION:
            print("model or manifest changed: redoing every step")
            old = {}
    manifest: dict[str, Any] = {
        "version": MANIFEST_VERSION,
        "model_dir": str(model_dir),
        "model_sha256": weights_sha,
        "python": platform.python_version(),
        "steps": {},
    }
    print(f"model {model_dir} (model.safetensors sha256 {weights_sha[:12]}…) -> {out}")

    def step(name: str, target: str, run: Callable[[Path], dict[str, Any]]) -> None:
        """``run(tmp)`` writes ``tmp`` (a file or a folder), which then becomes ``out/target``;
        skipped when ``out/target`` exists from the same model."""
        final = out / target
        previous = old.get("steps", {}).get(name)
        if previous is not None and final.exists():
            manifest["steps"][name] = previous
            print(f"{name:<15} cached ({target}; took {previous['seconds']:.1f} s)")
            return
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.tmp")
        remove(tmp)
        start = time.perf_counter()
        info = run(tmp)
        remove(final)
        tmp.rename(final)
        info["seconds"] = round(time.perf_counter() - start, 2)
        manifest["steps"][name] = info
        save(manifest_path, manifest)  # a later failure keeps this step's cache
        print(f"{name:<15} {info['seconds']:6.1f} s  -> {target}")

    total = time.perf_counter()
    plain = out / "onnx" / "model.onnx"
    step("onnx", "onnx/model.onnx", lambda tmp: export_onnx(model_dir, tmp))
    step(
        "onnx-optimized",
        "onnx/model-optimized.onnx",
        lambda tmp: optimize_onnx(model_dir, plain, tmp),
    )
    step("openvino", "openvino", lambda tmp: convert_openvino(plain, tmp))
    step("ct2-float32", "ct2-float32", lambda tmp: convert_ctranslate2(model_dir, tmp, None))
    step("ct2-int8", "ct2-int8", lambda tmp: convert_ctranslate2(model_dir, tmp, "int8"))
    stats = manifest["steps"]["onnx-optimized"]["fused_operators"]
    print("fused operators:", ", ".join(f"{k} {v}" for k, v in stats.items() if v))

    print("verify (each peer against the reference engines):")
    start = time.perf_counter()
    manifest["verification"] = verify(model_dir, out, args.threads)
    manifest["verify_seconds"] = round(time.perf_counter() - start, 2)
    manifest["total_seconds"] = round(time.perf_counter() - total, 2)
    manifest["versions"] = {
        dist: engines.version(dist)
        for dist in (
            "torch",
            "onnx",
            "onnxruntime",
            "openvino",
            "ctranslate2",
            "sentence-transformers",
            "transformers",
            "tokenizers",
        )
    }
    save(manifest_path, manifest)
    print(f"ready in {manifest['total_seconds']:.1f} s: {manifest_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
