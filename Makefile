# jobpipe: `make run` serves the deployed stack locally, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
EMU := .venv-emulator
BIN := $(VENV)/bin
export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: run test unit functional e2e package lint bench clean

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

# The deployment artefacts: build/sam.json (Chalice's SAM template merged with infra/) and build/deployment.zip.
package: $(VENV)/.installed
	$(BIN)/python -m scripts.package build

lint: package
	$(BIN)/cfn-lint build/sam.json

unit: $(VENV)/.installed
	$(BIN)/python -m pytest tests/unit

functional: $(VENV)/.installed
	$(BIN)/python -m pytest tests/functional

e2e: $(VENV)/.installed $(EMU)/.installed package
	$(BIN)/python -m pytest tests/e2e

test: $(VENV)/.installed $(EMU)/.installed lint
	$(BIN)/python -m pytest tests

run: $(VENV)/.installed $(EMU)/.installed package
	$(BIN)/python -m scripts.run_local

clean:
	rm -rf build $(VENV) $(EMU)
