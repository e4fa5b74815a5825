#!/usr/bin/env bash
# Times qapi-gen on QEMU's main schema (parse + check, and parse + check +
# Rust generation), median of RUNS, and compares with QEMU's Python generator's
# reference times measured on this machine type (parse+check 0.55 s,
# full C output 1.52 s).
#
#   bench/qapi-gen.sh            # RUNS=5 by default
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
SCHEMA=${SCHEMA:-../shared/qemu-qapi/schema/qapi/qapi-schema.json}
[ -f "$SCHEMA" ] || { echo "missing $SCHEMA (the QEMU reference schema lives in ../shared)" >&2; exit 1; }
cargo build --release -q -p qapi-gen
BIN=target/release/qapi-gen
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

median() { # seconds for "$@", median of RUNS
  python3 - "$RUNS" "$@" <<'PY'
import statistics, subprocess, sys, time
runs = int(sys.argv[1]); cmd = sys.argv[2:]
times = []
for _ in range(runs):
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    times.append(time.perf_counter() - t)
print(f"{statistics.median(times):.4f} {min(times):.4f} {max(times):.4f}")
PY
}

report() { # label, reference seconds, command...
  local label=$1 ref=$2; shift 2
  read -r med lo hi < <(median "$@")
  python3 -c "import sys; m=float('$med'); r=float('$ref'); print(f'$label median={m*1000:.1f}ms min=${lo}s max=${hi}s runs=$RUNS  qemu-python={r}s  speedup={r/m:.1f}x')"
}

report "check" 0.55 "$BIN" check "$SCHEMA"
report "rust " 1.52 "$BIN" rust "$SCHEMA" --out-dir "$OUT/rust"

# How long the generated crate for the main schema takes to compile
# (cargo check; dependencies built first so only the crate is timed).
if [ "${CRATE_CHECK:-1}" = 1 ]; then
  "$BIN" crate "$SCHEMA" --name qemu-qapi-bench --out-dir "$OUT/crate"
  export CARGO_TARGET_DIR="$OUT/target"
  (cd "$OUT/crate" && cargo check -q 2>/dev/null) || { echo "cargo check of the generated crate failed" >&2; exit 1; }
  for features in "" "--all-features"; do
    touch "$OUT/crate/src/lib.rs"
    t0=$(date +%s.%N)
    (cd "$OUT/crate" && cargo check -q $features)
    t1=$(date +%s.%N)
    python3 -c "print(f'cargo check of the generated main-schema crate (${features:-no features}): {$t1-$t0:.1f}s')"
  done
fi
