"""The stage results DVC records hold no run's own facts (tasks/core/results.py: RUN_FIELDS).

Two runs that compute the same thing write byte-identical files, so a fresh clone's `make run`
writes the dvc.lock it was cloned with; the run id and the timings come back only beside the file
they were written with."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.core.results import RUN_FACTS, RegisterResult, TrainResult, clear_after

ids = st.text(alphabet="0123456789abcdef", min_size=1, max_size=32)
seconds = st.floats(min_value=0, max_value=1e6, allow_nan=False)


def trained(run_id: str, runtime: float, resumed: str = "", loss: float = 0.5) -> TrainResult:
    return TrainResult(
        "artifacts/model",
        run_id,
        "dv",
        "scratch",
        {"train_loss_final": loss, "train_runtime_s": runtime, "train_tokens_per_s": runtime * 3},
        resumed_from=resumed,
        fingerprint="f:dv",
    )


@settings(max_examples=40, deadline=None)
@given(first=ids, second=ids, t1=seconds, t2=seconds, resumed=st.sampled_from(["", "checkpoint-150"]))
def test_same_result_other_run_same_bytes_each_reads_its_facts(tmp_path_factory, first, second, t1, t2, resumed):
    a, b = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
    trained(first, t1, resumed).save(a)
    trained(second, t2).save(b)
    assert (a / "training.json").read_bytes() == (b / "training.json").read_bytes()
    recorded = json.loads((a / "training.json").read_text())
    assert "run_id" not in recorded and set(recorded["metrics"]) == {"train_loss_final"}
    assert TrainResult.load(a) == trained(first, t1, resumed)  # the run's facts come back
    assert TrainResult.load(b) == trained(second, t2)


def test_facts_of_another_result_are_not_read_as_this_ones(tmp_path):
    trained("run-a", 1.0).save(tmp_path)
    other = json.loads((tmp_path / "training.json").read_text())
    other["metrics"]["train_loss_final"] = 0.25  # a different result (restored by DVC, pulled...)
    (tmp_path / "training.json").write_text(json.dumps(other))
    loaded = TrainResult.load(tmp_path)
    assert loaded.run_id == "" and "train_runtime_s" not in loaded.metrics  # unknown, not run-a's
    (tmp_path / RUN_FACTS / "training.json").unlink()
    assert TrainResult.load(tmp_path).run_id == ""


def test_registration_key_and_run_stay_out_and_go_with_the_decisions(tmp_path):
    RegisterResult("m", "1", "models:/m/1", "run-a", "key123").save(tmp_path)
    assert json.loads((tmp_path / "registration.json").read_text()) == {
        "model_name": "m",
        "version": "1",
        "model_uri": "models:/m/1",
    }
    assert RegisterResult.load(tmp_path).registration_key == "key123"
    assert "registration.json" in clear_after(tmp_path, "evaluate")
    assert not (tmp_path / RUN_FACTS / "registration.json").exists()
