# Set-up and entry points. `make demo` and `make test` are the README's two commands.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast chromium bench-quality bench-robustness bench-tiling bench-splits bench-scale bench-scale-rows clean

# The venv is rebuilt when a requirements file changes. requirements.lock pins every transitive package.
$(STAMP): requirements.txt requirements-dev.txt requirements.lock
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "make: $(PYTHON) not found (Curate needs Python 3.11)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt -c requirements.lock
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m flows.curate

test: $(STAMP) chromium
	$(PY) -m pytest

# The fast tier: every test but the end-to-end, subprocess and browser ones (marked `slow`), in about a minute.
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

# The report's and the review page's browser tests need Debian's chromium (Playwright, pinned in
# requirements-dev.txt, drives it; its own browser download is never used). Installed once when run as root; a
# no-op when present.
chromium:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else echo "make: /usr/bin/chromium missing; install it with: sudo apt-get install -y chromium (the browser tests are skipped without it)"; fi

# The benchmark needs RSSCN7 in ../shared/data/rsscn7 and two bench-only packages (they ship its out-of-domain photos).
bench-quality: $(STAMP)
	$(PY) -m pip install --quiet -r requirements-bench.txt -c requirements.lock
	$(PY) -m bench.run_quality

# Copies made with transforms the quality benchmark does not inject, added to its dataset (same needs).
bench-robustness: $(STAMP)
	$(PY) -m pip install --quiet -r requirements-bench.txt -c requirements.lock
	$(PY) -m bench.robustness

# Tiled scenes cut from RSSCN7 at 25 % and 50 % overlap, in one split and with some tiles in val (4 runs, ~2 min).
bench-tiling: $(STAMP)
	$(PY) -m bench.tiling

# Leak-free splits (decisions.split_leak=reassign) on the quality dataset and on tiles spread over splits; export speed.
bench-splits: $(STAMP)
	$(PY) -m pip install --quiet -r requirements-bench.txt -c requirements.lock
	$(PY) -m bench.splits

# Issue 4's speed and memory figures on generated tiles (about an hour on 2 cores: 100,000 images are curated).
bench-scale: $(STAMP)
	$(PY) -m bench.scale

# Classification, gate and writing for 1,000,000 generated manifest rows (issue 4); ROWS=100000 for a quicker run.
ROWS ?= 1000000
bench-scale-rows: $(STAMP)
	$(PY) -m bench.scale_rows --rows $(ROWS)

clean:
	rm -rf $(VENV) data/demo data/curated

# Issue 24: cold Curate against bare fastdup, alternating, median of 3, on the quality files and 10,000 generated
# tiles, with re-runs (about 30 minutes on 2 cores); against a running Prefect server (PREFECT_API_URL, else its own).
.PHONY: bench-speed
bench-speed: $(STAMP)
	$(PY) -m pip install --quiet -r requirements-bench.txt -c requirements.lock
	$(PY) -m bench.speed
