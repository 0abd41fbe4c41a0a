"""Memory readings and the child-process runner shared by the memory and scale benches.

Each measured case runs in a fresh child process (`python <bench> --child ...`), so its peak RSS
is its own and not the largest of every case so far; the child prints its result as the last
line of JSON on stdout.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path


def rss_mb() -> float:
    """Current resident set size (Linux /proc; falls back to the peak elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return peak_mb()


def peak_mb() -> float:
    """This process's peak RSS. Linux: VmHWM, because ru_maxrss survives fork + exec and would
    report the parent's size for a child that stayed smaller."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 2**20 if sys.platform == "darwin" else 2**10
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def run_child(script: str, args: list[str], data: Path, **env: str) -> dict:
    """Run `script --child *args` on the data folder `data`; its last stdout line, parsed."""
    child_env = dict(os.environ, MUSICSSL_DATA_DIR=str(data), **env)
    child_env.pop("MUSICSSL_DB", None)
    out = subprocess.run(
        [sys.executable, script, "--child", *args],
        check=True,
        capture_output=True,
        text=True,
        env=child_env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])
