"""Robustness matrix, the trainers without --resume (classify, tag, seq2seq): their --out gets the rules
of ``charlm train`` (issue 13, items 1-3): a non-empty directory is refused, the decision is taken again
under the run lock, nothing is written through a symbolic link, and a failed or interrupted run leaves no
half-made directory behind.
"""

from __future__ import annotations

import os

import pytest
from clihelp import assert_clean_error, run

from charlm import rundir, safefile

TINY = ["--hidden", 4, "--embed", 2, "--max-steps", 2]
CMDS = ["classify", "tag", "seq2seq"]


@pytest.fixture
def data(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    (d / "d.tsv").write_text("".join(f"{w}\t{w[0]}\n" for w in ["abc", "bcd", "cab", "bca"] * 10), encoding="utf-8")
    (d / "corpus.txt").write_text("the quick brown fox jumps over the lazy dog\n" * 10, encoding="utf-8")
    return d


def args(cmd, data, out, *extra):
    return {"classify": ["classify", "train", data / "d.tsv", "--out", out],
            "tag": ["tag", "train", data / "corpus.txt", "--task", "spaces", "--out", out],
            "seq2seq": ["seq2seq", "train", "reverse:n=50,max_len=4", "-o", out]}[cmd] + TINY + list(extra)


def snapshot(d) -> dict:
    return {n: (("link", os.readlink(d / n)) if os.path.islink(d / n) else (d / n).read_bytes())
            for n in os.listdir(d)}


@pytest.mark.parametrize("cmd", CMDS)
@pytest.mark.parametrize("names", [["notes.txt"], [rundir.METRICS], [rundir.MODEL, rundir.CONFIG]])
def test_non_empty_out_is_refused_and_kept(data, tmp_path, cmd, names):
    d = tmp_path / "mine"
    d.mkdir()
    for n in names:
        (d / n).write_bytes(b"precious " + n.encode())
    before = snapshot(d)
    r = run(*args(cmd, data, d))
    phrase = "already holds a run" if rundir.MODEL in names else "is not empty"
    assert_clean_error(r, 2, f"--out {d} {phrase}", names[0], "choose a new --out")
    assert snapshot(d) == before


@pytest.mark.parametrize("cmd", CMDS)
def test_empty_or_lock_only_out_is_used(data, tmp_path, cmd):
    d = tmp_path / "d"
    d.mkdir()
    (d / rundir.LOCK).write_text("123\n")
    r = run(*args(cmd, data, d))
    assert r.exit_code == 0, r.output
    assert (d / rundir.MODEL).exists()


@pytest.mark.parametrize("cmd", CMDS)
def test_decided_again_under_the_lock(data, tmp_path, cmd, monkeypatch):
    """Another trainer fills --out between the early check and the lock: refused, its files untouched."""
    d = tmp_path / "d"
    real = rundir.make_run_dir

    def racing(run_dir):
        created = real(run_dir)
        (d / rundir.MODEL).write_bytes(b"the other trainer's model")
        return created

    monkeypatch.setattr(rundir, "make_run_dir", racing)
    r = run(*args(cmd, data, d))
    assert_clean_error(r, 2, "already holds a run", rundir.MODEL)
    assert (d / rundir.MODEL).read_bytes() == b"the other trainer's model"


@pytest.mark.parametrize("cmd", CMDS)
def test_a_held_lock_is_respected(data, tmp_path, cmd):
    d = tmp_path / "d"
    with safefile.RunLock(d):
        r = run(*args(cmd, data, d))
    assert_clean_error(r, 1, f"run directory {d} is in use", str(os.getpid()))
    assert sorted(os.listdir(d)) == [rundir.LOCK]


@pytest.mark.parametrize("cmd", CMDS)
def test_lock_symlink_is_never_written_through(data, tmp_path, cmd):
    precious = tmp_path / "precious.txt"
    precious.write_text("do not truncate me\n")
    d = tmp_path / "run"
    d.mkdir()
    os.symlink("../precious.txt", d / rundir.LOCK)
    r = run(*args(cmd, data, d))
    assert_clean_error(r, 2, f"{d / rundir.LOCK} is a symbolic link", "never writes through links")
    assert precious.read_text() == "do not truncate me\n"


@pytest.mark.parametrize("cmd", CMDS)
@pytest.mark.parametrize("existing", [False, True])
def test_interrupted_run_leaves_no_half_made_dir(data, tmp_path, cmd, existing, monkeypatch):
    """Ctrl-C at the final save: a directory this run made is gone, an existing one is empty again."""
    from charlm import checkpoint

    d = tmp_path / "run"
    if existing:
        d.mkdir()

    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save_model", interrupted)
    r = run(*args(cmd, data, d, "--max-steps", 3))
    assert r.exit_code != 0 and "Traceback" not in r.output
    if existing:
        assert [n for n in os.listdir(d) if n != rundir.LOCK] == []
    else:
        assert not d.exists()
    monkeypatch.undo()
    r = run(*args(cmd, data, d))   # and the same --out works afterwards
    assert r.exit_code == 0, r.output


def test_bad_pairs_leave_no_directory(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\nno tab here\n", encoding="utf-8")
    d = tmp_path / "run"
    assert_clean_error(run("seq2seq", "train", bad, "-o", d, "--max-steps", 1), 2, "line 2: no tab")
    assert not d.exists()


@pytest.mark.parametrize("cmd", ["classify", "seq2seq"])
def test_info_bounds_huge_metadata_of_other_runs(data, tmp_path, cmd):
    """issue 13: `info` (text and --json) never prints a multi-MB metadata string or list whole; --full does."""
    import json

    from charlm import checkpoint

    d = tmp_path / "run"
    assert run(*args(cmd, data, d)).exit_code == 0
    sd, meta = checkpoint.load_model(d)
    extra = meta["extra"]
    extra["metrics"] = {**extra["metrics"], "note": "z" * 3_000_000, "k" * 2_000_000: 1}
    extra["labels" if cmd == "classify" else "train"] = (extra.get("labels") or []) + [str(i) for i in range(200_000)]
    big = tmp_path / "big.safetensors"
    checkpoint.save_model(big, sd, model_config=meta["model_config"], tokenizer=meta["tokenizer"], extra=extra)
    for opts in ([], ["--json"]):
        r = run("info", big, *opts)
        assert r.exit_code == 0, r.output
        assert len(r.stdout) < 60_000 and "charlm info --full shows all" in r.stdout, len(r.stdout)
    r = run("info", big, "--json", "--full")
    assert r.exit_code == 0 and json.loads(r.stdout)["training"]["metrics"]["note"] == "z" * 3_000_000


def _inputs(cmd, path, tmp_path, run_dirs):
    return {"classify train": ["classify", "train", path, "--out", tmp_path / "new"],
            "tag train": ["tag", "train", path, "--task", "spaces", "--out", tmp_path / "new"],
            "seq2seq train": ["seq2seq", "train", path, "-o", tmp_path / "new"],
            "classify eval": ["classify", "eval", run_dirs["classify"], path],
            "seq2seq eval": ["seq2seq", "eval", run_dirs["seq2seq"], path]}[cmd]


INPUT_CMDS = ["classify train", "tag train", "seq2seq train", "classify eval", "seq2seq eval"]


@pytest.fixture
def run_dirs(data, tmp_path):
    dirs = {cmd: tmp_path / f"{cmd}-run" for cmd in ("classify", "seq2seq")}
    for cmd, d in dirs.items():
        assert run(*args(cmd, data, d)).exit_code == 0
    return dirs


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
@pytest.mark.parametrize("cmd", INPUT_CMDS)
def test_dev_zero_data_is_bounded(tmp_path, run_dirs, cmd, monkeypatch):
    """issue 13 item 6 for the other trainers: a device is read up to a bound, never until memory runs out."""
    from charlm import boundedread

    monkeypatch.setattr(boundedread, "TEXT_LIMIT", 1 << 20)
    r = run(*_inputs(cmd, "/dev/zero", tmp_path, run_dirs))
    assert_clean_error(r, 2, "/dev/zero holds more than 1 MiB", "give a regular file")
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("cmd", INPUT_CMDS)
def test_fifo_without_writer_does_not_hang(tmp_path, run_dirs, cmd, monkeypatch):
    from charlm import boundedread

    monkeypatch.setattr(boundedread, "FIFO_WAIT", 0.2)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    r = run(*_inputs(cmd, fifo, tmp_path, run_dirs))
    assert_clean_error(r, 2, f"{fifo} is a FIFO and nothing was written to it")
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("cmd", ["classify", "seq2seq"])
def test_sigterm_while_training_leaves_no_half_made_dir(data, tmp_path, cmd):
    """A supervisor's SIGTERM (a timeout) cleans up as Ctrl-C does: exit 143, no directory left behind."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    argv = [str(a) for a in args(cmd, data, out)] + ["--max-steps", "1000000"]
    argv += ["--eval-every", "1"] if cmd == "classify" else ["--log-every", "1"]
    proc = subprocess.Popen([sys.executable, "-m", "charlm.cli", *argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    sign = (out / rundir.METRICS) if cmd == "classify" else None
    while time.monotonic() < deadline and proc.poll() is None:   # wait until it is training
        if (sign.exists() if sign else proc.stderr.readline().startswith("step ")):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr.read()
    assert not out.exists()


@pytest.mark.parametrize("cmd", ["classify", "tag", "seq2seq"])
def test_stdin_lines_are_bounded_and_streamed(data, tmp_path, cmd, monkeypatch):
    """`charlm classify predict RUN < /dev/zero` (tag, seq2seq translate): one endless line is an error,
    not memory exhaustion; many lines are answered one per line, across batches."""
    from charlm import boundedread

    d = tmp_path / "run"
    assert run(*args(cmd, data, d)).exit_code == 0
    argv = {"classify": ["classify", "predict", d], "tag": ["tag", d], "seq2seq": ["seq2seq", "translate", d]}[cmd]
    lines = "".join(f"{w}\n" for w in ["abc", "cab", "bca"] * 200)
    r = run(*argv, input=lines)
    assert r.exit_code == 0, r.output
    assert len(r.stdout.splitlines()) == 600
    monkeypatch.setattr(boundedread, "TEXT_LIMIT", 1000)
    r = run(*argv, input="abc\n" + "b" * 5000)
    assert_clean_error(r, 2, "stdin line 2 is longer than 1,000 characters")


@pytest.fixture
def state_dict_file(tmp_path):
    """A PyTorch-named state dict (safetensors) and its tokenizer, as `charlm import` takes them."""
    from safetensors.numpy import save_file

    from charlm.config import ModelConfig
    from charlm.model import CharLM
    from charlm.tokenizer import CharTokenizer

    tok = CharTokenizer.from_text("abracadabra\n")
    tok.save(tmp_path / "tok.json")
    sd = CharLM(ModelConfig(vocab_size=len(tok), cell="lstm", layers=1, hidden=4, embed=3)).state_dict()
    save_file(sd, tmp_path / "sd.safetensors")
    return tmp_path / "sd.safetensors", tmp_path / "tok.json"


@pytest.mark.parametrize("names", [[rundir.CHECKPOINT], [rundir.METRICS, rundir.IDS], [rundir.TOKENIZER]])
def test_import_never_mixes_into_an_earlier_run(state_dict_file, tmp_path, names):
    """An earlier run that lost its config.json and model (a checkpoint, a log, a vocabulary left) is
    refused, not completed with a foreign model; the user's own files beside them are kept too."""
    sd, tok = state_dict_file
    d = tmp_path / "old"
    d.mkdir()
    for n in [*names, "notes.txt"]:
        (d / n).write_bytes(b"precious " + n.encode())
    before = snapshot(d)
    r = run("import", sd, "--cell", "lstm", "--tokenizer", tok, "--out", d)
    assert_clean_error(r, 2, f"--out {d} already holds files of a run", names[0], "choose another --out")
    assert snapshot(d) == before


def test_import_beside_user_files_and_under_the_lock(state_dict_file, tmp_path):
    sd, tok = state_dict_file
    d = tmp_path / "mine"
    d.mkdir()
    (d / "state.pt").write_bytes(b"the user's own file")
    with safefile.RunLock(d):
        r = run("import", sd, "--cell", "lstm", "--tokenizer", tok, "--out", d)
    assert_clean_error(r, 1, "is in use")
    assert sorted(os.listdir(d)) == [rundir.LOCK, "state.pt"]
    r = run("import", sd, "--cell", "lstm", "--tokenizer", tok, "--out", d)
    assert r.exit_code == 0, r.output
    assert (d / rundir.MODEL).exists() and (d / "state.pt").read_bytes() == b"the user's own file"


@pytest.mark.parametrize("cmd", ["classify", "tag"])
def test_out_inside_the_data_directory_is_refused(tmp_path, cmd):
    """A run inside a directory of labelled (or plain) texts would be read as data by every later command."""
    lab = tmp_path / "lab"
    for label in ("pos", "neg"):
        (lab / label).mkdir(parents=True)
        for i in range(6):
            (lab / label / f"{i}.txt").write_text(f"{label} text number {i}\n", encoding="utf-8")
    argv = (["classify", "train", lab] if cmd == "classify" else ["tag", "train", lab, "--task", "spaces"])
    r = run(*argv, "--out", lab / "run", *TINY)
    assert_clean_error(r, 2, f"--out {lab / 'run'} is inside the data directory {lab}", "outside it")
    assert sorted(os.listdir(lab)) == ["neg", "pos"]


@pytest.mark.parametrize("damage", ["no labels", "labels a string", "labels not strings", "too few labels",
                                    "tokenizer without chars", "hidden a string", "max_len a string"])
def test_damaged_classifier_metadata_is_one_line(data, tmp_path, damage):
    """A classify/tag model file whose metadata is not what training writes: a clean error, no traceback."""
    from charlm import checkpoint

    d = tmp_path / "run"
    assert run(*args("classify", data, d)).exit_code == 0
    sd, meta = checkpoint.load_model(d)
    mc, tok, extra = dict(meta["model_config"]), meta["tokenizer"], dict(meta["extra"])
    if damage == "no labels":
        del extra["labels"]
    elif damage == "labels a string":
        extra["labels"] = "abc"
    elif damage == "labels not strings":
        extra["labels"] = list(range(len(extra["labels"])))
    elif damage == "too few labels":
        extra["labels"] = extra["labels"][:1]
    elif damage == "tokenizer without chars":
        tok = {"kind": "labeled-chars"}
    elif damage == "hidden a string":
        mc["hidden"] = "big"
    else:
        extra["max_len"] = "long"
    bad = tmp_path / "bad" / rundir.MODEL
    bad.parent.mkdir()
    checkpoint.save_model(bad, sd, model_config=mc, tokenizer=tok, extra=extra)
    for argv in (["classify", "predict", bad.parent, "abc"], ["classify", "eval", bad.parent, data / "d.tsv"],
                 ["tag", bad.parent, "abc"]):
        assert_clean_error(run(*argv), 1, "bad classify metadata", "corrupt or foreign")
    r = run("info", bad.parent)
    assert r.exit_code in (0, 1) and "Traceback" not in r.output
