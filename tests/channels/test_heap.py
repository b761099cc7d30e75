"""The process-wide freeze of a server's loaded heap (channels/heap.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from channels import heap


@pytest.fixture(autouse=True)
def thawed() -> Iterator[None]:
    assert gc.get_freeze_count() == 0, "another test left the heap frozen"
    yield
    gc.unfreeze()
    heap._Freeze.holders = 0  # a failed test's holders must not keep later ones frozen


class Node:
    def __init__(self) -> None:
        self.me = self


def test_the_freeze_lasts_until_the_last_holder_releases_it() -> None:
    heap.settle()
    heap.settle()  # a second runtime in the same process
    assert gc.get_freeze_count() > 0
    heap.release()
    # the other runtime still relies on it. (Not "the same count": a frozen object that
    # another thread frees by reference counting leaves the frozen generation.)
    assert gc.get_freeze_count() > 0
    heap.release()
    assert gc.get_freeze_count() == 0
    heap.release()  # one release too many is harmless
    assert gc.get_freeze_count() == 0


def test_resettle_collects_cycles_that_became_garbage_while_frozen() -> None:
    import weakref

    node = Node()
    dead = weakref.ref(node)
    heap.settle()
    try:
        del node
        gc.collect()
        assert dead() is not None  # frozen: a collection does not look at it
        heap.resettle()
        assert dead() is None
        assert gc.get_freeze_count() > 0
    finally:
        heap.release()
    assert gc.get_freeze_count() == 0
