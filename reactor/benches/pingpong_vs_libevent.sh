#!/usr/bin/env bash
# Side-by-side dispatch cost: reactor's `pingpong` example against libevent 2.1 on the same
# workload (../shared/bench/reactor/libevent_pingpong.c), interleaved rounds, medians.
#
#   apt-get install -y libevent-dev          # once
#   reactor/benches/pingpong_vs_libevent.sh  # from the repository root; ROUNDS=7 by default
#
# Extra arguments go to both programs (e.g. --pairs 100 --active 10). Both run pinned to the
# same CPU (taskset, when there is more than one). Two figures per program:
#   wall: the program's own ns_per_event (elapsed time / events);
#   cpu:  (user + system CPU time) / events, which other processes on a shared machine disturb
#         far less than the wall clock. Compare cpu figures when the machine is busy.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-7}
SRC=${LIBEVENT_PINGPONG_SRC:-../shared/bench/reactor/libevent_pingpong.c}
[ -f "$SRC" ] || SRC=/work/shared/bench/reactor/libevent_pingpong.c # from a worktree
LIBEVENT_BIN=${LIBEVENT_BIN:-/tmp/libevent_pingpong}
cc -O2 -o "$LIBEVENT_BIN" "$SRC" -levent
cargo build --release -q -p reactor --example pingpong
OURS=target/release/examples/pingpong
PIN=()
if command -v taskset >/dev/null && [ "$(nproc)" -gt 1 ]; then PIN=(taskset -c 1); fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# run NAME CMD...: appends "wall_ns cpu_ns" per event to $TMP/NAME
run() {
  local name=$1; shift
  local TIMEFORMAT='%U %S' out cpu
  cpu=$({ time "${PIN[@]}" "$@" >"$TMP/out"; } 2>&1)
  out=$(cat "$TMP/out")
  local events wall
  events=$(sed -n 's/.* events=\([0-9]*\).*/\1/p' <<<"$out")
  wall=$(sed -n 's/.*ns_per_event=\([0-9.]*\).*/\1/p' <<<"$out")
  echo "$wall $(echo "$cpu" | awk -v e="$events" '{printf "%.1f", ($1 + $2) * 1e9 / e}')" >>"$TMP/$name"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

for mode in level edge; do
  flag=(); [ "$mode" = edge ] && flag=(--edge)
  for _ in $(seq "$ROUNDS"); do
    run "libevent-$mode" "$LIBEVENT_BIN" "${flag[@]}" "$@"
    run "reactor-$mode" "$OURS" "${flag[@]}" "$@"
  done
  lw=$(cut -d' ' -f1 "$TMP/libevent-$mode" | median); lc=$(cut -d' ' -f2 "$TMP/libevent-$mode" | median)
  rw=$(cut -d' ' -f1 "$TMP/reactor-$mode" | median); rc=$(cut -d' ' -f2 "$TMP/reactor-$mode" | median)
  printf '%-5s ns/event wall: libevent %7s reactor %7s ratio %.2f | cpu: libevent %7s reactor %7s ratio %.2f  (medians of %s)\n' \
    "$mode" "$lw" "$rw" "$(echo "$rw / $lw" | bc -l)" "$lc" "$rc" "$(echo "$rc / $lc" | bc -l)" "$ROUNDS"
done
