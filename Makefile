# The two commands: `make reproduce` and `make test`. Each builds .venv from nothing when it is
# missing or older than settings.ini / setup.py, so on a fresh machine it is the only command to type.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROFILE ?= paper
export PYTHONHASHSEED := 0
# idle OpenMP threads must sleep, not spin: spinning threads slow shared CPUs several-fold
export OMP_WAIT_POLICY := PASSIVE

.PHONY: test reproduce lab venv export export-check clean-venv
.DEFAULT_GOAL := test

$(STAMP): settings.ini setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)

venv: $(STAMP)

# fail when the exported library is not what the notebooks say
export-check: $(STAMP)
	@rm -rf .export-check && cp -r amplitude_nb .export-check
	@$(BIN)/nbdev_export
	@if ! diff -r -q -x __pycache__ .export-check amplitude_nb; then \
	  echo "amplitude_nb/ was stale: nbdev_export changed it (now updated; review and commit it)"; \
	  rm -rf .export-check; exit 1; fi
	@rm -rf .export-check

test: export-check
	OMP_NUM_THREADS=1 $(BIN)/nbdev_test --timing  # notebooks run side by side: one OpenMP thread each (see tests/conftest.py)
	$(BIN)/python -m pytest -q -n auto --dist loadfile --no-loadscope-reorder tests

reproduce: $(STAMP)
	$(BIN)/amplitude-nb reproduce --profile $(PROFILE)
	@if [ "$(PROFILE)" = paper ]; then $(BIN)/python -c "from amplitude_nb.report import update_readme; update_readme('reports/paper')"; fi

lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=nbs --config=.jupyter/jupyter_server_config.py

export: $(STAMP)
	$(BIN)/nbdev_export && $(BIN)/nbdev_clean

clean-venv:
	rm -rf $(VENV)
