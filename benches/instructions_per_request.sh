#!/usr/bin/env bash
# User-space instructions per proxied request, counted by valgrind's callgrind:
# a deterministic figure for nuncio's own CPU cost on a machine without
# hardware counters and with noisy timing (shared 2-core VM). The kernel's
# share (the syscalls) is not counted: callgrind sees user space only.
#
# Setup, as ../shared/bench/peers.sh: backend nginx (1 worker, `GET /` ->
# "Hello, World\n", `GET /4k` -> 4096 bytes) and nuncio (`--concurrency 1`) on
# peers.sh's listener + cluster config (conf/envoy-bench.yaml), nuncio under
# `valgrind --tool=callgrind`. A warm-up load fills the pools and grows the
# buffers; the counters are then zeroed (`callgrind_control -z`), REQUESTS
# keep-alive requests are driven through (`h2load --h1 -c CONNS -t 1`), and the
# profile is dumped (`callgrind_control -d`). For each path the report gives:
#   - Ir (instructions executed) per request, in total and by object file
#     (nuncio itself, libc, ld.so/vdso);
#   - the top functions by self cost (exclusive Ir per request).
# Figures move a little with batching (how many events one epoll_wait
# returns), so compare runs with the same CONNS and REQUESTS.
#
#   cargo build --release      # [profile.release] has debug = 1: symbols
#   benches/instructions_per_request.sh      # ~2 min; report in $RUN_DIR/report.txt
#   benches/callgrind_self_cost.py $RUN_DIR/callgrind.out.root 20000 --tree 'ConnectionManager<U>::dispatch$'
#       # drill down ('root' = the path `/`, '4k' = `/4k`; see the helper's docs: --callers too)
#
# Knobs (env): NUNCIO_BIN=target/release/nuncio REQUESTS=20000 WARMUP=2000
#   CONNS=16 PATHS="/ /4k" TOP=40 RUN_DIR=/tmp/nuncio-cpu-http
# Loopback only; ports chosen by the OS; every process started here is stopped
# on exit (trap, by PID). Not part of the test run.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
NUNCIO_BIN=${NUNCIO_BIN:-$ROOT/target/release/nuncio}
REQUESTS=${REQUESTS:-20000}
WARMUP=${WARMUP:-2000}
CONNS=${CONNS:-16}
PATHS=${PATHS:-/ /4k}
TOP=${TOP:-40}
RUN_DIR=${RUN_DIR:-/tmp/nuncio-cpu-http}

for tool in valgrind callgrind_control h2load nginx python3 ss; do
  command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 2; }
done
[[ -x "$NUNCIO_BIN" ]] || { echo "no nuncio at $NUNCIO_BIN (cargo build --release)" >&2; exit 2; }

