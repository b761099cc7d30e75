"""Accepted messages are answered in the background: the webhook returns at once (providers
retry slow webhooks), the bot's replies go out through the provider's API afterwards.

The server keeps every task here and waits for them on shutdown (:meth:`Messaging.drain`).
Replies to one customer leave in the order the customer's messages were accepted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import replace
from typing import Any

from channels.bridge import ChannelBridge
from channels.locks import InProcessLocks
from channels.messaging.outbound import RetryPolicy, Sender
from channels.messaging.provider import Address, Incoming, OutboundRequest, Provider, reply_of
from channels.settings import Settings
from channels.store import StoredEvent

log = logging.getLogger(__name__)

ADDRESS_KEY = "reply_address"
"""The conversation ``meta`` key holding the provider address replies go to."""


class Messaging:
    def __init__(self, bridge: ChannelBridge, settings: Settings) -> None:
        self.bridge = bridge
        self.max_text_chars = settings.max_text_chars
        policy = RetryPolicy(
            attempts=settings.outbound_attempts,
            backoff_s=settings.outbound_backoff_s,
            max_delay_s=settings.outbound_max_delay_s,
        )
        self.sender = Sender(policy, timeout_s=settings.outbound_timeout_s)
        self._tasks: set[asyncio.Task[None]] = set()
        # imported here: the router imports the runtime, which imports this module
        from channels.messaging.router import configured_providers

        self.providers = {p.channel: p for p in configured_providers(settings)}
        self._order = InProcessLocks()  # one customer's replies leave in order

    async def accept(self, provider: Provider, incoming: Incoming) -> bool:
        """Persist ``incoming`` (before the webhook is acknowledged) and answer it in the
        background; ``False`` when it is a redelivery of a message already accepted."""
        inbound = incoming.inbound
        text = inbound.text.strip()
        if not text:
            return False
        if len(text) > self.max_text_chars:
            log.info(
                "%s message %s cut to %d characters", inbound.channel, inbound.message_id, len(text)
            )
            text = text[: self.max_text_chars]
        event, created = await self.bridge.receive(replace(inbound, text=text))
        if not created:
            log.info(
                "%s message %s was already accepted (a redelivery): answered only if it "
                "has no answer yet",
                inbound.channel,
                inbound.message_id,
            )
            self._spawn(self._catch_up(provider, incoming, event))
            return False
        await self._remember_address(event.conversation_id, incoming.address)
        for ack in incoming.acks:
            self._spawn(self._deliver(provider, ack))
        self._spawn(self._answer(provider, incoming, event))
        return True

    async def relay(self, channel: str, event: StoredEvent) -> bool:
        """Send a message written outside the bot (an agent's, from the console) to the
        customer of a messaging conversation, in the background; False when the channel is
        not a configured messaging app or the customer's address is unknown."""
        provider = self.providers.get(channel)
        if provider is None:
            return False
        stored = (await self.bridge.store.meta_of(event.conversation_id)).get(ADDRESS_KEY)
        if not isinstance(stored, dict) or not isinstance(stored.get("recipient"), str):
            log.error("no reply address for %s conversation %s", channel, event.conversation_id)
            return False
        via = stored.get("via")
        address = Address(stored["recipient"], via if isinstance(via, str) else None)

        async def send() -> None:
            for request in provider.render(address, reply_of(event)):
                await self._deliver(provider, request)

        self._spawn(send())
        return True

    async def _remember_address(self, conversation_id: str, address: Address) -> None:
        """Keep where replies go, for agents' messages later (one write per change)."""
        wanted = {"recipient": address.recipient, "via": address.via}
        if (await self.bridge.store.meta_of(conversation_id)).get(ADDRESS_KEY) != wanted:
            await self.bridge.store.update_meta(conversation_id, {ADDRESS_KEY: wanted})

    async def drain(self) -> None:
        """Wait for every answer in flight (shutdown, tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        await self.sender.aclose()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, provider: Provider, request: OutboundRequest) -> None:
        response = await self.sender.send(request)
        if response is not None and (why := provider.refused(response)):
            log.error("%s refused: %s", request.what, why)

    async def _catch_up(self, provider: Provider, incoming: Incoming, event: StoredEvent) -> None:
        """A redelivered message: answer it (and send the answer) only if it has none yet."""
        inbound = incoming.inbound
        async with self._order.hold(f"{inbound.channel}:{inbound.sender}"):
            try:
                if not await self.bridge.service.catch_up(event):
                    return  # answered (and sent) on its first delivery
                replies = await self.bridge.replies_to(event)
            except Exception:
                log.exception("answering %s message %s failed", inbound.channel, inbound.message_id)
                return
            for stored in replies:
                for request in provider.render(incoming.address, reply_of(stored)):
                    await self._deliver(provider, request)

    async def _answer(self, provider: Provider, incoming: Incoming, event: StoredEvent) -> None:
        inbound = incoming.inbound
        async with self._order.hold(f"{inbound.channel}:{inbound.sender}"):
            try:
                replies = await self.bridge.answer(event)
            except Exception:
                log.exception("answering %s message %s failed", inbound.channel, inbound.message_id)
                return
            for stored in replies:
                for request in provider.render(incoming.address, reply_of(stored)):
                    await self._deliver(provider, request)
