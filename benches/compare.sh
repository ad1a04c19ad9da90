#!/usr/bin/env bash
# certgate vs nginx, side by side: mTLS handshakes and keep-alive requests per server CPU-second,
# and resident memory per idle TLS connection.
#
#   benches/compare.sh [--rsa] [--duration 10s] [--rounds 3] [--slices 1] [--idle-connections 10000]
#                      [--modes "full resume keepalive keepalive-h2 keepalive-rate idle"]
#
# Honours CARGO_TARGET_DIR (binaries from ${CARGO_TARGET_DIR:-target}/release). Needs root only to
# install nginx when it is missing and to raise `ulimit -n` above the hard limit for the idle mode.
#
# What it does, in one run so that the machine's noise hits both alike:
#   - builds release; makes one CA, a server and a client certificate (ECDSA P-256, or RSA-2048
#     with --rsa) with the openssl CLI;
#   - starts `certgate echo` as the shared upstream, certgate, and nginx (Debian's; installed when
#     missing) configured equivalently: client certificate required, TLS 1.3, one session ticket
#     per handshake, proxy to the same upstream over pooled keep-alive connections, the same
#     identity headers, no access log;
#   - pins each server to CPU 0 and the load tool (and the upstream) to CPU 1; certgate then runs
#     one tokio worker, nginx one worker process;
#   - offers only X25519 to both (Debian's nginx has no X25519MLKEM768, which rustls prefers);
#   - counts each server's CPU time (user + system, all threads and child processes) from /proc,
#     so rates are per server CPU-second: on two cores the load tool needs about as much CPU per
#     handshake as the server, so wall-clock rates would measure the client;
#   - counts from the end of each run's 1-s warm-up (the load tool announces it), so that neither
#     the connections' set-up nor the first resumptions' full handshakes are in the count;
#   - with --slices N, splits each round of the throughput modes (full, resume, keepalive,
#     keepalive-h2) into N slices per server, alternating certgate nginx nginx certgate ..., and
#     adds them up per round: on a host whose speed drifts over tens of seconds, both servers
#     then see the same drift (p50/p99/max of a sliced round are its slices' highest);
#   - runs every mode against both, alternating which goes first, for --rounds rounds, and prints
#     medians, the ratio certgate / nginx and each round's ratio with the worst of them (the
#     targets bound every round); the table, every run and the environment go to
#     benches/results/.
# Modes:
#   full           new connection + full handshake + one GET + close (32 workers)
#   resume         the same with TLS 1.3 ticket resumption (32 workers)
#   keepalive      HTTP/1.1 requests on 64 open connections, as fast as they go
#   keepalive-h2   the same over h2 (one stream in flight per connection)
#   keepalive-rate HTTP/1.1 keep-alive at a fixed 4,000 requests/s on 64 connections: latency
#                  when neither side is saturated (closed-loop latency at saturation mostly
#                  measures queueing in the load tool, which shares its core with the upstream)
#   idle           --idle-connections idle TLS connections (full handshake + one request each,
#                  then held): server resident memory per connection, sampled during the hold on
#                  a freshly started server (so memory freed by earlier modes cannot hide any)
set -euo pipefail
cd "$(dirname "$0")/.."

key_type=ecdsa
duration=10s
rounds=3
slices=1
idle_connections=10000
modes="full resume keepalive keepalive-h2 keepalive-rate idle"
while [ $# -gt 0 ]; do
  case "$1" in
    --rsa) key_type=rsa; shift ;;
    --duration) duration=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --slices) slices=$2; shift 2 ;;
    --modes) modes=$2; shift 2 ;;
    --idle-connections) idle_connections=$2; shift 2 ;;
    *) echo "compare.sh: unknown argument $1 (see the header of this file)" >&2; exit 2 ;;
  esac
done

[[ $duration =~ ^[1-9][0-9]*s$ ]] \
  || { echo "compare.sh: --duration must be whole seconds, at least 1, like 10s" >&2; exit 2; }
[[ $slices =~ ^[1-9][0-9]*$ ]] \
  || { echo "compare.sh: --slices must be a whole number of at least 1" >&2; exit 2; }
