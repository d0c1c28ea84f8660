# Set-up is two commands: `make demo` and `make test`. Both install what they need first.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)

.PHONY: help bootstrap demo test lint airflow clean

help:
	@echo "make demo   run the hub end to end on a simulated county (embedded PostgreSQL, real Airflow DAGs)"
	@echo "make test   run the test suite"
	@echo "make lint   ruff over the project"

$(UV):
	@echo "installing uv (Python package manager) for this user …"
	$(PYTHON) -m pip install --user --quiet uv || $(PYTHON) -m pip install --user --quiet --break-system-packages uv

bootstrap: $(UV)
	$(UV) sync --frozen

demo: bootstrap
	$(UV) run --frozen hub demo

test: bootstrap
	$(UV) run --frozen pytest

lint: bootstrap
	$(UV) run --frozen ruff check .

airflow: bootstrap
	$(UV) run --frozen hub airflow

clean:
	-$(UV) run --frozen hub db stop
	rm -rf .hub
