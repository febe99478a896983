"""The model registry, written crash-consistently (its reads fail closed: tasks/tracking/reads.py).

**One promotion of a model at a time**, across machines. MLflow's alias update is
last-writer-wins, so every alias change (promote, rollback, manual promotion) and every
registration runs under :func:`model_lock`: with a SQLite store (one machine) a file lock beside
the database; with any shared store a lease kept in the registry itself, as a tag of the
registered model, taken with Fischer's timed mutual exclusion: read it free, write our claim
within :data:`WRITE_BOUND_S`, wait :data:`SETTLE_S`, read it back. Any competitor that read it
free wrote within the bound, so after the wait the value read back is the winner's. The lease
is renewed while held, verified before each alias write, and expires :data:`LEASE_TTL_S` after
a holder vanished (at once when the holder was a dead process on this host).

**Alias changes are a write-ahead transaction.** The intended change (every alias move plus the
record of why) is written to the registered model's ``s2s.pending`` tag first, then the aliases
are moved, then the intent is cleared. Whoever takes the lock next (a re-run, ``s2s rollback``,
``s2s promote``) first rolls a leftover intent forward, so a crash between any two registry
writes leads to the intended state, never to a champion without its ``previous_champion``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tasks.core.config import Config
from tasks.core.context import prefect_flow_run_id
from tasks.core.errors import TrackingError
from tasks.tracking import client as tracking
from tasks.tracking import history, reads
from tasks.tracking.reads import PENDING

logger = logging.getLogger(__name__)

LEASE = "s2s.lease"
LEASE_TTL_S = 60.0
WRITE_BOUND_S = 2.0  # a claim must be written within this long after the lease was read free
SETTLE_S = 3.0  # > WRITE_BOUND_S: then every racing claim has landed


def ensure_model(cfg: Config, name: str, description: str = "") -> None:
    """Create the registered model unless it exists (a concurrent creator wins quietly)."""
    from mlflow.exceptions import MlflowException

    c = tracking.client(cfg)

    def create():
        try:
            c.create_registered_model(name, description=description or None)
        except MlflowException as exc:
            if "already exists" not in str(exc).lower() and getattr(exc, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
                raise

    reads.call(cfg, create, f"creating registered model {name!r}")


# -- one writer of a model's aliases at a time ------------------------------------------------


class _FileLock:
    """SQLite: the store is a local file, so a file lock beside it covers every writer."""

    def __init__(self, cfg: Config, name: str):
        from filelock import FileLock

        folder = cfg.sqlite_path().parent / ".s2s-locks"
        folder.mkdir(parents=True, exist_ok=True)
        self.lock = FileLock(str(folder / f"promote-{name}.lock"), timeout=cfg.promote.lock_timeout_s)
        self.name = name

    def __enter__(self):
        from filelock import Timeout

        try:
            self.lock.acquire()
        except Timeout:
            raise TrackingError(
                f"another promotion of {self.name!r} held the lock for promote.lock_timeout_s; "
                "try again when it has finished",
                transient=True,
            ) from None
        return self

    def __exit__(self, *exc) -> None:
        self.lock.release()

    def verify(self) -> None:
        return None


def _proc_start(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


class Lease:
    """A lease on a registered model kept in the registry (shared stores, several machines)."""

    def __init__(self, cfg: Config, name: str):
        self.cfg, self.name = cfg, name
        self.owner = uuid.uuid4().hex
        self._stop = threading.Event()
        self._lost = False
        self._renewer: threading.Thread | None = None

    def _claim(self) -> str:
        return json.dumps(
            {
                "owner": self.owner,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "pid_start": _proc_start(os.getpid()),
                "until": time.time() + LEASE_TTL_S,
            }
        )

    def _read(self) -> dict | None:
        tags = reads.model_tags(self.cfg, self.name)
        if tags is None:
            raise TrackingError(f"registered model {self.name!r} does not exist: nothing to lock")
        try:
            return json.loads(tags[LEASE]) if LEASE in tags else None
        except ValueError:
            return None

    def _free(self, held: dict | None) -> bool:
        if held is None or held.get("owner") == self.owner:
            return True
        if float(held.get("until", 0)) < time.time():
            return True  # expired: its holder vanished without releasing
        if held.get("host") == socket.gethostname():
            pid = int(held.get("pid", 0) or 0)
            if pid and _proc_start(pid) != held.get("pid_start"):
                return True  # a dead process on this host
        return False

    def __enter__(self):
        c = tracking.client(self.cfg)
        deadline = time.monotonic() + self.cfg.promote.lock_timeout_s
        told = False
        while True:
            held = self._read()
            if self._free(held):
                t0 = time.monotonic()
                reads.call(
                    self.cfg, lambda: c.set_registered_model_tag(self.name, LEASE, self._claim()), "claiming the lease"
                )
                took = time.monotonic() - t0
                time.sleep(SETTLE_S)
                now = self._read()
                if now and now.get("owner") == self.owner:
                    if took <= WRITE_BOUND_S:
                        break
                    self._release()  # too slow to be sure no one else read it free: start over
            elif not told:
                logger.info(
                    "waiting for the promotion lease of %r (held by %s pid %s)",
                    self.name,
                    held.get("host"),
                    held.get("pid"),
                )
                told = True
            if time.monotonic() > deadline:
                raise TrackingError(
                    f"the promotion lease of {self.name!r} stayed taken for promote.lock_timeout_s; "
                    "try again when the other promotion has finished",
                    transient=True,
                )
            time.sleep(0.5 + (uuid.uuid4().int % 1000) / 1000)
        self._renewer = threading.Thread(target=self._renew, daemon=True, name=f"lease-{self.name}")
        self._renewer.start()
        return self

    def _renew(self) -> None:
        c = tracking.client(self.cfg)
        while not self._stop.wait(LEASE_TTL_S / 4):
            try:
                held = self._read()
                if not held or held.get("owner") != self.owner:
                    self._lost = True
                    return
                c.set_registered_model_tag(self.name, LEASE, self._claim())
            except Exception as exc:  # the next verify() decides; renewals retry
                logger.debug("lease renewal failed: %s", exc)

    def verify(self) -> None:
        """Before a registry write: the lease is still ours, or no write happens."""
        held = self._read()
        if self._lost or not held or held.get("owner") != self.owner or float(held.get("until", 0)) < time.time():
            raise TrackingError(
                f"lost the promotion lease of {self.name!r} (held too long, or the clock moved); "
                "no alias was changed by this step",
                transient=True,
            )

    def _release(self) -> None:
        c = tracking.client(self.cfg)
        with contextlib.suppress(Exception):
            held = self._read()
            if held and held.get("owner") == self.owner:
                c.delete_registered_model_tag(self.name, LEASE)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
        self._release()


def model_lock(cfg: Config, name: str):
    """The lock every alias change and registration of ``name`` runs under (see module doc)."""
    return _FileLock(cfg, name) if cfg.sqlite_path() is not None else Lease(cfg, name)


# -- alias changes as a write-ahead transaction ------------------------------------------------


def _apply(cfg: Config, name: str, changes: dict[str, str | None], lock) -> None:
    from mlflow.exceptions import MlflowException

    c = tracking.client(cfg)
    for alias, version in changes.items():
        lock.verify()
        if version is None:

            def drop(alias=alias):
                try:
                    c.delete_registered_model_alias(name, alias)
                except MlflowException as exc:
                    if not tracking.is_not_found(exc):
                        raise

            reads.call(cfg, drop, f"removing alias {alias!r}")
        else:
            reads.call(
                cfg,
                lambda a=alias, v=version: c.set_registered_model_alias(name, a, str(v)),
                f"moving alias {alias!r} to v{version}",
            )


def move_aliases(
    cfg: Config,
    name: str,
    changes: dict[str, str | None],
    record: dict[str, Any],
    lock,
    on_done: Callable[[dict], None] | None = None,
    tags: dict[str, dict[str, str]] | None = None,
) -> None:
    """Apply ``changes`` (alias -> version, None removes) atomically with respect to crashes:
    intent first, then the aliases in order, then ``tags`` (version -> tags that say the change
    happened, e.g. the decision), then the intent cleared. ``record`` says why (it travels with
    the intent, for whoever finishes the change)."""
    import uuid

    c = tracking.client(cfg)
    record = {"who": history.who(), "flow_run_id": prefect_flow_run_id() or "", **record}
    intent = {"id": uuid.uuid4().hex, "changes": changes, "record": record, "written": time.time()}
    if tags:
        intent["tags"] = tags
    lock.verify()
    reads.call(cfg, lambda: c.set_registered_model_tag(name, PENDING, json.dumps(intent)), "recording the alias change")
    _finish(cfg, name, intent, lock, on_done)


def _finish(cfg: Config, name: str, intent: dict, lock, on_done) -> None:
    c = tracking.client(cfg)
    _apply(cfg, name, intent["changes"], lock)
    for version, tags in (intent.get("tags") or {}).items():  # said only once the aliases moved
        for k, v in tags.items():
            lock.verify()
            reads.call(
                cfg, lambda v_=version, k=k, v=v: c.set_model_version_tag(name, v_, k, v), "recording the decision"
            )
    history.append(cfg, name, intent, lock)  # once per intent, also when recover() finishes it
    if on_done is not None:
        on_done(intent)
    lock.verify()
    reads.call(cfg, lambda: c.delete_registered_model_tag(name, PENDING), "clearing the recorded alias change")


def recover(cfg: Config, name: str, lock, on_done: Callable[[dict], None] | None = None) -> dict | None:
    """Roll forward an alias change a crashed writer left half done (call under the lock).
    Returns the intent that was finished, if any."""
    tags = reads.model_tags(cfg, name)
    if not tags or PENDING not in tags:
        return None
    try:
        intent = json.loads(tags[PENDING])
    except ValueError:
        intent = None
    if not isinstance(intent, dict) or not isinstance(intent.get("changes"), dict):
        logger.warning("unreadable pending alias change on %r removed: %r", name, tags[PENDING][:200])
        c = tracking.client(cfg)
        reads.call(cfg, lambda: c.delete_registered_model_tag(name, PENDING), "clearing an unreadable alias change")
        return None
    logger.warning(
        "finishing an alias change of %r that an interrupted run left half done: %s",
        name,
        ", ".join(f"{a} -> v{v}" if v else f"{a} removed" for a, v in intent["changes"].items()),
    )
    _finish(cfg, name, intent, lock, on_done)
    return intent


@contextlib.contextmanager
def locked_model(cfg: Config, name: str, on_done: Callable[[dict], None] | None = None) -> Iterator[Any]:
    """The model's lock, with any half-done alias change of an earlier writer finished first."""
    with model_lock(cfg, name) as lock:
        recover(cfg, name, lock, on_done)
        yield lock
