#!/usr/bin/env bash
# The Docker image cannot be built here (no daemon), so this checks what can drift: that the
# files the Dockerfile's build stage copies are enough to compile certgate. It copies exactly
# those (read from the Dockerfile's COPY lines) into an empty directory and runs
# `cargo check --locked` there, sharing the target directory.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT

# The build stage: the lines before the second FROM.
stage=$(awk '/^FROM /{n++} n==1' Dockerfile)
workdir=$(printf '%s\n' "$stage" | awk '$1=="WORKDIR"{print $2}' | tail -n1)
[ -n "$workdir" ] || { echo "docker-context: the build stage has no WORKDIR" >&2; exit 1; }
while read -r _ args; do
  # COPY src... dest (no --from in the build stage).
  read -r -a parts <<<"$args"
  dest=${parts[-1]}
  unset 'parts[-1]'
  case "$dest" in /*) ;; *) dest="$workdir/$dest" ;; esac
  target="$context$dest"
  for source in "${parts[@]}"; do
    if [[ "$dest" == */ ]]; then
      mkdir -p "$target"
      cp -a "$root/$source" "$target"
    else
      mkdir -p "$(dirname "$target")"
      cp -a "$root/$source" "$target"
    fi
  done
done < <(printf '%s\n' "$stage" | grep -E '^COPY ' | grep -v -- '--from')

cd "$context$workdir"
echo "docker-context: cargo check --locked in a copy of the Dockerfile's build context ($(ls | tr '\n' ' '))"
CARGO_TARGET_DIR="$root/target" cargo check --locked --quiet --bin certgate