seconds=${duration%s}
if [ $(( seconds * 1000 / slices )) -lt 1000 ]; then
  echo "compare.sh: --duration $duration in $slices slices leaves less than 1 s per slice" >&2; exit 2
fi

if ! command -v nginx >/dev/null 2>&1; then
  echo "compare.sh: installing nginx" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
fi
command -v taskset >/dev/null || { echo "compare.sh: taskset (util-linux) is needed" >&2; exit 2; }
[ "$(nproc)" -ge 2 ] || { echo "compare.sh: needs 2 CPUs (server on one, load on the other)" >&2; exit 2; }

# The server and the load tool are separate packages of the workspace; both land in one target dir.
cargo build --release --quiet -p certgate --bin certgate
cargo build --release --quiet -p certgate-load
bin=${CARGO_TARGET_DIR:-target}/release
work=$(mktemp -d /tmp/certgate-compare.XXXXXX)
upstream_pid=""; certgate_pid=""; nginx_pid=""
cleanup() {
  for pid in $certgate_pid $nginx_pid $upstream_pid; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
# The servers and the load tool each need a descriptor per idle connection (nginx one more per
# upstream connection); above the hard limit only a privileged user may go.
fds=$(( idle_connections + 1024 ))
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$fds" ]; then
  ulimit -Hn "$fds" 2>/dev/null \
    || echo "compare.sh: the hard fd limit $(ulimit -Hn) is below $fds; the idle mode may fail" >&2
fi
ulimit -n "$(ulimit -Hn)"
fds=$(ulimit -n); [ "$fds" = unlimited ] && fds=1048576

# --- certificates -----------------------------------------------------------------------------
if [ "$key_type" = rsa ]; then newkey=(-newkey rsa:2048); else newkey=(-newkey ec -pkeyopt ec_paramgen_curve:P-256); fi
openssl req -x509 "${newkey[@]}" -nodes -keyout "$work/ca.key" -out "$work/ca.pem" -days 30 \
  -subj "/O=Bench Bank/OU=Bench Internet Banking CA/CN=Bench CA" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
issue() { # name subject ext
  openssl req -new "${newkey[@]}" -nodes -keyout "$work/$1.key" -out "$work/$1.csr" -subj "$2" 2>/dev/null
  printf '%s\n' "$3" > "$work/$1.ext"
  openssl x509 -req -in "$work/$1.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
    -days 30 -out "$work/$1.pem" -extfile "$work/$1.ext" 2>/dev/null
}
issue server "/CN=localhost" "subjectAltName=DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth"
issue client "/O=Bench Bank/CN=12345678901234 bench" "extendedKeyUsage=clientAuth
keyUsage=critical,digitalSignature"

# --- servers ----------------------------------------------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
upstream_port=$(free_port); certgate_port=$(free_port); nginx_port=$(free_port)

wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }

taskset -c 1 "$bin/certgate" echo --listen "127.0.0.1:$upstream_port" 2>/dev/null & upstream_pid=$!
wait_port "$upstream_port"

cat > "$work/certgate.toml" <<EOF
[server]
listen = "127.0.0.1:$certgate_port"
cert = "$work/server.pem"
key = "$work/server.key"
client_auth = "required"
max_connections = 60000
[[trust.ca]]
name = "bench"
cert = "$work/ca.pem"
[upstream]
url = "http://127.0.0.1:$upstream_port"
pool_max_idle_per_host = 256
[ops]
listen = ""
[log]
level = "warn"
access = false
[store]
url = "sqlite://$work/certgate.db"
[pki]
dir = "$work/pki"
EOF

