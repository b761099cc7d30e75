"""``frontdesk export``: the store's conversations as chat logs, and the intents agents
tagged as labelled rows: what the next ``frontdesk train --logs`` learns from (the retrain
loop, docs/retrain.md)."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from channels.store import ConversationRecord, IntentTag, Store, StoredEvent
from retrieval.chatlog import ChatLog, ChatTurn, TurnRole, write_chatlog_jsonl
from retrieval.errors import ChatLogError

PAGE = 500


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
        ChatTurn(TurnRole(e.role.value), e.text, e.created_at)
        for e in events
        if e.role is not None and e.text and e.text.strip()
    )
    if not turns:
        return None
    metadata: dict[str, object] = {"status": record.status.value}
    if tagged:
        metadata["intent_tags"] = [{"text": text, "intent": intent} for text, intent in tagged]
    return ChatLog(record.id, record.channel, record.created_at, turns, metadata)


def tagged_texts(events: list[StoredEvent], tags: list[IntentTag]) -> list[tuple[str, str]]:
    """(text, intent) of each tagged message that has a text."""
    texts = {e.seq: e.text for e in events if e.role is not None and e.text and e.text.strip()}
    return [(texts[t.seq], t.intent) for t in tags if t.seq in texts]


async def export_logs(
    store: Store, out: Path, *, since: datetime | None = None, tags_out: Path | None = None
) -> ExportResult:
    """Write every conversation updated at or after ``since`` (all: None) to ``out`` as
    chat-log JSONL and, with ``tags_out``, each tagged customer message as a ``text,intent``
    CSV row. Each file is replaced only once it is complete."""
    _check_targets(out, tags_out)
    logs: list[ChatLog] = []
    rows: list[tuple[str, str]] = []
    after = ""
    while page := await store.conversations_page(since=since, after_id=after, limit=PAGE):
        for record in page:
            events = await _all_events(store, record.id)
            tagged = tagged_texts(events, await store.intent_tags_of(record.id))
            log = chat_log(record, events, tagged)
            if log is not None:
                logs.append(log)
            rows.extend(tagged)
        after = page[-1].id
    # the tags are written first and put in place last: a path that cannot be written
    # fails the export before either file is replaced
    partial_tags = _write_rows(rows, tags_out) if tags_out is not None else None
    try:
        write_chatlog_jsonl(logs, out)
        if partial_tags is not None and tags_out is not None:
            try:
                os.replace(partial_tags, tags_out)
            except OSError as exc:
                raise ChatLogError(
                    f"wrote {out}, but cannot write intent tags to {tags_out}: {exc.strerror}"
                ) from exc
    finally:
        if partial_tags is not None:
            partial_tags.unlink(missing_ok=True)
    turns = [t for log in logs for t in log.turns]
    return ExportResult(
        conversations=len(logs),
        turns=len(turns),
        agent_turns=sum(1 for t in turns if t.role is TurnRole.AGENT),
        tags=len(rows) if tags_out is not None else 0,
    )


def _check_targets(out: Path, tags_out: Path | None) -> None:
    """Refuse, before reading anything, output paths that cannot work."""
    for path in (out, tags_out):
        if path is not None and path.is_dir():
            raise ChatLogError(f"{path} is a folder; give a file name to write")
    if tags_out is not None and tags_out.resolve() == out.resolve():
        raise ChatLogError(f"--tags and --out are both {out}; give two files")


async def _all_events(store: Store, conversation_id: str) -> list[StoredEvent]:
    found: list[StoredEvent] = []
    while page := await store.events_after(conversation_id, found[-1].seq if found else 0, PAGE):
        found.extend(page)
    return found


def _write_rows(rows: list[tuple[str, str]], path: Path) -> Path:
    """``text,intent`` rows, as ``frontdesk intents train --train`` reads them, in a
    ``.partial`` file beside ``path`` (returned) for the caller to put in place."""
    partial = path.with_name(path.name + ".partial")
    try:
        with partial.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "intent"])
            writer.writerows(rows)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise ChatLogError(f"cannot write intent tags to {path}: {exc.strerror}") from exc
    return partial
