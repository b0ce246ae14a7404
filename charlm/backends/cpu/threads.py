"""How many of Numba's threads each recurrent kernel uses: all of them on a quiet machine, fewer
when other processes take the cores (the "governor").

Why: the recurrent loops fork and join the threads once per time step. When another process holds
a core, one of our threads is descheduled for a scheduler time slice (milliseconds) at nearly every
step while the other waits for it; measured on a 2-core Zen 3 beside other processes, `charlm
eval` (B=1, M lstm) ran at 30 chars/s with 2 threads and libgomp's default spin-wait, 147 with a
short spin, 400 with passive waiting and 512 with 1 thread. Two measures:

1. Short spin, then sleep (set in ``charlm.backends.cpu`` before the OpenMP runtime loads):
   ``GOMP_SPINCOUNT`` defaults to ``SPINCOUNT`` when neither it nor ``OMP_WAIT_POLICY`` is set, so a
   waiting thread gives its core back after a few tens of microseconds instead of spinning for
   milliseconds (libgomp's default 300000 spins) while the thread it waits for is descheduled.
   Inside a kernel the gaps between steps are microseconds, so a quiet machine still never sleeps.
2. Measure and choose, per call site: ``governed(site)`` times each call of a site (kernel and
   shape) with the thread count it chose, and uses the count whose recent calls were fastest
   (mean of the last ``KEEP``: see below). Candidates are the ceiling (Numba's thread count when the site is
   entered: every core, or ``--threads``) and 1. The first call of a site is not counted
   (compilation, thread start-up). The other candidate is re-tried after ``PROBE * ratio``
   calls (ratio = how much slower it was; the interval doubles after each try that confirms the
   choice, up to ``MAX_INTERVAL``), and at least every ``PROBE_SECONDS`` when
   that costs under 1/20 of the time, so a machine that quiets down gets its threads back. The
   tries cost about 1/PROBE of the time at first, then less. A try that comes in faster than the
   current choice's mean is repeated at once (up to ``KEEP`` in a row): on a virtual machine whose
   host steals time slices, one slow sample used to keep a site on the wrong count until the next
   try (seen: `charlm eval`-like B 64 windows of M lstm on a quiet 2-core Xeon, layer 0 stuck on 1
   thread at 54-72 ms a window against 28-38 ms on 2, for 8 reps of 0.5 s: 32-49k chars/s against
   63-80k).

   Mean, not median (until 2026-12, median of 3): beside a busy process the all-threads time of
   a call is heavy-tailed. Logged on a 2-core Zen 4, M lstm `charlm eval --file` windows (B 1, 256
   steps), layer 1 on 2 threads: 2.7-3.0 ms when both cores happen to be ours, 6.5-7 ms, and one
   call in six 100-120 ms (a thread descheduled for a whole time slice at a join), against 5.7 ms
   on 1 thread; the median (3 ms) kept the site on 2 threads, whose mean was ~23 ms. The mean is
   the expected cost, which is what the choice is about; over 8 calls one stolen slice on a quiet
   machine moves it less than a median of 3 would let it. In the same log each try of 2 threads
   under load cost 120-170 ms, so PROBE went 16 -> 48 (the tries ~2 % of the time at first, not
   ~6 %). bench --sections busy --reps 15, three alternating runs: eval1 0.97 / 0.96 / 1.01 of 1
   thread (median of 3: 0.95 / 0.90 / 1.02), training 1.01 / 1.05 / 1.06 (1.04 / 1.07 / 1.02): within
   the noise of the bench, steadier in a longer run (26k chars/s against 24k, 8 reps of 0.5 s in a row).

Measured with bench/bench_train.py --sections busy,busy-old (2-core Zen 3, one busy process started
by the bench on a machine already at load 8-15; median ratio to the same code pinned to 1 thread,
two runs of 3-5 reps): M lstm training 1.07 and 0.86 (best reps 1.07, 1.13), eval1 (B 1, `charlm
eval --file`) 0.96 and 0.83 (best reps 1.00, 0.98); the old default (all threads, libgomp's
default spin) at eval1: 0.08. Alternative not taken: a fixed switch on os.getloadavg()
(it counts our own threads, lags by a minute, and says nothing about how a given kernel suffers).

``adapt(False)`` pins the thread count (``--threads N`` with N > 0 does); ``adapt(True)`` (the
default, ``--threads 0``) lets sites choose. Results are bitwise the same whatever the choice:
the kernels split their work into ``width()`` parts, the ceiling, not the thread count in use
(one thread runs the parts in turn), so every GEMM keeps its shape (tested).
"""

from __future__ import annotations

import functools
import time
from contextlib import contextmanager

import numba

from . import SPINCOUNT  # noqa: F401  (defined where configure() sets it, which must not import Numba)

