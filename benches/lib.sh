# Shared by the bench scripts (source it after `set -euo pipefail`): checks for the tools and
# the nuncio binary, starts processes pinned to a CPU and waits until their port listens,
# and stops every process a script started when it exits (trap, by PID, newest first).
#
# The sourcing script sets LOG_TAG (the log prefix) and RUN_DIR (where started processes'
# output goes) and may set PRIO (start_proc runs processes under `nice -n PRIO`; unset: not
# niced), STOP_TENTHS (how long stop_pid waits for a TERM, in tenths of a second; default 100),
# LISTEN_TENTHS (how long wait_listen waits; default 100), and define `cleanup_extra` (run by
# the exit trap after the processes are stopped). Loopback only.

STARTED=()
LAST_PID=

log() { printf '[%s %(%H:%M:%S)T] %s\n' "$LOG_TAG" -1 "$*" >&2; }

need_tools() {  # need_tools HINT TOOL...: exit 2 naming the first missing tool
  local hint=$1 tool; shift
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "missing tool: $tool${hint:+ ($hint)}" >&2; exit 2; }
  done
  [[ -x "$NUNCIO_BIN" ]] || { echo "no nuncio at $NUNCIO_BIN (cargo build --release)" >&2; exit 2; }
}

stop_pid() {  # stop one process we started: TERM, up to STOP_TENTHS/10 s, then KILL
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq "${STOP_TENTHS:-100}"); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$? i
  trap - EXIT INT TERM
  for ((i=${#STARTED[@]}-1; i>=0; i--)); do stop_pid "${STARTED[i]}"; done
  if declare -F cleanup_extra >/dev/null; then cleanup_extra || true; fi
  [[ $rc -ne 0 ]] && log "exited with status $rc (files in $RUN_DIR)"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_listen() {  # wait_listen PORT PID: until PORT is listening (without connecting to it)
  local i
  for i in $(seq "${LISTEN_TENTHS:-100}"); do
    kill -0 "$2" 2>/dev/null || { log "process $2 died while starting (port $1)"; return 1; }
    [[ -n "$(ss -ltnH "sport = :$1" 2>/dev/null)" ]] && return 0
    sleep 0.1
  done
  log "port $1 did not open"; return 1
}

start_proc() {  # start_proc NAME PORT CPU CMD... -> LAST_PID (output in $RUN_DIR/NAME.out)
  local name=$1 port=$2 cpu=$3; shift 3
  if [[ -n "${PRIO:-}" ]]; then
    nice -n "$PRIO" taskset -c "$cpu" "$@" >"$RUN_DIR/$name.out" 2>&1 &
  else
    taskset -c "$cpu" "$@" >"$RUN_DIR/$name.out" 2>&1 &
  fi
  LAST_PID=$!
  STARTED+=("$LAST_PID")
  wait_listen "$port" "$LAST_PID" || { cat "$RUN_DIR/$name.out" >&2; return 1; }
}

stop_started() {  # stop_started PID: stop it now and forget it
  local pid=$1 i
  stop_pid "$pid"
  for i in "${!STARTED[@]}"; do [[ "${STARTED[i]}" == "$pid" ]] && unset 'STARTED[i]'; done
  STARTED=("${STARTED[@]}")
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # utime + stime of PID

start_backend() {  # start_backend PORT CPU: the backend nginx (1 worker, keep-alive): `GET /` ->
  # "Hello, World\n" (13 bytes), `GET /4k` -> 4096 bytes; files under $RUN_DIR; -> LAST_PID
  mkdir -p "$RUN_DIR/tmp" "$RUN_DIR/www"
  head -c 4096 /dev/zero | tr '\0' 'a' >"$RUN_DIR/www/4k"
  cat >"$RUN_DIR/backend.conf" <<CONF
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
    listen 127.0.0.1:$1 backlog=4096;
    location = / { return 200 "Hello, World\n"; }
    location = /4k { try_files /4k =404; }
  }
}
CONF
  start_proc backend "$1" "$2" nginx -p "$RUN_DIR/" -c "$RUN_DIR/backend.conf" -g 'daemon off;'
}

write_bench_config() {  # write_bench_config PORT BACKEND_PORT FILE [HCM_LINES]: one HTTP listener
  # routing everything to one static cluster, as peers.sh's envoy-bench.yaml (generate_request_id
  # off, circuit breakers out of the way); HCM_LINES (10-space indented) go into the HCM config
  cat >"$3" <<CONF
static_resources:
  listeners:
  - name: bench
    address: {socket_address: {address: 127.0.0.1, port_value: $1}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          generate_request_id: false
${4:-}
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
    circuit_breakers:
      thresholds:
      - {priority: DEFAULT, max_connections: 1000000, max_pending_requests: 1000000, max_requests: 1000000}
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: $2}}}
CONF
}
