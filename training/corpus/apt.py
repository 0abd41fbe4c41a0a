"""Debian package plumbing for the recipe: install tools, download and unpack data packages.

The recipe needs a few Debian packages (FluidSynth and GM soundfonts to render, game music
packages as data); the product needs none of them, so they are fetched here, on demand, and
never listed as run-time dependencies.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

__all__ = ["download", "install", "is_installed", "unpack"]


def _root_prefix() -> list[str]:
    return [] if os.geteuid() == 0 else ["sudo"]


def is_installed(package: str) -> bool:
    """True when dpkg knows `package` as installed."""
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True, check=False
    )
    return result.returncode == 0 and "install ok installed" in result.stdout


_ENV = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}


def _update() -> None:
    subprocess.run([*_root_prefix(), "apt-get", "update", "-qq"], check=True, env=_ENV)


def install(packages: Sequence[str]) -> None:
    """apt-get install the missing ones (runs `apt-get update` first when something is missing)."""
    missing = [p for p in packages if not is_installed(p)]
    if not missing:
        return
    _update()
    subprocess.run(
        [*_root_prefix(), "apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
        check=True,
        env=_ENV,
    )


def download(package: str, dest: Path) -> Path:
    """The package's .deb in `dest`, fetched with `apt-get download` unless already there."""
    dest.mkdir(parents=True, exist_ok=True)
    found = sorted(dest.glob(f"{package}_*.deb"))
    if not found:
        fetch = ["apt-get", "download", package]
        if subprocess.run(fetch, cwd=dest, check=False).returncode != 0:
            _update()  # a fresh system has no package lists yet
            subprocess.run(fetch, cwd=dest, check=True)
        found = sorted(dest.glob(f"{package}_*.deb"))
    if not found:
        raise FileNotFoundError(f"apt-get download {package} left no .deb in {dest}")
    return found[-1]


def unpack(deb: Path, dest: Path) -> Path:
    """`dpkg -x` the package into `dest` (once; a finished unpack leaves a stamp file)."""
    stamp = dest / ".unpacked"
    if not stamp.exists():
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        subprocess.run(["dpkg", "-x", str(deb), str(dest)], check=True)
        stamp.write_text(deb.name + "\n", encoding="utf-8")
    return dest
