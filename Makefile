# Two commands on a fresh machine: `make train` (the demo) and `make test`.
# Each creates .venv/ if needed and installs torch (CPU build by default) and the project.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install train test test-avx2 test-slow test-cluster test-browser test-all bench gpu-check clean

install: $(STAMP)

# uv, installed into the venv by pip (so make needs only Python), installs in a third of pip's time;
# it reads no pip.conf, so pip's find-links (where a local torch lies) are passed on
UV = $(PY) -m uv pip install -q --compile-bytecode --python $(PY) $(foreach d,$(PIP_FIND_LINKS),--find-links $(d))

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q uv
	$(UV) "$(TORCH)"
	$(UV) -e ".[dev]"
	# an older install's plain OpenCV shares the cv2 package with the contrib build that replaced it
	if $(PY) -m pip show -q opencv-python-headless 2>/dev/null; then $(PY) -m pip uninstall -q -y opencv-python-headless \
		&& $(PY) -m pip install -q --force-reinstall --no-deps opencv-contrib-python-headless; fi
	touch $(STAMP)

train: install  ## the default demo; pass Hydra overrides with ARGS="experiment=smoke ..."
	$(PY) train.py $(ARGS)

# The default suite in parallel: a worker process per core (at most 4), each test file whole in one
# worker (its module fixtures built once), one thread each (Torch's threads would only compete).
# On 2 cores: 4 min 23 s against 7 min 36 s in one process.
TEST_WORKERS ?= $(shell $(PYTHON) -c "import os; print(min(4, len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1))")
PARALLEL = OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test: install  ## the default suite (slow tests excluded), one worker process per core
	$(PARALLEL) $(ARGS)

# inductor's on-disk cache is not keyed by the ISA cap: a kernel cached in this mode crashes a native run
test-avx2: install  ## the default suite with the CPU capped at AVX2 (no native bf16), as on CPUs without AVX-512
	ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 TORCHINDUCTOR_CACHE_DIR=$${TMPDIR:-/tmp}/torchinductor_avx2 $(PARALLEL) $(ARGS)

test-slow: install  ## only the slow tests
	$(PY) -m pytest -q -m slow $(ARGS)

test-cluster: install  ## the tests against a real one-node SLURM cluster, started and stopped here (root: installs SLURM)
	$(PY) -m pytest -q -m cluster $(ARGS)

test-browser: install  ## the tests in a real browser (as root: installs Debian's chromium and chromium-driver)
	$(PY) -m pytest -q -m browser $(ARGS)

test-all: install
	$(PY) -m pytest -q -m "slow or not slow" $(ARGS)

clean:
	rm -rf logs multirun outputs .pytest_cache

bench: install  ## ratios against the references, JSON in bench.json (ARGS="--quick": under 3 min; ARGS="--device cuda" on a GPU)
	$(PY) -m benchmarks --out bench.json $(ARGS)

gpu-check: install  ## on a CUDA machine: smoke, demo, DDP (2+ GPUs), quick benchmarks, Jacobian GPU vs CPU (~5 min), JSON in gpu_check.json; elsewhere one line
	$(PY) -m benchmarks.gpu_check --out gpu_check.json $(ARGS)
