"""The ``frontdesk`` command: a thin ``main(argv)`` over library calls."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from bot.errors import BotError
from channels import models_cli, tags_cli, tests_cli
from channels.errors import ChannelError
from channels.settings import DATABASE_FILE, Settings

if TYPE_CHECKING:
    from channels.gate import GateRules, Verdict
    from retrieval.bundle import Bundle
    from retrieval.registry import Registry
    from training.args import TrainingArguments
    from training.continual import Start

CONTEXT_HELP = (
    "how the dialogue index reads a conversation's last turns: joint (one encoder sequence, "
    "the default) or fused (each turn alone, summed: serving encodes only the new message)"
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and getattr(args, "run", None) is not _dialogues_index_replaced:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if argv is None:  # the command line: a library call keeps its process's priority
        lower_priority(getattr(args, "nice", 0))  # the training commands' --nice
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
        from training.errors import TrainingError

        if isinstance(exc, RetrievalError | TrainingError):
            print(f"frontdesk: error: {exc}", file=sys.stderr)
            return 2
        raise
    return result


def _whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {minimum} or more, got {value}")
    return value


def _at_least_one(text: str) -> int:
    """An argparse type: a whole number >= 1 (models in a soup, encoder layers)."""
    return _whole_number(text, 1)


SOUP_HELP = (
    "average N intent models trained with different seeds into one (same serving cost, N "
    "times the training; default 1; BENCHMARKS.md)"
)


LAYERS_HELP = (
    "fine-tune only the first N of the encoder's 6 layers: a smaller model that serves "
    "faster, for some accuracy (default: all; BENCHMARKS.md)"
)


def _epochs(text: str) -> int:
    """An argparse type: a whole number of epochs, >= 0."""
    return _whole_number(text, 0)


TRAINING_NICE = 19
"""How far training commands lower their CPU priority by default. Beside a server under
load on the same two cores, at nice 19 the server's median latency was 1.2x its own alone
and its worst p99 1.4-1.7x, against 2.9x and 4-11x at the normal priority; the training
took 2.1-2.4x its time alone against 1.8-2.1x. Alone, a lower priority costs nothing
(BENCHMARKS.md)."""


def _share(text: str) -> float:
    """An argparse type: a number from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {value}")
    return value


def _nice(text: str) -> int:
    value = _whole_number(text, 0)
    if value > 19:
        raise argparse.ArgumentTypeError(f"expected 0 to 19, got {value}")
    return value


def _nice_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--nice",
        type=_nice,
        default=TRAINING_NICE,
        metavar="N",
        help=f"lower this process's CPU priority by N, 0-19 (default {TRAINING_NICE}: a "
        "server on the same machine keeps its latency, and with nothing else running it "
        "costs nothing; 0 keeps the priority)",
    )


def lower_priority(by: int) -> None:
    """``os.nice`` where the platform has it (not on Windows)."""
    if by and hasattr(os, "nice"):
        os.nice(by)