mkdir -p "$work/nginx"
cat > "$work/nginx.conf" <<EOF
worker_processes 1;
worker_cpu_affinity 01;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
worker_rlimit_nofile $fds;
events { worker_connections 60000; }
http {
  access_log off;
  client_body_temp_path $work/nginx; proxy_temp_path $work/nginx;
  fastcgi_temp_path $work/nginx; uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
  keepalive_requests 1000000;
  upstream app { server 127.0.0.1:$upstream_port; keepalive 256; }
  # The same CN split certgate does: corporation and user from the subject.
  map \$ssl_client_s_dn \$corp_id { "~CN=(?<c>[0-9]{14})" \$c; default ""; }
  map \$ssl_client_s_dn \$user_id { "~CN=[0-9]{14} (?<u>[A-Za-z0-9]{1,30})" \$u; default ""; }
  server {
    # nginx 1.22 enables h2 on the listen line (the http2 directive came in 1.25.1).
    listen 127.0.0.1:$nginx_port ssl http2;
    ssl_certificate $work/server.pem;
    ssl_certificate_key $work/server.key;
    ssl_client_certificate $work/ca.pem;
    ssl_verify_client on;
    ssl_protocols TLSv1.3;
    ssl_ecdh_curve X25519;
    ssl_session_cache shared:SSL:50m;
    ssl_session_tickets on;
    # certgate sends one TLS 1.3 ticket per handshake; OpenSSL's default is two.
    ssl_conf_command NumTickets 1;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      # Inbound identity headers must not reach the application (certgate strips X-Client-*).
      proxy_set_header X-Client-Verify \$ssl_client_verify;
      proxy_set_header X-Client-Role general;
      proxy_set_header X-Client-Corp-Id \$corp_id;
      proxy_set_header X-Client-User-Id \$user_id;
      proxy_set_header X-Client-Cert-Serial \$ssl_client_serial;
      proxy_set_header X-Client-Cert-Not-After \$ssl_client_v_end;
      proxy_set_header X-Client-Cert-Days-Left \$ssl_client_v_remain;
      proxy_set_header X-Client-Cert-Sha256 \$ssl_client_fingerprint;
      proxy_set_header X-Client-Subject-DN \$ssl_client_s_dn;
      proxy_set_header X-Client-Issuer-DN \$ssl_client_i_dn;
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_set_header X-Forwarded-Proto https;
      proxy_set_header X-Forwarded-Host \$http_host;
    }
  }
}
EOF

start_certgate() {
  taskset -c 0 "$bin/certgate" serve --config "$work/certgate.toml" 2>>"$work/certgate.log" &
  certgate_pid=$!
  wait_port "$certgate_port"
}
start_nginx() {
  taskset -c 0 nginx -c "$work/nginx.conf" -g 'daemon off;' 2>>"$work/nginx/stderr.log" &
  nginx_pid=$!
  wait_port "$nginx_port"
}
stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
restart() { # name
  if [ "$1" = certgate ]; then stop_pid "$certgate_pid"; start_certgate; else stop_pid "$nginx_pid"; start_nginx; fi
}
start_certgate
start_nginx

