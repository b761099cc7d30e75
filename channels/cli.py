"""The ``frontdesk`` command: a thin ``main(argv)`` over library calls."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bot.errors import BotError
from channels.errors import ChannelError
from channels.settings import Settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        result: int = args.run(args)
    except (BotError, ChannelError) as exc:
        print(f"frontdesk: error: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        print(f"frontdesk: error: invalid setting: {problems}", file=sys.stderr)
        return 2
    except Exception as exc:
        from retrieval.errors import RetrievalError

        if isinstance(exc, RetrievalError):
            print(f"frontdesk: error: {exc}", file=sys.stderr)
            return 2
        raise
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="frontdesk", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--bot", type=Path, help="bot folder (default: $FRONTDESK_BOT or examples/shop)"
        )
        p.add_argument(
            "--home", type=Path, help="data folder (default: $FRONTDESK_HOME or .frontdesk)"
        )

    train = sub.add_parser("train", help="train the bot's models and publish a bundle")
    common(train)
    train.add_argument(
        "--logs",
        type=Path,
        action="append",
        help="chat logs to index (JSONL, STAR folder, Bitext CSV); repeatable; "
        "default: the bot folder's dialogues.jsonl",
    )
    train.add_argument("--epochs", type=int, help="fine-tuning epochs")
    train.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    train.add_argument(
        "--if-stale",
        action="store_true",
        help="train only when there is no current model or the bot changed",
    )
    train.add_argument("--json", action="store_true", help="print the result as JSON")
    train.set_defaults(run=_train)

    serve = sub.add_parser("serve", help="serve the widget, websocket and APIs")
    common(serve)
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(run=_serve)

    chat = sub.add_parser("chat", help="talk to the bot in the terminal")
    common(chat)
    chat.set_defaults(run=_chat)
    return parser


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    overrides: dict[str, Any] = {k: v for k, v in extra.items() if v is not None}
    if args.bot is not None:
        overrides["bot"] = args.bot
    if args.home is not None:
        overrides["home"] = args.home
    return Settings(**overrides)


def _train(args: argparse.Namespace) -> int:
    from retrieval.registry import Registry
    from training.args import TrainingArguments
    from training.pipeline import is_stale, train_bot

    settings = _settings(args)
    registry = Registry(settings.models_dir)
    if args.if_stale and not is_stale(settings.bot, registry):
        print(f"model {registry.current_version()} in {registry.root} is up to date")
        return 0
    targs = TrainingArguments(device=args.device)
    if args.epochs is not None:
        targs = TrainingArguments(**{**asdict(targs), "epochs": args.epochs})
    result = train_bot(settings.bot, registry, logs=args.logs, args=targs, progress=not args.json)
    shown = 20
    for problem in result.log_problems[:shown]:
        where = f"{problem.source}:{problem.line}" if problem.line else problem.source
        print(f"skipped {where}: {problem.message}", file=sys.stderr)
    if len(result.log_problems) > shown:
        print(f"... and {len(result.log_problems) - shown} more skipped records", file=sys.stderr)
    if args.json:
        out = asdict(result)
        out["path"] = str(result.path)
        out["log_problems"] = len(result.log_problems)
        print(json.dumps(out))
    else:
        print(
            f"trained {result.version}: {result.intents} intents from {result.examples} "
            f"examples, {result.indexed_turns} dialogue turns indexed, "
            f"{result.seconds:.0f}s -> {result.path}"
        )
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from bot.definition import load_bot
    from channels.app import create_app
    from channels.errors import NotReady
    from retrieval.registry import Registry

    settings = _settings(args, host=args.host, port=args.port)
    definition = load_bot(settings.bot)  # fail fast on a bad bot.yml
    if Registry(settings.models_dir).current_path() is None:
        raise NotReady(
            f"no trained model in {settings.models_dir}; run "
            f"`frontdesk train --bot {definition.root}` (or `make demo`) first"
        )
    app = create_app(settings)
    print(
        f"Frontdesk: serving {settings.bot} on http://{settings.host}:{settings.port}", flush=True
    )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        ws_max_size=settings.max_frame_bytes,
        log_level="info",
    )
    return 0


def _chat(args: argparse.Namespace) -> int:
    settings = _settings(args)
    asyncio.run(_chat_loop(settings))
    return 0


async def _chat_loop(settings: Settings) -> None:
    from channels.runtime import Runtime

    runtime = await Runtime.start(settings)
    try:
        record, _ = await runtime.service.open("terminal")
        sub = runtime.bus.subscribe(record.id)
        print(f"Chatting with {runtime.definition.name} (empty line or Ctrl-D to quit)")
        counter = 0
        while True:
            try:
                text = await asyncio.to_thread(input, "you> ")
            except EOFError:
                break
            if not text.strip():
                break
            counter += 1
            event, _ = await runtime.service.accept(record.id, f"t{counter}", text)
            await runtime.service.respond(event)
            while not sub.queue.empty():
                frame = sub.queue.get_nowait()
                if frame["type"] == "message" and frame["role"] != "customer":
                    print(f"{frame['role']}> {frame['text']}")
                    for button in frame.get("buttons", []):
                        print(f"      [{button['title']}] -> {button['payload']}")
                elif frame["type"] == "status":
                    print(f"      (conversation is now {frame['status']})")
    finally:
        await runtime.stop()


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    raise SystemExit(main())
