# Two commands do all set-up on a fresh machine with Python 3.11:
#   make serve   installs, builds the demo model repository, serves it on 127.0.0.1:8001
#   make test    installs what the tests need and runs the suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
REPO ?= models
SERVE_ARGS ?=

.PHONY: serve test install install-dev demo protos check-protos bench perf-analyzer lint clean promtool

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Stamps: reinstall only when pyproject.toml changes, so a second `make serve` starts at once.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[demo,optimize]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[demo,optimize,dev,tracing]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# The demo repository: digits version 1 (fp32), then the optimize toolchain publishes its
# dynamic INT8, static INT8 and pruned variants as versions 2-4.
$(REPO)/digits/1/model.onnx: | $(VENV)/.installed
	$(BIN)/python -m ortserve.optimize.demo --repo $(REPO)
	$(BIN)/python -m ortserve.optimize.examples.digits --repo $(REPO) --work build/digits --quiet

demo: $(REPO)/digits/1/model.onnx

serve: install demo
	$(BIN)/ortserve --model-repository $(REPO) $(SERVE_ARGS)

test: install-dev promtool
	$(BIN)/python -m pytest -q

# promtool (checks and unit-tests deploy/prometheus/): the one on PATH, else taken out of Debian's
# prometheus package into build/prometheus/ (downloaded, unpacked, nothing installed or started).
PROMTOOL_LOCAL := build/prometheus/usr/bin/promtool
promtool:
	@command -v promtool >/dev/null || [ -x $(PROMTOOL_LOCAL) ] || $(MAKE) $(PROMTOOL_LOCAL)

$(PROMTOOL_LOCAL):
	@command -v apt-get >/dev/null || { echo "promtool: no apt-get here; install Prometheus' promtool on PATH" >&2; exit 1; }
	rm -rf build/prometheus && mkdir -p build/prometheus
	cd build/prometheus && (apt-get download prometheus || (apt-get update -qq && apt-get download prometheus))
	dpkg-deb -x build/prometheus/prometheus_*.deb build/prometheus
	rm -f build/prometheus/prometheus_*.deb

# Regenerate the gRPC stubs in server/_proto from protos/ (tests fail when they are stale).
protos: install-dev
	$(BIN)/python scripts/gen_protos.py

# The full comparison (about 10 minutes; the first run also builds MLServer's own venv from PyPI).
# Scripts run as modules from the repository root (benchmarks/ is a package; no sys.path changes).
# Triton's perf_analyzer, the second independent client: tritonclient 2.45.0's wheel in its own venv
# (benchmarks/.venv-perf) and Debian's libb64-0d, which the binary links against.
perf-analyzer: install-dev
	@/sbin/ldconfig -p | grep -q libb64.so.0d || apt-get install -y -q libb64-0d
	$(BIN)/python -c "from benchmarks.peers.perf_analyzer import ensure_perf_analyzer as e; print(e())"

bench: install-dev perf-analyzer
	$(BIN)/python -m benchmarks.bench_server --write-results
	$(BIN)/python -m benchmarks.bench_peers --write-results
	$(BIN)/python -m benchmarks.bench_compare --write-results --profile
	$(BIN)/python -m benchmarks.bench_optimize digits
	$(BIN)/python -m benchmarks.bench_monitoring --write-results
	$(BIN)/python -m benchmarks.bench_optimize cnn --seconds 2
	$(BIN)/python -m benchmarks.bench_optimize minilm --seconds 6
	$(BIN)/python -m benchmarks.bench_security --write-results

# mypy does not follow setuptools' editable import hook, so it checks a tree of links laid out as
# the installed package is (server/ -> ortserve, optimize/ -> ortserve.optimize).
lint: install-dev
	$(BIN)/ruff check server scripts tests benchmarks optimize setup.py
	$(BIN)/ruff format --check server scripts tests benchmarks optimize setup.py
	rm -rf build/typecheck && mkdir -p build/typecheck/ortserve
	cp -rs $(CURDIR)/server/. build/typecheck/ortserve/ && ln -s $(CURDIR)/optimize build/typecheck/ortserve/optimize
	cd build/typecheck && $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml -p ortserve

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
