#!/usr/bin/env bash
# Where nuncio's HTTP hot path spends its time: a bounded h2load run (HTTP/1.1,
# keep-alive, `GET /` with a 13-byte body) through nuncio (`--concurrency 1`)
# to a backend nginx, measured three ways, one run each:
#   1. CPU profile: `perf record -e cpu-clock` on nuncio (software clock: this VM
#      has no hardware counters; `perf stat -e instructions true` says
#      "<not supported>"), then `perf report` top symbols, flat and by DSO.
#   2. Syscalls per request: `strace -c -f` on nuncio (strace slows it; the
#      counts are what matter), divided by the requests answered.
#   3. Heap allocations per request: uprobes on libc malloc/calloc/realloc
#      counted with `perf stat` (Rust's default allocator is libc's). The probes
#      are added here and deleted on exit. Skipped if uprobes are unavailable.
#
#   cargo build --release      # [profile.release] has debug = 1: symbols for perf
#   benches/profile_http.sh    # ~2 min on a busy 2-core VM; report in $RUN_DIR/report.txt
#
# Knobs (env): NUNCIO_BIN=target/release/nuncio REQUESTS=100000 CONNS=64
#   NO_UPROBES=1 (skip the malloc count: its uprobes are global to the machine)
#   PATH_=/ PROXY_CPU=1 LOAD_CPU=0 RUN_DIR=/tmp/nuncio-profile CALL_GRAPH=0 (1: dwarf
#   call graphs, bigger and slower)
# Loopback only; ports chosen by the OS; every process started here is stopped
# on exit (trap, by PID). Needs root for perf on another process and uprobes.
# Not part of the test run.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
NUNCIO_BIN=${NUNCIO_BIN:-$ROOT/target/release/nuncio}
REQUESTS=${REQUESTS:-100000}
CONNS=${CONNS:-64}
PATH_=${PATH_:-/}
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
RUN_DIR=${RUN_DIR:-/tmp/nuncio-profile}
CALL_GRAPH=${CALL_GRAPH:-0}
LIBC=$(ldd "$NUNCIO_BIN" | awk '/libc\.so/ {print $3}')

LOG_TAG=profile STOP_TENTHS=50
# shellcheck source=benches/lib.sh
source "$HERE/lib.sh"
need_tools "" h2load nginx perf strace python3 taskset ss
PROBES=()
cleanup_extra() {
  local p
  for p in "${PROBES[@]}"; do perf probe -q -d "$p" 2>/dev/null || true; done
}
load() {  # load N: N requests through nuncio; prints the number answered 2xx
  taskset -c "$LOAD_CPU" h2load --h1 -n "$1" -c "$CONNS" -t 1 "http://127.0.0.1:$PORT$PATH_" >"$RUN_DIR/h2load.txt"
  sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p' "$RUN_DIR/h2load.txt"
}

taskset -pc "$LOAD_CPU" $$ >/dev/null
BACKEND_PORT=$(free_port)
PORT=$(free_port)
start_backend "$BACKEND_PORT" "$LOAD_CPU"
write_bench_config "$PORT" "$BACKEND_PORT" "$RUN_DIR/nuncio.yaml"
start_proc nuncio "$PORT" "$PROXY_CPU" "$NUNCIO_BIN" -c "$RUN_DIR/nuncio.yaml" --concurrency 1 -l warn
NPID=$LAST_PID
REPORT=$RUN_DIR/report.txt
: >"$REPORT"
load 20000 >/dev/null   # warm up: pools filled, buffers grown

set +o pipefail   # the reports below are cut with head
# 1. CPU profile
log "perf record on pid $NPID during $REQUESTS requests"
cg=(); [[ $CALL_GRAPH == 1 ]] && cg=(--call-graph dwarf,16384)
perf record -q -e cpu-clock -F 2000 "${cg[@]}" -p "$NPID" -o "$RUN_DIR/perf.data" 2>/dev/null &
PERF=$!; STARTED+=("$PERF"); sleep 0.5
n=$(load "$REQUESTS")
kill -INT "$PERF"; wait "$PERF" 2>/dev/null || true
{
  echo "== $n requests, $(grep -o 'finished in .*' "$RUN_DIR/h2load.txt")"
  echo "== perf: share of nuncio's CPU samples by DSO"
  perf report -i "$RUN_DIR/perf.data" --no-children --sort dso --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -8
  echo "== perf: top symbols"
  perf report -i "$RUN_DIR/perf.data" --no-children --sort dso,symbol --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -45
} >>"$REPORT"

# 2. syscalls per request
log "strace -c on pid $NPID during $((REQUESTS / 4)) requests"
strace -c -f -p "$NPID" -o "$RUN_DIR/strace.txt" &
ST=$!; STARTED+=("$ST"); sleep 1
n=$(load $((REQUESTS / 4)))
kill -INT "$ST"; wait "$ST" 2>/dev/null || true
python3 - "$RUN_DIR/strace.txt" "$n" >>"$REPORT" <<'EOF'
import sys
n = int(sys.argv[2]); total = 0; rows = []
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
        calls = int(f[3]); total += calls; rows.append((calls, f[-1]))
print(f"== syscalls per request ({n} requests): {total / n:.2f}")
for calls, name in sorted(rows, reverse=True)[:10]:
    print(f"   {name:<14} {calls / n:6.2f}")
EOF

# 3. heap allocations per request (uprobes on libc)
if [[ -n "$LIBC" && -z "${NO_UPROBES:-}" ]] && perf probe -q -x "$LIBC" malloc 2>/dev/null; then
  PROBES+=(probe_libc:malloc)
  for f in calloc realloc; do perf probe -q -x "$LIBC" "$f" 2>/dev/null && PROBES+=("probe_libc:$f"); done
  log "counting ${PROBES[*]} during $((REQUESTS / 4)) requests"
  ev=$(IFS=,; echo "${PROBES[*]}")
  perf stat -x, -e "$ev" -p "$NPID" -o "$RUN_DIR/allocs.txt" &
  PS=$!; STARTED+=("$PS"); sleep 0.5
  n=$(load $((REQUESTS / 4)))
  kill -INT "$PS"; wait "$PS" 2>/dev/null || true
  python3 - "$RUN_DIR/allocs.txt" "$n" >>"$REPORT" <<'EOF'
import sys
n = int(sys.argv[2])
print(f"== heap allocations per request ({n} requests)")
for line in open(sys.argv[1]):
    f = line.strip().split(",")
    if len(f) > 2 and f[0].replace(".", "").isdigit():
        print(f"   {f[2]:<22} {int(float(f[0])) / n:6.2f}")
EOF
else
  echo "== heap allocations: uprobes unavailable (perf probe -x libc malloc failed)" >>"$REPORT"
fi
cat "$REPORT"
