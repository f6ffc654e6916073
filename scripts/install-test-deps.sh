#!/usr/bin/env bash
# Installs what the emulator harness needs (moto, and the AWS CLI that the
# tests use as an application) into a project-local virtual environment,
# .venv/, and leaves the system Python alone. Quick and offline when the
# requirements have not changed since the last install. Then
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
