# Every target that needs Python creates .venv first (and refreshes it when pyproject.toml changes),
# so `make demo` and `make test` are the only commands a new user types.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev

# The demo runs against the embedded emulator: no token, no network. Its state lives in .reconcile/.
DEMO_API    := emulator:.reconcile/demo-emulator.json
DEMO_STATE  := .reconcile/demo-state.json
DEMO_FLAGS  := --api-url $(DEMO_API) --state $(DEMO_STATE)
export ONBOARDING_WEBHOOK_SECRET ?= demo-secret-do-not-use-in-production

.PHONY: demo test lint bench clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	@echo "==> reconcile validate manifests/"
	@$(BIN)/reconcile validate --check-env manifests/
	@echo
	@echo "==> reconcile plan (against the embedded emulator)"
	@$(BIN)/reconcile plan $(DEMO_FLAGS) manifests/
	@echo
	@echo "==> reconcile apply --auto-approve"
	@$(BIN)/reconcile apply --auto-approve $(DEMO_FLAGS) manifests/
	@echo
	@echo "==> reconcile plan --detailed-exitcode (nothing left to do)"
	@$(BIN)/reconcile plan --detailed-exitcode $(DEMO_FLAGS) manifests/
	@echo
	@echo "==> reconcile drift (read-only: exit 0, in sync)"
	@$(BIN)/reconcile drift $(DEMO_FLAGS) manifests/
	@echo
	@echo "==> someone disables a webhook in Typeform (through the emulator's control API)"
	@$(BIN)/python -m reconciler.emulator.outside .reconcile/demo-emulator.json onbrd01/onboarding-intake enabled=false
	@echo
	@echo "==> reconcile drift (exit 2, cause changed_outside)"
	@$(BIN)/reconcile drift $(DEMO_FLAGS) manifests/; code=$$?; echo "(exit $$code)"; test $$code -eq 2
	@echo
	@echo "==> reconcile watch --once --heal (corrects it, under every apply guard)"
	@$(BIN)/reconcile watch --once --heal $(DEMO_FLAGS) --report-dir .reconcile/demo-reports manifests/
	@echo
	@echo "==> reconcile drift (exit 0 again)"
	@$(BIN)/reconcile drift $(DEMO_FLAGS) manifests/

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check reconciler tests
	$(BIN)/ruff format --check reconciler tests
	$(BIN)/mypy --strict reconciler

# The bench extra (matplotlib, for benchmarks/pacing.png) has its own stamp, so `make test` never
# installs it. bench_report.py runs every other tests/benchmarks/bench_*.py, writes BENCHMARKS.md
# and benchmarks/pacing.png, and exits non-zero when any target is missed.
BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): pyproject.toml $(STAMP)
	@$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python tests/benchmarks/bench_report.py

clean:
	rm -rf $(VENV) .reconcile .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
