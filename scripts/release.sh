#!/usr/bin/env bash
# Builds the release binary users install, with its dependency list
# embedded (cargo auditable: the `.dep-v0` section, which `cargo audit bin`,
# syft and trivy read), then prints what it is: size, the dependency list's
# size and crate count, and the time and memory of `rekey --version`.
#
#   scripts/release.sh            # build target/release/rekey, then report
#   RUNS=200 scripts/release.sh   # more `--version` runs for the timing
#
# Writes target/release/rekey.deps.json: the embedded list, uncompressed.
# The release profile (Cargo.toml) is fat LTO, one codegen unit, stripped;
# on 2 cores the first build takes about half an hour.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-100}

if ! cargo auditable --version >/dev/null 2>&1; then
  echo "installing cargo-auditable (crates.io)..." >&2
  cargo install --locked cargo-auditable
fi
cargo auditable build --release --locked -p rekey

bin=target/release/rekey
objcopy --dump-section .dep-v0=target/release/rekey.dep-v0 "$bin" /dev/null
python3 - "$bin" <<'EOF'
import json, os, subprocess, sys, time, zlib, resource
binary = sys.argv[1]
raw = open(binary + ".dep-v0", "rb").read()
os.remove(binary + ".dep-v0")
deps = json.loads(zlib.decompress(raw))
with open(binary + ".deps.json", "w") as f:
    json.dump(deps, f, indent=1)
runs = int(os.environ.get("RUNS", "100"))
subprocess.run([binary, "--version"], check=True, capture_output=True)  # warm the page cache
times = []
for _ in range(runs):
    start = time.perf_counter()
    subprocess.run([binary, "--version"], check=True, capture_output=True)
    times.append((time.perf_counter() - start) * 1000)
times.sort()
peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
version = subprocess.run([binary, "--version"], check=True, capture_output=True, text=True).stdout.strip()
print(f"{version}")
print(f"binary: {os.path.getsize(binary) / 1e6:.1f} MB ({os.path.getsize(binary)} bytes), stripped")
print(f"embedded dependency list: {len(raw)} bytes compressed, {len(deps['packages'])} crates "
      f"(written to {binary}.deps.json)")
print(f"rekey --version over {runs} runs: median {times[len(times) // 2]:.1f} ms, "
      f"p90 {times[int(len(times) * 0.9)]:.1f} ms, min {times[0]:.1f} ms; peak RSS {peak_kib / 1024:.1f} MB")
EOF
