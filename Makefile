# Two entry points for a newcomer: `make demo` and `make test`. Each creates the local
# virtual environment on first use and installs exactly what pyproject.toml pins.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	@echo "== bvisor run --net none -- cat /proc/self/net/dev  (a deny-all network boundary)"
	@$(BIN)/bvisor run --net none --no-stdin --report bvisor-report.json -- cat /proc/self/net/dev
	@echo
	@echo "== bvisor verify bvisor-report.json  (recompute the seal)"
	@$(BIN)/bvisor verify bvisor-report.json

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/launch_latency.py

clean:
	rm -rf $(VENV) bvisor-report.json
