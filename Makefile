# Two commands on a fresh machine (Python 3.11 and the package registries are all it needs):
#   make run   - install everything into .venv and run the default pipeline
#   make test  - install everything into .venv and run the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install run test bench lock clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

run: install
	$(BIN)/s2s run

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python -m bench.run_all

lock: install
	$(BIN)/python -m pip freeze --exclude-editable | sed 's/+cpu//' > constraints.txt.new && mv constraints.txt.new constraints.txt

clean:
	rm -rf data/processed reports artifacts mlartifacts mlflow.db runs
