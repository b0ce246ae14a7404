"""Robustness matrix, faults: bad weight files, signals, kills, full disks, divergence, two trainers.

One test per row of the issue "no fault loses a run". Error rows assert the exit code, a key
phrase, no traceback and a few lines at most; fault rows assert that what was saved before the
fault still loads and that ``--resume`` continues from it. Signals and kills run
``python -m charlm.cli`` in subprocesses; everything else runs in-process.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
from clihelp import assert_clean_error, run  # noqa: E402
from prochelp import Proc  # noqa: E402
from prochelp import charlm_cmd as charlm  # noqa: E402
from runhelp import FOX as TEXT  # noqa: E402
from runhelp import SHAPE, metrics, tiny_run, write_corpus  # noqa: E402
from runhelp import SHAPE_OPTS as OPTS  # noqa: E402

from charlm import checkpoint as ckpt
from charlm import tensorfile
from charlm.errors import CharlmError
from charlm.safefile import RunLock
from charlm.train import train


def temp_files(run_dir) -> list[str]:
    return sorted(n for n in os.listdir(run_dir) if n.endswith(".tmp"))


def train_steps(run_dir) -> list[int]:
    return [r["step"] for r in metrics(run_dir) if "train_loss" in r]


@pytest.fixture
def procs():
    """Started subprocesses; any still running when the test ends are killed (by their own pid)."""
    started: list[Proc] = []
    yield lambda argv, cwd: started.append(Proc(argv, cwd)) or started[-1]
    for proc in started:
        proc.kill()


@pytest.fixture
def corpus(tmp_path):
    return write_corpus(tmp_path)


@pytest.fixture(scope="module")
def model_run(tmp_path_factory):
    """A real tiny run directory (model.safetensors and checkpoint.safetensors)."""
    return tiny_run(tmp_path_factory.mktemp("model"))


@pytest.fixture
def model_bytes(model_run):
    return (model_run / "model.safetensors").read_bytes()


# ---------------------------------------------------------------- checkpoints and weights rows


@pytest.mark.parametrize("where", ["no-such-path", "dir-without-model"])
def test_sample_missing_path(tmp_path, where):
    if where == "no-such-path":
        r = run("sample", tmp_path / "nowhere", "--length", "5")
        assert_clean_error(r, 2, "does not exist", "nowhere")
    else:
        r = run("sample", tmp_path, "--length", "5")
        assert_clean_error(r, 2, "no such model file", "model.safetensors", "pass a RUN_DIR or a model.safetensors")


@pytest.mark.parametrize("keep", ["in-header", "in-data", "last-byte"])
def test_sample_truncated_model(tmp_path, model_bytes, keep):
    header = 8 + int.from_bytes(model_bytes[:8], "little")
    cut = {"in-header": header // 2, "in-data": header + 10, "last-byte": len(model_bytes) - 1}[keep]
    p = tmp_path / "model.safetensors"
    p.write_bytes(model_bytes[:cut])
    r = run("sample", p, "--length", "5")
    assert_clean_error(r, 1, "model.safetensors", "truncated")
    assert r.stdout == ""


def test_sample_bit_flipped_model(tmp_path, model_bytes):
    blob = bytearray(model_bytes)
    blob[(8 + int.from_bytes(blob[:8], "little") + len(blob)) // 2] ^= 0x04  # one bit in the weights
    p = tmp_path / "model.safetensors"
    p.write_bytes(bytes(blob))
    r = run("sample", p, "--length", "5")
    assert_clean_error(r, 1, "checksum mismatch", "file is corrupt")


@pytest.mark.parametrize("kind", ["text", "foreign-safetensors", "resume-checkpoint"])
def test_sample_file_that_is_not_a_model(tmp_path, model_run, kind):
    from safetensors.numpy import save_file

    p = tmp_path / "thing.safetensors"
    if kind == "text":
        p.write_text(TEXT, encoding="utf-8")
        phrase = "not a safetensors file); pass a RUN_DIR or a model.safetensors file"
    elif kind == "foreign-safetensors":
        save_file({"weight": np.ones((2, 3), np.float32)}, str(p))
        phrase = "not a charlm model file"
    else:
        p.write_bytes((model_run / "checkpoint.safetensors").read_bytes())
        phrase = "this is a charlm resume checkpoint, not a model file"
    r = run("sample", p, "--length", "5")
    assert_clean_error(r, 1, "thing.safetensors", phrase)


def test_sample_future_format_version(tmp_path, model_run):
    sd, meta = ckpt.load_model(model_run)
    md = {"format": "charlm-model", "format_version": "2", "model_config": json.dumps(meta["model_config"]),
          "tokenizer": json.dumps(meta["tokenizer"]), "extra": "{}"}
    p = tmp_path / "model.safetensors"
    p.write_bytes(tensorfile.encode(sd, md))  # a valid file, checksum included, from "charlm format 2"
    r = run("sample", p, "--length", "5")
    assert_clean_error(r, 1, "written by a newer charlm (format 2", "upgrade charlm")


@pytest.mark.parametrize("offsets", ["claims-4TiB", "tiny-offsets"])
def test_sample_header_claiming_huge_shapes(tmp_path, model_run, offsets):
    _, meta = ckpt.load_model(model_run)
    md = {"format": "charlm-model", "format_version": "1", "model_config": json.dumps(meta["model_config"]),
          "tokenizer": json.dumps(meta["tokenizer"]), "extra": "{}", "checksum": "sha256:" + "0" * 64}
    end = 4 * 2**20 * 2**20 if offsets == "claims-4TiB" else 16
    header = json.dumps({"__metadata__": md, "embed.weight": {"dtype": "F32", "shape": [2**20, 2**20],
                                                              "data_offsets": [0, end]}}).encode()
    p = tmp_path / "model.safetensors"
    p.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 16)
    r = run("sample", p, "--length", "5")
    assert_clean_error(r, 1, "model.safetensors", "truncated" if offsets == "claims-4TiB" else "does not fill")
    tracemalloc.start()
    try:
        with pytest.raises(ckpt.CheckpointError):
            ckpt.load_model(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20  # refused from the header alone: nothing near 4 TiB was allocated


def test_resume_falls_back_to_older_rotated_checkpoint(corpus, tmp_path):
    out = tmp_path / "run"
    r = run("train", corpus, *SHAPE, "--max-steps", "3", "--save-every", "1", "--keep", "2", "--log-every", "1",
            "--out", out)
    assert r.exit_code == 0, r.output
    assert sorted(n for n in os.listdir(out) if n.startswith("checkpoint")) == [
        "checkpoint-00000002.safetensors", "checkpoint.safetensors"]
    cur = out / "checkpoint.safetensors"
    blob = bytearray(cur.read_bytes())
    blob[-3] ^= 0x01
    cur.write_bytes(bytes(blob))
    r = run("train", "--resume", out, "--max-steps", "5", "--log-every", "1")
    assert r.exit_code == 0, r.output
    assert ("checkpoint.safetensors is corrupt (checksum mismatch: file is corrupt (bit flip or truncated write)); "
            "resuming from checkpoint-00000002.safetensors") in r.stderr
    assert f"resuming {out} from step 2" in r.stderr
    assert ckpt.load_checkpoint(out)[1]["step"] == 5
    assert train_steps(out) == [1, 2, 3, 4, 5]  # the lost step 3 was redone, logged once


def test_unwritable_output_directory(corpus, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("keep me", encoding="utf-8")
    r = run("train", corpus, *SHAPE, "--max-steps", "1", "--out", blocker / "run")
    assert_clean_error(r, 2, "cannot create output directory", "Not a directory", "choose another --out")
    r = run("train", corpus, *SHAPE, "--max-steps", "1", "--out", blocker)
    assert_clean_error(r, 2, "afile", "is a file")
    assert blocker.read_text(encoding="utf-8") == "keep me"


def test_disk_full_during_checkpoint_write(corpus, tmp_path, monkeypatch):
    out = str(tmp_path / "run")
    real_write, real_save = os.write, ckpt.atomic_write_bytes
    saves = []

    def full_disk_save(path, data):
        """The 2nd checkpoint write finds the disk full (os.write fails inside the real atomic write)."""
        if os.path.basename(os.fspath(path)) == ckpt.CHECKPOINT_NAME:
            saves.append(path)
            if len(saves) == 2:
                def enospc(fd, buf):
                    raise OSError(errno.ENOSPC, "No space left on device")
                monkeypatch.setattr(os, "write", enospc)
                try:
                    return real_save(path, data)
                finally:
                    monkeypatch.setattr(os, "write", real_write)
        return real_save(path, data)

    monkeypatch.setattr(ckpt, "atomic_write_bytes", full_disk_save)
    with pytest.raises(CharlmError, match=r"cannot write .*checkpoint.safetensors: No space left on device "
                                          r"\(ENOSPC\); free some disk space"):
        train([str(corpus)], {**OPTS, "max_steps": 20, "save_every": 2, "log_every": 1, "out": out})
    monkeypatch.undo()
    assert temp_files(out) == []
    _, meta, path = ckpt.load_checkpoint(out)
    assert meta["step"] == 2 and path.name == "checkpoint.safetensors"
    res = train([], {"max_steps": 6}, resume=out)  # space freed: the run continues from step 2
    assert res.status == "finished" and res.step == 6
    assert train_steps(out)[-4:] == [3, 4, 5, 6]


# ---------------------------------------------------------------- fault rows


@pytest.mark.parametrize("signame,code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_signal_mid_training_saves_and_resumes(corpus, tmp_path, procs, signame, code):
    out = tmp_path / "run"
    p = procs(charlm("train", corpus, *SHAPE, "--max-steps", "100000", "--log-every", "1", "--out", out), tmp_path)
    p.wait_steps(3)
    p.p.send_signal(getattr(signal, signame))
    assert p.finish() == code, p.stderr
    assert "Traceback" not in p.stderr
    m = re.search(r"interrupted at step (\d+); checkpoint saved\. Resume with: charlm train --resume (\S+)", p.stderr)
    assert m and m.group(2) == str(out), p.stderr
    step = int(m.group(1))
    assert step >= 3 and ckpt.load_checkpoint(out)[1]["step"] == step
    notes = []
    res = train([], {"max_steps": step + 2}, resume=str(out), notice=notes.append)
    assert f"resuming {out} from step {step}" in notes
    assert res.status == "finished" and res.step == step + 2
    assert train_steps(out) == list(range(1, step + 3))


def test_kill9_mid_training_resumes_from_last_checkpoint(corpus, tmp_path, procs):
    out = tmp_path / "run"
    p = procs(charlm("train", corpus, *SHAPE, "--max-steps", "100000", "--log-every", "1", "--save-every", "2",
                     "--out", out), tmp_path)
    p.wait_steps(5)  # the checkpoint of step 4 was written before step 5 was logged
    p.p.kill()
    assert p.finish() == -signal.SIGKILL
    _, meta, _ = ckpt.load_checkpoint(out)
    step = meta["step"]
    assert step >= 4 and step % 2 == 0
    notes = []
    res = train([], {"max_steps": step + 2}, resume=str(out), notice=notes.append)
    assert f"resuming {out} from step {step}" in notes
    assert res.status == "finished" and res.step == step + 2
    assert train_steps(out) == list(range(1, step + 3))  # steps logged after the checkpoint were dropped


PAUSE_IN_WRITE = r"""
import os, sys, time
real_replace = os.replace
seen = []
def replace(src, dst, *a, **k):
    if os.path.basename(os.fspath(dst)) == "checkpoint.safetensors":
        seen.append(dst)
        if len(seen) == 2:  # the 2nd checkpoint: its temporary file is complete, the rename has not happened
            sys.stderr.write("PAUSED " + os.path.basename(os.fspath(src)) + "\n")
            sys.stderr.flush()
            time.sleep(120)
    return real_replace(src, dst, *a, **k)
