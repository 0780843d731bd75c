# make run  - set up .venv (first time), build the compiled core, run the main job
# make test - set up .venv (first time), build the compiled core, run the tests
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tallyio-installed

# the oldest and the newest Python of requires-python (tests/test_packaging.py keeps them in step)
OLDEST_PYTHON := 3.10
NEWEST_PYTHON := 3.13

.PHONY: run test build bench bench-history bench-screenshot bench-compare dist test-packaging test-pythons clean

# The venv is rebuilt when the project's dependencies change.
PLUGINS := $(wildcard plugins/*/pyproject.toml)

# The project goes in editable without its extensions (TALLYIO_NO_EXTENSIONS): `build` compiles
# each of them, once, where an editable install would compile them all and `build` again.
$(STAMP): pyproject.toml setup.py $(PLUGINS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "Cython>=3.0" "numpy>=1.26" "setuptools>=77" wheel
	TALLYIO_NO_EXTENSIONS=1 $(PY) -m pip install --quiet --no-build-isolation -e '.[test,bench,monitoring]'
	# the example plugins (strategies and sources found through the `tallyio` entry points), with
	# their own dependencies; tallyio itself is the editable install above
	$(PY) -m pip install --quiet --no-build-isolation $(foreach p,$(PLUGINS),-e $(dir $(p)))
	touch $@

# Compiles what changed since the last build: an extension whose sources (.pyx, cimported .pxd,
# included headers) are newer, or whose flags differ (TALLYIO_DEBUG, TALLYIO_SANITIZE switched).
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

# asv history: each commit of BENCH_RANGE built and installed in its own environment (the example
# plugins too), the benchmarks matching BENCH_FILTER run, and the HTML published to asv_bench/html
# (`asv preview` in asv_bench serves it). Commits already measured are skipped.
BENCH_RANGE ?= HEAD~3..HEAD
BENCH_FILTER ?= ^(ultra_low_latency|ring|hist)\.
bench-history: $(STAMP)
	cd asv_bench && ../$(VENV)/bin/asv machine --yes > /dev/null && \
		../$(VENV)/bin/asv run --skip-existing-commits --show-stderr --bench '$(BENCH_FILTER)' \
			$(BENCH_RANGE) && \
		../$(VENV)/bin/asv publish

# docs/img/asv_history.png: the published graph of one benchmark (headless Chromium; see
# asv_bench/screenshot.py for the Debian packages it needs)
BENCH_SHOT ?= ultra_low_latency.time_single_enqueue_dequeue
bench-screenshot: $(STAMP)
	$(PY) asv_bench/screenshot.py $(BENCH_SHOT) docs/img/asv_history.png

# BENCH_BASE against HEAD, each built in its own environment; exits 1 when a benchmark of
# BENCH_FILTER got slower by more than BENCH_FACTOR (asv continuous)
BENCH_BASE ?= HEAD~1
BENCH_FACTOR ?= 1.2
bench-compare: $(STAMP)
	cd asv_bench && ../$(VENV)/bin/asv machine --yes > /dev/null && \
		../$(VENV)/bin/asv continuous --factor $(BENCH_FACTOR) --split --show-stderr \
			--bench '$(BENCH_FILTER)' $(BENCH_BASE) HEAD

# the sdist, and the wheel built from it, in dist/ (isolated builds: the build requirements bring Cython)
dist: $(STAMP)
	$(PY) -m build --outdir dist

# builds the sdist and the wheel, checks what they hold, installs the wheel in a fresh venv and
# runs it from outside the source tree (about 2 minutes)
test-packaging: build
	TALLYIO_TEST_PACKAGING=1 $(PY) -m pytest -q tests/test_packaging.py

# the whole suite on the oldest and the newest supported Python, each in its own venv
# (.venv-3.10, .venv-3.13); a Python is looked for in ~/.pyenv, then on PATH
pyenv_python = $(firstword $(wildcard $(HOME)/.pyenv/versions/$(1).*/bin/python$(1)))
find_python = $(or $(call pyenv_python,$(1)),$(shell command -v python$(1)),$(error python$(1) not found: pyenv install $(1), or put it on PATH))

test-pythons:
	$(MAKE) test VENV=.venv-$(OLDEST_PYTHON) PYTHON=$(call find_python,$(OLDEST_PYTHON))
	$(MAKE) test VENV=.venv-$(NEWEST_PYTHON) PYTHON=$(call find_python,$(NEWEST_PYTHON))

clean:
	rm -rf build dist $(VENV) .venv-3.* tallyio/_core/*.c tallyio/_core/*.so