def _served_model_flags(parser: argparse.ArgumentParser) -> None:
    """The eval commands' model: a bundle as the server loads it (``_served_bundle``)."""
    parser.add_argument(
        "--model",
        required=True,
        metavar="MODEL",
        help="the bundle to score: a bundle folder, `current` or a version name (v0003) in "
        "the home's models/ (what `serve` loads), or a models/ folder (its current)",
    )
    parser.add_argument(
        "--home", type=Path, help="data folder (default: $FRONTDESK_HOME or .frontdesk)"
    )
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument(
        "--int8",
        dest="int8",
        action="store_const",
        const=True,
        help="score the encoder's int8 export (default: as the server, FRONTDESK_ENCODER_INT8)",
    )
    precision.add_argument(
        "--fp32",
        dest="int8",
        action="store_const",
        const=False,
        help="score the fp32 encoder (default: as the server, FRONTDESK_ENCODER_INT8)",
    )
    parser.set_defaults(bot=None)


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
    train.add_argument(
        "--epochs",
        type=_epochs,
        help="fine-tuning epochs (default: from the data size, and none below 25 training "
        "rows an intent or 50 validation rows; 0: no fine-tuning, the intent head fitted "
        "to the base encoder)",
    )
    train.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    train.add_argument("--soup", type=_at_least_one, default=1, metavar="N", help=SOUP_HELP)
    train.add_argument("--layers", type=_at_least_one, metavar="N", help=LAYERS_HELP)
    train.add_argument("--context", choices=["joint", "fused"], default="joint", help=CONTEXT_HELP)
    train.add_argument(
        "--ranker-epochs",
        type=_epochs,
        metavar="N",
        help="epochs of the ranking objective over the logs when it drives (default: from "
        "the number of pairs; 0: index the logs without training on them)",
    )
    train.add_argument(
        "--from-scratch",
        action="store_true",
        help="start from the base encoder (default: continue from the current model's "
        "weights, replaying a sample of what it learnt, when it was trained with the same "
        "--layers and --context)",
    )
    train.add_argument(
        "--force",
        action="store_true",
        help="make the new model current even if the evaluation gate refuses it",
    )
    train.add_argument(
        "--tolerance",
        type=_share,
        default=0.01,
        metavar="X",
        help="the gate refuses a model when a metric drops by more than X against the "
        "current one (default 0.01: one point)",
    )
    train.add_argument(
        "--max-flip-rate",
        type=_share,
        default=0.05,
        metavar="X",
        help="the gate refuses a model that gets more than this share of the checks the "
        "current one gets right wrong (default 0.05)",
    )
    train.add_argument(
        "--new-intent-min-examples",
        type=_at_least_one,
        default=5,
        metavar="N",
        help="an intent the current model does not know needs N examples (bot.yml's and "
        "reviewed ones) before it is trained (default 5)",
    )
    train.add_argument(
        "--if-stale",
        action="store_true",
        help="train only when there is no current model, or the bot, the chat logs' "
        "contents or these training options differ from the current model's",
    )
    _nice_flag(train)
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

    intents = sub.add_parser("intents", help="train and evaluate an intent classifier alone")
    isub = intents.add_subparsers(required=True, metavar="COMMAND")
    itrain = isub.add_parser(
        "train",
        help="train (fine-tune, or with few rows an intent fit the head alone), calibrate "
        "and export an intent model into a folder",
    )
    itrain.add_argument(
        "--train",
        type=Path,
        required=True,
        help="CSV (text,intent|category), Rasa nlu.yml, or bot folder; rows labelled "
        "`oos` are out-of-scope examples",
    )
    itrain.add_argument("--out", type=Path, required=True, help="model folder to write")
    itrain.add_argument("--valid", type=Path, help="validation rows (default: carved out)")
    itrain.add_argument(
        "--from",
        dest="start",
        type=Path,
        metavar="MODEL_DIR",
        help="continue from this model folder: its weights, and a sample of the rows it "
        "learnt from replayed, so --train may hold only new intents (default: from the base "
        "encoder)",
    )
    itrain.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    itrain.add_argument("--soup", type=_at_least_one, default=1, metavar="N", help=SOUP_HELP)
    itrain.add_argument("--layers", type=_at_least_one, metavar="N", help=LAYERS_HELP)
    itrain.add_argument("--epochs", type=_epochs, help=argparse.SUPPRESS)
    _nice_flag(itrain)
    itrain.add_argument("--json", action="store_true", help="print the result as JSON")
    itrain.set_defaults(run=_intents_train)
    ieval = isub.add_parser("eval", help="evaluate an intent model on labelled rows")
    _served_model_flags(ieval)
    ieval.add_argument("--test", type=Path, required=True, help="CSV, nlu.yml or bot folder")
    ieval.add_argument("--json", action="store_true", help="print one JSON object")
    ieval.set_defaults(run=_intents_eval)

    dialogues = sub.add_parser(
        "dialogues", help="evaluate a bundle's answers from past chats (1-of-100 ranking)"
    )
    dsub = dialogues.add_subparsers(required=True, metavar="COMMAND")
    dindex = dsub.add_parser(
        "index", help="replaced by `frontdesk train --bot DIR --logs PATH` (one bundle)"
    )
    dindex.set_defaults(run=_dialogues_index_replaced)
    deval = dsub.add_parser("eval", help="1-of-100 response ranking on held-out chat logs")
    _served_model_flags(deval)
    deval.add_argument("--logs", type=Path, required=True, action="append", help="test logs")
    deval.add_argument("--json", action="store_true", help="print one JSON object")
    deval.set_defaults(run=_dialogues_eval)

    export = sub.add_parser(
        "export",
        help="write the store's conversations as chat logs (and agents' intent tags as "
        "labelled rows) for the next `frontdesk train --logs`",
    )
    export.add_argument(
        "--home", type=Path, help="data folder (default: $FRONTDESK_HOME or .frontdesk)"
    )
    export.add_argument("--out", type=Path, required=True, help="chat-log JSONL file to write")
    export.add_argument(
        "--since",
        type=_since,
        help="only conversations active on or after this date or time (ISO 8601; UTC "
        "without a zone)",
    )
    export.add_argument(
        "--tags", type=Path, help="also write the tagged customer messages as text,intent CSV"
    )
    export.add_argument("--json", action="store_true", help="print the counts as JSON")
    export.set_defaults(run=_export, bot=None)

    agents = sub.add_parser("agents", help="manage the agents who log in to the console")
    asub = agents.add_subparsers(required=True, metavar="COMMAND")
    aadd = asub.add_parser("add", help="register an agent (asks for the password)")
    aadd.add_argument(
        "--home", type=Path, help="data folder (default: $FRONTDESK_HOME or .frontdesk)"
    )
    aadd.add_argument("--email", required=True)
    aadd.add_argument("--name", required=True)
    aadd.add_argument("--role", choices=["agent", "admin"], default="agent")
    aadd.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input instead of a prompt",
    )
    aadd.add_argument("--json", action="store_true", help="print the agent as JSON")
    aadd.set_defaults(run=_agents_add, bot=None)

    tests_cli.add_parser(sub)
    tags_cli.add_parser(sub)
    models_cli.add_parser(sub)
    return parser


