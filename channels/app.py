"""The FastAPI app factory: a lifespan that loads models once, and thin routes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, WebSocket
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response

from channels import rasa_rest, socketio_channel
from channels.console.routes import install as install_console
from channels.inference import Analyzer
from channels.limits import AddressLimits, RequestLimits
from channels.messaging.router import messaging_router
from channels.metrics import CONTENT_TYPE_LATEST, Metrics
from channels.runtime import Runtime
from channels.settings import Settings
from channels.ws import chat_socket

STATIC = Path(__file__).parent / "static"


async def _invalid_request(request: Request, exc: Exception) -> Response:
    """FastAPI's 422, rendered as ASCII JSON: a body with a lone surrogate is echoed
    escaped instead of failing to encode (a 500)."""
    assert isinstance(exc, RequestValidationError)
    body = json.dumps({"detail": jsonable_encoder(exc.errors())}, default=str)
    return Response(body, status_code=422, media_type="application/json")


def create_app(settings: Settings | None = None, *, model: Analyzer | None = None) -> FastAPI:
    """Build the app; ``model`` replaces the registry's bundle (tests, embedding)."""
    settings = settings or Settings()
    metrics = Metrics()
    addresses = AddressLimits(settings.ip_connect_rate, settings.ip_request_rate)
    socketio = socketio_channel.SocketIOChannel(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await Runtime.start(settings, model, metrics)
        app.state.runtime = runtime
        socketio.start(runtime)
        try:
            yield
        finally:
            await socketio.stop()
            await runtime.stop()

    app = FastAPI(title="Frontdesk", version="0.1.0", lifespan=lifespan)
    app.add_middleware(
        RequestLimits,
        max_body_bytes=settings.max_body_bytes,
        addresses=addresses,
        metrics=metrics,
    )
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.include_router(rasa_rest.router)
    app.include_router(socketio_channel.router)
    app.include_router(messaging_router(settings))
    install_console(app)  # /console, /console/api, /ws/console
    # Rasa Webchat's default socketPath
    app.mount("/socket.io", socketio.asgi_app())

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/widget.js", include_in_schema=False)
    async def widget() -> FileResponse:
        return FileResponse(STATIC / "widget.js", media_type="text/javascript")

    @app.get("/metrics", include_in_schema=False)
    async def prometheus(request: Request) -> Response:
        runtime: Runtime = request.app.state.runtime
        return Response(runtime.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        runtime: Runtime = request.app.state.runtime
        store_ok = await runtime.store.ping()
        body = {"model": runtime.batcher.model.version, "store": store_ok}
        return JSONResponse(body, status_code=200 if store_ok else 503)

    @app.websocket("/ws/chat")
    async def ws_chat(ws: WebSocket) -> None:
        await chat_socket(ws, ws.app.state.runtime, addresses)

    return app
