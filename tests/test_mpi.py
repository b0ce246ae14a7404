"""Data-parallel training over MPI ranks, run for real: `mpiexec -n 2` on this machine.

They need the `mpi` extra (mpi4py + the mpich wheel, which .ci/run installs) and skip with the reason
where it cannot be installed. Every launch is bounded by a timeout; MPICH runs with HYDRA_LAUNCHER=fork
(no ssh) as in mpi4py's own CI.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

MPIEXEC = shutil.which("mpiexec") or (str(Path(sys.executable).parent / "mpiexec")
                                      if (Path(sys.executable).parent / "mpiexec").exists() else None)
try:
    import mpi4py  # noqa: F401
    HAVE_MPI4PY = True
except ImportError:
    HAVE_MPI4PY = False

pytestmark = pytest.mark.skipif(not (MPIEXEC and HAVE_MPI4PY),
                                reason="the mpi extra (mpi4py + an MPI with mpiexec) is not installed")

MODEL = ["--cell", "lstm", "--layers", "2", "--hidden", "16", "--embed", "8", "--dropout", "0.2",
         "--batch-size", "4", "--seq-len", "8", "--lr-schedule", "constant", "--log-every", "1",
         "--eval-every", "4", "--save-every", "2", "--threads", "1"]


def env():
    e = dict(os.environ, HYDRA_LAUNCHER="fork", FI_PROVIDER="tcp", CHARLM_MPI_TIMEOUT="60")
    e.pop("PMI_RANK", None)
    return e


def charlm(args, ranks: int = 1, timeout: float = 900, check: bool = True):
    cmd = [sys.executable, "-m", "charlm.cli", *args]
    if ranks > 1:
        cmd = [MPIEXEC, "-n", str(ranks), *cmd]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env(), stdin=subprocess.DEVNULL)
    if check:
        assert p.returncode == 0, p.stderr[-3000:]
    return p


def losses(run: Path) -> dict[int, float]:
    out = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("train_loss") is not None:
            out[rec["step"]] = rec["train_loss"]
    return out


def val_losses(run: Path) -> list[float]:
    return [json.loads(x)["val_loss"] for x in (run / "metrics.jsonl").read_text().splitlines()
            if json.loads(x).get("val_loss") is not None]


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """One process, B = 4 streams, 8 steps (also warms the kernel cache for the ranks)."""
    run = tmp_path_factory.mktemp("mpi") / "single"
    charlm(["train", "fables", *MODEL, "--max-steps", "8", "--out", str(run)])
    return run


def test_two_ranks_match_one_process_step_by_step(single, tmp_path):
    run = tmp_path / "two"
    p = charlm(["train", "fables", *MODEL, "--max-steps", "8", "--out", str(run)], ranks=2)
    a, b = losses(single), losses(run)
    assert sorted(a) == sorted(b) == list(range(1, 9))
    np.testing.assert_allclose([b[k] for k in sorted(b)], [a[k] for k in sorted(a)], rtol=1e-5)
    np.testing.assert_allclose(val_losses(run), val_losses(single), rtol=1e-5)
    assert p.stderr.count("corpus:") == 1, "only rank 0 speaks"
    info = charlm(["info", str(run)]).stdout
    assert "MPI ranks" in info and "2 (data-parallel)" in info


@pytest.mark.parametrize("first,second", [(2, 1), (1, 2)])
def test_resume_with_a_different_number_of_ranks(single, tmp_path, first, second):
    run = tmp_path / "resumed"
    charlm(["train", "fables", *MODEL, "--max-steps", "4", "--out", str(run)], ranks=first)
    charlm(["train", "--resume", str(run), "--max-steps", "8"], ranks=second)
    a, b = losses(single), losses(run)
    np.testing.assert_allclose([b[k] for k in range(1, 9)], [a[k] for k in range(1, 9)], rtol=1e-5)


def test_batch_that_does_not_split_is_a_usage_error(tmp_path):
    p = charlm(["train", "fables", *MODEL[:-2], "--batch-size", "3", "--max-steps", "2",
                "--out", str(tmp_path / "r")], ranks=2, check=False, timeout=120)
    assert p.returncode == 2
    assert "does not split evenly over 2 MPI ranks" in p.stderr
    assert "Traceback" not in p.stderr


def _rank_pids(marker: str) -> dict[int, int]:
    pids = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0")
            environ = (d / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker.encode() in b" ".join(cmd) and b"charlm.cli" in b" ".join(cmd):
            for kv in environ:
                if kv.startswith(b"PMI_RANK="):
                    pids[int(kv.split(b"=", 1)[1])] = int(d.name)
    return pids


def _wait_for(cond, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.2)
    return False


def _start(run: Path):
    cmd = [MPIEXEC, "-n", "2", sys.executable, "-m", "charlm.cli", "train", "fables", *MODEL,
           "--max-steps", "1000000", "--out", str(run)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(),
                            stdin=subprocess.DEVNULL)


def test_a_killed_rank_ends_the_job_and_the_last_checkpoint_resumes(single, tmp_path):
    run = tmp_path / "killed"
    proc = _start(run)
    try:
        assert _wait_for(lambda: (run / "checkpoint.safetensors").exists(), 600), "no checkpoint was written"
        pids = _rank_pids(str(run))
        assert 1 in pids, pids
        os.kill(pids[1], signal.SIGKILL)
        t0 = time.monotonic()
        proc.communicate(timeout=60)
        assert time.monotonic() - t0 < 30, "the job did not end promptly after a rank died"
        assert proc.returncode != 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    p = charlm(["train", "--resume", str(run), "--max-steps", "1"], check=False)  # step >= 1: nothing to do
    assert "Traceback" not in p.stderr
    from charlm import checkpoint as ckpt

    _, meta, _ = ckpt.load_checkpoint(str(run))
    step = int(meta["step"])
    assert step >= 2
    charlm(["train", "--resume", str(run), "--max-steps", str(step + 2)])
    assert max(losses(run)) == step + 2


def test_sigterm_to_the_job_saves_one_checkpoint_and_exits_143(single, tmp_path):
    run = tmp_path / "term"
    proc = _start(run)
    try:
        assert _wait_for(lambda: (run / "checkpoint.safetensors").exists(), 600)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 143, err[-2000:]
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    from charlm import checkpoint as ckpt

    _, meta, _ = ckpt.load_checkpoint(str(run))
    assert int(meta["step"]) == max(losses(run)), "the checkpoint holds the last step trained"
    assert (run / "model.safetensors").exists()


def test_without_a_launcher_mpi4py_is_never_imported(tmp_path):
    code = ("import sys, charlm.train, charlm.distributed as d; w = d.world(); "
            "assert w.size == 1 and 'mpi4py' not in sys.modules, sys.modules.keys()")
    e = {k: v for k, v in env().items() if not k.startswith(("PMI_", "OMPI_", "PMIX_"))}
    subprocess.run([sys.executable, "-c", code], check=True, env=e, timeout=120)
