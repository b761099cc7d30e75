"""How the ONNX encoder batches texts: by token length, so short messages are not padded to
the length of long context windows."""

from __future__ import annotations

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
