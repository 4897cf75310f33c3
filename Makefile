# jobpipe: `make run` serves the deployed stack locally, `make test` runs the whole suite,
# tier by tier (unit, contract, functional, lint, e2e), stopping at the first tier that fails.
PYTHON ?= python3
VENV := .venv
EMU := .venv-emulator
BIN := $(VENV)/bin
export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: run test unit contract functional faults e2e package lint bench clean browser stack-config

# The tiers run one after the other, cheapest first, even under `make -j`.
.NOTPARALLEL:

# The dashboard's browser tests drive Debian's Chromium through Playwright (pip), never a
# browser Playwright downloads. Installed only when missing; a failed install fails the target.
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

# The project itself is installed editable (no dependencies: requirements-dev.txt pins them)
# for the `jobpipe` CLI; the venv's own setuptools builds it, so nothing is fetched for that.
$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

$(EMU)/.installed: requirements-emulator.txt
	$(PYTHON) -m venv $(EMU)
	$(EMU)/bin/pip install --quiet --upgrade pip
	$(EMU)/bin/pip install --quiet -r requirements-emulator.txt
	touch $@

venv: $(VENV)/.installed $(EMU)/.installed

$(CHROMIUM):
	@echo "installing Debian's chromium for the dashboard's browser tests"
	@log=$$(mktemp); \
	{ $(SUDO) apt-get update -qq -o DPkg::Lock::Timeout=300 && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 \
	    --no-install-recommends chromium fonts-liberation; } >$$log 2>&1 \
	  || { cat $$log >&2; rm -f $$log; echo "apt-get could not install chromium; the browser tests need $@" >&2; exit 1; }; \
	rm -f $$log
	@test -x $@ || { echo "apt-get did not install $@" >&2; exit 1; }

browser: $(CHROMIUM)

# The deployment artefacts: build/sam.json (Chalice's SAM template merged with infra/) and build/deployment.zip.
package: $(VENV)/.installed
	$(BIN)/python -m scripts.package build

lint: package
	$(BIN)/cfn-lint build/sam.json

# Pure Python, no sockets, nothing but .venv; one worker per core: 1-2 minutes, most of it two
# Hypothesis models.
unit: $(VENV)/.installed
	$(BIN)/python -m pytest tests/unit -n auto

# Every port's behaviour against its in-memory adapter and its AWS adapter on moto.
contract: $(VENV)/.installed
	$(BIN)/python -m pytest tests/contract

# moto runs in each test's process, so the files are shared among one worker per core; a file's
# tests stay together and in order (tests/functional/test_iam.py reads what its first two record).
functional: $(VENV)/.installed
	$(BIN)/python -m pytest tests/functional -n auto --dist loadfile

# Every AWS request of a job's life failed in turn (tests/faults/test_fault_walk.py: five
# hundred lives on moto), then the process dying at each (tests/faults/test_crash_walk.py: three
# hundred more), then dying again while recovering from a death (test_recovery_crash_walk.py: a
# hundred more), each case its own, spread over one worker per core: about eight minutes.
faults: $(VENV)/.installed
	$(BIN)/python -m pytest tests/faults -n auto

# Two workers, each with its own emulator and stacks, a file's tests together on one: the fault
# mix waits four minutes on leases and reconciler passes while the other worker runs the rest.
# Three were slower on two cores (557 s against 503-523 s): more emulators sharing them. The
# tier's 15 slowest setups and tests are listed at its end: where its eight minutes go.
e2e: $(VENV)/.installed $(EMU)/.installed $(CHROMIUM) package
	$(BIN)/python -m pytest tests/e2e -n 2 --dist loadfile --durations=15

# Each tier is its own pytest run; make stops at the first that fails, so a broken unit test is
# reported before the emulator venv, chromium or the package are even built.
test: unit contract functional lint faults e2e

# Cost and speed on a freshly deployed local stack; not part of `make test`. BENCH_JOBS etc. in bench/__main__.py.
bench: $(VENV)/.installed $(EMU)/.installed
	$(BIN)/python -m bench

# The stack's parameters come from the environment (README: "Running locally"); a bad value
# stops `make run` before the build (GATEWAY_PORT too), with one line naming the variable and exit code 2.
stack-config: $(VENV)/.installed
	@$(BIN)/python -m scripts.stack_config

run: $(VENV)/.installed $(EMU)/.installed stack-config package
	$(BIN)/python -m scripts.run_local

clean:
	rm -rf build $(VENV) $(EMU)
