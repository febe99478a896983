"""``s2s predict``, ``serve``: use a registered model."""

from __future__ import annotations

import argparse
import os
import sys

from flows.cli_common import _prepare_env
from tasks.core.entry import add_config_flags


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

    limits = _serve_limits(cfg, args)
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
    _serve_until_stopped(server, batcher, stopping, limits)
    return 0


def _serve_limits(cfg, args: argparse.Namespace):
    """The request limits: params.yaml's ``serve`` section under the flags given (FLAG_DEST)."""
    from tasks.core.errors import ConfigError
    from tasks.serving import http_server as hs

    flags = {k: getattr(args, k) for k in LIMIT_FLAGS if getattr(args, k) is not None}
    try:
        return hs.Limits.of(type(cfg.serve).model_validate({**cfg.serve.model_dump(), **flags}))
    except ValueError as exc:  # pydantic's ValidationError: a flag out of its range
        first = exc.errors()[0] if hasattr(exc, "errors") else {}
        key = ".".join(str(x) for x in first.get("loc", ()))
        flag = next((f for f, d in FLAG_DEST.items() if d == key), f"serve.{key}")
        raise ConfigError(f"{flag}: {first.get('msg', exc)}") from None


def _serve_until_stopped(server, batcher, stopping, limits) -> None:
    """Serve until SIGTERM / Ctrl-C, then drain: the requests in flight get up to ``drain_s``."""
    import threading

    from tasks.core import signals

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


# `s2s serve` flags over the params.yaml `serve` section (tasks/serving/request_body.Limits)
FLAG_DEST = {
    "--max-inputs": "max_inputs",
    "--max-input-chars": "max_input_chars",
    "--max-body-bytes": "max_body_bytes",
    "--max-request-seconds": "max_request_seconds",
    "--read-timeout": "read_timeout_s",
    "--drain-seconds": "drain_s",
}
LIMIT_FLAGS = tuple(FLAG_DEST.values())
