# The image factory. `make help` lists every target; the logic lives in factory/ (Python).
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= /usr/bin/python3
VENV ?= .venv
FACTORY := $(VENV)/bin/factory
IMAGES := $(notdir $(patsubst %/image.toml,%,$(wildcard images/*/image.toml)))
STAMP := $(VENV)/.installed
# The packages, beside factory/'s own imports, that the factory's children load at every start and
# would otherwise compile at every start: ansible-playbook (ansible, resolvelib), the gate (pytest,
# Testinfra), boto3 and the tests' moto servers (moto, flask, werkzeug ...). 3 s in `make setup`;
# each run of ansible-playbook saves about 0.2 s, a gate 0.2 s, a moto server 0.25 s.
COMPILED := ansible resolvelib jinja2 markupsafe yaml cryptography \
  _pytest pytest pluggy iniconfig packaging testinfra xdist execnet hypothesis pygments platformdirs \
  boto3 botocore s3transfer jmespath dateutil urllib3 requests charset_normalizer idna certifi \
  moto responses werkzeug flask flask_cors click itsdangerous blinker sortedcontainers distro

help: ## Show this help
	@awk 'BEGIN{FS=":.*##"} /^[a-zA-Z0-9_%-]+:.*##/{printf "  %-18s %s\n",$$1,$$2} /^##@/{print "\n" substr($$0,5)}' $(MAKEFILE_LIST)
	@echo; echo "  images: $(IMAGES)"

##@ Set-up
setup: host $(STAMP) keys/local ## Idempotent set-up: system packages, containers.conf, venv, signing key

host: ## Install packer, podman(-docker), runc, debootstrap; write containers.conf
	@bash scripts/setup-host.sh

$(STAMP): pyproject.toml | host
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-compile -e '.[dev]'
	@# --no-compile skips the 256 MB of collections the ansible package bundles. What the factory and
	@# its children import is compiled here instead, once, even where PYTHONDONTWRITEBYTECODE is set.
	@env -u PYTHONDONTWRITEBYTECODE $(VENV)/bin/python -c 'import factory.cli.main, factory.bake.gatehost'
	@cd "$$($(VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" && \
	  env -u PYTHONDONTWRITEBYTECODE $(abspath $(VENV))/bin/python -m compileall -q -j 0 $(COMPILED) >/dev/null
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
# Workers for the integration tests of `make test`: each module runs on one worker (--dist
# loadgroup), the longest first, and base and nginx are baked once for all of them
# (tests/integration/conftest.py). Measured in a fresh clone on this 2-core machine: 3 workers
# 10:38 to 12:09 in all (README; serial, before the registry, deps and CVE e2e modules: 23 min).
# TEST_JOBS=1 runs them serially. 4 workers were no faster (13 min 56 s, with both cores 90 % busy,
# before bakes used runc exec): the suite is CPU-bound here, so only less work makes it shorter.
TEST_JOBS ?= 3

# The tests' temporary folders (pytest --basetemp, one a session, emptied when it starts): the unit
# tests write some 160,000 small files with fsync, the integration tests their scratch clones. They
# go to tmpfs where the machine has one (/dev/shm, writable and not noexec). On this machine's ext4,
# mounted with discard, writing them and deleting the last runs' cost the unit tests 66 CPU-s alone
# against 54, and 93 inside `make test` against 50 to 60 (the suite: 12:20 against 10:38 to 12:09).
# One folder a checkout, this user's own (/dev/shm is everyone's: tmp_own refuses one that someone
# else made first); removed after a run that passed, kept after one that failed.
SHM_OK := $(shell test -d /dev/shm -a -w /dev/shm && ! grep -qs '^[^ ]* /dev/shm [^ ]* [^ ]*noexec' /proc/mounts && echo y)
TEST_TMP ?= $(if $(SHM_OK),/dev/shm,$(CURDIR)/build)/factory-tests-$(shell printf %s '$(CURDIR)' | sha256sum | cut -c1-12)
# pytest with its temporary folder $(1) under TEST_TMP (tmp_own makes TEST_TMP; pytest makes only the
# last part); tmp_done removes the folders $(1), and TEST_TMP once it is empty.
tmp_own = install -d -m 700 $(TEST_TMP) && test -O $(TEST_TMP) -a ! -L $(TEST_TMP) || \
  { echo "$(TEST_TMP) is not a folder of this user's own: remove it, or set TEST_TMP" >&2; exit 2; }
pytest_in = $(VENV)/bin/python -m pytest --basetemp=$(TEST_TMP)/$(1)
tmp_done = rm -rf $(addprefix $(TEST_TMP)/,$(1)) && rmdir --ignore-fail-on-non-empty $(TEST_TMP)

# Unit tests and linters in a process of their own (integration tests leave process-wide state
# behind: boto3's default session keeps the credentials it first saw), beside the integration
# tests; their report is printed after. One process, not pytest -n: beside the bakes both cores
# are busy anyway, and xdist's controller and second worker cost 25 CPU-s more (65 against 91).
test: setup ## Unit and linter tests beside integration tests (real packer/podman/ansible bakes) on TEST_JOBS workers
	@$(tmp_own)
	@mkdir -p build; $(call pytest_in,unit) -p no:cacheprovider tests/unit tests/test_linters.py \
	  > build/unit-tests.log 2>&1 & unit_pid=$$!; \
	$(call pytest_in,integration) -n $(TEST_JOBS) --dist loadgroup --durations=25 tests/integration; integration=$$?; \
	wait $$unit_pid; unit=$$?; echo "== unit and linter tests (build/unit-tests.log)"; cat build/unit-tests.log; \
	if (( unit || integration )); then echo "temporary files kept in $(TEST_TMP)"; exit 1; fi; $(call tmp_done,unit integration)

test-unit: setup ## Unit tests only (no subprocesses), on every core
	@$(tmp_own)
	$(call pytest_in,test-unit) -n auto tests/unit && $(call tmp_done,test-unit)

check: setup ## Lint and unit tests (no bakes; under a minute here): run before every push
	@$(tmp_own)
	$(call pytest_in,check) -n auto -q tests/unit tests/test_linters.py && $(call tmp_done,check)

lint: setup ## ruff, mypy --strict, ansible-lint, yamllint (the list lives in tests/test_linters.py)
	$(VENV)/bin/python -m pytest -q tests/test_linters.py

role-docs: setup ## Regenerate roles/*/README.md from meta/argument_specs.yml
	$(VENV)/bin/python -m factory.bake.roledoc

##@ Benchmarks (ratios measured in one run; see bench/README.md)
bench: setup ## Every benchmark side by side (real bakes, S3 catalog on moto, a loopback registry; ~35 min, the catalog section ~10-13): bench/results/latest.{json,md}
	$(VENV)/bin/python bench/run.py

bench-catalog: setup ## Issue 13's catalog figures alone: v3 at 100 to 100,000 versions, S3 bytes on moto, RSS (~10 min): bench/results/latest.{json,md}
	$(VENV)/bin/python bench/run.py --only catalog

bench-plan: setup ## factory plan with nothing to do at 50/200/1000 images; fails if a ratio target is broken
	$(VENV)/bin/python bench/plan_scale.py --json bench/results/plan_scale.json

bench-query: setup ## factory query over a generated 10,000-version catalog (cold, warm, --below)
	$(VENV)/bin/python bench/query_scale.py --json bench/results/query_scale.json

##@ Housekeeping
clean: ## Remove build output and the tests' temporary files (keeps the catalog, the venv and the bootstrap cache)
	rm -rf build $(TEST_TMP)

.PHONY: help setup host bake bake-all nightly rebuild plan bench bench-catalog bench-plan bench-query test test-unit check lint role-docs clean
