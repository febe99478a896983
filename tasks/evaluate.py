"""Stage 4, evaluate: generate on the held-out split and score it; score the champion the same way.

Batches are sorted by input length so little time goes into padding; predictions are put back
in input order before scoring. The metrics are the families ``evaluate.metrics`` names, from the
registry in ``tasks/metrics/`` (ROUGE-1/2/L/Lsum, sacreBLEU's BLEU and chrF), plus gen_len. Beside
them, the degenerate-output figures (blank, looping, identical, collapsed predictions:
``tasks/metrics/degenerate.py``) go to MLflow, ``degenerate.json`` and the result promotion reads.

So that promotion compares like with like, the current ``champion`` (if any) is scored by the
same code on the same rows with the same generation settings, even when the data changed since
it was trained: the decision never rests on numbers from another test set.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from pathlib import Path

import numpy as np

from tasks.core import paths
from tasks.core.config import Config
from tasks.core.errors import ConfigError, DataError
from tasks.core.results import EvaluateResult, IngestResult, TrainResult, load_split
from tasks.data import rowkey
from tasks.metrics import bootstrap, score
from tasks.metrics import degenerate as degeneracy
from tasks.modeling import ct2
from tasks.modeling.engines import GenerationSettings, open_engine
from tasks.promotion.charts import length_buckets, plots, scored
from tasks.tracking import lineage, reads
from tasks.tracking.champion import champion_model, champion_trained_on, fetch_version
from tasks.tracking.run import RunHandle, owned

logger = logging.getLogger(__name__)

METRICS = "metrics.json"  # the DVC metrics file: scores only
DEGENERATE = "degenerate.json"  # a DVC metrics file too: the degenerate-output figures
PREDICTIONS = "predictions.jsonl"


def run_model(cfg: Config, model_dir: str, texts: list[str], refs: list[str], prefix: str, desc: str):
    """Generate and score one model on the split: (metrics, per-example scores, predictions,
    generation settings, tokenizer, backend). Every model, the candidate and the champion alike,
    generates with the pipeline's ``GenerationSettings``, as its registered version will."""
    from tasks.modeling import models as modeling

    current = cfg.ingest.source_prefix
    inputs = [prefix + t.removeprefix(current) if current and prefix != current else t for t in texts]
    ev = cfg.evaluate
    settings = GenerationSettings.from_config(cfg)
    try:
        engine = open_engine(
            model_dir, settings, cache=ct2.cache_dir(cfg), load=modeling.load, load_tokenizer=modeling.load_tokenizer
        )
    except ValueError as exc:  # a compute type this device lacks
        raise ConfigError(str(exc)) from None
    preds, gen_lens = engine.generate(inputs, settings, desc=desc)
    means, per_example = score(preds, refs, tuple(ev.metrics))
    metrics = {k: round(v, 6) for k, v in means.items()}
    metrics["gen_len"] = round(float(np.mean(gen_lens)) if gen_lens else 0.0, 4)
    return metrics, per_example, preds, engine.generation, engine.tokenizer, engine.label


