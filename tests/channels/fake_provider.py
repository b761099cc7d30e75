"""A fake of the messaging providers' APIs (a real HTTP server in a thread, recording every
call), and test customers that send provider-shaped, signed webhooks."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from channels.messaging.signatures import hub_signature, slack_signature
from tests.channels.server import free_port

Json = dict[str, Any]

TELEGRAM_TOKEN = "123456:test-bot-token"
TELEGRAM_SECRET = "telegram-secret_1"
SLACK_SIGNING_SECRET = "slack-signing-secret"
SLACK_BOT_TOKEN = "xoxb-test-token"
WHATSAPP_APP_SECRET = "whatsapp-app-secret"
WHATSAPP_TOKEN = "whatsapp-access-token"
WHATSAPP_VERIFY = "whatsapp-verify"
MESSENGER_APP_SECRET = "messenger-app-secret"
MESSENGER_TOKEN = "messenger-page-token"
MESSENGER_VERIFY = "messenger-verify"
PHONE_NUMBER_ID = "106540352242922"


@dataclass(frozen=True)
class Call:
    path: str
    headers: dict[str, str]
    body: Json
    status: int


@dataclass
class FakeProvider:
    """Answers every POST with 200 ``{"ok": true}``, or with the statuses queued by
    :meth:`fail_next`; records every call. Between :meth:`hold` and :meth:`release` it
    records calls and holds their responses back (the sender is still waiting on them)."""

    def __post_init__(self) -> None:
        self.flowing.set()

    def hold(self) -> None:
        self.flowing.clear()

    def release(self) -> None:
        self.flowing.set()

    address: str = ""
    calls: list[Call] = field(default_factory=list)
    flowing: threading.Event = field(default_factory=threading.Event)
    _script: dict[str, list[int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, path_end: str, *statuses: int) -> None:
        """Answer the next calls to a path ending in ``path_end`` with ``statuses``."""
        with self._lock:
            self._script.setdefault(path_end, []).extend(statuses)

    def sent(self, path_end: str = "") -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.path.endswith(path_end)]

    def wait_for(self, count: int, path_end: str = "", limit_s: float = 30) -> list[Call]:
        """The calls to ``path_end`` once there are at least ``count`` of them."""
        return self.wait_until(
            lambda calls: len(calls) >= count, path_end, limit_s, f"{count} call(s)"
        )

    def wait_until(
        self,
        done: Callable[[list[Call]], bool],
        path_end: str = "",
        limit_s: float = 30,
        what: str = "the expected calls",
    ) -> list[Call]:
        """The calls to ``path_end`` once ``done`` holds for them."""
        deadline = time.monotonic() + limit_s
        while not done(calls := self.sent(path_end)):
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(calls)} call(s) to *{path_end}, expected {what}")
            time.sleep(0.02)
        return calls

    async def _handle(self, request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        path = request.url.path
        with self._lock:
            status = 200
            for end, statuses in self._script.items():
                if path.endswith(end) and statuses:
                    status = statuses.pop(0)
                    break
            self.calls.append(Call(path, dict(request.headers), body, status))
        await asyncio.to_thread(self.flowing.wait)
        return JSONResponse({"ok": status < 400}, status_code=status)


@contextmanager
def running_fake() -> Iterator[FakeProvider]:
    fake = FakeProvider()
    app = Starlette(routes=[Route("/{path:path}", fake._handle, methods=["POST"])])
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("fake provider did not start")
        time.sleep(0.02)
    fake.address = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        fake.release()
        server.should_exit = True
        thread.join(30)


@dataclass(frozen=True)
class Webhook:
    path: str
    body: bytes
    headers: dict[str, str]


class Customer:
    """One customer of a provider: builds its signed webhooks, reads replies sent to it."""

    channel: str
    path: str
    send_path: str
    """How the provider API's path for sending a message ends."""

    def __init__(self, customer_id: str) -> None:
        self.id = customer_id

    def message(self, message_id: str, text: str) -> Webhook:
        return self.signed(self.payload(message_id, text))

    def payload(self, message_id: str, text: str) -> Json:
        raise NotImplementedError

    def signed(self, payload: Json) -> Webhook:
        body = json.dumps(payload).encode()
        return Webhook(self.path, body, {"Content-Type": "application/json", **self.sign(body)})

    def sign(self, body: bytes) -> dict[str, str]:
        raise NotImplementedError

    def wrongly_signed(self, webhook: Webhook) -> Webhook:
        headers = {k: v for k, v in webhook.headers.items() if k == "Content-Type"}
        for name, value in webhook.headers.items():
            if name != "Content-Type" and name != "X-Slack-Request-Timestamp":
                value = value[:-4] + ("0000" if not value.endswith("0000") else "1111")
            headers[name] = value
        return Webhook(webhook.path, webhook.body, headers)

    def unsigned(self, webhook: Webhook) -> Webhook:
        return Webhook(webhook.path, webhook.body, {"Content-Type": "application/json"})

    def recipient(self, call: Call) -> str:
        raise NotImplementedError

    def text(self, call: Call) -> str:
        raise NotImplementedError

    def replies(self, fake: FakeProvider, delivered_only: bool = True) -> list[Call]:
        return [
            c
            for c in fake.sent(self.send_path)
            if self.recipient(c) == self.id and (c.status == 200 or not delivered_only)
        ]

    def ignored_events(self) -> dict[str, Json]:
        """Signed-worthy events that carry no customer text."""
        raise NotImplementedError


