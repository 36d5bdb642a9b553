# meerkat-runtime developer tasks. `make help` lists them.
# Every target installs what it needs first (a virtualenv in .venv; the
# targets that render diagrams also the Debian package graphviz, which needs
# root or sudo), so a fresh clone needs only `make <target>`.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help

.PHONY: demo demo-fleet
.PHONY: help install system-deps generate verify diagrams check-generated lint format \
        typecheck test pytest fuzz fuzz-seed bench main clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*## "}; {printf "  make %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ needed"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install the package with its dev tools

# Only what renders needs Graphviz's `dot`: `make diagrams` and the tests that
# render SVGs. `make demo` never installs a Debian package.
system-deps: ## install Graphviz (Debian package) if `dot` is missing
	@scripts/install-system-deps

demo: install ## the main job: run `meerkat-runtime demo` (sessions, a crash, recovery)
	$(BIN)/meerkat-runtime demo

demo-fleet: install ## the demo across processes: 3 workers, one SIGKILLed mid-run, the others finish
	$(BIN)/meerkat-runtime demo --fleet

main: demo ## alias of demo

generate: install ## validate + model-check spec/, then write generated/ and diagrams/*.dot
	$(PY) -m codegen generate

verify: install ## model-check both machines and the composed model: properties proved, state and step counts, scenario witnesses
	$(PY) -m codegen verify

diagrams: install system-deps ## model-check and render diagrams/*.svg and docs/*.svg with Graphviz
	$(PY) -m codegen diagrams
	@for f in docs/*.dot; do dot -Tsvg "$$f" -o "$${f%.dot}.svg" && echo "rendered $${f%.dot}.svg"; done

check-generated: install ## fail if any generated file is stale, missing or orphaned
	$(PY) -m codegen check

lint: install ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install ## apply ruff formatting and safe fixes
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: install ## mypy --strict over the package, codegen, tests and benchmarks
	$(BIN)/mypy

pytest: install system-deps ## run the test suite only (some tests render SVGs)
	$(BIN)/pytest

test: lint typecheck check-generated pytest ## everything CI runs: lint, types, freshness, tests

fuzz: install ## long crash fuzzing (thousands of examples, 100+ SIGKILLs), 4,000 bit flips and a long fleet run; prints seed and totals
	@seed=$$(date +%s); echo "hypothesis seed: $$seed (reproduce: make fuzz-seed SEED=$$seed)"; \
	HYPOTHESIS_PROFILE=fuzz MEERKAT_KILLS=$${MEERKAT_KILLS:-120} $(BIN)/pytest -p no:cacheprovider \
	  --hypothesis-seed=$$seed --hypothesis-show-statistics -s tests/stateful
	MEERKAT_CORRUPTION_OFFSETS=$${MEERKAT_CORRUPTION_OFFSETS:-4000} $(BIN)/pytest -p no:cacheprovider -s tests/corruption
	MEERKAT_FLEET_KILLS=$${MEERKAT_FLEET_KILLS:-30} MEERKAT_FLEET_INPUTS=$${MEERKAT_FLEET_INPUTS:-30} \
	  $(BIN)/pytest -p no:cacheprovider -s tests/fleet/test_fleet_processes.py

fuzz-seed: install ## rerun the long fuzzing with a given SEED
	HYPOTHESIS_PROFILE=fuzz MEERKAT_KILLS=$${MEERKAT_KILLS:-120} $(BIN)/pytest -p no:cacheprovider \
	  --hypothesis-seed=$(SEED) -s tests/stateful

bench: install ## run the benchmarks (ratios against same-run baselines, goal verdicts)
	$(PY) bench/authority.py
	$(PY) bench/driver.py
	$(PY) bench/durable.py
	$(PY) bench/group_commit.py
	$(PY) bench/peers.py
	$(PY) bench/scale.py
	$(PY) bench/sessions.py
	$(PY) bench/postgres.py
	$(PY) bench/fleet.py

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis diagrams/*.svg docs/*.svg
