#!/usr/bin/env bash
# Runs every test: formatting, clippy, the Dockerfile's build context, unit and integration tests
# (debug profile). Installs what the tests need when it is missing, so that a fresh machine
# passes: curl and openssl (clients), nginx and python3 (real upstreams), strongSwan's pki (an EST
# client). Tests start their own throw-away servers on free loopback ports and stop them.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
need() { command -v "$1" >/dev/null 2>&1 || need_apt+=("$2"); }
need curl curl
need openssl openssl
need python3 python3
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || need_apt+=(nginx)
need pki strongswan-pki
# pki parses EC keys and speaks ECDSA TLS through the openssl plugin.
[ -e /usr/lib/ipsec/plugins/libstrongswan-openssl.so ] \
  || ls /usr/lib/*/ipsec/plugins/libstrongswan-openssl.so >/dev/null 2>&1 \
  || need_apt+=(libstrongswan-standard-plugins)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "test.sh: installing ${need_apt[*]}"
  apt-get update -qq
  # A policy-rc.d keeps the packages' own services (nginx) from starting: tests run their own.
  made_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  [ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
fi

echo "test.sh: cargo fmt --check"
cargo fmt --all -- --check
echo "test.sh: cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "test.sh: the Dockerfile's build context"
scripts/docker-context.sh
echo "test.sh: cargo test"
cargo test --all-targets 2>&1
echo "test.sh: README.md's walk-through"
scripts/readme-test.sh
# The walk-through test must fail when the README does: a copy with one command broken.
broken=$(mktemp)
sed 's/^\$ certgate corp add --corp-id /$ certgate corp add --corporation /' README.md >"$broken"
if scripts/readme-test.sh "$broken" >/dev/null 2>&1; then
  echo "test.sh: scripts/readme-test.sh passed a README with a broken command" >&2
  rm -f "$broken"
  exit 1
fi
rm -f "$broken"
echo "test.sh: a README with a broken command fails scripts/readme-test.sh, as it should"
