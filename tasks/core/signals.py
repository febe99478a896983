"""Graceful stop: SIGTERM (``timeout``, ``docker stop``, Kubernetes, Prefect cancellation) and
Ctrl-C stop a run within seconds, with everything it holds released.

The first signal raises :class:`Interrupted` in the main thread, so every ``with``/``finally``
on the way out runs: the MLflow run is ended KILLED, locks are released, the temporary Prefect
server stops. While training, the first signal only asks the trainer to stop: it saves a
checkpoint at the end of the current step and returns, and training then raises
:class:`Interrupted` itself (a re-run resumes from that checkpoint). A second signal, or a clean
stop that takes longer than :data:`GRACE_S`, ends the process at once: child processes are
killed and the exit status still names the signal (128 + its number: 143 for SIGTERM, 130 for
Ctrl-C).

Prefect swaps its own SIGTERM handler in while a flow runs and hands the signal back to the
previous handler (this one) when it fires, so the behaviour is the same inside and outside flows.

A signal is never lost. A Python signal handler stops a run by raising, and the interpreter
discards an exception raised while a finalizer (``__del__``, a weakref callback) runs: it prints
"Exception ignored in ..." and the run goes on. That is how a SIGTERM during validate once let a
run train and promote. So arrivals are also recorded below Python, in the interpreter's wakeup
fd (written by its C-level handler whichever Python handler then runs), and :func:`check`, called
at every stage boundary and Prefect task start and end, raises :class:`Interrupted` for a signal
whose exception went missing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading

logger = logging.getLogger(__name__)

GRACE_S = 25.0  # a clean stop gets this long before the process is ended at once
HANDLED = (signal.SIGTERM, signal.SIGINT)


class Interrupted(BaseException):
    """The run was asked to stop (BaseException, like KeyboardInterrupt: nothing swallows it)."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class _State:
    received: list[int] = []
    graceful = 0  # > 0 while a stage stops by itself at a safe point (training)
    children: list[subprocess.Popen] = []
    installed = False
    watchdog: threading.Timer | None = None
    wakeup: int | None = None  # read end of the interpreter's wakeup fd: every signal's number
    missed: int | None = None  # a signal seen there that no handler of ours recorded


STATE = _State()


def _arrivals() -> list[int]:
    """The stop signals the interpreter received since the last look (its wakeup fd)."""
    if STATE.wakeup is None:
        return []
    data = b""
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(STATE.wakeup, 512):
            data += chunk
    return [b for b in data if b in HANDLED]


def stop_requested() -> int | None:
    """The signal that asked this process to stop, or None (also one whose exception was lost)."""
    if STATE.received:
        return STATE.received[0]
    arrived = _arrivals()
    if arrived and STATE.missed is None:
        STATE.missed = arrived[0]
    return STATE.missed


def check() -> None:
    """A safe point (a stage boundary, a task's start or end): raise :class:`Interrupted` if a
    stop was asked for, including by a signal whose exception was discarded on its way."""
    signum = stop_requested()
    if signum is not None and not STATE.graceful:
        if not STATE.received:
            name = signal.Signals(signum).name
            os.write(2, f"\n{name} received earlier (its exception was lost): stopping\n".encode())
        _arm_watchdog(signum)
        raise Interrupted(signum)


def add_child(proc: subprocess.Popen) -> None:
    """A child process killed with this one if it has to stop at once."""
    STATE.children.append(proc)


def remove_child(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ValueError):
        STATE.children.remove(proc)


def hard_exit(signum: int) -> None:
    for proc in list(STATE.children):
        with contextlib.suppress(OSError):
            proc.kill()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(128 + signum)


def _arm_watchdog(signum: int) -> None:
    if STATE.watchdog is None:
        STATE.watchdog = threading.Timer(GRACE_S, hard_exit, args=(signum,))
        STATE.watchdog.daemon = True
        STATE.watchdog.start()


def _handler(signum, _frame) -> None:
    _arrivals()  # this signal's own record (and Prefect's re-sent copy of it): accounted for here
    STATE.received.append(signum)
    if len(STATE.received) > 1:
        os.write(2, f"\nsecond {signal.Signals(signum).name}: stopping now\n".encode())
        hard_exit(signum)
    _arm_watchdog(signum)
    if STATE.graceful:
        os.write(
            2,
            f"\n{signal.Signals(signum).name}: stopping after the current training step "
            "(a checkpoint is saved; send it again to stop at once)\n".encode(),
        )
        return
    raise Interrupted(signum)


def install() -> None:
    """Install the handlers (main thread of an entry point only)."""
    if STATE.installed or threading.current_thread() is not threading.main_thread():
        return
    for sig in HANDLED:
        signal.signal(sig, _handler)
    read, write = os.pipe()
    os.set_blocking(read, False)
    os.set_blocking(write, False)  # the C handler must never block on a full pipe
    signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    STATE.wakeup = read
    STATE.installed = True


@contextlib.contextmanager
def graceful():
    """Within this block the first signal only sets :func:`stop_requested`; the code inside
    must look at it at safe points and stop by itself."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in HANDLED}
    for sig in HANDLED:
        signal.signal(sig, _handler)
    STATE.graceful += 1
    try:
        yield
    finally:
        STATE.graceful -= 1
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stop_requested():
        raise Interrupted(stop_requested())


def exit_code_for(exc: BaseException) -> int | None:
    """128 + signal for the exceptions a stop request surfaces as (ours, Ctrl-C, Prefect's)."""
    if isinstance(exc, Interrupted):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return 130
    if type(exc).__name__ == "TerminationSignal":  # Prefect's, raised by its SIGTERM bridge
        return 128 + int(getattr(exc, "signal", signal.SIGTERM))
    return None
