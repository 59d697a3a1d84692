# Two entry points: `make demo` (the main job) and `make test` (the test suite). Both create the virtual
# environments they need, with the exact versions of constraints/ci.txt.

PYTHON ?= python3
VENV ?= .venv
VENV_PIL ?= .venv-pil
PIP_FLAGS ?= --quiet --disable-pip-version-check
PYTEST_WORKERS ?= 2

.PHONY: setup setup-pil demo demo-cpu test test-main test-pil style clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints/ci.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_FLAGS) -c constraints/ci.txt torch torchvision
	$(VENV)/bin/pip install $(PIP_FLAGS) -c constraints/ci.txt -e ".[vision,dev,app]"
	touch $@

# A second environment without torchvision (torch 2.13.0, the small CPU wheel): the PIL image backend.
setup-pil: $(VENV_PIL)/.installed

$(VENV_PIL)/.installed: pyproject.toml constraints/ci.txt
	$(PYTHON) -m venv $(VENV_PIL)
	grep -v -E '^(torch|torchvision)==' constraints/ci.txt > $(VENV_PIL)/constraints.txt
	$(VENV_PIL)/bin/pip install $(PIP_FLAGS) torch==2.13.0
	$(VENV_PIL)/bin/pip install $(PIP_FLAGS) -c $(VENV_PIL)/constraints.txt -e ".[dev,app]"
	touch $@

demo: setup
	$(VENV)/bin/mamo-hf demo

# The same demo in the small environment: torch's CPU wheel (190 MB instead of the CUDA build that PyPI serves for
# Linux, 4.4 GB installed), PIL image backend.
demo-cpu: setup-pil
	$(VENV_PIL)/bin/mamo-hf demo

test: test-main test-pil

test-main: setup
	$(VENV)/bin/python -m pytest -n $(PYTEST_WORKERS) tests

test-pil: setup-pil
	$(VENV_PIL)/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torchvision') is not None)"
	$(VENV_PIL)/bin/python -m pytest -n $(PYTEST_WORKERS) tests

style:
	$(VENV)/bin/ruff format --line-length 119 mamo_hf mamo_hf_cli.py tests examples benchmarks
	$(VENV)/bin/ruff check --line-length 119 --select E,F,W,I mamo_hf mamo_hf_cli.py tests examples benchmarks

clean:
	rm -rf $(VENV) $(VENV_PIL) .transformers-tests .pytest_cache
