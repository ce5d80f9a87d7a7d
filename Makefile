# `make run` and `make test` set up the virtual environment first when needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 5000

.PHONY: run serve test test-fast lint train train-pairs calibrate evaluate predict clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt training/requirements.txt $(VENV)/.installed
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

$(VENV)/.installed-training: training/requirements.txt $(VENV)/.installed
	$(BIN)/pip install --quiet -r training/requirements.txt
	touch $@

run: $(VENV)/.installed
	$(BIN)/python app.py --port $(PORT)

serve: $(VENV)/.installed
	$(BIN)/gunicorn 'app:create_app()'

test: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

# The quick loop while working: everything but the browser, gunicorn and training tests.
test-fast: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -m "not slow"

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

# ARGS passes options on, e.g. make train ARGS="--epochs 5 --out quick.pt"
train: $(VENV)/.installed
	$(BIN)/python -m training.train $(ARGS)

# The pair reader, which reads two touching digits of a number at once (a few minutes).
train-pairs: $(VENV)/.installed
	$(BIN)/python -m training.pairs $(ARGS)

# The temperature and the non-digit head of the weights in weights/ (training runs it too).
calibrate: $(VENV)/.installed
	$(BIN)/python -m training.calibrate $(ARGS)

# The held-out and new-writer figures, calibration, and weights/model.{confusion,mistakes}.png.
evaluate: $(VENV)/.installed-training
	$(BIN)/python -m training.evaluate --figures $(ARGS)

# make predict ARGS="scans/ --out predictions.csv"
predict: $(VENV)/.installed
	$(BIN)/python -m tools.predict $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache

# HTTP benchmark of the service against its peers (needs wrk; TorchServe needs Java 11+).
# It has its own venv, benchmarks/.venv; `make bench BENCH_ARGS=--quick` to try it out.
.PHONY: bench
bench: $(VENV)/.installed
	@if [ ! benchmarks/.venv/.installed -nt benchmarks/requirements.txt ]; then \
	  $(PYTHON) -m venv benchmarks/.venv && \
	  benchmarks/.venv/bin/python -m pip install --quiet --upgrade pip && \
	  benchmarks/.venv/bin/pip install --quiet torch==2.14.1 torchvision==0.29.1 && \
	  benchmarks/.venv/bin/pip install --quiet -r benchmarks/requirements.txt && \
	  touch benchmarks/.venv/.installed; fi
	benchmarks/.venv/bin/python benchmarks/bench_http.py --service-python $(BIN)/python $(BENCH_ARGS)

# Fault drills against a local gunicorn (loopback only, about 5 minutes): steady load,
# stalled clients, heavy uploads, reload, a killed worker, hostile uploads, SIGTERM.
.PHONY: faults
faults: $(VENV)/.installed
	$(BIN)/python benchmarks/faults.py $(ARGS)

# Three instances in network namespaces of their own behind nginx (deploy/nginx), driven by
# wrk: throughput with 1, 2 and 3 instances, one killed under load and started again.
# Needs root and Debian's iproute2, nginx and wrk; about 2 minutes, cleans up after itself.
.PHONY: cluster
cluster: $(VENV)/.installed
	$(BIN)/python benchmarks/cluster.py $(ARGS)

# What the operations layer (metrics, request log, CORS) costs a request, in process and as
# a share of a served request; ARGS="--wrk" compares under wrk (about 2 minutes).
.PHONY: bench-ops
bench-ops: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_ops.py $(ARGS)

# The service at git revision BEFORE against this tree under wrk, taken in turn (needs wrk).
.PHONY: bench-versions
bench-versions: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_versions.py --before $(BEFORE) $(ARGS)

# Accuracy and preprocessing time per upload kind (ARGS="--per-kind 100" is quicker).
.PHONY: bench-accuracy
bench-accuracy: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_accuracy.py $(ARGS)

# Each upload kind with and without the ruling step of imaging/ruling.py, in turn.
.PHONY: bench-ruling
bench-ruling: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_ruling.py $(ARGS)
