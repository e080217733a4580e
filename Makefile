# umlkit: two commands do everything.
#   make figures   create/refresh .venv, run all notebooks at the quick default profile (about 22
#                  min on 2 cores): build/figures-default/, each notebook printing the converged
#                  reference's numbers beside its own
#   make reference the reference (every run trains its whole schedule and says whether it
#                  plateaued): the committed figures/ and figures/results.{md,json} (about 90 min
#                  on 2 cores)
#   make test      create/refresh .venv with the dev extra, lint, unit tests + nbval (smoke profile)
#                  + browser tests (JupyterLab and the website in Chromium; skipped without one),
#                  then the numeric modules again under a second set of CPU kernels
#   make docs      the course website in build/site/ from the executed notebooks of make figures
#   make lab       JupyterLab on notebooks/ in umlkit's environment (without the news pop-up)
#   make assignments  the students' copies of the notebooks, solutions stripped by nbgrader:
#                  build/assignments/<notebook>/<notebook>.ipynb
#   make check-outputs  re-store the outputs nbval compares (cells marked # NBVAL_CHECK_OUTPUT)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.umlkit-installed
# The CPU build of torch is installed first where no GPU is present; a bare `torch`
# requirement would otherwise pull a multi-GB CUDA build.
TORCH_VERSION := 2.13.0
CPU_TORCH := torch==$(TORCH_VERSION)
# The local wheel folders pip is configured with (pip.conf's find-links, $PIP_FIND_LINKS), if any.
PIP_WHEEL_DIRS = $(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null) $(PIP_FIND_LINKS)
CPU_TORCH_WHEEL = $(firstword $(wildcard $(addsuffix /torch-$(TORCH_VERSION)+cpu-*.whl,$(PIP_WHEEL_DIRS))))

.PHONY: venv lab test test-cpu-kernels lint figures reference smoke-figures docs clean-notebooks bench \
  assignments check-outputs

# JupyterLab's news pop-up off in this environment (umlkit/lab.py says why and how).
LAB_OVERRIDES := $(VENV)/share/jupyter/lab/settings/overrides.json

venv: $(STAMP) $(LAB_OVERRIDES)

$(LAB_OVERRIDES): $(STAMP) umlkit/lab.py
	@$(BIN)/python -m umlkit.lab

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
	@# uv installs the same requirements as pip, downloading in parallel: about 10 s against
	@# 80 s for pip on a fresh machine (docs/decisions.md); pip is the fallback. Unlike pip, uv
	@# writes no bytecode unless asked: where PYTHONDONTWRITEBYTECODE is set, every process would
	@# compile scipy, pandas, matplotlib, ... again, and a notebook's imports take twice as long.
	@$(BIN)/python -m pip install -q uv 2>&1 | grep -v "is ignored" || true
	@# The CPU build of torch: uv installs the wheel file from pip's own wheel folders where one
	@# is there (11 s against pip's 21 s), pip otherwise (uv reads no pip configuration).
	@if ! $(BIN)/python -c "import torch" 2>/dev/null; then \
	  if command -v nvidia-smi >/dev/null 2>&1; then echo "GPU found: installing torch with CUDA"; \
	  else echo "no GPU: installing the CPU build $(CPU_TORCH)"; \
	       { test -n "$(CPU_TORCH_WHEEL)" \
	         && $(BIN)/uv pip install --python $(BIN)/python -q --compile-bytecode "$(CPU_TORCH_WHEEL)" 2>/dev/null; } \
	       || $(BIN)/python -m pip install -q $(CPU_TORCH) 2>&1 | grep -v "is ignored" || true; fi; fi
	@$(BIN)/uv pip install --python $(BIN)/python -q --compile-bytecode -e ".[dev,docs]" 2>/dev/null \
	  || $(BIN)/python -m pip install -q -e ".[dev,docs]" 2>&1 | grep -v "is ignored" || true
	@# the installed versions, read from the packages' metadata (importing torch takes seconds)
	@$(BIN)/python -c "from importlib.metadata import version as v; print('umlkit', v('umlkit'), '| torch', v('torch'))"
	@touch $@

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Two worker processes of one torch thread each, a test module at a time (tests/conftest.py).
PYTEST := UMLKIT_PROFILE=smoke $(BIN)/python -m pytest -n 2 --dist loadscope
# PyTorch picks its CPU kernels by ATEN_CPU_CAPABILITY (default, avx2, avx512) and their rounding
# differs. The numerically sensitive modules run a second time under other kernels than this
# machine's own (avx2 where it has avx512, default elsewhere), so that a test that holds only
# with one machine's rounding fails here, not on a student's CPU. Test by test (--dist load):
# one module's torch.compile test alone takes 30 s, so whole modules would balance badly.
NUMERIC_TESTS := tests/test_models.py tests/test_models_uml.py tests/test_models_uml2024.py \
  tests/test_losses.py tests/test_evidential.py $(wildcard tests/test_metrics_*.py) \
  tests/test_fastpath.py tests/test_train.py
