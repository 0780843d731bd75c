# make run  - set up .venv (first time), build the compiled core, run the main job
# make test - set up .venv (first time), build the compiled core, run the tests
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tallyio-installed

.PHONY: run test build bench clean

# The venv is rebuilt when the project's dependencies change.
PLUGINS := $(wildcard plugins/*/pyproject.toml)

$(STAMP): pyproject.toml setup.py $(PLUGINS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "Cython>=3.0" "numpy>=1.26" "setuptools>=77" wheel
	$(PY) -m pip install --quiet --no-build-isolation -e '.[test,bench,monitoring]'
	# the example strategy and source plugins, found through the `tallyio` entry points
	$(PY) -m pip install --quiet --no-build-isolation --no-deps $(foreach p,$(PLUGINS),-e $(dir $(p)))
	touch $@

# Cython rebuilds only what changed; editable installs do not rebuild on their own.
build: $(STAMP)
	$(PY) setup.py --quiet build_ext --inplace

# the bundled sample feed at its recorded rate (100k tx/s, open loop), through the example strategies
run: build
	$(VENV)/bin/tallyio run --speed 1

test: build
	$(PY) -m pytest -q

# the asv suite once (--quick) against this working tree, in this venv
bench: build
	cd asv_bench && ../$(VENV)/bin/asv machine --yes > /dev/null && \
		../$(VENV)/bin/asv run --python=same --quick --show-stderr

clean:
	rm -rf build $(VENV) tallyio/_core/*.c tallyio/_core/*.so
