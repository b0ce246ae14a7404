"""Storage layer: model files, resume checkpoints, atomic writes, integrity checks, the run lock."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest

from charlm import checkpoint as ck
from charlm import safefile, tensorfile
from charlm.errors import CharlmError, CheckpointError, UsageError


def small_state(seed=0):
    """A tiny LSTM-shaped state dict under PyTorch names: V=5, E=3, H=2 (4H=8)."""
    rng = np.random.default_rng(seed)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)
    return {
        "embed.weight": f(5, 3),           # (V, E)
        "rnn.weight_ih_l0": f(8, 3),       # (4H, E)
        "rnn.weight_hh_l0": f(8, 2),       # (4H, H)
        "rnn.bias_ih_l0": f(8),            # (4H,)
        "head.weight": f(5, 2),            # (V, H)
        "head.bias": f(5),                 # (V,)
    }


MODEL_CONFIG = {"vocab_size": 5, "cell": "lstm", "layers": 1, "hidden": 2, "embed": 3}
TOKENIZER = {"kind": "char", "chars": "ab\x00\n\u00e9\U0001f600\udc80"}


def write_model(path, state=None, **kw):
    kw.setdefault("model_config", MODEL_CONFIG)
    kw.setdefault("tokenizer", TOKENIZER)
    return ck.save_model(path, small_state() if state is None else state, **kw)


def raw_file(header: dict, data: bytes = b"") -> bytes:
    h = json.dumps(header).encode()
    return len(h).to_bytes(8, "little") + h + data


def header_len(blob: bytes) -> int:
    return 8 + int.from_bytes(blob[:8], "little")


def assert_same(a: dict, b: dict):
    assert list(sorted(a)) == list(sorted(b))
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        np.testing.assert_array_equal(a[k], b[k])


# ---------------------------------------------------------------- round trips


def test_model_round_trip(tmp_path):
    state = small_state()
    path = write_model(tmp_path, state, extra={"steps": 12, "val_loss": 1.25, "nan": float("nan")})
    assert path == tmp_path / "model.safetensors"
    loaded, meta = ck.load_model(tmp_path)
    assert_same(loaded, state)
    assert meta["model_config"] == MODEL_CONFIG
    assert meta["tokenizer"] == TOKENIZER
    assert meta["extra"]["steps"] == 12 and np.isnan(meta["extra"]["nan"])
    assert meta["format_version"] == 1
    for arr in loaded.values():  # the trainer updates loaded arrays in place
        assert arr.flags.writeable and arr.flags.aligned and arr.flags.c_contiguous


def test_odd_layouts_and_dtypes_round_trip(tmp_path):
    state = {
        "t": np.arange(12, dtype=np.float32).reshape(3, 4).T,     # non-contiguous
        "be": np.arange(6, dtype=">f8").reshape(2, 3),            # big-endian
        "scalar": np.array(2.5, dtype=np.float64),                 # 0-d
        "empty": np.zeros((0, 3), dtype=np.float32),
        "i64": np.array([-(2**62), 2**62], dtype=np.int64),
        "u8": np.arange(7, dtype=np.uint8),
        "i32": np.array([-1, 7], dtype=np.int32),
        "b": np.array([True, False]),
        "h": np.ones(3, np.float16),
    }
    write_model(tmp_path, state)
    loaded, _ = ck.load_model(tmp_path / "model.safetensors")
    for k, v in state.items():
        assert loaded[k].shape == v.shape and loaded[k].dtype == v.dtype.newbyteorder("=")
        np.testing.assert_array_equal(loaded[k], v)


def test_model_file_is_plain_safetensors(tmp_path):
    from safetensors import safe_open
    from safetensors.numpy import load_file

    state = small_state()
    path = write_model(tmp_path, state)
    assert_same(load_file(str(path)), state)
    with safe_open(str(path), framework="np") as f:
        md = f.metadata()
    assert md["format"] == "charlm-model" and md["format_version"] == "1"
    assert json.loads(md["model_config"]) == MODEL_CONFIG
    assert tensorfile.CHECKSUM_RE.fullmatch(md["checksum"])


def test_model_file_loads_in_torch(tmp_path):
    pytest.importorskip("torch")
    from safetensors.torch import load_file

    state = small_state()
    loaded = load_file(str(write_model(tmp_path, state)))
    assert sorted(loaded) == sorted(state)
    for k, v in state.items():
        np.testing.assert_array_equal(loaded[k].numpy(), v)


def test_checksum_definition_is_layout_independent():
    a = np.arange(3, dtype=np.float32)
    b = np.arange(4, dtype=np.int64)
    one = tensorfile.checksum({"x": "1", "checksum": "ignored"}, {"a": ("F32", a), "b": ("I64", b)})
    two = tensorfile.checksum({"x": "1"}, {"b": ("I64", b), "a": ("F32", a)})
    assert one == two
    assert one != tensorfile.checksum({"x": "2"}, {"a": ("F32", a), "b": ("I64", b)})
    assert one != tensorfile.checksum({"x": "1"}, {"a": ("F32", a), "b": ("I64", b + 1)})
    assert one != tensorfile.checksum({"x": "1"}, {"a": ("F32", a.reshape(3, 1)), "b": ("I64", b)})


def test_checkpoint_round_trip_with_rng_state(tmp_path):
    pcg = np.random.default_rng(123)
    pcg.random(5)
    mt = np.random.Generator(np.random.MT19937(7))
    meta = {
        "step": 400, "tokens": 2**40, "lr": 3e-3, "huge": 2**200 + 1, "name": "run-\u00e9",
        "rng": pcg.bit_generator.state, "mt": mt.bit_generator.state,
        "history": [[1, 2.5], {"a": None}], "ok": True,
    }
    tensors = {**small_state(), "adam.m/head.bias": np.zeros(5, np.float32),
               "perm": np.arange(10, dtype=np.int64), "carry": np.zeros((1, 3, 2), np.float32)}
    path = ck.save_checkpoint(tmp_path, tensors, meta, step=400)
    assert path == tmp_path / "checkpoint.safetensors"
    got, got_meta, got_path = ck.load_checkpoint(tmp_path)
    assert got_path == path
    assert_same(got, tensors)
    assert got_meta["huge"] == 2**200 + 1 and got_meta["rng"] == pcg.bit_generator.state
    assert got_meta["history"] == [[1, 2.5], {"a": None}] and got_meta["name"] == "run-\u00e9"
    restored = np.random.default_rng()
    restored.bit_generator.state = got_meta["rng"]
    assert restored.random(3).tolist() == pcg.random(3).tolist()
    restored_mt = np.random.Generator(np.random.MT19937())
    restored_mt.bit_generator.state = got_meta["mt"]  # its numpy key array came back as a list
    assert restored_mt.integers(0, 2**31, 4).tolist() == mt.integers(0, 2**31, 4).tolist()


def test_atomic_write_text_and_permissions(tmp_path):
    p = tmp_path / "notes.json"
    safefile.atomic_write_text(p, "héllo")
    safefile.atomic_write_text(p, "second")
    assert p.read_text(encoding="utf-8") == "second"
    umask = os.umask(0)
    os.umask(umask)
    assert p.stat().st_mode & 0o777 == 0o666 & ~umask
    assert os.listdir(tmp_path) == ["notes.json"]


def test_save_refuses_unsupported_tensors(tmp_path):
    with pytest.raises(CheckpointError, match="dtype object is not supported"):
        write_model(tmp_path, {"x": np.array([None])})
    with pytest.raises(CheckpointError, match="names must be non-empty"):
        write_model(tmp_path, {"": np.zeros(1)})
    assert not os.listdir(tmp_path)


# ---------------------------------------------------------------- bad input files


def test_missing_model_file(tmp_path):
    with pytest.raises(UsageError, match="no such model file .*pass a RUN_DIR or a model.safetensors"):
        ck.load_model(tmp_path / "nope.safetensors")
    with pytest.raises(UsageError, match="model.safetensors"):
        ck.load_model(tmp_path)  # a RUN_DIR without a model


def test_every_truncation_is_a_clean_error(tmp_path):
    blob = write_model(tmp_path, {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}).read_bytes()
    p = tmp_path / "cut.safetensors"
    p.write_bytes(blob)
    for n in reversed(range(len(blob))):  # os.truncate: rewriting a file is slow on ext4 (auto_da_alloc)
        os.truncate(p, n)
        with pytest.raises(CheckpointError) as info:
            ck.load_model(p)
        if n >= header_len(blob):
            assert "truncated" in str(info.value), n


def test_every_single_bit_flip_is_detected(tmp_path):
    blob = write_model(tmp_path, {"w": np.arange(4, dtype=np.float32)}, tokenizer={"c": "ab"}).read_bytes()
    p = tmp_path / "flip.safetensors"
    p.write_bytes(blob)
    start = header_len(blob)
    fd = os.open(p, os.O_RDWR)
    try:
        for i in range(len(blob)):
            for bit in range(8):
                os.pwrite(fd, bytes([blob[i] ^ (1 << bit)]), i)  # in place: rewriting files is slow on ext4
                with pytest.raises(CheckpointError) as info:
                    ck.load_model(p)
                if i >= start:
                    assert "checksum mismatch: file is corrupt (bit flip or truncated write); use an earlier " \
                           "checkpoint" in str(info.value)
            os.pwrite(fd, blob[i:i + 1], i)
    finally:
        os.close(fd)
    assert ck.load_model(p)[0]["w"].tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("content", [
    b"", b"hello, this is a text file\n" * 20, bytes(range(256)) * 4,
    (2**64 - 1).to_bytes(8, "little") + b"{}",
    (7).to_bytes(8, "little") + b"[1,2,3]",
])
def test_garbage_is_refused(tmp_path, content):
    p = tmp_path / "x.safetensors"
    p.write_bytes(content)
    with pytest.raises(CheckpointError):
        ck.load_model(p)


def test_foreign_safetensors_file_is_not_ours(tmp_path):
    from safetensors.numpy import save

    p = tmp_path / "foreign.safetensors"
    p.write_bytes(save({"w": np.zeros(3, np.float32)}))
    with pytest.raises(CheckpointError, match="not a charlm model file"):
        ck.load_model(p)
    p.write_bytes(save({"w": np.zeros(3, np.float32)}, metadata={"format": "pt"}))
    with pytest.raises(CheckpointError, match="not a charlm model file"):
        ck.load_model(p)


def test_model_and_checkpoint_are_not_confused(tmp_path):
    ck.save_checkpoint(tmp_path, small_state(), {"step": 1}, step=1)
    with pytest.raises(CheckpointError, match="is a charlm resume checkpoint, not a model file"):
        ck.load_model(tmp_path / "checkpoint.safetensors")
    write_model(tmp_path / "checkpoint.safetensors")
    with pytest.raises(CheckpointError, match="no resumable checkpoint"):
        ck.load_checkpoint(tmp_path)


def test_not_a_regular_file(tmp_path):
    fifo = tmp_path / "fifo.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match="not a regular file"):  # and no hang on open()
        ck.load_model(fifo)


def test_future_format_version(tmp_path):
    p = tmp_path / "model.safetensors"
    p.write_bytes(tensorfile.encode({"w": np.zeros(2, np.float32)}, {
        "format": "charlm-model", "format_version": "7", "model_config": "{}", "tokenizer": "{}",
        "extra": "{}"}))
    with pytest.raises(CheckpointError, match=r"written by a newer charlm \(format 7.*upgrade charlm"):
        ck.load_model(p)


def test_future_checkpoint_is_neither_skipped_nor_overwritten(tmp_path):
    ck.save_checkpoint(tmp_path, {"w": np.zeros(2)}, {}, step=100)
    ck.save_checkpoint(tmp_path, {"w": np.ones(2)}, {}, step=200)
    cur = tmp_path / "checkpoint.safetensors"
    future = tensorfile.encode({"w": np.zeros(2)}, {
        "format": "charlm-checkpoint", "format_version": "2", "step": "300", "meta": "{}"})
    cur.write_bytes(future)
    with pytest.raises(ck.FutureFormatError, match="upgrade charlm"):
        ck.load_checkpoint(tmp_path)
    for keep in (1, 2):
        with pytest.raises(CheckpointError, match="refusing to overwrite"):
            ck.save_checkpoint(tmp_path, {"w": np.ones(2)}, {}, step=300, keep=keep)
    assert cur.read_bytes() == future


def test_huge_shapes_are_refused_before_allocating(tmp_path):
    p = tmp_path / "huge.safetensors"
    meta = {"format": "charlm-model", "format_version": "1", "model_config": "{}", "tokenizer": "{}",
            "extra": "{}", "checksum": "sha256:" + "0" * 64}
    n = 2**31
    headers = [
        {"__metadata__": meta, "w": {"dtype": "F32", "shape": [n, n], "data_offsets": [0, 4 * n * n]}},
        {"__metadata__": meta, "w": {"dtype": "F64", "shape": [n, n], "data_offsets": [0, 16]}},
        {"__metadata__": meta, "w": {"dtype": "F32", "shape": [2**62], "data_offsets": [0, 2**64]}},
        {"__metadata__": meta, "a": {"dtype": "U8", "shape": [16], "data_offsets": [0, 16]},
         "b": {"dtype": "U8", "shape": [16], "data_offsets": [0, 16]}},  # overlapping
    ]
    for header in headers:
        p.write_bytes(raw_file(header, bytes(16)))
        tracemalloc.start()
        t0 = time.perf_counter()
        try:
            with pytest.raises(CheckpointError):
                ck.load_model(p)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 1_000_000, header
        assert time.perf_counter() - t0 < 5.0
    p.write_bytes((10**9).to_bytes(8, "little") + b"{" + bytes(100))  # header length > file size
    with pytest.raises(CheckpointError, match="header length 1000000000 is impossible"):
        ck.load_model(p)


def test_max_bytes(tmp_path):
    path = write_model(tmp_path)
    with pytest.raises(CheckpointError, match="more than the limit of 100"):
        ck.load_model(path, max_bytes=100)
    ck.load_model(path, max_bytes=path.stat().st_size)


# ---------------------------------------------------------------- unwritable / full disks


def test_unwritable_output_dir(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(UsageError, match=r"cannot create output directory .*a_file/run.*choose another --out"):
        safefile.check_writable_dir(blocker / "run")
    with pytest.raises(UsageError, match="is a file, not a directory"):
        safefile.check_writable_dir(blocker)
    with pytest.raises(CharlmError, match=r"cannot write .*a_file/model.safetensors.*ENOTDIR"):
        write_model(blocker / "model.safetensors")
    assert safefile.check_writable_dir(tmp_path / "new" / "run").is_dir()


def test_unwritable_dir_eacces(tmp_path, monkeypatch):
    real_open = os.open

    def refuse(path, flags, *args, **kw):
        if flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(UsageError, match="is not writable: Permission denied.*choose another --out"):
        safefile.check_writable_dir(tmp_path)
    with pytest.raises(CharlmError, match="Permission denied.*check the directory's permissions"):
        write_model(tmp_path)


@pytest.mark.parametrize("victim", ["write", "fsync", "replace"])
def test_disk_full_keeps_previous_checkpoint(tmp_path, monkeypatch, victim):
    first = small_state(1)
    ck.save_checkpoint(tmp_path, first, {"step": 100}, step=100)
    before = sorted(os.listdir(tmp_path))

    def full(*args, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, victim, full)
    full_msg = r"cannot (write|rotate) .*No space left on device \(ENOSPC\); free some disk"
    with pytest.raises(CharlmError, match=full_msg):
        ck.save_checkpoint(tmp_path, small_state(2), {"step": 200}, step=200)
    monkeypatch.undo()
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    tensors, meta, path = ck.load_checkpoint(tmp_path)
    assert meta == {"step": 100} and path.name == "checkpoint.safetensors"
    assert_same(tensors, first)
    assert set(before) <= set(os.listdir(tmp_path))


def test_interrupt_during_write_leaves_no_temp(tmp_path, monkeypatch):
    path = write_model(tmp_path)
    old = path.read_bytes()

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_model(tmp_path, small_state(5))
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["model.safetensors"] and path.read_bytes() == old


# ---------------------------------------------------------------- rotation and fallback


def steps_on_disk(run_dir):
    return sorted(n for n in os.listdir(run_dir) if n.startswith("checkpoint"))


@pytest.mark.parametrize("keep", [1, 2, 3])
def test_rotation_keeps_at_most_keep_files(tmp_path, keep):
    for step in (100, 200, 300, 400, 500):
        ck.save_checkpoint(tmp_path, {"w": np.full(2, step)}, {"step": step}, step=step, keep=keep)
    rotated = [f"checkpoint-{s:08d}.safetensors" for s in (400, 300)[: keep - 1]]
    assert steps_on_disk(tmp_path) == sorted(rotated + ["checkpoint.safetensors"])
    for path in ck.checkpoint_paths(tmp_path):
        md, tensors = tensorfile.read(path, missing_msg="", check_meta=ck._checker("charlm-checkpoint"))
        assert int(md["step"]) == int(tensors["w"][0]) == json.loads(md["meta"])["step"]
    assert ck.load_checkpoint(tmp_path)[1] == {"step": 500}


def test_same_step_twice_does_not_rotate(tmp_path):
    ck.save_checkpoint(tmp_path, {"w": np.zeros(1)}, {"v": 1}, step=100)
    ck.save_checkpoint(tmp_path, {"w": np.zeros(1)}, {"v": 2}, step=100)
    assert steps_on_disk(tmp_path) == ["checkpoint.safetensors"]
    assert ck.load_checkpoint(tmp_path)[1] == {"v": 2}


def corrupt_data_byte(path):
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0x10
    path.write_bytes(blob)


def test_fallback_to_older_checkpoint(tmp_path):
    for step in (300, 400, 500):
        ck.save_checkpoint(tmp_path, {"w": np.full(2, step)}, {"step": step}, step=step, keep=3)
    cur = tmp_path / "checkpoint.safetensors"
    corrupt_data_byte(cur)
    notices = []
    tensors, meta, path = ck.load_checkpoint(tmp_path, notice=notices.append)
    assert meta == {"step": 400} and path.name == "checkpoint-00000400.safetensors"
    assert notices == ["checkpoint.safetensors is corrupt (checksum mismatch: file is corrupt (bit flip or "
                       "truncated write)); resuming from checkpoint-00000400.safetensors"]
    corrupt_data_byte(path)
    cur.unlink()
    notices.clear()
    assert ck.load_checkpoint(tmp_path, notice=notices.append)[1] == {"step": 300}
    assert notices[0].startswith("checkpoint.safetensors is missing, checkpoint-00000400.safetensors is "
                                 "corrupt (checksum mismatch")
    assert notices[0].endswith("; resuming from checkpoint-00000300.safetensors")


def test_corrupt_newest_is_replaced_not_rotated(tmp_path):
    ck.save_checkpoint(tmp_path, {"w": np.zeros(1)}, {"step": 100}, step=100)
    ck.save_checkpoint(tmp_path, {"w": np.ones(1)}, {"step": 200}, step=200)
    corrupt_data_byte(tmp_path / "checkpoint.safetensors")
    assert ck.load_checkpoint(tmp_path)[1] == {"step": 100}
    ck.save_checkpoint(tmp_path, {"w": np.ones(1)}, {"step": 150}, step=150)
    assert steps_on_disk(tmp_path) == ["checkpoint-00000100.safetensors", "checkpoint.safetensors"]
    assert ck.load_checkpoint(tmp_path)[1] == {"step": 150}


def test_no_resumable_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match=r"no resumable checkpoint in .*checkpoint.safetensors is missing"):
        ck.load_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="no resumable checkpoint"):
        ck.load_checkpoint(tmp_path / "does-not-exist")
    ck.save_checkpoint(tmp_path, {"w": np.zeros(1)}, {}, step=1)
    corrupt_data_byte(tmp_path / "checkpoint.safetensors")
    with pytest.raises(CheckpointError, match=r"no resumable checkpoint .*is corrupt \(checksum mismatch"):
        ck.load_checkpoint(tmp_path)


def test_save_checkpoint_argument_checks(tmp_path):
    with pytest.raises(UsageError, match="keep must be a positive"):
        ck.save_checkpoint(tmp_path, {}, {}, step=1, keep=0)
    with pytest.raises(ValueError):
        ck.save_checkpoint(tmp_path, {}, {}, step=-1)
    with pytest.raises(TypeError, match="cannot be stored in charlm metadata"):
        ck.save_checkpoint(tmp_path, {}, {"path": object()}, step=1)
    assert not os.listdir(tmp_path)


# ---------------------------------------------------------------- state dict validation


def test_validate_state_dict():
    state = small_state()
    shapes = {k: v.shape for k, v in state.items()}
    ck.validate_state_dict(state, shapes)
    with pytest.raises(CheckpointError, match=r"'head.weight' has shape \(5, 2\), expected \(5, 3\)"):
        ck.validate_state_dict(state, {**shapes, "head.weight": (5, 3)})
    with pytest.raises(CheckpointError, match="lacks tensor 'rnn.weight_ih_l1'"):
        ck.validate_state_dict(state, {**shapes, "rnn.weight_ih_l1": (8, 2)})
    with pytest.raises(CheckpointError, match="unexpected tensor 'embed.weight'"):
        ck.validate_state_dict(state, {k: s for k, s in shapes.items() if k != "embed.weight"})


# ---------------------------------------------------------------- the run lock

HOLDER = """
import sys, time
from charlm.safefile import RunLock
lock = RunLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(60)
"""


def test_run_lock_in_process(tmp_path):
    with safefile.RunLock(tmp_path) as lock:
        assert lock.locked
        with pytest.raises(CharlmError, match=f"in use by another charlm train \\(pid {os.getpid()}\\)"):
            safefile.RunLock(tmp_path).acquire()
    assert not lock.locked
    with safefile.RunLock(tmp_path):
        pass


def test_run_lock_names_the_holding_command(tmp_path):
    with safefile.RunLock(tmp_path, "charlm import"):
        with pytest.raises(CharlmError, match=f"in use by another charlm import \\(pid {os.getpid()}\\)"):
            safefile.RunLock(tmp_path).acquire()
    (tmp_path / safefile.LOCK_NAME).write_text("123\n")  # an older charlm's lock file: the pid alone
    with open(tmp_path / safefile.LOCK_NAME) as f:
        assert safefile._read_holder(f.fileno()) == ("123", "charlm train")


def test_run_lock_across_processes_and_kill_9(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(CharlmError) as info:
            safefile.RunLock(tmp_path).acquire()
        msg = str(info.value)
        assert f"{tmp_path} is in use by another charlm train (pid {proc.pid})" in msg
        assert "wait for it or choose another --out" in msg
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        with safefile.RunLock(tmp_path) as lock:
            assert lock.locked
            assert (tmp_path / ".lock").read_text().strip() == f"{os.getpid()} charlm train"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
