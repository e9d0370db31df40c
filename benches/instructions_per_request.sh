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
#   CONNS=16 PATHS="/ /4k" TOP=40 RUN_DIR=/tmp/nuncio-cpu-http PROXY_CPU=1 LOAD_CPU=0
#   CACHE_SIM=1: also simulate the caches (`--cache-sim=yes`, ~1.5x slower) and report the
#   first-level instruction-cache misses per request (I1mr) by function. The request path runs
#   ~15k mostly straight-line instructions (~60 KiB of code, twice a 32 KiB L1i), so its code
#   footprint costs misses on every request; use CONNS=64 as peers.sh's wrk does.
#   (nuncio pinned to PROXY_CPU, the backend nginx to LOAD_CPU; shared helpers: lib.sh)
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

PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}

LOG_TAG=ipr LISTEN_TENTHS=600   # nuncio under valgrind takes seconds to listen
# shellcheck source=benches/lib.sh
source "$HERE/lib.sh"
need_tools "" valgrind callgrind_control h2load nginx python3 taskset ss
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

mkdir -p "$RUN_DIR"
rm -f "$RUN_DIR"/callgrind.out.* "$RUN_DIR/callgrind_control.log"
BACKEND_PORT=$(free_port)
PORT=$(free_port)
write_bench_config "$PORT" "$BACKEND_PORT" "$RUN_DIR/nuncio.yaml"
start_backend "$BACKEND_PORT" "$LOAD_CPU"
CACHE_SIM=${CACHE_SIM:-}
CACHE_ARGS=()
[[ -n "$CACHE_SIM" ]] && CACHE_ARGS=(--cache-sim=yes)
start_proc nuncio "$PORT" "$PROXY_CPU" valgrind --tool=callgrind "${CACHE_ARGS[@]}" --callgrind-out-file="$RUN_DIR/callgrind.out.%p" \
  "$NUNCIO_BIN" -c "$RUN_DIR/nuncio.yaml" --concurrency 1 -l warn
NPID=$LAST_PID

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
  if [[ -n "$CACHE_SIM" ]]; then
    EVENT=I1mr python3 "$HERE/callgrind_self_cost.py" "$RUN_DIR/callgrind.out.$tag" "$n" "$path" "$TOP" >>"$REPORT"
  fi
done
cat "$REPORT"