STARTED=()
log() { printf '[ipr %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
stop_pid() {
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$? i
  trap - EXIT INT TERM
  for ((i=${#STARTED[@]}-1; i>=0; i--)); do stop_pid "${STARTED[i]}"; done
  [[ $rc -ne 0 ]] && log "exited with status $rc (files in $RUN_DIR)"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_listen() {
  local i
  for i in $(seq 600); do
    kill -0 "$2" 2>/dev/null || { log "process $2 died while starting (port $1)"; return 1; }
    [[ -n "$(ss -ltnH "sport = :$1" 2>/dev/null)" ]] && return 0
    sleep 0.1
  done
  log "port $1 did not open"; return 1
}
load() {  # load N PATH: N requests through nuncio; prints the number answered 2xx
  h2load --h1 -n "$1" -c "$CONNS" -t 1 "http://127.0.0.1:$PORT$2" >"$RUN_DIR/h2load.txt"
  sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p' "$RUN_DIR/h2load.txt"
}

dump() {  # dump TAG: callgrind's counters since the last zeroing -> $RUN_DIR/callgrind.out.TAG
  local try i out
  for try in 1 2 3 4 5; do
    callgrind_control --dump="$1" "$NPID" >>"$RUN_DIR/callgrind_control.log" 2>&1 || true
    # A dump is complete once its last line (`totals:`) is written; vgdb sometimes loses a
    # command sent while the process sleeps in epoll_wait, so ask again if none comes.
    for i in $(seq 100); do
      out=$(grep -l '^totals:' "$RUN_DIR"/callgrind.out."$NPID".* 2>/dev/null | head -1 || true)
      if [[ -n "$out" ]]; then
        mv "$out" "$RUN_DIR/callgrind.out.$1"
        return 0
      fi
      sleep 0.1
    done
    log "no dump after try $try; asking again"
  done
  return 1
}

mkdir -p "$RUN_DIR/tmp" "$RUN_DIR/www"
rm -f "$RUN_DIR"/callgrind.out.* "$RUN_DIR/callgrind_control.log"
head -c 4096 /dev/zero | tr '\0' 'a' >"$RUN_DIR/www/4k"
BACKEND_PORT=$(free_port)
PORT=$(free_port)
cat >"$RUN_DIR/backend.conf" <<EOF
worker_processes 1;
pid backend.pid;
error_log backend.error.log warn;
events { worker_connections 1024; use epoll; }
http {
  access_log off;
  client_body_temp_path tmp/body; proxy_temp_path tmp/proxy; fastcgi_temp_path tmp/fastcgi;
  uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi;
  keepalive_timeout 300s;
  keepalive_requests 100000000;
  root www;
  server {
    listen 127.0.0.1:$BACKEND_PORT backlog=4096;
    location = / { return 200 "Hello, World\n"; }
    location = /4k { try_files /4k =404; }
  }
}
EOF
sed -e "s|@PORT@|$PORT|g" -e "s|@BACKEND_PORT@|$BACKEND_PORT|g" \
  /work/shared/bench/conf/envoy-bench.yaml >"$RUN_DIR/nuncio.yaml" 2>/dev/null || cat >"$RUN_DIR/nuncio.yaml" <<EOF
static_resources:
  listeners:
  - name: bench
    address: {socket_address: {address: 127.0.0.1, port_value: $PORT}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          generate_request_id: false
          route_config:
            virtual_hosts:
            - {name: backend, domains: ["*"], routes: [{match: {prefix: "/"}, route: {cluster: backend}}]}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: backend
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: $BACKEND_PORT}}}
EOF

nginx -p "$RUN_DIR/" -c "$RUN_DIR/backend.conf" -g 'daemon off;' >"$RUN_DIR/backend.out" 2>&1 &
STARTED+=("$!")
wait_listen "$BACKEND_PORT" "$!"
valgrind --tool=callgrind --callgrind-out-file="$RUN_DIR/callgrind.out.%p" \
  "$NUNCIO_BIN" -c "$RUN_DIR/nuncio.yaml" --concurrency 1 -l warn >"$RUN_DIR/nuncio.out" 2>&1 &
NPID=$!
STARTED+=("$NPID")
wait_listen "$PORT" "$NPID" || { cat "$RUN_DIR/nuncio.out" >&2; exit 1; }

REPORT=$RUN_DIR/report.txt
{
  echo "== instructions per request (callgrind, user space only)"
  echo "   $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?'); REQUESTS=$REQUESTS CONNS=$CONNS"
} >"$REPORT"
for path in $PATHS; do
  tag=$(echo "$path" | sed -e 's|^/$|root|' -e 's|^/||' -e 's|/|_|g')
  log "warm-up: $WARMUP requests on $path"
  load "$WARMUP" "$path" >/dev/null
  callgrind_control -z "$NPID" >/dev/null
  log "measuring: $REQUESTS requests on $path"
  n=$(load "$REQUESTS" "$path")
  [[ "$n" == "$REQUESTS" ]] || log "warning: $n of $REQUESTS requests answered 2xx"
  dump "$tag"
  python3 "$HERE/callgrind_self_cost.py" "$RUN_DIR/callgrind.out.$tag" "$n" "$path" "$TOP" >>"$REPORT"
done
cat "$REPORT"
