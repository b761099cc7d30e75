"""``frontdesk export``: the store's conversations as chat logs, and the intents agents
tagged as labelled rows: what the next ``frontdesk train --logs`` learns from (the retrain
loop, docs/retrain.md)."""

from __future__ import annotations

import contextlib
import csv
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TextIO

from bot.types import Role
from channels.store import ConversationRecord, IntentTag, Store, StoredEvent
from retrieval.chatlog import ChatLog, ChatTurn, TurnRole, chatlog_line
from retrieval.errors import ChatLogError

PAGE = 500

NOTICE_DECISIONS = frozenset({"escalate", "handoff"})
"""The ``decision`` of stored bot messages that are notices about the conversation itself,
exported as ``system`` turns: ``escalate`` (why the bot hands over: "I'll pass you to one of
my colleagues", the intent's hand-over response) and ``handoff`` (what happens next: the
queue place and wait, or when the team is back). The other decisions the service stores are
the bot answering the customer and stay ``bot`` turns: ``reply``, ``clarify`` (its question
back), ``action`` (a custom action's messages) and ``error`` (its apology with the offer of
a person), as does a bot message with no decision."""

_ROLES = {Role.CUSTOMER: TurnRole.CUSTOMER, Role.BOT: TurnRole.BOT, Role.AGENT: TurnRole.AGENT}


@dataclass(frozen=True)
class ExportResult:
    conversations: int
    """Conversations written (those with at least one message)."""
    turns: int
    agent_turns: int
    """Turns written by a person: what the dialogue index learns answers from."""
    tags: int
    """Labelled rows written to the tags file (0 without one)."""


def chat_log(
    record: ConversationRecord, events: list[StoredEvent], tagged: list[tuple[str, str]]
) -> ChatLog | None:
    """A stored conversation as a chat log (None when nobody wrote anything in it); its
    status and the agents' intent tags (``tagged``: (text, intent)) go into ``metadata``."""
    turns = tuple(
        ChatTurn(turn_role(e.role, e.payload), e.text, e.created_at, model_of(e))
        for e in events
        if e.role is not None and e.text and e.text.strip()
    )
    if not turns:
        return None
    metadata: dict[str, object] = {"status": record.status.value}
    if tagged:
        metadata["intent_tags"] = [{"text": text, "intent": intent} for text, intent in tagged]
    return ChatLog(record.id, record.channel, record.created_at, turns, metadata)


def model_of(event: StoredEvent) -> str | None:
    """The model version that chose a bot message (stored in its payload), else None."""
    model = event.payload.get("model") if event.role is Role.BOT else None
    return model if isinstance(model, str) else None


def turn_role(role: Role, payload: Mapping[str, object]) -> TurnRole:
    """A stored message's role in the chat log: the bot's hand-over and queue notices
    (:data:`NOTICE_DECISIONS`) are ``system`` turns, every other message keeps its author."""
    if role is Role.BOT and payload.get("decision") in NOTICE_DECISIONS:
        return TurnRole.SYSTEM
    return _ROLES[role]


def tagged_texts(events: list[StoredEvent], tags: list[IntentTag]) -> list[tuple[str, str]]:
    """(text, intent) of each tagged message that has a text."""
    texts = {e.seq: e.text for e in events if e.role is not None and e.text and e.text.strip()}
    return [(texts[t.seq], t.intent) for t in tags if t.seq in texts]


async def export_logs(
    store: Store, out: Path, *, since: datetime | None = None, tags_out: Path | None = None
) -> ExportResult:
    """Write every conversation updated at or after ``since`` (all: None) to ``out`` as
    chat-log JSONL and, with ``tags_out``, each tagged customer message as a ``text,intent``
    CSV row. Conversations are written as they are read (a page of the store at a time, so
    memory does not grow with the store); each file is replaced only once it is complete."""
    _check_targets(out, tags_out)
    conversations = turns = agent_turns = tags = 0
    with contextlib.ExitStack() as partials:
        # both partial files are opened before anything is read: a path that cannot be
        # written fails the export before either file is replaced
        log_partial, logs = _open_partial(partials, out, "chat logs", "\n")
        rows = None
        if tags_out is not None:
            tags_partial, tags_file = _open_partial(partials, tags_out, "intent tags", "")
            rows = csv.writer(tags_file)
            rows.writerow(["text", "intent"])
        try:
            after = ""
            while page := await store.conversations_page(since=since, after_id=after, limit=PAGE):
                for record in page:
                    events = await all_events(store, record.id)
                    tagged = tagged_texts(events, await store.intent_tags_of(record.id))
                    log = chat_log(record, events, tagged)
                    if log is not None:
                        logs.write(chatlog_line(log) + "\n")
                        conversations += 1
                        turns += len(log.turns)
                        agent_turns += sum(1 for t in log.turns if t.role is TurnRole.AGENT)
                    if rows is not None:
                        rows.writerows(tagged)
                        tags += len(tagged)
                after = page[-1].id
            logs.close()
            _put_in_place(log_partial, out, f"cannot write chat logs to {out}")
            if rows is not None and tags_out is not None:
                tags_file.close()
                _put_in_place(
                    tags_partial,
                    tags_out,
                    f"wrote {out}, but cannot write intent tags to {tags_out}",
                )
        except OSError as exc:
            raise ChatLogError(f"cannot write the export to {out}: {exc.strerror}") from exc
    return ExportResult(conversations, turns, agent_turns, tags)


def _check_targets(out: Path, tags_out: Path | None) -> None:
    """Refuse, before reading anything, output paths that cannot work."""
    for path in (out, tags_out):
        if path is not None and path.is_dir():
            raise ChatLogError(f"{path} is a folder; give a file name to write")
    if tags_out is not None and tags_out.resolve() == out.resolve():
        raise ChatLogError(f"--tags and --out are both {out}; give two files")


async def all_events(store: Store, conversation_id: str) -> list[StoredEvent]:
    """Every event of a conversation, read a page at a time."""
    found: list[StoredEvent] = []
    while page := await store.events_after(conversation_id, found[-1].seq if found else 0, PAGE):
        found.extend(page)
    return found


def _open_partial(
    partials: contextlib.ExitStack, path: Path, what: str, newline: str
) -> tuple[Path, TextIO]:
    """A ``.partial`` file beside ``path``, open for writing; removed when ``partials``
    closes unless it was put in place by then."""
    partial = path.with_name(path.name + ".partial")
    try:
        handle = partials.enter_context(partial.open("w", encoding="utf-8", newline=newline))
    except OSError as exc:
        raise ChatLogError(f"cannot write {what} to {path}: {exc.strerror}") from exc
    partials.callback(partial.unlink, missing_ok=True)
    return partial, handle


def _put_in_place(partial: Path, path: Path, message: str) -> None:
    try:
        os.replace(partial, path)
    except OSError as exc:
        raise ChatLogError(f"{message}: {exc.strerror}") from exc
