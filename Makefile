# Two commands set everything up on a fresh machine:
#   make run    - the main job on its embedded default
#   make test   - the test suite
# Both create .venv on first use: torch is pinned to the 2.13.0 CPU build so the install
# stays small (an unpinned torch pulls several GB of CUDA packages).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
TORCH  := torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: run test bench reference reference-pages docs serve clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[torch,jax,dev]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/odebench run --task cnf --backend torch-adjoint

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m benchmarks.torch_vs_torchdiffeq
	$(PY) -m benchmarks.torch_vs_torchdiffeq --problem odenet --tols 1e-3
	$(PY) -m benchmarks.torch_vs_torchdiffeq --problem mlp100 --tols 1e-3,1e-5 --repeats 10
	$(PY) -m benchmarks.torch_vs_torchdiffeq --problem latent --tols 1e-3,1e-5 --repeats 10
	$(PY) -m benchmarks.jax_cost
	$(PY) -m benchmarks.jax_fixed_cost
	$(PY) -m benchmarks.peer_overhead
	$(PY) -m benchmarks.executors

reference: $(STAMP)
	bash results/reference.sh

# the reference runs as pages of the site (docs/reference-results/), without rerunning them
reference-pages: $(STAMP)
	$(PY) -m odebench.reference_pages

docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict --site-dir site

serve: $(STAMP)
	$(VENV)/bin/mkdocs serve

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks site
