"""The shared encoder at serving time: the exported ONNX graph under onnxruntime on CPU, fed
by the fast tokenizer. Same ``encode`` contract as :class:`retrieval.encoder.Encoder`,
no torch."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from retrieval.encoder import MAX_LENGTH, by_length

ONNX_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"


class OnnxEncoder:
    """Embeds texts into (N, D) float32 unit vectors with onnxruntime."""

    def __init__(self, folder: Path | str, max_length: int = MAX_LENGTH, threads: int = 0):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.path = Path(folder)
        self.max_length = max_length
        self.tokenizer = Tokenizer.from_file(str(self.path / TOKENIZER_FILE))
        self.tokenizer.enable_truncation(max_length)
        self.tokenizer.enable_padding()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            str(self.path / ONNX_FILE), options, providers=["CPUExecutionProvider"]
        )
        self.dim = int(self.session.get_outputs()[0].shape[1])  # exported as (batch, D)

    @staticmethod
    def available(folder: Path) -> bool:
        return (folder / ONNX_FILE).is_file() and (folder / TOKENIZER_FILE).is_file()

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> npt.NDArray[np.float32]:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = by_length(texts)  # batches of similar length: little padding
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            batch = self.tokenizer.encode_batch([texts[i] for i in rows])
            ids = np.asarray([b.ids for b in batch], dtype=np.int64)
            mask = np.asarray([b.attention_mask for b in batch], dtype=np.int64)
            (emb,) = self.session.run(None, {"input_ids": ids, "attention_mask": mask})
            out[rows] = emb
        return out
