"""Data-parallel training over MPI ranks (mpi4py): one process per rank, the B streams split evenly.

Under ``mpiexec -n N charlm train ...`` every rank builds the same model from the same seed, trains on
its share of the global batch (streams ``[r*B/N, (r+1)*B/N)``), and after each backward pass the flat
gradient buffer is averaged with ONE ``Allreduce(MPI.IN_PLACE, grad_flat)``; every rank then applies the
same clip and optimizer step, so the weights never diverge and nothing else is exchanged per step but a
small control vector (loss, signals, rank 0's clock and decisions). A window's dropout masks are drawn
for the whole global batch from ``default_rng((seed, step))`` and sliced (``ShardRNG``), so N ranks give
the same losses as one process with B streams (to float32 rounding of the reduction).

Rank 0 owns the run directory (lock, config, metrics.jsonl, checkpoints, samples); the directory must be
on a filesystem every rank sees (checked at start). Validation is sharded by streams and the sums
reduced. Checkpoints hold the GLOBAL carried state (gathered from every rank), so ``--resume`` works with
any N that divides the batch.

Faults: an exception on one rank is reported and the job aborted (``MPI.COMM_WORLD.Abort``), the
``python -m mpi4py`` behaviour; every collective is non-blocking with a deadline
(``CHARLM_MPI_TIMEOUT`` seconds, default 300), so a rank that dies silently cannot hang the
others forever; MPICH's launcher also ends the whole job when one rank is killed.

No MPI in the environment (no ``PMI_SIZE`` / ``OMPI_COMM_WORLD_SIZE`` / ``PMIX_RANK``): a single process,
and mpi4py is never imported.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from . import rundir
from .errors import UsageError

# environment variables by which launchers announce a rank: MPICH/Hydra & Intel MPI, Open MPI, PMIx, Slurm+PMI
_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE")
_RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "MV2_COMM_WORLD_RANK")
DEFAULT_TIMEOUT = 300.0


def launched_size() -> int:
    """The world size a launcher announced in the environment (1 when not under mpiexec)."""
    for var in _SIZE_VARS:
        try:
            return max(1, int(os.environ[var]))
        except (KeyError, ValueError):
            continue
    return 1 if not any(v in os.environ for v in _RANK_VARS) else 0  # 0: a rank, size unknown


class Solo:
    """The single-process world: every collective is the identity."""

    rank, size, local_size = 0, 1, 1
    is_root = True
    timeout = DEFAULT_TIMEOUT

    def allreduce_mean_(self, buf) -> None:
        return None

    def allreduce(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values, dtype=np.float64)

    def allgather_rows(self, local: np.ndarray, axis: int) -> np.ndarray:
        return local

    def barrier(self) -> None:
        return None

    def bcast(self, obj):
        return obj

    def abort(self, code: int = 1) -> None:
        sys.exit(code)


class MPIWorld:
    """COMM_WORLD through mpi4py; collectives are non-blocking requests waited on with a deadline."""

    is_root: bool

    def __init__(self, timeout: float = DEFAULT_TIMEOUT):
        try:
            from mpi4py import MPI
        except ImportError:
            raise UsageError("charlm runs under an MPI launcher (mpiexec) but mpi4py is not installed: "
                             "pip install 'charlm[mpi]'") from None
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.is_root = self.rank == 0
        local = self.comm.Split_type(MPI.COMM_TYPE_SHARED)   # the ranks on this host
        self.local_size = local.Get_size()
        local.Free()
        self.timeout = float(timeout)

    def _wait(self, req, what: str) -> None:
        """Wait for a request: spin briefly (a step's all-reduce is usually done in microseconds),
        then poll with short sleeps so a slow rank does not burn this core; abort past the deadline."""
        for _ in range(200):
            if req.Test():
                return
        deadline = time.monotonic() + self.timeout
        pause = 1e-5
        while not req.Test():
            if time.monotonic() > deadline:
                sys.stderr.write(f"charlm: rank {self.rank}: {what} did not complete within "
                                 f"{self.timeout:.0f}s (another rank died or hangs); aborting the job\n")
                sys.stderr.flush()
                self.comm.Abort(1)
            time.sleep(pause)
            pause = min(pause * 2, 2e-3)

    def allreduce_mean_(self, buf) -> None:
        """Average a flat float buffer over the ranks, in place (one call)."""
        req = self.comm.Iallreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
        self._wait(req, "the gradient all-reduce")
        buf *= buf.dtype.type(1.0 / self.size)

    def allreduce(self, values: np.ndarray) -> np.ndarray:
        """Sum of a small float64 vector over the ranks."""
        out = np.ascontiguousarray(values, dtype=np.float64).copy()
        req = self.comm.Iallreduce(self.MPI.IN_PLACE, out, op=self.MPI.SUM)
        self._wait(req, "a control all-reduce")
        return out

    def allgather_rows(self, local: np.ndarray, axis: int) -> np.ndarray:
        """Concatenate equal shards along ``axis`` in rank order (every rank gets the result)."""
        moved = np.ascontiguousarray(np.moveaxis(local, axis, 0))
        out = np.empty((self.size * moved.shape[0],) + moved.shape[1:], dtype=moved.dtype)
        req = self.comm.Iallgather(moved, out)
        self._wait(req, "a state all-gather")
        return np.ascontiguousarray(np.moveaxis(out, 0, axis))

    def barrier(self) -> None:
        self._wait(self.comm.Ibarrier(), "a barrier")

    def bcast(self, obj):
        """Rank 0's small picklable object, on every rank (plain data only: nothing is unpickled from disk)."""
        self.barrier()  # a deadline for a dead rank 0, then the (blocking) broadcast itself
        return self.comm.bcast(obj, root=0)

    def abort(self, code: int = 1) -> None:
        sys.stderr.flush()
        sys.stdout.flush()
        self.comm.Abort(code)


_WORLD = None


def world(timeout: float | None = None):
    """The process's world: ``Solo()`` unless launched under MPI with more than one rank."""
    global _WORLD
    if _WORLD is None:
        if timeout is None:
            try:
                timeout = float(os.environ.get("CHARLM_MPI_TIMEOUT", DEFAULT_TIMEOUT))
            except ValueError:
                raise UsageError("CHARLM_MPI_TIMEOUT must be a number of seconds") from None
        _WORLD = Solo() if launched_size() == 1 else MPIWorld(timeout)
        return _WORLD
    if timeout is not None:
        _WORLD.timeout = float(timeout)
    return _WORLD


def shard(batch_size: int, w) -> tuple[int, int]:
    """This rank's streams [lo, hi) of a global batch."""
    if batch_size % w.size:
        raise UsageError(f"--batch-size {batch_size} does not split evenly over {w.size} MPI ranks: "
                         f"use a multiple of {w.size} (e.g. {max(1, batch_size // w.size) * w.size})")
    per = batch_size // w.size
    return w.rank * per, (w.rank + 1) * per


def threads_per_rank(w) -> int:
    """Cores this process may use divided by the ranks on this host (at least 1)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if w.size > 1 and hasattr(os, "sched_getaffinity"):
        # a launcher that binds each rank to its cores already gave us our share
        total = os.cpu_count() or cores
        if cores < total:
            return max(1, cores)
    return max(1, cores // max(1, w.local_size))


class ShardRNG:
    """A ``np.random.Generator`` stand-in that draws for the global batch and returns this rank's
    columns (axis 1 is the batch axis of every (T, B, ...) draw), so dropout masks do not depend on N."""

    def __init__(self, rng: np.random.Generator, batch_size: int, lo: int, hi: int):
        self.rng, self.batch_size, self.lo, self.hi = rng, batch_size, lo, hi

    def random(self, shape, dtype=np.float64):
        shape = tuple(shape)
        if len(shape) < 2 or shape[1] != self.hi - self.lo:
            raise ValueError(f"ShardRNG draws (T, B, ...) arrays with B = {self.hi - self.lo}, got {shape}")
        full = self.rng.random((shape[0], self.batch_size) + shape[2:], dtype=dtype)
        return np.ascontiguousarray(full[:, self.lo:self.hi])


# ----- the trainer's side: what crosses ranks each step -----------------------------------------
def allreduce_grads(w, model) -> None:
    """Average ``model.grad_flat`` (P,) over the ranks with one all-reduce (device buffers via the host)."""
    g = model.grad_flat
    if isinstance(g, np.ndarray):
        w.allreduce_mean_(g)
        return
    host = model.backend.to_host(g)
    w.allreduce_mean_(host)
    g[:] = model.backend.to_device(host)


def step_control(w, loss: float, elapsed: float, signum: int) -> tuple[float, float, int]:
    """After a step: (mean loss over ranks, rank 0's elapsed seconds, the signal any rank received).

    Every decision the loop takes from the clock or a signal is then the same on every rank."""
    import signal

    vec = np.array([loss, elapsed if w.is_root else 0.0,
                    float(signum == signal.SIGINT), float(signum == signal.SIGTERM)])
    out = w.allreduce(vec)
    sig = signal.SIGTERM if out[3] > 0 else signal.SIGINT if out[2] > 0 else 0
    return float(out[0] / w.size), float(out[1]), int(sig)


def share_data(spec, data, w):
    """Rank 0 has encoded the corpus into RUN/ids.npy; every other rank maps that file and builds the
    same split and streams from the options rank 0 settled (batch and window may have shrunk to fit)."""
    from . import corpus
    from .config import ModelConfig, TrainConfig
    from .tokenizer import CharTokenizer
    from .trainsetup import RunData

    msg = None
    if w.is_root:
        msg = {"tokenizer": data.tokenizer.to_dict(), "train": data.train_cfg.to_dict(),
               "model": spec.model.to_dict(), "fingerprint": spec.fingerprint, "starts": data.starts}
    msg = w.bcast(msg)
    if w.is_root:
        return data
    tok = CharTokenizer.from_dict(msg["tokenizer"])
    cfg = TrainConfig.from_dict(msg["train"])
    spec.train, spec.model, spec.fingerprint = cfg, ModelConfig.from_dict(msg["model"]), msg["fingerprint"]
    path = os.path.join(spec.run_dir, rundir.IDS)
    try:
        ids = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        raise UsageError(f"MPI rank {w.rank} cannot read {path}: the run directory (--out) must be on a "
                         "filesystem that every rank's host sees") from None
    train_ids, val_ids, _ = corpus.split_ids(ids, cfg.val_frac, cfg.test_frac, starts=msg.get("starts"))
    streams = corpus.Streams(train_ids, cfg.batch_size, cfg.seq_len, seed=cfg.seed,
                             shuffle_offsets=cfg.shuffle_offsets)
    val = val_ids if val_ids is not None and len(val_ids) >= 2 else None
    return RunData(tok, streams, val, cfg, msg.get("starts"))


class NullLog:
    """What ranks other than 0 log: nothing (any RunLog method is a no-op)."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


_CLEAN = False


def mark_clean() -> None:
    """Training ended on every rank together: a non-zero exit now (130/143) is coordinated, not a fault."""
    global _CLEAN
    _CLEAN = True


def exit_code_needs_abort(code) -> bool:
    """A rank leaving with an error while the others may wait in a collective: abort the whole job."""
    return _WORLD is not None and _WORLD.size > 1 and not _CLEAN and code not in (0, None)
