"""``frontdesk models``: list, promote, roll back and prune the registry's model versions
(``retrieval.registry``). Each command is a thin layer over one registry call."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from retrieval.registry import Change, Registry, VersionInfo

HOT_SWAP = (
    "running servers swap to it by hot swap, within FRONTDESK_RELOAD_INTERVAL_S (2 s by default)"
)
DIGEST_CHARS = 12
"""How much of a bot digest the table shows (``--json`` gives all of it)."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``models`` command group, under ``sub`` (the ``frontdesk`` subcommands)."""
    models = sub.add_parser(
        "models", help="list the model versions, promote one, roll back, prune old ones"
    )
    msub = models.add_subparsers(required=True, metavar="COMMAND")

    def home(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--home", type=Path, help="data folder (default: $FRONTDESK_HOME or .frontdesk)"
        )
        p.set_defaults(bot=None)

    listing = msub.add_parser(
        "list", help="every version: created, state, bot, size on disk, metrics, gate"
    )
    home(listing)
    listing.add_argument("--json", action="store_true", help="print one JSON object")
    listing.set_defaults(run=_list)

    promote = msub.add_parser("promote", help="make a version current")
    promote.add_argument("version", metavar="VERSION", help="a version name (v0003)")
    home(promote)
    promote.set_defaults(run=_promote)

    rollback = msub.add_parser(
        "rollback", help="make the previous current version current again (twice: undone)"
    )
    home(rollback)
    rollback.set_defaults(run=_rollback)

    prune = msub.add_parser(
        "prune",
        help="remove the versions beyond the N newest; the current and the previous one "
        "are always kept",
    )
    prune.add_argument("--keep", type=int, required=True, metavar="N", help="versions to keep")
    home(prune)
    prune.add_argument("--json", action="store_true", help="print one JSON object")
    prune.set_defaults(run=_prune)


def _registry(args: argparse.Namespace) -> Registry:
    from channels.cli import _settings  # here: channels.cli imports this module
    from retrieval.registry import Registry

    return Registry(_settings(args).models_dir)


def _list(args: argparse.Namespace) -> int:
    registry = _registry(args)
    infos = registry.describe()
    current, previous = registry.current_version(), registry.previous_version()
    if args.json:
        listing = {
            "models": [_info_json(info) for info in infos],
            "current": current,
            "previous": previous,
        }
        print(json.dumps(listing))
        return 0
    if not infos:
        print(f"no model versions in {registry.root}; `frontdesk train` publishes one")
        return 0
    header = ("VERSION", "CREATED", "STATE", "BOT", "DIGEST", "SIZE", "GATE", "METRICS")
    rows = [header, *(_row(info) for info in infos)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip())
    total = sum(info.bytes_on_disk for info in infos)
    print(
        f"{len(infos)} version{'s' if len(infos) != 1 else ''}, {_size(total)} on disk "
        "(a file shared by versions counts once, in the oldest)"
    )
    return 0


def _info_json(info: VersionInfo) -> dict[str, object]:
    return {
        "version": info.version,
        "created_at": info.created_at,
        "state": info.state.value,
        "complete": info.complete,
        "bot": info.bot,
        "bot_digest": info.bot_digest,
        "metrics": dict(info.metrics),
        "gate": info.gate,
        "bytes": info.bytes_on_disk,
    }


def _row(info: VersionInfo) -> tuple[str, ...]:
    state = info.state.value if info.complete else f"{info.state.value} (incomplete)"
    return (
        info.version,
        _created(info.created_at),
        state,
        info.bot or "-",
        (info.bot_digest or "-")[:DIGEST_CHARS],
        _size(info.bytes_on_disk),
        info.gate or "-",
        _metrics(info.metrics),
    )


def _created(text: str | None) -> str:
    """A manifest's ``created_at`` to the minute, in UTC; as written if it is no ISO time."""
    if text is None:
        return "-"
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return text
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%d %H:%M")


def _metrics(metrics: Mapping[str, float]) -> str:
    return " ".join(f"{name}={value:.4g}" for name, value in metrics.items()) or "-"


def _size(count: int) -> str:
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


def _moved(change: Change) -> str:
    return f"current: {change.previous or 'none'} -> {change.current}; {HOT_SWAP}"


def _promote(args: argparse.Namespace) -> int:
    from retrieval.registry import REFUSED

    registry = _registry(args)
    change = registry.promote(args.version)
    if change is None:
        print(f"current: {args.version} already; nothing changed")
        return 0
    print(_moved(change))
    if registry.gate_decision(change.current) == REFUSED:
        print(f"note: the evaluation gate had refused {change.current} (its gate.json)")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    print(f"rolled back: {_moved(_registry(args).rollback())}")
    return 0


def _prune(args: argparse.Namespace) -> int:
    from retrieval.errors import BundleError

    if args.keep < 1:
        raise BundleError(
            f"--keep: expected 1 or more versions to keep, got {args.keep} (the current and "
            "the previous version are kept whatever N is)"
        )
    registry = _registry(args)
    removed = registry.prune(args.keep)
    kept = registry.versions()
    if args.json:
        print(json.dumps({"removed": removed, "kept": kept}))
        return 0
    what = f"removed {', '.join(removed)}" if removed else "nothing to remove"
    print(f"{what}; kept {', '.join(kept) or 'none'}")
    return 0
