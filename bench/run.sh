#!/usr/bin/env bash
# bench/run.sh: build a release tree, start a throwaway Redis + fleet-gateway + one echo
# fleet-worker on loopback, run the benchmarks, print the figures with the machine they
# ran on, and clean everything up. Prints figures; never passes or fails on them.
#
#   bench/run.sh                   # defaults: 50 connections, 10 s submit, 10000 e2e jobs
#   FLEET_BENCH_DURATION=30 FLEET_BENCH_JOBS=50000 bench/run.sh
#   BENCH_BUILD=0 bench/run.sh     # reuse build-bench/ as it is
#
# Settings (environment): FLEET_BENCH_CONNECTIONS, FLEET_BENCH_DURATION, FLEET_BENCH_JOBS
# and the other FLEET_BENCH_* of `fleet-bench --help`; FLEET_MAX_BATCH (worker, default
# 32); BENCH_WRK=0 skips the wrk comparison; BENCH_BUILD_DIR (default build-bench).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BENCH_BUILD_DIR:-$ROOT/build-bench}
BIN=$BUILD/bin
export FLEET_MAX_BATCH=${FLEET_MAX_BATCH:-32}
CONNECTIONS=${FLEET_BENCH_CONNECTIONS:-50}
DURATION=${FLEET_BENCH_DURATION:-10}
JOBS=${FLEET_BENCH_JOBS:-10000}

