"""Messaging apps over real servers: signed provider-shaped webhooks in, the provider's API
(a local fake) called with the bot's replies; plus the pure checks and wire formats."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from bot.types import Button, Role
from channels.app import create_app
from channels.messaging.messenger import Messenger
from channels.messaging.outbound import RetryPolicy, parse_retry_after, retry_delay
from channels.messaging.provider import Address, IncompleteSettings, Reply, split_text
from channels.messaging.signatures import (
    Verdict,
    check_hub_signature,
    check_secret_token,
    check_slack_signature,
    hub_signature,
    slack_signature,
    subscription_challenge,
)
from channels.messaging.slack import Slack, plain_text
from channels.messaging.telegram import Telegram
from channels.messaging.whatsapp import WhatsApp
from channels.settings import Settings
from channels.store import Store
from tests.channels import fake_provider as fp
from tests.channels.fake_provider import (
    Customer,
    FakeProvider,
    MessengerCustomer,
    SlackCustomer,
    TelegramCustomer,
    Webhook,
    WhatsAppCustomer,
    running_fake,
)
from tests.channels.server import running_server

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
CUSTOMERS: dict[str, type[Customer]] = {
    "telegram": TelegramCustomer,
    "slack": SlackCustomer,
    "whatsapp": WhatsAppCustomer,
    "messenger": MessengerCustomer,
}
IDS = {"telegram": "4242", "slack": "D024BE91L", "whatsapp": "16505551234", "messenger": "7001"}
OTHER_IDS = {
    "telegram": "4343",
    "slack": "D0OTHER00",
    "whatsapp": "16505559876",
    "messenger": "7002",
}
QUESTION = "How long does delivery take?"


def customer(channel: str, other: bool = False) -> Customer:
    return CUSTOMERS[channel]((OTHER_IDS if other else IDS)[channel])


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with running_fake() as fake:
        yield fake


def settings_for(tmp_path: Path, shop_home: Path, fake: FakeProvider, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "home": shop_home,
        "bot": Path("examples/shop"),
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'store.db'}",
        "telegram_bot_token": fp.TELEGRAM_TOKEN,
        "telegram_secret_token": fp.TELEGRAM_SECRET,
        "telegram_api_url": f"{fake.address}/telegram",
        "slack_signing_secret": fp.SLACK_SIGNING_SECRET,
        "slack_bot_token": fp.SLACK_BOT_TOKEN,
        "slack_api_url": f"{fake.address}/slack/api",
        "whatsapp_app_secret": fp.WHATSAPP_APP_SECRET,
        "whatsapp_access_token": fp.WHATSAPP_TOKEN,
        "whatsapp_verify_token": fp.WHATSAPP_VERIFY,
        "messenger_app_secret": fp.MESSENGER_APP_SECRET,
        "messenger_page_access_token": fp.MESSENGER_TOKEN,
        "messenger_verify_token": fp.MESSENGER_VERIFY,
        "graph_api_url": f"{fake.address}/graph/v23.0",
        "outbound_attempts": 3,
        "outbound_backoff_s": 0.01,
        "reload_interval_s": 0,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(tmp_path: Path, shop_home: Path, fake: FakeProvider) -> Settings:
    return settings_for(tmp_path, shop_home, fake)


def post(address: str, webhook: Webhook) -> httpx.Response:
    return httpx.post(
        f"http://{address}{webhook.path}", content=webhook.body, headers=webhook.headers, timeout=10
    )


async def stored_messages(settings: Settings, channel: str, sender: str) -> list[tuple[Role, str]]:
    store = await Store.open(settings.store_url())
    try:
        record = await store.conversation_for(channel, sender, NOW)
        events = await store.events_after(record.id, 0, 100)
    finally:
        await store.close()
    return [(e.role, e.text or "") for e in events if e.kind == "message" and e.role is not None]


# --- over a real server ----------------------------------------------------------------


@pytest.mark.parametrize("channel", CUSTOMERS)
async def test_signed_message_is_answered_through_the_provider_api(
    channel: str, settings: Settings, fake: FakeProvider, shop_bundle: Any
) -> None:
    """A signed message is acknowledged 200 before its reply is delivered; the provider's
    API then receives the bot's stored replies, addressed to the customer, with credentials."""
    someone = customer(channel)
    fake.hold()  # the provider API does not answer until released
    with running_server(settings, model=shop_bundle) as address:
        response = post(address, someone.message("1", QUESTION))
        assert response.status_code == 200
        fake.wait_for(1, someone.send_path)  # the reply is on its way, the webhook done
        fake.release()
    replies = someone.replies(fake)
    said = await stored_messages(settings, channel, stored_sender(someone))
    assert said[0] == (Role.CUSTOMER, QUESTION)
    bot_texts = [text for role, text in said if role is Role.BOT]
    assert bot_texts and len(replies) == len(bot_texts)
    for call, text in zip(replies, bot_texts, strict=True):
        assert someone.text(call).startswith(text)
    first = replies[0]
    if channel == "telegram":
        assert first.path == f"/telegram/bot{fp.TELEGRAM_TOKEN}/sendMessage"
    elif channel == "slack":
        assert first.headers["authorization"] == f"Bearer {fp.SLACK_BOT_TOKEN}"
    elif channel == "whatsapp":
        assert first.path == f"/graph/v23.0/{fp.PHONE_NUMBER_ID}/messages"
        assert first.headers["authorization"] == f"Bearer {fp.WHATSAPP_TOKEN}"
        assert first.body["messaging_product"] == "whatsapp"
    else:
        assert first.path == "/graph/v23.0/me/messages"
        assert first.headers["authorization"] == f"Bearer {fp.MESSENGER_TOKEN}"
        assert first.body["messaging_type"] == "RESPONSE"


