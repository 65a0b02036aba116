# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test install browser photos clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# CPU wheel of the pinned release; GPU users install the CUDA build themselves (README).
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test,tensorboard]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/centrifuge demo --out demo-output

# Headless Chromium for the report-page test (tests/test_report.py), from Debian's packages.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser test"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

# Optional: natural photographs from Debian's wallpaper packages for the generator, resized into
# ~/.cache/centrifuge/photos (never into the repository). Training uses them when present and says so.
photos: $(STAMP)
	$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq mate-backgrounds plasma-workspace-wallpapers >/dev/null
	$(BIN)/centrifuge photos --build

test: $(STAMP) browser
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) demo-output
