"""What a training run tells the user: console lines (or a live line on a TTY) and
``RUN_DIR/metrics.jsonl``.

metrics.jsonl holds one JSON object per line. Training lines: ``step`` (optimizer
steps done), ``epoch`` (fractional), ``train_loss`` (MEAN nats per character over
the steps since the previous line), ``train_bpc``, ``lr``, ``grad_norm`` (pre-clip
global norm of the last step), ``chars_per_sec`` (training throughput of the
interval, evaluation and JIT-compilation time excluded; null on the first step of a session,
whose line shows that step's time instead), ``elapsed`` (seconds of the run's wall time so far:
setup, compilation, evaluations and earlier sessions included). Evaluation lines add ``val_loss`` and ``val_bpc``.
"""

from __future__ import annotations

import json
import math
import os
import sys

from . import rundir
from .config import LN2  # noqa: F401  (re-exported: charlm.runlog.LN2)
from .safefile import atomic_write_text


def fmt_duration(seconds: float) -> str:
    s = int(round(max(0.0, seconds)))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def parse_duration(text) -> float:
    """'90s', '10m', '2h', '1h30m', '45' (seconds) -> seconds; ValueError on bad input."""
    if isinstance(text, (int, float)):
        return float(text)
    t = str(text).strip().lower()
    if not t:
        raise ValueError("empty duration")
    total, num = 0.0, ""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    for ch in t:
        if ch.isdigit() or ch == ".":
            num += ch
        elif ch in units and num:
            total += float(num) * units[ch]
            num = ""
        else:
            raise ValueError(f"bad duration {text!r}")
    if num:
        total += float(num)
    return total


class RunLog:
    """Console and metrics.jsonl output of one run."""

    def __init__(self, run_dir: str, *, notice, resume_step: int | None = None, stream=None):
        self.path = os.path.join(run_dir, rundir.METRICS)
        self.notice = notice
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        if resume_step is not None:
            self._truncate_after(resume_step)
        fd = rundir.open_nofollow(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)  # never through a link
        self._f = os.fdopen(fd, "a", encoding="utf-8")
        self._live = False

    def _truncate_after(self, step: int) -> None:
        """On resume, drop lines logged after the checkpoint so the file reads as one run.

        Lines that are not a JSON object with a numeric step (hand edits, a torn last line) are dropped
        too; the file is replaced atomically, never written through a symbolic link.
        """
        if not os.path.lexists(self.path):
            return
        if os.path.islink(self.path):
            raise rundir.link_error(self.path)
        keep = []
        with open(self.path, "rb") as f:
            for raw in f:
                rec = _record(raw)
                if rec is not None and rec["step"] <= step:
                    keep.append(raw.decode("utf-8").rstrip("\n") + "\n")
        atomic_write_text(self.path, "".join(keep))

    def write(self, record: dict) -> None:
        self._f.write(json.dumps(record) + "\n")
        self._f.flush()

    def train_line(self, rec: dict, max_steps: int, eta: float | None, first_step: float | None = None) -> None:
        """A progress line; ``first_step`` (seconds) replaces chars/s on the first step of a session, whose
        time may include loading or compiling kernels (a resumed run; a fresh CPU run's step 1 runs on
        NumPy and loads them after it) (``chars_per_sec`` is null there)."""
        self.write(rec)
        total = f"/{max_steps}" if max_steps else ""
        speed = (f"first step {first_step:.2f}s (any kernel loading included)"
                 if first_step is not None else f"{rec['chars_per_sec'] or 0:,.0f} chars/s")
        line = (f"step {rec['step']}{total} | epoch {rec['epoch']:.2f} | loss {rec['train_loss']:.4f} "
                f"({rec['train_bpc']:.3f} bpc) | lr {rec['lr']:.2e} | grad {rec['grad_norm']:.2f} | {speed}")
        if eta is not None:
            line += f" | ETA {fmt_duration(eta)}"
        self._print(line, live=True)

    def eval_line(self, rec: dict, best: bool) -> None:
        self.write(rec)
        mark = " (best)" if best else ""
        self._print(f"step {rec['step']} | val loss {rec['val_loss']:.4f} ({rec['val_bpc']:.3f} bpc){mark}")

    def say(self, msg: str) -> None:
        self._print(msg)

    def _print(self, line: str, live: bool = False) -> None:
        if self.tty:
            # a live line that rewrites itself; permanent lines end it
            end = "" if live else "\n"
            self.stream.write("\r\033[K" + line + end)
            self._live = live
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._live and self.tty:
            self.stream.write("\n")
            self.stream.flush()
        self._f.close()


def _record(raw: bytes) -> dict | None:
    """A metrics line as a dict with a finite numeric ``step``, else None (never raises)."""
    try:
        rec = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    if not isinstance(rec, dict):
        return None
    step = rec.get("step")
    if isinstance(step, bool) or not isinstance(step, (int, float)) or not math.isfinite(step):
        return None
    return rec
