# umlkit: two commands do everything.
#   make figures   create/refresh .venv, run all notebooks (default profile), write figures/
#   make test      create/refresh .venv with the dev extra, lint, unit tests + nbval (smoke profile)
#                  + browser tests (JupyterLab and the website in Chromium; skipped without one)
#   make docs      the course website in build/site/ from the executed notebooks of make figures
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.umlkit-installed
# The CPU build of torch is installed first where no GPU is present; a bare `torch`
# requirement would otherwise pull a multi-GB CUDA build.
CPU_TORCH := torch==2.13.0

.PHONY: venv test lint figures smoke-figures docs clean-notebooks bench

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
	@if ! $(BIN)/python -c "import torch" 2>/dev/null; then \
	  if command -v nvidia-smi >/dev/null 2>&1; then echo "GPU found: installing torch with CUDA"; \
	  else echo "no GPU: installing the CPU build $(CPU_TORCH)"; \
	       $(BIN)/python -m pip install -q $(CPU_TORCH) 2>&1 | grep -v "is ignored" || true; fi; fi
	@$(BIN)/python -m pip install -q -e ".[dev,docs]" 2>&1 | grep -v "is ignored" || true
	@$(BIN)/python -c "import umlkit, torch; print('umlkit', umlkit.__version__, '| torch', torch.__version__)"
	@touch $@

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	UMLKIT_PROFILE=smoke $(BIN)/python -m pytest

figures: venv
	$(BIN)/umlkit figures --profile default

# The site shows what make figures executed; the notebooks are run first only if one is missing.
docs: venv
	@missing="$$($(BIN)/python docs/build_site.py --missing)"; \
	if [ -n "$$missing" ]; then echo "not executed yet: $$missing; running make figures first"; \
	  $(MAKE) figures; fi
	$(BIN)/python docs/build_site.py

smoke-figures: venv
	$(BIN)/umlkit figures --profile smoke

bench: venv
	$(BIN)/umlkit bench

clean-notebooks: venv
	$(BIN)/jupyter nbconvert --clear-output --inplace notebooks/*.ipynb
