# Frontdesk: `make demo` serves the demo bot, `make test` runs every check.
# Both are idempotent: they create .venv when missing and install what changed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test venv train serve lint typecheck pytest browser clean

# exit 3: the evaluation gate kept the current model (docs/retrain.md); the demo serves it
demo: venv
	$(BIN)/frontdesk train --bot examples/shop --if-stale || test $$? -eq 3
	$(BIN)/frontdesk serve --bot examples/shop

test: venv browser lint typecheck pytest

venv: $(STAMP)

# torch first, on its own: pip takes the CPU build from local disk; an unpinned torch
# would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev,postgres,redis]"
	touch $(STAMP)

# Headless Chromium for the browser tests, from Debian (Playwright's own download fails).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium missing and cannot be installed here: browser tests will be skipped"; fi; }

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy

pytest:
	$(BIN)/pytest

train: venv
	$(BIN)/frontdesk train --bot examples/shop

serve: venv
	$(BIN)/frontdesk serve --bot examples/shop

clean:
	rm -rf .frontdesk .pytest_cache .mypy_cache .ruff_cache test-artifacts
