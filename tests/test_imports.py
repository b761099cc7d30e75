"""Heavy imports stay where they are used: bot/ and channels/ import without torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BLOCK = (
    "import sys\n"
    "for name in ('torch', 'transformers', 'sentence_transformers'):\n"
    "    sys.modules[name] = None\n"
)


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK + code], capture_output=True, text=True, timeout=120
    )


def test_bot_and_channels_import_without_torch() -> None:
    """Importing the engine, the app factory and the CLI never imports torch."""
    result = run(
        "import bot, bot.engine, bot.definition, bot.rasa_import\n"
        "import channels.app, channels.cli, channels.service, channels.ws, channels.store\n"
        "print('ok')\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_bot_imports_without_faiss_or_numpy() -> None:
    """The engine is pure Python: not even numpy or faiss are needed."""
    result = run(
        "sys.modules['faiss'] = None\nsys.modules['numpy'] = None\n"
        "import bot, bot.engine\nprint('ok')\n"
    )
    assert result.returncode == 0, result.stderr


def test_blocked_torch_really_fails() -> None:
    """The block above works, so the tests above can fail."""
    result = run("import retrieval.encoder\nretrieval.encoder.Encoder('x')\n")
    assert result.returncode != 0 and "torch" in result.stderr


def test_a_trained_bundle_serves_without_torch(shop_home: Path) -> None:
    """The bundle's encoder is exported to ONNX: loading and analysing needs no torch."""
    result = run(
        "from pathlib import Path\n"
        "from retrieval.bundle import Bundle\n"
        "from retrieval.registry import Registry\n"
        f"bundle = Bundle.load(Registry(Path({str(shop_home / 'models')!r})).current_path())\n"
        "(a,) = bundle.analyze(['where is my order 1042?'])\n"
        "print(type(bundle.encoder).__name__, a.intents[0][0])\n"
        "assert 'torch' not in sys.modules or sys.modules['torch'] is None\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["OnnxEncoder", "order_status"]
