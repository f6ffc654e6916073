#!/usr/bin/env bash
# Installs what the emulator harness needs (moto) into the machine's python3.
# Quick and offline when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
pip_install() { python3 -m pip install --quiet --disable-pip-version-check "$@"; }
# A Debian-managed python refuses plain installs (PEP 668); a pyenv one does not.
pip_install -r tests/emulator/requirements.txt 2>/dev/null \
  || pip_install --break-system-packages -r tests/emulator/requirements.txt
