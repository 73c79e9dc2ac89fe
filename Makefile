# Two commands do all set-up on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint check clean system

## What the machine must have beyond PyPI (Mosquitto, PostgreSQL, Python's venv): installed with
## apt-get as root, else one line says what to run. Kept in one place: host/musket/system.py.
system:
	@$(PYTHON) host/musket/system.py

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Run the main job end to end on a virtual device.
demo: system $(STAMP)
	$(BIN)/musket demo

## The whole test suite: firmware under both interpreters, sim, host, fidelity checks.
## Four workers on two cores: much of the suite's time is spent waiting on real time
## (brokers, consoles paced in wall seconds, devices at a set speed), which the others fill.
test: system $(STAMP)
	$(BIN)/pytest -n 4 -q

## Every script in bench/, a table of figures, and bench/results.json.
bench: system $(STAMP)
	$(BIN)/python bench/run_all.py

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .mpy-cache sim-runs bench/results.json
