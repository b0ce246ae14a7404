"""Run a kernel test script in a fresh interpreter with Numba's bounds checks on (a fresh compile in
its own cache, the tests directory importable): the kernels must index only inside their arrays."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_checked(script: str, cache_dir) -> str:
    """stdout of ``python -c script`` under NUMBA_BOUNDSCHECK=1; fails the test on a non-zero exit."""
    here = str(Path(__file__).parent)
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(cache_dir),
               PYTHONPATH=os.pathsep.join([here, os.environ.get("PYTHONPATH", "")]))
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout
