"""The dialogue engine: what to say next. Pure logic, no network, no clock reads."""

from bot.definition import load_bot
from bot.engine import Engine
from bot.errors import BotError, DefinitionError, IllegalTransition
from bot.types import (
    BotDefinition,
    Clarify,
    Conversation,
    ConversationStatus,
    Decision,
    Escalate,
    ModelOutputs,
    Reply,
    RunAction,
)

__all__ = [
    "BotDefinition",
    "BotError",
    "Clarify",
    "Conversation",
    "ConversationStatus",
    "Decision",
    "DefinitionError",
    "Engine",
    "Escalate",
    "IllegalTransition",
    "ModelOutputs",
    "Reply",
    "RunAction",
    "load_bot",
]
