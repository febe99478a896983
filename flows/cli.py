"""``s2s``: the command line. Heavy libraries are imported inside the commands, so ``s2s --help``
starts in a fraction of a second."""

from __future__ import annotations

import argparse
import os
import sys

from tasks.cli_support import add_config_flags, report_error, setup_logging
from tasks.errors import PipelineError


def _prepare_env() -> None:
    from tasks.tracking import quiet_telemetry

    quiet_telemetry()
    # Our stage loggers appear in Prefect's run logs (and the UI), not only on the console.
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "tasks")


# Exit status of `s2s run` when the model trained fine but did not pass the promotion gates,
# so a CI job or a scheduler can tell "rejected candidate" apart from "pipeline broken" (1, 2).
EXIT_NOT_PROMOTED = 3


def cmd_run(args: argparse.Namespace) -> int:
    """Run a pipeline now through the Prefect flow and print the run summary."""
    import time

    started = time.perf_counter()
    _prepare_env()
    from tasks.config import load_config

    load_config(args.pipeline, args.overrides)  # fail on a bad setting before Prefect starts
    from flows.pipeline import training_pipeline
    from tasks.cli_support import quiet_prefect_user_errors

    quiet_prefect_user_errors()
    summary = training_pipeline(pipeline=args.pipeline, overrides=args.overrides)
    summary.wall_seconds = time.perf_counter() - started
    print(summary.format())
    return 0 if summary.promoted else EXIT_NOT_PROMOTED


def cmd_predict(args: argparse.Namespace) -> int:
    """Generate with a registered model version (``champion`` by default)."""
    _prepare_env()
    import mlflow

    from tasks.config import load_config
    from tasks.errors import TrackingError

    cfg = load_config(args.pipeline, args.overrides)
    name = args.model or cfg.register.model_name
    ref = f"models:/{name}/{args.version}" if args.version else f"models:/{name}@{args.alias}"
    mlflow.set_tracking_uri(cfg.tracking_uri())  # an entry point: the global URI is ours to set
    mlflow.set_registry_uri(cfg.tracking_uri())
    try:
        model = mlflow.pyfunc.load_model(ref)
    except mlflow.exceptions.MlflowException as exc:
        raise TrackingError(f"cannot load {ref} from {cfg.tracking_uri()}: {str(exc).splitlines()[0]}") from None
    texts = args.text or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    for out in model.predict(texts):
        print(out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="s2s",
        description="Fine-tune, evaluate, register and promote seq2seq models "
        "(Prefect + DVC + Great Expectations + transformers + MLflow).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a pipeline now (default: the 'default' pipeline)")
    add_config_flags(run)
    run.set_defaults(func=cmd_run)

    predict = sub.add_parser("predict", help="generate with a registered model (the champion by default)")
    predict.add_argument("text", nargs="*", help="input texts (read from stdin, one per line, if none)")
    predict.add_argument("--model", help="registered model name (default: the pipeline's model_name)")
    predict.add_argument("--alias", default="champion", help="model alias to load (default: %(default)s)")
    predict.add_argument("--version", help="a model version number instead of an alias")
    add_config_flags(predict)
    predict.set_defaults(func=cmd_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    try:
        return args.func(args)
    except PipelineError as exc:
        return report_error(exc)


if __name__ == "__main__":
    raise SystemExit(main())
