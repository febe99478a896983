"""The registered model: an MLflow pyfunc that wraps a saved HF seq2seq folder and calls generate.

Logged as "model from code": MLflow stores this file's source beside the weights and runs it at
load time, so nothing is pickled and the model loads in any process with torch and transformers
installed (``mlflow.pyfunc.load_model("models:/<name>@champion")``). It imports nothing from
this project except ``rnn_model.py`` (the recurrent model type) and ``ct2.py`` (CTranslate2
generation), which the logged model carries as code (MLflow's ``code_paths``). A LoRA version
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
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        path = context.artifacts["hf_model"]
        with open(context.artifacts["settings"], encoding="utf-8") as fh:
            self.settings = json.load(fh)
        try:  # the recurrent model type, shipped beside this file
            import rnn_model

            rnn_model.register()
        except ImportError:
            pass
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        wanted = os.environ.get("S2S_BACKEND") or self.settings.get("backend", "auto")
        if wanted not in ("auto", "hf", "ct2"):
            raise ValueError(f"S2S_BACKEND={wanted!r}: use auto, hf or ct2")
        self.backend, self.translator = "hf", None
        converted = context.artifacts.get("ct2_model")
        if wanted != "hf" and converted:
            try:
                import ct2  # shipped beside this file

                compute = os.environ.get("S2S_COMPUTE_TYPE") or self.settings.get("compute_type", "auto")
                self.translator = ct2.translator(converted, compute)
                self.decoder_start_counts = ct2.decoder_start_counts(path)
                self.generation = ct2.generation_settings(path)
                self.backend = "ct2"
            except ImportError:
                if wanted == "ct2":
                    raise
        elif wanted == "ct2":
            raise ValueError("S2S_BACKEND=ct2, but this version carries no CTranslate2 model")
        if self.backend == "hf":
            if os.path.isfile(os.path.join(path, "adapter_config.json")):
                from peft import AutoPeftModelForSeq2SeqLM

                self.model = AutoPeftModelForSeq2SeqLM.from_pretrained(path)
            else:
                self.model = AutoModelForSeq2SeqLM.from_pretrained(path, use_safetensors=True)
            self.model.eval()

    def predict(self, context, model_input: list[str], params: dict | None = None) -> list[str]:  # noqa: ARG002 (MLflow looks for `context`)
        import torch

        s = {**self.settings, **(params or {})}  # written by register (tasks/modeling/generation.decoding)
        prefix = s.get("source_prefix", "")
        texts = [t if not prefix or t.startswith(prefix) else prefix + t for t in model_input]
        if self.backend == "ct2":
            import ct2

            return ct2.generate(
                self.translator,
                self.tokenizer,
                texts,
                batch_size=int(s["batch_size"]),
                num_beams=int(s["num_beams"]),
                max_new_tokens=int(s["max_new_tokens"]),
                max_source=int(s["max_source_length"]),
                length_penalty=float(self.generation.get("length_penalty", 1.0)),
                no_repeat_ngram_size=int(self.generation.get("no_repeat_ngram_size") or 0),
                decoder_start_counts=self.decoder_start_counts,
                progress=False,
            )[0]
        out: list[str] = []
        with torch.inference_mode():
            for i in range(0, len(texts), int(s["batch_size"])):
                batch = self.tokenizer(
                    texts[i : i + int(s["batch_size"])],
                    return_tensors="pt",
                    padding=True,
                    truncation=True,
                    max_length=int(s["max_source_length"]),
                )
                ids = self.model.generate(
                    **batch,
                    num_beams=int(s["num_beams"]),
                    max_new_tokens=int(s["max_new_tokens"]),
                    do_sample=False,
                )
                out.extend(t.strip() for t in self.tokenizer.batch_decode(ids, skip_special_tokens=True))
        return out


mlflow.models.set_model(Seq2SeqGenerator())
