"""``charlm.backends.cpu.configure()``: importing the backend changes no process-wide setting; the
explicit call, the CLI's computing commands and the library's entry points do. Each case runs in a
fresh interpreter (this test process was configured by conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from charlm.backends.cpu.threads import SPINCOUNT

FIXTURE = Path(__file__).parent / "fixtures" / "lm_v1" / "gru"
USER_SET = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY", "NUMBA_THREADING_LAYER", "NUMBA_THREADING_LAYER_PRIORITY")

# what the settings are when the interpreter exits (after `body` ran); SciPy's BLAS is loaded first so
# its thread count is comparable whether or not anything limited it
PROBE = """
import atexit, json, os, sys
import scipy.linalg.cython_blas
from threadpoolctl import threadpool_info
def report():
    import numba
    blas = {i["filepath"]: i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}
    print(json.dumps({"env": {k: os.environ.get(k) for k in NAMES}, "blas": blas,
                      "layers": list(numba.config.THREADING_LAYER_PRIORITY)}), file=sys.stderr)
atexit.register(report)
before = {i["filepath"]: i["num_threads"] for i in __import__("threadpoolctl").threadpool_info()}
print(json.dumps(before), file=sys.stderr)
""".replace("NAMES", repr(USER_SET))


def settings(body: str, **env_extra):
    env = {k: v for k, v in os.environ.items() if k not in USER_SET}
    env.update(env_extra)
    proc = subprocess.run([sys.executable, "-c", PROBE + body], env=env, capture_output=True, text=True,
                          timeout=600)
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("{")]
    assert len(lines) == 2, proc.stderr
    before, after = json.loads(lines[0]), json.loads(lines[1])
    return before, after, proc


def is_configured(before, after) -> bool:
    scipys = [p for p in after["blas"] if "scipy" in os.path.basename(os.path.dirname(p)).lower()]
    limited = all(after["blas"][p] == 1 for p in scipys or after["blas"])
    return (after["env"]["GOMP_SPINCOUNT"] == SPINCOUNT and after["layers"][0] == "omp"
            and after["env"]["NUMBA_THREADING_LAYER_PRIORITY"] == "omp tbb workqueue" and limited)


def test_plain_import_changes_nothing():
    before, after, _ = settings("import charlm.backends.cpu, charlm.backends.cpu.gru, charlm.model")
    assert after["env"] == dict.fromkeys(USER_SET)                   # no variable set
    assert {p: after["blas"][p] for p in after["blas"]} == {p: before[p] for p in after["blas"]}
    assert not is_configured(before, after)


def test_configure_sets_them_and_respects_the_user():
    before, after, _ = settings("import charlm.backends.cpu as c; c.configure(); c.configure()")
    assert is_configured(before, after)
    _, after, _ = settings("import charlm.backends.cpu as c; c.configure()", OMP_WAIT_POLICY="passive",
                           NUMBA_THREADING_LAYER="workqueue")
    assert after["env"]["GOMP_SPINCOUNT"] is None and after["env"]["NUMBA_THREADING_LAYER_PRIORITY"] is None


@pytest.mark.parametrize("entry", [
    "import charlm; charlm.load(%r).sample(length=5)",                       # library: load -> sample
    "from charlm.cli import main; main(['sample', %r, '--length', '5'])",     # CLI: a computing command
])
def test_entry_points_configure(entry):
    before, after, proc = settings(entry % str(FIXTURE))
    assert proc.returncode == 0, proc.stderr
    assert is_configured(before, after), (after, proc.stderr)


def test_light_commands_do_not():
    _, after, proc = settings("from charlm.cli import main; main(['vocab', 'hello'])")
    assert proc.returncode == 0, proc.stderr
    assert after["env"]["GOMP_SPINCOUNT"] is None