def score_champion(cfg: Config, texts: list[str], refs: list[str], cand: tuple[dict, dict, list[str]]) -> dict | None:
    """The champion scored like the candidate, on the test rows neither of them trained on: the
    candidate never saw its test split, and rows the champion trained on (its data had other
    splits: another seed, other ratios, split files) are left out of the comparison. Returns
    the champion's metrics, the candidate's on the same rows, the paired intervals, and the
    champion's per-example primary score by test row (None where left out)."""
    metrics, per_example, preds = cand
    primary = cfg.primary_metric
    with tempfile.TemporaryDirectory() as tmp:
        found = champion_model(cfg, Path(tmp))
        if not found:
            return None
        version, folder, prefix, run_id = found
        seen = champion_trained_on(cfg, run_id, Path(tmp) / "hashes")
        keep = list(range(len(texts)))
        if seen is not None and len(seen):
            mine = rowkey.hash64([t.removeprefix(cfg.ingest.source_prefix) for t in texts])
            keep = [int(i) for i in np.flatnonzero(~np.isin(mine, seen))]
        if not keep:
            logger.warning("champion v%s trained on every test row: promotion compares recorded metrics", version)
            return None
        sub_texts, sub_refs = [texts[i] for i in keep], [refs[i] for i in keep]
        champ_metrics, champ_per, champ_preds, *_ = run_model(
            cfg, folder, sub_texts, sub_refs, prefix, f"champion v{version}"
        )
    left_out = len(texts) - len(keep)
    if left_out:
        logger.warning(
            "champion v%s trained on %d of the %d test rows: both are compared on the other %d",
            version,
            left_out,
            len(texts),
            len(keep),
        )
        cand_per = {k: [v[i] for i in keep] for k, v in per_example.items()}
        means, _ = score([preds[i] for i in keep], sub_refs, tuple(cfg.evaluate.metrics))
        cand_metrics = {k: round(v, 6) for k, v in means.items()}
        cand_metrics["gen_len"] = metrics.get("gen_len", 0.0)
    else:
        cand_per, cand_metrics = per_example, metrics
    champion = {
        "version": version,
        "metrics": champ_metrics,
        "rows": len(keep),
        "left_out": left_out,
        "candidate_metrics": cand_metrics,
    }
    confidence = cfg.promote.gates.confidence
    if confidence is not None:  # the certified gates' evidence: paired, same rows
        champion["intervals"] = bootstrap.intervals(cand_per, champ_per, confidence)
    by_row: list[float | None] = [None] * len(texts)
    preds_by_row: list[str | None] = [None] * len(texts)
    for j, i in enumerate(keep):
        by_row[i] = champ_per.get(primary, [None] * len(keep))[j]
        preds_by_row[i] = champ_preds[j]
    champion["_by_row"], champion["_preds_by_row"] = by_row, preds_by_row
    return champion


def held_out(cfg: Config, ingested: IngestResult):
    """(split name, rows) of the held-out split evaluation scores on (``evaluate.split``)."""
    split_name = cfg.evaluate.split
    df = load_split(ingested, split_name) if split_name in ingested.splits else None
    if df is None or not len(df):
        if split_name == "test" and ingested.rows.get("validation"):
            logger.warning("the test split is empty; evaluating on the validation split instead")
            split_name, df = "validation", load_split(ingested, "validation")
        else:
            raise DataError(f"the {split_name} split is empty; raise ingest.test_ratio or ingest.valid_ratio")
    if cfg.evaluate.max_samples:
        df = df.iloc[: cfg.evaluate.max_samples]
    return split_name, df


def evaluate_model(cfg: Config, model: str, ingested: IngestResult, run: RunHandle | None = None) -> dict:
    """Score an existing model on today's held-out split, as the evaluate stage scores a candidate:
    a local model folder, a hub id, or a registered version (``models:/name/3``,
    ``models:/name@champion``). Writes ``reports/evaluations/<model>/`` (predictions, metrics) and
    logs to ``run`` (a new MLflow run of its own when None). Returns the metrics."""
    if run is None:
        with owned(cfg) as owner:
            return evaluate_model(cfg, model, ingested, owner.run(ingested.data_version))
    split_name, df = held_out(cfg, ingested)
    texts, refs = df["text"].tolist(), df["target"].tolist()
    with tempfile.TemporaryDirectory() as tmp:
        if model.startswith("models:/"):
            folder, prefix = fetch_version(cfg, registered_version(cfg, model), Path(tmp))
        else:
            local = Path(model).expanduser()
            folder = str(local if local.is_absolute() or not (cfg.root / local).exists() else cfg.root / local)
            prefix = cfg.ingest.source_prefix
        metrics, per_example, preds, *_ = run_model(cfg, folder, texts, refs, prefix, model)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", model.removeprefix("models:/")).strip("_.") or "model"
    out = cfg.path("reports") / "evaluations" / slug
    rows = [
        {"input": t, "reference": r, "prediction": p, **{k: round(v[i], 4) for k, v in per_example.items()}}
        for i, (t, r, p) in enumerate(zip(texts, refs, preds))
    ]
    paths.atomic_write_text(out / PREDICTIONS, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    paths.atomic_write_json(out / METRICS, {"model": model, "split": split_name, "n_examples": len(df), **metrics})
    run.set_tags({"s2s.evaluated_model": model, "mlflow.runName": f"evaluate {model}"[:250]})
    run.log_metrics(metrics)
    run.log_artifact(out / PREDICTIONS, artifact_path="evaluation")
    logger.info(
        "evaluate %s on %s (%d examples): %s",
        model,
        split_name,
        len(df),
        ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()),
    )
    return {"split": split_name, "n_examples": len(df), "metrics": metrics, "report": cfg.relative(out)}


