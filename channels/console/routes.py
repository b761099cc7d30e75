"""HTTP routes of the console (``/console``, ``/console/api/...``) and its websocket.

Every ``/console/api`` route needs an agent session (401 without one); every request that
changes something also needs the session's CSRF token in ``X-CSRF-Token`` and, when the
browser sends one, an ``Origin`` of this server (403 otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, FastAPI, Request, Response, WebSocket
from fastapi.responses import FileResponse, JSONResponse
from starlette.datastructures import Headers

from channels.console import wire
from channels.console.auth import COOKIE, CSRF_HEADER, AgentSession, Keys, Sessions, load_secret_key
from channels.console.desk import Desk
from channels.console.errors import ConsoleError, Forbidden, NotFound, NotLoggedIn
from channels.limits import client_address
from channels.runtime import Runtime
from channels.store import AgentRole

STATIC = Path(__file__).resolve().parents[1] / "static"
ASSETS = {
    "console.js": "text/javascript",
    "console.css": "text/css",
}


@dataclass
class Console:
    runtime: Runtime
    sessions: Sessions
    desk: Desk


def console_of(app: FastAPI | Any) -> Console:
    """The console of the app's running runtime (built on first use after startup)."""
    runtime: Runtime = app.state.runtime
    console: Console | None = getattr(app.state, "console", None)
    if console is None or console.runtime is not runtime:
        keys = Keys(load_secret_key(runtime.settings))
        console = Console(runtime, Sessions(runtime.settings, runtime.store, keys), Desk(runtime))
        app.state.console = console
    return console


def same_origin(headers: Headers) -> bool:
    """True without an ``Origin`` header (not a browser) or with one naming this host."""
    origin = headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == headers.get("host")


async def current(request: Request) -> AgentSession:
    console = console_of(request.app)
    now = console.runtime.service.clock()
    session = await console.sessions.find(request.cookies.get(COOKIE), now)
    if session is None:
        raise NotLoggedIn("log in to the console first (POST /console/login)")
    return session


async def changing(
    request: Request, session: Annotated[AgentSession, Depends(current)]
) -> AgentSession:
    """A session for a request that changes something: CSRF token and origin checked."""
    console = console_of(request.app)
    if not same_origin(request.headers):
        raise Forbidden("requests from another origin are refused")
    if not console.sessions.csrf_ok(session, request.headers.get(CSRF_HEADER)):
        raise Forbidden(
            f"missing or wrong {CSRF_HEADER} header; use the csrf_token from "
            "/console/login or /console/api/me"
        )
    return session


Agent = Annotated[AgentSession, Depends(current)]
Acting = Annotated[AgentSession, Depends(changing)]

router = APIRouter(tags=["console"])


@router.get("/console", include_in_schema=False)
async def page() -> FileResponse:
    return FileResponse(STATIC / "console.html", headers=_page_headers())


@router.get("/console/{asset}", include_in_schema=False)
async def asset(asset: str) -> FileResponse:
    if asset not in ASSETS:
        raise NotFound(f"no console file {asset!r}")
    return FileResponse(STATIC / asset, media_type=ASSETS[asset])