SECOND_CAPABILITY = $(shell $(BIN)/python -c "import torch; \
  print('avx2' if torch.backends.cpu.get_cpu_capability() == 'AVX512' else 'default')")

test: lint
	@# umlkit's own bytecode, for the same reason (a source file edited later is compiled afresh)
	@$(BIN)/python -m compileall -q umlkit
	$(PYTEST)
	ATEN_CPU_CAPABILITY=$(SECOND_CAPABILITY) $(PYTEST) --dist load $(NUMERIC_TESTS)

# The whole unit suite (not the notebooks or the browser) under each portable set of kernels.
test-cpu-kernels: venv
	ATEN_CPU_CAPABILITY=default $(PYTEST) tests --ignore=tests/browser
	ATEN_CPU_CAPABILITY=avx2 $(PYTEST) tests --ignore=tests/browser

figures: venv
	$(BIN)/umlkit figures --profile default

# Writes the committed figures/ and figures/results.{md,json}, then the README's Results section
# from them (python -m umlkit.results --readme).
reference: venv
	$(BIN)/umlkit figures --profile reference
	$(BIN)/python -m umlkit.results --readme

# The site shows what make reference executed; the notebooks are run first only if one is missing.
docs: venv
	@missing="$$($(BIN)/python docs/build_site.py --missing)"; \
	if [ -n "$$missing" ]; then echo "not executed yet: $$missing; running make reference first"; \
	  $(MAKE) reference; fi
	$(BIN)/python docs/build_site.py

smoke-figures: venv
	$(BIN)/umlkit figures --profile smoke

lab: venv
	$(BIN)/jupyter lab notebooks

bench: venv
	$(BIN)/umlkit bench

# Every output removed except those of the cells nbval compares (# NBVAL_CHECK_OUTPUT).
clean-notebooks: venv
	$(BIN)/python -m umlkit.checked_outputs clear notebooks/*.ipynb

# The outputs nbval compares, written to notebooks/checked/ (the notebooks stay clear): each notebook executed at
# the smoke profile in notebooks/ (as nbval runs it), only its # NBVAL_CHECK_OUTPUT cells' outputs
# kept. Run it after changing such a cell; NOTEBOOKS=notebooks/02_evidential_primer.ipynb for one.
NOTEBOOKS ?= notebooks/*.ipynb
check-outputs: venv
	$(BIN)/python -m umlkit.checked_outputs store $(NOTEBOOKS)

# The student release (umlkit/exercises.py): nbgrader generate_assignment over the notebooks as
# committed, in a scratch nbgrader course (build/nbgrader/, its gradebook.db included).
assignments: venv
	$(BIN)/python -m umlkit.exercises release notebooks/*.ipynb --out build/assignments --course build/nbgrader
