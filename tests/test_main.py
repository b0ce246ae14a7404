"""``python -m charlm`` runs the CLI (the same entry point as the ``charlm`` script)."""

from __future__ import annotations

import subprocess
import sys

from charlm import __version__


def test_python_dash_m_charlm():
    r = subprocess.run([sys.executable, "-m", "charlm", "--version"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert __version__ in r.stdout and "charlm" in r.stdout
    r = subprocess.run([sys.executable, "-m", "charlm", "sample", "/no/such/run"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
