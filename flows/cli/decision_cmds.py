"""``s2s promote``, ``register``, ``evaluate``, ``rollback``, ``approve``, ``data``: decide what serves."""

from __future__ import annotations

import argparse
import os

from flows.cli_common import EXIT_NOT_PROMOTED, _prepare_env, _require_prefect_server
from tasks.core.entry import add_config_flags


def _decision(label: str, result) -> int:
    """Print a gate decision with its reasons; the exit status says whether the alias moved."""
    print(f"{label}: {'PROMOTED' if result.promoted else 'NOT PROMOTED (no alias changed)'}")
    for reason in result.reasons:
        print(f"  - {reason}")
    return 0 if result.promoted else EXIT_NOT_PROMOTED


def cmd_promote(args: argparse.Namespace) -> int:
    """Promote a registered version by hand: through the gates unless --force (then recorded)."""
    _prepare_env()
    from tasks.core.config import load_config
    from tasks.promote import promote_version

    cfg = load_config(args.pipeline, args.overrides)
    result = promote_version(cfg, args.version, force=args.force, reason=args.reason)
    return _decision(f"{result.model_name} v{result.version}", result)


def cmd_register(args: argparse.Namespace) -> int:
    """Finish a run whose registration failed (tracking server down): register the model it
    trained and evaluated (kept on disk), then promote it through the gates. Never twice."""
    _prepare_env()
    from tasks.core import locks
    from tasks.core.config import load_config
    from tasks.core.errors import ConfigError, DataError
    from tasks.core.results import EvaluateResult, IngestResult, TrainResult
    from tasks.promote import promote
    from tasks.register import register
    from tasks.tracking import client as tracking
    from tasks.tracking.run import owned

    cfg = load_config(args.pipeline, args.overrides)
    reports = cfg.path("reports")
    with locks.project_lock(cfg.root, wait=args.wait):
        try:
            trained, evaluated = TrainResult.load(reports), EvaluateResult.load(reports)
            ingested = IngestResult.load(cfg.path("data"))
        except DataError as exc:
            raise ConfigError(
                f"nothing to register for pipeline {cfg.pipeline!r}: {exc} (run the pipeline first)"
            ) from None
        tracking.preflight(cfg)
        with owned(cfg) as owner:
            run = owner.attach(trained.run_id, trained.data_version)
            registered = register(cfg, trained, evaluated, ingested, run)
            result = promote(cfg, registered, evaluated, run)
    return _decision(f"{registered.model_name} v{registered.version} (run {registered.run_id})", result)


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Score an existing model (a folder, a hub id, a registered version) on today's held-out split."""
    _prepare_env()
    from tasks.core import locks
    from tasks.core.config import load_config
    from tasks.core.errors import DataError
    from tasks.core.results import IngestResult
    from tasks.data.sources import dvc_hash
    from tasks.evaluate import evaluate_model
    from tasks.ingest import ingest
    from tasks.tracking import client as tracking

    cfg = load_config(args.pipeline, args.overrides)
    with locks.project_lock(cfg.root, wait=args.wait):
        try:
            ingested = IngestResult.load(cfg.path("data"))
            src = cfg.source_path()
            if src.exists() and dvc_hash(src) != ingested.data_version:
                ingested = None  # the data changed since the last ingest: split today's
        except DataError:
            ingested = None
        if ingested is None:
            ingested = ingest(cfg)
        tracking.preflight(cfg)
        out = evaluate_model(cfg, args.model, ingested)
    print(
        f"{args.model} on the {out['split']} split ({out['n_examples']} examples, data version "
        f"{ingested.data_version[:12]}):"
    )
    from flows.summary import shown

    print("  " + "  ".join(shown(k, v) for k, v in out["metrics"].items()))
    print(f"  predictions and scores: {out['report']}/")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    """Move the champion alias back to the previous champion."""
    _prepare_env()
    from tasks.core.config import load_config
    from tasks.promote import rollback

    cfg = load_config(args.pipeline, args.overrides)
    old, new = rollback(cfg)
    print(
        f"{cfg.register.model_name}: champion v{old} -> v{new}"
        + (f" (v{old} is now previous_champion)" if old != "none" else "")
    )
    return 0


def _approval_configs(args: argparse.Namespace) -> dict:
    """The pipelines ``s2s approve`` looks in: the one named (--pipeline or S2S_PIPELINE), else
    every pipeline of pipelines.yaml."""
    from tasks.core.config import find_root, load_config, load_pipelines

    named = args.pipeline or os.environ.get("S2S_PIPELINE")
    if named:
        return {named: load_config(named, args.overrides)}
    root = find_root()
    return {name: load_config(name, args.overrides, root=root) for name in load_pipelines(root)}


def cmd_approve(args: argparse.Namespace) -> int:
    """Answer for the version awaiting approval (gates.approval: required): approve or --reject.
    It finds the waiting version itself; a version that is not waiting is an error, never a
    promotion; with several waiting it names them and answers none."""
    _prepare_env()
    from tasks.promote import approve, choose, resume_waiting_flow, waiting

    configs = _approval_configs(args)
    found = waiting(configs)
    if args.list:
        _print_waiting(found, configs)
        return 0
    target = choose(found, args.version, configs)
    reason = args.reason or ""
    result = approve(target.cfg, target.version, not args.reject, reason, expect_waiting=True)
    label = f"pipeline {target.pipeline!r}: {result.model_name} v{result.version}"
    if args.reject:
        print(f"{label}: REJECTED as asked (champion stays {_version_or_none(result.champion)})")
        for r in result.reasons:
            print(f"  - {r}")
        code = 0
    else:
        code = _decision(label, result)
    resumed = resume_waiting_flow(target.cfg, target.version, not args.reject, reason, "")
    if resumed:
        print(f"the waiting flow run {resumed} was resumed with this answer")
    return code


