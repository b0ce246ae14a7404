"""The run directory: every file name and layout rule in one place.

A run directory (``charlm train --out RUN``; ``charlm import --out RUN``) holds::

    config.json                     {"charlm_version", "corpus", "model", "train"} (import: "imported_from")
    tokenizer.json                  the vocabulary (charlm.tokenizer)
    ids.npy                         the encoded corpus, memory-mapped while training
    model.safetensors               the best (or latest) weights (charlm.checkpoint)
    checkpoint.safetensors          the newest resume checkpoint
    checkpoint-<step:08d>.safetensors   older resume checkpoints (rotation, at most --keep in all)
    metrics.jsonl                   one JSON object per log / evaluation line (charlm.runlog)
    .lock                           flock of the trainer that owns the directory (charlm.safefile)

plus temporary files of a writer in progress (``.NAME.<12 hex>.tmp``, ``.NAME.link.tmp``), which
whoever takes the lock removes. Every other module takes these names from here.

Rules that protect a run (issue "no path loses a run"):
    - ``charlm train`` starts a fresh run only in a directory that is missing or empty (the lock and
      stale temporary files aside); anything else is refused, and the decision is taken again while
      holding the lock, so two trainings started together cannot both write one directory. The
      classify / tag / seq2seq trainers (no ``--resume``) follow the same rule for every non-empty
      directory (``charlm.safefile.fresh_run``), and remove what they wrote if they fail or are stopped.
    - Nothing is written through a symbolic link inside a run directory (``refuse_links``; the lock
      and non-atomic writers open with ``O_NOFOLLOW``).
    - Commands that write a user-named file (``sample -o``, ``plot -o``) refuse a file of a run.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

from .errors import UsageError

CONFIG = "config.json"
TOKENIZER = "tokenizer.json"
IDS = "ids.npy"
MODEL = "model.safetensors"
CHECKPOINT = "checkpoint.safetensors"
METRICS = "metrics.jsonl"
LOCK = ".lock"
ROTATED_RE = re.compile(r"checkpoint-(\d{8,})\.safetensors")
# temporary files of atomic_write_bytes (".NAME.<12 hex>.tmp") and of checkpoint rotation (".NAME.link.tmp")
TEMP_RE = re.compile(r"\..+\.(?:[0-9a-f]{12}|link)\.tmp")
FILES = (CONFIG, TOKENIZER, IDS, MODEL, CHECKPOINT, METRICS, LOCK)
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
MAX_CONFIG_BYTES = 16 << 20   # config.json is a few KiB; a bigger one is not ours


def rotated_name(step: int) -> str:
    """File name of the rotated checkpoint of ``step``."""
    return f"checkpoint-{step:08d}.safetensors"


def is_run_file(name: str) -> bool:
    """Whether ``name`` (a bare file name) is one of a run directory's files."""
    return name in FILES or bool(ROTATED_RE.fullmatch(name)) or bool(TEMP_RE.fullmatch(name))


def run_dir_of(model_path) -> Path:
    """The run directory a model argument belongs to: RUN_DIR itself, or the folder of a model file."""
    p = Path(os.path.expanduser(os.fspath(model_path)))
    return p if p.is_dir() else p.parent


def _shown(names: list[str], limit: int = 5) -> str:
    names = sorted(names)
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_fresh(run_dir, *, resumable: bool = True) -> None:
    """``UsageError`` unless ``run_dir`` is missing or empty (apart from a lock and stale temp files).

    A directory with config.json is a run: resume it (``resumable``: the trainer has ``--resume``; the
    classify / tag / seq2seq trainers have not). Anything else (a run that lost its config.json, a user
    folder) is never overwritten.
    """
    run_dir = Path(run_dir)
    if os.path.lexists(run_dir) and not run_dir.is_dir():
        raise UsageError(f"--out {run_dir} is a file, not a directory; choose another --out")
    try:
        names = os.listdir(run_dir)
    except OSError:
        return  # missing, or a parent is a file: check_writable_dir says which, with a fix
    others = [n for n in names if n != LOCK and not TEMP_RE.fullmatch(n)]
    if CONFIG in names and resumable:
        raise UsageError(f"{run_dir} already holds a run; resume it with --resume {run_dir}, "
                         "or choose another --out")
    if others and not resumable and (CONFIG in names or MODEL in names):
        raise UsageError(f"--out {run_dir} already holds a run ({_shown(others)}); charlm never overwrites one: "
                         "choose a new --out")
    if others:
        if not resumable:
            raise UsageError(f"--out {run_dir} is not empty ({_shown(others)}); charlm never overwrites it: "
                             "choose a new --out (a missing or empty directory)")
        what = "files of an earlier run without its config.json" if any(map(is_run_file, others)) else "other files"
        raise UsageError(f"--out {run_dir} is not empty ({what}: {_shown(others)}) and is not a run to resume; "
                         "charlm train never overwrites it: choose a new --out")


def refuse_links(run_dir) -> None:
    """``UsageError`` if a run file in ``run_dir`` is a symbolic link (charlm never writes through one),
    or a FIFO or device (``special_error``: reading or appending to it would block or never end)."""
    try:
        names = os.listdir(run_dir)
    except OSError:
        return
    for name in sorted(names):
        p = os.path.join(run_dir, name)
        if is_run_file(name) and os.path.islink(p):
            raise UsageError(f"{p} is a symbolic link (to {os.readlink(p)}); charlm never writes through links "
                             "inside a run directory: replace it with a regular file, or remove it")
        if is_run_file(name) and name != LOCK and (err := special_error(p)):
            raise err


