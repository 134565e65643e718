# Everything runs from .venv. `make setup` is idempotent: it only re-installs when pyproject.toml or a lock changes.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# Locked installs (docs/install.md): every package at the version CI tested, hash-checked. torch is the user's
# choice and in neither lock: an already importable torch (e.g. a CUDA build in the environment that created
# the venv, which sees system site-packages) is kept; otherwise the CPU wheel below is installed, with the
# packages only torch needs from TORCH_LOCK, so a user's own torch keeps the helpers it came with.
LOCK       := requirements.lock
TORCH_LOCK := requirements-torch.lock
TORCH_SPEC ?= torch==2.13.0
PIP_TOOLS  := pip-tools==7.6.2
LOCK_TOOLS := $(VENV)/lock-tools

.PHONY: setup lock demo test docs bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(LOCK) $(TORCH_LOCK)
	test -x $(PY) || $(PYTHON) -m venv --system-site-packages $(VENV)
	@grep -q "with Python $$($(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])')$$" $(LOCK) || \
		{ echo "error: $(LOCK) was made for another Python ($$(sed -n 's/.*with Python //p' $(LOCK))); see docs/install.md"; exit 2; }
	$(PY) -c "import torch" 2>/dev/null || { $(PY) -m pip install -q --no-deps --require-hashes -r $(TORCH_LOCK) \
		&& $(PY) -m pip install -q "$(TORCH_SPEC)"; }
	$(PY) -m pip install -q --no-deps --require-hashes -r $(LOCK)
	$(PY) -m pip install -q --no-deps -e .
	touch $@

# Re-resolve both locks after a change of pyproject.toml's dependencies (tests/test_lock.py fails until then).
# Pins that still satisfy pyproject.toml are kept; `make lock UPGRADE=1` moves everything to the newest releases,
# `make lock UPGRADE=numpy` only that package (and what it needs).
# The main lock is compiled from pyproject's dependencies and dev tools less torch (hence "via -r -" on the
# direct ones); the torch lock from TORCH_SPEC under the main lock's pins, so the two agree where they overlap.
lock:
	test -x $(LOCK_TOOLS)/bin/pip-compile || { $(PYTHON) -m venv $(LOCK_TOOLS) && $(LOCK_TOOLS)/bin/pip install -q "$(PIP_TOOLS)"; }
	$(PYTHON) -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
		print(*(r for r in p["dependencies"] + p["optional-dependencies"]["dev"] if not r.startswith("torch")), sep="\n")' | \
		CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_TOOLS)/bin/pip-compile $(LOCK_FLAGS) --allow-unsafe -o $(LOCK) -
	echo "$(TORCH_SPEC)" | CUSTOM_COMPILE_COMMAND="make lock" \
		$(LOCK_TOOLS)/bin/pip-compile $(LOCK_FLAGS) --unsafe-package torch -c $(LOCK) -o $(TORCH_LOCK) -
LOCK_FLAGS = -q --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links \
	$(if $(filter 1,$(UPGRADE)),--upgrade,$(if $(UPGRADE),--upgrade-package $(UPGRADE)))

demo: setup
	$(VENV)/bin/fex demo --out out/demo

test: setup
	$(PY) -m pytest

# Re-render the column tables in docs/ from the schemas (fexdata.schema); tests fail while they differ.
docs: setup
	$(PY) -c "import sys; from fexdata.schema import write_docs; sys.exit(write_docs())"

bench: setup
	$(PY) benchmarks/ingest.py
	$(PY) benchmarks/manifest.py
	$(PY) benchmarks/loader.py
	$(PY) benchmarks/train.py

clean:
	rm -rf $(VENV) out .pytest_cache
