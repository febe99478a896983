"""One writer per project folder.

A run (``s2s run``/``train``/``register``, a flow run on a worker, a stage's
``python -m tasks.<stage>``) holds an exclusive lock on ``<project>/.s2s/run.lock`` for as long
as it writes. A second one stops at once, naming the holder (pid, host, start time, command),
or waits with ``--wait``. The lock is an ``flock``: the kernel drops it when its process dies,
so a ``kill -9`` never leaves a stale lock behind.

In a DVC project the run also holds DVC's own repository lock, which ``dvc repro`` takes:
otherwise ``dvc repro`` would delete the outputs of the stages it re-runs while this run is
using them. Stage commands that ``dvc repro`` itself started (``DVC_STAGE`` is set) leave that
lock to it.

The lock is re-entrant within a process (the CLI takes it, then the flow it calls takes it
again), so callers simply take it where they write.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import socket
import sys
import threading
import time
from pathlib import Path

from tasks.core.errors import EXIT_BUSY, PipelineError
from tasks.core.paths import STATE_DIR

logger = logging.getLogger(__name__)

LOCK_FILE = "run.lock"


class ProjectBusy(PipelineError):
    """Another run holds the project folder."""

    exit_code = EXIT_BUSY  # EX_TEMPFAIL: try again later


_held: dict[Path, list] = {}  # root -> [fd, depth, dvc repo or None]
_guard = threading.Lock()


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process"
    return f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}: `{info.get('command')}`"


def _dvc_holder(root: Path) -> str:
    """Who holds DVC's lock (zc.lockfile writes the pid into it)."""
    try:
        pid = int((root / ".dvc" / "tmp" / "lock").read_text().strip())
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        return f"pid {pid}: `{cmd}`" if cmd else f"pid {pid}"
    except (OSError, ValueError):
        return "another DVC command"


def _try_dvc_lock(root: Path):
    """DVC's repository lock, held for the run (None when this is no DVC project, or when
    ``dvc repro`` runs us and holds it itself)."""
    if os.environ.get("DVC_STAGE") or not (root / ".dvc").is_dir():
        return None
    from dvc.exceptions import DvcException
    from dvc.lock import LockError
    from dvc.repo import Repo

    try:
        repo = Repo(str(root))
    except DvcException:
        return None
    repo.lock._friendly = False  # our own message says who holds it, without a spinner
    try:
        repo.lock._do_lock()  # one attempt: the caller decides whether to wait
    except LockError:
        repo.close()
        raise
    repo._lock_depth += 1  # the repo's own calls (status, commit) now run under our lock
    return repo


def acquire(root: Path, *, wait: bool = False, timeout: float | None = None) -> None:
    """Take the project lock (re-entrant). Raise ProjectBusy naming the holder, or wait."""
    root = Path(root).resolve()
    with _guard:
        if root in _held:
            _held[root][1] += 1
            return
    state = root / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    path = state / LOCK_FILE
    deadline = None if timeout is None else time.monotonic() + timeout
    told = False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        busy = None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            busy = f"another run holds {root}: {_holder(path)}"
        if busy is None:
            try:
                repo = _try_dvc_lock(root)
            except Exception as exc:  # DVC's LockError (other DVC errors: no DVC lock needed)
                from dvc.lock import LockError

                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
                if not isinstance(exc, LockError):
                    raise
                busy = f"a DVC command holds {root} ({_dvc_holder(root)})"
        if busy is None:
            info = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                "command": " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv)),
            }
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
            with _guard:
                _held[root] = [fd, 1, repo]
            return
        if not wait or (deadline is not None and time.monotonic() > deadline):
            raise ProjectBusy(f"{busy}; wait for it to finish, or run again with --wait")
        if not told:
            logger.warning("%s; waiting for it to finish", busy)
            told = True
        time.sleep(1.0)


def release(root: Path) -> None:
    root = Path(root).resolve()
    with _guard:
        entry = _held.get(root)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] > 0:
            return
        del _held[root]
    fd, _, repo = entry
    if repo is not None:
        repo._lock_depth -= 1
        with contextlib.suppress(Exception):
            repo.lock.unlock()
        repo.close()
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


@contextlib.contextmanager
def project_lock(root: Path, *, wait: bool = False, timeout: float | None = None):
    acquire(root, wait=wait, timeout=timeout)
    try:
        yield
    finally:
        release(root)


def dvc_repo(root: Path):
    """The DVC repository this process holds the lock of (for the stage cache), or None."""
    entry = _held.get(Path(root).resolve())
    return entry[2] if entry else None
