"""How a model generates: the settings (one shape, built once) and the engine table.

``GenerationSettings`` is how every model of a pipeline generates: the candidate and the champion
in evaluation, and the registered version when it is served or asked by ``s2s predict`` (register
writes it into the version's ``settings.json``; the pyfunc reads it back with
``GenerationSettings.from_dict``). ``ENGINES`` is the table of backends: each row is a class that
says why it cannot take a model folder (``unsupported``), opens it, and generates. ``open_engine``
picks the row for ``settings.backend`` (``auto`` tries ``AUTO_ORDER``). A new backend is one module
plus one row here.

The registered model ships this file beside its pyfunc (MLflow ``code_paths``) with ``ct2.py`` and
``generation.py``, so it imports nothing else from this project: in the project its siblings come
from ``tasks.modeling``, in a logged model from beside it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

if __package__:  # in the project
    from . import ct2, generation
else:  # shipped beside the registered model's pyfunc
    import ct2  # type: ignore[no-redef]
    import generation  # type: ignore[no-redef]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding for one pipeline. Built from the config once (``from_config``), written with the
    version (``to_dict``), read back by the pyfunc (``from_dict``); a request's parameters
    override fields by name (``overridden``)."""

    source_prefix: str
    num_beams: int
    max_new_tokens: int
    max_source_length: int
    batch_size: int
    backend: str  # S2S_BACKEND at load time wins
    compute_type: str  # S2S_COMPUTE_TYPE at load time wins

    @classmethod
    def from_config(cls, cfg) -> GenerationSettings:
        ev = cfg.evaluate
        return cls(
            source_prefix=cfg.ingest.source_prefix,
            num_beams=ev.num_beams,
            max_new_tokens=ev.generation_max_length,
            max_source_length=cfg.train.max_seq_length,
            batch_size=ev.batch_size,
            backend=ev.backend,
            compute_type=ev.compute_type,
        )

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "generation settings") -> GenerationSettings:
        """Settings from a mapping: every field is required, each takes its field's type, and a
        key that is no field is refused by name."""
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(names))
        missing = sorted(set(names) - set(values))
        if unknown or missing:
            parts = ([f"unknown {', '.join(unknown)}"] if unknown else []) + (
                [f"missing {', '.join(missing)}"] if missing else []
            )
            raise ValueError(f"{where}: {'; '.join(parts)} (fields: {', '.join(names)})")
        out = {}
        for name, value in values.items():
            if names[name].type == "int":
                whole = isinstance(value, int) and not isinstance(value, bool)
                if not whole and not (isinstance(value, str) and value.strip().isdigit()):
                    raise ValueError(f"{where}: {name}={value!r} is not a whole number")
                out[name] = int(value)
                if out[name] < 1:
                    raise ValueError(f"{where}: {name}={value!r} must be at least 1")
            elif isinstance(value, str):
                out[name] = value
            else:
                raise ValueError(f"{where}: {name}={value!r} is not text")
        return cls(**out)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def overridden(self, params: dict[str, Any] | None) -> GenerationSettings:
        """These settings with a request's ``params`` in place of the fields they name."""
        return self if not params else GenerationSettings.from_dict({**self.to_dict(), **params}, "params")

    def batching(self) -> dict[str, int]:
        """The keyword arguments every engine's generate loop takes from these settings."""
        return {
            "batch_size": self.batch_size,
            "num_beams": self.num_beams,
            "max_new_tokens": self.max_new_tokens,
            "max_source": self.max_source_length,
        }

    def prefixed(self, texts: list[str]) -> list[str]:
        """``texts`` with the training-time source prefix added where it is missing."""
        p = self.source_prefix
        return [t if not p or t.startswith(p) else p + t for t in texts]


def load_hf(path: str):
    """Tokenizer and model of a saved folder as the registered model loads them: an adapter-only
    folder through PEFT (it names its base model), any other with safetensors weights."""
    import os

    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    if os.path.isfile(os.path.join(path, "adapter_config.json")):
        from peft import AutoPeftModelForSeq2SeqLM

        model = AutoPeftModelForSeq2SeqLM.from_pretrained(path)
    else:
        model = AutoModelForSeq2SeqLM.from_pretrained(path, use_safetensors=True)
    return AutoTokenizer.from_pretrained(path), model


