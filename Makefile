# Two commands on a fresh machine (Python 3.11 and the package registries are all it needs):
#   make run   - install everything into .venv and run the default pipeline
#   make test  - install everything into .venv and run the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install system-deps run dvc-lock test test-slow test-all test-fast bench lock vendor-vega docs docs-serve dist image-inputs images image-cuda-check stack-up stack-down stack-check stack-faults stack-test clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

run: install
	$(BIN)/s2s run

# dvc.lock as a fresh clone's `make run` writes it, to commit with the code it records (a test
# fails while it is older than them): the run goes in a copy of the working tree with an empty
# registry, so version 1 as in a fresh clone, and its results hold no run's own ids or times
dvc-lock: install
	@tmp=$$(mktemp -d) && \
	git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} sh -c 'test ! -f "{}" || cp --parents "{}" '"$$tmp" && \
	(cd $$tmp && git init -q && $(CURDIR)/$(BIN)/s2s run > $$tmp/run.log 2>&1 || { tail -20 $$tmp/run.log; exit 1; }) && \
	cp $$tmp/dvc.lock dvc.lock && cp $$tmp/reports/metrics.json $$tmp/reports/degenerate.json reports/ && \
	cp $$tmp/reports/plots/* reports/plots/ && rm -rf $$tmp && git status --short -- dvc.lock reports

# Debian packages some tests drive for real: headless Chromium (the MLflow UI check) and the
# PostgreSQL server (the tracking server's backend, as in docker/compose.yaml).
# Installed when missing and we may (root); otherwise those tests say what to install.
SYSTEM_PACKAGES := chromium postgresql
system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing:$$missing"; apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "note: install$$missing (Debian/Ubuntu: sudo apt-get install$$missing) for the browser and tracking-server tests"; fi; \
	fi

# lint and format check first (seconds), then every test group (unit, integration, system) but
# the long fault, load and stack runs (marked slow: `make test-slow`, `make test-all`)
# (the project's code is byte-compiled first: with PYTHONDONTWRITEBYTECODE set, as on these
# machines, each of the suite's few hundred `s2s` and stage processes would compile it again)
test: install system-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m compileall -q tasks flows
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup --durations=30 -m "not slow"

test-slow: install system-deps
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup --durations=30 -m slow

test-all: install system-deps
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup --durations=30

# the fast group alone (well under two minutes): `make test-fast`
test-fast: install
	$(BIN)/python -m pytest -q -m unit

# the documentation site (mkdocs.yml, docs/), offline and strict: a broken link, a page left out of the
# nav or an unknown reference fails it; the reference pages are generated from the code (docs/hooks.py)
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site
docs-serve: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

# the wheel: `pip install dist/s2s_pipeline-*.whl` anywhere gives the `s2s` command, and `s2s init DIR`
# a project (the project files travel as data files of the wheel)
dist: install
	rm -rf build dist
	$(BIN)/python -m pip wheel --quiet --no-deps --wheel-dir dist .
	@ls -l dist/*.whl

bench: install
	$(BIN)/python -m bench.run_all

# .dvc/plots_template.html, the offline page of `dvc plots show` (vega inlined), from npm at pinned versions
vendor-vega:
	bench/vendor_vega.sh

# the project's images (docker/): on the official python base when a registry answers, else on
# s2s-base:bookworm, built here from Debian packages (docker/base/build-base.sh, root and
# debootstrap); a local CPU torch wheel (TORCH_WHEEL) is copied into the build when present
BASE_IMAGE ?= $(shell docker pull -q python:3.11-slim >/dev/null 2>&1 && echo python:3.11-slim || echo s2s-base:bookworm)
TORCH_VERSION := $(shell sed -n "s/^torch==//p" $(dir $(lastword $(MAKEFILE_LIST)))constraints.txt)
TORCH_WHEEL ?= $(wildcard /opt/wheels/torch-$(TORCH_VERSION)+cpu-cp311-*.whl)
image-inputs:  # the base when it has to be built here, the local torch wheel, a proxy's CA bundle
	@if [ "$(BASE_IMAGE)" = s2s-base:bookworm ] && ! docker image inspect s2s-base:bookworm >/dev/null 2>&1; then \
	  docker/base/build-base.sh s2s-base:bookworm; fi
	@if [ -n "$(TORCH_WHEEL)" ]; then cp -n $(TORCH_WHEEL) docker/wheels/; fi
	@if [ -n "$$PIP_CERT" ] && [ -f "$$PIP_CERT" ]; then cp "$$PIP_CERT" docker/certs/ca.crt; fi
images: image-inputs
	docker build -q --build-arg BASE=$(BASE_IMAGE) -f docker/Dockerfile.cpu -t s2s-pipeline:cpu .
	docker build -q --build-arg BASE=$(BASE_IMAGE) -f docker/mlflow/Dockerfile -t s2s-mlflow:local .
	@docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep -E '^(s2s-base|s2s-pipeline|s2s-mlflow)'
# docker/Dockerfile.cuda as far as it builds without CUDA: the same file on the base above with the
# CPU torch wheel (TORCH, TORCH_INDEX), then the image's own checks (user, imports, the CLI) offline
image-cuda-check: image-inputs
	docker build -q --build-arg BASE=$(BASE_IMAGE) --build-arg TORCH=torch==$(TORCH_VERSION)+cpu \
	  --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu -f docker/Dockerfile.cuda -t s2s-pipeline:cuda-check .
	docker run --rm --network none --entrypoint python s2s-pipeline:cuda-check -c \
	  "import os, torch, bitsandbytes, peft, tasks, flows; print('uid', os.getuid(), 'torch', torch.__version__, 'bitsandbytes', bitsandbytes.__version__)"
	out=$$(docker run --rm --network none s2s-pipeline:cuda-check --help) && echo "$$out" | head -3
	@docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep -E '^s2s-pipeline:cuda-check'

# the compose stack on the images above (docker/compose.local.yaml: PostgreSQL from Debian, SeaweedFS
# S3); secrets from docker/.env (copy docker/.env.example, set every value). Ports on 127.0.0.1 only.
# The docker-pool profile adds the Docker work pool's worker (it needs the Docker socket's group).
export DOCKER_GID ?= $(shell stat -c %g /var/run/docker.sock 2>/dev/null || echo 999)
STACK = docker compose -f docker/compose.yaml -f docker/compose.local.yaml --env-file $(or $(STACK_ENV),docker/.env) --profile docker-pool
stack-up: images
	$(STACK) up -d --wait
stack-down:  # volumes kept: a second stack-up finds the registry, the runs and the buckets again
	$(STACK) --profile serve down
# end to end on the running stack, one line per check with its time (docker/stack-check.sh)
stack-check:
	STACK="$(STACK)" docker/stack-check.sh
# real faults on the running stack, each during a training: MLflow and PostgreSQL restarted, the
# worker SIGKILLed, a retrain's worker SIGKILLed and healed by the automations
# (docker/stack-faults.sh); about 15 minutes; FAULTS="heal worker" runs only those
stack-faults:
	STACK="$(STACK)" FAULTS="$(FAULTS)" docker/stack-faults.sh
# the whole production check, one line per step with its time: images, up, stack-check, stack-faults
stack-test:
	@t0=$$(date +%s); $(MAKE) --no-print-directory images >/dev/null && echo "ok    images built                    $$(( $$(date +%s) - t0 ))s" \
	  && t0=$$(date +%s) && $(MAKE) --no-print-directory stack-up >/dev/null 2>&1 && echo "ok    stack up, all healthy           $$(( $$(date +%s) - t0 ))s" \
	  && $(MAKE) --no-print-directory stack-check && $(MAKE) --no-print-directory stack-faults

lock: install
	$(BIN)/python -m pip freeze --exclude-editable | sed 's/+cpu//' > constraints.txt.new && mv constraints.txt.new constraints.txt

clean:
	rm -rf data/processed reports artifacts mlartifacts mlflow.db runs .s2s/registry.json
