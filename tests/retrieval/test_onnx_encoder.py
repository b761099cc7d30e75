"""How the ONNX encoder batches texts: by token length, so short messages are not padded to
the length of long context windows."""

from __future__ import annotations

from pathlib import Path

import pytest

from retrieval.onnx_encoder import length_batches


@pytest.mark.parametrize(
    ("lengths", "batch_size", "expected"),
    [
        ([], 8, []),
        ([10], 8, [[0]]),
        # a message and its 80-token context window: two runs, not one padded to 80
        ([12, 80], 8, [[0], [1]]),
        # similar lengths share a batch, in length order
        ([20, 12, 14, 80, 90], 8, [[1, 2, 0], [3, 4]]),
        ([12, 30], 8, [[0], [1]]),
        # the batch size still caps a batch
        ([10, 10, 10, 10, 10], 2, [[0, 1], [2, 3], [4]]),
    ],
)
def test_length_batches(lengths: list[int], batch_size: int, expected: list[list[int]]) -> None:
    assert length_batches(lengths, batch_size) == expected


def test_every_row_once_and_padding_bounded() -> None:
    lengths = [(i * 37) % 128 + 3 for i in range(500)]
    batches = length_batches(lengths, 32)
    assert sorted(i for b in batches for i in b) == list(range(500))
    for batch in batches:
        shortest = min(lengths[i] for i in batch)
        assert max(lengths[i] for i in batch) <= 1.5 * shortest + 4


def test_int8_falls_back_to_fp32_when_the_bundle_has_no_int8_export(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Bundles trained before the int8 export still serve (fp32), and say so."""
    from retrieval.bundle import load_encoder
    from retrieval.onnx_encoder import ONNX_FILE, OnnxEncoder

    folder = tmp_path / "encoder"
    folder.mkdir()
    calls: list[bool] = []

    class Fake:
        def __init__(self, path: Path, int8: bool = False, threads: int = 0) -> None:
            calls.append(int8)

    (folder / ONNX_FILE).write_bytes(b"")
    (folder / "tokenizer.json").write_text("{}")
    monkey = pytest.MonkeyPatch()
    monkey.setattr("retrieval.bundle.OnnxEncoder", Fake)
    monkey.setattr(Fake, "available", staticmethod(OnnxEncoder.available), raising=False)
    try:
        with caplog.at_level("WARNING"):
            load_encoder(folder, int8=True)
    finally:
        monkey.undo()
    assert calls == [False]
    assert "no int8 export" in caplog.text
