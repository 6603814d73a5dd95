#!/usr/bin/env bash
# Installs everything mailbridge needs on a fresh machine: Debian packages (when root) and the venv.
# Idempotent and quick when nothing changed. Used by `make run`, `make test` and .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v dovecot >/dev/null 2>&1 || need_apt+=(dovecot-imapd)
command -v mbsync >/dev/null 2>&1 || need_apt+=(isync)
command -v offlineimap >/dev/null 2>&1 || need_apt+=(offlineimap3)
# the console's browser tests (tests/integration/test_console_browser.py) drive Debian's Chromium
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
# `make package` strips the shipped shared libraries (infra/package.py)
command -v strip >/dev/null 2>&1 || need_apt+=(binutils)
# `make bench` counts the instructions of the API's cold import (bench/package_weight)
command -v valgrind >/dev/null 2>&1 || need_apt+=(valgrind)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = "0" ]; then
    echo "bootstrap: installing Debian packages: ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${need_apt[@]}" >/dev/null
    # The package's own service is not used: tests and the local stack start Dovecot with their own config.
    (service dovecot stop >/dev/null 2>&1 || true)
  else
    echo "bootstrap: please install Debian packages ${need_apt[*]} (run as root to install automatically)" >&2
  fi
fi

PYTHON=${PYTHON:-python3}
stamp=.venv/.installed-$(cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "bootstrap: creating .venv and installing requirements-dev.txt"
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade "pip<26.3"  # chalice 1.34 requires pip<26.3
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
  rm -f .venv/.installed-*
  touch "$stamp"
fi
