# Two commands do all set-up on a fresh machine with Python 3.11:
#   make serve   installs, builds the demo model repository, serves it on 127.0.0.1:8001
#   make test    installs what the tests need and runs the suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
REPO ?= models
SERVE_ARGS ?=

.PHONY: serve test install install-dev demo protos check-protos bench fuzz perf-analyzer lint clean promtool lock \
	image image-build image-gpu image-tools image-clean checkov deploy-check docs docs-serve browser

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

$(VENV)/.installed-docs: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[docs]'
	touch $@

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

test: install-dev promtool checkov browser
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

# The property-based tests with their large budget: at least 10,000 cases per target (tests/fuzz;
# the suite runs the same tests with a small one). Tens of minutes on 2 cores.
fuzz: install-dev
	ORTSERVE_FUZZ=fuzz $(BIN)/python -m pytest -q -p no:cacheprovider --timeout 0 tests/fuzz

# Debian's chromium, for the status page's headless-browser test (tests/server/test_status_browser.py).
# Installed with apt-get when it is missing and this is root; otherwise the test skips and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "make browser: apt-get could not install chromium; the browser test will skip"; \
	  else echo "make browser: chromium missing and no apt-get as root; the browser test will skip"; fi; }

# The documentation site, built strictly (a broken link, a missing anchor or a reference page that cannot be
# generated from the code fails it) into build/site/ (open build/site/index.html). Not part of `make test`
# (CI runs it after the suite); the snippets of docs/getting-started.md are tested by the suite.
docs: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve -a 127.0.0.1:8000

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
	$(BIN)/python -m benchmarks.bench_batching --write-results
	$(BIN)/python -m benchmarks.bench_workers --write-results
	$(BIN)/python -m benchmarks.bench_loop_lag --write-results
	$(BIN)/python -m benchmarks.bench_compare --write-results --profile
	$(BIN)/python -m benchmarks.bench_optimize digits
	$(BIN)/python -m benchmarks.bench_monitoring --write-results
	$(BIN)/python -m benchmarks.bench_optimize cnn --seconds 2
	$(BIN)/python -m benchmarks.bench_optimize minilm --seconds 6
	$(BIN)/python -m benchmarks.bench_security --write-results
	$(BIN)/python -m benchmarks.chaos --write-results
	$(BIN)/python -m benchmarks.bench_status --write-results
	$(BIN)/python -m benchmarks.judge_sim --write-results
	$(BIN)/python -m benchmarks.learning_loop --write-results

# mypy does not follow setuptools' editable import hook, so it checks a tree of links laid out as
# the installed package is (server/ -> ortserve, optimize/ -> ortserve.optimize).
lint: install-dev
	$(BIN)/ruff check server scripts tests benchmarks optimize docsgen setup.py
	$(BIN)/ruff format --check server scripts tests benchmarks optimize docsgen setup.py
	rm -rf build/typecheck && mkdir -p build/typecheck/ortserve
	cp -rs $(CURDIR)/server/. build/typecheck/ortserve/ && ln -s $(CURDIR)/optimize build/typecheck/ortserve/optimize
	cd build/typecheck && $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml -p ortserve

# -- deployment (README "Deploying") ---------------------------------------------------------------
# The images install from lock files of exact versions with hashes (deploy/requirements/*.lock): after a
# dependency changes in pyproject.toml, `make lock` resolves them again on PyPI (a test fails until then).
lock: install-dev
	$(BIN)/python scripts/lock.py

# checkov checks the rendered Kubernetes manifests (tests/deploy/test_manifests.py); it pins old versions
# of packages the dev environment shares, so it lives in a virtual environment of its own.
CHECKOV_VENV ?= .venv-checkov
$(CHECKOV_VENV)/.installed: deploy/tools/checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q -r deploy/tools/checkov.txt
	touch $@

checkov: $(CHECKOV_VENV)/.installed