class HF:
    """transformers: the shrinking greedy loop where it is exact, else ``generate``. Takes every
    folder."""

    name = "hf"

    @staticmethod
    def unsupported(model_dir: str, converted: str | None = None, cache=None) -> str | None:  # noqa: ARG004 (the table's signature)
        return None

    def __init__(self, model_dir: str, settings: GenerationSettings, *, load: Callable | None = None, **_: Any):  # noqa: ARG002 (the table's signature)
        self.tokenizer, self.model = (load or load_hf)(model_dir)
        self.model.eval()
        self.label = "hf"
        config = getattr(self.model, "generation_config", None)
        self.generation = config.to_dict() if config is not None else {}

    def generate(self, texts: list[str], s: GenerationSettings, desc: str = "generate", progress: bool = True):
        return generation.generate(self.model, self.tokenizer, texts, **s.batching(), desc=desc, progress=progress)


class CT2:
    """CTranslate2: a converted copy (given, or converted into ``cache`` by content hash)."""

    name = "ct2"

    @staticmethod
    def unsupported(model_dir: str, converted: str | None = None, cache=None) -> str | None:
        if not ct2.available():
            return "ctranslate2 is not installed"
        if converted:
            return None
        if cache is None:
            return "this version carries no CTranslate2 model"
        return ct2.unsupported(model_dir)

    def __init__(
        self,
        model_dir: str,
        settings: GenerationSettings,
        *,
        converted: str | None = None,
        cache=None,
        load_tokenizer: Callable | None = None,
        **_: Any,
    ):
        from transformers import AutoTokenizer

        self.translator = ct2.translator(converted or ct2.convert(model_dir, cache), settings.compute_type)
        self.tokenizer = (load_tokenizer or AutoTokenizer.from_pretrained)(model_dir)
        self.generation = ct2.generation_settings(model_dir)
        self.start_counts = ct2.decoder_start_counts(model_dir)
        self.label = f"ct2 {self.translator.compute_type}"

    def generate(self, texts: list[str], s: GenerationSettings, desc: str = "generate", progress: bool = True):
        return ct2.generate(
            self.translator,
            self.tokenizer,
            texts,
            **s.batching(),
            length_penalty=float(self.generation.get("length_penalty", 1.0)),
            no_repeat_ngram_size=int(self.generation.get("no_repeat_ngram_size") or 0),
            decoder_start_counts=self.start_counts,
            desc=desc,
            progress=progress,
        )


ENGINES = {"hf": HF, "ct2": CT2}
AUTO_ORDER = ("ct2", "hf")  # ``auto``: the first that takes the folder (hf takes every one)
BACKENDS = ("auto", *ENGINES)


def choose(wanted: str, model_dir: str, *, strict: bool = False, converted: str | None = None, cache=None) -> str:
    """The engine for ``wanted`` and this folder. A named engine that cannot take it falls back to
    the next of ``AUTO_ORDER`` with a warning, or with ``strict`` is an error naming why."""
    if wanted not in BACKENDS:
        raise ValueError(f"backend {wanted!r}: use {', '.join(BACKENDS)}")
    order = AUTO_ORDER if wanted == "auto" else (wanted, *(n for n in AUTO_ORDER if n != wanted))
    for name in order:
        why = ENGINES[name].unsupported(model_dir, converted, cache)
        if why is None:
            return name
        if name == wanted and strict:
            raise ValueError(f"backend {wanted} asked for, but {why}")
        (logger.warning if name == wanted else logger.info)("%s does not generate with %s: %s", model_dir, name, why)
    raise ValueError(f"no engine takes {model_dir}")


def open_engine(model_dir: str, settings: GenerationSettings, *, strict: bool = False, **opening: Any):
    """The engine ``settings.backend`` picks for ``model_dir``, opened. ``opening`` goes to the
    row's constructor (``converted``, ``cache``, ``load``, ``load_tokenizer``)."""
    name = choose(
        settings.backend, model_dir, strict=strict, converted=opening.get("converted"), cache=opening.get("cache")
    )
    return ENGINES[name](model_dir, settings, **opening)