os.replace = replace
from charlm.cli import main
main(sys.argv[1:])
"""


def test_kill9_mid_checkpoint_write(corpus, tmp_path, procs):
    out = tmp_path / "run"
    p = procs([sys.executable, "-c", PAUSE_IN_WRITE, "train", str(corpus), *SHAPE, "--max-steps", "100000",
               "--log-every", "1", "--save-every", "2", "--out", str(out)], tmp_path)
    p.wait_for(lambda lines: any(line.startswith("PAUSED ") for line in lines))
    stale = [line.split()[1] for line in p.lines if line.startswith("PAUSED ")][0]
    assert temp_files(out) == [stale]
    p.p.kill()
    assert p.finish() == -signal.SIGKILL
    _, meta, path = ckpt.load_checkpoint(out)
    assert meta["step"] == 2 and path.name == "checkpoint.safetensors"
    res = train([], {"max_steps": 6}, resume=str(out))
    assert res.status == "finished" and res.step == 6
    assert temp_files(out) == []  # the stale temporary file was cleaned up, and it broke nothing
    assert ckpt.load_checkpoint(out)[1]["step"] == 6


def test_nan_divergence_stops_and_keeps_last_good_checkpoint(corpus, tmp_path):
    out = tmp_path / "run"
    r = run("train", corpus, *SHAPE, "--cell", "rnn", "--nonlinearity", "relu", "--lr", "1e6", "--clip-norm", "0",
            "--max-steps", "50", "--save-every", "1", "--log-every", "1", "--out", out)
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), (r.output, r.exception)
    assert "Traceback" not in r.output
    m = re.search(r"training diverged at step (\d+) \(loss nan", r.stderr)
    assert m, r.stderr
    assert "the last good checkpoint is kept. Try a lower --lr or a --clip-norm" in r.stderr
    bad = int(m.group(1))
    tensors, meta, _ = ckpt.load_checkpoint(out)
    assert meta["step"] == bad - 1 and np.isfinite(tensors["model.flat"]).all()
    sd, _ = ckpt.load_model(out)
    assert all(np.isfinite(a).all() for a in sd.values())


def test_two_trainings_on_one_run_dir(corpus, tmp_path, procs):
    out = tmp_path / "run"
    p = procs(charlm("train", corpus, *SHAPE, "--max-steps", "100000", "--log-every", "1", "--save-every", "2",
                     "--out", out), tmp_path)
    p.wait_steps(2)
    r = run("train", "--resume", out, "--max-steps", "5")
    assert_clean_error(r, 1, f"run directory {out} is in use by another charlm train (pid {p.p.pid})",
                       "wait for it or choose another --out")
    r = run("train", corpus, *SHAPE, "--max-steps", "5", "--out", out)
    assert_clean_error(r, 2, "already holds a run", f"--resume {out}")
    assert p.p.poll() is None  # the first trainer was not disturbed
    p.p.kill()
    assert p.finish() == -signal.SIGKILL
    with RunLock(out) as lock:  # the kernel dropped the dead trainer's lock
        assert lock.locked


def test_debug_shows_traceback(tmp_path, model_bytes):
    blob = bytearray(model_bytes)
    blob[-1] ^= 0x01
    p = tmp_path / "model.safetensors"
    p.write_bytes(bytes(blob))
    plain = subprocess.run(charlm("sample", p, "--length", "5"), capture_output=True, text=True, timeout=60)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr and "checksum mismatch" in plain.stderr
    debug = subprocess.run(charlm("--debug", "sample", p, "--length", "5"), capture_output=True, text=True,
                           timeout=60)
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert "CheckpointError" in debug.stderr and "checksum mismatch" in debug.stderr
