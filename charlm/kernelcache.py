"""Where compiled Numba kernels are cached: never inside the installed package.

A cache written beside the source of a non-editable install survives ``pip uninstall``,
and the leftover ``site-packages/charlm/`` folder (no ``__init__.py``) becomes a namespace
package that hides a later install. So charlm's kernels are cached in, first match wins:

1. ``$NUMBA_CACHE_DIR`` when set (Numba's own variable; one subfolder per source folder);
2. ``$XDG_CACHE_HOME/charlm/<version>/numba``, else ``~/.cache/charlm/<version>/numba``;
3. nowhere: when that directory cannot be created or written (or lies inside the package),
   kernels compile on every run and ``REASON`` says why. ``CHARLM_NUMBA_CACHE=0`` also
   switches caching off.

``enable(caching_module)`` puts a locator first in Numba's list (CPU ``numba.core.caching``,
CUDA ``numba.cuda.core.caching``) that handles charlm's own source files and declines every
other file, so other Numba code in the same process keeps Numba's defaults.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile

from . import __version__

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def default_dir(environ=os.environ) -> str:
    """charlm's kernel cache when NUMBA_CACHE_DIR is not set."""
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "charlm", __version__, "numba")


def _inside(path: str, folder: str) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder + os.sep)


def resolve(environ=os.environ) -> tuple[str | None, str]:
    """(cache directory, '') or (None, why there is no cache)."""
    if environ.get("CHARLM_NUMBA_CACHE", "1") == "0":
        return None, "CHARLM_NUMBA_CACHE=0"
    root = environ.get("NUMBA_CACHE_DIR") or default_dir(environ)
    if _inside(root, PACKAGE_DIR):
        return None, f"{root} is inside the installed package"
    try:
        os.makedirs(root, exist_ok=True)
        tempfile.TemporaryFile(dir=root).close()
    except OSError as e:
        return None, f"{root} is not writable ({e.strerror or e})"
    return root, ""


DIR, REASON = resolve()


def enable(caching) -> bool:
    """Route charlm's kernels in ``caching`` (a Numba caching module) to DIR; False = compile uncached."""
    if DIR is None:
        return False
    if any(getattr(c, "charlm_locator", False) for c in caching.CacheImpl._locator_classes):
        return True

    class CharlmCacheLocator(caching._SourceFileBackedLocatorMixin, caching._CacheLocator):
        charlm_locator = True

        def __init__(self, py_func, py_file):
            self._py_file = py_file
            self._lineno = py_func.__code__.co_firstlineno
            self._cache_path = folder_cache(py_file, self.get_suitable_cache_subpath(py_file))

        def get_cache_path(self):
            return self._cache_path

        @classmethod
        def from_function(cls, py_func, py_file):
            if not _inside(py_file, PACKAGE_DIR):
                return None
            return super().from_function(py_func, py_file)

    caching.CacheImpl._locator_classes.insert(0, CharlmCacheLocator)
    return True


@functools.cache
def _folder_digest(folder: str) -> str:
    """Digest of the (name, mtime, size) of every .py file in ``folder``."""
    h = hashlib.sha1()
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".py"))
    except OSError:
        names = []
    for n in names:
        try:
            st = os.stat(os.path.join(folder, n))
        except OSError:
            continue
        h.update(f"{n}:{st.st_mtime_ns}:{st.st_size};".encode())
    return h.hexdigest()[:12]


def folder_cache(py_file: str, subpath: str) -> str:
    """The cache folder of the kernels in ``py_file``: one per state of the source folder.

    Numba checks a cached kernel against its own source file only, but charlm's kernels call each
    other across files (every cell calls ``tile``): after an edit of tile.py (an editable install,
    a git pull) Numba would load the cells with the old tile compiled in (seen: 0.46x PyTorch from
    an old tile). So the folder holding the cache names the state of every source file beside
    the kernel's own: any change there starts a fresh folder."""
    return os.path.join(DIR, f"{subpath}-{_folder_digest(os.path.dirname(os.path.abspath(py_file)))}")


def cache_subpath(py_file: str) -> str:
    """Numba's ``_CacheLocator.get_suitable_cache_subpath`` (the source folder's name and the SHA-1 of
    its path), computed without importing Numba: a warm ``charlm train`` asks it before its first
    step, which runs on NumPy (tests/test_install.py checks that both agree)."""
    folder = os.path.dirname(os.path.abspath(py_file))
    return "_".join([os.path.split(folder)[-1], hashlib.sha1(folder.encode()).hexdigest()])


def _current_folders() -> list[str]:
    """The cache folders of the kernel source folders as they are now."""
    out = []
    for sub in ("cpu", "cuda"):
        src = os.path.join(PACKAGE_DIR, "backends", sub, "jit.py")
        out.append(folder_cache(src, cache_subpath(src)))
    return out


def files() -> list[str]:
    """Numba cache files (index .nbi, data .nbc) of the current sources under DIR."""
    if DIR is None or not os.path.isdir(DIR):
        return []
    out = []
    for folder in _current_folders():
        for dirpath, _, names in os.walk(folder):
            out.extend(os.path.join(dirpath, n) for n in names if n.endswith((".nbi", ".nbc")))
    return sorted(out)