class TelegramCustomer(Customer):
    channel = "telegram"
    path = "/webhooks/telegram/webhook"
    send_path = "/sendMessage"

    def payload(self, message_id: str, text: str) -> Json:
        return {
            "update_id": 100_000 + int(message_id),
            "message": {
                "message_id": int(message_id),
                "from": {"id": int(self.id), "is_bot": False, "first_name": "Ada"},
                "chat": {"id": int(self.id), "first_name": "Ada", "type": "private"},
                "date": 1_764_489_600,
                "text": text,
            },
        }

    def sign(self, body: bytes) -> dict[str, str]:
        return {"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}

    def recipient(self, call: Call) -> str:
        return str(call.body["chat_id"])

    def text(self, call: Call) -> str:
        return str(call.body["text"])

    def ignored_events(self) -> dict[str, Json]:
        sticker = self.payload("7", "")
        del sticker["message"]["text"]
        sticker["message"]["sticker"] = {"file_id": "CAACAgIAAxkBAAE", "emoji": "👍"}
        joined = self.payload("8", "")
        del joined["message"]["text"]
        joined["message"]["new_chat_members"] = [{"id": 5, "is_bot": False, "first_name": "B"}]
        edited = {"update_id": 100_009, "edited_message": self.payload("9", "hi")["message"]}
        return {"sticker": sticker, "member joined": joined, "edited message": edited}


class SlackCustomer(Customer):
    channel = "slack"
    path = "/webhooks/slack/webhook"
    send_path = "/chat.postMessage"

    def __init__(self, customer_id: str, user: str = "U2147483697") -> None:
        super().__init__(customer_id)
        self.user = user

    def payload(self, message_id: str, text: str) -> Json:
        return self.event(
            {
                "type": "message",
                "channel": self.id,
                "user": self.user,
                "text": text,
                "ts": f"1355517523.{message_id:0>6}",
                "event_ts": f"1355517523.{message_id:0>6}",
                "channel_type": "im",
                "client_msg_id": f"5b9c1a3e-0000-4000-8000-{message_id:0>12}",
            },
            event_id=f"Ev0{message_id:0>8}",
        )

    def event(self, event: Json, event_id: str) -> Json:
        return {
            "token": "verification-token-unused",
            "team_id": "T123ABC456",
            "api_app_id": "A123ABC456",
            "event": event,
            "type": "event_callback",
            "event_id": event_id,
            "event_time": 1_355_517_523,
            "authorizations": [{"team_id": "T123ABC456", "user_id": "U0BOT", "is_bot": True}],
        }

    def sign(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        stamp = str(timestamp if timestamp is not None else int(time.time()))
        return {
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": slack_signature(SLACK_SIGNING_SECRET, stamp, body),
        }

    def recipient(self, call: Call) -> str:
        return str(call.body["channel"])

    def text(self, call: Call) -> str:
        return str(call.body["text"])

    def ignored_events(self) -> dict[str, Json]:
        base = self.payload("7", "hello")["event"]
        own = {**base, "bot_id": "B0BOT", "app_id": "A123ABC456"}
        bot_message = {**base, "subtype": "bot_message", "bot_id": "B0OTHER"}
        joined = {**base, "subtype": "channel_join", "text": "<@U2147483697> has joined"}
        return {
            "our own reply": self.event(own, "Ev0bot1"),
            "bot message": self.event(bot_message, "Ev0bot2"),
            "channel join": self.event(joined, "Ev0join"),
            "reaction": self.event(
                {"type": "reaction_added", "user": self.user, "reaction": "thumbsup"}, "Ev0react"
            ),
        }


class WhatsAppCustomer(Customer):
    channel = "whatsapp"
    path = "/webhooks/whatsapp/webhook"
    send_path = f"/{PHONE_NUMBER_ID}/messages"

    def value(self, **fields: Any) -> Json:
        return {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "102290129340398",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": "15550783881",
                                    "phone_number_id": PHONE_NUMBER_ID,
                                },
                                **fields,
                            },
                        }
                    ],
                }
            ],
        }

    def payload(self, message_id: str, text: str) -> Json:
        return self.value(
            contacts=[{"profile": {"name": "Ada"}, "wa_id": self.id}],
            messages=[
                {
                    "from": self.id,
                    "id": f"wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEw{message_id}",
                    "timestamp": "1764489600",
                    "type": "text",
                    "text": {"body": text},
                }
            ],
        )

    def sign(self, body: bytes) -> dict[str, str]:
        return {"X-Hub-Signature-256": hub_signature(WHATSAPP_APP_SECRET, body)}

    def recipient(self, call: Call) -> str:
        return str(call.body["to"])

    def text(self, call: Call) -> str:
        if call.body["type"] == "interactive":
            return str(call.body["interactive"]["body"]["text"])
        return str(call.body["text"]["body"])

    def ignored_events(self) -> dict[str, Json]:
        image = self.payload("7", "")
        message = image["entry"][0]["changes"][0]["value"]["messages"][0]
        del message["text"]
        message.update(type="image", image={"id": "1479537139650973", "mime_type": "image/jpeg"})
        status = self.value(
            statuses=[
                {
                    "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3",
                    "status": "delivered",
                    "timestamp": "1764489601",
                    "recipient_id": self.id,
                }
            ]
        )
        return {"image": image, "delivery status": status}


