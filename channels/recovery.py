"""Crash recovery: no accepted customer message is left without an answer.

A message is stored (and acked) before it is answered. A process that dies in between, or
a replica that dies holding a conversation's lock, leaves it unanswered. Each server looks
for such messages once when it starts and then every ``recovery_interval_s``: conversations
the bot handles whose last event is a customer message at least ``recovery_grace_s`` old
(younger ones are still being answered by whoever took them). Each is answered under the
conversation's lock, in seq order, unless it was answered meanwhile
(``ConversationService.catch_up``); one older than ``recovery_max_age_s`` gets one apology
with the offer of a person instead of a late answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from channels.service import ConversationService
from channels.settings import Settings

log = logging.getLogger(__name__)


class Recovery:
    def __init__(self, service: ConversationService, settings: Settings) -> None:
        self.service = service
        self.settings = settings
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="frontdesk-recovery")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def sweep(self, *, at_start: bool = False) -> tuple[int, int]:
        """One look: (conversations, messages) answered. At start every unanswered tail
        counts (this process accepted nothing yet); later only those past the grace."""
        now = self.service.clock()
        since = now - timedelta(seconds=self.settings.recovery_window_s)
        before = now if at_start else now - timedelta(seconds=self.settings.recovery_grace_s)
        found = await self.service.recover(
            since, before + timedelta(microseconds=1), max_age_s=self.settings.recovery_max_age_s
        )
        if found[0]:
            log.warning(
                "recovery: answered %d unanswered messages in %d conversations", found[1], found[0]
            )
        return found

    async def _run(self) -> None:
        at_start = True
        while True:
            try:
                await self.sweep(at_start=at_start)
            except Exception:  # the sweep must outlive one bad look (a store outage)
                log.exception("recovery: sweep failed")
            at_start = False
            if self.settings.recovery_interval_s <= 0:
                return
            await asyncio.sleep(self.settings.recovery_interval_s)
