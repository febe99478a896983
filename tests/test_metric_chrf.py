"""chrF, added as one file (tasks/metrics/chrf.py): the registry finds it, the configuration accepts
it for evaluation, gates and best-model selection, and its scores are sacreBLEU's."""

from __future__ import annotations

import pytest
import sacrebleu

from tasks import metrics
from tasks.core.config import load_config
from tasks.core.errors import ConfigError
from tasks.promote import decide

PREDICTIONS = ["Das Haus ist klein.", "Der Hund bellt laut", "völlig falsch"]
REFERENCES = ["Das Haus ist sehr klein.", "Der Hund bellt laut.", "Die Katze schläft."]


def test_the_registry_finds_chrf_with_its_direction():
    chrf = metrics.get("chrf")
    assert chrf is not None and chrf.higher_is_better is True and "chrf" in metrics.families()


def test_scores_equal_sacrebleu_corpus_and_sentence_chrf():
    means, per = metrics.score(PREDICTIONS, REFERENCES, ["chrf"])
    assert means["chrf"] == pytest.approx(sacrebleu.corpus_chrf(PREDICTIONS, [REFERENCES]).score)
    assert per["chrf"] == pytest.approx(
        [sacrebleu.sentence_chrf(p, [r]).score for p, r in zip(PREDICTIONS, REFERENCES)]
    )
    assert per["chrf"][1] > per["chrf"][0] > per["chrf"][2]  # closer translations score higher


def test_a_translation_pipeline_can_evaluate_gate_and_select_on_chrf(project):
    cfg = load_config(
        overrides=[
            "evaluate.metrics=[bleu, chrf]",
            "promote.gates={min: {chrf: 40}, primary: chrf, min_delta: 0.5, max_regression: {bleu: 1.0}}",
            "train.eval_strategy=epoch",
            "train.metric_for_best_model=chrf",
        ]
    )
    assert cfg.primary_metric == "chrf"
    assert metrics.default_primary(["chrf", "bleu"]) == "bleu"  # with no gates.primary, BLEU ranks first
    gates = cfg.promote.gates
    assert decide({"chrf": 61.0, "bleu": 30.0}, {"chrf": 60.0, "bleu": 30.5}, gates).promote
    assert decide({"chrf": 60.2, "bleu": 30.0}, {"chrf": 60.0, "bleu": 30.0}, gates).failed == ("beat_champion",)
    with pytest.raises(ConfigError, match="'chrf' is not computed by evaluate.metrics"):
        load_config(overrides=["promote.gates={min: {chrf: 40}}"])  # ROUGE only: chrF is not computed
    with pytest.raises(ConfigError, match="unknown metric family 'chrff' \\(did you mean 'chrf'\\?\\)"):
        load_config(overrides=["evaluate.metrics=[chrff]"])
