# Two commands do all the set-up: `make run` (the product on its embedded defaults) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
STAMP := $(VENV)/.installed
VENDOR_JS := workbench/static/h5/vendor/dingtalk.open.js workbench/static/h5/vendor/echarts.min.js

.PHONY: setup run test lint format bench
setup: $(STAMP) $(VENDOR_JS)

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -r requirements-dev.txt
	@touch $(STAMP)

# Self-hosted third-party scripts: the H5 shell's dingtalk-jsapi and the dashboards' ECharts (from the npm
# registry, pinned and integrity-checked; one run of the script writes both).
$(VENDOR_JS) &: scripts/vendor-js.sh scripts/jsapi/package-lock.json
	@bash scripts/vendor-js.sh

run: setup
	@bash scripts/run.sh

test: setup
	@bash scripts/test.sh

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: setup
	$(VENV)/bin/python bench/gateway.py
