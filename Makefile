# `make test` and `make demo` work on a fresh clone: both create .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: test demo lint typecheck bench protos clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

lint: $(STAMP)
	$(BIN)/ruff check cli common embedder evaluation index server scripts tests
	$(BIN)/mypy cli common embedder evaluation index server

bench: $(STAMP)
	$(BIN)/python scripts/bench.py

# Regenerate the committed gRPC code after editing protos/visearch/v1/*.proto.
protos: $(STAMP)
	$(BIN)/python scripts/gen_protos.py

clean:
	rm -rf $(VENV) demo .pytest_cache
