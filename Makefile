# The two set-up commands are `make up` and `make test` (see README.md).
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: up down logs follow status test install docs chaos bench

up: install
	@$(PY) -m devtools.cluster up

down:
	@if [ -x $(PY) ]; then $(PY) -m devtools.cluster down; else echo "nothing to stop"; fi

logs:
	@$(PY) -m devtools.cluster logs

follow:
	@$(PY) -m devtools.cluster logs --follow

status:
	@$(PY) -m devtools.cluster status

test: install
	@$(PY) -m pytest $(PYTEST_ARGS)

chaos: install
	@$(PY) -m bench.chaos $(CHAOS_ARGS)

bench: install
	@$(PY) -m bench.compare $(BENCH_ARGS)

install:
	@bash scripts/install.sh

docs: install
	@$(PY) -m libs.settings > docs/configuration.md
