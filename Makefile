# Two commands for a newcomer: `make reproduce` (default profile, builds the book) and `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
PROFILE ?= default
DATASET ?= ml-100k
NOTEBOOKS ?=

.PHONY: install reproduce book test ci-notebooks clean-runs

$(BIN)/.installed: requirements.txt requirements-assets.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -r requirements-assets.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

install: $(BIN)/.installed

# Re-execute the notebooks on the default profile into book/<profile>/<dataset>/, then build the book.
reproduce: install
	$(BIN)/python -m prunerec_utils.pipeline.runner --profile $(PROFILE) --dataset $(DATASET) $(if $(NOTEBOOKS),--notebooks $(NOTEBOOKS))
	$(MAKE) book

book: install
	$(BIN)/jupyter-book build . --path-output book -W --keep-going

# Regenerate the committed ci-profile executions that nbval compares against.
ci-notebooks: install
	PRUNEREC_RUNS=$$(mktemp -d) $(BIN)/python -m prunerec_utils.pipeline.runner --profile ci --out tests/notebooks

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider tests --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

clean-runs:
	rm -rf runs
