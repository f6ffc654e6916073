#!/usr/bin/env bash
# The dependency policy (cargo deny: licenses, duplicate versions, sources;
# deny.toml), checked the way a new machine sees it: in an empty, temporary
# CARGO_HOME. `cargo build` downloads only the host platform's crates, but
# `cargo metadata` (which cargo deny runs) needs every platform's; a warm
# cargo cache hides that, an empty one does not. `cargo fetch --locked`
# downloads exactly what Cargo.lock names (all platforms), then the check
# runs offline. Needs the crates.io registry; takes about a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deny >/dev/null || { echo "cargo-deny is missing: run scripts/install-test-deps.sh with .venv on PATH (source scripts/venv.sh)" >&2; exit 2; }
home=$(mktemp -d "${TMPDIR:-/tmp}/rekey-cargo-home.XXXXXX")
trap 'rm -rf "$home"' EXIT
export CARGO_HOME=$home
started=$(date +%s)
cargo fetch --locked --quiet
cargo deny --offline check licenses bans sources
echo "dependency policy checked from an empty CARGO_HOME in $(( $(date +%s) - started ))s"
