# The two commands a newcomer runs: `make demo` and `make test`. Both set up everything they
# need: Python packages into .venv, and (as root, when missing) the Debian packages the real-
# component tests use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEB_PACKAGES := qemu-guest-agent prometheus prometheus-alertmanager postgresql rpm docker-compose systemd spice-vdagent xvfb xclip \
	qemu-system-x86 busybox-static cpio e2fsprogs libvirt-daemon-system libvirt-clients libvirt-dev pkg-config

.PHONY: demo test lint format deps venv bench clean

# deps first: the [test] extra builds libvirt-python against libvirt-dev and pkg-config.
$(STAMP): pyproject.toml | deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

deps:
	@bash scripts/install-deps.sh $(DEB_PACKAGES)

demo: venv deps
	$(BIN)/guestwatch demo

test: venv deps
	$(BIN)/pytest -q -ra

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: venv deps
	$(BIN)/python bench/qga_round.py

clean:
	rm -rf $(VENV) demo-run .pytest_cache .mypy_cache .ruff_cache