def stored_sender(someone: Customer) -> str:
    if isinstance(someone, SlackCustomer):
        return f"{someone.id}:{someone.user}"
    return someone.id


@pytest.mark.parametrize("channel", CUSTOMERS)
@pytest.mark.parametrize(("kind", "status"), [("unsigned", 401), ("wrongly_signed", 403)])
async def test_unsigned_or_wrongly_signed_webhook_is_refused(
    channel: str,
    kind: str,
    status: int,
    settings: Settings,
    fake: FakeProvider,
    shop_bundle: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A webhook without a signature gets 401, with a wrong one 403: nothing is stored or
    sent, and a warning is logged without the body."""
    someone = customer(channel)
    secret_text = "my card number is 4111 1111 1111 1111"
    signed = someone.message("1", secret_text)
    webhook = someone.unsigned(signed) if kind == "unsigned" else someone.wrongly_signed(signed)
    with caplog.at_level(logging.WARNING), running_server(settings, model=shop_bundle) as address:
        assert post(address, webhook).status_code == status
    assert fake.sent() == []
    assert await stored_messages(settings, channel, stored_sender(someone)) == []
    refusals = [r for r in caplog.records if "webhook refused" in r.getMessage()]
    assert len(refusals) == 1 and refusals[0].levelno == logging.WARNING
    assert all(secret_text not in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("channel", CUSTOMERS)
def test_redelivered_message_is_answered_once(
    channel: str, settings: Settings, fake: FakeProvider, shop_bundle: Any
) -> None:
    """A message delivered twice (the provider's retry, same message id) is answered once:
    its customer gets as many replies as another customer who sent it once."""
    twice, once = customer(channel), customer(channel, other=True)
    with running_server(settings, model=shop_bundle) as address:
        webhook = twice.message("1", QUESTION)
        assert post(address, webhook).status_code == 200
        if channel == "slack":  # Slack marks its retries
            retry = {**webhook.headers, "X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "x"}
            webhook = Webhook(webhook.path, webhook.body, retry)
        assert post(address, webhook).status_code == 200
        assert post(address, once.message("2", QUESTION)).status_code == 200
    # the server has stopped: every answer in flight was sent before it did
    assert len(once.replies(fake)) >= 1
    assert len(twice.replies(fake)) == len(once.replies(fake))


@pytest.mark.parametrize("channel", CUSTOMERS)
def test_outbound_call_is_retried_after_a_5xx(
    channel: str, settings: Settings, fake: FakeProvider, shop_bundle: Any
) -> None:
    """The provider's API answers 500 once: the same call is retried and the reply arrives
    once."""
    someone = customer(channel)
    fake.fail_next(someone.send_path, 500)
    with running_server(settings, model=shop_bundle) as address:
        assert post(address, someone.message("1", QUESTION)).status_code == 200
    calls = someone.replies(fake, delivered_only=False)
    assert [c.status for c in calls[:2]] == [500, 200]
    assert calls[0].body == calls[1].body
    delivered = [someone.text(c) for c in someone.replies(fake)]
    assert delivered.count(someone.text(calls[0])) == 1


def test_429_is_retried(settings: Settings, fake: FakeProvider, shop_bundle: Any) -> None:
    """A 429 (rate limited) is retried and the reply arrives once."""
    someone = TelegramCustomer(IDS["telegram"])
    fake.fail_next("/sendMessage", 429)
    with running_server(settings, model=shop_bundle) as address:
        assert post(address, someone.message("1", QUESTION)).status_code == 200
    calls = someone.replies(fake, delivered_only=False)
    assert [c.status for c in calls[:2]] == [429, 200]
    assert calls[0].body == calls[1].body


async def test_other_4xx_is_given_up_at_once(
    settings: Settings, fake: FakeProvider, shop_bundle: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A 400 is not retried: one try per reply, an error in the log (without the token)."""
    someone = TelegramCustomer(IDS["telegram"])
    fake.fail_next("/sendMessage", *[400] * 20)
    with caplog.at_level(logging.WARNING), running_server(settings, model=shop_bundle) as address:
        assert post(address, someone.message("1", QUESTION)).status_code == 200
    said = await stored_messages(settings, "telegram", someone.id)
    answers = sum(1 for role, _ in said if role is Role.BOT)
    calls = someone.replies(fake, delivered_only=False)
    assert answers >= 1 and len(calls) == answers
    assert all(c.status == 400 for c in calls)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and "HTTP 400" in r.message]
    assert len(errors) == answers
    assert all(fp.TELEGRAM_TOKEN not in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("channel", CUSTOMERS)
async def test_events_without_customer_text_are_ignored(
    channel: str, settings: Settings, fake: FakeProvider, shop_bundle: Any
) -> None:
    """Stickers, images, joins, edits, statuses, echoes and the bot's own messages get 200
    and nothing else."""
    someone = customer(channel)
    with running_server(settings, model=shop_bundle) as address:
        for name, payload in someone.ignored_events().items():
            assert post(address, someone.signed(payload)).status_code == 200, name
    assert fake.sent() == []
    assert await stored_messages(settings, channel, stored_sender(someone)) == []


@pytest.mark.parametrize(
    ("channel", "token"), [("whatsapp", fp.WHATSAPP_VERIFY), ("messenger", fp.MESSENGER_VERIFY)]
)
def test_meta_subscription_handshake(
    channel: str, token: str, settings: Settings, shop_bundle: Any
) -> None:
    """Meta's GET handshake echoes hub.challenge for the right verify token only."""
    url_path = f"/webhooks/{channel}/webhook"
    with running_server(settings, model=shop_bundle) as address:
        url = f"http://{address}{url_path}"
        params = {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "1158201444"}
        ok = httpx.get(url, params=params)
        assert ok.status_code == 200 and ok.text == "1158201444"
        wrong = httpx.get(url, params={**params, "hub.verify_token": "guess"})
        assert wrong.status_code == 403
        assert httpx.get(url, params={**params, "hub.mode": "unsubscribe"}).status_code == 403
        assert httpx.get(url).status_code == 403


def test_slack_url_verification_and_replay_protection(
    settings: Settings, fake: FakeProvider, shop_bundle: Any
) -> None:
    """Slack's signed url_verification gets its challenge back; an unsigned one 401; a
    correctly signed request more than 5 minutes old 403."""
    slack = SlackCustomer(IDS["slack"])
    challenge = {
        "token": "Jhj5dZrVaK7ZwHHjRyZWjbDl",
        "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
        "type": "url_verification",
    }
    with running_server(settings, model=shop_bundle) as address:
        answer = post(address, slack.signed(challenge))
        assert answer.status_code == 200 and answer.json() == {"challenge": challenge["challenge"]}
        assert post(address, slack.unsigned(slack.signed(challenge))).status_code == 401
        body = json.dumps(slack.payload("1", QUESTION)).encode()
        old = slack.sign(body, timestamp=int(NOW.timestamp()) - 10 * 365 * 86400)
        replayed = Webhook(slack.path, body, {"Content-Type": "application/json", **old})
        assert post(address, replayed).status_code == 403
    assert fake.sent() == []


def test_a_channel_without_settings_is_not_served(
    tmp_path: Path, shop_home: Path, fake: FakeProvider, shop_bundle: Any
) -> None:
    """Without its secrets, a provider's webhook is 404; the others still work."""
    settings = settings_for(
        tmp_path, shop_home, fake, telegram_bot_token=None, telegram_secret_token=None
    )
    with running_server(settings, model=shop_bundle) as address:
        telegram = TelegramCustomer("4242")
        assert post(address, telegram.message("1", QUESTION)).status_code == 404
        slack = SlackCustomer("D024BE91L")
        assert post(address, slack.message("1", QUESTION)).status_code == 200


def test_incomplete_settings_are_refused_at_startup(
    tmp_path: Path, shop_home: Path, fake: FakeProvider
) -> None:
    """Some but not all of a provider's secrets is a mistake: the app says which are missing."""
    settings = settings_for(tmp_path, shop_home, fake, messenger_verify_token=None)
    with pytest.raises(IncompleteSettings, match="FRONTDESK_MESSENGER_VERIFY_TOKEN"):
        create_app(settings)


# --- pure: signatures, retries, wire formats ------------------------------------------


@pytest.mark.parametrize(
    ("given", "verdict"),
    [
        ("s3cret", Verdict.OK),
        (None, Verdict.MISSING),
        ("", Verdict.MISSING),
        ("s3creT", Verdict.WRONG),
    ],
)
def test_secret_token(given: str | None, verdict: Verdict) -> None:
    """Telegram's secret header must equal the configured secret."""
    assert check_secret_token("s3cret", given) is verdict


def test_hub_signature() -> None:
    """X-Hub-Signature-256 is sha256= + HMAC-SHA256(app secret, the raw body)."""
    body = b'{"object":"page"}'
    good = hub_signature("app", body)
    assert good.startswith("sha256=") and len(good) == 7 + 64
    assert check_hub_signature("app", body, good) is Verdict.OK
    assert check_hub_signature("app", body + b" ", good) is Verdict.WRONG
    assert check_hub_signature("other", body, good) is Verdict.WRONG
    assert check_hub_signature("app", body, good.removeprefix("sha256=")) is Verdict.WRONG
    assert check_hub_signature("app", body, None) is Verdict.MISSING


@pytest.mark.parametrize(
    ("stamp", "now", "verdict"),
    [
        ("1764489600", 1764489600.0, Verdict.OK),
        ("1764489600", 1764489600.0 + 300, Verdict.OK),
        ("1764489600", 1764489600.0 + 301, Verdict.STALE),
        ("1764489600", 1764489600.0 - 301, Verdict.STALE),
    ],
)
def test_slack_signature_window(stamp: str, now: float, verdict: Verdict) -> None:
    """A Slack signature is good for 5 minutes either side of its timestamp."""
    body = b"payload"
    signature = slack_signature("secret", stamp, body)
    assert check_slack_signature("secret", body, stamp, signature, now) is verdict


def test_slack_signature_covers_timestamp_and_body() -> None:
    """Changing the body or the timestamp breaks the signature; a missing part is missing."""
    now = 1764489600.0
    signature = slack_signature("secret", "1764489600", b"body")
    assert signature.startswith("v0=")
    assert check_slack_signature("secret", b"body!", "1764489600", signature, now) is Verdict.WRONG
    assert check_slack_signature("secret", b"body", "1764489601", signature, now) is Verdict.WRONG
    assert check_slack_signature("secret", b"body", None, signature, now) is Verdict.MISSING
    assert check_slack_signature("secret", b"body", "1764489600", None, now) is Verdict.MISSING


def test_subscription_challenge() -> None:
    """The handshake needs mode subscribe, the right token and a challenge."""
    ok = {"hub.mode": "subscribe", "hub.verify_token": "t", "hub.challenge": "c"}
    assert subscription_challenge(ok, "t") == "c"
    assert subscription_challenge({**ok, "hub.verify_token": "x"}, "t") is None
    assert subscription_challenge({**ok, "hub.mode": "x"}, "t") is None
    assert subscription_challenge({"hub.mode": "subscribe", "hub.verify_token": "t"}, "t") is None


POLICY = RetryPolicy(attempts=4, backoff_s=0.5, max_delay_s=10)


@pytest.mark.parametrize(
    ("attempt", "status", "retry_after", "delay"),
    [
        (1, 500, None, 0.5),
        (2, 503, None, 1.0),
        (3, None, None, 2.0),  # connection error
        (4, 500, None, None),  # out of attempts
        (1, 429, None, 0.5),
        (1, 429, 3.0, 3.0),  # Retry-After is respected
        (3, 429, 1.0, 2.0),  # ... but never sooner than the backoff
        (1, 429, 60.0, None),  # asks for more than we wait: give up
        (1, 400, None, None),
        (1, 401, None, None),
        (1, 403, None, None),
        (1, 404, None, None),
    ],
)
def test_retry_delay(
    attempt: int, status: int | None, retry_after: float | None, delay: float | None
) -> None:
    """Exponential backoff on 5xx, 429 and connection errors; no retry on other 4xx."""
    assert retry_delay(POLICY, attempt, status, retry_after) == delay


def test_backoff_is_capped() -> None:
    """The doubling wait stops growing at max_delay_s."""
    policy = RetryPolicy(attempts=20, backoff_s=1, max_delay_s=5)
    assert retry_delay(policy, 10, 502, None) == 5


def test_parse_retry_after() -> None:
    """Retry-After comes as seconds or as an HTTP date."""
    now = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after("Mon, 30 Nov 2026 09:00:12 GMT", now) == 12.0
    assert parse_retry_after("Mon, 30 Nov 2026 08:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_split_text() -> None:
    """Long replies are split at whitespace within the provider's limit."""
    assert split_text("short", 10) == ["short"]
    assert split_text("aaaa bbbb cccc", 9) == ["aaaa bbbb", "cccc"]
    assert split_text("first line\nsecond", 12) == ["first line", "second"]
    assert split_text("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]


BUTTONS = (Button("Track my order", "Where is my order?"), Button("Returns", "How do I return?"))


def test_telegram_buttons_become_an_inline_keyboard() -> None:
    """Buttons are an inline keyboard whose callback data is the payload (or, past 64 bytes,
    the title)."""
    telegram = Telegram(SecretStr("1:t"), SecretStr("s"), "https://api.telegram.org")
    long = Button("Long one", "x" * 65)
    [request] = telegram.render(Address("-100123"), Reply("Hi!", (*BUTTONS, long)))
    assert request.url == "https://api.telegram.org/bot1:t/sendMessage"
    assert request.body == {
        "chat_id": -100123,
        "text": "Hi!",
        "reply_markup": {
            "inline_keyboard": [
                [{"text": "Track my order", "callback_data": "Where is my order?"}],
                [{"text": "Returns", "callback_data": "How do I return?"}],
                [{"text": "Long one", "callback_data": "Long one"}],
            ]
        },
    }


def test_telegram_button_press_is_the_payload_and_is_acknowledged() -> None:
    """A pressed inline button arrives as a callback query: its data is the customer's
    message, and answerCallbackQuery stops the button's spinner."""
    telegram = Telegram(SecretStr("1:t"), SecretStr("s"), "https://api.telegram.org")
    update = {
        "update_id": 10001,
        "callback_query": {
            "id": "4382bfdwdsb323b2d9",
            "from": {"id": 4242, "is_bot": False, "first_name": "Ada"},
            "message": {
                "message_id": 17,
                "from": {"id": 1, "is_bot": True, "first_name": "Shop"},
                "chat": {"id": 4242, "type": "private"},
                "date": 1764489600,
                "text": "Hi!",
            },
            "chat_instance": "-4711",
            "data": "Where is my order?",
        },
    }
    [incoming] = telegram.parse(json.dumps(update).encode(), {}).messages
    assert incoming.inbound.text == "Where is my order?"
    assert incoming.inbound.sender == "4242" and incoming.address.recipient == "4242"
    assert incoming.inbound.message_id == "cb4382bfdwdsb323b2d9"
    [ack] = incoming.acks
    assert ack.url.endswith("/answerCallbackQuery")
    assert ack.body == {"callback_query_id": "4382bfdwdsb323b2d9"}


def test_whatsapp_buttons_are_interactive_up_to_three() -> None:
    """Up to 3 buttons are interactive reply buttons (title cut to 20 characters); more are
    listed in a text message."""
    whatsapp = WhatsApp(SecretStr("a"), SecretStr("t"), SecretStr("v"), "https://g/v23.0")
    to = Address("16505551234", via="1065")
    wide = Button("Talk to a person right now please", "I want a person")
    [request] = whatsapp.render(to, Reply("Anything else?", (*BUTTONS, wide)))
    assert request.url == "https://g/v23.0/1065/messages"
    assert request.body["type"] == "interactive"
    interactive: Any = request.body["interactive"]
    assert interactive["body"] == {"text": "Anything else?"}
    assert [b["reply"] for b in interactive["action"]["buttons"]] == [
        {"id": "Where is my order?", "title": "Track my order"},
        {"id": "How do I return?", "title": "Returns"},
        {"id": "I want a person", "title": "Talk to a person rig"},
    ]
    four = (*BUTTONS, *BUTTONS)
    [text] = whatsapp.render(to, Reply("Anything else?", four))
    assert text.body["type"] == "text"
    assert text.body["text"] == {
        "preview_url": False,
        "body": "Anything else?\n\n• Track my order\n• Returns\n• Track my order\n• Returns",
    }


def test_whatsapp_button_press_is_the_payload() -> None:
    """A pressed reply button arrives as an interactive message carrying the button's id."""
    whatsapp = WhatsApp(SecretStr("a"), SecretStr("t"), SecretStr("v"), "https://g/v23.0")
    wa = WhatsAppCustomer("16505551234")
    payload = wa.payload("1", "")
    message = payload["entry"][0]["changes"][0]["value"]["messages"][0]
    del message["text"]
    message.update(
        type="interactive",
        interactive={
            "type": "button_reply",
            "button_reply": {"id": "Where is my order?", "title": "Track my order"},
        },
    )
    [incoming] = whatsapp.parse(json.dumps(payload).encode(), {}).messages
    assert incoming.inbound.text == "Where is my order?"
    assert incoming.address == Address("16505551234", via=fp.PHONE_NUMBER_ID)


def test_messenger_buttons_become_quick_replies() -> None:
    """Buttons are quick replies; a tapped quick reply's payload is the customer's message."""
    messenger = Messenger(SecretStr("a"), SecretStr("t"), SecretStr("v"), "https://g/v23.0")
    [request] = messenger.render(Address("7001"), Reply("Anything else?", BUTTONS))
    assert request.body == {
        "recipient": {"id": "7001"},
        "messaging_type": "RESPONSE",
        "message": {
            "text": "Anything else?",
            "quick_replies": [
                {
                    "content_type": "text",
                    "title": "Track my order",
                    "payload": "Where is my order?",
                },
                {"content_type": "text", "title": "Returns", "payload": "How do I return?"},
            ],
        },
    }
    tap = MessengerCustomer("7001").payload("1", "Track my order")
    tap["entry"][0]["messaging"][0]["message"]["quick_reply"] = {"payload": "Where is my order?"}
    [incoming] = messenger.parse(json.dumps(tap).encode(), {}).messages
    assert incoming.inbound.text == "Where is my order?"


def test_slack_lists_buttons_and_reads_plain_text() -> None:
    """Slack replies list the buttons under the text; incoming markup becomes plain text."""
    slack = Slack(SecretStr("s"), SecretStr("xoxb-1"), "https://slack.com/api")
    [request] = slack.render(Address("D024BE91L"), Reply("Anything else?", BUTTONS))
    assert request.url == "https://slack.com/api/chat.postMessage"
    assert request.headers == {"Authorization": "Bearer xoxb-1"}
    assert request.body == {
        "channel": "D024BE91L",
        "text": "Anything else?\n\n• Track my order\n• Returns",
    }
    assert plain_text("<@U0BOT> where is <https://x.y/o|my order> &amp; refund?") == (
        "where is my order & refund?"
    )


def test_slack_ok_false_is_a_refusal() -> None:
    """Slack answers errors with 200 and ok=false: that is a failed delivery."""
    slack = Slack(SecretStr("s"), SecretStr("xoxb-1"), "https://slack.com/api")
    request = httpx.Request("POST", "https://slack.com/api/chat.postMessage")
    good = httpx.Response(200, json={"ok": True}, request=request)
    bad = httpx.Response(200, json={"ok": False, "error": "channel_not_found"}, request=request)
    assert slack.refused(good) is None
    assert slack.refused(bad) == "channel_not_found"


@pytest.mark.parametrize("channel", CUSTOMERS)
async def test_an_agents_reply_reaches_the_messaging_customer(
    channel: str, settings: Settings, fake: FakeProvider, shop_bundle: Any
) -> None:
    """A messaging customer asks for a person; the agent who takes the conversation in the
    console answers, and the answer goes out through the provider to that customer."""
    import asyncio

    from channels.console.auth import hash_password
    from channels.store import AgentRole
    from tests.channels.test_console import PASSWORD, logged_in

    someone = customer(channel)
    store = await Store.open(settings.store_url())
    try:
        password_hash = await asyncio.to_thread(hash_password, PASSWORD)
        await store.add_agent("ann@shop.example", "Ann", password_hash, AgentRole.AGENT, NOW)
        with running_server(settings, model=shop_bundle) as address:
            assert post(address, someone.message("1", "I want to talk to a person")).status_code
            fake.wait_for(1, someone.send_path)  # the bot answered first
            record = await store.conversation_for(channel, stored_sender(someone), NOW)
            async with asyncio.timeout(30):
                while True:  # the server answers in another thread
                    found = await store.get_conversation(record.id)
                    if found is not None and found.status.value == "waiting":
                        break
                    await asyncio.sleep(0.05)
            ann = await logged_in(address, "ann@shop.example")
            taken = await ann.post(f"/console/api/conversations/{record.id}/take")
            assert taken.status_code == 200
            sent = await ann.post(
                f"/console/api/conversations/{record.id}/messages", {"text": "Hi, Ann here."}
            )
            assert sent.status_code == 200
            # wait for Ann's text itself: the bot's hand-over messages (how many depends on
            # the bot) may still be on their way to the provider
            calls = fake.wait_until(
                lambda sent: any(someone.text(c) == "Hi, Ann here." for c in sent),
                someone.send_path,
                what="the agent's reply",
            )
    finally:
        await store.close()
    agent_calls = [c for c in calls if someone.text(c) == "Hi, Ann here."]
    assert len(agent_calls) == 1
    assert someone.recipient(agent_calls[0]) == someone.recipient(calls[0])


UNUSABLE_SENDERS = [(channel, "9" * 251) for channel in CUSTOMERS] + [
    (channel, "a\x00b")
    for channel in CUSTOMERS
    if channel != "telegram"  # its ids are numbers
]


@pytest.mark.parametrize(("channel", "sender"), UNUSABLE_SENDERS)
async def test_a_signed_webhook_with_an_unusable_sender_id_gets_400(
    channel: str, sender: str, settings: Settings, fake: FakeProvider, shop_bundle: Any
) -> None:
    """A correctly signed body whose sender id is over-long (Telegram's chat.id = 10**250)
    or holds a NUL: 400, as documented, nothing stored, and the server keeps serving."""
    bad, good = CUSTOMERS[channel](sender), customer(channel)
    with running_server(settings, model=shop_bundle) as address:
        assert post(address, bad.message("1", QUESTION)).status_code == 400
        assert post(address, good.message("2", QUESTION)).status_code == 200
    store = await Store.open(settings.store_url())
    try:
        page = await store.conversations_page()
    finally:
        await store.close()
    assert len(page) == 1  # the good customer's only