def registered_version(cfg: Config, uri: str):
    """The registry's version for ``models:/name/3`` or ``models:/name@alias`` (fail closed)."""
    ref = uri.removeprefix("models:/")
    if "@" in ref:
        name, alias = ref.split("@", 1)
        version = reads.alias_version(cfg, name, alias)
    elif "/" in ref:
        name, number = ref.rsplit("/", 1)
        version = reads.get_version(cfg, name, number)
    else:
        raise ConfigError(f"--model {uri!r}: use models:/<name>/<version> or models:/<name>@<alias>")
    if version is None:
        raise ConfigError(
            f"{uri} does not exist in {tracking_uri_shown(cfg)}; see `s2s compare --set "
            f"register.model_name={ref.split('@')[0].split('/')[0]}`"
        )
    return version


def tracking_uri_shown(cfg: Config) -> str:
    from tasks.tracking.client import redact_uri

    return redact_uri(cfg)


def evaluate(cfg: Config, trained: TrainResult, ingested: IngestResult, run: RunHandle | None = None) -> EvaluateResult:
    """Score the candidate (and the current champion) on ``evaluate.split``; write and log it all
    to ``run``, the training's MLflow run (its owner ends it; without one, this call's own)."""
    if run is None:
        with owned(cfg) as owner:
            return evaluate(cfg, trained, ingested, owner.attach(trained.run_id, trained.data_version))
    split_name, df = held_out(cfg, ingested)
    texts, refs = df["text"].tolist(), df["target"].tolist()
    metrics, per_example, preds, generation, tokenizer, backend = run_model(
        cfg, str(cfg.resolve(trained.model_dir)), texts, refs, cfg.ingest.source_prefix, "candidate"
    )
    primary = cfg.primary_metric
    champion = None
    if cfg.evaluate.compare_champion:
        champion = score_champion(cfg, texts, refs, (metrics, per_example, preds))
    rows, champion_scores = _rows(df, texts, refs, preds, per_example, champion, primary)
    prefix = cfg.ingest.source_prefix
    degenerate = degeneracy.measure([t.removeprefix(prefix) if prefix else t for t in texts], preds, refs)
    input_lengths = [
        len(x) for x in tokenizer(texts, truncation=True, max_length=cfg.train.max_seq_length)["input_ids"]
    ]
    buckets = length_buckets(input_lengths, per_example[primary], champion_scores, cfg.evaluate.length_buckets)
    result = EvaluateResult(
        split=split_name,
        n_examples=len(df),
        metrics=metrics,
        predictions_path=cfg.relative(cfg.path("reports") / PREDICTIONS),
        worst=sorted(rows, key=lambda r: r.get(primary, 0.0))[:3],
        champion=champion,
        primary=primary,
        by_length=buckets,
        degenerate=degenerate,
    )
    pngs = _write_reports(cfg, result, rows)
    settings = {
        "split": split_name,
        "n_examples": len(df),
        "num_beams": cfg.evaluate.num_beams,
        "generation_max_length": cfg.evaluate.generation_max_length,
        "backend": backend,
        "metrics": list(cfg.evaluate.metrics),
        "primary_metric": primary,
    }
    _log_run(cfg, run, result, rows, generation, settings, pngs)
    result.save(cfg.path("reports"))  # written last: its presence says the stage finished, tracking included
    logger.info(
        "evaluate on %s (%d examples): %s; outputs: %s%s",
        split_name,
        len(df),
        ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()),
        ", ".join(f"{k}={v:.4f}" for k, v in degenerate["figures"].items()),
        f"; champion v{champion['version']}: {primary}={champion['metrics'].get(primary, float('nan')):.4f}"
        if champion
        else "; no champion yet",
    )
    return result