def _since(text: str) -> datetime:
    """An argparse type: an ISO 8601 date or time, UTC when it names no zone."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a date like 2026-11-01 or 2026-11-01T09:00, got {text!r}"
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _export(args: argparse.Namespace) -> int:
    from channels.chatlog_export import export_logs
    from channels.store import Store

    settings = _settings(args)
    database = settings.home / DATABASE_FILE
    if not settings.database_url and not database.is_file():
        print(
            f"frontdesk: error: no conversation store at {database}; give the --home (or "
            "FRONTDESK_HOME / FRONTDESK_DATABASE_URL) the server runs with",
            file=sys.stderr,
        )
        return 2

    async def run() -> Any:
        store = await Store.open(settings.store_url())
        try:
            return await export_logs(store, args.out, since=args.since, tags_out=args.tags)
        finally:
            await store.close()

    result = asyncio.run(run())
    if args.json:
        _print_json(asdict(result), out=str(args.out))
    else:
        print(
            f"exported {result.conversations} conversations ({result.turns} messages, "
            f"{result.agent_turns} by agents) -> {args.out}"
            + (f"; {result.tags} tagged messages -> {args.tags}" if args.tags else "")
        )
    return 0


def _agents_add(args: argparse.Namespace) -> int:
    import getpass

    from channels.console.auth import MIN_PASSWORD_CHARS, hash_password
    from channels.store import AgentExists, AgentRole, Store

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"Password for {args.email}: ")
        if getpass.getpass("Again: ") != password:
            print("frontdesk: error: the passwords differ", file=sys.stderr)
            return 2
    if len(password) < MIN_PASSWORD_CHARS:
        print(
            f"frontdesk: error: a password needs at least {MIN_PASSWORD_CHARS} characters",
            file=sys.stderr,
        )
        return 2
    settings = _settings(args)

    async def add() -> Any:
        from datetime import UTC, datetime

        store = await Store.open(settings.store_url())
        try:
            return await store.add_agent(
                args.email,
                args.name,
                hash_password(password),
                AgentRole(args.role),
                datetime.now(UTC),
            )
        finally:
            await store.close()

    try:
        agent = asyncio.run(add())
    except (AgentExists, ValueError) as exc:
        print(f"frontdesk: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        _print_json({"id": agent.id, "email": agent.email, "name": agent.name, "role": agent.role})
    else:
        print(f"added {agent.role} {agent.name} <{agent.email}> ({agent.id})")
    return 0


def _dialogues_index_replaced(args: argparse.Namespace) -> int:
    print(
        "frontdesk: error: `dialogues index` is replaced by `frontdesk train --bot DIR "
        "--logs PATH [--logs PATH ...]`: it fine-tunes one encoder on the bot's intents and "
        "the logs' replies and publishes the one bundle the server loads; score it with "
        "`frontdesk dialogues eval --model current --logs TEST`",
        file=sys.stderr,
    )
    return 2


def _served_bundle(args: argparse.Namespace) -> Bundle:
    """The bundle ``--model`` names, loaded as ``frontdesk serve`` loads it
    (``channels.runtime.load_current_bundle``): the same settings (``--home`` or
    FRONTDESK_HOME, FRONTDESK_ENCODER_INT8 unless ``--int8`` / ``--fp32``,
    FRONTDESK_ENCODER_THREADS), the same ``Bundle.load``."""
    from retrieval.bundle import Bundle
    from retrieval.registry import resolve_model

    settings = _settings(args, encoder_int8=args.int8)
    path = resolve_model(args.model, settings.models_dir).absolute()
    return Bundle.load(path, settings.encoder_int8, settings.encoder_threads)


def _scored(bundle: Bundle) -> dict[str, str | None]:
    """What an eval scored, after its figures: the bundle's folder, its registry version
    (None for a folder outside a registry) and the encoder's precision."""
    from retrieval.registry import is_version

    return {
        "model": str(bundle.path),
        "version": bundle.version if is_version(bundle.version) else None,
        "precision": bundle.precision,
    }


