"""``s2s history``, ``registry``, ``compare``: what the registry holds and how it got there."""

from __future__ import annotations

import argparse

from flows.cli_common import _prepare_env
from tasks.core.entry import add_config_flags


def cmd_compare(args: argparse.Namespace) -> int:
    """Registered versions side by side: aliases, metrics, data versions, decisions."""
    _prepare_env()
    from tasks.core.config import load_config
    from tasks.promote import compare

    cfg = load_config(args.pipeline, args.overrides)
    if getattr(args, "with_", None) == "champion":
        return _compare_with_champion(cfg)
    rows = compare(cfg, args.limit)
    if not rows:
        print(f"{cfg.register.model_name} has no registered versions yet")
        return 0
    fixed = {"version", "aliases", "data_version", "decision", "created"}
    metrics = sorted({k for r in rows for k in r} - fixed, key=lambda m: (m == "gen_len", m))
    header = ["version", "aliases", *metrics, "data_version", "decision"]
    table = [[str(r.get(h, "")) if not isinstance(r.get(h), float) else f"{r[h]:.4f}" for h in header] for r in rows]
    for r in table:
        r[header.index("data_version")] = r[header.index("data_version")][:12]
    widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(header)]
    from tasks.core.secrets import redact

    print(f"{cfg.register.model_name} ({redact(cfg.tracking_uri())})")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    return 0


def _compare_with_champion(cfg) -> int:
    """The newest evaluated candidate of this pipeline against the champion it was scored with."""
    from dataclasses import asdict

    from tasks.core.results import PromoteResult, RegisterResult
    from tasks.promotion import report

    reports = cfg.path("reports")
    try:
        evaluation, rows = report.load(reports)
    except FileNotFoundError:
        print(f"no evaluated candidate in {reports} yet: run the pipeline (s2s run) first")
        return 1
    decision = version = None
    if (reports / PromoteResult.FILE).is_file():  # an unreadable one is an error, not "no decision"
        promoted = PromoteResult.load(reports)
        decision, version = asdict(promoted), promoted.version
    elif (reports / RegisterResult.FILE).is_file():
        version = RegisterResult.load(reports).version
    print(f"{cfg.register.model_name}: the newest candidate ({reports})")
    print(report.text(report.compare(evaluation, rows), decision, version))
    if (reports / PromoteResult.ALSO[0]).is_file():
        print(f"report: {reports / PromoteResult.ALSO[0]}")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    """The champion history: every alias move, what was champion at a time and why, --verify."""
    _prepare_env()
    from datetime import UTC, datetime

    from tasks.core.config import load_config
    from tasks.core.errors import ConfigError
    from tasks.tracking import history

    cfg = load_config(args.pipeline, args.overrides)
    name = cfg.register.model_name
    if args.export_head:
        print(history.export_to(cfg, name, args.export_head))
        return 0
    chain = history.entries(cfg, name)
    if args.verify or args.against:
        anchor = history.read_anchor(cfg, args.against) if args.against else None
        problems, notes = history.verify(cfg, name, anchor)
        for note in notes:
            print(f"{name}: note: {note}")
        if problems:
            print(f"{name}: the champion history does NOT verify ({len(problems)} problem(s)):")
            for p in problems:
                print(f"  - {p}")
            return 1
        against = f", and holds the anchor's entry {anchor['seq']}" if anchor else ""
        print(
            f"{name}: the champion history verifies: {len(chain)} entries, every hash and link intact, "
            f"the {cfg.promote.alias!r} alias where the last move left it{against}"
        )
        return 0
    if args.at:
        try:
            when = datetime.fromisoformat(args.at.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f"--at {args.at!r}: give an ISO time, e.g. 2026-03-03 or 2026-03-03T14:00:00Z") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        entry, version = history.champion_at(chain, when)
        if entry is None:
            print(f"{name} had no champion at {when.isoformat()}")
            return 0
        print(f"{name} at {when.isoformat()}: champion v{version}")
        print(f"  since {entry['time']} ({entry['op']} by {entry['who']}, entry {entry['seq']})")
        print(f"  data version {entry.get('data_version') or '-'}, git commit {entry.get('git_commit') or '-'}")
        for reason in entry.get("reasons") or []:
            print(f"  - {reason}")
        return 0
    if not chain:
        print(f"{name} has no champion history yet")
        return 0
    print(f"{name}: {len(chain)} alias changes, oldest first")
    for e in chain:
        if "unreadable" in e:
            print(f"  {e['_key']}: unreadable ({e['unreadable']})")
            continue
        print(f"  {e['seq']:>4}  {e['time'][:19]}  {e['op']:<8} {history.describe(e)}  by {e['who']}")
    return 0


