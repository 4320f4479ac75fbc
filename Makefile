# Two commands (see README.md):
#   make run    set up (idempotent) and run the default experiment in simulation
#   make test   set up (idempotent) and run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
EXPERIMENT ?= hand_pddm_valve_sim
ARGS ?=
PYTEST_ARGS ?=

.PHONY: setup run test test-fast list clean-runs

setup:
	@bash scripts/setup_env.sh $(VENV)

run: setup
	$(VENV)/bin/dexmpc up $(EXPERIMENT) $(ARGS)

list: setup
	@$(VENV)/bin/dexmpc list

# -n 2: two workers on two cores; each test graph has its own ROS_DOMAIN_ID.
test: setup
	$(PY) -m pytest -n 2 --dist loadgroup -q --timeout 600 $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -n 2 -q -m 'not e2e' $(PYTEST_ARGS)

clean-runs:
	rm -rf runs
