# rtdetr-operator: one entry point for setup, the demo and the test tiers.
#
# Everything installs into .venv/ at the repo root from the hash-pinned lock in requirements/.
# uv's download cache (~/.cache/uv) and the control-plane binaries (~/.cache/rtdetr-operator)
# live outside the repo, keyed by version, so a second clone reuses them.

SHELL := /bin/bash
PYTHON ?= python3.11
UV_VERSION := 0.13.9
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements/dev.lock pyproject.toml | sha256sum | cut -c1-16)
# Lint tools (checkov) live in their own venv outside the repo, keyed by their lock's hash, so
# their pins never meet dev.lock's and a second clone (or CI run) reuses the install.
TOOLS_LOCK := requirements/tools.lock
TOOLS_VENV := $(HOME)/.cache/rtdetr-operator/tools-$(shell sha256sum $(TOOLS_LOCK) | cut -c1-16)
TOOLS_STAMP := $(TOOLS_VENV)/.installed
LINT_DIR := .lint-manifests

.DEFAULT_GOAL := help

include hack/cluster.mk

.PHONY: help venv tools checkov lock-tools demo demo-local test test-unit test-slow test-e2e test-triton test-gpu test-node lint crds lock lock-images images local-images bench clean

help:
	@echo "make demo   - local cluster with a real node: operator, training, evaluation, export, serving"
	@echo "make demo-local - the fine-tune alone, no cluster: synthetic data -> train -> evaluate -> AP50"
	@echo "make test   - every test tier: unit, slow, triton, e2e (gpu tests skip without a GPU)"
	@echo "make lint   - ruff, import-linter contracts, CRD drift check, checkov on every manifest"
	@echo "make cluster-up / cluster-down - local Kubernetes control plane (.cluster/kubeconfig)"
	@echo "make crds   - regenerate crds/, the chart's CRDs, GitOps health checks and API docs"
	@echo "make bench  - CPU benchmark suite against transformers' RT-DETR -> docs/benchmarks.md"
	@echo "make images - build the operator, trainer and triton-cpu images (needs Docker; docs/images.md)"
	@echo "make local-images - the same images without Docker (root, Debian tools): OCI layouts in ~/.cache"

$(STAMP): requirements/dev.lock pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is required"'
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip sync --quiet --python $(BIN)/python --require-hashes requirements/dev.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@

venv: $(STAMP)

# The folder's name carries the lock's hash, so existence is the whole check (a fresh clone's
# newer file times must not rebuild it).
$(TOOLS_STAMP): | $(STAMP)
	rm -rf $(TOOLS_VENV)
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(BIN)/uv pip sync --quiet --python $(TOOLS_VENV)/bin/python --require-hashes $(TOOLS_LOCK)
	touch $@

tools: $(TOOLS_STAMP)

# checkov over the rendered chart, deploy/ and every kind of object the operator creates; the
# only waivers are in .checkov.yaml, each with its reason (docs/security.md).
checkov: venv tools
	rm -rf $(LINT_DIR)
	$(BIN)/python hack/lint_manifests.py $(LINT_DIR)
	BC_SKIP_MAPPING=TRUE $(TOOLS_VENV)/bin/checkov --config-file .checkov.yaml -d $(LINT_DIR)

# The product on the local cluster's real node (docs/local-cluster.md); KEEP=1 leaves it up.
demo: venv cluster-deps
	$(BIN)/python hack/demo.py --output demo-output $(if $(KEEP),--keep,)

# The same fine-tune without a cluster, for machines where a node cannot run (no root).
demo-local: venv
	$(BIN)/python -m rtdetr_trainer.demo --output demo-output

# Each tier is its own pytest run so a slow tier never hides a fast failure. A tier that collects
# nothing fails (pytest's exit code 5): a marker typo must not turn a tier into a silent pass.
# The gpu tier runs first: on a machine without a CUDA device its tests skip, each with its reason.
PYTEST_TIER = $(BIN)/pytest -m "$(1)" tests

test: venv lint
	$(call PYTEST_TIER,gpu)
	$(call PYTEST_TIER,not e2e and not triton and not gpu and not node)
	$(call PYTEST_TIER,triton)
	$(MAKE) cluster-build
	$(BIN)/python hack/kueue.py build
	$(call PYTEST_TIER,e2e)
	bash hack/node/install-packages.sh
	$(call PYTEST_TIER,node)

test-unit: venv
	$(BIN)/pytest -m "not slow and not e2e and not triton and not gpu and not node" tests

