#!/usr/bin/env bash
# Fails unless every .unwrap() / .expect( in non-test code of crates/*/src
# is a true invariant, said so by a `// invariant: <why>` comment on its
# line or the line before. Data from outside (AWS answers, files, the
# environment, user input, process output) gets a proper error instead.
# Test code is skipped: tests.rs, properties.rs, and everything from a
# `#[cfg(test)]` module on (rekey keeps its test modules at the end of a file).
set -euo pipefail
cd "$(dirname "$0")/.."
found=$(find crates/*/src -name '*.rs' ! -name tests.rs ! -name properties.rs | sort | xargs awk '
  FNR == 1 { prev = ""; test_attr = 0; in_tests = 0 }
  in_tests { next }
  test_attr && /^[[:space:]]*(pub(\([a-z]+\))? )?mod / { in_tests = 1; next }
  { test_attr = ($0 ~ /^[[:space:]]*#\[cfg\(test\)\]/) }
  /\.unwrap\(\)|\.expect\(/ && $0 !~ /\/\/ invariant: / && prev !~ /\/\/ invariant: / { print FILENAME ":" FNR ": " $0 }
  { prev = $0 }
')
if [ -n "$found" ]; then
  echo "unwrap/expect without an '// invariant: <why>' comment (on data from outside, return an error instead):"
  echo "$found"
  exit 1
fi
echo "check-unwrap: every unwrap/expect outside tests is a commented invariant"
