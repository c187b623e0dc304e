# Two entry points for a newcomer: `make demo` and `make test`. Each creates the local
# virtual environment on first use and installs exactly what pyproject.toml pins.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# An editable install leaves bvisor's own modules uncompiled, and where PYTHONDONTWRITEBYTECODE
# is set every bvisor (and cold launcher) start would compile them again: ~100 ms a command.
COMPILE := $(BIN)/python -m compileall -q src
CLI_DOCS := $(VENV)/share/man/man1/bvisor.1

.PHONY: demo lint test test-fast fuzz bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,cli-docs]'
	$(COMPILE)
	touch $(STAMP)

# The man page and the bash and zsh completions, generated from the parser again whenever
# bvisor's source changes, into $(VENV)/share (man1, bash-completion, zsh/site-functions).
$(CLI_DOCS): $(STAMP) $(wildcard src/bvisor/*.py src/bvisor/cli/*.py)
	$(BIN)/python -m bvisor.cli.docs $(VENV)

# The demo keeps its evidence store and signing key in ./.bvisor, not in your home.
demo: export BVISOR_HOME := $(CURDIR)/.bvisor
demo: $(STAMP) $(CLI_DOCS)
	@echo "== bvisor run --net none --sign -- cat /proc/self/net/dev  (a deny-all network boundary, stored and signed)"
	@$(BIN)/bvisor run --net none --no-stdin --sign --report bvisor-report.json -- cat /proc/self/net/dev
	@echo
	@echo "== bvisor verify --key bvisor-key.pem bvisor-report.json  (recompute the seal, check the signature)"
	@$(BIN)/bvisor key > bvisor-key.pem 2>/dev/null
	@$(BIN)/bvisor verify --key bvisor-key.pem bvisor-report.json
	@echo
	@echo "== bvisor reports show  (the run as the evidence store keeps it)"
	@$(BIN)/bvisor reports show $$($(BIN)/python -c 'import json; print(json.load(open("bvisor-report.json"))["body_hash"])')
	@echo
	@echo "== bvisor reports verify  (the whole hash chain of stored runs)"
	@$(BIN)/bvisor reports verify

# ruff with pyproject's rules, and mypy --strict on the contract and the wire vocabulary
# (pyproject's [tool.mypy] names the files and the modules held strict). Not `ruff format`:
# the code keeps its own layout.
LINT_PATHS := src tests benchmarks
lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/mypy

# Lint first: a type or lint error fails fast, before minutes of oracles.
# The ledger gate fails the run unless every test a ledger row cites ran here and passed.
# The oracle suites then run again through the warm launcher: both paths must hold.
test: lint $(STAMP) $(CLI_DOCS)
	BVISOR_LEDGER_GATE=1 $(BIN)/python -m pytest -q
	BVISOR_LAUNCHER=warm $(BIN)/python -m pytest -q tests/oracle tests/launcher/test_protocol.py

# The pure tier alone (tests/unit: no process, no namespace, no sleep), in seconds, while you
# edit. Not a substitute for `make test`, which runs every tier.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m unit tests/unit

# The honesty fuzzer, deeper than the fixed 12 examples per identity `make test` draws.
FUZZ_EXAMPLES ?= 200
fuzz: $(STAMP)
	BVISOR_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q tests/oracle/test_honesty_fuzzer.py

BENCH_STAMP := $(VENV)/.bench-stamp

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(COMPILE)
	$(BIN)/python benchmarks/bench.py

clean:
	rm -rf $(VENV) bvisor-report.json bvisor-key.pem .bvisor benchmarks/results .mypy_cache .ruff_cache