class MessengerCustomer(Customer):
    channel = "messenger"
    path = "/webhooks/messenger/webhook"
    send_path = "/me/messages"
    page = "106540352242922"

    def entry(self, item: Json) -> Json:
        return {
            "object": "page",
            "entry": [{"id": self.page, "time": 1_764_489_600_000, "messaging": [item]}],
        }

    def payload(self, message_id: str, text: str) -> Json:
        return self.entry(
            {
                "sender": {"id": self.id},
                "recipient": {"id": self.page},
                "timestamp": 1_764_489_600_000,
                "message": {
                    "mid": f"m_AG5Hz2Uq7tuwNEhXfYYKj8mJEM_QPpz5jdC{message_id}",
                    "text": text,
                },
            }
        )

    def sign(self, body: bytes) -> dict[str, str]:
        return {"X-Hub-Signature-256": hub_signature(MESSENGER_APP_SECRET, body)}

    def recipient(self, call: Call) -> str:
        return str(call.body["recipient"]["id"])

    def text(self, call: Call) -> str:
        return str(call.body["message"]["text"])

    def ignored_events(self) -> dict[str, Json]:
        echo = self.payload("7", "our own reply")
        echo["entry"][0]["messaging"][0]["message"]["is_echo"] = True
        delivery = self.entry(
            {
                "sender": {"id": self.id},
                "recipient": {"id": self.page},
                "delivery": {"mids": ["m_1457764197618:41d102a3e1ae206a38"], "watermark": 1},
            }
        )
        sticker = self.payload("8", "")
        message = sticker["entry"][0]["messaging"][0]["message"]
        del message["text"]
        message["attachments"] = [{"type": "image", "payload": {"sticker_id": 369239263222822}}]
        return {"echo": echo, "delivery": delivery, "sticker": sticker}
