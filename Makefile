# Everything runs from .venv. `make setup` is idempotent: it only re-installs when pyproject.toml changes.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# CPU wheel for machines without a CUDA torch; an already importable torch (e.g. a CUDA build in the
# environment that created the venv) is kept, because the venv sees system site-packages.
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup demo test docs bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

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
