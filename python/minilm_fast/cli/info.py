"""``minilm-fast info``: load a model and show what the engine will run (versions, model,
dimensions, threads, SIMD kernel, compute mode, CPU features), as text or JSON."""

from __future__ import annotations

import argparse
import json
import pathlib
import platform

import numpy as np

from .. import __version__
from .common import EXIT_OK
from .options import engine_options, load_encoder, messages_options, model_options

__all__ = ["X86_FEATURES", "add_parser", "cpu_features", "run"]

#: x86 CPU flags the kernels can use, in the order ``info`` lists them.
X86_FEATURES = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16")

_EPILOG = """\
examples:
  minilm-fast info
  minilm-fast info --model ./my-model --threads 4
  minilm-fast info --json | python -c "import json, sys; print(json.load(sys.stdin)['simd'])"
"""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``info`` and its options to ``commands``."""
    parser = commands.add_parser(
        "info",
        parents=[model_options(), engine_options(), messages_options()],
        help="show the version, model, dimensions, threads, SIMD kernel, compute mode and CPU "
        "features",
        description=(
            "Load a model and show what the engine will run: versions, model folder,\n"
            "embedding dimension, max_seq_length, pooling, threads, the SIMD kernel picked\n"
            "for this CPU, the compute mode that runs (--compute) and the CPU features it\n"
            "could use."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    parser.set_defaults(handler=run, parser=parser)


def run(args: argparse.Namespace) -> int:
    """``minilm-fast info``: what the engine will run, for bug reports and sanity checks."""
    encoder = load_encoder(args)
    native = encoder.native
    pooling = native.pooling
    machine = platform.machine() or "unknown"
    features = cpu_features()
    facts: dict[str, object] = {
        "version": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "model": encoder.model_name,
        "model_folder": str(encoder.model_path),
        "dim": encoder.get_sentence_embedding_dimension(),
        "max_seq_length": encoder.max_seq_length,
        "max_position_embeddings": native.max_position_embeddings,
        "pooling": pooling,
        "normalize": bool(native.normalize),
        "layers": native.num_layers,
        "hidden_size": native.hidden_size,
        "vocab_size": native.vocab_size,
        "threads": encoder.threads,
        "simd": native.isa,
        "compute": encoder.compute,
        "cpu": machine,
        "cpu_features": features,
    }
    if args.json:
        print(json.dumps(facts, indent=2))
        return EXIT_OK

    pipeline = (
        f"{native.num_layers} layers, hidden size {native.hidden_size}, "
        f"vocab {native.vocab_size}, {' + '.join(pooling)} pooling"
    )
    if native.normalize:
        pipeline += ", normalize"
    rows = [
        ("minilm-fast", f"{__version__} (Python {facts['python']}, numpy {np.__version__})"),
        ("model", encoder.model_name),
        ("model folder", encoder.model_path),
        ("embedding dim", facts["dim"]),
        (
            "max_seq_length",
            f"{encoder.max_seq_length} (model positions: {native.max_position_embeddings})",
        ),
        ("pipeline", pipeline),
        ("threads", encoder.threads),
        ("SIMD kernel", native.isa),
        ("compute", encoder.compute),
        ("CPU", f"{machine}, {' '.join(features)}" if features else machine),
    ]
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        print(f"{key + ':':<{width + 1}} {value}")
    return EXIT_OK


def cpu_features() -> list[str]:
    """The x86 flags of ``X86_FEATURES`` this CPU has, from /proc/cpuinfo; [] when unknown."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return []
    try:
        cpuinfo = pathlib.Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:  # not Linux, or no procfs
        return []
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            flags = set(value.split())
            return [feature for feature in X86_FEATURES if feature in flags]
    return []
