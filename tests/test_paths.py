"""Configured folders are guarded: no setting can make the pipeline write or delete outside its
run folder, and the pipeline deletes only folders it created.

Each case runs the real `s2s run` (and `dvc repro` for a params.yaml edit) and then checks that a
sentinel file in the project and one in its parent are still there.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import dvc_env, make_clone, make_project, run_cli, venv_bin
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.core import paths
from tasks.core.config import load_config
from tasks.core.errors import ConfigError


def _sentinels(root):
    inside, above = root / "SENTINEL", root.parent / "SENTINEL"
    inside.write_text("keep")
    above.write_text("keep")
    return inside, above


@pytest.mark.system
@pytest.mark.parametrize(
    "value, says",
    [
        ("", "is empty"),
        (".", "itself"),
        ("..", "a parent of the "),
        ("{outside}", "a folder outside the "),
        ("{root}/link/checkpoints", "a folder outside the "),
    ],
)
def test_a_bad_path_setting_is_refused_before_anything_is_touched(tmp_path, value, says):
    root = make_project(tmp_path / "proj")
    inside, above = _sentinels(root)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "SENTINEL").write_text("keep")
    (root / "link").symlink_to(outside)  # a symlink out of the project
    value = value.format(outside=outside, root=root)
    # in params.yaml (what `s2s run` and `dvc repro` read) and as a --set override
    text = (root / "params.yaml").read_text()
    (root / "params.yaml").write_text(text.replace("checkpoints: artifacts/checkpoints", f"checkpoints: '{value}'"))
    for args in (["run"], ["run", "--set", f"paths.checkpoints={value}"]):
        proc = run_cli(*args, cwd=root, env={"S2S_ROOT": str(root)}, timeout=120)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "paths.checkpoints" in proc.stderr and says in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    assert inside.read_text() == above.read_text() == (outside / "SENTINEL").read_text() == "keep"
    assert not (root / "data" / "processed").exists() and not (root / "mlflow.db").exists()  # nothing ran


@pytest.mark.system
def test_dvc_repro_stops_at_the_guard_before_deleting_any_output(tmp_path):
    """DVC removes a stage's outputs before running it: the guard stage runs first and fails."""
    root = make_clone(tmp_path / "proj")
    inside, above = _sentinels(root)
    (root / "my_notes").mkdir()
    (root / "my_notes" / "notes.txt").write_text("mine")
    text = (root / "params.yaml").read_text()
    (root / "params.yaml").write_text(text.replace("tokenizer: artifacts/tokenizer", "tokenizer: my_notes"))
    proc = subprocess.run(
        [venv_bin("dvc"), "repro"], cwd=root, env=dvc_env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode != 0
    assert (
        "paths.tokenizer" in proc.stdout + proc.stderr
        and "was not created by this pipeline" in proc.stdout + proc.stderr
    )
    assert (root / "my_notes" / "notes.txt").read_text() == "mine"
    assert inside.read_text() == above.read_text() == "keep"


def test_folders_that_hold_project_files_or_overlap_are_refused(project):
    import yaml

    original = (project / "params.yaml").read_text()

    def with_setting(section, key, value):
        params = yaml.safe_load(original)
        params[section][key] = value
        (project / "params.yaml").write_text(yaml.safe_dump(params))

    (project / "mine").mkdir()
    (project / "mine" / "keep.txt").write_text("x")
    for section, key, value, says in [
        ("paths", "data", "data", "holds"),  # the raw data lives in data/sample
        ("paths", "model", ".git/objects", "overlaps .git/"),
        ("paths", "checkpoints", "artifacts", "lies inside paths.checkpoints"),  # would swallow the model
        ("tracking", "artifacts", "..", "a parent of the project folder"),
        ("paths", "model", "mine", "was not created by this pipeline"),  # never replace a folder it did not make
    ]:
        with_setting(section, key, value)
        with pytest.raises(ConfigError, match=says):
            load_config()
    assert (project / "mine" / "keep.txt").read_text() == "x"


def test_extra_roots_allow_an_outside_folder_by_name_only(project, tmp_path):
    scratch = tmp_path / "scratch"
    cfg = load_config(overrides=[f"paths.extra_roots=[{scratch}]", f"paths.checkpoints={scratch}/ckpt"])
    assert cfg.path("checkpoints") == scratch / "ckpt"
    with pytest.raises(ConfigError, match="strictly inside"):
        load_config(overrides=[f"paths.extra_roots=[{scratch}]", f"paths.checkpoints={scratch}"])
    with pytest.raises(ConfigError, match="holds the project folder itself"):
        load_config(overrides=[f"paths.extra_roots=[{project.parent}]"])


def test_only_marked_folders_are_deleted_and_links_never_followed(tmp_path):
    owned = paths.mark(tmp_path / "owned")
    (owned / "f").write_text("x")
    assert paths.remove_owned(owned) and not owned.exists()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    with pytest.raises(ConfigError, match="not created by this pipeline"):
        paths.remove_owned(foreign)
    target = paths.mark(tmp_path / "target")
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(ConfigError, match="symbolic link"):
        paths.remove_owned(tmp_path / "link")
    assert target.exists()


SEGMENTS = st.sampled_from(
    ["..", ".", "a", "b", "data", "sample", ".git", ".dvc", ".s2s", "runs", "artifacts", "model", "link", "", " "]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    parts=st.lists(SEGMENTS, min_size=0, max_size=5),
    setting=st.sampled_from(["checkpoints", "model", "data", "reports", "tokenizer"]),
    absolute=st.booleans(),
)
def test_any_path_the_guard_accepts_stays_strictly_inside_and_off_project_files(project, parts, setting, absolute):
    """Property: whatever string a user (or an unset variable) puts in a paths.* setting, either
    the configuration is refused, or the folder is strictly inside the project, outside .git,
    .dvc and .s2s, and holds none of the project's files."""
    if not (project / "link").exists():
        (project / "link").symlink_to(project.parent)
    value = "/".join(parts)
    if absolute:
        value = str(project.parent) + "/" + value
    try:
        cfg = load_config(overrides=[f"paths.{setting}={value}"] if value.strip() else [f"paths.{setting}=''"])
    except ConfigError:
        return
    root = project.resolve()
    where = cfg.path(setting).resolve()
    assert where != root and root in where.parents
    for special in (".git", ".dvc", ".s2s"):
        assert root / special not in (where, *where.parents)
    for f in ("params.yaml", "pipelines.yaml", "dvc.yaml", "data/sample/reports.csv"):
        assert where not in (root / f).parents
    assert os.path.commonpath([where, root]) == str(root)


def test_what_a_killed_writer_left_half_written_goes_and_a_live_writers_stays(project):
    """A real SIGKILL in the middle of writing a staged folder (as ingest stages its splits) leaves
    it beside the output; the next run's sweep removes it, and keeps a live writer's."""
    import signal
    import sys

    cfg = load_config()
    out = cfg.path("data")
    out.parent.mkdir(parents=True, exist_ok=True)
    write = (
        "import os, signal, sys, time\n"
        "from pathlib import Path\n"
        "from tasks.core import paths\n"
        "tmp = paths.temp_sibling(Path(sys.argv[1])); tmp.mkdir()\n"
        "(tmp / 'train.parquet').write_bytes(b'half')\n"
        "print(tmp, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL) if sys.argv[2] == 'die' else time.sleep(60)\n"
    )

    def killed() -> Path:
        proc = subprocess.run([sys.executable, "-c", write, str(out), "die"], capture_output=True, text=True)
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        left = Path(proc.stdout.strip())
        assert (left / "train.parquet").is_file()
        return left

    left = killed()
    assert paths.sweep_outputs(cfg) == [left] and not left.exists()  # the next run's sweep
    left = killed()
    live = subprocess.Popen([sys.executable, "-c", write, str(out), "live"], stdout=subprocess.PIPE, text=True)
    try:
        kept = Path(live.stdout.readline().strip())
        assert not left.exists() and kept.is_dir()  # the next writer of the same output sweeps too
        assert paths.sweep_outputs(cfg) == [] and kept.is_dir()  # its writer is alive: not ours to remove
    finally:
        live.kill()
        live.wait()
    assert paths.sweep_stale(out) == [kept]  # now its writer is gone too
