"""Export a fine-tuned encoder (transformer + mean pooling + L2 norm) to ONNX, so that
serving needs onnxruntime and the tokenizer only, not torch."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from retrieval.encoder import Encoder
from retrieval.onnx_encoder import ONNX_FILE, ONNX_INT8_FILE


class _Pooled(torch.nn.Module):
    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        self.model = encoder.model
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        features = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "token_type_ids": torch.zeros_like(input_ids),
        }
        out: torch.Tensor = self.encoder.embed(features)
        return out


def export_onnx(encoder: Encoder, folder: Path, opset: int = 17) -> Path:
    """Write ``folder/model.onnx`` next to the saved encoder; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ONNX_FILE
    wrapped = _Pooled(encoder).to("cpu").eval()
    was = encoder.device
    encoder.model.to("cpu")
    sample = encoder.tokenizer(
        ["an example message", "a second, somewhat longer example message"],
        padding=True,
        return_tensors="pt",
    )
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapped,
                (sample["input_ids"], sample["attention_mask"]),
                str(path),
                input_names=["input_ids", "attention_mask"],
                output_names=["embeddings"],
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "tokens"},
                    "attention_mask": {0: "batch", 1: "tokens"},
                    "embeddings": {0: "batch"},
                },
                opset_version=opset,
                dynamo=False,
            )
    finally:
        encoder.model.to(was)
    quantize_int8(path)
    return path


def quantize_int8(fp32: Path) -> Path:
    """``model.int8.onnx`` beside ``fp32``: dynamic int8 weights (onnxruntime), the faster
    serving option (``FRONTDESK_ENCODER_INT8``).

    One scale per output channel, and 7-bit weights (``reduce_range``): CPUs without VNNI
    multiply uint8 activations by int8 weights in pairs summed into int16, which full-range
    weights can overflow. Banking77, same model (``benchmarks/intents_onnx.py``): per-tensor
    full-range weights lost 0.33 point and changed 59 of 3,080 predictions; these keep the
    fp32 accuracy (24 changed, as many right as wrong)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = fp32.with_name(ONNX_INT8_FILE)
    quantize_dynamic(
        str(fp32), str(target), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True
    )
    return target
