"""``s2s run``, ``init``, ``deploy``, ``worker``, ``train``: start work."""

from __future__ import annotations

import argparse
import os
import sys

from flows.cli_common import EXIT_NOT_PROMOTED, _prepare_env, _require_prefect_server
from tasks.core.entry import add_config_flags


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
    """AutoTrain-style training: flags or an AutoTrain YAML config become the project's settings
    (tasks/core/project_settings.py), then the pipeline runs. Outside a project it starts one, as
    AutoTrain does: ``./<project-name>``. An unchanged second ``s2s train`` trains nothing."""
    import re
    from pathlib import Path

    from flows.autotrain import autotrain_terms, cli_flags, config_overrides, to_overrides
    from tasks.core import project_settings

    flags = {k: v for k, v in vars(args).items() if k in cli_flags() and v not in (None, False)}
    settings = (config_overrides(Path(args.config)) if args.config else []) + to_overrides(flags)
    # a data path is relative to where the command runs, wherever the project is
    for i, item in enumerate(settings):
        key, _, value = item.partition("=")
        local = Path(value.strip("'\"")).expanduser()
        if key == "ingest.source" and not local.is_absolute() and local.exists():
            settings[i] = f"ingest.source={local.resolve()}"
    named = next((o.split("=", 1)[1] for o in settings if o.startswith("register.model_name=")), None)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", (named or "").strip("'\"")).strip("-.")
    root, started = _train_root(slug)
    own = started or project_settings.MARK in str(_default_description(root))
    name = slug or (args.pipeline if args.pipeline != "default" else "s2s-project")
    with autotrain_terms(bool(args.config)):  # errors in the AutoTrain names the user typed
        written = project_settings.write(root, name, settings, own=own)
    if started:
        from tasks.core import project

        project.first_commit(root)
    elif written.changed:
        print(f"s2s train: wrote {', '.join(written.changed)} in {root} (commit them to keep this)", file=sys.stderr)
    args.pipeline = written.pipeline
    args.force = False
    _say_defaults(args.pipeline, settings + args.overrides)
    done = None if started else _trained_before(args.pipeline, args.overrides)
    if done:
        print(f"s2s train: nothing to train: {done}")
        code = 0
    else:
        with autotrain_terms(bool(args.config)):
            code = cmd_run(args)
    print(f"run it again: cd {root} && " + "   or: ".join(written.commands), file=sys.stderr)
    return code


def _train_root(slug: str):
    """(the project ``s2s train`` works in, whether it started it): the one around the current
    folder, else ``./<project-name>``, started there when it is not a project yet (as AutoTrain)."""
    from pathlib import Path

    from tasks.core import logs, project
    from tasks.core.config import find_root
    from tasks.core.errors import ConfigError

    try:
        return find_root(), False
    except ConfigError:
        pass
    root, started = Path.cwd() / (slug or "s2s-project"), False
    if not (root / "params.yaml").is_file():
        project.init(root)
        started = True
        print(f"no project here: started one in {root} (s2s init)", file=sys.stderr)
    os.environ["S2S_ROOT"] = str(root)
    logs.configure(logs.log_file_for(root, "train"))
    return root, started


def _default_description(root) -> str:
    from tasks.core.config import DEFAULT_PIPELINE, load_pipelines
    from tasks.core.errors import ConfigError

    try:
        return str(load_pipelines(root).get(DEFAULT_PIPELINE, {}).get("description", ""))
    except ConfigError:  # a broken pipelines.yaml: the run reports it by name
        return ""


def _trained_before(pipeline: str, overrides: list[str]) -> str | None:
    """``v1, promoted, champion now ...`` when a version was registered on this data and these
    settings already; None when not (or when that cannot be known before ingest)."""
    from tasks.core.config import load_config
    from tasks.core.errors import PipelineError
    from tasks.tracking import retrain as retraining

    try:
        cfg = load_config(pipeline, overrides)
        store = cfg.sqlite_path()
        if store is not None and not store.exists():
            return None  # no registry yet
        version = retraining.current_data_version(cfg)
        if version is None:
            return None
        tried = retraining.tried_before(cfg, version, cfg.params_hash())
    except PipelineError:
        return None  # the run says what is wrong
    if tried is None:
        return None
    return (
        f"this data (version {version}) and these settings (params hash {cfg.params_hash()}) were trained "
        f"already: {cfg.register.model_name} {tried}. Change either, or `s2s run"
        f"{'' if pipeline == 'default' else ' --pipeline ' + pipeline} --force` to train again"
    )


def _say_defaults(pipeline: str, overrides: list[str]) -> None:
    """The model and the input prefix a training uses, said when nobody chose them."""
    from tasks.core.config import load_config
    from tasks.core.errors import PipelineError

    chosen = {o.split("=", 1)[0] for o in overrides}
    try:
        cfg = load_config(pipeline, overrides)
    except PipelineError:
        return  # the run says what is wrong with the settings
    if "train.model" not in chosen:
        print(
            f"model: {cfg.train.model} (the default: a small model initialised here, no pretrained weights; "
            "--model NAME or a folder for a pretrained one)",
            file=sys.stderr,
        )
    if "ingest.source_prefix" not in chosen and cfg.ingest.source_prefix:
        print(
            f"prefix: {cfg.ingest.source_prefix!r} is put before every input (params.yaml ingest.source_prefix; "
            "--set ingest.source_prefix= for none)",
            file=sys.stderr,
        )


def cmd_init(args: argparse.Namespace) -> int:
    """A ready project anywhere: project files, git, DVC, the sample data."""
    from tasks.core.project import first_commit, init

    folder = init(args.folder)
    if not args.no_sample:
        from tasks.data.sample import generate, write_csv

        (folder / "data" / "sample").mkdir(parents=True)
        write_csv(generate(), folder / "data" / "sample" / "reports.csv")
    first_commit(folder)
    print(
        f"created {folder}: params.yaml, pipelines.yaml, dvc.yaml, git and DVC"
        + (", the sample data (data/sample/reports.csv)" if not args.no_sample else "")
    )
    print(f"next: cd {folder} && s2s run     (or: s2s train --data-path my.csv --text-column ... )")
    return 0


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
