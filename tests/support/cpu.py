"""What the CPU under the tests offers, read the way a user would check it."""

from __future__ import annotations

import pathlib
import platform


def cpu_flags() -> set[str]:
    """The x86 flags of /proc/cpuinfo (none elsewhere, where `info` lists no features either)."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return set()
    try:
        cpuinfo = pathlib.Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()
