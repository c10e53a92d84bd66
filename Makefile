# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
CONFIG ?= config/demo.yaml

.PHONY: run test bench bench-chaos lint typecheck unit system-deps interop-deps catalogues clean \
	image image-local image-try image-compose-try image-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,otel]"
	touch $@

## make run: the provider, the iDenfy simulator and the demo bank app (http://127.0.0.1:9000)
run: $(STAMP)
	@echo "Demo bank:       http://127.0.0.1:9000"
	@echo "Provider:        http://127.0.0.1:8000/.well-known/openid-configuration"
	@echo "iDenfy simulator: http://127.0.0.1:8001"
	$(BIN)/idenfy-stepup demo --config $(CONFIG)

## system packages the tests use (Debian); skipped when present or when not root
system-deps:
	@./.ci/system-deps

lint: $(STAMP)
	$(BIN)/ruff check plugin tests bench
	$(BIN)/ruff format --check plugin tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

## the npm packages the interop and gateway tests drive (openid-client, express-openid-connect)
interop-deps:
	@if ! command -v npm >/dev/null 2>&1; then \
	  echo "interop-deps: npm not found; the node tests need Node.js 20.19+ with npm" >&2; \
	elif [ -f tests/interop/package-lock.json ]; then \
	  npm ci --prefix tests/interop --no-audit --no-fund --silent; fi

## make test: everything CI runs
test: system-deps $(STAMP) interop-deps lint typecheck unit

## make bench: whole step-up flows under load, 1 and 2 workers, 32 and 128 users, 1,000 and
## 10,000 browsers waiting on their push streams, then bench-chaos (docs/performance.md)
BENCH_ARGS ?= --workers 1,2 --users 32,128 --scenario both --browsers 1000,10000
bench: system-deps $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[test,bench]"
	$(BIN)/python bench/load.py $(BENCH_ARGS) --out bench/results.json
	$(BIN)/python bench/chaos.py $(CHAOS_ARGS) --out bench/chaos-results.json

## make bench-chaos: 10,000 step-ups with chaotic webhooks, a Redis restart, a killed worker
CHAOS_ARGS ?= --flows 10000 --concurrency 200
bench-chaos: system-deps $(STAMP)
	$(BIN)/python bench/chaos.py $(CHAOS_ARGS) --out bench/chaos-results.json

## make catalogues: re-extract the pages' texts into plugin/idenfy_stepup/locales (docs/translations.md)
catalogues: $(STAMP)
	$(BIN)/python -m idenfy_stepup.i18n.extract

## make image: the container image, with the registry's python:3.11-slim (docs/operations.md)
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE   ?= idenfy-stepup:$(VERSION)
DOCKER  ?= docker
image:
	$(DOCKER) build --tag $(IMAGE) .

## make image-local: where no registry answers: a Debian 12 base from debootstrap, then podman
image-local:
	deploy/build-local-image.sh

## make image-try: run the local image against a real redis-server and complete a step-up
image-try:
	deploy/try-local-image.sh

## make image-compose-try: deploy/compose/simulator.yaml under podman-compose, a step-up through it
image-compose-try:
	deploy/try-local-compose.sh

## make image-test: both, as the slow test tests/test_image_build.py (not part of make test)
image-test: $(STAMP)
	STEPUP_IMAGE_TEST=1 $(BIN)/pytest tests/test_image_build.py -q

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
