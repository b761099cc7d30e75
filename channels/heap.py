"""A long-lived server's heap and Python's cyclic garbage collector.

What a server loads once (the model bundle, the bot, the app) is most of its heap, and a
full collection walks all of it: tens of milliseconds in which no message is answered,
several times a minute under load. Frozen (``gc.freeze``), those objects are left out of
every later collection, which then walks only what conversations allocate (BENCHMARKS.md,
issue 5: p99 at 400 messages/s 0.43-0.49x). Objects freed by reference counting are freed
as before; only cycles among frozen objects wait for :func:`release`.
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Collect what is garbage now, then freeze everything still alive."""
    gc.collect()
    gc.freeze()


def resettle() -> None:
    """After a model swap: let the old bundle's cycles be collected, then freeze again."""
    gc.unfreeze()
    settle()


def release() -> None:
    """Hand every frozen object back to the collector (a stopped server)."""
    gc.unfreeze()
