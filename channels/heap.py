"""A long-lived server's heap and Python's cyclic garbage collector.

What a server loads once (the model bundle, the bot, the app) is most of its heap, and a
full collection walks all of it: tens of milliseconds in which no message is answered,
several times a minute under load. Frozen (``gc.freeze``), those objects are left out of
every later collection, which then walks only what conversations allocate (BENCHMARKS.md,
issue 5: p99 at 400 messages/s 0.65-0.74x in an alternated A/B). Objects freed by
reference counting are freed as before; only garbage cycles among frozen objects wait for
the next thaw.

The freeze is the process's, the runtimes that ask for it are counted: it is lifted when
the last of them releases it (tests and embedders may run several in one process).
"""

from __future__ import annotations

import gc


class _Freeze:
    holders = 0


def settle() -> None:
    """Collect what is garbage now, then freeze everything still alive; the caller holds
    the freeze until :func:`release`."""
    _Freeze.holders += 1
    _collect_and_freeze()


def resettle() -> None:
    """After a model swap: thaw, collect (the old bundle and its cycles, and whatever else
    became cyclic garbage while frozen: at most one heap's worth since the last thaw), and
    freeze what is alive again. One full collection, on the caller's thread."""
    gc.unfreeze()
    _collect_and_freeze()


def release() -> None:
    """The caller no longer holds the freeze; the last one out hands every frozen object
    back to the collector."""
    _Freeze.holders = max(0, _Freeze.holders - 1)
    if _Freeze.holders == 0:
        gc.unfreeze()


def _collect_and_freeze() -> None:
    gc.collect()
    gc.freeze()
