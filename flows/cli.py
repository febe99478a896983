"""``s2s``: the command line. Heavy libraries are imported inside the commands, so ``s2s --help``
starts in a fraction of a second."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from tasks.core.entry import add_config_flags, report_error, setup_logging
from tasks.core.errors import PipelineError, storage_failure


def _prepare_env() -> None:
    from tasks.core.context import quiet_telemetry

    quiet_telemetry()
    # Our stage loggers appear in Prefect's run logs (and the UI), not only on the console.
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "tasks")


# Exit status of `s2s run` when the model trained fine but did not pass the promotion gates,
# so a CI job or a scheduler can tell "rejected candidate" apart from "pipeline broken" (1, 2).
EXIT_NOT_PROMOTED = 3


def cmd_run(args: argparse.Namespace) -> int:
    """Run a pipeline now through the Prefect flow and print the run summary."""
    import time

    from flows.local_server import TemporaryServer, api_settings
    from tasks.core import locks

    started = time.perf_counter()
    # no API configured in the environment: start the temporary server now (checked fully below);
    # S2S_PREFECT_SERVER=prefect leaves it to Prefect (its public route, ~3 s slower per run)
    ours = not os.environ.get("PREFECT_API_URL") and os.environ.get("S2S_PREFECT_SERVER") != "prefect"
    server = TemporaryServer() if ours else None
    root = None
    try:
        _prepare_env()
        from tasks.core.config import load_config

        cfg = load_config(args.pipeline, args.overrides)  # fail on a bad setting before any run starts
        locks.acquire(cfg.root, wait=args.wait)  # one writer per project folder: fail (or wait) now
        root = cfg.root
        from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

        if server is not None and (PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value()):
            server.stop()  # a profile or prefect.toml names a server: use that one
            server = None
        from flows.pipeline import training_pipeline  # imports the stages while the server boots
        from tasks.core import logs

        if server is not None:
            server.wait()
        logs.adopt_libraries()  # Prefect, transformers... installed handlers of their own on import
        with api_settings(server):
            summary = training_pipeline(pipeline=args.pipeline, overrides=args.overrides, force=args.force)
    finally:
        if server is not None:
            server.stop()
        if root is not None:
            locks.release(root)
    summary.wall_seconds = time.perf_counter() - started
    print(summary.format())
    import signal

    from tasks.core import signals

    late = signals.stop_requested()  # one whose exception was lost after the last task's end
    if late:
        name = signal.Signals(late).name
        print(f"s2s run: {name} arrived as the run finished; it completed as shown", file=sys.stderr)
        return 128 + late
    if not summary.holds:
        return 1
    return 0 if summary.promoted else EXIT_NOT_PROMOTED


def _require_prefect_server(command: str) -> None:
    """Deployments and workers live on a long-running Prefect server, not on a temporary one."""
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        from tasks.core.errors import ConfigError

        raise ConfigError(
            f"`s2s {command}` needs a running Prefect server: start one with "
            "`prefect server start --host 127.0.0.1` and export "
            "PREFECT_API_URL=http://127.0.0.1:4200/api (or set it in your Prefect profile)"
        )


def cmd_deploy(args: argparse.Namespace) -> int:
    """Prefect deployments (with the cron schedules of pipelines.yaml) on the configured server."""
    _prepare_env()
    _require_prefect_server("deploy")
    from flows.deploy import deploy

    rows = [("deployment", "work pool", "runs"), *deploy(pipelines=args.pipelines or None, work_pool=args.work_pool)]
    import prefect.settings

    print(f"deployed to {prefect.settings.PREFECT_API_URL.value()}:")
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for i, row in enumerate(rows):
        print("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if i == 0:
            print("  " + "  ".join("-" * w for w in widths))
    print("start a worker for each work pool: s2s worker --pool POOL")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """A Prefect process worker for a work pool (runs the deployments' flow runs here)."""
    _prepare_env()
    _require_prefect_server("worker")
    from pathlib import Path

    prefect = str(Path(sys.executable).with_name("prefect"))
    command = [prefect, "worker", "start", "--pool", args.pool, "--type", "process"]
    if args.limit:
        command += ["--limit", str(args.limit)]
    if args.run_once:
        command.append("--run-once")
    os.execv(prefect, command)
    return 0  # not reached


def cmd_train(args: argparse.Namespace) -> int:
    """AutoTrain-style training: flags or an AutoTrain YAML config, then the whole pipeline.
    Outside a project it starts one, as AutoTrain does: ``./<project-name>`` (``s2s init``)."""
    import re
    from pathlib import Path

    from flows.autotrain import cli_flags, config_overrides, to_overrides
    from tasks.core.config import find_root
    from tasks.core.errors import ConfigError

    flags = {k: v for k, v in vars(args).items() if k in cli_flags() and v not in (None, False)}
    overrides = (config_overrides(Path(args.config)) if args.config else []) + to_overrides(flags)
    # a data path is relative to where the command runs, wherever the project is
    for i, item in enumerate(overrides):
        key, _, value = item.partition("=")
        local = Path(value.strip("'\"")).expanduser()
        if key == "ingest.source" and not local.is_absolute() and local.exists():
            overrides[i] = f"ingest.source={local.resolve()}"
    try:
        find_root()
    except ConfigError:
        from tasks.core import logs, project

        named = next((o.split("=", 1)[1] for o in overrides if o.startswith("register.model_name=")), "s2s-project")
        folder = Path.cwd() / (re.sub(r"[^A-Za-z0-9_.-]+", "-", named.strip("'\"")).strip("-.") or "s2s-project")
        if not (folder / "params.yaml").is_file():
            project.init(folder)
            print(f"no project here: started one in {folder} (s2s init)", file=sys.stderr)
        os.environ["S2S_ROOT"] = str(folder)
        logs.configure(logs.log_file_for(folder, "train"))
    args.overrides = overrides + args.overrides  # explicit --set wins
    args.force = False
    return cmd_run(args)


def cmd_init(args: argparse.Namespace) -> int:
    """A ready project anywhere: project files, git, DVC, the sample data."""
    from tasks.core.project import init

    folder = init(args.folder)
    if not args.no_sample:
        from tasks.data.sample import generate, write_csv

        (folder / "data" / "sample").mkdir(parents=True)
        write_csv(generate(), folder / "data" / "sample" / "reports.csv")
    print(
        f"created {folder}: params.yaml, pipelines.yaml, dvc.yaml, git and DVC"
        + (", the sample data (data/sample/reports.csv)" if not args.no_sample else "")
    )
    print(f"next: cd {folder} && s2s run     (or: s2s train --data-path my.csv --text-column ... )")
    return 0


def load_registered(cfg, ref: str):
    """``mlflow.pyfunc.load_model(ref)`` from the pipeline's store; a readable error if it fails."""
    import mlflow

    from tasks.core.errors import TrackingError
    from tasks.core.secrets import redact
    from tasks.tracking import client as tracking

    tracking.client(cfg)  # the store is sound and this project's before anything is loaded from it
    mlflow.set_tracking_uri(cfg.tracking_uri())  # an entry point: the global URI is ours to set
    mlflow.set_registry_uri(cfg.tracking_uri())
    try:
        return mlflow.pyfunc.load_model(ref)
    except mlflow.exceptions.MlflowException as exc:
        first = str(exc).splitlines()[0]
        raise TrackingError(f"cannot load {ref} from {redact(cfg.tracking_uri())}: {first}") from None


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve a registered version over HTTP (MLflow's scoring format) until SIGTERM / Ctrl-C."""
    _prepare_env()
    import threading

    from tasks.core import signals
    from tasks.core.config import load_config
    from tasks.core.errors import ConfigError
    from tasks.serving import http_server as hs
    from tasks.tracking import reads

    if args.backend:
        os.environ["S2S_BACKEND"] = args.backend  # read by the registered model as it loads
    cfg = load_config(args.pipeline, args.overrides)
    name = args.model or cfg.register.model_name
    alias = None if args.version else (args.alias or cfg.promote.alias)
    if args.follow_alias and alias is None:
        raise ConfigError("--follow-alias follows an alias: drop --version")

    def alias_version() -> str:
        found = reads.alias_version(cfg, name, alias)
        if found is None:
            raise ConfigError(f"{name} has no alias {alias!r}; see `s2s compare`")
        return str(found.version)

    def load(version: str) -> hs.Served:
        model = load_registered(cfg, f"models:/{name}/{version}")
        return hs.Served(model, name, version, hs.backend_of(model))

    flags = {k: getattr(args, k) for k in LIMIT_FLAGS if getattr(args, k) is not None}
    try:
        limits = hs.Limits.of(type(cfg.serve).model_validate({**cfg.serve.model_dump(), **flags}))
    except ValueError as exc:  # pydantic's ValidationError: a flag out of its range
        first = exc.errors()[0] if hasattr(exc, "errors") else {}
        key = ".".join(str(x) for x in first.get("loc", ()))
        flag = next((f for f, d in FLAG_DEST.items() if d == key), f"serve.{key}")
        raise ConfigError(f"{flag}: {first.get('msg', exc)}") from None
    holder = hs.Holder(load(args.version or alias_version()))
    batcher = hs.Batcher(holder.current, max_batch=args.max_batch, limits=limits)
    stopping = threading.Event()
    server = hs.make_server(holder, batcher, args.host, args.port, alias, stopping, limits)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {args.host}: reachable from the network, without authentication", file=sys.stderr)
    if args.follow_alias:
        threading.Thread(
            target=hs.follow, args=(holder, alias_version, load, args.poll_seconds, stopping), daemon=True
        ).start()
    served = holder.current()
    host, port = server.server_address[:2]
    print(f"serving {name} v{served.version} ({served.backend}) at http://{host}:{port}/invocations", flush=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.5)
    except (KeyboardInterrupt, signals.Interrupted) as exc:
        print(
            f"s2s serve: {exc or 'interrupted'}; finishing the requests in flight (up to {limits.drain_s:g} s)",
            file=sys.stderr,
            flush=True,
        )
    finally:
        stopping.set()  # idle keep-alive connections close now
        batcher.drain(limits.drain_s)  # what is left after drain_s is answered with a 503
        server.shutdown()  # no new connections
        server.server_close()  # waits for the requests in flight
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """Generate with a registered model version (``champion`` by default)."""
    _prepare_env()

    from tasks.core.config import load_config
    from tasks.serving.predict import predict_lines, read_lines

    cfg = load_config(args.pipeline, args.overrides)
    if args.input or args.output:  # batch mode: a file in, a file out (tasks/serving/batch.py)
        from tasks.core.errors import ConfigError
        from tasks.serving import batch

        if not (args.input and args.output) or args.text:
            raise ConfigError("batch mode needs --input FILE and --output FILE, and no texts as arguments")
        batch.preflight(args.input, args.output, args.column, args.output_column, args.chunk_rows)
    texts = [] if args.input else args.text or read_lines(sys.stdin.buffer)  # bad input fails before the model loads
    name = args.model or cfg.register.model_name
    model = load_registered(cfg, f"models:/{name}/{args.version}" if args.version else f"models:/{name}@{args.alias}")
    if args.input:
        summary = batch.predict_file(model, args.input, args.output, args.column, args.output_column, args.chunk_rows)
        print(summary.line(), file=sys.stderr)
        return 0
    for out in predict_lines(model, texts):
        print(out)
    return 0


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


def cmd_compare(args: argparse.Namespace) -> int:
    """Registered versions side by side: aliases, metrics, data versions, decisions."""
    _prepare_env()
    from tasks.core.config import load_config
    from tasks.promote import compare

    cfg = load_config(args.pipeline, args.overrides)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="s2s",
        description="Fine-tune, evaluate, register and promote seq2seq models "
        "(Prefect + DVC + Great Expectations + transformers + MLflow).",
    )
    from tasks.core import project

    parser.add_argument("--version", action="version", version=f"%(prog)s {project.version()}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show every log line live (they always go to the log file under .s2s/logs/)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_pipeline_commands(sub)
    _add_decision_commands(sub)
    _add_history_commands(sub)
    _add_model_commands(sub)
    return parser


def _add_pipeline_commands(sub) -> None:
    """run, init, deploy, worker, train: start work."""
    run = sub.add_parser("run", help="run a pipeline now (default: the 'default' pipeline)")
    run.add_argument("--force", action="store_true", help="re-run every stage even if dvc.lock says it is current")
    run.add_argument("--wait", action="store_true", help="wait for another run on this project folder to finish")
    add_config_flags(run)
    run.set_defaults(func=cmd_run)

    init = sub.add_parser("init", help="create a ready project in a new folder (params, pipelines, dvc, git)")
    init.add_argument("folder", help="the new project's folder (new or empty)")
    init.add_argument("--no-sample", action="store_true", help="without the embedded sample data set")
    init.set_defaults(func=cmd_init)

    deploy = sub.add_parser("deploy", help="create Prefect deployments (cron schedules) for the pipelines")
    deploy.add_argument("pipelines", nargs="*", help="pipelines to deploy (default: all of pipelines.yaml)")
    deploy.add_argument("--work-pool", help="override every pipeline's work_pool")
    deploy.set_defaults(func=cmd_deploy)

    worker = sub.add_parser("worker", help="start a Prefect process worker for a work pool")
    worker.add_argument("--pool", default="s2s", help="work pool name (default: %(default)s)")
    worker.add_argument("--limit", type=int, help="at most this many flow runs at once")
    worker.add_argument("--run-once", action="store_true", help="run what is due, then exit")
    worker.set_defaults(func=cmd_worker)

    train = sub.add_parser(
        "train",
        help="train with AutoTrain's flags or YAML config (runs the whole pipeline)",
        description="AutoTrain-compatible entry point: `autotrain seq2seq --train --model M --data-path D ...` "
        "becomes `s2s train --model M --data-path D ...`; `--config autotrain.yml` reads an AutoTrain config.",
    )
    train.add_argument("--config", help="an AutoTrain YAML config (task: seq2seq)")
    train.add_argument("--train", action="store_true", help=argparse.SUPPRESS)
    from flows.autotrain import cli_flags, flag_help

    helps = flag_help()
    for flag, kind in cli_flags().items():
        opt = "--" + flag.replace("_", "-")
        said = helps[flag].replace("%", "%%")  # argparse formats help with %
        if kind is bool:
            train.add_argument(opt, dest=flag, action="store_true", default=None, help=said)
        else:
            train.add_argument(opt, dest=flag, type=kind, default=None, metavar=flag.upper(), help=said)
    train.add_argument("--wait", action="store_true", help="wait for another run on this project folder to finish")
    add_config_flags(train)
    train.set_defaults(func=cmd_train)


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
    add_config_flags(compare)
    compare.set_defaults(func=cmd_compare)


def _add_model_commands(sub) -> None:
    """predict, serve: use a registered model."""
    predict = sub.add_parser("predict", help="generate with a registered model (the champion by default)")
    predict.add_argument("text", nargs="*", help="input texts (read from stdin, one per line, if none)")
    predict.add_argument("--model", help="registered model name (default: the pipeline's model_name)")
    predict.add_argument("--alias", default="champion", help="model alias to load (default: %(default)s)")
    predict.add_argument("--version", help="a model version number instead of an alias")
    predict.add_argument(
        "--input",
        help="batch: a file of inputs in any format ingest reads (.csv/.tsv/.psv, .json/.jsonl, .parquet; "
        ".gz/.bz2/.xz/.zst/.zip)",
    )
    predict.add_argument("--output", help="batch: the file to write (the input's rows and columns + predictions)")
    predict.add_argument("--column", default="text", help="batch: the input column (default: %(default)s)")
    predict.add_argument("--output-column", default="prediction", help="batch: new column (default: %(default)s)")
    predict.add_argument("--chunk-rows", type=int, default=1024, help="batch: rows per chunk (default: %(default)s)")
    add_config_flags(predict)
    predict.set_defaults(func=cmd_predict)

    serve = sub.add_parser("serve", help="serve a registered model over HTTP (MLflow's POST /invocations format)")
    serve.add_argument("--model", help="registered model name (default: the pipeline's model_name)")
    serve.add_argument("--alias", help="alias to serve (default: promote.alias, i.e. champion)")
    serve.add_argument("--version", help="a fixed version number instead of an alias")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, this machine only)")
    serve.add_argument("--port", type=int, default=5001, help="port (default: %(default)s; 0 picks a free one)")
    serve.add_argument(
        "--follow-alias", action="store_true", help="swap in the new version when the alias moves (no request dropped)"
    )
    serve.add_argument("--poll-seconds", type=float, default=5.0, help="alias check interval (default: %(default)s)")
    serve.add_argument("--backend", choices=["auto", "hf", "ct2"], help="generation backend (default: the version's)")
    serve.add_argument("--max-batch", type=int, default=32, help="texts per micro-batch (default: %(default)s)")
    for flag, kind, what in (
        ("--max-inputs", int, "inputs per request (over: 413)"),
        ("--max-input-chars", int, "characters per input (over: 422)"),
        ("--max-body-bytes", int, "request body bytes (over: 413)"),
        ("--max-request-seconds", float, "generation seconds one request may use (over: 413)"),
        ("--read-timeout", float, "seconds a client has to send a whole request (over: 408)"),
        ("--drain-seconds", float, "on SIGTERM, seconds the requests in flight get before a 503"),
    ):
        serve.add_argument(
            flag, type=kind, dest=FLAG_DEST[flag], help=f"{what} (default: serve.{FLAG_DEST[flag]} in params.yaml)"
        )
    add_config_flags(serve)
    serve.set_defaults(func=cmd_serve)


# `s2s serve` flags over the params.yaml `serve` section (tasks/serving/http_server.Limits)
FLAG_DEST = {
    "--max-inputs": "max_inputs",
    "--max-input-chars": "max_input_chars",
    "--max-body-bytes": "max_body_bytes",
    "--max-request-seconds": "max_request_seconds",
    "--read-timeout": "read_timeout_s",
    "--drain-seconds": "drain_s",
}
LIMIT_FLAGS = tuple(FLAG_DEST.values())

TRAINING_COMMANDS = ("run", "train")  # the commands whose stop leaves a checkpoint and a KILLED run


def main(argv: list[str] | None = None) -> int:
    from tasks.core import signals

    args = build_parser().parse_args(argv)
    setup_logging(args.command, verbose=args.verbose)
    signals.install()
    try:
        return args.func(args)
    except PipelineError as exc:
        return report_error(exc)
    except BrokenPipeError:  # `s2s compare | head`: the reader has all it wanted
        os._exit(0)
    except BaseException as exc:
        code = signals.exit_code_for(exc)
        if code is None:
            if (storage := storage_failure(exc)) is not None:  # not a bug: one message, the trace in the log
                logging.getLogger(__name__).info("the failed write", exc_info=exc)  # file only
                return report_error(storage)
            raise
        # stopped on request: everything was released on the way out. Exit now, without the
        # interpreter's shutdown hooks, which could wait on a Prefect server that is gone.
        after = (
            "; the MLflow run is marked KILLED and a re-run continues from the last checkpoint"
            if args.command in TRAINING_COMMANDS
            else ""
        )
        print(f"s2s {args.command}: {exc or 'interrupted'}{after}", file=sys.stderr)
        signals.hard_exit(code - 128)


if __name__ == "__main__":
    raise SystemExit(main())