@router.post("/console/login")
async def login(body: wire.LoginIn, request: Request) -> JSONResponse:
    if not same_origin(request.headers):
        raise Forbidden("logins from another origin are refused")
    console = console_of(request.app)
    now = console.runtime.service.clock()
    session = await console.sessions.login(
        body.email, body.password, client_address(request.scope), now
    )
    if session is None:
        raise NotLoggedIn("wrong email or password")
    response = JSONResponse({"agent": wire.agent(session.agent), "csrf_token": session.csrf_token})
    response.set_cookie(
        COOKIE,
        session.token,
        max_age=int(console.sessions.lifetime.total_seconds()),
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/console/logout", status_code=204)
async def logout(session: Acting, request: Request) -> Response:
    await console_of(request.app).sessions.logout(session.token)
    response = Response(status_code=204)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.get("/console/api/me")
async def me(session: Agent) -> dict[str, Any]:
    return {"agent": wire.agent(session.agent), "csrf_token": session.csrf_token}


@router.get("/console/api/queue")
async def queue(session: Agent, request: Request) -> dict[str, Any]:
    desk = console_of(request.app).desk
    return {
        "waiting": [wire.queue_entry(e) for e in await desk.queue()],
        "mine": [wire.conversation(c) for c in await desk.mine(session.agent)],
    }


@router.get("/console/api/conversations/{conversation_id}")
async def conversation(conversation_id: str, session: Agent, request: Request) -> dict[str, Any]:
    return wire.history(await console_of(request.app).desk.history(conversation_id, session.agent))


@router.post("/console/api/conversations/{conversation_id}/take")
async def take(conversation_id: str, session: Acting, request: Request) -> dict[str, Any]:
    event = await console_of(request.app).desk.take(conversation_id, session.agent)
    return {"status": "agent", "seq": event.seq}


@router.get("/console/api/conversations/{conversation_id}/suggestions")
async def suggestions(conversation_id: str, session: Agent, request: Request) -> dict[str, Any]:
    found = await console_of(request.app).desk.suggestions(conversation_id, session.agent)
    return {"suggestions": [wire.suggestion(s) for s in found]}


@router.post("/console/api/conversations/{conversation_id}/messages")
async def reply(
    conversation_id: str, body: wire.ReplyIn, session: Acting, request: Request
) -> dict[str, Any]:
    event = await console_of(request.app).desk.reply(
        conversation_id, session.agent, body.text, body.in_reply_to, body.source
    )
    return {"seq": event.seq, "in_reply_to": event.payload.get("in_reply_to")}


@router.post("/console/api/conversations/{conversation_id}/typing", status_code=204)
async def typing(conversation_id: str, session: Acting, request: Request) -> Response:
    await console_of(request.app).desk.typing(conversation_id, session.agent)
    return Response(status_code=204)


@router.post("/console/api/conversations/{conversation_id}/tags")
async def tag(
    conversation_id: str, body: wire.TagIn, session: Acting, request: Request
) -> dict[str, Any]:
    found = await console_of(request.app).desk.tag(
        conversation_id, session.agent, body.seq, body.intent
    )
    return wire.tag(found)


@router.post("/console/api/conversations/{conversation_id}/hand-back")
async def hand_back(conversation_id: str, session: Acting, request: Request) -> dict[str, Any]:
    event = await console_of(request.app).desk.hand_back(conversation_id, session.agent)
    return {"status": "bot", "seq": event.seq}


@router.post("/console/api/conversations/{conversation_id}/close")
async def close(conversation_id: str, session: Acting, request: Request) -> dict[str, Any]:
    event = await console_of(request.app).desk.close(conversation_id, session.agent)
    return {"status": "closed", "seq": event.seq}


@router.get("/console/api/canned")
async def canned(session: Agent, request: Request) -> dict[str, Any]:
    return {"canned": [wire.canned(c) for c in console_of(request.app).desk.canned()]}


@router.get("/console/api/to-tag")
async def to_tag(session: Agent, request: Request) -> dict[str, Any]:
    if session.agent.role is not AgentRole.ADMIN:  # customers' words across conversations
        raise Forbidden("the messages to tag are for admins")
    found = await console_of(request.app).desk.to_tag()
    return {"messages": [wire.to_tag(m) for m in found]}


@router.get("/console/api/intents")
async def intents(session: Agent, request: Request) -> dict[str, Any]:
    definition = console_of(request.app).runtime.definition
    return {"intents": [{"name": i.name, "title": i.title} for i in definition.intents]}


@router.get("/console/api/stats")
async def stats(session: Agent, request: Request) -> dict[str, Any]:
    if session.agent.role is not AgentRole.ADMIN:
        raise Forbidden("the desk's numbers are for admins")
    return wire.numbers(await console_of(request.app).desk.numbers())


async def _console_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ConsoleError)
    return JSONResponse({"detail": str(exc), "code": exc.code}, status_code=exc.status)


def _page_headers() -> dict[str, str]:
    # The console shows what customers typed: no inline script, no framing, no foreign code.
    return {
        "Content-Security-Policy": (
            "default-src 'self'; script-src 'self'; style-src 'self'; "
            "connect-src 'self' ws: wss:; img-src 'self' data:; frame-ancestors 'none'"
        ),
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "same-origin",
    }


def install(app: FastAPI) -> None:
    """Serve the console on ``app``: its routes, its websocket, its error mapping."""
    from channels.console.agent_ws import console_socket

    app.include_router(router)
    app.add_exception_handler(ConsoleError, _console_error)

    @app.websocket("/ws/console")
    async def ws_console(ws: WebSocket) -> None:
        await console_socket(ws, console_of(ws.app))
