"""The shared encoder at serving time: the exported ONNX graph under onnxruntime on CPU, fed
by the fast tokenizer. Same ``encode`` contract as :class:`retrieval.encoder.Encoder`,
no torch."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from retrieval.encoder import MAX_LENGTH

ONNX_FILE = "model.onnx"
ONNX_INT8_FILE = "model.int8.onnx"
TOKENIZER_FILE = "tokenizer.json"


class OnnxEncoder:
    """Embeds texts into (N, D) float32 unit vectors with onnxruntime."""

    def __init__(
        self,
        folder: Path | str,
        max_length: int = MAX_LENGTH,
        threads: int = 0,
        int8: bool = False,
    ):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.path = Path(folder)
        self.max_length = max_length
        self.tokenizer = Tokenizer.from_file(str(self.path / TOKENIZER_FILE))
        self.tokenizer.enable_truncation(max_length)
        padding = self.tokenizer.padding  # the exported tokenizer pads; batches pad here
        self.pad_id = int(padding["pad_id"]) if padding else 0
        self.tokenizer.no_padding()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        # idle pool threads sleep instead of spinning: on a small server the event loop and
        # the store need those cores between batches
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.int8 = int8
        self.session = ort.InferenceSession(
            str(self.path / (ONNX_INT8_FILE if int8 else ONNX_FILE)),
            options,
            providers=["CPUExecutionProvider"],
        )
        self.dim = int(self.session.get_outputs()[0].shape[1])  # exported as (batch, D)

    @staticmethod
    def available(folder: Path) -> bool:
        return (folder / ONNX_FILE).is_file() and (folder / TOKENIZER_FILE).is_file()

    def encode(
        self, texts: Sequence[str], batch_size: int = 64, max_tokens: int | None = None
    ) -> npt.NDArray[np.float32]:
        """(N, D) unit vectors; ``max_tokens`` truncates shorter than the model's limit
        (keeping the closing [SEP]), as the torch encoder's tokenizer does."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        ids_of = [e.ids for e in self.tokenizer.encode_batch(list(texts))]
        if max_tokens is not None and max_tokens < self.max_length:
            ids_of = [
                ids if len(ids) <= max_tokens else [*ids[: max_tokens - 1], ids[-1]]
                for ids in ids_of
            ]
        lengths = [len(ids) for ids in ids_of]
        for rows in length_batches(lengths, batch_size):
            width = max(lengths[i] for i in rows)
            ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                ids[r, : lengths[i]] = ids_of[i]
                mask[r, : lengths[i]] = 1
            (emb,) = self.session.run(None, {"input_ids": ids, "attention_mask": mask})
            out[rows] = emb
        return out


PADDING_SLACK = 1.5
"""A batch takes texts up to this many times as long (in tokens) as its shortest one."""


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Row indices in batches of similar token length: at most ``batch_size`` rows, and a
    new batch where a text is much longer than the batch's shortest, so that a short
    message is not padded to the length of a long context window (attention is quadratic
    in the padded length, so the waste is more than proportional)."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    batches: list[list[int]] = []
    for i in order:
        if (
            not batches
            or len(batches[-1]) >= batch_size
            or lengths[i] > PADDING_SLACK * lengths[batches[-1][0]] + 4
        ):
            batches.append([])
        batches[-1].append(i)
    return batches
