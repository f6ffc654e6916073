#!/usr/bin/env bash
# Installs what the emulator harness needs (moto, and the AWS CLI that the
# tests use as an application) into a project-local virtual environment,
# .venv/, and leaves the system Python alone; and Debian's chromium, for the
# HTML report test, when /usr/bin/chromium is missing (apt-get, as root).
# Quick and offline when the requirements have not changed since the last
# install and chromium is there. Then
# `source scripts/venv.sh` puts .venv first on PATH for the tests and demo.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv
if [ ! -x "$venv/bin/python" ]; then
  echo "creating the virtual environment $venv for the emulator"
  python3 -m venv "$venv" || {
    echo "python3 -m venv failed: on Debian or Ubuntu, apt-get install python3-venv" >&2
    exit 2
  }
fi
# pip resolves against PyPI even when all is installed: skip it while the
# requirements are those of the last successful install.
stamp=$venv/.installed-requirements
if ! cmp -s tests/emulator/requirements.txt "$stamp"; then
  echo "installing moto and the AWS CLI into $venv (about a minute the first time)"
  "$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off -r tests/emulator/requirements.txt
  cp tests/emulator/requirements.txt "$stamp"
fi

# The HTML report test (crates/rekey/tests/html.rs) renders the page in
# headless Chromium. Debian's package, without recommends: no desktop needed.
if [ ! -x /usr/bin/chromium ]; then
  echo "installing Debian's chromium (apt-get install chromium) for the HTML report test"
  if [ "$(id -u)" -ne 0 ]; then
    echo "installing chromium needs root: run this script as root, or apt-get install chromium" >&2
    exit 2
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
