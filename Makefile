# Every target sets itself up: a .venv with candiag and what the target needs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: all demo test lint bench test-socketcan soak fuzz realworld clean

all: test

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,lint,mf4]'
	touch $(STAMP)

## demo: the daemon against the built-in simulated charger (Ctrl-C to stop)
demo: $(STAMP)
	$(VENV)/bin/candiag demo $(DEMO_ARGS)

## realworld: public inputs nobody here wrote (opendbc, cantools' and python-can's test files)
## for the slow real-world checks; downloaded from PyPI into .realworld/ (skipped when offline)
REALWORLD := .realworld
realworld: $(STAMP)
	bash tests/fetch_realworld.sh $(REALWORLD) $(PY)

## test: unit and end-to-end tests (fast ones first)
test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

## lint: ruff and mypy (strict)
lint: $(STAMP)
	$(VENV)/bin/ruff check candiag tests bench hil soak fuzz
	$(VENV)/bin/ruff format --check candiag tests bench hil soak fuzz
	$(VENV)/bin/mypy

## test-socketcan: tests/socketcan in a microVM with Debian's kernel (vcan, can-utils; installs qemu/virtme-ng if missing)
test-socketcan: $(STAMP)
	bash hil/vm/run.sh $(PYTEST_ARGS)

## bench: throughput, ratio and memory benchmarks (prints figures)
bench: $(STAMP)
	$(PY) -m bench $(BENCH_ARGS)

## soak: the daemon on a ~92 % loaded 500 kbit/s simulated bus with faults (SOAK_MINUTES, default 30),
## then the same bus filled with random 29-bit ids (SOAK_RANDOM_IDS_MINUTES, default SOAK_MINUTES up to 10)
soak: $(STAMP)
	$(PY) -m soak --minutes $(or $(SOAK_MINUTES),30) $(SOAK_ARGS)

## fuzz: hypothesis + atheris on every input path (FUZZ_MINUTES, default 5); crashes in fuzz/crashes/
fuzz: $(STAMP)
	$(PY) -c 'import atheris' 2>/dev/null || $(PY) -m pip install --quiet 'atheris>=2.3' \
		|| echo "atheris did not install: hypothesis only"
	$(PY) -m fuzz --minutes $(or $(FUZZ_MINUTES),5) $(FUZZ_ARGS)

clean:
	rm -rf $(VENV) $(REALWORLD) .bench .pytest_cache .mypy_cache .ruff_cache .hypothesis