def _dialogues_eval(args: argparse.Namespace) -> int:
    from training.dialogue_model import evaluate_dialogues

    bundle = _served_bundle(args)
    numbers, problems = evaluate_dialogues(bundle, args.logs)
    _print_problems([str(p) for p in problems])
    _print_numbers({**numbers, **_scored(bundle)}, as_json=args.json)
    return 0


def _training_arguments(args: argparse.Namespace, **extra: Any) -> TrainingArguments:
    """The training options both `train` commands share, from their flags."""
    from training.args import TrainingArguments

    overrides: dict[str, Any] = {
        "device": args.device,
        "soup": args.soup,
        "layers": args.layers,
        **extra,
    }
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    return TrainingArguments(**overrides)


def _intents_train(args: argparse.Namespace) -> int:
    from training.continual import start_from
    from training.intent_model import train_intent_model

    result = train_intent_model(
        args.train,
        args.out,
        valid=args.valid,
        args=_training_arguments(args),
        progress=not args.json,
        on_problems=_print_problems,
        start=start_from(args.start) if args.start is not None else None,
    )
    if args.json:
        _print_json(
            asdict(result),
            path=str(result.path),
            problems=len(result.problems),
            continued_from=str(result.continued_from) if result.continued_from else None,
        )
    else:
        print(
            f"trained {result.intents} intents from {result.train_rows} rows "
            f"({result.oos_rows} out-of-scope), validated on {result.valid_rows}"
            f"{' (then learnt from too)' if result.head_refitted else ''}, "
            f"{_tuning(result.epochs, result.best_epoch)}, {result.seconds:.0f}s -> "
            f"{result.path}"
            + (
                f" (continued from {result.continued_from}, {result.replayed_rows} of its "
                "rows replayed)"
                if result.continued_from is not None
                else ""
            )
        )
    return 0


def _intents_eval(args: argparse.Namespace) -> int:
    from training.intent_eval import REPORTS_DIR, evaluate_model

    bundle = _served_bundle(args)  # checked before the test rows are read
    numbers, problems = evaluate_model(bundle, args.test)
    _print_problems([str(p) for p in problems])
    _print_numbers({**numbers, **_scored(bundle)}, as_json=args.json)
    if not args.json:
        print(f"report: {bundle.path / REPORTS_DIR}")
    return 0


def _print_numbers(numbers: Mapping[str, object], *, as_json: bool) -> None:
    """An eval command's figures: one JSON object (the stable contract) or aligned lines."""
    if as_json:
        print(json.dumps(numbers))
        return
    width = max(map(len, numbers), default=0)
    for key, value in numbers.items():
        print(f"{key:>{width}}: {value}")


def _print_json(fields: dict[str, Any], **overrides: Any) -> None:
    print(json.dumps({**fields, **overrides}))


def _print_problems(problems: Sequence[object], shown: int = 20) -> None:
    """Rows skipped as malformed, on standard error: the first ``shown`` and a count."""
    for problem in problems[:shown]:
        print(f"skipped {problem}", file=sys.stderr)
    if len(problems) > shown:
        print(f"... and {len(problems) - shown} more skipped", file=sys.stderr)


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    overrides: dict[str, Any] = {k: v for k, v in extra.items() if v is not None}
    if args.bot is not None:
        overrides["bot"] = args.bot
    if args.home is not None:
        overrides["home"] = args.home
    return Settings(**overrides)


