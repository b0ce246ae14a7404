"""`charlm plot` and charlm.plotting: the terminal chart (always) and the PNG (when matplotlib is there)."""

from __future__ import annotations

import json
import math
import sys

import pytest
from clihelp import run

from charlm.errors import CharlmError, UsageError
from charlm.plotting import MATPLOTLIB_MISSING, load_curves, save_png, terminal_chart, text_chart

LN2 = math.log(2)



@pytest.fixture
def run_dir(tmp_path):
    """Train loss falls 3.0 -> 1.0 nats over steps 10..200; val every 50 steps; the last train line is NaN."""
    d = tmp_path / "run"
    d.mkdir()
    recs = []
    for i, step in enumerate(range(10, 201, 10)):
        loss = 3.0 - 2.0 * i / 19
        recs.append({"step": step, "epoch": step / 100, "train_loss": loss, "train_bpc": loss / LN2,
                     "elapsed": step * 1.5})
        if step % 50 == 0:
            recs.append({"step": step, "val_loss": loss + 0.1, "val_bpc": (loss + 0.1) / LN2, "elapsed": step * 1.5})
    recs.append({"step": 210, "train_loss": float("nan"), "train_bpc": float("nan"), "elapsed": 315.0})
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return d


def test_load_curves(run_dir):
    c = load_curves(run_dir)
    assert len(c.train.step) == 20 and len(c.val.step) == 4    # the NaN line is dropped
    xs, ys = c.train.xy("step")
    assert xs[0] == 10 and xs[-1] == 200 and ys[0] == pytest.approx(3.0 / LN2)
    assert c.val.xy("time")[0] == [75.0, 150.0, 225.0, 300.0]


def test_text_chart_geometry():
    chart = text_chart([("a", "*", [0, 10], [1.0, 2.0]), ("b", "o", [5], [1.5])], width=11, height=5,
                       x_label="step", y_label="bpc")
    lines = chart.splitlines()
    assert lines[0].strip() == "bpc"
    rows = [ln.split("|", 1)[1].ljust(11) for ln in lines[1:6]]
    assert rows[0][10] == "*" and rows[4][0] == "*"            # (0, 1) bottom left, (10, 2) top right
    assert rows[2][5] == "o"                                   # b drawn on top of a's joining line
    assert all(any(r[c] in "*o" for r in rows) for c in range(11))   # the line is joined in every column
    assert lines[1].split("|")[0].strip() == "2" and lines[5].split("|")[0].strip() == "1"
    assert lines[6].strip() == "+" + "-" * 11
    assert lines[7].split() == ["0", "10"] and lines[8].strip() == "step"
    assert "* a (2 points)" in lines[9] and "o b (1 point)" in lines[9]
    with pytest.raises(CharlmError, match="nothing to plot"):
        text_chart([("a", "*", [], [])])
    flat = text_chart([("a", "*", [3], [1.0])], width=10, height=4)   # one point, zero spans: no crash
    assert flat.count("*") == 2                                # the point and the legend


def test_terminal_chart_of_a_run(run_dir):
    chart = terminal_chart(load_curves(run_dir), width=60, height=15)
    lines = chart.splitlines()
    body = [ln.split("|", 1)[1] for ln in lines[1:16]]
    assert len(body) == 15 and max(len(b) for b in body) <= 60
    assert body[0].lstrip().startswith("*") and body[0].index("*") == 0   # highest loss at the first step
    assert "o" in "".join(body)
    assert lines[1].split("|")[0].strip() == f"{(3.0) / LN2:.4g}"         # y max label
    assert lines[17].split() == ["10", "200"]
    timed = terminal_chart(load_curves(run_dir), x="time")
    assert "wall time (min)" in timed and "5" in timed.splitlines()[17]  # 15 s .. 300 s shown in minutes
    with pytest.raises(UsageError):
        terminal_chart(load_curves(run_dir), x="epoch")


def test_plot_cli_terminal(run_dir):
    r = run("plot", run_dir, "--width", 40, "--height", 8)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert len(lines) == 1 + 8 + 4 and "* train bpc (20 points)" in lines[-1] and "o val bpc (4 points)" in lines[-1]
    assert r.stderr == ""


def test_plot_errors(tmp_path, run_dir):
    r = run("plot", tmp_path)
    assert r.exit_code == 2 and "no metrics.jsonl" in r.stderr
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "lr": 0.1}\n')
    r = run("plot", tmp_path)
    assert r.exit_code == 1 and "no loss lines" in r.stderr


def test_png_without_matplotlib(run_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(CharlmError, match=r"pip install 'charlm\[plot\]'"):
        save_png(load_curves(run_dir), run_dir / "loss.png")
    r = run("plot", run_dir, "-o", run_dir / "loss.png")
    assert r.exit_code == 1 and MATPLOTLIB_MISSING in r.stderr
    assert not (run_dir / "loss.png").exists()


def test_png(run_dir, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "loss.png"
    r = run("plot", run_dir, "-o", out)
    assert r.exit_code == 0, r.output
    raw = out.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")
    assert (width, height) == (1100, 420)                     # 11 x 4.2 inches at 100 dpi, two panels
    assert str(out) in r.stderr and r.stdout == ""
    r = run("plot", run_dir, "-o", tmp_path / "missing" / "loss.png")
    assert r.exit_code == 2 and "cannot write" in r.stderr
