# Two commands do all set-up on a fresh machine:
#   make run    install what running needs (the service, reports, database drivers), train
#               on the built-in demo data, evaluate, print recommendations, then serve the
#               HTTP API on http://127.0.0.1:8000 (SQLite in rekko-data/)
#   make test   add TensorFlow and the test, lint and Spark tools to the same .venv, then
#               lint, type-check and run the whole test suite
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
REKKO_DATASETS ?= $(abspath ../shared/datasets)
export REKKO_DATASETS

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup setup-run browser java run test lint format typecheck unit fuzz lock clean
# What `make run` needs (the demo and the service train no TensorFlow model); `make test` adds
# `tf` and `dev` (pytest, ruff, mypy, Playwright, PySpark, faiss). TensorFlow alone is 1.3 GB:
# `make run RUN_EXTRAS=serve,reports,postgres,mysql,tf` to have it from the start.
RUN_EXTRAS ?= serve,reports,postgres,mysql


# Everything: the runtime plus TensorFlow and the test, lint and Spark tools.
setup: $(VENV)/.installed

# The runtime only (0.8 GB against 3.0 GB for everything).
setup-run: $(VENV)/.run-installed

$(VENV)/.run-installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[$(RUN_EXTRAS)]"
	touch $@

$(VENV)/.installed: $(VENV)/.run-installed
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[$(RUN_EXTRAS),tf,dev]"
	touch $@

# Debian's Chromium for the dashboard's browser tests (Playwright drives it; no browser download).
browser:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && \
		$(SUDO) apt-get install -y -qq --no-install-recommends chromium; }

# A Java runtime for the Spark tests (PySpark starts a JVM; Spark 4.0 needs Java 17 or 21).
java:
	@command -v java >/dev/null || { $(SUDO) apt-get update -qq && \
		$(SUDO) apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless; }

run: setup-run
	$(BIN)/rekko demo
	$(BIN)/rekko serve --model-path models/demo

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: setup
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

typecheck: setup
	$(BIN)/mypy

unit: setup browser java
	$(BIN)/python -m pytest

test: lint typecheck unit

# Schemathesis against a real `rekko serve` on the demo shop with keys (in a temporary folder):
# no server errors, and every status, content type and body as the OpenAPI document says.
FUZZ_PORT ?= 8765
FUZZ_EXAMPLES ?= 100
FUZZ_SEED ?= 1
FUZZ_ADMIN_KEY := fuzz-admin-key-0123456789
fuzz: setup
	@set -e; data=$$(mktemp -d); trap 'kill $$server 2>/dev/null; rm -rf "$$data"' EXIT; \
	cd "$$data"; \
	REKKO_PORT=$(FUZZ_PORT) REKKO_LOG_LEVEL=warning REKKO_TRAINING_EXECUTOR=thread \
	REKKO_ADMIN_KEY=$(FUZZ_ADMIN_KEY) REKKO_READ_KEY=fuzz-read-key-0123456789 \
	REKKO_EVENTS_KEY=fuzz-events-key-0123456789 $(abspath $(BIN))/rekko serve & server=$$!; \
	for _ in $$(seq 300); do \
		curl -sf http://127.0.0.1:$(FUZZ_PORT)/ready >/dev/null && break; sleep 0.5; done; \
	$(abspath $(BIN))/schemathesis run http://127.0.0.1:$(FUZZ_PORT)/openapi.json \
		--checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
		--header "X-API-Key: $(FUZZ_ADMIN_KEY)" --max-examples $(FUZZ_EXAMPLES) --seed $(FUZZ_SEED) \
		--phases examples,coverage,fuzzing

# Re-resolve the pinned versions (run after changing dependencies in pyproject.toml).
lock: setup
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^rekko' > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
