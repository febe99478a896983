"""Every model kind the project trains registers and predicts from a fresh process: the
recurrent model (its code ships with the MLflow model) and LoRA, merged or as adapter + base."""

import json
import subprocess
import sys

import pytest
from conftest import make_project

from tasks.core.config import load_config
from tasks.evaluate import evaluate
from tasks.ingest import ingest
from tasks.register import register
from tasks.train import train
from tasks.validate import validate

pytestmark = pytest.mark.integration

KINDS = {
    "rnn-gru": {"train": {"model": "rnn", "rnn": {"embedding_size": 16, "hidden_size": 24}, "max_steps": 6}},
    "rnn-lstm": {
        "train": {"model": "rnn", "rnn": {"cell": "lstm", "embedding_size": 16, "hidden_size": 24}, "max_steps": 6}
    },
    "lora-merged": {"train": {"peft": True, "lora_r": 4, "max_steps": 6}},
    "lora-adapter": {"train": {"peft": True, "lora_r": 4, "max_steps": 6}, "register": {"lora_export": "adapter"}},
}


# make test-slow: the GRU differs from the LSTM in its cell only, and the merged LoRA from the
# adapter in its export only (the CI budget)
SLOW_KINDS = ("rnn-gru", "lora-merged")


@pytest.mark.parametrize("kind", [pytest.param(k, marks=pytest.mark.slow) if k in SLOW_KINDS else k for k in KINDS])
def test_kind_registers_and_predicts_in_a_fresh_process(tmp_path, kind):
    root = make_project(tmp_path / "proj", params=KINDS[kind])
    cfg = load_config(root=root)
    ingested = ingest(cfg)
    validate(cfg, ingested)
    trained = train(cfg, ingested)
    registered = register(cfg, trained, evaluate(cfg, trained, ingested), ingested)
    code = (
        "import json, mlflow\n"
        f"mlflow.set_tracking_uri({cfg.tracking_uri()!r})\n"
        f"m = mlflow.pyfunc.load_model({registered.model_uri!r})\n"
        "print(json.dumps(m.predict(['Forecasters expect a sunny Monday in Bergen.', 'Lyon council met.'])))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert isinstance(out, list) and len(out) == 2 and all(isinstance(s, str) for s in out)
