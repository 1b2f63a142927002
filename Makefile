# Set-up is two commands on a fresh machine: `make train` and `make test`.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: install train test test-slow lint bench tensorboard clean

install: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Trains the default config; extra overrides go in ARGS, e.g. make train ARGS="model=conv_ae".
train: $(STAMP)
	$(VENV)/bin/vae-train $(ARGS)

# Two processes, each taking whole test files (their module fixtures are built once); TEST_ARGS adds
# pytest options, e.g. TEST_ARGS="-n 0" for one process.
TEST_ARGS ?=
test: $(STAMP)
	$(PYTHON) -m pytest -n 2 --dist loadfile --no-loadscope-reorder $(TEST_ARGS)

test-slow: $(STAMP)
	$(PYTHON) -m pytest -n 2 --dist loadfile --no-loadscope-reorder -m slow $(TEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench

# The benchmark (about 25 minutes on 2 cores): the reference against vae-train's loop, each speed lever, a
# batch-size x model sweep; rewrites docs/benchmarks.md and docs/benchmarks.json. Data: DATA=/path
# (a folder holding fashion/ and mnist/); extra options in BENCH_ARGS (e.g. --quick, --no-write).
DATA ?= ../shared/datasets
BENCH_ARGS ?=
bench: $(STAMP)
	$(PYTHON) bench/run.py --data $(DATA) $(BENCH_ARGS)

tensorboard: $(STAMP)
	$(VENV)/bin/tensorboard --logdir outputs

clean:
	rm -rf outputs/runs outputs/multirun .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
