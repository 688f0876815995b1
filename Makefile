# The two commands a newcomer needs: `make test` and `make serve` (see README.md).
# Everything else is a convenience for developers.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint format serve bench venv services clean

# The environment: a local venv with the project and its test tools (pinned in pyproject.toml).
$(STAMP): pyproject.toml proto/gader/v1/gader.proto
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# an older environment had opencv-python-headless; it must not sit beside opencv-contrib-python
	@$(BIN)/python -m pip uninstall --quiet --yes opencv-python-headless opencv-python >/dev/null 2>&1 || true
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(BIN)/python -c "import service.grpc_gen as g; g.ensure()"  # gRPC code, generated from proto/
	@touch $(STAMP)

venv: $(STAMP)

# Services the tests start themselves (redis-server), installed from Debian's packages when missing.
services:
	@scripts/install-services.sh

# The whole suite: lint, then every test (tests needing ../shared/data skip without it, but fail in CI).
test: lint services
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check gader service tests bench scripts
	$(BIN)/ruff format --check gader service tests bench scripts

format: $(STAMP)
	$(BIN)/ruff check --fix gader service tests bench scripts
	$(BIN)/ruff format gader service tests bench scripts

# The main job: the matching service with the shipped models, REST on :8000 (docs at /docs), gRPC on :8001,
# galleries in ./gader-data (SQLite). The first start prints an admin API key. Override with GADER_* variables.
serve: $(STAMP)
	$(BIN)/gader serve --grpc-port $${GADER_GRPC_PORT:-8001}

# Benchmarks write their results into docs/BENCHMARKS.md (each its own section; see bench/).
bench: $(STAMP)
	$(BIN)/python -m bench.bench_pretreatment
	$(BIN)/python -m bench.bench_backbones
	$(BIN)/python -m bench.bench_search
	$(BIN)/python -m bench.bench_video
	$(BIN)/python -m bench.bench_service

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
