"""The tracking store a project owns: which registry it is, where it keeps artifacts, whether it is sound.

Checked once per process and store, before the first MLflow call (``tasks.tracking.client``):

* **Health** (SQLite stores): a file that is not an SQLite database, or fails SQLite's own
  ``quick_check``, is a clear, non-transient error: retrying a corrupt file cannot help.
* **Identity**: every store gets an id, the tag ``s2s.registry_id`` on its Default experiment,
  and the project keeps the id of each store it has used in ``.s2s/registry.json``. A store that
  is empty (emptied, deleted, truncated to 0 bytes) where the project knows one, or that holds
  another id, is refused by name: it is not this project's registry, and the next run would
  otherwise register a new "version 1" against "no champion yet". ``s2s registry adopt`` takes
  a new store on purpose.
* **Place** (SQLite stores): MLflow writes absolute ``file://`` locations into the store, so a
  copied or moved project would write its artifacts into the original folder. When every
  location outside this project's artifact folder is the same folder of the project's old place
  (and the artifacts came along, or there are none), the store is rewritten to point at this
  project's folder, and the run says so; any other outside location is refused with the fix
  (``s2s registry relocate``). Nothing is ever written outside the project.

A store behind an HTTP tracking server chooses its own artifact locations; only its identity is
checked.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from tasks.core.config import Config
from tasks.core.errors import TrackingError
from tasks.core.paths import atomic_write_json
from tasks.core.secrets import redact

if TYPE_CHECKING:
    from mlflow import MlflowClient

logger = logging.getLogger(__name__)

RECORD = Path(".s2s") / "registry.json"
ID_TAG = "s2s.registry_id"
DEFAULT_EXPERIMENT = "0"
SQLITE_MAGIC = b"SQLite format 3\x00"

_checked: set[str] = set()  # stores found sound in this process


# -- what the project remembers ------------------------------------------------------------------


def store_key(cfg: Config) -> str:
    """How the project names a store: a SQLite file inside the project by its relative path (so a
    copied project knows its store), anything else by its URI without credentials."""
    db = cfg.sqlite_path()
    if db is not None:
        try:
            return "sqlite:///" + db.resolve().relative_to(cfg.root.resolve()).as_posix()
        except ValueError:
            return "sqlite:///" + str(db)
    return redact(cfg.tracking_uri())


def _record_path(cfg: Config) -> Path:
    return cfg.root / RECORD


def recorded(cfg: Config) -> dict[str, Any] | None:
    """What the project recorded about the configured store (its id, since when), or None."""
    path = _record_path(cfg)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # unreadable is not "no registry recorded": that would adopt any store
        raise TrackingError(
            f"{path} (which registry this project uses) cannot be read: {exc}. Restore it, or delete it "
            "and run `s2s registry adopt` to record the store configured now",
            transient=False,
        ) from None
    entry = data.get(store_key(cfg)) if isinstance(data, dict) else None
    return entry if isinstance(entry, dict) and entry.get("id") else None


def _remember(cfg: Config, registry_id: str, how: str) -> None:
    path = _record_path(cfg)
    try:
        data = json.loads(path.read_text())
        data = data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        data = {}
    data[store_key(cfg)] = {"id": registry_id, "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "how": how}
    try:
        atomic_write_json(path, data)
    except OSError as exc:  # a read-only project (a serving container): checked, not remembered
        logger.warning("could not record registry %s in %s (%s): this store is not pinned", registry_id, path, exc)


# -- health ------------------------------------------------------------------------------------


def sqlite_health(db: Path) -> str | None:
    """Why the SQLite file ``db`` cannot be used as a store, or None (an absent or empty file is
    healthy here: whether an empty store is acceptable is the identity check's question)."""
    try:
        with db.open("rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"it cannot be read ({exc.strerror or exc})"
    if not head:
        return None
    if head != SQLITE_MAGIC:
        return "it is not an SQLite database (overwritten or corrupt)"
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            rows = con.execute("PRAGMA quick_check").fetchall()
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        return f"SQLite cannot read it ({exc})"
    bad = [r[0] for r in rows if r and r[0] != "ok"]
    return f"SQLite's integrity check fails ({'; '.join(bad[:3])})" if bad else None


def corrupt(cfg: Config, why: str) -> TrackingError:
    db = cfg.sqlite_path()
    return TrackingError(
        f"the tracking store at {db or redact(cfg.tracking_uri())} is damaged: {why}. Nothing was changed. "
        "Restore it from a backup (it holds the registry: versions, aliases, the champion history), "
        "or move it aside and start a new registry on purpose with `s2s registry adopt`",
        transient=False,
    )


def _empty_sqlite(db: Path | None) -> bool:
    return db is not None and (not db.exists() or db.stat().st_size == 0)


# -- identity ----------------------------------------------------------------------------------


def store_id(c: MlflowClient) -> str | None:
    exp = c.get_experiment(DEFAULT_EXPERIMENT)
    return (exp.tags or {}).get(ID_TAG) if exp is not None else None


def _new_id(c: MlflowClient) -> str:
    """An id for a store that has none, written into it. Derived from when the store was created
    (its Default experiment's creation time), so two processes naming a new store at once write
    the same id, and a store emptied and re-created gets another one."""
    exp = c.get_experiment(DEFAULT_EXPERIMENT)
    born = getattr(exp, "creation_time", None)
    new = hashlib.sha256(f"s2s-registry:{born}".encode()).hexdigest()[:32] if born else uuid.uuid4().hex
    c.set_experiment_tag(DEFAULT_EXPERIMENT, ID_TAG, new)
    return new


def _has_project_data(c: MlflowClient) -> bool:
    return bool(c.search_registered_models(max_results=1)) or any(
        e.experiment_id != DEFAULT_EXPERIMENT for e in c.search_experiments(max_results=5)
    )


def not_ours(cfg: Config, why: str, known: dict[str, Any]) -> TrackingError:
    where = cfg.sqlite_path() or redact(cfg.tracking_uri())
    return TrackingError(
        f"the tracking store at {where} is not this project's registry: {why}. This project's registry "
        f"is {known['id']} (recorded in {RECORD} since {known.get('since', '?')}); nothing was written. "
        "Restore the store from a backup, or point MLFLOW_TRACKING_URI / tracking.uri back at it; to "
        "use this store from now on, on purpose, run `s2s registry adopt`",
        transient=False,
    )


def check_identity(cfg: Config, c: MlflowClient) -> str:
    """The store's id, after checking it is the project's (a store seen first is adopted)."""
    known = recorded(cfg)
    found = store_id(c)
    if known and found is None:
        raise not_ours(cfg, "it has no registry id (emptied or replaced)", known)
    if known and found != known["id"]:
        raise not_ours(cfg, f"it is registry {found}, another one (replaced)", known)
    if found is None:
        found = _new_id(c)
        how = "named an existing store" if _has_project_data(c) else "created"
        _remember(cfg, found, how)
        logger.info("tracking store %s is registry %s (%s)", store_key(cfg), found, how)
    elif not known:
        _remember(cfg, found, "found")  # a clone, or a teammate's store seen for the first time
    return found


def adopt(cfg: Config, c: MlflowClient) -> tuple[str, str | None]:
    """Take the configured store as this project's registry on purpose: (its id, the id it replaces)."""
    previous = (recorded(cfg) or {}).get("id")
    found = store_id(c) or _new_id(c)
    _remember(cfg, found, "adopted")
    _checked.discard(cfg.tracking_uri())
    return found, previous


# -- place -------------------------------------------------------------------------------------


def _path_of(location: str) -> Path | None:
    if location.startswith("file:"):
        return Path(unquote(urlparse(location).path))
    return Path(location) if location.startswith("/") else None


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


@dataclass
class Place:
    """Where a SQLite store keeps its experiments' artifacts, seen from this project."""

    artifact_root: Path
    outside: dict[str, list[str]] = field(default_factory=dict)  # location -> experiments keeping it
    runs: dict[str, int] = field(default_factory=dict)  # location -> runs under it

    def moved_from(self, cfg: Config) -> Path | None:
        """The old project folder of a moved or copied project, when the one outside location is
        that folder's artifact folder (the same relative ``tracking.artifacts``)."""
        rel = cfg.tracking.artifacts
        if rel.is_absolute() or len(self.outside) != 1:
            return None
        old = _path_of(next(iter(self.outside)))
        if old is None or old.parts[-len(rel.parts) :] != rel.parts:
            return None
        return Path(*old.parts[: -len(rel.parts)])


def place(cfg: Config) -> Place | None:
    db = cfg.sqlite_path()
    if db is None or not db.exists() or db.stat().st_size == 0:
        return None
    root = cfg.artifact_root()
    out = Place(artifact_root=root)
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "experiments" not in tables:
            return out
        for exp_id, location in con.execute("SELECT experiment_id, artifact_location FROM experiments"):
            path = _path_of(location or "")
            if str(exp_id) == DEFAULT_EXPERIMENT or path is None or _inside(path, root):
                continue
            out.outside.setdefault(location, []).append(str(exp_id))
            if "runs" in tables:
                (n,) = con.execute("SELECT COUNT(*) FROM runs WHERE experiment_id = ?", (exp_id,)).fetchone()
                out.runs[location] = out.runs.get(location, 0) + n
    finally:
        con.close()
    return out


def rewrite_locations(db: Path, old: Path, new: Path) -> int:
    """Every stored location under ``old`` (a ``file://`` URI or a plain path) now under ``new``,
    in one transaction over every text column. Returns how many values changed."""
    pairs = [(old.as_uri(), new.as_uri()), (str(old), str(new))]
    changed = 0
    con = sqlite3.connect(str(db), timeout=60)
    try:
        with con:
            tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            for table in tables:
                for col in con.execute(f'PRAGMA table_info("{table}")').fetchall():
                    name, kind = col[1], (col[2] or "").upper()
                    if kind and not any(t in kind for t in ("CHAR", "TEXT", "CLOB")):
                        continue
                    for src, dst in pairs:
                        cur = con.execute(
                            f'UPDATE "{table}" SET "{name}" = ? || substr("{name}", ?) '
                            f'WHERE "{name}" = ? OR substr("{name}", 1, ?) = ?',
                            (dst, len(src) + 1, src, len(src) + 1, src + "/"),
                        )
                        changed += cur.rowcount
    finally:
        con.close()
    return changed


def check_place(cfg: Config) -> str | None:
    """Refuse a store that would write outside the project; heal a moved or copied project's.
    Returns a note when the store was rewritten."""
    where = place(cfg)
    if where is None or not where.outside:
        return None
    old = where.moved_from(cfg)
    runs = sum(where.runs.values())
    if old is not None and (where.artifact_root.is_dir() or runs == 0):
        # every location under the old project folder now under this one (the Default
        # experiment's too), so nothing the store holds leads back to the old folder
        n = rewrite_locations(cfg.sqlite_path(), old, cfg.root)
        note = (
            f"this project was moved or copied from {old}: its tracking store now keeps artifacts in "
            f"{where.artifact_root} ({n} stored locations rewritten), never in the old folder"
        )
        logger.warning(note)
        return note
    first = next(iter(where.outside))
    fix = (
        f"copy {old / cfg.tracking.artifacts} to {where.artifact_root} (it holds the models), then run "
        "`s2s registry relocate`"
        if old is not None
        else f"move those artifacts into {where.artifact_root}, then run `s2s registry relocate`"
    )
    raise TrackingError(
        f"the tracking store at {cfg.sqlite_path()} keeps the artifacts of experiment(s) "
        f"{', '.join(where.outside[first])} at {first}, outside this project's artifact folder "
        f"{where.artifact_root}; writing there would change another folder, so nothing was written. {fix}",
        transient=False,
    )


def relocate(cfg: Config) -> list[tuple[str, str, int]]:
    """``s2s registry relocate``: every outside experiment location now under this project's
    artifact folder. Returns (old, new, values changed) per location."""
    where = place(cfg)
    done = []
    for location in where.outside if where else {}:
        old = _path_of(location)
        if old is None:
            continue
        n = rewrite_locations(cfg.sqlite_path(), old, where.artifact_root)
        done.append((location, where.artifact_root.as_uri(), n))
    _checked.discard(cfg.tracking_uri())
    return done


# -- the one entry point -----------------------------------------------------------------------


def ensure(cfg: Config, make_client) -> None:
    """Check the configured store once per process (health, identity, place) before first use;
    ``make_client()`` gives an MlflowClient on it."""
    uri = cfg.tracking_uri()
    if uri in _checked:
        return
    db = cfg.sqlite_path()
    if db is not None:
        why = sqlite_health(db)
        if why:
            raise corrupt(cfg, why)
    known = recorded(cfg)
    if known and _empty_sqlite(db):  # before MLflow opens it, which would create an empty registry
        raise not_ours(cfg, "it is empty (emptied, deleted or replaced)", known)
    check_identity(cfg, make_client())
    if db is not None:
        check_place(cfg)
    _checked.add(uri)
