"""``python -m minilm_fast``: the same command line as the ``minilm-fast`` console script."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
