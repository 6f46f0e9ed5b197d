# `make reproduce` regenerates figures/ at mini scale; `make test` runs the whole test suite.
# Both create .venv with the pinned set (requirements.txt) when it is missing.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# --no-compile: pip would byte-compile every module it installs (install 274 s; 107-131 s without); Python compiles
# what a process imports, once, on first use
PIP := $(BIN)/pip install -q --disable-pip-version-check --no-compile
# pip on the build machines warns about find-links folders that do not exist; keep the log readable
QUIET_PIP := 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
export ROBUSTCLIP_HOME ?= $(CURDIR)/.cache/robustclip
export PYTHONHASHSEED := 0

.PHONY: venv lock reproduce reproduce-retrain test test-slow export check-export lint nbdev-test pytest clean-nbs help
help:
	@echo "make reproduce   - evaluate the shipped mini fine-tunes, regenerate figures/ (mini scale, CPU)"
	@echo "make reproduce-retrain - fine-tune every mini run from mini-base first (~37 min more), into runs/mini-retrain/"
	@echo "make test        - lint, export check, then pytest: every notebook (tests/test_notebooks.py) and tests/ (creates .venv first)"
	@echo "make test-slow   - the slow tests, the attacks' hypothesis properties with 1,000 cases each, the paper rehearsal"
	@echo "make export      - write robustclip/ from the notebooks (nbdev-export, then tools/wrap_all.py)"
	@echo "make lock        - re-pin requirements-lock.txt (every installed package) from requirements.txt"
	@echo "make lint        - ruff check and ruff format --check (the rules in CONTRIBUTING.md)"
	@echo "make nbdev-test  - run the notebooks with nbdev-test alone (make test already runs them, through pytest)"

# the locked set (requirements-lock.txt: every package pinned, written by `make lock` from requirements.txt) installs
# with --no-deps, without pip's resolver; `pip check` then fails the install if the lock is not a consistent set
# (torchattacks, the benchmark peer installed --no-deps, is known to pin an older requests and is not checked)
$(BIN)/.installed: requirements.txt requirements-lock.txt requirements-nodeps.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) --no-deps -r requirements-lock.txt $(QUIET_PIP)
	@bad=$$($(BIN)/pip check --disable-pip-version-check 2>&1 | grep -v -e '^No broken' -e '^torchattacks ' || true); \
	  if [ -n "$$bad" ]; then echo "$$bad"; echo "requirements-lock.txt is not a consistent set: make lock"; exit 1; fi
	$(PIP) --no-deps -r requirements-nodeps.txt $(QUIET_PIP)
	$(PIP) --no-deps -e . $(QUIET_PIP)
	@touch $@

venv: $(BIN)/.installed

# resolve requirements.txt into a scratch venv and pin everything it installed (after changing requirements.txt)
lock:
	@tmp=$$(mktemp -d); $(PYTHON) -m venv $$tmp/v; $$tmp/v/bin/pip install -q --disable-pip-version-check --no-compile \
	  -r requirements.txt $(QUIET_PIP); \
	  { sed -n '1,3p' requirements-lock.txt; $$tmp/v/bin/pip freeze --all | grep -v '^pip=='; } > $$tmp/lock && \
	  mv $$tmp/lock requirements-lock.txt; rm -rf $$tmp; echo "requirements-lock.txt: $$(grep -vc '^#' requirements-lock.txt) pins"

reproduce: venv
	$(BIN)/robustclip reproduce --scale mini

# the same plan with every fine-tune trained from the shipped mini-base instead of unpacked (runs/mini-retrain/figures/)
reproduce-retrain: venv
	$(BIN)/robustclip reproduce --scale mini --retrain

# notebooks are the source: `make export` writes robustclip/ from nbs/ (nbdev-export, then nbdev's `__all__` wrapped
# to the lint rules' 120 columns by tools/wrap_all.py)
export: venv
	$(BIN)/nbdev-export
	$(BIN)/python tools/wrap_all.py

# exporting the notebooks into a scratch copy must reproduce robustclip/ exactly
check-export: venv
	@tmp=$$(mktemp -d); cp -r nbs pyproject.toml $$tmp/; cp -r robustclip $$tmp/robustclip; \
	  (cd $$tmp && $(CURDIR)/$(BIN)/nbdev-export && $(CURDIR)/$(BIN)/python $(CURDIR)/tools/wrap_all.py $$tmp/robustclip >/dev/null); \
	  if ! diff -r -q -x __pycache__ $$tmp/robustclip robustclip; then \
	    echo "nbdev-export changes robustclip/: edit the notebooks in nbs/, then run nbdev-export"; rm -rf $$tmp; exit 1; fi; \
	  rm -rf $$tmp; echo "export check: robustclip/ matches nbs/"

# the rules of CONTRIBUTING.md ("Lint"): ruff's checks and its formatter over the notebooks and every .py we write
LINTED := nbs robustclip tests benchmarks tools
# robustclip/ is written by nbdev from the formatted notebooks (its cell markers and `__all__` are nbdev's), so the
# formatter checks the sources only
FORMATTED := nbs tests benchmarks tools
lint: venv
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check --quiet $(FORMATTED)

# two workers on two cores: one thread each, or they oversubscribe the CPU and everything crawls.
# Progress bars off: they flood the logs of notebooks and subprocesses.
TEST_ENV := ROBUSTCLIP_PROGRESS=0 OMP_NUM_THREADS=1

# the notebooks alone, through nbdev's runner (cells flagged by tst_flags in pyproject.toml skipped); `make test`
# does not call this: pytest runs the same notebooks, with the same runner and flags, in tests/test_notebooks.py
nbdev-test: venv
	$(TEST_ENV) $(BIN)/nbdev-test --n-workers 2

# everything under tests/, the notebooks included (one test each); prints the "N passed" line CI reads.
# --dist loadgroup: tests marked xdist_group(name) share one worker (a module fixture made once), the rest go to
# whichever worker is free. --max-worker-restart 0: a crashed worker ends the run with the test it was running named
# (pytest-xdist 3.8's loadgroup waits forever for a replaced worker; a hung test is failed by pytest-timeout first)
pytest: venv
	$(TEST_ENV) $(BIN)/pytest -n 2 --dist loadgroup --max-worker-restart 0 --durations=15

# the tests marked slow, the attacks' hypothesis properties with 1,000 generated cases each (HYPOTHESIS_PROFILE=slow),
# and the whole rehearsal of the paper plan on CPU (tests/test_rehearsal.py; its time: README "Paper scale")
test-slow: venv
	$(TEST_ENV) HYPOTHESIS_PROFILE=slow ROBUSTCLIP_FULL_REHEARSAL=1 $(BIN)/pytest -n 2 -o timeout=3600 -m "slow or properties or rehearsal"

# each notebook runs once: under pytest (tests/test_notebooks.py), not again in a separate nbdev-test step.
# `pretrain-mini` first: it checks the mini-base cache against its SHA-256 (or fills it from the weights shipped in
# robustclip/mini/weights/, in seconds; no pretraining) before the pytest workers share it.
# `make lint` (ruff, the rules in CONTRIBUTING.md) runs first: it takes seconds
test: venv
	$(BIN)/robustclip pretrain-mini
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory check-export
	$(MAKE) --no-print-directory pytest

clean-nbs: venv
	$(BIN)/nbdev-clean
