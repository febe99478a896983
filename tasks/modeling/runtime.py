"""Device and precision, decided once per process from the hardware and the train settings.

Stages ask the policy; no ``cpu_only`` flags are threaded through function signatures.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tasks.core.errors import ConfigError

logger = logging.getLogger(__name__)

T5_FAMILY = ("t5", "mt5", "umt5", "longt5")


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
    def resolve(cls, mixed_precision: str | None, quantization: str | None = None) -> Runtime:
        """Pick the device and check that the requested precision and quantization fit it."""
        import torch

        cuda = torch.cuda.is_available()
        device, n = ("cuda", torch.cuda.device_count()) if cuda else ("cpu", 1)
        if mixed_precision == "fp16" and not cuda:
            raise ConfigError("train.mixed_precision=fp16 needs a CUDA GPU; unset it (or use bf16) on CPU")
        if mixed_precision == "bf16" and cuda and not torch.cuda.is_bf16_supported():
            raise ConfigError("this GPU does not support bf16; use train.mixed_precision=fp16 or unset it")
        if mixed_precision == "bf16" and not cuda:
            logger.warning("bf16 on CPU is emulated on most processors and often slower than fp32")
        if quantization and not cuda:
            raise ConfigError(
                f"train.quantization={quantization} needs a CUDA GPU (bitsandbytes kernels); "
                "unset it to train in full precision on CPU"
            )
        return cls(device=device, n_devices=n, bf16=mixed_precision == "bf16", fp16=mixed_precision == "fp16")

    def check_model(self, model_type: str) -> None:
        """Precision advice that depends on the architecture."""
        if self.fp16 and model_type in T5_FAMILY:
            logger.warning("T5 models overflow in fp16 and train to NaN losses; prefer train.mixed_precision=bf16")
