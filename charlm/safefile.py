"""Files that are never half-written: atomic writes, writable-directory checks, the run-directory lock.

``atomic_write_bytes`` writes to a temporary file in the target's directory,
flushes and fsyncs it, renames it over the target with ``os.replace`` (atomic
on POSIX and Windows) and fsyncs the directory, so a crash, a full disk or a
``kill -9`` leaves either the old file or the new one, never a mixture. On any
error the temporary file is removed and the old file is untouched.

``RunLock`` holds ``fcntl.flock`` on ``RUN_DIR/.lock``. The kernel drops a
flock when its holder dies, so a killed trainer never leaves a stale lock; the
pid written into the file only serves the error message. Whoever takes the lock
removes the temporary files a killed writer left behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path

from . import rundir
from .errors import CharlmError, UsageError

try:  # POSIX only; on other systems RunLock degrades to a no-op.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

LOCK_NAME = rundir.LOCK
_TEMP_RE = rundir.TEMP_RE

_FIXES = {
    errno.ENOSPC: "free some disk space or choose another --out",
    errno.EDQUOT: "free some disk space (quota exceeded) or choose another --out",
    errno.EACCES: "check the directory's permissions or choose another --out",
    errno.EPERM: "check the directory's permissions or choose another --out",
    errno.EROFS: "the file system is read-only; choose another --out",
    errno.ENOTDIR: "a parent of this path is a file, not a directory; choose another --out",
    errno.ENOENT: "create the parent directory or choose another --out",
}


def _reason(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno, "") if exc.errno else ""
    text = exc.strerror or str(exc) or type(exc).__name__
    return f"{text} ({name})" if name else text


def os_error(action: str, path, exc: OSError) -> CharlmError:
    fix = _FIXES.get(exc.errno, "check the path and the disk, or choose another --out")
    return CharlmError(f"cannot {action} {os.fspath(path)}: {_reason(exc)}; {fix}")


def fsync_dir(directory) -> None:
    """Make a rename or unlink in ``directory`` durable (best effort: some file systems refuse)."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(os.fspath(directory), flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # EINVAL on file systems without directory fsync: the rename already happened
    finally:
        os.close(fd)


