"""Custom actions: rasa-sdk actions run in-process or on a remote action server.

Both ways speak the Rasa action webhook protocol: a request with ``next_action``,
``sender_id``, ``tracker``, ``domain`` and ``version``; a response with ``events`` and
``responses``. A failure or a time-out raises :class:`ActionFailed`; the caller turns it
into a polite reply and an escalation offer.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx

from bot.types import BotDefinition, Button
from channels.errors import ActionFailed

log = logging.getLogger(__name__)

PROTOCOL_VERSION = "3.21.1"


@dataclass(frozen=True)
class ActionRequest:
    action: str
    conversation_id: str
    text: str
    intent: str
    confidence: float
    entities: Mapping[str, str]


@dataclass(frozen=True)
class ActionMessage:
    text: str
    buttons: tuple[Button, ...] = ()


class ActionRunner(Protocol):
    async def run(self, request: ActionRequest) -> list[ActionMessage]: ...

    async def aclose(self) -> None: ...


def action_call(request: ActionRequest, definition: BotDefinition) -> dict[str, Any]:
    """The webhook request body for ``request``."""
    entities = [{"entity": k, "value": v} for k, v in request.entities.items()]
    return {
        "next_action": request.action,
        "sender_id": request.conversation_id,
        "tracker": {
            "sender_id": request.conversation_id,
            "slots": dict(request.entities),
            "latest_message": {
                "text": request.text,
                "intent": {"name": request.intent, "confidence": request.confidence},
                "entities": entities,
            },
            "latest_event_time": None,
            "followup_action": None,
            "paused": False,
            "events": [],
            "latest_input_channel": "frontdesk",
            "active_loop": {},
            "latest_action": {"action_name": "action_listen"},
            "latest_action_name": "action_listen",
        },
        "domain": {
            "intents": [i.name for i in definition.intents],
            "entities": list(definition.entities),
            "slots": {name: {"type": "text", "mappings": []} for name in definition.entities},
            "responses": {},
            "actions": sorted({i.action for i in definition.intents if i.action}),
        },
        "version": PROTOCOL_VERSION,
    }


def parse_responses(body: Mapping[str, Any]) -> list[ActionMessage]:
    """The ``responses`` of a webhook answer as messages; other kinds are ignored."""
    responses = body.get("responses")
    if not isinstance(responses, list):
        raise ActionFailed(f"action server answered without a `responses` list: {body!r:.200}")
    messages: list[ActionMessage] = []
    for item in responses:
        if not isinstance(item, dict) or not item.get("text"):
            continue
        buttons = tuple(
            Button(title=str(b["title"]), payload=str(b["payload"]))
            for b in item.get("buttons") or ()
            if isinstance(b, dict) and "title" in b and "payload" in b
        )
        messages.append(ActionMessage(text=str(item["text"]), buttons=buttons))
    return messages


class InProcessActions:
    """Runs the actions module of the bot folder through rasa-sdk's own executor."""

    def __init__(self, definition: BotDefinition) -> None:
        from rasa_sdk.executor import ActionExecutor

        module_name = definition.actions.module
        if module_name is None or definition.root is None:
            raise ActionFailed("bot.yml names no `actions.module` to run in-process")
        self.definition = definition
        self.executor = ActionExecutor()
        self.executor.register_package(_import_from(definition.root, module_name))

    async def run(self, request: ActionRequest) -> list[ActionMessage]:
        timeout = self.definition.actions.timeout_s
        try:
            result = await asyncio.wait_for(
                self.executor.run(action_call(request, self.definition)), timeout
            )
        except TimeoutError as exc:
            raise ActionFailed(f"action {request.action!r} took longer than {timeout}s") from exc
        except Exception as exc:
            log.exception("action %s failed", request.action)
            raise ActionFailed(f"action {request.action!r} failed: {exc}") from exc
        if result is None:
            raise ActionFailed(f"action {request.action!r} returned nothing")
        return parse_responses(result.model_dump())

    async def aclose(self) -> None:
        return None


class RemoteActions:
    """Calls a rasa-sdk action server (``python -m rasa_sdk``) at ``url``."""

    def __init__(self, definition: BotDefinition, url: str) -> None:
        self.definition = definition
        self.url = url
        self.client = httpx.AsyncClient(timeout=definition.actions.timeout_s)

    async def run(self, request: ActionRequest) -> list[ActionMessage]:
        try:
            response = await self.client.post(self.url, json=action_call(request, self.definition))
        except httpx.HTTPError as exc:
            raise ActionFailed(f"action server {self.url} unreachable: {exc!r}") from exc
        if response.status_code != 200:
            raise ActionFailed(
                f"action server {self.url} answered {response.status_code} for "
                f"{request.action!r}: {response.text[:200]}"
            )
        try:
            body = response.json()
        except ValueError as exc:
            raise ActionFailed(f"action server {self.url} answered with non-JSON") from exc
        return parse_responses(body)

    async def aclose(self) -> None:
        await self.client.aclose()


class NoActions:
    async def run(self, request: ActionRequest) -> list[ActionMessage]:
        raise ActionFailed(f"no action runner configured for {request.action!r}")

    async def aclose(self) -> None:
        return None


def make_runner(definition: BotDefinition, url_override: str | None = None) -> ActionRunner:
    url = url_override or definition.actions.url
    if url:
        return RemoteActions(definition, url)
    if definition.actions.module:
        return InProcessActions(definition)
    return NoActions()


def _import_from(folder: Path, module_name: str) -> Any:
    """Import ``module_name`` from the bot folder without leaving it on ``sys.path``."""
    qualified = f"frontdesk_actions_{abs(hash(str(folder))):x}_{module_name}"
    if qualified in sys.modules:
        return sys.modules[qualified]
    path = folder / f"{module_name}.py"
    if not path.is_file():
        path = folder / module_name / "__init__.py"
    spec = importlib.util.spec_from_file_location(qualified, path)
    if spec is None or spec.loader is None or not path.is_file():
        raise ActionFailed(f"actions module {module_name!r} not found in {folder}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[qualified] = module
    spec.loader.exec_module(module)
    return module


__all__: Sequence[str] = (
    "ActionMessage",
    "ActionRequest",
    "ActionRunner",
    "make_runner",
)