def _rows(df, texts, refs, preds, per_example, champion: dict | None, primary: str) -> tuple[list[dict], list | None]:
    """One row per example (input, reference, prediction, its scores) and, where the champion was
    scored on it, the champion's score and prediction beside them (the promotion report reads
    these); also the champion's per-row primary scores (None without a champion)."""
    champion_scores = champion.pop("_by_row") if champion else None
    champion_preds = champion.pop("_preds_by_row") if champion else None
    rows = [
        {
            "source_row": int(df["source_row"].iloc[i]) if "source_row" in df else i + 1,
            "input": src,
            "reference": ref,
            "prediction": pred,
            **{k: round(v[i], 4) for k, v in per_example.items()},
        }
        for i, (src, ref, pred) in enumerate(zip(texts, refs, preds))
    ]
    if champion:
        for row, champ_score, pred in zip(rows, champion_scores, champion_preds):
            if champ_score is not None:
                row[f"champion_{primary}"], row["champion_prediction"] = round(champ_score, 4), pred
    return rows, champion_scores


def _write_reports(cfg: Config, result: EvaluateResult, rows: list[dict]) -> list:
    """The predictions, metrics.json, degenerate.json and the plots DVC and MLflow show; returns
    the PNG plots written."""
    reports = cfg.path("reports")
    reports.mkdir(parents=True, exist_ok=True)
    pred_path = reports / PREDICTIONS
    paths.atomic_write_text(pred_path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    paths.atomic_write_json(reports / METRICS, result.metrics)
    paths.atomic_write_json(reports / DEGENERATE, result.degenerate["figures"])
    plot_dir = reports / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    # `dvc plots show/diff`: one bar per score, compared across revisions and experiments
    scores = {k: v for k, v in result.metrics.items() if scored(k)}
    paths.atomic_write_text(
        plot_dir / "scores.csv", "metric,score\n" + "".join(f"{k},{v}\n" for k, v in scores.items())
    )
    return plots(cfg, plot_dir, result.metrics, result.champion, result.by_length)


def _log_run(cfg: Config, run: RunHandle, result: EvaluateResult, rows, generation, settings, pngs) -> None:
    """The run's evaluation metrics (the champion's on the same rows beside them, the
    degenerate-output figures), the predictions, the settings and the plots."""
    import pandas as pd

    logged = dict(result.metrics)
    run.set_experiment_tag(lineage.PRIMARY_TAG, result.primary)  # the UI's primary metric is the gates'
    run.set_experiment_tag(lineage.VIEW_TAG, lineage.runs_view(cfg))  # its runs list: these metrics, best first
    if result.champion:
        logged.update({f"champion_{k}": v for k, v in result.champion["metrics"].items()})
        run.set_tags({"compared_with_champion": result.champion["version"]})
    logged.update(result.degenerate["figures"])  # MLflow charts them; metrics.json keeps the scores alone
    run.log_metrics(logged)
    run.log_artifact(cfg.resolve(result.predictions_path), artifact_path="evaluation")
    run.log_table(pd.DataFrame(rows), "evaluation/predictions_table.json")
    run.log_dict(generation, "evaluation/generation_config.json")
    run.log_dict({**settings, "by_input_length": result.by_length}, "evaluation/settings.json")
    for png in pngs:
        run.log_artifact(png, artifact_path="plots")


def main(argv: list[str] | None = None) -> int:
    from tasks.stage_runner import stage_main

    def run(cfg: Config, owner) -> EvaluateResult:
        trained = TrainResult.load(cfg.path("reports"))
        return evaluate(
            cfg, trained, IngestResult.load(cfg.path("data")), owner.attach(trained.run_id, trained.data_version)
        )

    return stage_main("evaluate", run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
