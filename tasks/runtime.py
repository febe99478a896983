"""Device and precision, decided once per process from the hardware and ``train.mixed_precision``.

Stages ask the policy; no ``cpu_only`` flags are threaded through function signatures.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tasks.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Runtime:
    device: str  # "cuda" or "cpu"
    n_devices: int
    bf16: bool
    fp16: bool

    @property
    def precision(self) -> str:
        return "bf16" if self.bf16 else "fp16" if self.fp16 else "fp32"

    @classmethod
    def resolve(cls, mixed_precision: str | None, model_type: str = "") -> "Runtime":
        """Pick the device and check that the requested precision makes sense on it."""
        import torch

        cuda = torch.cuda.is_available()
        device, n = ("cuda", torch.cuda.device_count()) if cuda else ("cpu", 1)
        if mixed_precision == "fp16":
            if not cuda:
                raise ConfigError("train.mixed_precision=fp16 needs a CUDA GPU; unset it (or use bf16) on CPU")
            if model_type in ("t5", "mt5", "umt5"):
                logger.warning(
                    "T5 models overflow in fp16 and train to NaN losses; prefer train.mixed_precision=bf16"
                )
        if mixed_precision == "bf16" and cuda and not torch.cuda.is_bf16_supported():
            raise ConfigError("this GPU does not support bf16; use train.mixed_precision=fp16 or unset it")
        return cls(device=device, n_devices=n, bf16=mixed_precision == "bf16", fp16=mixed_precision == "fp16")