# CPU time (user + system) of a process and its children, in clock ticks, from /proc. A
# process's stat covers all its threads, including exited ones.
tree_pids() { echo "$1"; pgrep -P "$1" || true; }
cpu_ticks() { local total=0 pid; for pid in $(tree_pids "$1"); do
    [ -r "/proc/$pid/stat" ] && total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat"))); done; echo "$total"; }
rss_kib() { local total=0 pid; for pid in $(tree_pids "$1"); do
    [ -r "/proc/$pid/status" ] && total=$((total + $(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status"))); done; echo "$total"; }
hz=$(getconf CLK_TCK)

load() { # port load-tool-args...
  local port=$1; shift
  taskset -c 1 "$bin/certgate-load" --target "127.0.0.1:$port" --sni localhost \
    --cert "$work/client.pem" --key "$work/client.key" --ca "$work/ca.pem" \
    --groups x25519 --tls13-only --json "$@"
}

results="$work/results.tsv"
: > "$results"
# One row per run: name mode round measure wall-seconds json. measure = server CPU ticks, or for
# idle the server's RSS growth in KiB.
run_one() { # server-name pid port mode round slice run-duration
  local name=$1 pid=$2 port=$3 mode=$4 round=$5 slice=$6 run_duration=$7 args=() before after json t0 t1 line
  case "$mode" in
    full|resume) args=(--mode "$mode" --concurrency 32) ;;
    keepalive) args=(--mode keepalive --concurrency 64) ;;
    keepalive-h2) args=(--mode keepalive --http2 --concurrency 64) ;;
    keepalive-rate) args=(--mode keepalive --concurrency 64 --rate 4000) ;;
  esac
  # An unmeasured warm-up (upstream pool, caches, the connections' set-up, the first tickets)
  # in the same run: the server's CPU is counted from the line that ends it. The load tool's
  # stderr comes through a FIFO, so that line is read as it is written, without polling.
  rm -f "$work/err.fifo"; mkfifo "$work/err.fifo"
  load "$port" "${args[@]}" --warmup 1s --duration "$run_duration" >"$work/load.json" 2>"$work/err.fifo" &
  local loader=$!
  exec 7<"$work/err.fifo"
  while IFS= read -r line <&7; do
    echo "$line" >> "$work/load.log"
    [[ $line == *"certgate-load: measuring"* ]] && break
  done
  before=$(cpu_ticks "$pid"); t0=$(date +%s.%N)
  cat <&7 >> "$work/load.log"
  wait "$loader" || true
  after=$(cpu_ticks "$pid"); t1=$(date +%s.%N)
  exec 7<&-
  json=$(cat "$work/load.json")
  [ -n "$json" ] || { echo "  $name $mode round $round: the load tool failed (see below)" >&2; tail -3 "$work/load.log" >&2; return; }
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$mode" "$round" "$(( after - before ))" \
    "$(python3 -c "print(f'{$t1 - $t0:.3f}')")" "$json" >> "$results"
  python3 - "$json" "$(( after - before ))" "$hz" "$name" "$mode" "$round" "$slice" >&2 <<'PY'
import json, sys
d = json.loads(sys.argv[1]); ticks, hz = int(sys.argv[2]), int(sys.argv[3])
cpu = ticks / hz
rate = d["ok"] / cpu if cpu else 0
p99 = d["latency_ms"]["p99"] if d["latency_ms"] else float("nan")
print(f"  {sys.argv[4]} {sys.argv[5]} round {sys.argv[6]}{sys.argv[7]}: {d['ok']} ok in {d['elapsed_secs']:.1f} s "
      f"({d['ops_per_sec']:.0f}/s wall), server CPU {cpu:.2f} s ({100 * cpu / d['elapsed_secs']:.0f}%), "
      f"{rate:.0f}/server-CPU-s, p99 {p99:.2f} ms, load tool busy "
      f"{100 * d.get('client_busy', 0):.0f}% ({d.get('client_cpu_us_per_op', 0):.1f} µs/op), errors {d['errors']}")
PY
}

# The idle mode holds connections open while this script samples the server's memory.
idle_rss() { # name port round
  local name=$1 port=$2 round=$3 pid base now peak=0 loader i
  restart "$name"
  if [ "$name" = certgate ]; then pid=$certgate_pid; else pid=$nginx_pid; fi
  # Lazy one-time set-up (first handshake, upstream pool) is not per-connection memory.
  load "$port" --mode full --concurrency 4 --count 100 >/dev/null 2>&1 || true
  sleep 0.5
  base=$(rss_kib "$pid")
  : > "$work/idle.err"
  load "$port" --mode idle --concurrency "$idle_connections" --ramp-parallel 64 --duration 6s \
    > "$work/idle.json" 2> "$work/idle.err" &
  loader=$!
  while kill -0 "$loader" 2>/dev/null && ! grep -q holding "$work/idle.err"; do sleep 0.2; done
  # Sample during the hold: every connection open, no handshake in flight.
  sleep 1
  for i in 1 2 3 4 5; do now=$(rss_kib "$pid"); [ "$now" -gt "$peak" ] && peak=$now; sleep 0.5; done
  wait "$loader" || true
  if [ ! -s "$work/idle.json" ]; then echo "  $name idle round $round: the load tool failed:" >&2; cat "$work/idle.err" >&2; return; fi
  printf '%s\tidle\t%s\t%s\t0\t%s\n' "$name" "$round" "$(( peak - base ))" "$(cat "$work/idle.json")" >> "$results"
  python3 - "$work/idle.json" "$(( peak - base ))" "$base" "$name" "$round" >&2 <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); grew = int(sys.argv[2])
held = d.get("held") or 0
per = f"{grew / held:.1f} KiB/conn" if held else "-"
print(f"  {sys.argv[4]} idle round {sys.argv[5]}: +{grew} KiB over {sys.argv[3]} KiB for {held} held "
      f"connections ({per}), errors {d['errors']}")
PY
}

