"""The end-of-run summary: what was trained on, how well it did, what happened in the registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def _metric(name: str):
    from tasks import metrics

    return metrics.get(name)


def _in_summary(name: str) -> bool:
    m = _metric(name)
    return m is None or m.summary


def _lower_is_better(name: str) -> bool:
    m = _metric(name)
    return m is not None and m.higher_is_better is False


def shown(name: str, value: float) -> str:
    """As the metric reads: lengths to one decimal, 0-100 scores to two, 0-1 scores to four."""
    m = _metric(name)
    if m is not None and m.higher_is_better is None:
        return f"{name}={value:.1f}"
    return f"{name}={value:.2f}" if value > 1.0 else f"{name}={value:.4f}"


def stage_figure(name: str, result: Any) -> str:
    """The one figure that says how a stage went, for its console line."""
    try:
        if name == "ingest":
            rows = "/".join(str(result.rows.get(k, 0)) for k in ("train", "validation", "test"))
            return f"train/validation/test = {rows} rows, data version {result.data_version[:12]}"
        if name == "validate":
            return f"{len(result.checks)} checks passed" + (
                f", {len(result.warnings)} warnings" if result.warnings else ""
            )
        if name == "train":
            m = result.metrics
            return (
                f"{int(m.get('train_steps', 0))} steps, {m.get('train_tokens_per_s', 0):,.0f} tokens/s, "
                f"final loss {m.get('train_loss_final', float('nan')):.3f}"
            )
        if name == "evaluate":
            first = [result.primary] + [k for k in result.metrics if k != result.primary]
            return "  ".join(shown(k, result.metrics[k]) for k in first if k in result.metrics) + (
                f"  ({result.n_examples} {result.split} rows)"
            )
        if name == "register":
            return f"{result.model_name} version {result.version}"
        if name == "promote":
            if result.awaiting:
                champion = f"v{result.champion}" if result.champion else "none (no champion yet)"
                return (
                    f"AWAITING APPROVAL: v{result.version} passed the gates and waits for a person "
                    f"(alias {result.alias}); the champion stays {champion} until then"
                )
            return "PROMOTED" if result.promoted else f"not promoted (failed: {', '.join(result.failed) or 'none'})"
    except (AttributeError, KeyError, TypeError):
        pass
    return ""


def resumed_text(trained: Any) -> str:
    """Where a resumed training went on from, for the summary ('' for a fresh one)."""
    step = getattr(trained, "resumed_from", "")
    if not step:
        return ""
    before = getattr(trained, "resumed_flow_run", "")
    return f"training resumed from {step}" + (f" of flow run {before} (it crashed; closed)" if before else "")


def outputs_text(cfg: Any, evaluated: Any) -> str:
    """The degenerate-output figures as the summary shows them: flagged DEGENERATE when one crosses
    its limit (``promote.degenerate``), whether or not the gate refuses it; '' when not measured."""
    from tasks.promote import degenerate_measures

    figures = (getattr(evaluated, "degenerate", None) or {}).get("figures")
    if not figures:
        return ""
    limits = cfg.promote.degenerate
    measures = degenerate_measures(figures, limits)
    failed = [found for bad, _, found, _ in measures if bad]
    if failed:
        return "DEGENERATE: " + ", ".join(failed) + ("" if limits.refuse else " (promote.degenerate.refuse is off)")
    loops = figures.get("reference_repeating_share") or 0.0  # said only when the references loop
    return (
        f"{figures['empty_share']:.1%} empty, {figures['repeating_share']:.1%} repeating"
        + (f" (references {loops:.1%})" if loops else "")
        + f", most common {figures['identical_share']:.1%} (references {figures['reference_identical_share']:.1%}), "
        f"length {figures['length_ratio']:.2f}x the references'"
    )


def bounds_hint(cfg: Any, failed: list[str], metrics: dict[str, float]) -> str:
    """For a candidate refused by an absolute bound (``min.rouge1``...): where the bounds are set
    and the values that would have let it through; '' when no bound failed."""
    bounds = [f for f in failed if f.split(".")[0] in ("min", "max") and f.split(".", 1)[1] in metrics]
    if not bounds:
        return ""
    needed = ", ".join(
        f"{b} {'<=' if b.startswith('min.') else '>='} {metrics[b.split('.', 1)[1]]:.4f}" for b in bounds
    )
    first = bounds[0]
    return (
        f"bounds are set in pipelines.yaml ({cfg.pipeline}: gates: min/max; params.yaml promote.gates for "
        f"every pipeline), for one run with --set promote.gates.{first}=VALUE; this candidate needs {needed}"
    )


@dataclass
class RunSummary:
    pipeline: str
    data_version: str
    rows: dict[str, int]
    metrics: dict[str, float]
    model_name: str
    version: str
    promoted: bool
    alias: str
    reasons: list[str]
    stage_seconds: dict[str, float]
    tracking_uri: str
    run_id: str
    worst: list[dict[str, Any]] = field(default_factory=list)
    wall_seconds: float | None = None  # the whole command, orchestration included
    skipped: list[str] = field(default_factory=list)  # stages whose dvc.lock record was still current
    champion: dict[str, Any] | None = None  # the champion the candidate was compared with
    alias_now: str | None = None  # the version the alias points at, read back from the registry at the end
    champion_alias: str = "champion"
    primary: str = ""
    awaiting: bool = False  # passed the gates, waits for a person (gates.approval: required)
    resumed: str = ""  # a killed training this run went on with: from which checkpoint, of which flow run
    outputs: str = ""  # the degenerate-output figures in a line, or what is degenerate about them
    bounds_hint: str = ""  # failed absolute bounds: where they are set and what this candidate would need

    @classmethod
    def of(
        cls, cfg, ingested, trained, evaluated, registered, promoted, seconds, skipped, alias_now: str | None = None
    ) -> RunSummary:
        from tasks.core.secrets import redact

        return cls(
            pipeline=cfg.pipeline,
            data_version=ingested.data_version,
            rows=ingested.rows,
            metrics=evaluated.metrics,
            model_name=registered.model_name,
            version=registered.version,
            promoted=promoted.promoted,
            alias=promoted.alias,
            reasons=promoted.reasons,
            stage_seconds=seconds,
            tracking_uri=redact(cfg.tracking_uri()),  # printed and saved: never the password
            run_id=trained.run_id,
            worst=evaluated.worst,
            skipped=skipped,
            champion=evaluated.champion,
            alias_now=alias_now,
            champion_alias=cfg.promote.alias,
            primary=evaluated.primary,
            awaiting=promoted.awaiting,
            resumed=resumed_text(trained),
            outputs=outputs_text(cfg, evaluated),
            bounds_hint=bounds_hint(cfg, promoted.failed, evaluated.metrics),
        )

    @property
    def holds(self) -> bool:
        """The registry agrees with the decision: a promoted version holds the alias."""
        return not self.promoted or self.alias_now == self.version

    @property
    def total_seconds(self) -> float:
        return self.wall_seconds if self.wall_seconds is not None else sum(self.stage_seconds.values())

    def ui_command(self) -> str:
        """How to look at this version in the MLflow UI, the UI in model-training mode."""
        from tasks.tracking import lineage

        page = lineage.model_page(self.model_name, self.version)
        if self.tracking_uri.startswith(("http://", "https://")):
            return f"open {self.tracking_uri.rstrip('/')}/#/{page}"
        return (
            f"mlflow ui --backend-store-uri {self.tracking_uri} --host 127.0.0.1 --port 5000, "
            f"then open http://127.0.0.1:5000/#/{page}"
        )

    def _read_back(self) -> str:
        if self.alias_now is None:
            return f"  (read back: no '{self.champion_alias}' in the registry)"
        if self.promoted and self.alias_now != self.version:
            return f"  (read back: '{self.champion_alias}' is now v{self.alias_now}, moved since)"
        return f"  (read back: '{self.champion_alias}' = v{self.alias_now})"

    def markdown(self) -> str:
        """The run as a markdown table: what the Prefect UI shows as the flow run's artifact, so a
        run can be judged there as from the terminal."""
        from tasks.core.secrets import redact

        def cell(text: Any) -> str:
            return str(text).replace("|", "\\|").replace("\n", " ")

        verdict = "PROMOTED" if self.promoted else ("AWAITING APPROVAL" if self.awaiting else "NOT PROMOTED")
        champion = self.champion or {}
        names = [k for k in self.metrics if _in_summary(k)]
        stages = "  ".join(f"{k} {v:.1f}s" for k, v in self.stage_seconds.items())
        rows = [
            f"## {self.model_name} v{self.version}: **{verdict}** (alias `{self.alias}`)",
            "",
            "| | |",
            "|---|---|",
            f"| pipeline | `{self.pipeline}` |",
            f"| data version | `{self.data_version}` |",
            "| rows train/validation/test | "
            + "/".join(str(self.rows.get(k, 0)) for k in ("train", "validation", "test"))
            + " |",
            f"| MLflow run | `{self.run_id}` |",
            f"| registry read-back | {cell(self._read_back().strip(' ()'))} |",
            f"| stages | {cell(stages or 'all up to date')} |",
            *([f"| resumed | {cell(self.resumed)} |"] if self.resumed else []),
            *([f"| outputs | {cell(self.outputs)} |"] if self.outputs else []),
            *(
                [
                    f"| compared on | {champion.get('rows')} test rows "
                    f"({champion.get('left_out', 0)} the champion trained on left out) |"
                ]
                if champion.get("rows")
                else []
            ),
            "",
            "| metric | candidate | champion"
            + (f" v{champion['version']}" if champion else "")
            + " | candidate - champion [paired interval] |",
            "|---|---|---|---|",
        ]
        intervals = champion.get("intervals") or {}
        for name in names:
            theirs = champion.get("metrics", {}).get(name)
            iv = intervals.get(name)
            rows.append(
                f"| {name}{' (primary)' if name == self.primary else ''} | {self.metrics[name]:.4f} | "
                + (f"{theirs:.4f}" if theirs is not None else "-")
                + " | "
                + (f"{iv['diff']:+.4f} [{iv['low']:+.4f}, {iv['high']:+.4f}] at {iv['confidence']:.0%}" if iv else "-")
                + " |"
            )
        rows += ["", "**Gate reasons**", ""] + [f"- {cell(r)}" for r in self.reasons]
        return redact("\n".join(rows))

    def format(self) -> str:
        verdict = "PROMOTED" if self.promoted else ("AWAITING APPROVAL" if self.awaiting else "NOT PROMOTED")
        lines = [
            "",
            f"== pipeline '{self.pipeline}' finished in {self.total_seconds:.1f}s ==",
        ]
        nothing_ran = bool(self.skipped) and not self.stage_seconds
        if nothing_ran:
            lines.append("nothing changed since dvc.lock recorded the last run: no stage ran; its results:")
        elif self.skipped:
            lines.append(f"unchanged, not re-run: {', '.join(self.skipped)}")
        lines += [
            f"data version : {self.data_version}  (rows train/validation/test = "
            f"{self.rows.get('train', 0)}/{self.rows.get('validation', 0)}/{self.rows.get('test', 0)})",
            "metrics      : " + "  ".join(shown(k, v) for k, v in self.metrics.items() if _in_summary(k)),
            *([f"outputs      : {self.outputs}"] if self.outputs else []),
            f"model        : {self.model_name} version {self.version} (run {self.run_id})",
            f"gate         : {verdict} -> alias '{self.alias}'" + self._read_back(),
        ]
        if self.resumed:
            lines.insert(-1, f"resumed      : {self.resumed}")
        if self.champion:
            lines.insert(-1, self._champion_line())
        lines += [f"               - {r}" for r in self.reasons]
        if self.bounds_hint:
            lines.append(f"               {self.bounds_hint}")
        overhead = self.total_seconds - sum(self.stage_seconds.values())
        lines.append(
            "stages       : "
            + "  ".join(f"{k} {v:.1f}s" for k, v in self.stage_seconds.items())
            + (f"  (orchestration {overhead:.1f}s)" if self.wall_seconds is not None else "")
        )
        if nothing_ran:
            lines[-1] = f"stages       : all up to date  (orchestration {overhead:.1f}s)"
        lines += self._worst_lines()
        from tasks.core.secrets import redact

        lines.append(f"MLflow UI    : {redact(self.ui_command())}")
        from tasks.core import logs

        if logs.current_file() is not None:
            lines.append(f"log file     : {logs.current_file()}")
        return "\n".join(lines)

    def _champion_line(self) -> str:
        left_out = self.champion.get("left_out", 0)
        return "champion     : v{} on the same {} rows{}: {}".format(
            self.champion["version"],
            self.champion.get("rows", ""),
            f" ({left_out} it trained on left out)" if left_out else "",
            "  ".join(shown(k, v) for k, v in self.champion["metrics"].items() if _in_summary(k) and k != "gen_len"),
        )

    def _worst_lines(self) -> list[str]:
        if not self.worst:
            return []
        lines = [f"worst examples ({'highest' if _lower_is_better(self.primary) else 'lowest'} {self.primary}):"]
        for w in self.worst:
            lines.append(f"  row {w.get('source_row')}: {self.primary}={w.get(self.primary, 0):.2f}")
            lines.append(f"    reference : {w.get('reference')}")
            lines.append(f"    prediction: {w.get('prediction')}")
        return lines
