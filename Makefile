# bertlab: `make train` installs everything and fine-tunes the offline default; `make test` runs the tests.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Installed before the project so that pip keeps it: 2.13.0 resolves to the CPU wheel on machines
# that ship it locally; elsewhere set TORCH=torch (or a CUDA build) to taste.
TORCH  ?= torch==2.13.0

.PHONY: install train test test-all lint tensorboard clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(TORCH)
	$(PY) -m pip install -e ".[offline,dev,bench,trackers,onnx,serve]"
	touch $@

train: install
	$(PY) train.py $(ARGS)

test: install
	$(PY) -m pytest -q -n 2 $(ARGS)

test-all: install
	$(PY) -m pytest -q -n 2 -m "" $(ARGS)

lint: install
	$(VENV)/bin/ruff check src tests benchmarks *.py

tensorboard: install
	$(VENV)/bin/tensorboard --logdir outputs

clean:
	rm -rf $(VENV) .pytest_cache
