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
            self._cache_path = os.path.join(DIR, self.get_suitable_cache_subpath(py_file))

        def get_cache_path(self):
            return self._cache_path

        @classmethod
        def from_function(cls, py_func, py_file):
            if not _inside(py_file, PACKAGE_DIR):
                return None
            return super().from_function(py_func, py_file)

    caching.CacheImpl._locator_classes.insert(0, CharlmCacheLocator)
    return True


def files() -> list[str]:
    """Numba cache files (index .nbi, data .nbc) under DIR."""
    if DIR is None or not os.path.isdir(DIR):
        return []
    out = []
    for dirpath, _, names in os.walk(DIR):
        out.extend(os.path.join(dirpath, n) for n in names if n.endswith((".nbi", ".nbc")))
    return sorted(out)
