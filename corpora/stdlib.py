"""The ``stdlib`` corpus: Python source assembled from the local standard library.

Nothing is downloaded or committed: the text is built on the user's machine from
``sysconfig.get_paths()["stdlib"]`` -- top-level modules first, then packages, each
group in sorted path order -- skipping site-packages, test suites, generated or data
modules, and files that are not UTF-8, until ``max_bytes`` is reached (whole files only).
The result is cached under ``$CHARLM_CACHE_DIR/corpora/`` (default
``~/.cache/charlm/corpora/``, or ``$XDG_CACHE_HOME/charlm/corpora/``).
"""

from __future__ import annotations

import hashlib
import os
import sys
import sysconfig
from pathlib import Path

from charlm.errors import UsageError

MAX_BYTES = 5_000_000
MAX_FILE_BYTES = 256_000  # larger files are data blobs (e.g. pydoc_data/topics.py)
FORMAT = 1
EXCLUDE_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__",
                "encodings", "pydoc_data", "ensurepip", "lib2to3"}


def cache_dir() -> Path:
    root = os.environ.get("CHARLM_CACHE_DIR")
    if root:
        return Path(root) / "corpora"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "charlm" / "corpora"


def stdlib_files(root: Path) -> list[Path]:
    """Candidate *.py files under ``root``, in the order they are added to the corpus."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in EXCLUDE_DIRS and not d.startswith((".", "config-"))]
        for name in filenames:
            if name.endswith(".py") and not name.startswith(("_sysconfigdata", ".")):
                path = Path(dirpath, name)
                rel = path.relative_to(root)
                found.append((len(rel.parts), rel.as_posix(), path))
    return [p for _, _, p in sorted(found)]


def build(root: Path, max_bytes: int = MAX_BYTES) -> tuple[str, int]:
    """(text, number of files) from the standard library at ``root``."""
    parts, total = [], 0
    for path in stdlib_files(root):
        try:
            raw = path.read_bytes()
        except OSError:
            continue
        if not raw.strip() or len(raw) > MAX_FILE_BYTES or b"\x00" in raw:
            continue
        if total + len(raw) > max_bytes:
            break
        try:
            parts.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            continue
        total += len(raw)
    return "".join(parts), len(parts)


def stdlib_root(root=None) -> Path:
    """The standard library's source directory (or ``root``); a usage error when it is missing."""
    root = Path(root or sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise UsageError(f"the standard library directory {root} does not exist: this Python installation "
                         "has no .py sources; train on your own text instead")
    return root


def cached(name: str, fmt: int, max_bytes: int, root: Path, build, *, empty: str, describe, notice=None) -> str:
    """A corpus built from ``root`` by ``build(root, max_bytes) -> (text, count)``, cached per user,
    Python version and settings (written atomically; not cached when the directory is unwritable).
    ``empty``: the usage error when nothing usable was found; ``describe(count, text)``: the notice."""
    key = hashlib.sha256(f"{fmt}|{root.resolve()}|{sys.version}|{max_bytes}".encode()).hexdigest()[:16]
    cache = cache_dir() / f"{name}-py{sys.version_info[0]}{sys.version_info[1]}-{key}.txt"
    if cache.is_file():
        return cache.read_text(encoding="utf-8")
    text, count = build(root, max_bytes)
    if not text.strip():
        raise UsageError(empty)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, cache)
        where = f"cached at {cache}"
    except OSError as e:
        where = f"not cached ({e.strerror}; set CHARLM_CACHE_DIR to a writable directory)"
    if notice:
        notice(f"corpus {name}: {describe(count, text)} from {root}; {where}")
    return text


def get(max_bytes: int = MAX_BYTES, notice=None, root=None) -> str:
    """The cached stdlib corpus, building it on first use."""
    root = stdlib_root(root)
    return cached("stdlib", FORMAT, max_bytes, root, build, notice=notice,
                  empty=f"no usable .py files under {root} (max_bytes={max_bytes}): raise max_bytes, "
                        "e.g. stdlib:max_bytes=5000000, or train on your own text",
                  describe=lambda n, text: f"{n} files, {len(text) / 1e6:.1f}M characters")
