"""A real uvicorn server on a free port, in a thread, for tests over real sockets."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from channels.app import create_app
from channels.inference import Analyzer
from channels.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_server(
    settings: Settings, model: Analyzer | None = None, port: int | None = None
) -> Iterator[str]:
    """Serve ``create_app(settings)``; yields the base URL ``127.0.0.1:PORT``.

    ``port`` serves on a given port (a restart of an earlier server), else on a free one.
    """
    port = port or free_port()
    app = create_app(settings, model=model)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        ws=settings.ws_protocol,
        ws_max_size=settings.max_frame_bytes,
        ws_per_message_deflate=settings.ws_compression,
        lifespan="on",
        **settings.uvicorn_proxy_options(),  # as `frontdesk serve` runs it
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
