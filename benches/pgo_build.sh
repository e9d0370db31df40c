#!/usr/bin/env bash
# Optional: a profile-guided (PGO) release build of nuncio. Not the shipped build (that is plain
# `cargo build --release`); this is for a deployment that wants the last ~10-20% of user-space
# CPU on the traffic it trains with.
#
# Why it pays: one proxied request runs ~15k instructions, mostly straight-line code from the
# reactor through the codec, the connection manager and the router, about 60 KiB of it, twice a
# 32 KiB L1 instruction cache. Without a profile the compiler cannot tell an error path or a rare
# state from the common one, so cold code sits between the hot lines. With one, LLVM moves the
# cold blocks out and inlines by measured frequency: on `GET /` (callgrind, 64 connections)
# instructions per request fell 15% and first-level instruction-cache misses from 1,124 to 196.
# The source states the obvious cold paths itself (`std::hint::cold_path`, `#[cold]`); the
# profile adds what only measurement knows.
#
# Steps: (1) build nuncio instrumented (`-Cprofile-generate`); (2) run it as the bench setup does
# (the backend nginx of lib.sh, nuncio with one worker on conf/envoy-bench.yaml's shape) under a
# training load, by default h2load: `GET /` then `GET /4k` (the benchmark's own traffic: the
# result is tuned to it; set TRAIN to train on your own); (3) merge the raw profiles with the
# toolchain's llvm-profdata; (4) build again with `-Cprofile-use`.
#
#   rustup component add llvm-tools          # once: llvm-profdata matching rustc's LLVM
#   benches/pgo_build.sh                     # ~6 min; binary: target/pgo/<host>/release/nuncio
#   NUNCIO_BIN=target/pgo/x86_64-unknown-linux-gnu/release/nuncio benches/instructions_per_request.sh
#
# Knobs (env): TRAIN="h2load-args;h2load-args..." (each run: `h2load --h1 <args> URL`, with PATH
# taken from the args' last word), default "-n 40000 -c 64 -t 1 /;-n 20000 -c 64 -t 1 /4k";
# RUN_DIR=/tmp/nuncio-pgo. Loopback only; every process started here is stopped on exit.
# `--target <host>` keeps the instrumentation and the profile off build scripts and proc macros.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
RUN_DIR=${RUN_DIR:-/tmp/nuncio-pgo}
TRAIN=${TRAIN:-"-n 40000 -c 64 -t 1 /;-n 20000 -c 64 -t 1 /4k"}
HOST=$(rustc -vV | sed -n 's/^host: //p')
PROFDATA=$(ls "$(rustc --print sysroot)"/lib/rustlib/*/bin/llvm-profdata 2>/dev/null | head -1 || true)
[[ -x "$PROFDATA" ]] || { echo "no llvm-profdata in the toolchain: rustup component add llvm-tools" >&2; exit 2; }

LOG_TAG=pgo
NUNCIO_BIN=$ROOT/target/pgo-gen/$HOST/release/nuncio
rm -rf "$RUN_DIR"
mkdir -p "$RUN_DIR/raw"
# shellcheck source=benches/lib.sh
source "$HERE/lib.sh"

log "1/4 instrumented build"
(cd "$ROOT" && RUSTFLAGS="-Cprofile-generate=$RUN_DIR/raw" \
  cargo build --release --bin nuncio --target "$HOST" --target-dir target/pgo-gen)
need_tools "" h2load nginx taskset ss

log "2/4 training run"
BACKEND_PORT=$(free_port)
PORT=$(free_port)
write_bench_config "$PORT" "$BACKEND_PORT" "$RUN_DIR/nuncio.yaml"
start_backend "$BACKEND_PORT" 0
start_proc nuncio "$PORT" 1 "$NUNCIO_BIN" -c "$RUN_DIR/nuncio.yaml" --concurrency 1 -l warn
NPID=$LAST_PID
IFS=';' read -r -a RUNS <<<"$TRAIN"
for run in "${RUNS[@]}"; do
  read -r -a args <<<"$run"
  path=${args[-1]}
  unset 'args[-1]'
  log "   h2load --h1 ${args[*]} http://127.0.0.1:$PORT$path"
  taskset -c 0 h2load --h1 "${args[@]}" "http://127.0.0.1:$PORT$path" | grep -E '^status codes' >&2
done
stop_started "$NPID"   # a clean exit writes the profile
ls "$RUN_DIR"/raw/*.profraw >/dev/null 2>&1 || { log "no profile written"; exit 1; }

log "3/4 merge"
"$PROFDATA" merge -o "$RUN_DIR/nuncio.profdata" "$RUN_DIR"/raw/*.profraw

log "4/4 optimized build"
(cd "$ROOT" && RUSTFLAGS="-Cprofile-use=$RUN_DIR/nuncio.profdata" \
  cargo build --release --bin nuncio --target "$HOST" --target-dir target/pgo)
log "done: $ROOT/target/pgo/$HOST/release/nuncio"