def _version_or_none(version: str | None) -> str:
    return f"v{version}" if version else "none"


def _print_waiting(found: list, configs: dict) -> None:
    """``s2s approve --list``: what waits, since when, on which flow run, and the gate figures."""
    from flows.summary import shown
    from tasks.promote import AWAITING, flow_run_state

    if not found:
        print(f"nothing awaits approval (pipelines: {', '.join(configs)})")
        return
    print(f"{len(found)} version(s) await approval:")
    for w in found:
        champion = _version_or_none(w.champion)
        print(f"{w.pipeline}: {w.model_name} v{w.version}  waiting since {w.since}  champion {champion}")
        if w.metrics:
            print("  metrics  : " + "  ".join(shown(k, v) for k, v in sorted(w.metrics.items())))
        for r in w.reasons:
            print(f"  {'waits' if r.startswith(AWAITING) else 'gate':<9}: {r}")
        print(f"  flow run : {flow_run_state(w)}")
        print(f"  approve  : {w.command()}")
        print(f"  reject   : {w.command(reject=True)}")


def cmd_data_add(args: argparse.Namespace) -> int:
    """Version new data with DVC and announce it: the pipelines reading it retrain (s2s deploy)."""
    _prepare_env()
    _require_prefect_server("data add")
    from flows.arrival import add
    from tasks.core.config import validate_all

    configs = validate_all()
    if args.pipeline:
        configs = {args.pipeline: configs[args.pipeline]} if args.pipeline in configs else {}
        if not configs:
            from tasks.core.errors import ConfigError

            raise ConfigError(f"unknown pipeline {args.pipeline!r}")
    for pipeline, version in add(configs, args.path, args.version):
        print(f"{pipeline}: data version {version} announced (event s2s.data.added): its retrain deployment starts")
    return 0


def _add_decision_commands(sub) -> None:
    """promote, register, evaluate, rollback, approve, data: decide what serves."""
    promote = sub.add_parser("promote", help="promote a registered version by hand (through the gates unless --force)")
    promote.add_argument("version", help="the model version to promote")
    promote.add_argument("--force", action="store_true", help="skip the gates (recorded on the version)")
    promote.add_argument("--reason", help="why (recorded with --force)")
    add_config_flags(promote)
    promote.set_defaults(func=cmd_promote)

    register = sub.add_parser(
        "register",
        help="register (then promote) the last trained model, e.g. after the tracking server was down at registration",
    )
    register.add_argument("--wait", action="store_true", help="wait for another run on this project folder to finish")
    add_config_flags(register)
    register.set_defaults(func=cmd_register)

    evaluate = sub.add_parser("evaluate", help="score an existing model on today's held-out split")
    evaluate.add_argument(
        "--model",
        required=True,
        help="a model folder, a hub id, or a registered version: models:/NAME/VERSION, models:/NAME@ALIAS",
    )
    evaluate.add_argument("--wait", action="store_true", help="wait for another run on this project folder to finish")
    add_config_flags(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)

    rollback = sub.add_parser("rollback", help="move the champion alias back to the previous champion")
    add_config_flags(rollback)
    rollback.set_defaults(func=cmd_rollback)

    appr = sub.add_parser(
        "approve",
        help="approve (or --reject) the version awaiting approval; --list shows what waits",
        description="Finds the version awaiting approval (alias pending_approval) in every pipeline of "
        "pipelines.yaml. With several waiting it answers none and lists them: name one with --pipeline. "
        "A VERSION that is not waiting is an error (exit 2); nothing changes.",
    )
    appr.add_argument("version", nargs="?", help="the waiting version (checked; default: the one waiting)")
    appr.add_argument("--reject", action="store_true", help="reject it instead")
    appr.add_argument("--reason", help="why (recorded on the version and in the champion history)")
    appr.add_argument("--list", action="store_true", help="show what waits, since when, and the gate figures")
    # no default pipeline: it looks in every pipeline unless one is named (--pipeline or S2S_PIPELINE)
    appr.add_argument("--pipeline", "-p", help="only this pipeline of pipelines.yaml (default: all of them)")
    appr.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE", help="as for `s2s run`"
    )
    appr.set_defaults(func=cmd_approve)

    data = sub.add_parser("data", help="data arrival: version new data and start the retrains that read it")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    data_add = data_sub.add_parser("add", help="dvc add + git commit (+ dvc push) PATH, then the data-arrival event")
    data_add.add_argument("path", nargs="?", help="the data file or folder (a pipeline's ingest.source)")
    data_add.add_argument("--version", help="announce a data version already pushed from elsewhere (no PATH)")
    data_add.add_argument("--pipeline", help="only this pipeline (default: every pipeline reading PATH)")
    data_add.set_defaults(func=cmd_data_add)