# Render and check the manifests the way CI does (schemas, CRD schemas, checkov, hadolint, locks).
deploy-check: install-dev checkov
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/deploy

# Images built without a registry: Debian's buildah and debootstrap (installed with apt), a Debian base
# bootstrapped into build/image/, buildah's storage in build/containers/. `make image` builds
# Dockerfile.cpu on it and smoke-tests it (tests/deploy/test_image.py: the entrypoint runs, Predict
# answers); `make image-gpu` builds Dockerfile.gpu (no GPU here: it is checked to refuse a CUDA model).
DEBIAN_SUITE ?= bookworm
# The mirror this machine's apt uses (empty: debootstrap's default).
DEBIAN_MIRROR ?= $(shell sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
IMAGE_BASE ?= localhost/ortserve-base:$(DEBIAN_SUITE)
STORAGE_DRIVER ?= overlay
# The host's CA bundle, bind-mounted over the build's during RUN steps only (it is not stored in the
# image): pip in Debian's venv reads it, so a TLS-intercepting proxy that the host trusts works. Empty: none.
BUILD_CA ?= $(wildcard /etc/ssl/certs/ca-certificates.crt)
BUD = $(BUILDAH) bud --isolation chroot --layers --build-arg BASE=$(IMAGE_BASE) \
	$(if $(BUILD_CA),--volume $(BUILD_CA):/etc/ssl/certs/ca-certificates.crt:ro)
BUILDAH = buildah --root $(CURDIR)/build/containers/storage --runroot $(CURDIR)/build/containers/run \
	--storage-driver $(STORAGE_DRIVER)
export BUILDAH_ISOLATION = chroot

# buildah builds, podman runs (with runc: crun refuses hybrid cgroup hierarchies such as this sandbox's).
image-tools:
	@for t in buildah debootstrap podman runc; do command -v $$t >/dev/null || missing=1; done; \
	[ -z "$$missing" ] || { apt-get update -q && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -q --no-install-recommends buildah debootstrap podman runc; }

# The base: Debian with CPython 3.11 (bookworm's python3) and its venv module, nothing else.
build/image/$(DEBIAN_SUITE).tar: | image-tools
	rm -rf build/image/$(DEBIAN_SUITE) && mkdir -p build/image
	debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
		$(DEBIAN_SUITE) build/image/$(DEBIAN_SUITE) $(DEBIAN_MIRROR)
	rm -rf build/image/$(DEBIAN_SUITE)/var/cache/apt/archives/*.deb build/image/$(DEBIAN_SUITE)/var/lib/apt/lists/*
	tar -C build/image/$(DEBIAN_SUITE) --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
		--numeric-owner -cf $@.tmp . && mv $@.tmp $@ && rm -rf build/image/$(DEBIAN_SUITE)

build/image/base.stamp: build/image/$(DEBIAN_SUITE).tar
	ctr=$$($(BUILDAH) from scratch) && $(BUILDAH) add $$ctr $< / && \
		$(BUILDAH) config --cmd '["/bin/bash"]' $$ctr && $(BUILDAH) commit --rm $$ctr $(IMAGE_BASE)
	touch $@

image-build: build/image/base.stamp
	$(BUD) -f Dockerfile.cpu -t localhost/ortserve:cpu .
	$(BUD) -f Dockerfile.cpu --target demo -t localhost/ortserve:cpu-demo .

image-gpu: build/image/base.stamp
	$(BUD) -f Dockerfile.gpu -t localhost/ortserve:gpu .

image: install-dev image-tools
	$(BIN)/python -m pytest -q -p no:cacheprovider -m slow tests/deploy/test_image.py

# Images and containers in build/containers (their storage holds mounts: buildah removes them first).
image-clean:
	-$(BUILDAH) rm --all
	-$(BUILDAH) rmi --all --force
	rm -rf build/containers build/image

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) build *.egg-info .pytest_cache