def cmd_registry(args: argparse.Namespace) -> int:
    """``s2s registry show|adopt|relocate``: which store this project uses, and repairs on purpose."""
    _prepare_env()
    from tasks.core.config import load_config
    from tasks.core.secrets import redact
    from tasks.tracking import client as tracking
    from tasks.tracking import store

    cfg = load_config(args.pipeline, args.overrides)
    where = cfg.sqlite_path() or redact(cfg.tracking_uri())
    if args.action == "adopt":
        new, old = store.adopt(cfg, tracking.client(cfg, checked=False))
        was = f" (it replaces registry {old})" if old and old != new else ""
        print(f"this project's registry is now {new}, the store at {where}{was}")
        return 0
    if args.action == "relocate":
        if cfg.sqlite_path() is None:
            print(f"the store at {where} is a tracking server: it chooses its own artifact locations")
            return 0
        done = store.relocate(cfg)
        for old, new, n in done:
            print(f"{old} -> {new} ({n} stored locations)")
        print("nothing to relocate: every artifact location is inside this project" if not done else "relocated")
        return 0
    known = store.recorded(cfg) or {}
    print(f"store         : {where} (key {store.store_key(cfg)})")
    print(f"recorded id   : {known.get('id', '-')} ({known.get('how', 'not recorded')} {known.get('since', '')})")
    try:
        tracking.client(cfg)
        state = "this project's registry, sound"
    except Exception as exc:  # the check's own error is the answer here
        state = str(exc)
    print(f"store id      : {store.store_id(tracking.client(cfg, checked=False)) or '-'}")
    print(f"artifacts     : {cfg.artifact_root() if cfg.sqlite_path() else 'chosen by the server'}")
    print(f"state         : {state}")
    return 0 if state.startswith("this project's") else 1


def _add_history_commands(sub) -> None:
    """history, registry, compare: what the registry holds and how it got there."""
    hist = sub.add_parser("history", help="the champion history: every alias move, what served when and why")
    hist.add_argument("--at", help="what was champion at this time (ISO, UTC unless given), and why")
    hist.add_argument(
        "--verify", action="store_true", help="check every hash and link and the live alias; exit 1 if tampered"
    )
    hist.add_argument(
        "--against", metavar="ANCHOR", help="with --verify: an exported head (a file, or git:TAG) the chain must hold"
    )
    hist.add_argument(
        "--export-head", metavar="TARGET", help="keep the head outside the store: a FILE, 'git' (a tag) or 'webhook'"
    )
    add_config_flags(hist)
    hist.set_defaults(func=cmd_history)

    reg = sub.add_parser("registry", help="the tracking store this project uses: show, adopt a new one, relocate")
    reg.add_argument("action", choices=["show", "adopt", "relocate"], help="show (default), adopt, relocate")
    add_config_flags(reg)
    reg.set_defaults(func=cmd_registry)

    compare = sub.add_parser("compare", help="registered versions side by side: metrics, data versions, aliases")
    compare.add_argument("--limit", type=int, default=10, help="newest N versions (default: %(default)s)")
    compare.add_argument(
        "--with",
        dest="with_",
        choices=["champion"],
        help="the newest candidate against the champion on the same test rows: metrics with paired "
        "intervals, where it wins and loses most, the gate decision (the promotion report, as text)",
    )
    add_config_flags(compare)
    compare.set_defaults(func=cmd_compare)
