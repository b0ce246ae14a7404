"""Signals around the final evaluation (issue 13.5), with real signals to a `charlm train` subprocess.

On a stop the checkpoint is written before the final evaluation, so a supervisor's SIGKILL after
a grace period loses nothing; a signal during the evaluation aborts it (a second Ctrl-C skips
it), and the handlers stay installed until the end, so no signal kills the process silently.
The subprocess runs the real CLI with the evaluation replaced by one that announces itself on
stderr and then blocks until a signal arrives: the test knows when the evaluation is running
without timing anything.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import textwrap

import pytest
from prochelp import Proc
from runhelp import FOX as TEXT

from charlm import checkpoint as ckpt

SHAPE = ["--hidden", "8", "--embed", "4", "--seq-len", "8", "--batch-size", "2", "--threads", "1",
         "--log-every", "1", "--eval-every", "100000", "--val-chars", "0"]
RUNNER = textwrap.dedent("""
    import sys, time
    import charlm.trainer as t

    def blocking_evaluation(*args, **kwargs):
        sys.stderr.write("EVALUATING\\n")
        sys.stderr.flush()
        while True:  # the signal handler raises out of here
            time.sleep(0.02)

    t.evaluate_ids = blocking_evaluation
    from charlm.cli import main
    main(sys.argv[1:])
""")


@pytest.fixture
def proc(tmp_path):
    started = []

    def start(*args):
        corpus = tmp_path / "corpus.txt"
        corpus.write_text(TEXT, encoding="utf-8")
        started.append(Proc([sys.executable, "-c", RUNNER, "train", str(corpus), *SHAPE, *map(str, args)],
                            tmp_path))
        return started[-1]

    yield start
    for p in started:
        p.kill()


def evaluating(lines) -> bool:
    return any(line.startswith("EVALUATING") for line in lines)


@pytest.mark.parametrize("signame,code", [("SIGTERM", 143), ("SIGINT", 130)])
def test_signal_during_the_final_evaluation_loses_nothing(proc, tmp_path, signame, code):
    out = tmp_path / "run"
    p = proc("--max-steps", "6", "--out", out)
    p.wait_for(evaluating)
    # the checkpoint of the last step and a model file exist before the evaluation starts
    assert ckpt.load_checkpoint(out)[1]["step"] == 6
    assert os.path.exists(out / "model.safetensors")
    p.p.send_signal(getattr(signal, signame))
    assert p.finish() == code, p.stderr
    assert "Traceback" not in p.stderr
    assert "aborted by a signal" in p.stderr
    assert ckpt.load_checkpoint(out)[1]["step"] == 6
    ckpt.load_model(out / "model.safetensors")


def test_first_signal_saves_then_evaluates_second_skips(proc, tmp_path):
    out = tmp_path / "run"
    p = proc("--max-steps", "100000", "--out", out)
    p.wait_steps(3)
    p.p.send_signal(signal.SIGINT)
    p.wait_for(evaluating)
    # saved first: the checkpoint holds the step training stopped at, before any evaluation result
    assert "checkpoint saved; evaluating before exit" in p.stderr
    step = ckpt.load_checkpoint(out)[1]["step"]
    assert step >= 3 and os.path.exists(out / "model.safetensors")
    p.p.send_signal(signal.SIGINT)  # the second Ctrl-C skips the evaluation
    assert p.finish() == 130, p.stderr
    assert "Traceback" not in p.stderr
    m = re.search(r"interrupted at step (\d+); checkpoint saved", p.stderr)
    assert m and int(m.group(1)) == step
    assert ckpt.load_checkpoint(out)[1]["step"] == step
