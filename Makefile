# Developer and CI entry points. `make run` serves a demo; `make test` runs every check.
# Everything runs from the project's own virtualenv, so a fresh clone needs only python3.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
# Touched after a successful install: reruns skip pip unless a requirements file changed.
STAMP  := $(VENV)/.installed

.PHONY: venv proto stubs lint test run mutation

venv: $(STAMP)

$(STAMP): requirements.txt $(wildcard requirements/*.txt)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

# Rebuilds generated/ (stubs, the descriptor set insights.binpb) and docs/api.md from protos/
# (a contract test fails when any is stale).
proto: venv
	$(PY) tools/gen_protos.py

# Stubs for other languages (README "Stubs for other languages"): installs the plugins buf.gen.yaml
# runs (Debian and npm packages, apt-get as root) and writes gen/go, gen/ts, gen/java (git-ignored).
# go.mod names the Go module go_package points into (docs/decisions.md).
stubs: venv
	bash tools/stubs/install.sh
	$(BIN)/buf generate
	printf 'module example.com/insights/gen/go\n\ngo 1.19\n' > gen/go/go.mod

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(BIN)/buf lint
	$(BIN)/buf format --exit-code -d

# The whole suite (unit, integration, contract; PostgreSQL runs start their own server),
# then the linters CI must not let through (lint-imports: the layers of .importlinter). Property tests draw new examples every run (a failure
# prints the seed that replays it); HYPOTHESIS_PROFILE=dev repeats the same ones, =thorough digs.
HYPOTHESIS_PROFILE ?= ci
test: venv
	$(PY) -m pytest -q --hypothesis-profile=$(HYPOTHESIS_PROFILE)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(BIN)/buf lint

# Mutation testing, a tool and not a gate (never part of `make test`; docs/mutation.md): mutmut
# mutates the security-critical modules ([tool.mutmut] in pyproject.toml) in a copy under mutants/,
# runs the tests that reach each mutated function, and prints the survivors per module.
# A full run starts afresh; MUTANTS='server.domain.unlocks*' retests only those, on the previous run's stats.
MUTATION_JOBS ?= 2
mutation: venv
	$(if $(MUTANTS),,rm -rf mutants)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/mutmut run --max-children $(MUTATION_JOBS) $(foreach m,$(MUTANTS),'$(m)')
	$(PY) tools/mutation_report.py

# Migrates the metadata store, prints a demo key (bootstrapping a demo org on first run), serves.
run: venv
	$(PY) -m server migrate
	$(PY) -m server create-api-key --scopes '*' --label demo
	$(PY) -m server demo --events 1000000 --if-empty
	$(PY) -m server serve
