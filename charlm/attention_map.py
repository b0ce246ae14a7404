"""Attention heatmaps of a seq2seq model for one pair: a PNG (matplotlib, the ``plot`` extra) or text.

Rows are target characters (the decoder's steps, EOS last), columns source characters; cell (t, s) is
the weight step t gave source position s (each row sums to 1). Without a target the model's own
greedy translation is used.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import CharlmError, UsageError
from .plotting import MATPLOTLIB_MISSING

SHADES = " .:-=+*#%@"


def _labels(text: str) -> list[str]:
    return ["␣" if ch == " " else ch for ch in text]


def text_heatmap(weights: np.ndarray, source: str, target: str) -> str:
    """One line per target step: the character, then one shade per source character (darker = more weight)."""
    lines = ["    " + "".join(_labels(source))]
    for t, row in enumerate(weights):
        ch = _labels(target)[t] if t < len(target) else "EOS"
        shades = "".join(SHADES[min(len(SHADES) - 1, int(w * len(SHADES)))] for w in row)
        lines.append(f"{ch:<4}{shades}")
    return "\n".join(lines)


def save_png(weights: np.ndarray, source: str, target: str, path, *, title: str | None = None) -> Path:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise CharlmError(MATPLOTLIB_MISSING) from None
    path = Path(os.path.expanduser(os.fspath(path)))
    T, S = weights.shape
    fig = Figure(figsize=(max(4.0, 0.32 * S + 1.5), max(3.0, 0.32 * T + 1.2)), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(S), _labels(source))
    ax.set_yticks(range(T), _labels(target) + ["EOS"])
    ax.set_xlabel("source")
    ax.set_ylabel("target")
    fig.colorbar(im, ax=ax, fraction=0.05)
    ax.set_title(title or "attention")
    try:
        fig.savefig(path, dpi=100)
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror or e}; check that its directory exists") from None
    except ValueError as e:
        raise UsageError(f"cannot write {path}: {e}; use a .png file name") from None
    return path
