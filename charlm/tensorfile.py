"""One safetensors file with charlm metadata: encode, checksum, and a read that validates before allocating.

File layout (the safetensors format, readable by ``safetensors.numpy`` and ``safetensors.torch``)::

    u64 little-endian N | N bytes of JSON header | tensor data
    header = {"__metadata__": {str: str}, name: {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, ...}

Offsets are relative to the start of the tensor data; the tensors must tile the data exactly (no gap,
no overlap, no trailing bytes), as the safetensors specification requires.

Checksum (metadata key ``"checksum"``, value ``"sha256:<64 hex>"``): SHA-256 over

    b"charlm-checksum-1\\n"
    for each metadata key except "checksum", in sorted order:  line([key, value])
    b"tensors\\n"
    for each tensor name in sorted order:  line([name, dtype, shape]) + the tensor's raw bytes

where ``line(x)`` is ``json.dumps(x, separators=(",", ":"), ensure_ascii=True) + "\\n"`` in ASCII, dtype
is the safetensors code ("F32", "I64", ...), shape a list of ints and the raw bytes are little-endian
in C order, exactly as stored in the file. Covering the metadata too means a bit flip anywhere in the
file (header or data) is detected. Sorted code-point order makes it independent of the file layout.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
from pathlib import Path

import numpy as np

from .errors import CheckpointError, UsageError

MAX_HEADER_BYTES = 100 * 1024 * 1024
MAX_NDIM = 32
CHECKSUM_RE = re.compile(r"sha256:[0-9a-f]{64}")

DTYPES = {  # safetensors code -> numpy dtype as stored (little-endian)
    "BOOL": np.dtype("?"), "U8": np.dtype("u1"), "I8": np.dtype("i1"),
    "U16": np.dtype("<u2"), "I16": np.dtype("<i2"), "F16": np.dtype("<f2"),
    "U32": np.dtype("<u4"), "I32": np.dtype("<i4"), "F32": np.dtype("<f4"),
    "U64": np.dtype("<u8"), "I64": np.dtype("<i8"), "F64": np.dtype("<f8"),
}
_CODES = {dt: code for code, dt in DTYPES.items()}
_ENTRY_KEYS = {"dtype", "shape", "data_offsets"}


class FutureFormatError(CheckpointError):
    """The file was written by a newer charlm; never a reason to fall back to an older file."""


def corrupt(path, detail: str, fix: str = "use an earlier checkpoint") -> CheckpointError:
    """A ``CheckpointError`` whose ``.detail`` (without path and fix) can feed a one-line notice."""
    err = CheckpointError(f"{os.fspath(path)}: {detail}; {fix}")
    err.detail = detail
    return err


def _line(obj) -> bytes:
    return (json.dumps(obj, separators=(",", ":"), ensure_ascii=True) + "\n").encode("ascii")


def checksum(metadata: dict[str, str], tensors: dict[str, tuple[str, np.ndarray]]) -> str:
    """``"sha256:<hex>"`` as defined in the module docstring; ``tensors`` maps name -> (code, array)."""
    h = hashlib.sha256(b"charlm-checksum-1\n")
    for key in sorted(metadata):
        if key != "checksum":
            h.update(_line([key, metadata[key]]))
    h.update(b"tensors\n")
    for name in sorted(tensors):
        code, arr = tensors[name]
        h.update(_line([name, code, list(arr.shape)]))
        h.update(arr.reshape(-1).view(np.uint8))
    return "sha256:" + h.hexdigest()


def _jsonable(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} object cannot be stored in charlm metadata (JSON only)")


def to_json(obj) -> str:
    """JSON for a metadata value: any-size ints, NaN/inf allowed, numpy scalars/arrays as numbers/lists."""
    return json.dumps(obj, ensure_ascii=True, default=_jsonable)


def encode(tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> bytes:
    """Safetensors bytes of ``tensors`` with ``metadata`` plus its ``"checksum"``."""
    from safetensors.numpy import save

    arrays: dict[str, tuple[str, np.ndarray]] = {}
    for name, value in tensors.items():
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise CheckpointError(f"cannot save a tensor named {name!r}: names must be non-empty strings")
        arr = np.asarray(value)
        code = _CODES.get(arr.dtype.newbyteorder("<"))
        if code is None:
            raise CheckpointError(f"cannot save tensor {_short(name)}: dtype {arr.dtype} is not supported "
                                  "(use bool, int8..64, uint8..64, float16, float32 or float64)")
        arrays[name] = (code, np.asarray(arr, dtype=DTYPES[code], order="C"))
    meta = {k: v for k, v in metadata.items() if k != "checksum"}
    meta["checksum"] = checksum(meta, arrays)
    return save({name: arr for name, (_, arr) in arrays.items()}, metadata=meta)


def _no_duplicates(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constants(name):
    raise ValueError(f"{name} is not valid JSON")


def _parse_header(path, raw: bytes) -> dict:
    if not raw.startswith(b"{"):
        raise corrupt(path, "not a safetensors file (header is not a JSON object)",
                      "pass a model or checkpoint file written by charlm")
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates,
                            parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise corrupt(path, f"unreadable header ({type(exc).__name__}: {str(exc)[:80]})") from None
    if not isinstance(header, dict):
        raise corrupt(path, "header is not a JSON object")
    return header


def _short(name: str) -> str:
    return repr(name if len(name) <= 60 else name[:57] + "...")


def _check_entries(path, header: dict, data_len: int) -> list[tuple[str, str, tuple, int, int]]:
    """(name, code, shape, begin, end) per tensor, sorted by begin; proves they tile ``data_len`` bytes."""
    entries = []
    for name, e in header.items():
        if not isinstance(e, dict) or set(e) != _ENTRY_KEYS:
            raise corrupt(path, f"tensor {_short(name)}: header entry must have exactly dtype, shape, data_offsets")
        code, shape, offsets = e["dtype"], e["shape"], e["data_offsets"]
        if not isinstance(code, str) or code not in DTYPES:
            raise corrupt(path, f"tensor {_short(name)}: unsupported dtype {str(code)[:20]!r}")
        if (not isinstance(shape, list) or len(shape) > MAX_NDIM
                or not all(type(d) is int and d >= 0 for d in shape)):
            raise corrupt(path, f"tensor {_short(name)}: shape must be a list of at most {MAX_NDIM} ints >= 0")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(type(o) is int for o in offsets) or not 0 <= offsets[0] <= offsets[1]):
            raise corrupt(path, f"tensor {_short(name)}: data_offsets must be two ints 0 <= begin <= end")
        begin, end = offsets
        if end > data_len:
            raise corrupt(path, f"file is truncated (tensor {_short(name)} ends at data byte {end}, "
                                f"the file holds {data_len})")
        if math.prod(shape) * DTYPES[code].itemsize != end - begin:
            raise corrupt(path, f"tensor {_short(name)}: shape {shape} x {code} does not fill {end - begin} bytes")
        entries.append((name, code, tuple(shape), begin, end))
    entries.sort(key=lambda t: (t[3], t[4]))
    pos = 0
    for name, _, _, begin, end in entries:
        if begin != pos:
            what = "overlaps the previous tensor" if begin < pos else "leaves a gap before it"
            raise corrupt(path, f"tensor {_short(name)} {what} (data byte {begin}, expected {pos})")
        pos = end
    if pos != data_len:
        raise corrupt(path, f"{data_len - pos} unexpected bytes after the tensor data")
    return entries


def _read_exact(f, n: int, path) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = f.read(n - got)
        if not chunk:
            raise corrupt(path, f"file is truncated (wanted {n} more bytes, got {got})")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _readinto(f, buf: np.ndarray, path) -> None:
    view, got = memoryview(buf), 0
    while got < len(view):
        n = f.readinto(view[got:])
        if not n:
            raise corrupt(path, "file is truncated (it shrank while being read)")
        got += n


def open_regular(path, missing_msg: str):
    """A binary file object for a regular file; ``UsageError`` if missing/unreadable/not a file.

    O_NONBLOCK so that a FIFO given by mistake is refused instead of hanging the open.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise UsageError(missing_msg) from None
    except OSError as exc:
        raise UsageError(f"cannot open {path}: {exc.strerror or exc}; check the path and its permissions") \
            from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"{path} is not a regular file; pass a RUN_DIR or a .safetensors file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb", buffering=0)