def _tuning(epochs: int, best_epoch: int | None = None) -> str:
    """How the intent encoder was trained, for a ``train`` command's summary line."""
    if epochs == 0:
        return "encoder not fine-tuned, intent head fitted to it: few examples"
    return f"fine-tuned, best epoch {best_epoch}" if best_epoch else "fine-tuned"


def _train(args: argparse.Namespace) -> int:
    from channels.gate import REFUSED_EXIT, GateRules
    from retrieval.registry import Registry
    from training.pipeline import is_stale, train_bot

    settings = _settings(args)
    registry = Registry(settings.models_dir)
    targs = _training_arguments(
        args,
        context=args.context,
        ranker_epochs=args.ranker_epochs,
        new_intent_min_examples=args.new_intent_min_examples,
    )
    rules = GateRules(args.tolerance, args.max_flip_rate)
    if args.if_stale and not is_stale(settings.bot, registry, targs, args.logs):
        print(f"model {registry.current_version()} in {registry.root} is up to date")
        return 0
    current = registry.current_path()
    start = None if args.from_scratch else _continue_from(current, targs)
    result = train_bot(
        settings.bot,
        registry,
        logs=args.logs,
        args=targs,
        progress=not args.json,
        start=start,
        make_current=current is None,
    )
    _print_problems(
        [
            f"{p.source}:{p.line}: {p.message}" if p.line else f"{p.source}: {p.message}"
            for p in result.log_problems
        ]
    )
    verdict = _gate(settings, registry, result.path, current, args.logs, rules, force=args.force)
    if args.json:
        _print_json(
            asdict(result),
            path=str(result.path),
            log_problems=len(result.log_problems),
            report=str(result.report) if result.report is not None else None,
            continued_from=start.version if start is not None else None,
            gate=verdict.to_json(),
            current=registry.current_version(),
        )
    else:
        logs = "encoder also trained on the logs' replies, " if result.ranker_trained else ""
        threshold = (
            f"past replies sent from a probability of {result.reply_threshold:.2f}, "
            if result.reply_threshold is not None
            else ""
        )
        origin = f"continued from {start.version}, " if start is not None else ""
        if result.reviewed_examples:
            origin += f"{result.reviewed_examples} reviewed examples, "
        print(
            f"trained {result.version}: {result.intents} intents from {result.examples} "
            f"examples ({_tuning(result.epochs)}), {origin}{result.indexed_turns} dialogue "
            f"turns indexed, {logs}{threshold}{result.seconds:.0f}s -> {result.path}"
        )
        if result.report is not None:
            print(f"report: {result.report}")
        for intent, count in result.waiting_intents:
            print(f"waiting: {count} reviewed examples of {intent!r}, an intent bot.yml does "
                  "not declare")  # fmt: skip
        _print_verdict(verdict, registry)
    return REFUSED_EXIT if verdict.decision == "refused" else 0


