"""Fuzzing the readers: garbage in -> CheckpointError/UsageError (or the untouched original), nothing else."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charlm import checkpoint as ck
from charlm.errors import CheckpointError, UsageError

FUZZ = settings(max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
CLEAN = (CheckpointError, UsageError)
SAFETY_NET = "unexpected content ("  # tensorfile's catch-all: its checks must leave nothing for it

STATE = {
    "embed.weight": np.arange(6, dtype=np.float32).reshape(3, 2),   # (V, E)
    "head.bias": np.array([0.5, -1.0, 2.0], dtype=np.float32),       # (V,)
    "ids": np.array([1, 2**40], dtype=np.int64),
}
META = {"step": 7, "rng": {"state": 2**127 + 3, "inc": 5}, "lr": 0.01}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    model = ck.save_model(d / "model.safetensors", STATE, model_config={"vocab_size": 3, "hidden": 2},
                          tokenizer={"chars": "ab\n"}, extra={"steps": 7})
    run = d / "run"
    run.mkdir()
    ck.save_checkpoint(run, STATE, META, step=7)
    return {"model": model, "model_bytes": model.read_bytes(), "run": run,
            "ckpt_bytes": (run / "checkpoint.safetensors").read_bytes()}


def unchanged(tensors: dict) -> bool:
    return sorted(tensors) == sorted(STATE) and all(
        tensors[k].dtype == v.dtype and np.array_equal(tensors[k], v) for k, v in STATE.items())


def put(path, blob: bytes):
    """A new inode each time: overwriting in place is slow on ext4 (flush on truncate, auto_da_alloc)."""
    path.unlink(missing_ok=True)
    path.write_bytes(blob)
    return path


def check_model(path, blob: bytes) -> None:
    put(path, blob)
    try:
        tensors, meta = ck.load_model(path)
    except CLEAN as exc:
        assert SAFETY_NET not in str(exc), exc
        return
    assert unchanged(tensors), "a mutated file loaded with different tensors"
    assert meta["extra"] == {"steps": 7} and meta["tokenizer"] == {"chars": "ab\n"}


def check_checkpoint(run, blob: bytes) -> None:
    put(run / "checkpoint.safetensors", blob)
    try:
        tensors, meta, _ = ck.load_checkpoint(run)
    except CLEAN as exc:
        assert SAFETY_NET not in str(exc), exc
        return
    assert unchanged(tensors) and meta == META, "a mutated checkpoint loaded with different content"


# ---------------------------------------------------------------- byte-level mutations

mutation = st.tuples(st.sampled_from(["flip"] * 3 + ["set"] * 2 + ["insert", "delete", "truncate"]),
                     st.integers(0, 10**6), st.integers(0, 255))


def mutate(blob: bytes, ops) -> bytes:
    b = bytearray(blob)
    for kind, pos, val in ops:
        i = pos % (len(b) + 1)
        if kind == "insert":
            b[i:i] = bytes([val])
        elif kind == "truncate":
            del b[i:]
        elif b and i < len(b):
            if kind == "flip":
                b[i] ^= 1 << (val % 8)
            elif kind == "set":
                b[i] = val
            else:
                del b[i]
    return bytes(b)


@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes(files, blob):
    check_model(files["model"].with_name("random.safetensors"), blob)


json_ish = st.text(alphabet='{}[]":, 0123456789-.eE_aFIU\\', max_size=300).map(lambda s: ("{" + s).encode())


@FUZZ
@given(st.binary(max_size=400) | json_ish, st.binary(max_size=64))
def test_random_header_with_valid_length(files, header, data):
    check_model(files["model"].with_name("random.safetensors"), len(header).to_bytes(8, "little") + header + data)


@FUZZ
@given(st.lists(mutation, min_size=1, max_size=4))
def test_mutated_model_file(files, ops):
    check_model(files["model"].with_name("mutated.safetensors"), mutate(files["model_bytes"], ops))


@FUZZ
@given(st.lists(mutation, min_size=1, max_size=4))
def test_mutated_checkpoint(files, ops):
    check_checkpoint(files["run"], mutate(files["ckpt_bytes"], ops))


# ---------------------------------------------------------------- JSON header mutations

json_leaf = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
             | st.sampled_from([-1, 0, 2**31, 2**63, 2**64 - 1, 10**30, "F32", "I64", "BF16", "1", "2",
                                "charlm-model", "charlm-checkpoint", [0, 0], [0, 2**62], [2**40, 2**40]])
             .map(copy.deepcopy))  # the mutators edit drawn lists in place: never hand out shared ones
json_value = st.recursive(json_leaf, lambda ch: st.lists(ch, max_size=3)
                          | st.dictionaries(st.text(max_size=6), ch, max_size=3), max_leaves=8)


def split(blob: bytes) -> tuple[dict, bytes]:
    n = int.from_bytes(blob[:8], "little")
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def join(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + data


def paths(obj, prefix=()):
    """Every (key/index path) inside a JSON value, the root excluded."""
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for k, v in items:
        yield prefix + (k,)
        yield from paths(v, prefix + (k,))


def mutate_header(draw, header: dict) -> dict:
    """Replace, delete or add one node anywhere; metadata values may also become mutated JSON strings."""
    all_paths = list(paths(header))
    path = draw(st.sampled_from(all_paths))
    parent = header
    for k in path[:-1]:
        parent = parent[k]
    key = path[-1]
    action = draw(st.sampled_from(["replace", "delete", "add", "rejson"]))
    if action == "replace":
        parent[key] = draw(json_value)
    elif action == "delete":
        del parent[key]
    elif action == "add" and isinstance(parent, dict):
        parent[draw(st.text(max_size=6))] = draw(json_value)
    elif action == "add":
        parent.insert(key, draw(json_value))
    elif isinstance(parent[key], str):  # a JSON string inside a metadata value: mutate its decoded form
        try:
            inner = json.loads(parent[key])
        except ValueError:
            inner = None
        if isinstance(inner, dict) and inner:
            inner[draw(st.sampled_from(sorted(inner)))] = draw(json_value)
        else:
            inner = draw(json_value)
        parent[key] = json.dumps(inner)
    return header


@FUZZ
@given(st.data())
def test_mutated_model_header(files, data):
    header, tail = split(files["model_bytes"])
    for _ in range(data.draw(st.integers(1, 3))):
        header = mutate_header(data.draw, header)
    check_model(files["model"].with_name("header.safetensors"), join(header, tail))


@FUZZ
@given(st.data())
def test_mutated_checkpoint_header(files, data):
    header, tail = split(files["ckpt_bytes"])
    for _ in range(data.draw(st.integers(1, 3))):
        header = mutate_header(data.draw, header)
    check_checkpoint(files["run"], join(header, tail))


def test_fixture_files_are_valid(files):
    """The fuzzers start from files that load: otherwise every mutation 'passes' trivially."""
    tensors, meta = ck.load_model(files["model"])
    assert unchanged(tensors) and meta["extra"] == {"steps": 7}
    put(files["run"] / "checkpoint.safetensors", files["ckpt_bytes"])
    tensors, meta, _ = ck.load_checkpoint(files["run"])
    assert unchanged(tensors) and meta == META
    header, tail = split(files["model_bytes"])
    assert unchanged(ck.load_model(put(files["model"].with_name("rejoined.safetensors"), join(header, tail)))[0])
