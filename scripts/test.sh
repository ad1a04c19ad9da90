#!/usr/bin/env bash
# Runs every test: formatting, clippy, the Dockerfile's build context, unit and integration tests
# (debug profile). Installs what the tests need when it is missing, so that a fresh machine
# passes: curl and openssl (clients), nginx, python3, hypercorn and PHP (real upstreams),
# strongSwan's pki (an EST client), PostgreSQL (the second registry backend), Redis (the
# replicas' change stream), Chromium, Node.js and Playwright (the pages), aiosmtpd (an SMTP
# server for the expiry mails). Tests start their own throw-away servers on
# free loopback ports and stop them; tests that only need a PostgreSQL database make one on the
# machine's server (CERTGATE_TEST_POSTGRES, by default 127.0.0.1:5432) and drop it, and when no
# server answers there this script starts one of its own for the run.
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
# hypercorn honours `Upgrade: h2c`, PHP reads form fields its own way: real applications for
# the attack tests.
python3 -c 'import hypercorn' >/dev/null 2>&1 || need_apt+=(python3-hypercorn)
need php php-cli
need redis-server redis-server
need psql postgresql-client
# The pages are tested in Debian's Chromium driven by Playwright (tests/browser), and
# photographed: a Japanese font makes the screenshots readable.
need chromium chromium
need node nodejs
need npm npm
[ -e /usr/share/fonts/opentype/ipafont-gothic ] || ls /usr/share/fonts/*/*ipa* >/dev/null 2>&1 \
  || ls /usr/share/fonts/opentype/noto/NotoSansCJK* >/dev/null 2>&1 || need_apt+=(fonts-ipafont-gothic)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 \
  || need_apt+=(postgresql)
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
# Playwright, at the version tests/browser/package-lock.json pins.
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  echo "test.sh: npm ci in tests/browser (Playwright)"
  (cd tests/browser && npm ci --no-audit --no-fund --silent)
fi
# When python3 is not Debian's (pyenv), the Debian package does not reach it: its own pip does.
python3 -c 'import hypercorn' >/dev/null 2>&1 || python3 -m pip install --quiet hypercorn
# aiosmtpd: the real SMTP server of the expiry-mail tests (tests/suite/peers/smtp_sink.py).
if ! python3 -c 'import aiosmtpd' >/dev/null 2>&1; then
  python3 -m pip install --quiet aiosmtpd 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages aiosmtpd
fi

# A PostgreSQL server for the throw-away databases: the one given, the machine's, or our own.
own_pg=
stop_own_pg() {
  if [ -n "$own_pg" ]; then
    run_pg "$pg_bin/pg_ctl" -D "$own_pg/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$own_pg"
  fi
}
trap stop_own_pg EXIT
run_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
export CERTGATE_TEST_POSTGRES="${CERTGATE_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres}"
if ! psql "$CERTGATE_TEST_POSTGRES" -qAtc 'SELECT 1' >/dev/null 2>&1; then
  pg_bin=$(dirname "$(command -v initdb 2>/dev/null || ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")
  own_pg=$(mktemp -d)
  chmod 755 "$own_pg"
  [ "$(id -u)" != 0 ] || chown postgres: "$own_pg"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  echo "test.sh: no PostgreSQL at $CERTGATE_TEST_POSTGRES; starting one on 127.0.0.1:$port"
  run_pg "$pg_bin/initdb" -U postgres --auth=trust -D "$own_pg/data" >/dev/null
  run_pg "$pg_bin/pg_ctl" -D "$own_pg/data" -l "$own_pg/log" -w \
    -o "-p $port -k $own_pg -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" start >/dev/null
  export CERTGATE_TEST_POSTGRES="postgres://postgres@127.0.0.1:$port/postgres"
fi

echo "test.sh: cargo fmt --check"
cargo fmt --all -- --check
echo "test.sh: cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "test.sh: the Dockerfile's build context"
scripts/docker-context.sh
echo "test.sh: cargo test"
cargo test --workspace --all-targets 2>&1
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
# compare.sh refuses bad arguments before it installs, builds or starts anything.
for bad in "--slices 0" "--slices x" "--slices 08" "--duration 1.5s" "--duration 10ms" "--duration 0s" \
  "--duration 3s --slices 4"; do
  # shellcheck disable=SC2086 # each case is several words on purpose
  if out=$(benches/compare.sh $bad 2>&1); then
    echo "test.sh: benches/compare.sh $bad was accepted" >&2; exit 1
  elif [ $? -ne 2 ] || [[ $out != "compare.sh: --"* ]]; then
    echo "test.sh: benches/compare.sh $bad did not refuse with exit 2 and a message: $out" >&2; exit 1
  fi
done
echo "test.sh: benches/compare.sh refuses bad --slices and --duration values"
