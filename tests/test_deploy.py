"""The nightly learning loop as deployed: deploy/nightly.sh, its compose service and its
Kubernetes CronJob, sharing the serving replicas' model registry."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NIGHTLY = ROOT / "deploy" / "nightly.sh"

FAKE = """#!/bin/sh
echo "$*" >> "$CALLS"
case "$1" in train) exit "${TRAIN_EXIT:-0}";; esac
"""


def _run(tmp_path: Path, train_exit: int, **env: str) -> tuple[int, list[str], str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "frontdesk"
    fake.write_text(FAKE)
    fake.chmod(0o755)
    bot = tmp_path / "bot"
    bot.mkdir(exist_ok=True)
    (bot / "dialogues.jsonl").write_text("")
    calls = tmp_path / "calls.txt"
    calls.unlink(missing_ok=True)
    result = subprocess.run(
        ["sh", str(NIGHTLY)],
        env={
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "CALLS": str(calls),
            "TRAIN_EXIT": str(train_exit),
            "FRONTDESK_BOT": str(bot),
            "FRONTDESK_HOME": str(tmp_path / "home"),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=30,
    )
    return result.returncode, calls.read_text().splitlines(), result.stderr


def test_nightly_exports_then_trains_on_the_bots_logs_and_the_export(tmp_path: Path) -> None:
    """export, then train --if-stale from the bot's dialogues and the fresh export; tags
    are accepted only when asked; the export folder is private."""
    code, calls, _ = _run(tmp_path, 0)
    home = tmp_path / "home"
    assert code == 0
    assert calls == [
        f"export --out {home}/exports/conversations.jsonl --tags {home}/exports/tags.csv",
        f"train --if-stale --logs {tmp_path}/bot/dialogues.jsonl "
        f"--logs {home}/exports/conversations.jsonl",
    ]
    assert (home / "exports").stat().st_mode & 0o777 == 0o700
    _, calls, _ = _run(tmp_path, 0, FRONTDESK_NIGHTLY_ACCEPT_TAGS="1")
    assert calls[1] == "tags review --accept-tagged"


@pytest.mark.parametrize("status", [3, 1])
def test_nightly_passes_the_gates_refusal_and_failures_on(tmp_path: Path, status: int) -> None:
    """A refusal by the gate (3) or a failed training ends the run with its status."""
    code, _, err = _run(tmp_path, status)
    assert code == status
    assert ("kept the current model" in err) is (status == 3)


def test_compose_and_kubernetes_run_the_loop_on_the_servers_registry() -> None:
    """The compose service and the CronJob run nightly.sh with the server's /data volume,
    where the registry the replicas hot-swap from lives."""
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yml").read_text())
    server, nightly = compose["services"]["frontdesk"], compose["services"]["nightly"]
    assert nightly["volumes"] == server["volumes"] == ["frontdesk-data:/data"]
    assert "/app/deploy/nightly.sh" in " ".join(nightly["command"])
    docs = list(yaml.safe_load_all((ROOT / "deploy" / "k8s" / "frontdesk.yaml").read_text()))
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    cron = next(d for d in docs if d["kind"] == "CronJob")
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["command"] == ["sh", "/app/deploy/nightly.sh"]
    claim = deployment["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]
    assert pod["volumes"][0]["persistentVolumeClaim"] == claim
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "COPY deploy/nightly.sh deploy/nightly.sh" in dockerfile
