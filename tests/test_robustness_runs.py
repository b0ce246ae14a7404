"""Robustness matrix, run directories: no path loses a run (issue 13, items 1-4 and 8; issue 19.7).

Each row builds the situation for real (an earlier run, a user folder, a symbolic link, a second
trainer in another process) and asserts both the clean error and that every byte that was there
before is still there.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from clihelp import assert_clean_error, run  # noqa: E402
from runhelp import FOX as TEXT  # noqa: E402
from runhelp import SHAPE, SHAPE_OPTS, write_corpus  # noqa: E402

from charlm import rundir
from charlm.errors import UsageError
from charlm.train import Trainer, train
from charlm.trainsetup import prepare_run

TINY = [*SHAPE, "--max-steps", "2"]
OPTS = {**SHAPE_OPTS, "max_steps": 2}


def snapshot(d) -> dict:
    """Every file under ``d`` (links as their target text) -> its bytes."""
    out = {}
    for root, _, files in os.walk(d):
        for name in files:
            p = os.path.join(root, name)
            out[os.path.relpath(p, d)] = ("link", os.readlink(p)) if os.path.islink(p) else open(p, "rb").read()
    return out


@pytest.fixture
def corpus(tmp_path):
    return write_corpus(tmp_path)


@pytest.fixture
def trained(corpus, tmp_path):
    out = tmp_path / "run"
    res = train([str(corpus)], {**OPTS, "out": str(out), "eval_every": 1})
    assert res.status == "finished" and (out / rundir.MODEL).exists()
    return out


# ---------------------------------------------------------------- item 1: --out that is not this run


@pytest.mark.parametrize("lost", ["config.json", "config.json+checkpoint"])
def test_out_earlier_run_without_config_is_refused(corpus, trained, lost):
    os.unlink(trained / rundir.CONFIG)
    if "checkpoint" in lost:
        os.unlink(trained / rundir.CHECKPOINT)
    before = snapshot(trained)
    r = run("train", corpus, *TINY, "--out", trained)
    assert_clean_error(r, 2, f"--out {trained} is not empty", "files of an earlier run", rundir.MODEL,
                       "choose a new --out")
    assert snapshot(trained) == before


@pytest.mark.parametrize("names", [[rundir.MODEL], [rundir.IDS], [rundir.METRICS], ["notes.txt", "photo.jpg"]])
def test_out_user_folder_is_refused(corpus, tmp_path, names):
    d = tmp_path / "mine"
    d.mkdir()
    for n in names:
        (d / n).write_bytes(b"precious " + n.encode())
    before = snapshot(d)
    r = run("train", corpus, *TINY, "--out", d)
    assert_clean_error(r, 2, f"--out {d} is not empty", names[0], "never overwrites it")
    assert snapshot(d) == before


def test_out_empty_or_lock_only_dir_is_used(corpus, tmp_path):
    for n, setup in enumerate(("empty", "lock")):
        d = tmp_path / f"d{n}"
        d.mkdir()
        if setup == "lock":
            (d / rundir.LOCK).write_text("123\n")
        r = run("train", corpus, *TINY, "--out", d)
        assert r.exit_code == 0, r.output
        assert (d / rundir.CONFIG).exists() and (d / rundir.MODEL).exists()


def test_failed_fresh_run_in_existing_dir_can_be_retried(tmp_path):
    bad = tmp_path / "short.txt"
    bad.write_text("abcdefghij", encoding="utf-8")   # too short for the explicit window below
    d = tmp_path / "d"
    d.mkdir()
    r = run("train", bad, "--hidden", "8", "--batch-size", "4", "--seq-len", "8", "--val-frac", "0",
            "--max-steps", "1", "--out", d)
    assert_clean_error(r, 2, "too few for one window")
    assert [n for n in os.listdir(d) if n != rundir.LOCK] == []   # no ids.npy, no temporary file
    good = tmp_path / "good.txt"
    good.write_text(TEXT, encoding="utf-8")
    r = run("train", good, *TINY, "--out", d)
    assert r.exit_code == 0, r.output


# ---------------------------------------------------------------- item 2: two fresh trainings, one --out


def test_second_fresh_training_decides_under_the_lock(corpus, tmp_path):
    """B checks --out (empty), then A trains to the end in another process, then B gets the lock:
    B must see A's run and refuse instead of overwriting its config, checkpoint and model."""
    out = tmp_path / "run"
    spec_b = prepare_run([str(corpus)], {**OPTS, "out": str(out)}, resume=None, notice=lambda m: None)
    proc = subprocess.run([sys.executable, "-m", "charlm.cli", "train", str(corpus), *TINY, "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    before = snapshot(out)
    with pytest.raises(UsageError, match="already holds a run"):
        Trainer(spec_b, notice=lambda m: None).run()
    after = snapshot(out)
    assert {k: v for k, v in after.items() if k != rundir.LOCK} == \
        {k: v for k, v in before.items() if k != rundir.LOCK}   # B wrote nothing but its pid in the lock


# ---------------------------------------------------------------- item 3: symbolic links in a run


def test_lock_symlink_is_never_written_through(corpus, tmp_path):
    precious = tmp_path / "precious.txt"
    precious.write_text("do not truncate me\n")
    d = tmp_path / "run"
    d.mkdir()
    os.symlink("../precious.txt", d / rundir.LOCK)
    r = run("train", corpus, *TINY, "--out", d)
    assert_clean_error(r, 2, f"{d / rundir.LOCK} is a symbolic link", "never writes through links")
    assert precious.read_text() == "do not truncate me\n"


@pytest.mark.parametrize("name", [rundir.METRICS, rundir.LOCK, rundir.MODEL, rundir.CHECKPOINT])
def test_resume_refuses_a_symlinked_run_file(trained, tmp_path, name):
    elsewhere = tmp_path / "elsewhere"
    real = trained / name
    elsewhere.write_bytes(real.read_bytes() if real.exists() else b"kept\n")
    if real.exists():
        os.unlink(real)
    os.symlink(elsewhere, real)
    content = elsewhere.read_bytes()
    r = run("train", "--resume", trained, "--max-steps", "4")
    assert_clean_error(r, 2, f"{real} is a symbolic link", "never writes through links")
    assert elsewhere.read_bytes() == content


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_run_file_that_is_a_fifo_or_device_is_refused(trained, kind):
    """RUN/metrics.jsonl as a FIFO (or a link to /dev/zero) hung `info` and `train --resume`."""
    p = trained / rundir.METRICS
    os.unlink(p)
    if kind == "fifo":
        os.mkfifo(p)
    elif os.path.exists("/dev/zero"):
        os.symlink("/dev/zero", p)
    else:
        pytest.skip("no /dev/zero")
    what = "a FIFO" if kind == "fifo" else "a device"
    assert_clean_error(run("info", trained), 2, f"{p} is {what}, not a file charlm wrote", "remove it")
    r = run("train", "--resume", trained, "--max-steps", "4")
    assert_clean_error(r, 2, str(p), "remove it" if kind == "fifo" else "symbolic link")


# ---------------------------------------------------------------- item 4: outputs that are files of the run


@pytest.mark.parametrize("target", [rundir.MODEL, rundir.CHECKPOINT, rundir.CONFIG, rundir.TOKENIZER])
def test_sample_output_into_a_run_file_is_refused(trained, target):
    before = snapshot(trained)
    r = run("sample", trained, "--length", "5", "--seed", "1", "-o", trained / target)
    assert_clean_error(r, 2, "is a file of the run", target)
    r = run("sample", trained / rundir.MODEL, "--length", "5", "--seed", "1", "-o", trained / target)
    assert_clean_error(r, 2, "output")
    assert snapshot(trained) == before


def test_sample_output_is_the_model_file_itself(trained, tmp_path):
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes((trained / rundir.MODEL).read_bytes())
    r = run("sample", copy, "--length", "5", "--seed", "1", "-o", copy)
    assert_clean_error(r, 2, "is the model being read")
    assert copy.read_bytes() == (trained / rundir.MODEL).read_bytes()


def test_plot_output_into_a_run_file_is_refused(trained):
    before = snapshot(trained)
    r = run("plot", trained, "-o", trained / rundir.METRICS)
    assert_clean_error(r, 2, "is a file of the run", rundir.METRICS)
    assert snapshot(trained) == before


def test_sample_output_is_written_atomically(trained, tmp_path, monkeypatch):
    from charlm import generate

    out = tmp_path / "sample.txt"
    out.write_text("the previous sample\n")
    real = generate.Model.iter_sample

    def broken(self, *a, **kw):
        pieces = real(self, *a, **kw)
        yield next(pieces)
        raise KeyboardInterrupt   # Ctrl-C in the middle of the sample

    monkeypatch.setattr(generate.Model, "iter_sample", broken)
    r = run("sample", trained, "--length", "300", "--seed", "1", "--prime", "the ", "-o", out)
    assert r.exit_code == 130, r.output
    assert out.read_text() == "the previous sample\n"
    assert sorted(os.listdir(tmp_path)) == sorted(n for n in os.listdir(tmp_path) if not n.endswith(".tmp"))
    monkeypatch.setattr(generate.Model, "iter_sample", real)
    r = run("sample", trained, "--length", "20", "--seed", "1", "--no-echo-prime", "-o", out)
    assert r.exit_code == 0, r.output
    assert len(out.read_text()) == 20


def _read_fifo(path, got):
    import threading

    def reader():
        with open(path, "rb") as f:
            got.append(f.read())

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    return t


def test_output_to_a_fifo_or_device_is_written_in_place(trained, tmp_path):
    """`sample -o /dev/null` (a FIFO here) must never put a regular file where the device or FIFO was."""
    import stat
    import time

    from charlm.safefile import atomic_write_bytes

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    r = run("sample", trained, "--length", "5", "--seed", "1", "-o", fifo)   # nobody reads it yet
    assert_clean_error(r, 2, "is a FIFO that nobody reads", "start its reader first")
    got = []
    t = _read_fifo(fifo, got)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:   # wait until the reader has opened its end
        r = run("sample", trained, "--length", "5", "--seed", "1", "--no-echo-prime", "-o", fifo)
        if r.exit_code == 0 or "nobody reads" not in r.stderr:
            break
        time.sleep(0.05)
    assert r.exit_code == 0, r.output
    t.join(60)
    assert len(got[0].decode("utf-8")) == 5 and stat.S_ISFIFO(os.lstat(fifo).st_mode)
    got.clear()
    t = _read_fifo(fifo, got)
    while time.monotonic() < deadline:
        try:
            atomic_write_bytes(fifo, b"report")
            break
        except UsageError:
            time.sleep(0.05)
    t.join(60)
    assert got == [b"report"] and stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert [n for n in os.listdir(tmp_path) if n.endswith(".tmp")] == []


# ---------------------------------------------------------------- item 8: failed encodes leave no temp file


def test_failed_encode_leaves_no_temporary_file(corpus, trained):
    with open(corpus, "a", encoding="utf-8") as f:
        f.write("Zebra!\n")   # symbols the run's tokenizer never saw
    for _ in range(2):
        r = run("train", "--resume", trained, "--max-steps", "4")
        assert r.exit_code != 0
        assert "Traceback" not in r.output
    assert [n for n in os.listdir(trained) if "tmp" in n] == []


# ---------------------------------------------------------------- item 1 for the other trainers


@pytest.mark.parametrize("cmd", ["classify", "tag", "seq2seq"])
def test_other_trainers_never_overwrite_a_run(trained, tmp_path, cmd):
    data = tmp_path / "d.tsv"
    data.write_text("".join(f"{w}\t{w[0]}\n" for w in ["abc", "bcd", "cab", "bca"] * 10), encoding="utf-8")
    before = snapshot(trained)
    args = {"classify": ["classify", "train", data, "--out", trained, "--hidden", 4, "--embed", 2, "--max-steps", 2],
            "tag": ["tag", "train", data.parent / "corpus.txt", "--task", "spaces", "--out", trained, "--hidden", 4,
                    "--embed", 2, "--max-steps", 2],
            "seq2seq": ["seq2seq", "train", "reverse:n=50,max_len=4", "-o", trained, "--hidden", 4, "--embed", 2,
                        "--max-steps", 2]}[cmd]
    r = run(*args)
    assert_clean_error(r, 2, f"--out {trained} already holds a run", "choose a new --out")
    assert snapshot(trained) == before


def test_default_run_dirs_started_in_the_same_second_differ(tmp_path, monkeypatch):
    import time

    from charlm.trainsetup import default_run_dir

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(time, "strftime", lambda fmt: "20260101-000000")   # the same second for both
    first = default_run_dir(["book.txt"])
    os.makedirs(first)
    second = default_run_dir(["book.txt"])
    assert second != first and second.startswith(first)
