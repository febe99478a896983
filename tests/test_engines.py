"""The generation layer: one GenerationSettings shape, and the engine table every caller goes through."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.core.config import load_config
from tasks.modeling import engines
from tasks.modeling.engines import ENGINES, GenerationSettings

ROOT = Path(__file__).resolve().parents[1]
FIELDS = [f.name for f in dataclasses.fields(GenerationSettings)]

counts = st.integers(min_value=1, max_value=10**6)
settings = st.builds(
    GenerationSettings,
    source_prefix=st.text(max_size=20),
    num_beams=counts,
    max_new_tokens=counts,
    max_source_length=counts,
    batch_size=counts,
    backend=st.sampled_from(engines.BACKENDS),
    compute_type=st.sampled_from(["auto", "int8", "float32"]),
)


@given(settings)
def test_settings_survive_the_versions_settings_file(s):
    """What register writes (JSON) is what the pyfunc reads back, field for field."""
    assert GenerationSettings.from_dict(json.loads(json.dumps(s.to_dict()))) == s


@given(settings, st.sampled_from(FIELDS), st.one_of(st.none(), st.booleans(), st.floats(), st.lists(st.integers())))
def test_a_value_of_the_wrong_kind_is_refused_by_name(s, field, value):
    with pytest.raises(ValueError, match=field):
        GenerationSettings.from_dict({**s.to_dict(), field: value})


@given(settings, st.sampled_from(["num_beams", "max_new_tokens", "max_source_length", "batch_size"]))
def test_counts_must_be_positive(s, field):
    with pytest.raises(ValueError, match=f"{field}=0 must be at least 1"):
        s.overridden({field: 0})


def test_an_unknown_or_missing_field_is_refused_by_name(tmp_path):
    s = GenerationSettings.from_config(load_config(root=ROOT))
    with pytest.raises(ValueError, match="params: unknown num_beam "):
        s.overridden({"num_beam": 4})  # a request's typo is not silently ignored
    partial = {k: v for k, v in s.to_dict().items() if k != "batch_size"}
    with pytest.raises(ValueError, match="missing batch_size"):
        GenerationSettings.from_dict(partial)
    assert s.overridden({"num_beams": "4"}).num_beams == 4  # a query string's number
    assert s.overridden(None) is s


def test_settings_come_from_the_config_sections_that_own_them(tmp_path):
    cfg = load_config(
        overrides=["evaluate.num_beams=3", "train.max_seq_length=77", "ingest.source_prefix='sum: '"], root=ROOT
    )
    s = GenerationSettings.from_config(cfg)
    assert (s.num_beams, s.max_source_length, s.source_prefix) == (3, 77, "sum: ")
    assert s.max_new_tokens == cfg.evaluate.generation_max_length and s.batch_size == cfg.evaluate.batch_size
    assert s.prefixed(["a", "sum: b"]) == ["sum: a", "sum: b"]


def test_the_engine_table_is_the_config_and_cli_choice():
    """A backend is a row of ENGINES: the config's Literal and the CLI's choices list it."""
    from tasks.core.sections.release import Evaluate

    assert set(Evaluate.model_fields["backend"].annotation.__args__) == set(engines.BACKENDS)
    for name, row in ENGINES.items():
        assert row.name == name and callable(row.unsupported) and hasattr(row, "generate")
    assert engines.AUTO_ORDER[-1] == "hf" and ENGINES["hf"].unsupported("anything") is None


def test_choose_falls_back_unless_strict(tmp_path, caplog):
    folder = str(tmp_path)  # no config.json: CTranslate2 cannot take it
    assert engines.choose("auto", folder, cache=tmp_path) == "hf"
    assert engines.choose("ct2", folder, cache=tmp_path) == "hf"
    assert "does not generate with ct2" in caplog.text
    with pytest.raises(ValueError, match="backend ct2 asked for, but this version carries no CTranslate2 model"):
        engines.choose("ct2", folder, strict=True)  # the served version without a converted copy
    with pytest.raises(ValueError, match="backend 'tpu': use auto, hf, ct2"):
        engines.choose("tpu", folder)


def test_only_the_shipped_layer_is_imported_by_the_shipped_code():
    """The registered model carries engines.py, ct2.py, generation.py and rnn_model.py: none of
    them may import the project at module level (a served version runs without it)."""
    from tasks.register import SHIPPED_CODE

    assert {p.name for p in SHIPPED_CODE} == {"engines.py", "ct2.py", "generation.py", "rnn_model.py"}
    for path in SHIPPED_CODE:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                assert not (node.module or "").startswith(("tasks", "flows")), f"{path.name}: {node.module}"
