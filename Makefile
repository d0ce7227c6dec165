# Two entry points for a fresh machine: `make demo` and `make test`.
# Each creates .venv, installs what it needs (idempotently: again only when pyproject.toml changes)
# and starts what it needs.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
ARGS   ?=

.PHONY: demo test lint typecheck unit system-deps bench-ingest bench-rules bench-screens bench-scaleout bench-e2e screenshot eval eval-quick tune soak clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	@rm -f $(VENV)/.installed-*
	@touch $@

system-deps:
	@bash scripts/ensure-system-deps
	@bash scripts/ensure-kafka

demo: $(STAMP)
	$(BIN)/whistle demo $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) system-deps lint typecheck
	$(BIN)/pytest

bench-ingest: $(STAMP) system-deps
	@command -v mosquitto_sub >/dev/null || (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto-clients >/dev/null)
	$(BIN)/python scripts/bench_ingest.py --json-out docs/bench_ingest.json $(ARGS)

bench-rules: $(STAMP)
	$(BIN)/python scripts/bench_rules.py --households 5000 --hours 24 --runs 5 --json-out docs/bench_rules.json $(ARGS)

bench-screens: $(STAMP)
	$(BIN)/python scripts/bench_screens.py --alarms 1000000 --json-out docs/bench_screens.json $(ARGS)

# Scale-out over a real Kafka (docs/BENCHMARKS.md "Scale-out"): 1 vs 2 collectors and rule workers, and a rule
# worker SIGKILLed under load. About 20 minutes; it takes /tmp/whistle-bench.lock so no other benchmark measures at once.
bench-scaleout: $(STAMP) system-deps
	flock /tmp/whistle-bench.lock $(BIN)/python scripts/bench_scaleout.py --json-out docs/bench_scaleout.json $(ARGS)

# The full job side by side (docs/BENCHMARKS.md, "Full job, side by side"): whistle serve, the roles over Kafka,
# Node-RED 4 (npm, into .cache/nodered) and the mosquitto_sub ceiling on one stream at stepped rates, about
# 20 minutes; under the machine's benchmark lock. `make bench-e2e ARGS=--quick`: 3 short steps (docs/bench_e2e_quick.json).
bench-e2e: $(STAMP) system-deps
	@command -v mosquitto_sub >/dev/null || (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto-clients >/dev/null)
	flock /tmp/whistle-bench.lock $(BIN)/python scripts/bench_e2e.py --json-out docs/bench_e2e.json $(ARGS)

screenshot: $(STAMP) system-deps
	$(BIN)/python scripts/screenshot.py --out docs/screen.png $(ARGS)
	$(BIN)/python scripts/screenshot_worker.py --out docs/worker.png --ticket-out docs/worker-ticket.png

# The evaluation of record, through the front door (evaluation/frontdoor/, docs/EVALUATION.md): both behaviour
# sources, tuning and held-out seeds, each run a fresh `whistle serve`. Long: on two shared cores a
# simulator run takes about 6 minutes and a CREST run about 8; 8 runs (about 1 hour) when the lone-elder
# targets are met on the tuning seeds, 20 (about 2.5 hours) when the trade-off curve has to be measured.
# `make eval-quick`: 4 small runs, no curve (8-13 minutes).
eval: $(STAMP) system-deps
	$(BIN)/python -m evaluation.frontdoor suite --json-out docs/evaluation.json --doc docs/EVALUATION.md $(ARGS)

eval-quick: $(STAMP) system-deps
	$(BIN)/python -m evaluation.frontdoor suite --quick --json-out docs/evaluation_quick.json $(ARGS)

# The internal tuning harness (side door: figures NOT of record; see its docstring).
tune: $(STAMP) system-deps
	$(BIN)/python scripts/tune_harness.py --households 600 --days 21 --seed 7 --first-day 2026-11-03 --params scripts/eval_params.json --json-out docs/tuning/harness_seed7.json --doc docs/tuning/HARNESS.md $(ARGS)

# The soak (scripts/soak.py; not a test): whistle serve for 30 minutes at 5,000 msg/s (--minutes, --rate),
# the RSS of every process each minute, the lag, readings in against readings stored; docs/BENCHMARKS.md.
soak: $(STAMP)
	$(BIN)/python scripts/soak.py --json-out docs/soak.json $(ARGS)

clean:
	rm -rf $(VENV) .whistle .pytest_cache .mypy_cache .ruff_cache