def is_special(path) -> bool:
    """Whether ``path`` itself (not a link's target) is a device, FIFO or socket: a file that is written
    in place, never replaced (replacing ``-o /dev/null`` would put a regular file where the device was)."""
    import stat

    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def open_in_place(path):
    """A binary file object writing to the device or FIFO ``path`` (``is_special``). A FIFO nobody reads
    is refused at once (``UsageError``) instead of blocking forever."""
    try:
        fd = os.open(path, os.O_WRONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise UsageError(f"{os.fspath(path)} is a FIFO that nobody reads: start its reader first, "
                             "or write to a regular file") from None
        raise
    os.set_blocking(fd, True)
    return os.fdopen(fd, "wb")


def atomic_write_bytes(path, data: bytes) -> None:
    """Replace ``path`` by ``data`` atomically; ``CharlmError`` (path, reason, fix) on any OS error.
    A device or FIFO (``is_special``) is written in place instead: it cannot be replaced."""
    path = Path(path)
    if is_special(path):
        try:
            with open_in_place(path) as f:
                f.write(data)
        except OSError as exc:
            raise os_error("write", path, exc) from exc
        return
    directory = path.parent
    view = memoryview(data).cast("B")
    tmp = None
    try:
        while True:  # O_EXCL with a random name; mode 0o666 so the umask applies as for open()
            tmp = directory / f".{path.name}.{secrets.token_hex(6)}.tmp"
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
                break
            except FileExistsError:
                continue
        try:
            done = 0
            while done < len(view):
                done += os.write(fd, view[done:])
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise os_error("write", path, exc) from exc
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    fsync_dir(directory)


def atomic_write_text(path, text: str) -> None:
    """``atomic_write_bytes`` of ``text`` encoded as UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def check_writable_dir(path) -> Path:
    """Create ``path`` if needed and prove it writable by creating a file in it; else ``UsageError``.

    A real write is the only honest test: ``os.access`` says yes to root even on a read-only mount.
    """
    path = Path(path)
    fix = "choose another --out or fix its permissions"
    if path.exists() and not path.is_dir():
        raise UsageError(f"output directory {path} is a file, not a directory; {fix}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create output directory {path}: {_reason(exc)}; {fix}") from exc
    probe = path / f".charlm-write-test.{secrets.token_hex(6)}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UsageError(f"output directory {path} is not writable: {_reason(exc)}; {fix}") from exc
    return path


class RunLock:
    """Exclusive use of a run directory by one command (``with RunLock(run_dir, "charlm import"): ...``).

    Non-blocking: a second holder, in this or another process, gets ``CharlmError`` naming the command
    and pid of the first (the lock file holds "PID COMMAND"). The lock file is left in place on release
    (removing it would race with a waiter).
    """

    def __init__(self, run_dir, holder: str = "charlm train"):
        self.run_dir = Path(run_dir)
        self.holder = holder
        self.path = self.run_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        if self._fd is not None:
            raise CharlmError(f"{self.path} is already locked by this RunLock")
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fd = rundir.open_nofollow(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise os_error("lock", self.path, exc) from exc
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                pid, what = _read_holder(fd)
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise CharlmError(
                        f"run directory {self.run_dir} is in use by another {what} (pid {pid}); "
                        "wait for it or choose another --out"
                    ) from None
                raise os_error("lock", self.path, exc) from exc
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {self.holder}\n".encode())
        except OSError:
            pass  # the pid only feeds the error message of a second holder
        self._fd = fd
        if fcntl is not None:  # we are the only writer now: nobody else can own these
            remove_stale_temps(self.run_dir)
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @property
    def locked(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()


@contextlib.contextmanager
def fresh_run(out, names=(rundir.METRICS, rundir.MODEL, rundir.CONFIG), holder: str = "charlm train"):
    """``with fresh_run(out): ...`` for a trainer that writes a new run and has no ``--resume``.

    The ``charlm train`` rules: ``out`` must be missing or empty, it is checked again under the run lock
    (held for the whole block), and if the block fails or is interrupted the run files ``names`` it wrote
    are removed (the directory too, if this call created it), so no half-made run is left behind. SIGTERM
    (a supervisor's timeout) ends the block as ``SystemExit(143)``, so it cleans up as Ctrl-C does.
    """
    out = Path(out)
    rundir.check_fresh(out, resumable=False)
    created = rundir.make_run_dir(out)
    check_writable_dir(out)
    with RunLock(out, holder), _sigterm_exits():
        rundir.check_under_lock(out, fresh=True, resumable=False)
        try:
            yield out
        except BaseException:
            rundir.discard_fresh(out, created, names)
            raise


@contextlib.contextmanager
def _sigterm_exits():
    import signal

    def terminated(signum, frame):
        raise SystemExit(128 + signum)

    try:
        old = signal.signal(signal.SIGTERM, terminated)
    except ValueError:  # not the main thread: signals stay as they are
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def append_line(path, line: str) -> None:
    """Append ``line`` and a newline to ``path`` (created if missing), never through a symbolic link."""
    try:
        fd = rundir.open_nofollow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            f.write(line + "\n")
    except OSError as exc:
        raise os_error("write", path, exc) from exc


def remove_stale_temps(directory) -> list[str]:
    """Delete temporary files left in ``directory`` by a writer killed mid-write; returns their names.

    Only safe while holding the directory's ``RunLock``: a live writer's temporary file would go too.
    """
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if _TEMP_RE.fullmatch(name):
            try:
                os.unlink(os.path.join(directory, name))
                removed.append(name)
            except OSError:
                pass  # best effort: a leftover temp file never breaks a later write
    return removed


def _read_holder(fd: int) -> tuple[str, str]:
    """(pid, command) from a lock file: "PID COMMAND" (an older charlm wrote the pid alone, for train)."""
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    pid, _, what = text.partition(" ")
    what = what.strip() if what.strip().startswith("charlm ") and what.strip().isprintable() else "charlm train"
    return (pid if pid.isdigit() else "unknown"), what
