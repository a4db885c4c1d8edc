# model-go developer entry points. `make run` and `make test` are the README's quick start.
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install run test check lint format typecheck bench memory clean e2e assets

$(STAMP): pyproject.toml
	@command -v uv >/dev/null 2>&1 || python3 -m pip install -q uv
	@test -x $(BIN)/python || uv venv -q -p 3.11 $(VENV)
	uv pip install -q -p $(VENV) -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: install  ## start model-go on http://127.0.0.1:8080 with an embedded SQLite database in ./data
	$(BIN)/model-go serve

# Most tests wait on real servers (start-up, flush intervals, slow mock streams), so three workers
# help even on two cores (four were slower: 24.8 min against 20.4); --dist loadscope keeps a
# module's shared gateway on one worker. --durations lists the slowest tests, to keep CI short.
PYTEST_WORKERS ?= 3

test: install  ## the whole suite (SQLite, and PostgreSQL when it is reachable)
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadscope --durations=25

lint: install
	$(BIN)/ruff format --check src tests
	$(BIN)/ruff check src tests

typecheck: install
	$(BIN)/mypy

check: lint typecheck test  ## the one gate: format, lint, types, tests

format: install
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

# The second part starts two replicas on PostgreSQL + Redis (127.0.0.1:5432 and :6379; skipped with a
# message when either is missing): throughput against one replica and memory per replica.
bench: install  ## model-go vs the thin baseline on core 0, then two replicas on PostgreSQL + Redis (needs ../shared/bench)
	bash scripts/bench.sh
	bash scripts/bench_replicas.sh

# MEMORY_ARGS: e.g. --requests 10000, --breakdown (resident memory per imported package), --env NAME=VALUE
memory: install  ## the server's resident memory after warm-up, and what it imported (SQLite, loopback)
	PYTHONPATH=src $(BIN)/python scripts/memory_profile.py $(MEMORY_ARGS)

e2e: install  ## the dashboard's browser tests only (Debian chromium at /usr/bin/chromium)
	$(BIN)/pytest tests/e2e

assets:  ## re-fetch the dashboard's front-end assets from npm and check them against SHA256SUMS
	bash scripts/vendor-assets.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