def _continue_from(current: Path | None, targs: TrainingArguments) -> Start | None:
    """Where a training continues from: the current bundle, when it was trained by this
    Frontdesk with the same encoder depth, length and context encoding; else None (from
    the base encoder), with the reason logged."""
    from retrieval.bundle import FORMAT, MANIFEST
    from training.continual import start_from

    if current is None:
        return None
    try:
        manifest = json.loads((current / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    saved = manifest.get("training_args") or {}
    same = {
        "format": manifest.get("format") == FORMAT,
        "layers": saved.get("layers") == targs.layers,
        "max_length": saved.get("max_length", 128) == targs.max_length,
        "context": saved.get("context", "joint") == targs.context,
    }
    if not all(same.values()):
        differ = ", ".join(name for name, ok in same.items() if not ok)
        logging.getLogger(__name__).warning(
            "training from the base encoder: the current model %s differs in %s",
            current.name,
            differ,
        )
        return None
    return start_from(current)


def _gate(
    settings: Settings,
    registry: Registry,
    candidate: Path,
    current: Path | None,
    logs: Sequence[Path] | None,
    rules: GateRules,
    *,
    force: bool,
) -> Verdict:
    """Score the candidate against the current bundle and promote it when it passes (or
    ``force``); the verdict is written into the candidate's folder."""
    from channels.gate import Verdict, evaluate, write_verdict
    from retrieval.registry import Action
    from training.pipeline import _default_logs

    if current is None:  # the first model: published as current already
        verdict = Verdict("first", candidate.name, None)
        write_verdict(candidate, verdict)
        return verdict
    sources = list(logs) if logs is not None else _default_logs(settings.bot)
    verdict = evaluate(
        candidate, current, bot_dir=settings.bot, logs=sources, settings=settings, rules=rules
    )
    if not verdict.passed and force:
        verdict = replace(verdict, decision="forced")
    write_verdict(candidate, verdict)
    if verdict.decision != "refused":
        registry.promote(
            candidate.name, Action.FORCED if verdict.decision == "forced" else Action.TRAIN
        )
    return verdict


def _print_verdict(verdict: Verdict, registry: Registry) -> None:
    if verdict.decision == "first":
        print(f"gate: {verdict.candidate} is the first model: current")
        return
    for score in verdict.scores:
        print(
            f"gate: {score.name} {score.current:.3f} -> {score.candidate:.3f} "
            f"({-score.drop * 100:+.1f} points, {score.items} items)"
        )
    print(f"gate: negative flip rate {verdict.flip_rate:.3f} ({len(verdict.flips)} of "
          f"{verdict.checked} checks)")  # fmt: skip
    for note in verdict.notes:
        print(f"gate: not measured: {note}")
    for drop in verdict.drops:
        print(f"gate: {drop}", file=sys.stderr)
    if verdict.decision == "refused":
        print(
            f"frontdesk: the gate refused {verdict.candidate}: {verdict.against} stays "
            f"current (`frontdesk models promote {verdict.candidate}` or `train --force` "
            "to promote it anyway)",
            file=sys.stderr,
        )
    else:
        print(f"gate: {verdict.decision}: {registry.current_version()} is current")


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from bot.definition import load_bot
    from channels import logs
    from channels.app import create_app
    from channels.console.auth import load_secret_key
    from channels.errors import NotReady
    from retrieval.registry import Registry

    settings = _settings(args, host=args.host, port=args.port)
    definition = load_bot(settings.bot)  # fail fast on a bad bot.yml
    if Registry(settings.models_dir).current_path() is None:
        raise NotReady(
            f"no trained model in {settings.models_dir}; run "
            f"`frontdesk train --bot {definition.root}` (or `make demo`) first"
        )
    level = logging.INFO if args.verbose else logging.WARNING
    logs.configure(settings.log_format, level)
    app: Any
    if settings.workers > 1:
        # uvicorn starts each worker afresh: it builds its settings from the environment
        os.environ.update(_worker_environment(settings, level))
        load_secret_key(settings)  # made once here, not raced for by the workers
        app = "channels.cli:worker_app"
    else:
        app = create_app(settings)
    print(
        f"Frontdesk: serving {settings.bot} on http://{settings.host}:{settings.port}"
        + (f" with {settings.workers} worker processes" if settings.workers > 1 else ""),
        flush=True,
    )
    uvicorn.run(
        app,
        factory=settings.workers > 1,
        workers=settings.workers if settings.workers > 1 else None,
        host=settings.host,
        port=settings.port,
        ws=settings.ws_protocol,
        ws_max_size=settings.max_frame_bytes,
        ws_per_message_deflate=settings.ws_compression,
        log_level="info" if args.verbose else "warning",  # access lines only with -v
        log_config=None,  # keep the handlers set above
        timeout_graceful_shutdown=10,  # long-polling Socket.IO clients hold requests open
        **settings.uvicorn_proxy_options(),
    )
    return 0


_WORKER_LOG_LEVEL = "_FRONTDESK_WORKER_LOG_LEVEL"


def _worker_environment(settings: Settings, log_level: int) -> dict[str, str]:
    """What ``frontdesk serve``'s options and defaults say, for workers that read only the
    environment; a share of the cores each where the encoder threads are not set."""
    env = {
        "FRONTDESK_BOT": str(settings.bot.resolve()),
        "FRONTDESK_HOME": str(settings.home.resolve()),
        "FRONTDESK_HOST": settings.host,
        "FRONTDESK_PORT": str(settings.port),
        _WORKER_LOG_LEVEL: str(log_level),
    }
    if settings.encoder_threads == 0:
        cores = len(os.sched_getaffinity(0))
        env["FRONTDESK_ENCODER_THREADS"] = str(max(1, cores // settings.workers))
    return env


def worker_app() -> Any:
    """The app of one of ``frontdesk serve``'s worker processes (``FRONTDESK_WORKERS``)."""
    from channels import logs
    from channels.app import create_app

    settings = Settings()
    logs.configure(settings.log_format, int(os.environ.get(_WORKER_LOG_LEVEL, logging.WARNING)))
    return create_app(settings)


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
