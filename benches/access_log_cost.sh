#!/usr/bin/env bash
# The cost of access logging: the same wrk load through nuncio's HTTP
# connection manager without an access log and with one
# (`envoy.access_loggers.file`, Envoy's default format), REQUESTS requests
# per run (default 1,000,000; each run also stops after MAX_SECONDS).
#
#   cargo build --release
#   benches/access_log_cost.sh                    # 2 runs of 1,000,000 requests (~1 min)
#   REPEAT=3 benches/access_log_cost.sh           # interleaved rounds, medians
#
# Layout, as ../shared/bench/peers.sh: backend nginx (1 worker, `GET /` ->
# "Hello, World\n") and the load on CPU $LOAD_CPU; nuncio (`--concurrency 1`)
# alone on CPU $PROXY_CPU, on peers.sh's listener + cluster config, plus
# `access_log` for the logged run. The load is h2load in HTTP/1.1 mode
# (`h2load --h1 -n REQUESTS -c CONNS -t 1`, keep-alive, the same load as
# peers.sh's wrk -t1 -c64) because a run must stop after a number of requests:
# wrk cannot (its main thread sleeps the whole -d even when a Lua script stops
# the worker thread). Reported per run: requests, requests/s, nuncio's CPU time
# per request (utime+stime from /proc/PID/stat; the figure to compare on a
# noisy machine), mean latency, and the access-log lines written (checked ==
# requests answered: nothing logged is lost on a clean exit).
#
# Knobs (env): NUNCIO_BIN=target/release/nuncio REQUESTS=1000000 MAX_SECONDS=120
#   CONNS=64 REPEAT=1 PROXY_CPU=1 LOAD_CPU=0 PRIO=-10 RUN_DIR=/tmp/nuncio-alog-bench
# Loopback only; ports chosen by the OS; every process started here is
# stopped on exit (trap, by PID); the log file is deleted after counting.
# Not part of the test run.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
NUNCIO_BIN=${NUNCIO_BIN:-$ROOT/target/release/nuncio}
REQUESTS=${REQUESTS:-1000000}
MAX_SECONDS=${MAX_SECONDS:-120}
CONNS=${CONNS:-64}
REPEAT=${REPEAT:-1}
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
PRIO=${PRIO:--10}
RUN_DIR=${RUN_DIR:-/tmp/nuncio-alog-bench}

LOG_TAG=alog-bench STOP_TENTHS=100
# shellcheck source=benches/lib.sh
source "$HERE/lib.sh"
need_tools "apt-get install -y nghttp2-client nginx" h2load nginx python3 taskset ss curl timeout
cleanup_extra() { rm -f "$RUN_DIR"/access-*.log; }

# ---------------------------------------------------------------- setup
taskset -pc "$LOAD_CPU" $$ >/dev/null
mkdir -p "$RUN_DIR/tmp"
RESULTS=$RUN_DIR/results-$(date +%Y%m%d-%H%M%S).jsonl
: >"$RESULTS"
BACKEND_PORT=$(free_port)
start_backend "$BACKEND_PORT" "$LOAD_CPU"

render() {  # render PORT ACCESS_LOG_PATH(or empty) -> config path
  local alog=""
  [[ -n "$2" ]] && alog="          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: $2"
  write_bench_config "$1" "$BACKEND_PORT" "$RUN_DIR/nuncio-$3.yaml" "$alog"
  echo "$RUN_DIR/nuncio-$3.yaml"
}