# ------------------------------------------------------------------ cleanup ----------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/fleet-bench.XXXXXX")
PIDS=()
cleanup() {
    local rc=$?
    # Newest first: the worker and gateway go before the Redis they talk to.
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill -TERM "${PIDS[i]}" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() { echo "bench/run.sh: $*" >&2; exit 1; }

# ------------------------------------------------------------------ helpers ----------------
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# http_get PORT PATH: prints the whole response (status line, headers, body); needs no
# curl, only bash's /dev/tcp.
http_get() {
    exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
    printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$2" >&3
    timeout 5 cat <&3 || true
    exec 3<&-
}

# wait_for SECONDS COMMAND...: polls COMMAND every 0.1 s until it succeeds; 1 on timeout.
wait_for() {
    local secs=$1; shift
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

CLK_TCK=$(getconf CLK_TCK)
# cpu_of PID: CPU seconds (user + system) the process has used so far.
cpu_of() { awk -v t="$CLK_TCK" '{printf "%.2f", ($14 + $15) / t}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# cpu_mark / cpu_report: what the servers used between the two calls, to tell which of them
# was the bottleneck on this machine.
cpu_mark() { CPU0=("$(cpu_of "$GATEWAY_PID")" "$(cpu_of "$WORKER_PID")" "$(cpu_of "$REDIS_PID")"); T0=$(date +%s.%N); }
cpu_report() {
    local t1 g w r
    t1=$(date +%s.%N)
    g=$(cpu_of "$GATEWAY_PID"); w=$(cpu_of "$WORKER_PID"); r=$(cpu_of "$REDIS_PID")
    awk -v t0="$T0" -v t1="$t1" -v g0="${CPU0[0]}" -v g="$g" -v w0="${CPU0[1]}" -v w="$w" \
        -v r0="${CPU0[2]}" -v r="$r" 'BEGIN {
        d = t1 - t0
        printf "  server CPU over %.1f s: fleet-gateway %.2f cores, fleet-worker %.2f cores, redis-server %.2f cores\n",
            d, (g - g0) / d, (w - w0) / d, (r - r0) / d }'
}

peak_rss() { awk '/VmHWM/ {printf "%.1f MiB", $2 / 1024}' "/proc/$1/status" 2>/dev/null || echo "?"; }

# ------------------------------------------------------------------ build ------------------
if [[ ${BENCH_BUILD:-1} != 0 ]]; then
    echo "== building a release tree in $BUILD"
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DFLEET_TESTS=OFF >"$TMP/cmake.log" 2>&1 ||
        { cat "$TMP/cmake.log" >&2; die "cmake configure failed"; }
    cmake --build "$BUILD" -j "$(nproc)" >>"$TMP/cmake.log" 2>&1 ||
        { tail -40 "$TMP/cmake.log" >&2; die "build failed"; }
fi
for b in fleet-gateway fleet-worker fleet-bench fleetctl; do
    [[ -x $BIN/$b ]] || die "$BIN/$b was not built"
done
command -v redis-server >/dev/null || die "redis-server is not installed (Debian: redis-server)"
command -v redis-cli >/dev/null ||
    die "redis-cli is not installed (Debian: redis-tools)"

# ------------------------------------------------------------------ start ------------------
RPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --maxmemory-policy noeviction --dir "$TMP" \
    --logfile "$TMP/redis.log" --daemonize no &
PIDS+=($!)
REDIS_PID=$!
wait_for 10 redis-cli -p "$RPORT" ping || die "redis-server did not start ($TMP/redis.log)"
[[ $(redis-cli -p "$RPORT" dbsize) == 0 ]] || die "the Redis on port $RPORT is not empty"

export FLEET_REDIS_URL=redis://127.0.0.1:$RPORT
GPORT=$(free_port)
FLEET_LISTEN=127.0.0.1:$GPORT FLEET_MODELS=echo "$BIN/fleet-gateway" >"$TMP/gateway.log" 2>&1 &
PIDS+=($!)
GATEWAY_PID=$!
ready() { http_get "$GPORT" /readyz | head -1 | grep -q ' 200 '; }
wait_for 20 ready || { tail -20 "$TMP/gateway.log" >&2; die "fleet-gateway did not become ready"; }
# API keys are on, as in production: one admin tenant (e2e reads the global /v1/stats).
FLEET_API_KEY=$("$BIN/fleetctl" --redis-url "$FLEET_REDIS_URL" --json tenant add bench --admin |
    sed -n 's/.*"api_key": *"\([^"]*\)".*/\1/p')
[[ -n $FLEET_API_KEY ]] || die "fleetctl tenant add did not print an API key"
export FLEET_API_KEY

"$BIN/fleet-worker" --model echo >"$TMP/worker.log" 2>&1 &
PIDS+=($!)
WORKER_PID=$!
# The worker is up once the gateway lists it; an older gateway without /v1/models only
# costs this wait.
worker_up() {
    http_get "$GPORT" /v1/models | tr -d ' \r\n' | grep -o '{[^{}]*"name":"echo"[^{}]*}' |
        grep -Eq '"workers":[1-9]'
}
wait_for 15 worker_up || echo "(note: /v1/models does not show the echo worker yet; going on)"
kill -0 "$WORKER_PID" 2>/dev/null || { tail -20 "$TMP/worker.log" >&2; die "fleet-worker exited"; }

# ------------------------------------------------------------------ machine ----------------
echo "== machine"
echo "date:     $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "cpu:      $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo) ($(nproc) cores available)"
echo "memory:   $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
echo "kernel:   $(uname -sr)"
echo "redis:    $(redis-server --version | awk '{print $3}') (--save '' --appendonly no)"
echo "commit:   $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' + local changes')"
echo "setup:    1 fleet-gateway, 1 fleet-worker --model echo (FLEET_MAX_BATCH=$FLEET_MAX_BATCH), 1 redis-server, all on loopback"
echo

# ------------------------------------------------------------------ benchmarks -------------
echo "== fleet-bench submit"
echo "\$ fleet-bench --connections $CONNECTIONS --duration $DURATION submit"
cpu_mark
"$BIN/fleet-bench" --url "http://127.0.0.1:$GPORT" --connections "$CONNECTIONS" --duration "$DURATION" submit
cpu_report
echo

if [[ ${BENCH_WRK:-1} != 0 ]] && command -v wrk >/dev/null; then
    echo "== wrk (comparison)"
    echo "\$ wrk -t2 -c$CONNECTIONS -d${DURATION}s -s bench/submit.lua"
    cpu_mark
    wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" -s "$ROOT/bench/submit.lua" "http://127.0.0.1:$GPORT" || true
    cpu_report
    echo
fi

echo "== fleet-bench e2e"
echo "\$ fleet-bench --connections $CONNECTIONS --jobs $JOBS e2e"
# The submit runs above left a backlog for the worker. A one-job e2e waits for it to drain
# (and prints how long that took), so that the measured run and its CPU figures start
# from an empty queue.
"$BIN/fleet-bench" --url "http://127.0.0.1:$GPORT" --jobs 1 e2e >"$TMP/drain.txt" ||
    { cat "$TMP/drain.txt"; die "e2e could not run"; }
awk '/^\(e2e waited/ {print "(the worker took " $3 " s to finish the jobs left by the runs above)"}' "$TMP/drain.txt"
cpu_mark
"$BIN/fleet-bench" --url "http://127.0.0.1:$GPORT" --connections "$CONNECTIONS" --jobs "$JOBS" e2e ||
    echo "(e2e could not run; see above)"
cpu_report
echo

echo "== memory"
echo "fleet-gateway peak RSS: $(peak_rss "$GATEWAY_PID")"
echo "fleet-worker peak RSS:  $(peak_rss "$WORKER_PID")"
echo "redis used_memory:      $(redis-cli -p "$RPORT" info memory | awk -F: '/^used_memory_human/ {print $2}' | tr -d '\r') for $(redis-cli -p "$RPORT" dbsize) keys"
