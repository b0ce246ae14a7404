"""Bring a PyTorch-trained model into charlm.

A state dict saved with ``safetensors.torch.save_file(module.state_dict(), path)`` from a module with
attributes ``embed`` (nn.Embedding; absent for one-hot input), ``rnn`` (nn.RNN/LSTM/GRU,
batch_first=False, bias=True, unidirectional, no proj_size) and ``head`` (nn.Linear) has exactly
charlm's tensor names (see ``charlm.model``). ``import_state_dict`` infers layers, hidden, embedding and
vocabulary sizes from the shapes, checks them against the cell and the tokenizer, converts float16/64
to float32 and writes a run directory that ``charlm sample``/``eval``/``info`` accept:
``model.safetensors`` (with metadata), ``tokenizer.json`` and ``config.json`` ({"charlm_version",
"model", "imported_from"}). The reverse needs no code: safetensors' PyTorch loader (``load_file``) reads a charlm
``model.safetensors`` and the module loads it with ``strict=True``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import rundir
from .config import CELLS, GATES, ModelConfig
from .errors import CheckpointError, UsageError

FLOAT_DTYPES = (np.float16, np.float32, np.float64)
WRAPPER_PREFIXES = ("module.", "_orig_mod.")   # nn.DataParallel / DDP, torch.compile
_LAYER_RE = re.compile(r"rnn\.(weight_ih|weight_hh|bias_ih|bias_hh)_l(\d+)")
_CELL_OF_GATES = {g: c for c, g in GATES.items()}


@dataclass
class Imported:
    run_dir: Path
    config: ModelConfig
    params: int
    converted: list        # names of tensors converted to float32 from another float dtype
    stripped: str          # wrapper prefix removed from every name ("" if none)


def read_state_dict(path) -> dict[str, np.ndarray]:
    """The tensors of a safetensors file (never unpickled, any producer). Only float tensors are accepted."""
    from safetensors import safe_open

    path = Path(os.path.expanduser(os.fspath(path)))
    if not path.is_file():
        raise UsageError(f"no such state-dict file {path}; pass a .safetensors file "
                         "(in PyTorch: safetensors.torch.save_file(model.state_dict(), path))")
    out = {}
    try:
        with safe_open(str(path), framework="numpy") as f:
            for name in f.keys():
                dtype = f.get_slice(name).get_dtype()
                if dtype not in ("F16", "F32", "F64"):
                    raise UsageError(f"tensor {name!r} in {path} is {dtype}: charlm imports float16/32/64 "
                                     "tensors; convert in PyTorch first ({k: v.float() for k, v in sd.items()})")
                out[name] = f.get_tensor(name)
    except UsageError:
        raise
    except Exception as e:  # safetensors raises its own error types for a malformed file
        raise CheckpointError(f"{path} is not a readable safetensors file ({str(e)[:120]}); "
                              "save it with safetensors.torch.save_file") from None
    return out


def _strip_wrapper(sd: dict) -> tuple[dict, str]:
    for prefix in WRAPPER_PREFIXES:
        if sd and all(k.startswith(prefix) for k in sd):
            return {k[len(prefix):]: v for k, v in sd.items()}, prefix
    return sd, ""


def _need(sd: dict, name: str, what: str) -> np.ndarray:
    if name not in sd:
        raise UsageError(f"the state dict has no {name!r} ({what}); charlm expects a module with attributes "
                         "embed (optional), rnn and head, saved with safetensors.torch.save_file")
    return sd[name]


def _expect(sd: dict, name: str, shape: tuple, why: str) -> None:
    got = tuple(sd[name].shape)
    if got != shape:
        raise UsageError(f"tensor {name!r} has shape {got}, expected {shape} ({why})")


def infer_config(sd: dict[str, np.ndarray], *, cell: str, vocab_size: int, nonlinearity: str = "tanh") -> ModelConfig:
    """The ModelConfig that ``sd`` (charlm/PyTorch names) is a state dict of; UsageError naming any misfit."""
    if cell not in CELLS:
        raise UsageError(f"unknown cell {cell!r}: choose one of {', '.join(CELLS)}")
    if cell != "rnn" and nonlinearity != "tanh":
        raise UsageError(f"--nonlinearity applies to --cell rnn only (got --cell {cell})")
    G = GATES[cell]
    hh = _need(sd, "rnn.weight_hh_l0", "the first recurrent layer's hidden-to-hidden weights")
    if hh.ndim != 2 or hh.shape[1] == 0:
        raise UsageError(f"tensor 'rnn.weight_hh_l0' has shape {tuple(hh.shape)}, expected (G x hidden, hidden)")
    H = hh.shape[1]
    if hh.shape[0] != G * H:
        ratio = hh.shape[0] / H
        hint = (f"; these look like {_CELL_OF_GATES[int(ratio)]} weights (pass --cell {_CELL_OF_GATES[int(ratio)]})"
                if ratio in _CELL_OF_GATES else "")
        raise UsageError(f"tensor 'rnn.weight_hh_l0' has shape {tuple(hh.shape)}, expected ({G * H}, {H}): "
                         f"a {cell} has {G} gate block(s) of hidden = {H} rows{hint}")
    unknown = []
    layers = 0
    for name in sd:
        m = _LAYER_RE.fullmatch(name)
        if m:
            layers = max(layers, int(m.group(2)) + 1)
        elif name not in ("embed.weight", "head.weight", "head.bias"):
            unknown.append(name)
    if unknown:
        what = ("bidirectional RNNs are not supported" if any("_reverse" in n for n in unknown) else
                "LSTM projections (proj_size) are not supported" if any("weight_hr" in n for n in unknown) else
                "charlm's names are embed.weight, rnn.{weight,bias}_{ih,hh}_l<k>, head.weight, head.bias")
        raise UsageError(f"unexpected tensor {sorted(unknown)[0]!r} in the state dict: {what}")
    head_w = _need(sd, "head.weight", "the output layer's weights")
    _need(sd, "head.bias", "the output layer's bias")
    if head_w.ndim != 2 or head_w.shape[0] != vocab_size:
        raise UsageError(f"tensor 'head.weight' has shape {tuple(head_w.shape)}, but the tokenizer has {vocab_size} "
                         f"symbols: expected ({vocab_size}, {H}); pass the tokenizer the model was trained with")
    if "embed.weight" in sd:
        emb = sd["embed.weight"]
        if emb.ndim != 2 or emb.shape[0] != vocab_size:
            raise UsageError(f"tensor 'embed.weight' has shape {tuple(emb.shape)}, expected ({vocab_size}, E): "
                             f"one row per symbol of the tokenizer ({vocab_size})")
        E = emb.shape[1]
        if E == 0:
            raise UsageError("tensor 'embed.weight' has no columns: the embedding size must be >= 1")
        inp, inp_what = E, f"the embedding size {E}"
    else:
        E, inp, inp_what = 0, vocab_size, f"one-hot input of the vocabulary ({vocab_size}), as there is no embed.weight"
    for k in range(layers):
        gates = f"{cell}: {G} x hidden {H} rows"
        for kind, cols in (("weight_ih", inp if k == 0 else H), ("weight_hh", H)):
            name = f"rnn.{kind}_l{k}"
            _need(sd, name, f"weights of recurrent layer {k}")
            why = (f"{gates}; inputs of width {inp_what}" if kind == "weight_ih" and k == 0 else
                   f"{gates}; charlm needs the same hidden size in every layer")
            _expect(sd, name, (G * H, cols), why)
        for kind in ("bias_ih", "bias_hh"):
            name = f"rnn.{kind}_l{k}"
            _need(sd, name, f"biases of recurrent layer {k}; charlm's cells always have biases (bias=True)")
            _expect(sd, name, (G * H,), gates)
    _expect(sd, "head.weight", (vocab_size, H), f"vocabulary {vocab_size} x hidden {H} of the top layer")
    _expect(sd, "head.bias", (vocab_size,), f"one per symbol of the tokenizer ({vocab_size})")
    return ModelConfig(vocab_size=vocab_size, cell=cell, layers=layers, hidden=H, embed=E,
                       nonlinearity=nonlinearity)


def _as_float32(sd: dict) -> tuple[dict, list]:
    out, converted = {}, []
    for name, arr in sd.items():
        if arr.dtype not in FLOAT_DTYPES:
            raise UsageError(f"tensor {name!r} is {arr.dtype}: charlm imports float16/32/64 tensors")
        if arr.dtype != np.float32:
            converted.append(name)
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if not np.isfinite(arr).all():
            raise UsageError(f"tensor {name!r} holds NaN or infinite values (in float32): the training diverged, "
                             "or the values overflow float32; import an earlier checkpoint")
        out[name] = arr
    return out, converted


def _load_tokenizer(path):
    from .tokenizer import CharTokenizer

    p = Path(os.path.expanduser(os.fspath(path)))
    return CharTokenizer.load(p / rundir.TOKENIZER if p.is_dir() else p)


def import_state_dict(state_path, *, cell: str, tokenizer, out, nonlinearity: str = "tanh") -> Imported:
    """Write RUN_DIR ``out`` from a PyTorch state dict file; ``tokenizer`` is a CharTokenizer or a JSON path."""
    from . import __version__
    from .checkpoint import MODEL_NAME, RunLock, atomic_write_text, save_model, validate_state_dict
    from .model import param_shapes
    from .tokenizer import CharTokenizer

    tok = tokenizer if isinstance(tokenizer, CharTokenizer) else _load_tokenizer(tokenizer)
    out = Path(os.path.expanduser(os.fspath(out)))
    if os.path.lexists(out) and not out.is_dir():
        raise UsageError(f"--out {out} is a file; pass a directory to create")
    rundir.refuse_run_files(out)   # early, for a quick answer; decided again under the run lock
    raw, stripped = _strip_wrapper(read_state_dict(state_path))
    sd, converted = _as_float32(raw)
    config = infer_config(sd, cell=cell, vocab_size=len(tok), nonlinearity=nonlinearity)
    shapes = param_shapes(config)
    validate_state_dict(sd, shapes)
    sd = {name: sd[name] for name in shapes}   # PyTorch state-dict order
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create {out}: {e.strerror}; check the path and its permissions") from None
    source = os.path.abspath(os.fspath(state_path))
    with RunLock(out, "charlm import"):   # a trainer or another import cannot write here meanwhile
        rundir.refuse_run_files(out)
        save_model(out / MODEL_NAME, sd, model_config=config.to_dict(), tokenizer=tok.to_dict(),
                   extra={"imported_from": source, "converted_to_float32": converted})
        tok.save(out / rundir.TOKENIZER)
        cfg = {"charlm_version": __version__, "model": config.to_dict(), "imported_from": source}
        atomic_write_text(out / rundir.CONFIG, json.dumps(cfg, indent=2) + "\n")
    return Imported(out, config, sum(int(a.size) for a in sd.values()), converted, stripped)
