# Set-up is two commands: `make demo` and `make test`. Both install what they need first.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)

.PHONY: help bootstrap browser demo test lint airflow clean

help:
	@echo "make demo   run the hub end to end on a simulated county (embedded PostgreSQL, real Airflow DAGs)"
	@echo "make test   run the test suite"
	@echo "make lint   ruff over the project"

$(UV):
	@echo "installing uv (Python package manager) for this user …"
	$(PYTHON) -m pip install --user --quiet uv || $(PYTHON) -m pip install --user --quiet --break-system-packages uv

# With Java on this machine the Spark backend is installed too (the extra 'spark'), so its tests run.
# The packages are compiled to bytecode once here (about 20 s on 2 cores the first time, under a second after):
# where PYTHONDONTWRITEBYTECODE is set, as on many CI machines and containers, Python writes no .pyc files, and
# every task, scheduler and CLI process compiled Airflow, Great Expectations, pandas … from source each time
# it started (importing Airflow's models and Great Expectations: 5.9 s from source, 2.1 s from bytecode).
bootstrap: $(UV)
	$(UV) sync --frozen --compile-bytecode $(if $(shell command -v java 2>/dev/null),--extra spark)

demo: bootstrap
	$(UV) run --frozen hub demo
	@if command -v uv >/dev/null; then \
	  echo "run the hub's commands with: uv run hub --help   (or .venv/bin/hub --help), e.g. uv run hub status"; \
	else \
	  echo "run the hub's commands with: .venv/bin/hub --help, e.g. .venv/bin/hub status"; \
	  echo "  (uv is at $(UV) but not on your PATH: add $(dir $(UV)) to PATH to use uv run hub)"; \
	fi

# Headless Chromium and CJK fonts, for the tests that render the Data Docs and the scorecard.
# Installed from Debian's packages when run as root; otherwise those tests are skipped with a note.
browser:
	@{ command -v chromium-headless-shell || command -v chromium; } >/dev/null && fc-list :lang=zh | grep -q . || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing headless Chromium and CJK fonts (Debian packages) for the rendering tests …"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      chromium-headless-shell fonts-noto-cjk >/dev/null \
	      || echo "note: could not install Chromium: the rendering tests will be skipped"; \
	  else \
	    echo "note: no Chromium or CJK fonts found: rendering tests may be skipped (chromium-headless-shell, fonts-noto-cjk)"; \
	  fi; }

test: bootstrap browser
	$(UV) run --frozen lint-imports --no-cache
	$(UV) run --frozen pytest

lint: bootstrap
	$(UV) run --frozen ruff check .

airflow: bootstrap
	$(UV) run --frozen hub airflow

clean:
	-$(UV) run --frozen hub db stop
	rm -rf .hub
