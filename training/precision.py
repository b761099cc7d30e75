"""Which float format the training steps run in: bfloat16 autocast where the hardware
multiplies in it natively (CUDA; CPUs with AVX-512 BF16 or AMX), float32 elsewhere.

On a CPU without native bf16, autocast would emulate it and run slower than float32, so
``auto`` only turns it on where it pays (BENCHMARKS.md, issue 3). The weights stay float32
either way: autocast changes the arithmetic of the forward pass, not what is saved."""

from __future__ import annotations

from typing import Literal, get_args

import torch

Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS: frozenset[str] = frozenset(get_args(Precision))


def native_cpu_bf16() -> bool:
    """True when this CPU has bfloat16 dot products (AVX-512 BF16 or AMX)."""
    caps = torch.cpu.get_capabilities()
    return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))


def uses_bf16(precision: str, device: torch.device | str) -> bool:
    """Whether a training step on ``device`` runs under bf16 autocast."""
    if precision == "fp32":
        return False
    if precision == "bf16":
        return True
    kind = torch.device(device).type
    return kind == "cuda" or (kind == "cpu" and native_cpu_bf16())


def resolved(precision: str, device: torch.device | str) -> str:
    """What a model's manifest records: the arithmetic its training steps ran in."""
    return "bf16" if uses_bf16(precision, device) else "fp32"