echo "compare.sh: $key_type, $duration per run, $rounds round(s), $slices slice(s), modes: $modes" >&2
for round in $(seq "$rounds"); do
  for mode in $modes; do
    if [ $(( round % 2 )) -eq 1 ]; then order="certgate nginx"; else order="nginx certgate"; fi
    # Only the throughput modes are sliced: idle holds its connections for one sample, and the
    # fixed-rate mode measures latency, which a slice's short run would not settle.
    case "$mode" in
      full|resume|keepalive|keepalive-h2) mode_slices=$slices ;;
      *) mode_slices=1 ;;
    esac
    for slice in $(seq "$mode_slices"); do
      label=""; [ "$mode_slices" -gt 1 ] && label=" slice $slice/$mode_slices"
      for name in $order; do
        if [ "$name" = certgate ]; then pid=$certgate_pid; port=$certgate_port; else pid=$nginx_pid; port=$nginx_port; fi
        if [ "$mode" = idle ]; then idle_rss "$name" "$port" "$round"
        else run_one "$name" "$pid" "$port" "$mode" "$round" "$label" "$(( seconds * 1000 / mode_slices ))ms"; fi
      done
      # The next slice starts with the server that ran last: certgate nginx nginx certgate ...
      order=$(echo "$order" | awk '{print $2, $1}')
    done
  done
done

mkdir -p benches/results
stamp=$(date -u +%Y-%m-%dT%H%M%SZ)
out="benches/results/compare-$stamp-$key_type.md"
{
  echo "# certgate vs nginx, $stamp ($key_type)"
  echo
  echo "- machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r)"
  echo "- certgate $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo ' + uncommitted changes'); $(rustc -V)"
  echo "- $(nginx -v 2>&1 | sed 's/^nginx version: //'); $(openssl version)"
  echo "- command: benches/compare.sh --duration $duration --rounds $rounds --slices $slices --idle-connections $idle_connections$([ "$key_type" = rsa ] && echo ' --rsa') --modes \"$modes\""
  echo
} > "$out"
python3 - "$results" "$hz" "$key_type" "$duration" "$rounds" "$slices" >> "$out" <<'PY'
import json, statistics, sys
path, hz, key_type, duration, rounds, slices = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
runs = {}
for line in open(path):
    name, mode, rnd, measure, wall, data = line.rstrip("\n").split("\t", 5)
    runs.setdefault((mode, name, int(rnd)), []).append((int(measure), float(wall), json.loads(data)))

def merged(parts):
    """A round's slices as one run: counts and CPU added up, latencies their slices' highest."""
    measure = sum(m for m, _, _ in parts)
    wall = sum(w for _, w, _ in parts)
    if len(parts) == 1:
        return measure, wall, parts[0][2]
    data = dict(parts[-1][2])
    for key in ("ok", "failed", "elapsed_secs"):
        data[key] = sum(d[key] for _, _, d in parts)
    data["ops_per_sec"] = data["ok"] / data["elapsed_secs"] if data["elapsed_secs"] else 0
    errors = {}
    for _, _, d in parts:
        for kind, count in d["errors"].items():
            errors[kind] = errors.get(kind, 0) + count
    data["errors"] = errors
    latencies = [d["latency_ms"] for _, _, d in parts if d["latency_ms"]]
    data["latency_ms"] = {k: max(l[k] for l in latencies) for k in ("p50", "p99", "max")} if latencies else None
    return measure, wall, data

rows = {}
for (mode, name, rnd), parts in sorted(runs.items()):
    rows.setdefault((mode, name), []).append((rnd, *merged(parts)))
