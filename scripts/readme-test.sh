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
trap 'pkill -f "$work/target/release/certgate" 2>/dev/null || true; rm -rf "$work"' EXIT
python3 scripts/readme_walkthrough.py "$readme" target/debug/certgate "$work"
