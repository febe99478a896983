"""What a person reads: a log file without third-party noise, `s2s deploy` as one table,
`s2s --version`, and help for every `s2s train` flag. In process, no services."""

import argparse
import logging
from importlib import metadata

import pytest

from flows import cli


def test_gx_closure_notes_stay_out_of_the_log_file(tmp_path):
    from tasks.core import logs

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    log_file = tmp_path / "run.log"
    try:
        logs.configure(log_file)
        import great_expectations  # noqa: F401  (its import is what logged them)

        logging.getLogger("great_expectations._docs_decorators").info(
            "Skipping registering function %s because it is a closure", "f.<locals>.g"
        )
        logging.getLogger("great_expectations.core").info("a GX line that says something")
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
    logged = log_file.read_text()
    assert "Skipping registering function" not in logged
    assert "a GX line that says something" in logged  # GX itself is still heard


def test_version_is_the_installed_package_version(capsys):
    with pytest.raises(SystemExit) as done:
        cli.build_parser().parse_args(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"s2s {metadata.version('s2s-pipeline')}"


def test_every_train_flag_has_help_from_params_yaml():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    train = sub.choices["train"]
    flags = {a.dest: a.help for a in train._actions if a.option_strings and a.help != argparse.SUPPRESS}
    assert not [dest for dest, said in flags.items() if not said], "flags without help"
    assert flags["lr"].startswith("from-scratch rate;") and "(train.lr; params.yaml: 0.002)" in flags["lr"]
    assert flags["data_path"].endswith("(ingest.source; params.yaml: data/sample/reports.csv)")
    assert "HF_TOKEN" in flags["token"]
    train.format_help()  # a % in a comment would break argparse's formatting


def test_setting_comments_read_inline_and_continued_comments():
    from tasks.core.config import setting_comments

    text = (
        "train:\n"
        "  lr: 0.002      # a rate\n"
        "  scratch:       # the model\n"
        "    d_model: 8   # width; more\n"
        "                 #   on the next line\n"
        '  prefix: "a # b"  # quoted\n'
        "  bare: 1\n"
        "  # -- a section comment, not a continuation\n"
        "  next: 2        # own\n"
    )
    assert setting_comments(text) == {
        "train.lr": "a rate",
        "train.scratch": "the model",
        "train.scratch.d_model": "width; more on the next line",
        "train.prefix": "quoted",
        "train.next": "own",
    }


def test_deploy_prints_one_table(monkeypatch, capsys):
    import flows.deploy

    rows = [
        ("retrain/default", "s2s", "cron 0 3 * * * UTC, on new data"),
        ("training-pipeline/default", "s2s", "on demand"),
        ("promotion/default", "s2s", "on demand"),
    ]
    from flows.cli import pipeline_cmds  # where cmd_deploy looks its helpers up

    monkeypatch.setattr(pipeline_cmds, "_prepare_env", lambda: None)  # it sets environment variables for good
    monkeypatch.setattr(pipeline_cmds, "_require_prefect_server", lambda command: None)
    monkeypatch.setattr(flows.deploy, "deploy", lambda pipelines=None, work_pool=None: rows)
    assert cli.cmd_deploy(argparse.Namespace(pipelines=[], work_pool=None)) == 0
    out = capsys.readouterr().out.splitlines()
    table = [line for line in out if line.startswith("  ")]
    assert table[0].split() == ["deployment", "work", "pool", "runs"] and set(table[1].replace(" ", "")) == {"-"}
    assert [line.split()[0] for line in table[2:]] == [r[0] for r in rows]


def test_a_library_error_from_an_interrupted_write_stays_off_the_console(tmp_path):
    """A SIGTERM that lands inside an MLflow write makes MLflow log an ERROR with its traceback
    (found by bench.chaos in term mode): once a stop is requested, the console leaves a library's
    errors to the log file; before it, they are shown."""
    import subprocess
    import sys

    script = (
        "import logging, os, signal, sys\n"
        "from pathlib import Path\n"
        "from tasks.core import logs, signals\n"
        "logs.configure(Path(sys.argv[1]))\n"
        "signals.install()\n"
        "logging.getLogger('mlflow.store.db.utils').error('before the stop')\n"
        "try:\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "except BaseException:\n"
        "    pass\n"
        "logging.getLogger('mlflow.store.db.utils').error('database is locked')\n"
    )
    log_file = tmp_path / "run.log"
    proc = subprocess.run([sys.executable, "-c", script, str(log_file)], capture_output=True, text=True)
    assert "before the stop" in proc.stderr, proc.stderr
    assert "database is locked" not in proc.stderr, proc.stderr
    assert "database is locked" in log_file.read_text()