print(f"key type: {key_type}; duration per run: {duration} in {slices} slice(s); rounds: {rounds}; medians over rounds.")
print("Rates are successful operations per second of server CPU time (user + system); idle is the")
print("server's resident-memory growth per held connection (lower is better).\n")
print("| mode | certgate | nginx | certgate / nginx | per round (worst) | certgate p99 ms | nginx p99 ms |")
print("|---|---|---|---|---|---|---|")
MODES = ["full", "resume", "keepalive", "keepalive-h2", "keepalive-rate", "idle"]
for mode in MODES:
    cells = {}
    for name in ["certgate", "nginx"]:
        runs = rows.get((mode, name), [])
        if not runs:
            continue
        if mode == "idle":
            per_conn = [m / d["held"] for _, m, _, d in runs if d.get("held")]
            if per_conn:
                cells[name] = (statistics.median(per_conn), None, "KiB/conn")
        else:
            rates = [d["ok"] / (m / hz) for _, m, _, d in runs if m]
            p99s = [d["latency_ms"]["p99"] for _, _, _, d in runs if d["latency_ms"]]
            if rates:
                cells[name] = (statistics.median(rates), statistics.median(p99s) if p99s else None, "/CPU-s")
    if len(cells) < 2:
        continue
    c, n = cells["certgate"], cells["nginx"]
    ratio = c[0] / n[0] if n[0] else float("nan")
    p99c = f"{c[1]:.2f}" if c[1] is not None else "-"
    p99n = f"{n[1]:.2f}" if n[1] is not None else "-"
    # Each round's ratio: the targets bound every round, not only the median, and on a noisy
    # host the rounds spread far more than the medians show. The worst is the lowest rate ratio,
    # or for idle memory (lower is better) the highest.
    def measure_of(run):
        _, m, _, d = run
        if mode == "idle":
            return m / d["held"] if d.get("held") else None
        return d["ok"] / (m / hz) if m else None
    by_round = {name: {run[0]: measure_of(run) for run in rows.get((mode, name), [])} for name in ["certgate", "nginx"]}
    per_round = [by_round["certgate"][r] / by_round["nginx"][r] for r in sorted(by_round["certgate"])
                 if by_round["certgate"][r] and by_round["nginx"].get(r)]
    worst = (max if mode == "idle" else min)(per_round) if per_round else float("nan")
    rounds_cell = ", ".join(f"{x:.2f}" for x in per_round) + f" ({worst:.2f})"
    print(f"| {mode} | {c[0]:.1f} {c[2]} | {n[0]:.1f} {n[2]} | {ratio:.2f} | {rounds_cell} | {p99c} | {p99n} |")
print("\n## Every run\n")
print("| mode | server | round | ok | failed | wall ops/s | server CPU s | server CPU % | per CPU-s | p50 ms | p99 ms | max ms | errors |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for mode in MODES:
    for name in ["certgate", "nginx"]:
        for rnd, m, wall, d in sorted(rows.get((mode, name), []), key=lambda r: r[0]):
            lat = d["latency_ms"] or {"p50": float("nan"), "p99": float("nan"), "max": float("nan")}
            errs = ", ".join(f"{k} {v}" for k, v in d["errors"].items()) or "-"
            if mode == "idle":
                per = f"{m / d['held']:.1f} KiB/conn" if d.get("held") else "-"
                print(f"| idle | {name} | {rnd} | {d['ok']} opened, {d.get('held')} held | {d['failed']} | {d['ops_per_sec']:.0f} opened/s | - | - | +{m} KiB = {per} | {lat['p50']:.2f} | {lat['p99']:.2f} | {lat['max']:.2f} | {errs} |")
            else:
                cpu = m / hz
                print(f"| {mode} | {name} | {rnd} | {d['ok']} | {d['failed']} | {d['ops_per_sec']:.0f} | {cpu:.2f} | {100 * cpu / d['elapsed_secs']:.0f} | {d['ok'] / cpu if cpu else 0:.0f} | {lat['p50']:.2f} | {lat['p99']:.2f} | {lat['max']:.2f} | {errs} |")
PY
cat "$out"
echo "written to $out" >&2
