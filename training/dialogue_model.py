"""``frontdesk dialogues eval``: the 1-of-100 ranking metrics of a served bundle's answers
from past chats. (Bundles are made by ``frontdesk train``, ``training.pipeline``: one
encoder fine-tuned on the intents and the logs' replies.)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from retrieval import bundle as bundle_files
from retrieval.bundle import Bundle
from retrieval.chatlog import ChatLog, ReadProblem, read_logs
from retrieval.redact import RedactionRules, Redactor
from training.dialogue_eval import ranking_cases, ranking_metrics, ranks, score_served

SERVED_K = bundle_files.REPLIES
"""Replies the server asks the bundle for (``Bundle.analyze``'s ``k``); eval searches as deep."""


def read_all(sources: Sequence[Path]) -> tuple[list[ChatLog], list[ReadProblem]]:
    logs: list[ChatLog] = []
    problems: list[ReadProblem] = []
    for source in sources:
        result = read_logs(source)
        logs.extend(result.logs)
        problems.extend(result.problems)
    return logs, problems


def redaction_of(bundle: Bundle) -> Redactor:
    spec = bundle.manifest.get("redaction") or {}
    return Redactor(
        RedactionRules(
            order_number=spec.get("order_number"),
            keep=tuple(spec.get("keep", ())),
            phone_region=spec.get("phone_region", "US"),
        )
    )


def evaluate_dialogues(
    model: Path | Bundle, sources: Sequence[Path], *, int8: bool = False
) -> tuple[dict[str, float | int], list[ReadProblem]]:
    """The ``dialogues eval`` numbers of ``model`` on the logs at ``sources``. ``model``: a
    bundle loaded as the server loads it (``frontdesk dialogues eval``), or a bundle folder,
    loaded with the encoder's int8 export when ``int8`` (``FRONTDESK_ENCODER_INT8``).

    Scored as the server scores: the bundle's encoder, index and reply calibration, its
    context encoding as served (joint windows cut as :meth:`Bundle.analyze` cuts them,
    fused windows from their turns), the same retrieval depth (``k`` x over-fetch), and
    the contexts as the server reads them, as written; the bundle's redaction applies to
    the replies, as to the ones it indexed."""
    bundle = model if isinstance(model, Bundle) else Bundle.load(model, int8=int8)
    logs, problems = read_all(sources)
    cases = ranking_cases(logs, redact=redaction_of(bundle), redact_contexts=False)
    scores = score_served(bundle, cases)
    return ranking_metrics(ranks(scores)), problems
