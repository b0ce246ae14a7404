"""Training curves of a run (bits per character of the training and validation lines of
``RUN_DIR/metrics.jsonl``, see ``charlm.runlog``): a PNG through matplotlib (the optional extra
``charlm[plot]``), or a compact text chart for the terminal in pure Python.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from .config import LN2
from .errors import CharlmError, UsageError

MATPLOTLIB_MISSING = "matplotlib is not installed: pip install 'charlm[plot]'"
TRAIN_MARK, VAL_MARK = "*", "o"


@dataclass
class Series:
    step: list = field(default_factory=list)     # optimizer step of each point
    time: list = field(default_factory=list)     # training wall time in seconds (None when not logged)
    bpc: list = field(default_factory=list)      # bits per character

    def xy(self, x: str) -> tuple[list, list]:
        """The finite points against ``x`` ("step" or "time")."""
        xs = self.step if x == "step" else self.time
        pts = [(a, b) for a, b in zip(xs, self.bpc, strict=True) if _finite(a) and _finite(b)]
        return [a for a, _ in pts], [b for _, b in pts]


@dataclass
class Curves:
    run_dir: str
    train: Series
    val: Series


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _bpc(rec: dict, prefix: str):
    bpc = rec.get(f"{prefix}_bpc")
    if _finite(bpc):
        return bpc
    loss = rec.get(f"{prefix}_loss")
    return loss / LN2 if _finite(loss) else None


def load_curves(path) -> Curves:
    """The train and validation curves of a RUN_DIR (or of the run holding RUN_DIR/model.safetensors)."""
    from .inspect import read_metrics

    run_dir = Path(os.path.expanduser(os.fspath(path)))
    if run_dir.is_file():
        run_dir = run_dir.parent
    if not run_dir.is_dir():
        raise UsageError(f"no run directory {str(run_dir)!r}: pass the RUN_DIR of a charlm train")
    records = read_metrics(run_dir)
    if records is None:
        raise UsageError(f"{run_dir} has no metrics.jsonl: pass the RUN_DIR of a charlm train")
    curves = Curves(str(run_dir), Series(), Series())
    for rec in records:
        for prefix, series in (("train", curves.train), ("val", curves.val)):
            bpc = _bpc(rec, prefix)
            if bpc is not None:
                series.step.append(rec["step"])
                series.time.append(rec.get("elapsed"))
                series.bpc.append(bpc)
    if not curves.train.bpc and not curves.val.bpc:
        raise CharlmError(f"{run_dir}/metrics.jsonl has no loss lines yet: train longer than --log-every steps")
    return curves


def time_unit(max_seconds: float) -> tuple[float, str]:
    """(divisor, name) that keeps wall-time axis numbers readable."""
    if max_seconds >= 2 * 3600:
        return 3600.0, "h"
    if max_seconds >= 2 * 60:
        return 60.0, "min"
    return 1.0, "s"


def _scaled(curves: Curves, x: str):
    """[(label, mark, xs, ys)] for the train and val curves against x, and the x-axis label."""
    parts = [("train bpc", TRAIN_MARK, *curves.train.xy(x)), ("val bpc", VAL_MARK, *curves.val.xy(x))]
    if x == "step":
        return parts, "step"
    div, unit = time_unit(max((v for _, _, xs, _ in parts for v in xs), default=0.0))
    return [(lab, mark, [v / div for v in xs], ys) for lab, mark, xs, ys in parts], f"wall time ({unit})"


# ---------------------------------------------------------------- terminal


def _fmt(v: float) -> str:
    return f"{v:.0f}" if float(v).is_integer() else f"{v:.4g}"


def text_chart(series, *, width: int = 60, height: int = 15, x_label: str = "", y_label: str = "") -> str:
    """A character chart of ``series`` = [(label, mark, xs, ys)]; later series are drawn on top.

    Consecutive points of a series are joined column by column. Axes carry min and max labels.
    """
    if width < 2 or height < 2:
        raise UsageError("the chart needs a width and a height of at least 2 characters")
    pts = [(x, y) for _, _, xs, ys in series for x, y in zip(xs, ys, strict=True)]
    if not pts:
        raise CharlmError("nothing to plot: no finite points (did the training diverge?)")
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    xspan = (x1 - x0) or 1.0
    yspan = (y1 - y0) or 1.0
    grid = [[" "] * width for _ in range(height)]

    def col(x):
        return round((x - x0) / xspan * (width - 1))

    def put(c, y, mark):
        grid[height - 1 - round((y - y0) / yspan * (height - 1))][c] = mark

    for _, mark, xs, ys in series:
        for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
            put(col(x), y, mark)
            if i:  # join with the previous point: one cell per column in between
                px, py = xs[i - 1], ys[i - 1]
                ca, cb = col(px), col(x)
                for c in range(ca + 1, cb):
                    put(c, py + (y - py) * (c - ca) / (cb - ca), mark)
    top, bottom = _fmt(y1), _fmt(y0)
    pad = max(len(top), len(bottom), len(y_label))
    lines = [y_label.rjust(pad)] if y_label else []
    for r, row in enumerate(grid):
        label = top if r == 0 else bottom if r == height - 1 else ""
        lines.append(f"{label:>{pad}} |{''.join(row).rstrip()}")
    lines.append(" " * pad + " +" + "-" * width)
    left, right = _fmt(x0), _fmt(x1)
    lines.append(" " * (pad + 2) + left + right.rjust(width - len(left)))
    if x_label:
        lines.append(" " * (pad + 2) + x_label.center(width).rstrip())
    legend = "   ".join(f"{mark} {label} ({len(xs)} point{'' if len(xs) == 1 else 's'})" if xs
                       else f"{mark} {label} (none yet)" for label, mark, xs, _ in series)
    lines.append(" " * (pad + 2) + legend)
    return "\n".join(lines)


def terminal_chart(curves: Curves, *, x: str = "step", width: int = 60, height: int = 15) -> str:
    """The run's train and val bpc against ``x`` ("step" or "time") as text."""
    if x not in ("step", "time"):
        raise UsageError(f"unknown x axis {x!r}: choose step or time")
    parts, x_label = _scaled(curves, x)
    return text_chart(parts, width=width, height=height, x_label=x_label, y_label="bpc")


# ---------------------------------------------------------------- PNG


def save_png(curves: Curves, path, *, title: str | None = None, dpi: int = 100) -> Path:
    """Two panels (bpc against step, bpc against wall time) written to ``path``; returns the path."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise CharlmError(MATPLOTLIB_MISSING) from None
    path = Path(os.path.expanduser(os.fspath(path)))
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, x in zip(axes, ("step", "time"), strict=True):
        parts, x_label = _scaled(curves, x)
        for (label, _, xs, ys), style in zip(parts, ({"lw": 1.2}, {"marker": "o", "ms": 4}), strict=True):
            if xs:
                ax.plot(xs, ys, label=label.replace(" bpc", ""), **style)
        ax.set_xlabel(x_label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("bits per character")
    axes[0].legend()
    fig.suptitle(title or os.path.basename(os.path.normpath(curves.run_dir)))
    try:
        fig.savefig(path, dpi=dpi)
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror or e}; check that its directory exists") from None
    except ValueError as e:  # an unknown file extension
        raise UsageError(f"cannot write {path}: {e}; use a .png file name") from None
    return path
