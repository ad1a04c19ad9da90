#!/usr/bin/env bash
# Instructions per proxied request in certgate's request path, counted by callgrind: a measure
# that does not depend on the machine's noise (BENCHMARKS.md, "instructions per request").
#
# The release certgate runs under `valgrind --tool=callgrind` with instrumentation off; it proxies
# to `certgate echo` (another process, not counted) with a client certificate required. After a
# warm-up over 8 keep-alive connections, instrumentation is switched on, 2,000 requests are sent
# over the same kind of connections, and the instructions of the certgate process (user space,
# all threads) are divided by the requests. Once over HTTP/1.1, once over h2.
#
# Usage: benches/instructions.sh [COUNT]   (prints one line per protocol)
# The first number is the one every earlier count in BENCHMARKS.md used; the second subtracts a
# run of 3 × COUNT requests from it, so the 8 full handshakes drop out.
# HANDSHAKES=N also counts N full and N resumed handshakes, each with one request.
# KEEP_PROFILES=DIR keeps the callgrind dumps there, for callgrind_annotate.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-2000}
handshakes=${HANDSHAKES:-0}
command -v valgrind >/dev/null || { echo "instructions: install valgrind" >&2; exit 1; }
cargo build --release --quiet -p certgate --bin certgate
cargo build --release --quiet -p certgate-load
bin=$PWD/target/release
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

port=$(free_port); ops=$(free_port); echo_port=$(free_port)
"$bin/certgate" echo --listen "127.0.0.1:$echo_port" >/dev/null 2>&1 &
pids+=($!)
cat >"$work/certgate.toml" <<EOF
[server]
listen = "127.0.0.1:$port"
cert = "$work/dev/server.pem"
key = "$work/dev/server.key"
dev_ca = "$work/dev"
[[trust.ca]]
name = "dev"
cert = "$work/dev/ca.pem"
[upstream]
url = "http://127.0.0.1:$echo_port"
[ops]
listen = "127.0.0.1:$ops"
[log]
level = "warn"
access = false
[store]
url = "sqlite://$work/data/certgate.db"
[pki]
dir = "$work/data/pki"
EOF

measure() { # label load-args...
  local label=$1; shift
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/cg.%p" \
    "$bin/certgate" serve --config "$work/certgate.toml" >"$work/serve.log" 2>&1 &
  local vg=$!
  pids+=("$vg")
  for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$ops/readyz" >/dev/null 2>&1 && break
    sleep 0.2
  done
  local load=("$bin/certgate-load" --target "127.0.0.1:$port" --sni localhost
    --cert "$work/dev/client.pem" --key "$work/dev/client.key" --ca "$work/dev/ca.pem"
    --concurrency 8 --json "$@")
  "${load[@]}" --count 400 >/dev/null
  if [[ " $* " == *" --mode full "* || " $* " == *" --mode resume "* ]]; then
    # Every operation is a connection: count them as they are.
    callgrind_control -z "$vg" >/dev/null
    callgrind_control -i on "$vg" >/dev/null
    "${load[@]}" --count "$handshakes" >"$work/load.json"
    callgrind_control -i off "$vg" >/dev/null
    callgrind_control -d "$vg" >/dev/null
    local total
    total=$(cat "$work"/cg."$vg".* 2>/dev/null | awk '/^totals:/ {sum += $2} END {print sum + 0}')
    if [[ -n ${KEEP_PROFILES:-} ]]; then
      mkdir -p "$KEEP_PROFILES"
      for f in "$work"/cg."$vg".*; do cp "$f" "$KEEP_PROFILES/${label//\//}.$(basename "$f")"; done
    fi
    kill "$vg"
    wait "$vg" 2>/dev/null || true
    rm -f "$work"/cg."$vg"*
    printf '%s: %d instructions per connection (handshake + one request; %d connections)\n' \
      "$label" "$((total / handshakes))" "$handshakes"
    return
  fi
  # Two counted runs on the same server: the first as the method has always been (its 8
  # connections' full handshakes included), the second with 3 × as many requests on 8 new
  # connections; their difference, per extra request, is the request path alone.
  local totals=()
  for n in "$count" "$((3 * count))"; do
    callgrind_control -z "$vg" >/dev/null
    callgrind_control -i on "$vg" >/dev/null
    "${load[@]}" --count "$n" >"$work/load.json"
    callgrind_control -i off "$vg" >/dev/null
    callgrind_control -d "$vg" >/dev/null
    # The totals of the dumps this run made (one file per dump).
    totals+=("$(cat "$work"/cg."$vg".* 2>/dev/null | awk '/^totals:/ {sum += $2} END {print sum + 0}')")
    if [[ -n ${KEEP_PROFILES:-} ]]; then
      mkdir -p "$KEEP_PROFILES"
      for f in "$work"/cg."$vg".*; do cp "$f" "$KEEP_PROFILES/${label//\//}.$n.$(basename "$f")"; done
    fi
    rm -f "$work"/cg."$vg".*
  done
  kill "$vg"
  wait "$vg" 2>/dev/null || true
  rm -f "$work"/cg."$vg"*
  printf '%s: %d instructions per request (%d requests on 8 connections, handshakes included); %d per request without the handshakes\n' \
    "$label" "$((totals[0] / count))" "$count" "$(((totals[1] - totals[0]) / (2 * count)))"
}

measure "HTTP/1.1" --mode keepalive
measure "h2" --mode keepalive --http2
if [[ -n ${HANDSHAKES:-} ]]; then
  measure "full handshake" --mode full
  measure "resumed handshake" --mode resume
fi
