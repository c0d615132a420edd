# Two commands do everything on a fresh machine:
#   make serve   set up .venv (if missing) and run `loom serve` on the embedded default model
#   make test    set up .venv with the test tools and contrib plugins, run `make check` (format,
#                types), then the whole suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
CONTRIB := $(wildcard contrib/*/pyproject.toml)

.PHONY: serve check test fuzz bench gpu-check soak clean

$(VENV)/.base: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -U pip setuptools wheel
	$(PIP) install -q -e .
	touch $@

$(VENV)/.dev: $(VENV)/.base $(CONTRIB)
	$(PIP) install -q -e '.[dev,torch]'
	# tmux drives `loom tui` in a real terminal in tests/tui/test_tmux.py, and Debian's chromium
	# is the browser tests/ui drive through Playwright (no browser download); skipped without them.
	for tool in tmux chromium; do command -v $$tool >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		(apt-get install -y -q $$tool >/dev/null 2>&1 || (apt-get update -q && apt-get install -y -q $$tool)) >/dev/null; } || \
		echo "make: $$tool is not installed; the tests that need it will be skipped"; done
	for p in $(dir $(CONTRIB)); do $(PIP) install -q -e "$$p" || exit 1; done
	touch $@

serve: $(VENV)/.base
	$(VENV)/bin/loom serve

# The checks that need no daemon: formatting, lint (rules in [tool.ruff.lint]), then types. mypy cannot map the package-dir layout
# (`sdk/` is `loom.sdk`), so the packages are linked under build/typecheck/loom/, where
# [tool.mypy] in pyproject.toml looks for them.
TYPECHECK := build/typecheck/loom
check: $(VENV)/.dev
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	mkdir -p $(TYPECHECK)
	for p in sdk daemon plugins tui; do ln -sfn ../../../$$p $(TYPECHECK)/$$p; done
	$(VENV)/bin/mypy

test: check
	$(PY) -m pytest -q -rs -p no:cacheprovider

# Schemathesis against a live daemon with a bigger budget than `make test` gives it.
fuzz: $(VENV)/.dev
	LOOM_FUZZ_EXAMPLES=$${LOOM_FUZZ_EXAMPLES:-100} $(PY) -m pytest -q -p no:cacheprovider tests/integration/test_openapi_fuzz.py

# Ten minutes of mixed work looking for leaks (MINUTES=2 make soak for a shorter one).
soak: $(VENV)/.dev
	cd bench && $(abspath $(PY)) soak.py --minutes $${MINUTES:-10}

$(VENV)/.bench: $(VENV)/.dev
	# The peers the benchmarks measure Loom against (llama-cpp-python's server).
	$(PIP) install -q -e '.[bench]'
	touch $@

# wrk is the gateway benchmark's load generator (a C one: a Python client would be the limit).
# cmake and a C++ compiler build llama.cpp's own tools for bench_tokens.py.
bench: $(VENV)/.bench
	for tool in wrk cmake g++; do command -v $$tool >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		(apt-get install -y -q $$tool >/dev/null 2>&1 || (apt-get update -q && apt-get install -y -q $$tool)) >/dev/null; } || \
		echo "make: $$tool is not installed; the benchmarks that need it will stop"; done
	# llama.cpp's own llama-server and llama-batched-bench, built once from the llama.cpp that
	# llama-cpp-python vendors (cached under ~/.cache/loom-bench): bench_tokens.py's peer and ceiling.
	$(PY) bench/build_llama_cpp.py
	for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# On a CUDA machine: images and offloaded llama.cpp through Loom vs bare, the ledger vs NVML,
# memory returned after unload (bench/gpu_check.py). Exits 2 where there is no GPU.
gpu-check: $(VENV)/.dev
	$(PY) bench/gpu_check.py

clean:
	rm -rf $(VENV) build *.egg-info
