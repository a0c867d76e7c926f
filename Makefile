# Two commands on a fresh machine (Python 3.10+ and the package registries):
#   make demo   simulate -> train -> evaluate -> report on a bundled default
#   make test   the test suite (what CI runs)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Pinned CPU build for machines without torch; a python that already has torch
# (for example a CUDA build) is reused through --system-site-packages.
TORCH_SPEC ?= torch==2.13.0
DEMO_OUT ?= demo_run

.PHONY: demo test install clean browser

$(BIN)/.installed: pyproject.toml
	@if $(PYTHON) -c "import torch" 2>/dev/null; then \
		echo "reusing the torch of $(PYTHON)"; $(PYTHON) -m venv --system-site-packages $(VENV); \
	else $(PYTHON) -m venv $(VENV); fi
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	@touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/cryohet demo --out $(DEMO_OUT)

LINTED := src tests benchmarks scripts

test: $(BIN)/.installed browser
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

# the report's headless browser test needs chromium (Debian package; installed when apt-get is usable)
browser:
	@command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || \
	  { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	    echo "note: chromium not installed (needs root and apt-get); the report browser test needs it and will fail"; }

clean:
	rm -rf $(VENV) $(DEMO_OUT)
