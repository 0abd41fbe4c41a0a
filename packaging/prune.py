"""Trim PyInstaller's collected files (TOC lists) to what the app can load; used by musicssl.spec.

Why: hooks collect whole packages and every Qt plugin of a module, and each plugin drags in the
system libraries it links. Dropping a plugin must also drop the libraries that only it needed,
and nothing that anything else still links.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePosixPath

from PyInstaller.depend.bindepend import get_imports

# A TOC entry: (destination in the bundle, source path or link target, type code).
Entry = tuple[str, str, str]


def without_folders(
    toc: Iterable[Entry], folders: Iterable[str], keep: Iterable[str] = ()
) -> list[Entry]:
    """Entries outside the given bundle folders (e.g. "torch/test"), plus the `keep` paths."""
    prefixes = tuple(f"{folder.rstrip('/')}/" for folder in folders)
    kept = set(keep)
    return [entry for entry in toc if entry[0] in kept or not entry[0].startswith(prefixes)]


def _linked(entries: Iterable[Entry]) -> set[str]:
    """Names of the shared libraries these binaries link (ldd's closure: direct and indirect)."""
    names: set[str] = set()
    for _dest, src, kind in entries:
        if kind != "SYMLINK":
            names.update(PurePosixPath(name).name for name, _path in get_imports(src))
    return names


def without_plugins(binaries: list[Entry], plugins: Iterable[str]) -> list[Entry]:
    """Drop plugins (by file name) and the top-level libraries that only they link."""
    plugins = set(plugins)
    dropped = [entry for entry in binaries if PurePosixPath(entry[0]).name in plugins]
    kept = [entry for entry in binaries if entry not in dropped]
    still_linked = _linked(kept)
    orphans = _linked(dropped) - still_linked
    # Only libraries PyInstaller put at the top as dependencies; never a package's own files.
    return [
        (dest, src, kind)
        for dest, src, kind in kept
        if "/" in dest or PurePosixPath(dest).name not in orphans
    ]
