# Two commands do all set-up on a fresh machine with Python 3.11:
#   make serve   installs, builds the demo model repository, serves it on 127.0.0.1:8001
#   make test    installs what the tests need and runs the suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
REPO ?= models
SERVE_ARGS ?=

.PHONY: serve test install install-dev demo protos check-protos bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Stamps: reinstall only when pyproject.toml changes, so a second `make serve` starts at once.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[demo]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[demo,optimize,dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

$(REPO)/digits/1/model.onnx: | $(VENV)/.installed
	$(BIN)/python -m optimize.demo --repo $(REPO)

demo: $(REPO)/digits/1/model.onnx

serve: install demo
	$(BIN)/ortserve --model-repository $(REPO) $(SERVE_ARGS)

test: install-dev
	$(BIN)/python -m pytest -q

# Regenerate the gRPC stubs in server/_proto from protos/ (tests fail when they are stale).
protos: install-dev
	$(BIN)/python scripts/gen_protos.py

# The full comparison (about 10 minutes; the first run also builds MLServer's own venv from PyPI).
bench: install-dev
	$(BIN)/python benchmarks/bench_server.py --write-results
	$(BIN)/python benchmarks/bench_compare.py --write-results --profile

lint: install-dev
	$(BIN)/ruff check server scripts tests benchmarks optimize
	$(BIN)/ruff format --check server scripts tests benchmarks optimize
	$(BIN)/mypy server

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
