# The two commands README.md opens with: `make demo` (the main job) and `make test` (the test suite).
# Each creates .venv if missing, installs torch==2.13.0 first (an unpinned torch pulls a multi-GB CUDA
# build), then the project with its extras, then the offline assets.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.gradiend-installed

.PHONY: demo test lint bench clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[plot,gguf,demo,dev,data,ray]'
	$(VENV)/bin/gradiend assets install
	# on request only (Gemma Terms of Use; Debian packages): the slow Gemma test needs the model under CI=true
	$(VENV)/bin/gradiend assets install gemma3-270m
	$(VENV)/bin/gradiend assets install fortunes-de fortunes-en \
		|| echo "warning: Debian fortunes not installed: offline:fortunes-de / offline:fortunes-en unavailable" >&2
	# headless browser for tests/test_report_browser.py (CI runs as root on Debian; elsewhere the test skips)
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium) \
		|| echo "warning: chromium not installed: the report browser test will skip (and fail under CI=true)" >&2
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/gradiend demo

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

# pytest exits 5 when it collected no test: that is a broken setup, not a pass.
test: lint
	$(PY) -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: the setup is broken" >&2; exit 1; fi; \
	exit $$rc

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean-venv:
	rm -rf $(VENV)
