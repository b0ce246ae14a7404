"""A ``charlm`` subprocess whose stderr is collected line by line, for the tests that send it
signals or kill it: waits for an expected line (with a generous timeout against hangs, never a
timed assertion), then its exit code."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time

import pytest


def charlm_cmd(*args) -> list[str]:
    """argv of ``python -m charlm.cli ARGS``."""
    return [sys.executable, "-m", "charlm.cli", *map(str, args)]


class Proc:
    """A subprocess whose stderr lines are collected by a thread, so waits can time out."""

    def __init__(self, argv, cwd):
        self.p = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.p.stderr), daemon=True)
        self._reader.start()

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pred, timeout: float = 600.0) -> None:
        deadline = time.monotonic() + timeout
        while not pred(list(self.lines)):
            if self.p.poll() is not None:
                self._reader.join(5)
                if pred(list(self.lines)):
                    return
                pytest.fail(f"process ended (rc {self.p.returncode}) before the expected output:\n{self.stderr}")
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for the expected output:\n{self.stderr}")
            time.sleep(0.02)

    def wait_steps(self, n: int) -> None:
        """Until the trainer has printed ``n`` progress lines (``step k/...``)."""
        self.wait_for(lambda lines: sum(bool(re.match(r"step \d+/", line)) for line in lines) >= n)

    def finish(self, timeout: float = 120.0) -> int:
        rc = self.p.wait(timeout)
        self._reader.join(5)
        return rc

    def kill(self) -> None:
        """Kill it (by its own pid) if it still runs."""
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait(30)