def read(path, *, missing_msg: str, max_bytes: int | None = None, header_only: bool = False,
         check_meta=None) -> tuple[dict[str, str], dict[str, np.ndarray] | None]:
    """Validated (metadata, tensors) of a charlm safetensors file; tensors is None if ``header_only``.

    Nothing is allocated beyond the header until every tensor's dtype, shape and byte range has been
    checked against the file size; the checksum is verified before anything is returned.
    ``check_meta(path, metadata)`` runs right after the header is parsed (format and version checks).
    """
    with open_regular(path, missing_msg) as f:
        try:
            return _read(f, path, max_bytes, header_only, check_meta)
        except OSError as exc:
            raise corrupt(path, f"read error: {exc.strerror or exc}", "check the disk or use another file") \
                from None
        except (ValueError, TypeError, KeyError, IndexError, OverflowError, RecursionError) as exc:
            # Safety net for the promise "garbage gives CheckpointError": the checks above should leave
            # nothing for it (the fuzz tests assert it never fires), but a user must never see a traceback.
            raise corrupt(path, f"unexpected content ({type(exc).__name__}: {str(exc)[:80]})") from exc


def _read(f, path, max_bytes, header_only, check_meta):
    size = os.fstat(f.fileno()).st_size
    if max_bytes is not None and size > max_bytes:
        raise CheckpointError(f"{path} is {size} bytes, more than the limit of {max_bytes}; "
                              "raise the limit if you trust this file")
    if size < 8:
        raise corrupt(path, f"file is truncated or empty ({size} bytes)")
    n = int.from_bytes(_read_exact(f, 8, path), "little")
    if n > MAX_HEADER_BYTES or n > size - 8:
        ours = f.read(1) == b"{"  # a safetensors header is JSON: anything else was never one (text, JSON, ...)
        raise corrupt(path, f"header length {n} is impossible for a file of {size} bytes "
                            "(truncated, or not a safetensors file)",
                      "use an earlier checkpoint" if ours else "pass a RUN_DIR or a model.safetensors file")
    header = _parse_header(path, _read_exact(f, n, path))
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise corrupt(path, "__metadata__ is not a map of strings")
    if check_meta is not None:
        check_meta(path, metadata)
    entries = _check_entries(path, header, size - 8 - n)
    declared = metadata.get("checksum", "")
    if not CHECKSUM_RE.fullmatch(declared):
        raise corrupt(path, "missing or malformed checksum")
    if header_only:
        return metadata, None
    arrays = {}
    for name, code, shape, _, _ in entries:  # sorted by offset: one sequential pass over the file
        arr = np.empty(shape, dtype=DTYPES[code])
        _readinto(f, arr.reshape(-1).view(np.uint8), path)
        arrays[name] = (code, arr)
    if f.read(1):
        raise corrupt(path, "the file grew while being read")
    if checksum(metadata, arrays) != declared:
        raise corrupt(path, "checksum mismatch: file is corrupt (bit flip or truncated write)")
    return metadata, {name: _native(arr) for name, (_, arr) in arrays.items()}


def _native(arr: np.ndarray) -> np.ndarray:
    return arr if arr.dtype.isnative else arr.astype(arr.dtype.newbyteorder("="))
