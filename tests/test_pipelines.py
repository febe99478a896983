"""pipelines.yaml: the shipped pipelines resolve; the strict schema names what is wrong."""

import pytest

from tasks.core.config import load_config, validate_all
from tasks.core.errors import ConfigError


def test_shipped_pipelines_all_resolve():
    configs = validate_all()
    assert set(configs) >= {"default", "summarization", "translation"}
    summ, trans = configs["summarization"], configs["translation"]
    assert summ.train.model == "google/flan-t5-small" and summ.train.peft and summ.ingest.dataset_config == "3.0.0"
    assert summ.spec.schedule.timezone == "Europe/Berlin" and summ.spec.work_pool == "gpu"
    assert trans.evaluate.metrics == ["bleu", "chrf", "rouge"] and trans.promote.gates.primary == "bleu"
    assert trans.ingest.text_column == "translation.en" and trans.ingest.source_prefix == ""
    # never restated: what a pipeline does not override comes from params.yaml
    assert trans.validate.max_copy_rate == configs["default"].validate.max_copy_rate
    assert summ.path("model").parts[-4:] == ("runs", "summarization", "artifacts", "model")


def write(project, text):
    (project / "pipelines.yaml").write_text(text)


@pytest.mark.parametrize(
    "text, message",
    [
        ("default:\n  schedule: {cron: '61 3 * * *'}\n", "schedule.cron '61 3 * * *' is not a valid cron expression"),
        ("default:\n  schedule: {cron: '0 3 * * *', timezone: Mars/Olympus}\n", "not an IANA time zone"),
        (
            "default:\n  schedule: {cron: '0 3 * * *', tz: UTC}\n",
            "default.schedule.tz: unknown setting; allowed: cron, timezone, active",
        ),
        ("default:\n  retries: {count: -1}\n", "default.retries.count"),
        ("default:\n  timeouts: {train: 10}\n", "default.timeouts.train: unknown setting (did you mean 'train_s'?)"),
        ("default:\n  workpool: gpu\n", "default.workpool: unknown key (did you mean 'work_pool'?)"),
        ("Nightly Run:\n  model_name: x\n", "pipeline name 'Nightly Run'"),
        ("default:\n  params: {train: {lrr: 0.1}}\n", "train.lrr: unknown setting (did you mean 'lr'?)"),
        ("default:\n  gates: {minimum: {rougeL: 0.5}}\n", "promote.gates.minimum: unknown setting"),
    ],
)
def test_schema_errors_name_the_pipeline_and_key(project, text, message):
    write(project, text)
    with pytest.raises(ConfigError) as err:
        load_config()
    assert message in str(err.value)


def test_every_pipeline_is_checked_not_only_the_one_run(project):
    write(project, "default: {}\nbroken:\n  params: {evaluate: {num_beams: 0}}\n")
    load_config("default")  # the default alone is fine...
    with pytest.raises(ConfigError, match=r"pipeline 'broken'.*evaluate.num_beams"):
        validate_all()  # ...but `s2s deploy` refuses a file with a broken pipeline


def test_retries_and_timeouts_reach_the_tasks(project):
    from flows.stages import for_pipeline, transient
    from tasks.core.errors import DataError, TrackingError

    write(project, "default:\n  retries: {count: 3, delay_s: [1, 5]}\n  timeouts: {train_s: 120}\n")
    tasks = for_pipeline(load_config())
    assert tasks["register"].retries == 3 and tasks["register"].retry_delay_seconds == [1.0, 5.0]
    assert tasks["validate"].retries == 0  # bad data is not transient
    assert tasks["train"].timeout_seconds == 120

    class State:
        def __init__(self, exc):
            self.exc = exc

        def result(self):
            raise self.exc

    assert transient(None, None, State(TrackingError("down", transient=True)))
    assert not transient(None, None, State(TrackingError("refused")))
    assert not transient(None, None, State(DataError("bad row")))
