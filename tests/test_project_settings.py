"""`s2s train`'s flags become the project's settings (tasks/core/project_settings.py): written in
place with comments kept, resolved by the real config loader, idempotent, the data versioned."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, make_project
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.core import project_settings
from tasks.core.config import load_config

pytestmark = pytest.mark.unit


def _own_project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    for name in ("params.yaml", "pipelines.yaml", "dvc.yaml"):
        shutil.copy(REPO / name, root / name)
    return root


def test_the_own_project_takes_the_flags_as_its_params_with_comments_kept(tmp_path):
    root = _own_project(tmp_path)
    comments_before = [line for line in (root / "params.yaml").read_text().splitlines() if "#" in line]
    written = project_settings.write(
        root, "docs", ["train.lr=0.002", "ingest.text_column=body", "register.model_name=docs"], own=True
    )
    assert written.pipeline == "default" and set(written.changed) == {"params.yaml", "pipelines.yaml"}
    text = (root / "params.yaml").read_text()
    kept = [c.split("#", 1)[1] for c in comments_before]
    assert all(c in text for c in kept), [c for c in kept if c not in text][:3]
    cfg = load_config(root=root)
    assert cfg.train.lr == 0.002 and cfg.ingest.text_column == "body" and cfg.register.model_name == "docs"
    gates = cfg.promote.gates
    assert not gates.min and not gates.max and gates.min_delta == 0.0  # relative: no sample floors
    # the same flags again: nothing changes
    again = project_settings.write(
        root, "docs", ["train.lr=0.002", "ingest.text_column=body", "register.model_name=docs"], own=True
    )
    assert again.changed == []


def test_an_existing_project_gets_a_named_pipeline_and_keeps_its_default(tmp_path):
    root = make_project(tmp_path / "p")
    default_before = load_config(root=root).raw
    written = project_settings.write(
        root, "docs", ["train.lr=0.003", "ingest.text_column=text", "register.model_name=docs-model"], own=False
    )
    assert written.pipeline == "docs" and written.changed == ["pipelines.yaml"]
    cfg = load_config("docs", root=root)
    assert cfg.train.lr == 0.003 and cfg.register.model_name == "docs-model" and not cfg.promote.gates.min
    assert load_config(root=root).raw == default_before  # the team's pipeline is untouched
    # a floor the user adds later is kept by the next s2s train
    pipes = yaml.safe_load((root / "pipelines.yaml").read_text())
    pipes["docs"]["gates"]["min"] = {"rougeL": 0.3}
    (root / "pipelines.yaml").write_text(yaml.safe_dump(pipes, sort_keys=False))
    project_settings.write(root, "docs", ["train.lr=0.004", "register.model_name=docs-model"], own=False)
    cfg = load_config("docs", root=root)
    assert cfg.promote.gates.min == {"rougeL": 0.3} and cfg.train.lr == 0.004


def test_data_outside_the_project_is_copied_in_and_versioned_by_dvc(tmp_path):
    root = _own_project(tmp_path)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run([str(Path(sys.executable).with_name("dvc")), "init", "-q"], cwd=root, check=True)
    outside = tmp_path / "mine.csv"
    outside.write_text("text,target\na b c,a\n", encoding="utf-8")
    written = project_settings.write(root, "docs", [f"ingest.source={outside}"], own=True)
    assert written.data == "data/docs/mine.csv"
    assert (root / "data/docs/mine.csv").read_bytes() == outside.read_bytes()
    assert (root / "data/docs/mine.csv.dvc").is_file()  # versioned: the .dvc file is what git keeps
    assert load_config(root=root).ingest.source == "data/docs/mine.csv"
    again = project_settings.write(root, "docs", [f"ingest.source={outside}"], own=True)
    assert again.changed == []
    outside.write_text("text,target\na b c,a\nd e f,d\n", encoding="utf-8")  # new data: copied, new version
    before = (root / "data/docs/mine.csv.dvc").read_text()
    project_settings.write(root, "docs", [f"ingest.source={outside}"], own=True)
    assert (root / "data/docs/mine.csv").read_bytes() == outside.read_bytes()
    assert (root / "data/docs/mine.csv.dvc").read_text() != before


@settings(max_examples=60, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "lr": st.floats(1e-6, 0.5, allow_nan=False),
            "warmup_ratio": st.floats(0, 0.5, allow_nan=False),
            "batch_size": st.integers(1, 64),
            "seed": st.integers(0, 2**31 - 1),
        },
    ),
    st.text(alphabet="abcdefghij_ -:#'\"", min_size=1, max_size=12),
)
def test_any_settings_round_trip_through_the_files(tmp_path_factory, values, column):
    """Whatever the values (quotes, colons, '#' in a column name), the loader reads back exactly
    what was written, and writing it again changes nothing."""
    root = _own_project(tmp_path_factory.mktemp("p"))
    overrides = [f"train.{k}={v!r}" for k, v in values.items()]
    overrides.append("ingest.text_column=" + yaml.safe_dump(column, default_style='"').strip())
    project_settings.write(root, "x", overrides, own=True)
    cfg = load_config(root=root)
    for key, value in values.items():
        assert getattr(cfg.train, key) == pytest.approx(value)
    assert cfg.ingest.text_column == column
    assert project_settings.write(root, "x", overrides, own=True).changed == []
