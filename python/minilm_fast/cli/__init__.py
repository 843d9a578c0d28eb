"""The ``minilm-fast`` command line: encode texts, search a small corpus, download a model, and
show what the engine runs on.

Examples::

    minilm-fast encode sentences.txt -o embeddings.npy
    minilm-fast encode docs.jsonl --field body -o embeddings.parquet
    cat sentences.txt | minilm-fast encode -o - > embeddings.npy
    minilm-fast encode -t "A man is eating food." -t "A man is eating pasta."
    minilm-fast search faq.txt "How do I reset my password?"
    MODEL_DIR=$(minilm-fast download)
    minilm-fast info

Exit codes: 0 success, 1 runtime error (model not found, unreadable input, unwritable output),
2 usage error, 130 interrupted (Ctrl-C), 141 stdout closed early (``| head``). Errors are one
message on stderr prefixed ``minilm-fast: error:``; set ``MINILM_FAST_DEBUG=1`` to also see the
Python traceback.

The package holds one module per command (``encode``, ``ray_encode`` for ``encode --ray``,
``search``, ``download``, ``info``), each with ``add_parser(commands)`` and ``run(args)``;
``formats`` reads texts and writes embeddings; ``options`` holds the options several commands
share; ``common`` the program name, exit codes and errors; ``app`` assembles the parser and
holds ``main``.

Everything is also reachable in-process, which is how the tests drive it:

>>> from minilm_fast.cli import main
>>> main(["download", "-q"])  # prints the model folder  # doctest: +ELLIPSIS
/...
0
"""

from __future__ import annotations

from .app import main

__all__ = ["main"]
