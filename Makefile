# The two quick-start commands: `make demo` and `make test`.
# Everything is installed into .venv from the project's own files, so a fresh
# machine with only Python 3.11+ and make needs nothing else.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint types check bench bench-servicedir chaos tox clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m wirepool_servicedir.demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check wirepool plugins tests benchmarks examples
	$(BIN)/ruff format --check wirepool plugins tests benchmarks examples

types: $(STAMP)
	$(BIN)/mypy

check: lint types test

# pyenv keeps 3.12/3.13 off PATH unless asked: put every installed 3.11+ on it.
tox: $(STAMP)
	PATH="$$(for v in $$(pyenv versions --bare 2>/dev/null | grep -E '^3\.1[1-9]'); do \
		printf '%s/versions/%s/bin:' "$$(pyenv root)" "$$v"; done)$$PATH" $(BIN)/tox

# The long chaos run: make chaos DURATION=1200 [SEED=7] [SESSIONS=100] [REPORT=x.json]
# Faults come in bursts of BURST seconds, each followed by a convergence check.
DURATION ?= 600
SESSIONS ?= 100
BURST    ?= 120
chaos: $(STAMP)
	$(BIN)/python -m tests.chaos --duration $(DURATION) --sessions $(SESSIONS) --burst $(BURST) \
		$(if $(SEED),--seed $(SEED)) $(if $(REPORT),--report $(REPORT))

# The side-by-side comparison (issue 5): installs matplotlib into .venv, the
# peers (supervisor and circus into benchmarks/.peers-venv; runit and s6 with
# apt-get when root), then runs every peer at N = 200 and 1 000 (~25 min).
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/compare.py --install $(BENCH_ARGS)

# wirepool alone, in more depth (its own README section).
bench-servicedir: $(STAMP)
	$(BIN)/python benchmarks/bench_servicedir.py

clean:
	rm -rf $(VENV) benchmarks/.peers-venv .tox build *.egg-info .pytest_cache .mypy_cache .ruff_cache
