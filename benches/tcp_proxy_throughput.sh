#!/usr/bin/env bash
# tcp_proxy throughput: nuncio's `envoy.filters.network.tcp_proxy` against a
# direct loopback copy (no proxy) and against HAProxy in `mode tcp`, side by
# side in one run, with one connection and with 64 connections.
#
#   cargo build --release
#   benches/tcp_proxy_throughput.sh                       # ~1.5 min
#   REPEAT=3 DURATION=8 benches/tcp_proxy_throughput.sh   # medians of 3 interleaved rounds
#
# Load: iperf3 (sender and sink, `apt-get install -y iperf3`): one iperf3
# server is the sink, an iperf3 client sends for DURATION s with STREAMS
# parallel connections (`-P`), the first second omitted (`-O 1`). Throughput is
# what the sink received (GB/s = 1e9 bytes/s).
# Pinning, as ../shared/bench/peers.sh does: the proxy under test alone on CPU
# $PROXY_CPU, sender + sink + this script on CPU $LOAD_CPU. nuncio runs with
# `--concurrency 1`, HAProxy with `nbthread 1`. Only one proxy runs at a time.
# Besides GB/s the table gives the proxy's CPU use (utime+stime from
# /proc/PID/stat over the run) as CPU-seconds per GB carried, the figure that
# depends least on the noise of a shared machine.
#
# Knobs (env): NUNCIO_BIN=target/release/nuncio DURATION=6 STREAMS="1 64"
#   TARGETS="direct nuncio haproxy" REPEAT=1 PROXY_CPU=1 LOAD_CPU=0
#   RUN_DIR=/tmp/nuncio-tcp-bench PRIO=-10 (nice level of the proxy and the load; a negative
#   value needs root and keeps the compilers of a shared machine from taking most of each CPU;
#   without root, nice warns and runs at the normal level)
# Loopback only; ports are chosen by the OS (bind to port 0, then released and
# given to the daemon). Every process started here is stopped on exit (trap,
# by PID). Not part of the test run.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
NUNCIO_BIN=${NUNCIO_BIN:-$ROOT/target/release/nuncio}
DURATION=${DURATION:-6}
STREAMS=${STREAMS:-"1 64"}
TARGETS=${TARGETS:-"direct nuncio haproxy"}
REPEAT=${REPEAT:-1}
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
RUN_DIR=${RUN_DIR:-/tmp/nuncio-tcp-bench}
PRIO=${PRIO:--10}

LOG_TAG=tcp-bench STOP_TENTHS=50
# shellcheck source=benches/lib.sh
source "$HERE/lib.sh"
need_tools "apt-get install -y iperf3 haproxy" iperf3 haproxy python3 taskset ss timeout

measure() {  # measure TARGET PORT PROXY_PID(0 = none) STREAMS -> one JSON line on RESULTS
  local target=$1 port=$2 pid=$3 n=$4 c0=0 c1=0 t0 t1 out
  out="$RUN_DIR/$target-$n-$REP.json"
  [[ $pid -ne 0 ]] && c0=$(cpu_ticks "$pid")
  t0=$(date +%s.%N)
  timeout $((DURATION + 30)) nice -n "$PRIO" taskset -c "$LOAD_CPU" iperf3 -c 127.0.0.1 -p "$port" -t "$DURATION" -O 1 \
    -P "$n" -J >"$out"
  t1=$(date +%s.%N)
  [[ $pid -ne 0 ]] && c1=$(cpu_ticks "$pid")
  python3 - "$out" "$target" "$n" "$((c1 - c0))" "$t0" "$t1" "$(getconf CLK_TCK)" "$REP" >>"$RESULTS" <<'EOF'
import json, sys
path, target, n, ticks, t0, t1, hz, rep = sys.argv[1:]
r = json.load(open(path))
if "error" in r:
    sys.exit(f"iperf3 {target} -P {n}: {r['error']}")
end = r["end"]
gbps = end["sum_received"]["bytes"] / end["sum_received"]["seconds"] / 1e9
wall = float(t1) - float(t0)
cpu = int(ticks) / int(hz)
# CPU per GB over the whole iperf3 run (including the omitted first second)
total_gb = gbps * (end["sum_received"]["seconds"] + 1)
print(json.dumps({"target": target, "streams": int(n), "rep": int(rep), "gb_per_s": gbps,
                  "proxy_cpu_s": cpu, "proxy_util": cpu / wall,
                  "cpu_s_per_gb": cpu / total_gb if target != "direct" else None}))
EOF
  tail -1 "$RESULTS" | python3 -c 'import json,sys; r=json.load(sys.stdin); print("  %-8s -P %-3d %6.2f GB/s  proxy CPU %3.0f%%" % (r["target"], r["streams"], r["gb_per_s"], 100*r["proxy_util"]))' >&2
}

