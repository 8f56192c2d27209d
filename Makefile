# Every target installs what it needs into .venv first (a fresh machine needs only python3).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
EVENT  ?=
POLICY ?=
KUBELET_TLS ?=
REVERSE_SHELL ?=

.DEFAULT_GOAL := help
.PHONY: help install build check-build lint test demo simulate submit bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[local,test,lint]'
	touch $@

install: $(VENV)/.installed ## create .venv and install the project with its test, local and lint extras

build: install ## regenerate build/ from response.yaml
	$(PY) -m engine.cli build

$(VENV)/.lint-installed: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install -q -e '.[local,test,lint]'
	touch $@

lint: $(VENV)/.lint-installed ## pyflakes, build/ validated strictly, actionlint (+shellcheck) on .github/workflows, hadolint on Dockerfile
	$(PY) -m pyflakes engine steps standin pipelines eventsources sensors tests
	$(PY) -m pytest -q tests/test_build.py tests/test_release.py
	$(VENV)/bin/actionlint -shellcheck $(VENV)/bin/shellcheck
	$(VENV)/bin/hadolint Dockerfile

test: install ## run the whole test suite (offline, local stand-in world)
	$(PY) -m pytest -q -n 2

demo: install ## run one Falco alert end to end on the local stand-in world (EVENT=path POLICY=name KUBELET_TLS=self-signed REVERSE_SHELL=1)
	$(PY) -m engine.cli demo $(if $(EVENT),--event $(EVENT)) $(if $(POLICY),--policy $(POLICY)) $(if $(KUBELET_TLS),--kubelet-tls $(KUBELET_TLS)) $(if $(REVERSE_SHELL),--reverse-shell)

simulate: install ## show which Sensor fires for EVENT=path and the Workflow it submits
	$(PY) -m engine.cli simulate $(if $(EVENT),$(EVENT),-)

bench: install ## every tests/bench_*.py (build/demo times, copy vs upload_file, ...), then all `bench: name=value` lines
	$(PY) -m tests.bench

clean: ## remove .venv and caches
	rm -rf $(VENV) .pytest_cache