run_one() {  # run_one MODE(off|file)
  local mode=$1 port alog="" cfg p c0 c1 t0 t1 lines=0
  port=$(free_port)
  [[ $mode == file ]] && alog=$RUN_DIR/access-$REP.log && rm -f "$alog"
  cfg=$(render "$port" "$alog" "$mode")
  start_proc "nuncio-$mode" "$port" "$PROXY_CPU" "$NUNCIO_BIN" -c "$cfg" --concurrency 1 -l warn
  p=$LAST_PID
  [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/")" == 200 ]] || { log "GET / through nuncio failed"; return 1; }
  c0=$(cpu_ticks "$p"); t0=$(date +%s.%N)
  timeout "$MAX_SECONDS" nice -n "$PRIO" taskset -c "$LOAD_CPU" \
    h2load --h1 -n "$REQUESTS" -c "$CONNS" -t 1 "http://127.0.0.1:$port/" >"$RUN_DIR/h2load-$mode-$REP.txt"
  t1=$(date +%s.%N); c1=$(cpu_ticks "$p")
  stop_started "$p"   # clean exit: the access-log manager writes everything
  if [[ -n "$alog" ]]; then
    if [[ -f "$alog" ]]; then lines=$(($(wc -l <"$alog") - 1)); rm -f "$alog"   # minus the readiness GET
    else log "warning: nuncio wrote no access log at $alog (is the HCM's access_log wired?)"; lines=-1; fi
  fi
  python3 - "$RUN_DIR/h2load-$mode-$REP.txt" "$mode" "$REP" "$((c1 - c0))" "$(getconf CLK_TCK)" "$lines" "$t0" "$t1" >>"$RESULTS" <<'EOF'
import json, sys
path, mode, rep, ticks, hz, lines, t0, t1 = sys.argv[1:]
import re
text = open(path).read()
def num(pat):
    m = re.search(pat, text)
    if not m:
        sys.exit(f"h2load output without /{pat}/:\n{text}")
    return m.group(1)
done = int(num(r"requests: \d+ total, \d+ started, (\d+) done"))
ok = int(num(r"status codes: (\d+) 2xx"))
rps = float(num(r"finished in [\d.]+\w+, ([\d.]+) req/s"))
mean, unit = re.search(r"time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)\b", text).groups()
mean_us = float(mean) * {"us": 1, "ms": 1e3, "s": 1e6}[unit]
cpu = int(ticks) / int(hz)
print(json.dumps({"mode": mode, "rep": int(rep), "requests": done, "errors": done - ok,
                  "rps": rps, "cpu_us_per_req": cpu * 1e6 / done,
                  "proxy_util": cpu / (float(t1) - float(t0)), "mean_us": mean_us,
                  "log_lines": int(lines)}))
EOF
  tail -1 "$RESULTS" | python3 -c 'import json,sys; r=json.load(sys.stdin); print("  access_log=%-4s %d requests, %.0f req/s, cpu/req=%.2fus (util %.0f%%), mean latency %.0fus, log lines=%d, non-2xx=%d" % (r["mode"], r["requests"], r["rps"], r["cpu_us_per_req"], 100*r["proxy_util"], r["mean_us"], r["log_lines"], r["errors"]))' >&2
}

log "backend nginx on 127.0.0.1:$BACKEND_PORT; $REQUESTS requests per run; results -> $RESULTS"
for ((REP = 1; REP <= REPEAT; REP++)); do
  run_one off
  run_one file
done

python3 - "$RESULTS" "$(uptime | sed 's/.*load average: //')" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
med = lambda mode, f: statistics.median(r[f] for r in rows if r["mode"] == mode)
print(f"\naccess log cost (load average at the end: {sys.argv[2]})\n")
print("| access_log | requests | req/s | CPU µs/request | mean latency µs | log lines |")
print("|---|---:|---:|---:|---:|---:|")
for mode in ("off", "file"):
    print(f"| {mode} | {med(mode,'requests'):,.0f} | {med(mode,'rps'):,.0f} | {med(mode,'cpu_us_per_req'):.2f} | "
          f"{med(mode,'mean_us'):.0f} | {med(mode,'log_lines'):,.0f} |")
off, on = med("off", "cpu_us_per_req"), med("file", "cpu_us_per_req")
print(f"\nlogging costs {on - off:+.2f} µs of CPU per request ({100 * (on / off - 1):+.0f}%)")
EOF
