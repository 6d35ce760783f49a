# Three ways to run: `make demo` (ci profile, minutes, its own book), `make reproduce` (default profile, hours on
# 2 CPU cores, resumable; `PROFILE=paper` on a GPU) and `make test` (what CI runs).
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
PROFILE ?= default
DATASET ?= ml-100k
NOTEBOOKS ?=

.PHONY: install demo reproduce book test ci-notebooks clean-runs

$(BIN)/.installed: requirements.txt requirements-assets.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -r requirements-assets.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

install: $(BIN)/.installed

# A quick look: the whole series on the tiny ci model in minutes, into its own run folder (runs/demo) and its own
# book (book/demo/_build/html); the default book is left alone.
demo: install
	PRUNEREC_RUNS=runs/demo $(BIN)/python -m prunerec_utils.pipeline.runner --profile ci --dataset $(DATASET) --out book/demo/$(DATASET)
	$(BIN)/jupyter-book build . --toc book/demo_toc.yml --path-output book/demo -W --keep-going

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
