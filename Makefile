# bigsparse: `make book` (install, execute the chapters, build the HTML) and `make test`.
# Everything installs into .venv/ from requirements.lock; nothing is needed beforehand
# but python3.11 with venv.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9
SCALE ?= toy
# The released sweep data: an explicit BIGSPARSE_PAPER_DATA wins, else ../shared/paper-data
# beside the checkout when it exists (the loaders also look there on their own).
export BIGSPARSE_PAPER_DATA ?= $(wildcard $(abspath ..)/shared/paper-data)
export PYTHONHASHSEED := 0
export MPLBACKEND := Agg

.PHONY: all venv test test-fast book notebooks bench bench-book lock clean
all: test

$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found; set PYTHON=..." >&2; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install -q --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The quick loop while editing: skip what is marked slow (book builds, long fits).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

book: $(STAMP)
	$(BIN)/bigsparse book --scale $(SCALE)

# The notebooks the Colab and Binder buttons open (notebooks/chapters/*.ipynb): commit them on the
# published branch. Needs the repository's url: repository.url in _config.yml or BIGSPARSE_REPO_URL.
notebooks: $(STAMP)
	$(BIN)/bigsparse notebooks $(if $(BIGSPARSE_REPO_URL),--repo-url $(BIGSPARSE_REPO_URL))

bench: $(STAMP)
	$(BIN)/python bench/run_all.py --out BENCHMARKS.md

# `make book` timed from a fresh clone of HEAD, twice (about half an hour at toy).
bench-book: $(STAMP)
	$(BIN)/python bench/run_all.py --only book --out BENCHMARKS.md

# Re-resolve the pins (needs the network); environment.yml is regenerated from the lock.
lock: $(STAMP)
	$(BIN)/uv pip compile --python-version 3.11 requirements.in -o requirements.lock --no-header
	$(BIN)/python tools/lock_to_env.py requirements.lock > environment.yml

clean:
	rm -rf _build _executed .pytest_cache
