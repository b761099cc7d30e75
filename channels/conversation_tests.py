"""Run a bot's conversation tests (``bot.conversation_tests``) against one bundle, through
the serving path: a :class:`~channels.runtime.Runtime` with that bundle, a private SQLite
store, the bot's actions, each test a new conversation whose messages go through
``ConversationService.accept`` and ``respond`` as a channel's do. The bot's messages are
read back from the store and judged.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.conversation_tests import ConversationTest, StepResult, judge, message_of
from bot.engine import Engine
from bot.types import BotDefinition, Role
from channels.inference import Analyzer
from channels.settings import Settings


@dataclass(frozen=True)
class TestRun:
    __test__ = False  # not a pytest class

    version: str
    results: tuple[StepResult, ...]

    @property
    def passed(self) -> int:
        return sum(1 for r in self.results if r.passed)

    @property
    def share(self) -> float | None:
        """Share of checks passed; None without checks."""
        return self.passed / len(self.results) if self.results else None

    def failures(self) -> list[StepResult]:
        return [r for r in self.results if not r.passed]


async def run_tests(
    tests: Sequence[ConversationTest],
    model: Analyzer,
    definition: BotDefinition,
    settings: Settings,
) -> TestRun:
    """Hold each test's conversation with ``model`` serving ``definition`` (the server's
    own code path, a private store in a temporary folder) and judge every step."""
    from channels.runtime import Runtime

    with tempfile.TemporaryDirectory(prefix="frontdesk-tests-") as work:
        private = settings.model_copy(
            update={
                "home": Path(work),
                "database_url": f"sqlite+aiosqlite:///{Path(work) / 'tests.db'}",
                "redis_url": None,
                "reload_interval_s": 0.0,
                "gc_freeze": False,
                "recover_on_start": False,
            }
        )
        runtime = await Runtime.start(private, model=model)
        runtime.definition = definition
        runtime.service.engine = Engine(definition)
        try:
            results: list[StepResult] = []
            for test in tests:
                record, _ = await runtime.service.open("tests")
                for number, step in enumerate(test.steps, 1):
                    event, _ = await runtime.service.accept(record.id, f"s{number}", step.customer)
                    await runtime.service.respond(event)
                    if step.expect is None:
                        continue
                    later = await runtime.store.events_after(record.id, event.seq)
                    said = [
                        message_of(e.text or "", e.payload)
                        for e in later
                        if e.kind == "message"
                        and e.role is Role.BOT
                        and e.payload.get("in_reply_to") == event.seq
                    ]
                    results.append(judge(test.name, number, step, said))
        finally:
            await runtime.stop()
    return TestRun(model.version, tuple(results))