KEEP = 8
PROBE = 48
MAX_INTERVAL = 4096
PROBE_SECONDS = 20.0
MAX_SITES = 256

_adapt = True
_sites: dict = {}
_width: int | None = None  # the ceiling, inside a governed block


def width() -> int:
    """How many parts kernels split their work into: Numba's thread count, or inside a governed
    block the ceiling (whatever count the block runs with), so results never depend on it."""
    return _width if _width is not None else numba.get_num_threads()


def adapt(on: bool) -> None:
    """Let sites choose their thread count (True) or use Numba's as set (False)."""
    global _adapt
    _adapt = bool(on)


def adaptive() -> bool:
    return _adapt


class Site:
    """What one call site has measured: recent seconds per candidate thread count, and when to try again."""

    __slots__ = ("ceiling", "times", "warm", "current", "calls", "interval", "last_probe", "again")

    def __init__(self, ceiling: int):
        self.ceiling = ceiling
        self.times = {n: [] for n in sorted({ceiling, 1}, reverse=True)}  # n -> last KEEP seconds
        self.warm = False          # the site's first call (compilation, thread start-up) is done
        self.current = ceiling
        self.calls = 0             # calls since the last try of another candidate
        self.interval = PROBE
        self.last_probe = time.monotonic()
        self.again = 0             # tries of the other candidate to make at once (a try that came in faster)

    def _mean(self, n):
        t = self.times[n]
        return sum(t) / len(t) if t else None

    def choose(self) -> int:
        """The thread count for the next call."""
        for n in self.times:       # measure every candidate once (after its warm-up call)
            if not self.times[n]:
                return n
        other = [n for n in self.times if n != self.current]
        if not other:
            return self.current
        alt = other[0]
        if self.again:
            return alt
        cur, alt_t = self._mean(self.current), self._mean(alt)
        ratio = alt_t / cur if cur > 0 else 1.0
        due = self.calls >= self.interval * max(1.0, ratio)
        stale = time.monotonic() - self.last_probe > PROBE_SECONDS and alt_t < PROBE_SECONDS / 20
        return alt if due or stale else self.current

    def record(self, n: int, seconds: float) -> None:
        if not self.warm:          # the first call: compilation, cache load, thread start-up
            self.warm = True
            return
        ts = self.times[n]
        ts.append(seconds)
        del ts[:-KEEP]
        if n != self.current:
            self.last_probe = time.monotonic()
            self.calls = 0
            cur = self._mean(self.current)
            # faster than the current choice: try again at once (up to KEEP in a row), so one slow
            # sample (a stolen time slice) does not keep the site on the wrong count for long
            self.again = (self.again - 1 if self.again else KEEP - 1) if cur is not None and seconds < cur else 0
        else:
            self.calls += 1
        measured = [m for m in self.times if self.times[m]]
        if len(measured) < len(self.times):
            return
        best = min(measured, key=self._mean)
        if best != self.current:
            self.current, self.interval, self.again = best, PROBE, 0
        elif n != self.current:    # a try that confirmed the choice: try less often
            self.interval = min(2 * self.interval, MAX_INTERVAL)


@contextmanager
def governing(*site):
    """Run the block with the thread count chosen for ``site`` (a hashable key: kernel name and
    shapes); yields that count. Numba's thread count is restored afterwards."""
    ceiling = numba.get_num_threads()
    if not _adapt or ceiling == 1:
        yield ceiling
        return
    key = (ceiling,) + site
    s = _sites.get(key)
    if s is None:
        if len(_sites) >= MAX_SITES:  # e.g. many workspaces over a long session: forget the oldest
            del _sites[next(iter(_sites))]
        s = _sites[key] = Site(ceiling)
    n = s.choose()
    global _width
    outer, _width = _width, ceiling
    if n != ceiling:
        numba.set_num_threads(n)
    t0 = time.perf_counter()
    try:
        yield n
        s.record(n, time.perf_counter() - t0)
    finally:
        _width = outer
        if n != ceiling:
            numba.set_num_threads(ceiling)


def governed(site):
    """Decorator: run a Python-level kernel wrapper under ``governing(name, site(*args))``.

    ``site`` maps the wrapper's arguments to what identifies one call site (e.g. the workspace of
    a layer's window, or the shapes)."""

    def deco(fn):
        name = fn.__module__.rsplit(".", 1)[-1] + "." + fn.__name__

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if not _adapt:
                return fn(*args, **kwargs)
            with governing(name, site(*args)):
                return fn(*args, **kwargs)

        return wrapper

    return deco


def by_workspace(ws, *args, **kwargs):
    """Site of a cell's forward or backward: its workspace (one per layer and window shape)."""
    return id(ws)


def choices() -> dict:
    """site key -> the thread count it uses now (for benchmarks and tests)."""
    return {k: s.current for k, s in _sites.items()}


def reset() -> None:
    _sites.clear()
