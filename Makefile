# MedhastraAI: `make run` serves the app, `make test` runs the suite. Both set up .venv/.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)
AXE := node_modules/axe-core/axe.min.js

.PHONY: run test test-under-load lint bench simulator clean

$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $$(sh scripts/find-python) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	@rm -f $(VENV)/.installed-* && touch $@

# axe-core, which the browser tests inject into pages (without npm they are skipped).
$(AXE): package-lock.json
	@if command -v npm >/dev/null; then npm ci --no-audit --no-fund --silent && touch $@; \
	else echo "npm not found: the accessibility checks will be skipped"; fi

# Local work: DEBUG on (the app's default is production).
run: export DEBUG ?= true
run: $(STAMP)
	$(PY) manage.py migrate --noinput
	@$(PY) manage.py ensure_dev_clinician
	$(VENV)/bin/daphne -b 127.0.0.1 -p 8000 medhastra.asgi:application

test: $(STAMP) $(AXE)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

# The suite three times in a row while stress-ng (Debian's) keeps both cores busy: its
# timing must hold on a loaded machine, with no timeout raised for it.
test-under-load: $(STAMP) $(AXE)
	@command -v stress-ng >/dev/null || { echo "needs stress-ng (apt-get install -y stress-ng)"; exit 1; }
	stress-ng --cpu 2 --cpu-load 100 --quiet & trap "kill $$!" EXIT; \
	for n in 1 2 3; do $(PY) -m pytest -q $(PYTEST_ARGS) || exit 1; done

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Benchmarks write their reports to docs/.
bench: $(STAMP)
	FAULT_STAGES=300 RELIABILITY_REPORT=docs/reliability.md \
	PERFORMANCE_REPORT=docs/performance.md $(PY) -m pytest tests/load -q -m "bench or not bench"

simulator: $(STAMP)
	$(PY) -m tests.llm_simulator

clean:
	rm -rf $(VENV) node_modules