test-slow: venv
	$(BIN)/pytest -m "slow" tests

test-e2e: venv cluster-build
	$(BIN)/python hack/kueue.py build
	$(BIN)/pytest -m "e2e" tests

test-triton: venv
	$(BIN)/pytest -m "triton" tests

test-gpu: venv
	$(BIN)/pytest -m "gpu" tests

# Builds (or takes from the cache) the Docker-free images and runs them in a private containerd.
test-node: venv cluster-build
	bash hack/node/install-packages.sh
	$(BIN)/pytest -m "node" tests

# The model benchmark suite (quick mode for CPU); BENCH_ARGS adds flags, e.g. --batches 1 or
# --baseline REF for a before/after. Peers (transformers) install into ~/.cache, never .venv.
BENCH_ARGS ?=
bench: venv
	$(BIN)/python -m bench --quick $(BENCH_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/python -m rtdetr_operator.codegen.crds --check
	$(BIN)/python -m rtdetr_operator.codegen.gitops --check
	$(BIN)/python -m rtdetr_operator.codegen.apidoc --check
	$(MAKE) --no-print-directory checkov

# Regenerate crds/ and the API reference in docs/ from the pydantic models (tests fail on drift).
crds: venv
	$(BIN)/python -m rtdetr_operator.codegen.crds
	$(BIN)/python -m rtdetr_operator.codegen.apidoc
	$(BIN)/python -m rtdetr_operator.codegen.gitops

# Regenerate the lock after editing dependencies in pyproject.toml.
lock: venv
	$(BIN)/uv pip compile --quiet --python-version 3.11 --python-platform x86_64-manylinux_2_35 \
		pyproject.toml --extra trainer --extra operator --extra serving --extra dev \
		--generate-hashes -o requirements/dev.lock

# Regenerate the lint tools' lock after editing requirements/tools.in.
lock-tools: venv
	$(BIN)/uv pip compile --quiet --python-version 3.11 --python-platform x86_64-manylinux_2_35 \
		requirements/tools.in --generate-hashes -o requirements/tools.lock

# Regenerate the image locks (docs/images.md) after editing dependencies.
lock-images: venv
	$(BIN)/uv pip compile --quiet --python-version 3.11 --python-platform x86_64-manylinux_2_35 \
		requirements/build.in --generate-hashes -o requirements/build.lock
	$(BIN)/uv pip compile --quiet --python-version 3.11 --python-platform x86_64-manylinux_2_35 \
		pyproject.toml --extra operator --constraint requirements/dev.lock --generate-hashes \
		-o requirements/operator.lock
	$(BIN)/uv pip compile --quiet --python-version 3.12 --python-platform x86_64-manylinux_2_39 \
		pyproject.toml --extra trainer --extra serving --constraint requirements/dev.lock \
		--generate-hashes $(foreach p,torch triton cuda-toolkit nvidia-cublas nvidia-cuda-cccl \
		nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft \
		nvidia-cufile nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-nccl-cu13 \
		nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx,--no-emit-package $(p)) \
		-o requirements/trainer.lock
	$(BIN)/uv pip compile --quiet --python-version 3.11 --python-platform x86_64-manylinux_2_35 \
		pyproject.toml --extra trainer --extra serving --constraint requirements/dev.lock \
		--generate-hashes -o requirements/trainer-cpu.lock
	$(BIN)/uv pip compile --quiet --python-version 3.11 --python-platform x86_64-manylinux_2_35 \
		pyproject.toml requirements/triton-cpu.in --extra serving \
		--constraint requirements/dev.lock --generate-hashes -o requirements/triton-cpu.lock

# Needs a Docker engine (none on the CI machines); see docs/images.md.
images:
	docker build -f Dockerfile.operator -t rtdetr-operator:0.1.0 .
	docker build -f Dockerfile.trainer -t rtdetr-trainer:0.1.0 .
	docker build -f Dockerfile.triton-cpu -t rtdetr-triton:0.1.0-cpu .

# The same images without Docker (operator, trainer-cpu, triton-cpu; IMAGES picks some): OCI
# image layouts in ~/.cache/rtdetr-operator/images, built as root from a Debian rootfs and the
# locks (docs/images.md, "Building without Docker"). uv comes from the venv.
IMAGES ?=
local-images: venv
	bash hack/node/install-packages.sh
	$(PYTHON) hack/images.py build $(IMAGES)

clean:
	rm -rf $(VENV) demo-output .pytest_cache .ruff_cache
