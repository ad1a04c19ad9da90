#!/usr/bin/env bash
# Runs README.md's walk-through verbatim (see scripts/readme_walkthrough.py for the format and
# the documented substitutions) against a freshly built debug binary, in a temporary directory,
# on free ports. Fails when a command fails or prints something other than what README.md says.
# Usage: scripts/readme-test.sh [README]
set -euo pipefail
cd "$(dirname "$0")/.."
readme=${1:-README.md}
cargo build --quiet --bin certgate
work=$(mktemp -d)
# Servers the walk-through started, found by their working directory (their command line is the
# README's, relative), are stopped whatever happened.
stop_servers() {
  for pid in $(pgrep -f 'target/release/certgate' || true); do
    [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$work" ] && kill "$pid" 2>/dev/null
  done
  rm -rf "$work"
}
trap stop_servers EXIT
# The binary where cargo put it (CARGO_TARGET_DIR when set).
python3 scripts/readme_walkthrough.py "$readme" "$(realpath "${CARGO_TARGET_DIR:-target}/debug/certgate")" "$work"
