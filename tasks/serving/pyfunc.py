"""The registered model: an MLflow pyfunc that wraps a saved HF seq2seq folder and calls generate.

Logged as "model from code": MLflow stores this file's source beside the weights and runs it at
load time, so nothing is pickled and the model loads in any process with torch and transformers
installed (``mlflow.pyfunc.load_model("models:/<name>@champion")``). It imports nothing from
this project except the generation layer evaluation used (``engines.py`` with ``ct2.py`` and
``generation.py``) and ``rnn_model.py`` (the recurrent model type), which the logged model
carries as code (MLflow's ``code_paths``), so a version generates as it was scored. A LoRA version
holding only the adapter loads its base model (hub id or path recorded in the adapter) through
PEFT.

Backends: a version whose model CTranslate2 converts carries the converted copy (artifact
``ct2_model``) and generates with it when ctranslate2 is installed; otherwise, or with
``S2S_BACKEND=hf`` in the environment at load time, with transformers. ``S2S_BACKEND=ct2``
makes a missing engine an error instead of a fallback; ``S2S_COMPUTE_TYPE`` overrides the
compute type the pipeline evaluated with. The chosen backend is the attribute ``backend``
(``model.unwrap_python_model().backend``).

transformers 5 removed the text2text-generation pipeline and MLflow's transformers flavor
refuses seq2seq models there, hence this small wrapper.
"""

from __future__ import annotations

import json
import os

import mlflow
from mlflow.pyfunc import PythonModel


class Seq2SeqGenerator(PythonModel):
    """list[str] in, list[str] out; the training-time source prefix is applied automatically."""

    def load_context(self, context) -> None:
        import engines  # shipped beside this file (tasks/modeling/engines.py), with ct2.py and generation.py

        with open(context.artifacts["settings"], encoding="utf-8") as fh:
            self.settings = engines.GenerationSettings.from_dict(json.load(fh), "the version's settings.json")
        try:  # the recurrent model type, shipped beside this file
            import rnn_model

            rnn_model.register()
        except ImportError:
            pass
        asked = os.environ.get("S2S_BACKEND")
        if asked and asked not in engines.BACKENDS:
            raise ValueError(f"S2S_BACKEND={asked!r}: use {', '.join(engines.BACKENDS)}")
        env = {"backend": asked, "compute_type": os.environ.get("S2S_COMPUTE_TYPE")}
        self.settings = self.settings.overridden({k: v for k, v in env.items() if v})
        self.engine = engines.open_engine(
            context.artifacts["hf_model"],
            self.settings,
            strict=bool(asked) and asked != "auto",  # asked for in the environment: no fallback
            converted=context.artifacts.get("ct2_model"),
        )
        self.backend = self.engine.name

    def predict(self, context, model_input: list[str], params: dict | None = None) -> list[str]:  # noqa: ARG002 (MLflow looks for `context`)
        s = self.settings.overridden(params)
        return self.engine.generate(s.prefixed(list(model_input)), s, progress=False)[0]


mlflow.models.set_model(Seq2SeqGenerator())
