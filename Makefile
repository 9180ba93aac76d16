# The image factory. `make help` lists every target; the logic lives in factory/ (Python).
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= /usr/bin/python3
VENV ?= .venv
FACTORY := $(VENV)/bin/factory
IMAGES := $(notdir $(patsubst %/image.toml,%,$(wildcard images/*/image.toml)))
STAMP := $(VENV)/.installed

help: ## Show this help
	@awk 'BEGIN{FS=":.*##"} /^[a-zA-Z0-9_%-]+:.*##/{printf "  %-18s %s\n",$$1,$$2} /^##@/{print "\n" substr($$0,5)}' $(MAKEFILE_LIST)
	@echo; echo "  images: $(IMAGES)"

##@ Set-up
setup: host $(STAMP) keys/local ## Idempotent set-up: system packages, containers.conf, venv, signing key

host: ## Install packer, podman(-docker), runc, debootstrap; write containers.conf
	@bash scripts/setup-host.sh

$(STAMP): pyproject.toml | host
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

keys/local: | $(STAMP)
	$(FACTORY) keygen --local --if-missing

##@ Build
bake: setup ## Bake the default image (base) end to end and publish it
	$(FACTORY) bake base

bake-%: setup ## Bake one image: render, packer, ansible, testinfra, tag, publish
	$(FACTORY) bake $*

validate-%: setup ## Render one image and run packer validate on it
	$(FACTORY) render $*

nightly: setup ## Rebuild what has pending security updates (scan, plan, bake, gate, policy) and print a table
	$(FACTORY) rebuild --security-only -j 2

rebuild: setup ## Rebuild whatever the plan says (changed inputs, newer parents, security updates)
	$(FACTORY) rebuild -j 2

plan: setup ## Show what a rebuild would do, with reasons (runs nothing)
	$(FACTORY) plan

bake-all: setup ## Bake every image, parents first
	@set -e; for image in $$($(FACTORY) list --names); do $(FACTORY) bake $$image; done

##@ Quality
test: setup ## Unit, integration (real packer/podman/ansible bakes) and linter tests
	$(VENV)/bin/python -m pytest

test-unit: setup ## Unit tests only (no subprocesses)
	$(VENV)/bin/python -m pytest tests/unit

lint: setup ## ruff, mypy --strict, ansible-lint, yamllint
	$(VENV)/bin/ruff check factory tests
	$(VENV)/bin/ruff format --check factory tests
	$(VENV)/bin/mypy
	$(VENV)/bin/yamllint -s roles inventory images .github .yamllint
	$(VENV)/bin/ansible-lint roles

##@ Housekeeping
clean: ## Remove build output (keeps the catalog, the venv and the bootstrap cache)
	rm -rf build

.PHONY: help setup host bake bake-all nightly rebuild plan test test-unit lint clean
