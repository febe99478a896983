"""The end-of-run summary: what was trained on, how well it did, what happened in the registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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

    @property
    def total_seconds(self) -> float:
        return self.wall_seconds if self.wall_seconds is not None else sum(self.stage_seconds.values())

    def ui_command(self) -> str:
        if self.tracking_uri.startswith(("http://", "https://")):
            return f"open {self.tracking_uri}"
        return f"mlflow ui --backend-store-uri {self.tracking_uri} --host 127.0.0.1 --port 5000"

    def format(self) -> str:
        verdict = "PROMOTED" if self.promoted else "NOT PROMOTED"
        lines = [
            "",
            f"== pipeline '{self.pipeline}' finished in {self.total_seconds:.1f}s ==",
            f"data version : {self.data_version}  (rows train/validation/test = "
            f"{self.rows.get('train', 0)}/{self.rows.get('validation', 0)}/{self.rows.get('test', 0)})",
            "metrics      : " + "  ".join(f"{k}={v:.4f}" if k != "gen_len" else f"{k}={v:.1f}"
                                          for k, v in self.metrics.items()),
            f"model        : {self.model_name} version {self.version} (run {self.run_id})",
            f"gate         : {verdict} -> alias '{self.alias}'",
        ]
        lines += [f"               - {r}" for r in self.reasons]
        overhead = self.total_seconds - sum(self.stage_seconds.values())
        lines.append("stages       : " + "  ".join(f"{k} {v:.1f}s" for k, v in self.stage_seconds.items())
                     + (f"  (orchestration {overhead:.1f}s)" if self.wall_seconds is not None else ""))
        if self.worst:
            lines.append("worst examples (lowest rougeL):")
            for w in self.worst:
                lines.append(f"  row {w.get('source_row')}: rougeL={w.get('rougeL', 0):.2f}")
                lines.append(f"    reference : {w.get('reference')}")
                lines.append(f"    prediction: {w.get('prediction')}")
        lines.append(f"MLflow UI    : {self.ui_command()}")
        return "\n".join(lines)
