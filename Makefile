# Two entry points: `make demo` (the main job) and `make test` (the test suite). Both create the virtual
# environments they need, with the exact versions of constraints/ci.txt.

PYTHON ?= python3
VENV ?= .venv
VENV_PIL ?= .venv-pil
VENV_DEMO ?= .venv-demo
# The demo's torch: with an NVIDIA GPU, the CUDA build and torchvision; without one, the CPU wheel (190 MB instead of
# 4.4 GB installed) and the PIL image backend. `make demo-cpu` asks for the CPU wheel whatever the machine has.
HAS_GPU := $(shell nvidia-smi -L > /dev/null 2>&1 && echo yes)
DEMO_TORCH ?= $(if $(HAS_GPU),torch torchvision,torch==2.13.0)
PIP_FLAGS ?= --quiet --disable-pip-version-check
PYTEST_WORKERS ?= 2

.PHONY: setup setup-pil setup-demo demo demo-cpu test test-main test-pil style clean

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

# The demo's own environment: the package and what its quick start uses (easy-vqa), nothing for tests or the app.
setup-demo: $(VENV_DEMO)/.installed

$(VENV_DEMO)/.installed: pyproject.toml constraints/ci.txt
	$(PYTHON) -m venv $(VENV_DEMO)
	grep -v -E '^(torch|torchvision)==' constraints/ci.txt > $(VENV_DEMO)/constraints.txt
	$(VENV_DEMO)/bin/pip install $(PIP_FLAGS) $(if $(findstring torchvision,$(DEMO_TORCH)),-c constraints/ci.txt) $(DEMO_TORCH)
	$(VENV_DEMO)/bin/pip install $(PIP_FLAGS) -c $(VENV_DEMO)/constraints.txt -e ".[demo]"
	echo "$(DEMO_TORCH)" > $@

demo: setup-demo
	$(VENV_DEMO)/bin/mamo-hf demo

# The demo on torch's CPU wheel, in a fresh environment, even on a machine with a GPU.
demo-cpu:
	rm -rf $(VENV_DEMO)
	$(MAKE) demo DEMO_TORCH=torch==2.13.0

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
	rm -rf $(VENV) $(VENV_PIL) $(VENV_DEMO) .transformers-tests .pytest_cache
