"""Metric modules shipped with the project and loaded by path with ``evaluate.load``.

``evaluate.load("rouge")`` fetches its script from the Hugging Face hub, which these machines
cannot reach; loading ``tasks/metrics/rouge`` by path needs no network at all.
"""

from pathlib import Path

ROUGE = str(Path(__file__).parent / "rouge")
SACREBLEU = str(Path(__file__).parent / "sacrebleu")
