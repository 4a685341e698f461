# Two entry points for a fresh Debian machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PKGS   := relay hsm_adapter loadgen
# The modules setup.py compiles with mypyc, and the stamp of their last build.
CORE   := $(addprefix relay/core/,request.py ledger.py dispatcher.py node.py hsm.py monitor.py \
	timer.py workarea.py backend.py tier.py rng.py agenda.py sketch.py) relay/engines/fast.py loadgen/arrivals.py
BUILT  := $(VENV)/.compiled-stamp

.PHONY: demo test lint typecheck pytest bench-replay bench-replay-trio bench-period bench-hsm bench-net \
	bench-sweep bench-validate bench-serve-memory bench-day-tcp bench-day-simnet bench-hunt-server bench-speed bench-toxics bench-year bench-serve-path setup compile pure softhsm prometheus chromium hsm-token clean

setup: $(BUILT)

# The venv is rebuilt only when pyproject.toml changes. Debian splits venv/ensurepip
# into python3-venv; install it when missing (we run as root there).
$(STAMP): pyproject.toml
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  echo "python venv module missing: installing python3-venv"; \
	  apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	@touch $(STAMP)

# The hot modules as C extensions beside their sources (mypyc; about 1.6x faster).
# Rebuilt when one of them changes; `make pure` goes back to the sources alone.
$(BUILT): $(STAMP) $(CORE) setup.py
	@echo "compiling the core with mypyc (about a minute)"
	@rm -f relay/*.cpython-*.so relay/*/*.cpython-*.so loadgen/*.cpython-*.so
	@$(BIN)/python setup.py -q build_ext --inplace >/dev/null
	@# build_ext copies unchanged builds with their old times: date them now, so
	@# relay/__init__.py's check sees them as built from these sources
	@for f in relay/*.cpython-*.so relay/*/*.cpython-*.so loadgen/*.cpython-*.so; do [ -e "$$f" ] && touch "$$f"; done; touch $(BUILT)

compile: $(BUILT)

pure:
	rm -f relay/*.cpython-*.so relay/*/*.cpython-*.so loadgen/*.cpython-*.so $(BUILT)
	rm -rf build

# SoftHSM2 from Debian, when missing: installed as root, else the one command to run.
softhsm:
	@ls /usr/lib/softhsm/libsofthsm2.so /usr/lib/*/softhsm/libsofthsm2.so >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "SoftHSM2 missing: installing Debian's softhsm2"; \
	    apt-get update -qq && apt-get install -y -qq softhsm2 >/dev/null; \
	  else echo "SoftHSM2 is missing: run  sudo apt-get install softhsm2  then make again"; exit 1; fi; }

# Debian's Prometheus (prometheus and promtool), for the rule tests and the test that
# scrapes a served tier, when missing: installed as root, else the one command to run.
# Without its recommended node exporter, and with the packaged service stopped and
# disabled if the init system started it: the tests run their own on a free loopback
# port, and a daemon left on :9090 would be a surprise. (In a container policy-rc.d
# or the absence of an init system already keeps it from starting.)
prometheus:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Prometheus missing: installing Debian's prometheus"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends prometheus >/dev/null; \
	    if [ -d /run/systemd/system ]; then systemctl disable --now prometheus >/dev/null 2>&1; \
	    elif [ -x /etc/init.d/prometheus ]; then /etc/init.d/prometheus stop >/dev/null 2>&1; \
	      update-rc.d prometheus disable >/dev/null 2>&1; fi; \
	    command -v promtool >/dev/null; \
	  else echo "Prometheus is missing: run  sudo apt-get install prometheus  then make again"; exit 1; fi; }

# Debian's Chromium and its driver, for the report test, when missing (as root).
chromium:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Chromium missing: installing Debian's chromium and chromium-driver"; \
	    apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "Chromium is missing: run  sudo apt-get install chromium chromium-driver  then make again"; exit 1; fi; }

# The project's own token (state/softhsm, never /etc/softhsm) and its keys; idempotent.
hsm-token: $(BUILT) softhsm
	$(BIN)/relaysim hsm init

demo: $(BUILT) hsm-token
	$(BIN)/relaysim replay configs/2016-03-29.yaml --design fixed

lint: $(STAMP)
	$(BIN)/ruff check $(PKGS) tests bench setup.py
	$(BIN)/ruff format --check $(PKGS) tests bench setup.py
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy $(PKGS) tests

pytest: $(BUILT) softhsm prometheus chromium
	$(BIN)/pytest -q

test: hsm-token lint typecheck pytest

# The 29 March day on the fast engine, after the SimPy yardstick in ../shared.
bench-replay: $(BUILT)
	$(BIN)/python bench/replay_fast.py configs/2016-03-29.yaml

# The same day on the trio engine, against bare trio's own floor.
bench-replay-trio: $(BUILT)
	$(BIN)/python bench/replay_trio.py configs/2016-03-29.yaml

# 13 Jan to 19 Mar 2016 on legacy (issue 4: under 10 minutes), after the 29 March day.
bench-period: $(BUILT)
	$(BIN)/python bench/replay_period.py configs/jan-2016.yaml

# The fiscal year 2016 (365 days, ~104 M requests) on 1 worker, then 2: ~12 min.
bench-year: $(BUILT)
	$(BIN)/python bench/year.py configs/fy2016.yaml

# ECDSA P-256 signs on the token: raw single thread, then through the trio lane.
bench-hsm: $(BUILT) hsm-token
	$(BIN)/python bench/hsm.py

# Serve mode over loopback against a bare trio echo server, then with SoftHSM2 signing.
bench-net: $(BUILT) hsm-token
	$(BIN)/python bench/net.py

# Serve's per-request path besides the sockets: frames alone, then with the model (~10 s).
bench-serve-path: $(BUILT)
	$(BIN)/python bench/serve_path.py

# What serve --toxics costs with no toxic on, against plain serve (~40 s).
bench-toxics: $(BUILT)
	$(BIN)/python bench/toxics.py

# The 29 March day over TCP (serve --speed 100, load) against its replay: ~9 min.
bench-day-tcp: $(BUILT)
	$(BIN)/python bench/day_tcp.py

# 29 March's peak hour through the server and load client on the simulated network,
# against the trio engine's replay of it, in one run (~40 s).
bench-day-simnet: $(BUILT)
	$(BIN)/python bench/day_simnet.py

# The hunt over the real server on fixed: 10,000 worlds (~7 min), after 2,000 of the
# replay hunt's as the baseline.
bench-hunt-server: $(BUILT)
	$(BIN)/python bench/hunt_server.py

# serve --speed X against the replay, speed by speed (an hour of the smoke day; ~5 min).
bench-speed: $(BUILT)
	$(BIN)/python bench/speed.py

# A 16-point sweep (relays x CS caps on 29 March) on 2 local workers and on 1.
bench-sweep: $(BUILT)
	$(BIN)/python bench/sweep.py configs/sweeps/relays-vs-caps.yaml

# Serve mode's memory after 10^4 and 10^6 requests: bounded, against every latency kept.
bench-serve-memory: $(BUILT)
	$(BIN)/python bench/serve_memory.py

# Queueing theory's ground truth, every point on both engines, longer than the tests
# (docs/validation.md): a markdown table, then the JSON line.
bench-validate: $(BUILT)
	$(BIN)/python bench/validate.py

clean: pure
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