def special_error(path) -> UsageError | None:
    """The error for a run file that is a FIFO, device or socket (charlm only ever writes regular files
    there; reading one would block or never end), else None. Links are followed: ``-> /dev/zero`` too."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
    return UsageError(f"{path} is {kind}, not a file charlm wrote: remove it (or restore the run's own file)")


def link_error(path) -> UsageError:
    """The error for an ``O_NOFOLLOW`` open that met a symbolic link (ELOOP)."""
    return UsageError(f"{path} is a symbolic link; charlm never writes through links inside a run directory: "
                      "replace it with a regular file, or remove it")


def open_nofollow(path, flags: int, mode: int = 0o666) -> int:
    """``os.open`` that refuses a symbolic link as the last component (``UsageError``)."""
    try:
        return os.open(path, flags | NOFOLLOW, mode)
    except OSError as e:
        if NOFOLLOW and e.errno == errno.ELOOP:
            raise link_error(path) from None
        raise


def check_output_path(output, model) -> None:
    """``UsageError`` if writing ``output`` would replace a file of the run that ``model`` belongs to."""
    out = Path(os.path.expanduser(os.fspath(output)))
    model_p = Path(os.path.expanduser(os.fspath(model)))
    try:
        if out.exists() and model_p.exists() and os.path.samefile(out, model_p):
            raise UsageError(f"output {output} is the model being read; choose another output file")
    except OSError:
        pass
    run = run_dir_of(model_p)
    try:
        same_dir = os.path.samefile(os.path.dirname(os.path.abspath(out)) or ".", run)
    except OSError:
        return
    if same_dir and is_run_file(out.name):
        raise UsageError(f"output {output} is a file of the run {run} ({out.name}); "
                         "choose an output file outside the run's files")


def make_run_dir(run_dir) -> bool:
    """Create ``run_dir`` (and its parents); True only if this call created it (so it may remove it)."""
    run_dir = Path(run_dir)
    try:
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        run_dir.mkdir()
        return True
    except FileExistsError:
        return False
    except OSError:
        return False  # check_writable_dir reports it with the reason and a fix


def check_under_lock(run_dir, *, fresh: bool, resumable: bool = True) -> None:
    """The checks a trainer repeats once it holds the lock: a fresh run needs an empty directory
    (another trainer may have filled it meanwhile), and no run file may be a symbolic link."""
    if fresh:
        check_fresh(run_dir, resumable=resumable)
    refuse_links(run_dir)


def discard_fresh(run_dir, created: bool, names=(IDS,)) -> None:
    """Undo a fresh run that failed before it was complete: remove the directory if this process made it,
    else only the run files ``names`` it wrote (the directory was empty before, ``check_fresh``)."""
    import shutil

    if created:
        shutil.rmtree(run_dir, ignore_errors=True)
        return
    for name in names:
        try:
            os.unlink(os.path.join(run_dir, name))
        except OSError:
            pass


def resume_tokenizer(run_dir):
    """``RUN/tokenizer.json`` of a run being resumed (None if absent), checked against the checkpoint's copy
    so that an edited or replaced file is named as such (not reported as "the corpus has changed")."""
    from .checkpoint import newest_meta
    from .tokenizer import CharTokenizer

    path = os.path.join(run_dir, TOKENIZER)
    if not os.path.lexists(path):
        return None
    tok = CharTokenizer.load(path)
    meta = newest_meta(run_dir)
    saved = meta.get("tokenizer") if isinstance(meta, dict) else None
    if isinstance(saved, dict) and saved != tok.to_dict():
        raise UsageError(f"{path} differs from the vocabulary saved in the run's checkpoint (the file was edited "
                         "or replaced): restore the original tokenizer.json, or start a new run with --out")
    return tok


def changed_corpus(run_dir, err) -> UsageError:
    """The error for a resumed run whose corpus holds symbols that its tokenizer.json does not know."""
    detail = str(err).split(". Fix:")[0]
    return UsageError(f"the corpus has changed since this run started: {detail}, which "
                      f"{os.path.join(run_dir, TOKENIZER)} does not hold; resume with the original text, "
                      "or start a new run with --out")


def refuse_run_files(out, command: str = "charlm import") -> None:
    """``UsageError`` if ``out`` holds any file of a run (an earlier run, even one that lost its config.json):
    for writers that may share a folder with the user's own files but never with a run's."""
    try:
        names = [n for n in os.listdir(out) if n != LOCK and is_run_file(n) and not TEMP_RE.fullmatch(n)]
    except OSError:
        return
    if names:
        raise UsageError(f"--out {out} already holds files of a run ({_shown(names)}); {command} never "
                         "overwrites a run: choose another --out")


def refuse_inside(out, data) -> None:
    """``UsageError`` if the new run directory ``out`` would sit inside the data directory ``data``: its own
    files would be read as data (a label sub-directory, a text file) by every later command on ``data``."""
    if not os.path.isdir(data):
        return
    inner = os.path.realpath(out) + os.sep
    if inner.startswith(os.path.realpath(data) + os.sep):
        raise UsageError(f"--out {out} is inside the data directory {data}: the run's own files would be read "
                         "as data next time; choose an --out outside it")
