"""Prometheus metrics of one server process (``GET /metrics``).

Each app owns its registry, so that several apps in one process (tests, embedding) do not
share counters. Names follow Prometheus conventions: ``_total`` counters, ``_seconds``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.messages = Counter(
            "frontdesk_messages",
            "Messages persisted, by direction (in: customer, out: bot or agent).",
            ["direction"],
            registry=self.registry,
        )
        self.reply_seconds = Histogram(
            "frontdesk_reply_seconds",
            "From a customer message being accepted to the bot's answer being sent.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.inference_seconds = Histogram(
            "frontdesk_inference_seconds",
            "One micro-batch's encoder pass, retrieval and ranking.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "frontdesk_batch_size",
            "Messages analysed per encoder pass.",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.connections = Gauge(
            "frontdesk_connections",
            "Open widget websocket connections.",
            registry=self.registry,
        )
        self.socketio_connections = Gauge(
            "frontdesk_socketio_connections",
            "Open Socket.IO (Rasa Webchat) connections.",
            registry=self.registry,
        )
        self.refused = Counter(
            "frontdesk_refused",
            "Requests and connections refused by a limit, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.model_swaps = Counter(
            "frontdesk_model_swaps",
            "Model bundles swapped in (outcome: swapped or refused).",
            ["outcome"],
            registry=self.registry,
        )

        self.answers = Counter(
            "frontdesk_answers",
            "Bot messages answering customers, by the model version that chose them and the "
            "decision (reply, clarify, action, escalate, handoff).",
            ["model", "decision"],
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
