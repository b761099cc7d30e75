"""Training arithmetic: bf16 autocast only where the hardware does bf16 natively, and an
explicit ``precision`` really changes the arithmetic while the saved weights stay float32."""

from __future__ import annotations

from types import MappingProxyType

import numpy as np
import pytest
import torch

from retrieval.encoder import Encoder, base_model_path
from training import precision
from training.args import TrainingArguments
from training.intents import train_intents

from .test_intents import ROWS

CPU = torch.device("cpu")
CUDA = torch.device("cuda")


@pytest.mark.parametrize(
    ("caps", "device", "setting", "expected"),
    [
        ({"avx2": True}, CPU, "auto", False),  # emulated bf16 would be slower than fp32
        ({"avx512_f": True, "avx512_vnni": True}, CPU, "auto", False),
        ({"avx512_f": True, "avx512_bf16": True}, CPU, "auto", True),
        ({"amx_tile": True, "amx_bf16": True}, CPU, "auto", True),
        ({"avx2": True}, CUDA, "auto", True),
        ({"avx512_bf16": True}, CPU, "fp32", False),
        ({"avx512_bf16": True}, CUDA, "fp32", False),
        ({"avx2": True}, CPU, "bf16", True),
    ],
)
def test_bf16_where_the_hardware_has_it_unless_told(
    monkeypatch: pytest.MonkeyPatch,
    caps: dict[str, bool],
    device: torch.device,
    setting: str,
    expected: bool,
) -> None:
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: MappingProxyType(caps))
    assert precision.uses_bf16(setting, device) is expected


def test_bf16_training_changes_the_arithmetic_not_the_saved_format() -> None:
    """The same seed and data in fp32 and in bf16 give different (both working) models,
    and the bf16-trained encoder's weights are still float32."""
    texts, labels = [t for t, _ in ROWS], [y for _, y in ROWS]
    results = {}
    for setting in ("fp32", "bf16"):
        encoder = Encoder(base_model_path())
        args = TrainingArguments(epochs=3, batch_size=4, seed=2, precision=setting)
        results[setting] = (encoder, train_intents(encoder, texts, labels, args, progress=False))
    fp32, bf16 = (results[s][1].head for s in ("fp32", "bf16"))
    assert not np.allclose(fp32.weight, bf16.weight, atol=1e-4)
    encoder, result = results["bf16"]
    assert {p.dtype for p in encoder.model.parameters()} == {torch.float32}
    probs, _ = result.head.predict(encoder.encode(texts))
    assert [result.head.intents[i] for i in probs.argmax(axis=1)] == labels
