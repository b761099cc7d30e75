"""STAR dialogues (Rasa STAR, Mosig et al. 2020) read as chat logs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from retrieval.chatlog import (
    ChatLog,
    ChatTurn,
    Malformed,
    Problems,
    ReadResult,
    TurnRole,
    short_repr,
)
from retrieval.errors import ChatLogError

_STAR_ROLES = {"User": TurnRole.CUSTOMER, "Wizard": TurnRole.AGENT}
_STAR_UTTERANCES = frozenset({"utter", "pick_suggestion"})


def _numeric_first(path: Path) -> tuple[int, int, str]:
    return (0, int(path.stem), "") if path.stem.isdigit() else (1, 0, path.name)


def _star_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ChatLogError(f"cannot read STAR dialogues from {path}: no such file or folder")
    folder = path / "dialogues" if (path / "dialogues").is_dir() else path
    files = sorted(folder.glob("*.json"), key=_numeric_first)
    if not files:
        raise ChatLogError(
            f"no STAR dialogues in {path}: expected *.json dialogue files in it or in its "
            "dialogues/ folder"
        )
    return files


def _unix_time(value: object, where: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Malformed(f"{where}.UnixTime: expected seconds since 1970, got {short_repr(value)}")
    return datetime.fromtimestamp(value, UTC)


def _star_dialogue(data: object) -> tuple[int, ChatLog]:
    """One decoded STAR file -> (DialogueID, ChatLog), or :class:`Malformed`."""
    if not isinstance(data, dict):
        raise Malformed(f"expected a STAR dialogue object, got {type(data).__name__}")
    dialogue_id, events = data.get("DialogueID"), data.get("Events")
    if isinstance(dialogue_id, bool) or not isinstance(dialogue_id, int):
        raise Malformed(f"DialogueID: expected an integer, got {short_repr(dialogue_id)}")
    if not isinstance(events, list):
        raise Malformed(f"Events: expected a list of events, got {short_repr(events)}")
    scenario = data.get("Scenario", {})
    if not isinstance(scenario, dict):
        raise Malformed(f"Scenario: expected an object, got {short_repr(scenario)}")

    turns: list[ChatTurn] = []
    labels: list[str | None] = []
    times: list[datetime] = []
    for i, event in enumerate(events):
        where = f"Events[{i}]"
        if not isinstance(event, dict):
            raise Malformed(f"{where}: expected an object, got {short_repr(event)}")
        when = _unix_time(event.get("UnixTime"), where)
        if when is not None:
            times.append(when)
        agent, action = event.get("Agent"), event.get("Action")
        role = _STAR_ROLES.get(agent) if isinstance(agent, str) else None
        # Queries, knowledge-base items, guide instructions and suggestion requests are
        # not messages anybody received; an utterance without text is no message either.
        if role is None or not isinstance(action, str) or action not in _STAR_UTTERANCES:
            continue
        text = event.get("Text")
        if text is None:
            continue
        if not isinstance(text, str):
            raise Malformed(f"{where}.Text: expected a string, got {short_repr(text)}")
        if not text.strip():
            continue
        label = event.get("ActionLabel") if role is TurnRole.AGENT else None
        if label is not None and not isinstance(label, str):
            raise Malformed(f"{where}.ActionLabel: expected a string, got {short_repr(label)}")
        turns.append(ChatTurn(role, text.strip(), when))
        labels.append(label)

    capabilities = scenario.get("WizardCapabilities", [])
    tasks = [c["Task"] for c in capabilities if isinstance(c, dict) and "Task" in c]
    chat = ChatLog(
        id=f"star-{dialogue_id}",
        channel="star",
        started_at=min(times, default=None),
        turns=tuple(turns),
        metadata={
            "dialogue_id": dialogue_id,
            "domains": scenario.get("Domains", []),
            "tasks": tasks,
            "happy": scenario.get("Happy"),
            "multi_task": scenario.get("MultiTask"),
            "completion_level": data.get("CompletionLevel"),
            "action_labels": labels,
        },
    )
    return dialogue_id, chat


def read_star(path: Path | str) -> ReadResult:
    """Read STAR dialogues: the ``dialogues/`` folder, the STAR root, or one dialogue file.

    User and wizard utterances (``Action`` ``utter`` or ``pick_suggestion`` with ``Text``)
    become ``customer`` and ``agent`` turns, with ``UnixTime`` as their time; other events
    (guide instructions, queries, knowledge-base items, suggestion requests) are not turns.
    ``metadata`` holds ``dialogue_id``, ``domains``, ``tasks`` (the wizard's task names),
    ``happy``, ``multi_task``, ``completion_level`` and ``action_labels``: each wizard turn's
    ``ActionLabel``, aligned with the turns (None for customer turns and free-typed wizard
    turns). ``started_at`` is the time of the dialogue's first event.

    A dialogue abandoned before anyone spoke is kept with no turns (its ``completion_level``
    says why). A file that is not JSON, lacks ``DialogueID`` or ``Events``, or holds a value
    of the wrong type is reported with ``line`` None. Logs come in ``DialogueID`` order.
    Raises :class:`ChatLogError` if ``path`` holds no dialogue files.
    """
    path = Path(path)
    read: list[tuple[int, ChatLog]] = []
    problems = Problems()
    for file in _star_files(path):
        try:
            read.append(_star_dialogue(json.loads(file.read_bytes())))
        except OSError as exc:
            problems.add(file, None, f"cannot read the file: {exc.strerror}")
        except Malformed as exc:
            problems.add(file, None, str(exc))
        except ValueError as exc:  # json.JSONDecodeError and UnicodeDecodeError
            problems.add(file, None, f"not valid JSON: {exc}")
    read.sort(key=lambda pair: pair[0])
    return ReadResult(tuple(chat for _, chat in read), tuple(problems.found))