# ---------------------------------------------------------------- setup
taskset -pc "$LOAD_CPU" $$ >/dev/null
mkdir -p "$RUN_DIR"
RESULTS=$RUN_DIR/results-$(date +%Y%m%d-%H%M%S).jsonl
: >"$RESULTS"
SINK_PORT=$(free_port)
log "sink: iperf3 server on 127.0.0.1:$SINK_PORT (CPU $LOAD_CPU); results -> $RESULTS"
start_proc sink "$SINK_PORT" "$LOAD_CPU" iperf3 -s -B 127.0.0.1 -p "$SINK_PORT"
SINK_PID=$LAST_PID

render_nuncio() {  # render_nuncio PORT -> config file path
  cat >"$RUN_DIR/nuncio-tcp.yaml" <<EOF
static_resources:
  listeners:
  - name: tcp_proxy
    address: {socket_address: {address: 127.0.0.1, port_value: $1}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: bench
          cluster: sink
  clusters:
  - name: sink
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: sink
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: $SINK_PORT}}}
EOF
  echo "$RUN_DIR/nuncio-tcp.yaml"
}
render_haproxy() {  # render_haproxy PORT -> config file path
  cat >"$RUN_DIR/haproxy-tcp.cfg" <<EOF
global
  nbthread 1
  maxconn 1000
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
listen tcp
  bind 127.0.0.1:$1
  server sink 127.0.0.1:$SINK_PORT
EOF
  echo "$RUN_DIR/haproxy-tcp.cfg"
}

for ((REP = 1; REP <= REPEAT; REP++)); do
  [[ $REPEAT -gt 1 ]] && log "round $REP/$REPEAT"
  for t in $TARGETS; do
    case $t in
      direct)
        log "direct (sender -> sink, no proxy)"
        for n in $STREAMS; do measure direct "$SINK_PORT" 0 "$n"; done
        ;;
      nuncio)
        port=$(free_port)
        log "nuncio tcp_proxy on 127.0.0.1:$port (CPU $PROXY_CPU, --concurrency 1)"
        start_proc nuncio "$port" "$PROXY_CPU" "$NUNCIO_BIN" -c "$(render_nuncio "$port")" \
          --concurrency 1 -l warn
        p=$LAST_PID
        for n in $STREAMS; do measure nuncio "$port" "$p" "$n"; done
        stop_started "$p"
        ;;
      haproxy)
        port=$(free_port)
        log "haproxy mode tcp on 127.0.0.1:$port (CPU $PROXY_CPU, nbthread 1)"
        start_proc haproxy "$port" "$PROXY_CPU" haproxy -db -f "$(render_haproxy "$port")"
        p=$LAST_PID
        for n in $STREAMS; do measure haproxy "$port" "$p" "$n"; done
        stop_started "$p"
        ;;
      *) log "unknown target $t"; exit 2 ;;
    esac
  done
done

# ---------------------------------------------------------------- report (medians)
python3 - "$RESULTS" "$(haproxy -v | head -1 | cut -d' ' -f1-3)" "$(uptime | sed 's/.*load average: //')" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"\ntcp_proxy throughput ({sys.argv[2]}; load average at the end: {sys.argv[3]})\n")
print("| target | connections | GB/s | vs direct | vs HAProxy | proxy CPU s/GB |")
print("|---|---:|---:|---:|---:|---:|")
med = {}
for r in rows:
    med.setdefault((r["target"], r["streams"]), []).append(r)
def m(key, field):
    vals = [r[field] for r in med.get(key, []) if r[field] is not None]
    return statistics.median(vals) if vals else None
for (t, n) in med:
    g = m((t, n), "gb_per_s")
    d = m(("direct", n), "gb_per_s")
    h = m(("haproxy", n), "gb_per_s")
    c = m((t, n), "cpu_s_per_gb")
    ratio = lambda base: f"{g/base:.2f}x" if base else "-"  # "-": that target was not run
    print(f"| {t} | {n} | {g:.2f} | {ratio(d)} | {ratio(h)} | "
          + (f"{c:.3f}" if c is not None else "-") + " |")
EOF
