#!/usr/bin/env bash
# Offline checks of the deployment examples in deploy/ (deploy/README.md):
#   systemd         systemd-analyze verify and security on the units (a
#                   Python parser where systemd-analyze is missing)
#   kubernetes      kubernetes-validate --strict on the manifest
#   cloudformation  cfn-lint (no errors, no warnings) on the templates
# and, for each, the settings the README promises. The checks themselves are
# tests/deploy/deploy_checks.py; tests/deploy/test_deploy_checks.py shows
# that broken copies fail them.
#
# Tools come from PATH (scripts/venv.sh puts .venv/bin first): python3 3.11+
# with PyYAML, cfn-lint and kubernetes-validate (pip), systemd-analyze if
# present. Usage: scripts/check-deploy.sh [systemd|kubernetes|cloudformation ...]
set -euo pipefail
cd "$(dirname "$0")/.."

pip_packages="cfn-lint==1.58.0 kubernetes-validate==1.37.0 PyYAML"
missing=()
command -v python3 >/dev/null || missing+=(python3)
for tool in cfn-lint kubernetes-validate; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if command -v python3 >/dev/null; then
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || missing+=("python3 3.11+ (for tomllib)")
  python3 -c 'import yaml' 2>/dev/null || missing+=("PyYAML (for $(command -v python3))")
fi
if [ "${#missing[@]}" -gt 0 ]; then
  printf 'check-deploy: missing on PATH: %s\n' "${missing[*]}" >&2
  echo "check-deploy: install them with: pip install $pip_packages" >&2
  exit 2
fi
if ! command -v systemd-analyze >/dev/null; then
  echo "check-deploy: systemd-analyze not on PATH: the systemd units get the Python parser's checks only"
fi

exec python3 tests/deploy/deploy_checks.py "$@"
