#!/usr/bin/env bash
# bench/submit_cost.sh: what one HTTP submit costs, per process (docs/benchmarks.md,
# "Submit: fewer calls, less gateway CPU"). Starts a throwaway redis-server (no
# persistence) and a fleet-gateway from BUILD_DIR/bin on loopback (API keys on, one admin
# tenant), sends N submits with fleet-bench (no worker runs, so every job stays queued),
# and prints the requests/s, Redis' CPU and memory per submit (INFO cpu and used_memory
# deltas / N), the gateway's and fleet-bench's CPU per request (/proc utime + stime), and
# Redis' INFO commandstats per submit. Prints figures; never passes or fails on them.
#
#   bench/submit_cost.sh build-rel                 # 20,000 submits, 64 connections
#   bench/submit_cost.sh build-rel 50000 16        # N submits, C connections
#   BUILDS="build-a build-b" ROUNDS=3 bench/submit_cost.sh   # alternate two builds
#
# The input is the 200-byte JSON object of the other benchmarks ({"text": "xxx..."}).
# On a shared machine the requests/s move with the other load; the CPU per submit of
# each process moves much less: compare builds one right after the other (BUILDS).
set -euo pipefail

N=${2:-20000}
CONNS=${3:-64}
BUILDS=${BUILDS:-${1:?usage: bench/submit_cost.sh BUILD_DIR [submits] [connections]}}
ROUNDS=${ROUNDS:-1}

die() { echo "bench/submit_cost.sh: $*" >&2; exit 1; }
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
command -v redis-server >/dev/null || die "redis-server is not installed"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/fleet-submit-cost.XXXXXX")
RPID= GPID=
stop() {
    [[ -n $GPID ]] && { kill "$GPID" 2>/dev/null || true; wait "$GPID" 2>/dev/null || true; }
    [[ -n $RPID ]] && { redis-cli -p "$RPORT" shutdown nosave >/dev/null 2>&1 || true; }
    GPID= RPID=
}
trap 'stop; rm -rf "$TMP"' EXIT

# CPU seconds (user + system) of a process, from /proc.
proc_cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.4f", ($14 + $15) / hz}' "/proc/$1/stat"; }
redis_cpu() {
    redis-cli -p "$RPORT" info cpu | awk -F: '/used_cpu_(sys|user):/ {s += $2} END {printf "%.6f", s}'
}
redis_mem() { redis-cli -p "$RPORT" info memory | awk -F: '/^used_memory:/ {print $2 + 0}'; }
per() { awk -v a="$1" -v b="$2" -v n="$N" 'BEGIN {printf "%.1f", (b - a) * 1e6 / n}'; }

INPUT="{\"text\":\"$(head -c 186 /dev/zero | tr '\0' x)\"}"

one() {
    local bin=$1/bin
    [[ -x $bin/fleet-gateway && -x $bin/fleet-bench && -x $bin/fleetctl ]] ||
        die "$bin lacks fleet-gateway, fleet-bench or fleetctl (a release build: cmake --build $1 --target fleet-gateway fleet-bench fleetctl)"
    RPORT=$(free_port)
    local gport
    gport=$(free_port)
    mkdir -p "$TMP/r$RPORT"
    redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --maxmemory-policy noeviction --dir "$TMP/r$RPORT" \
        --daemonize yes --pidfile "$TMP/r$RPORT/pid" --logfile "$TMP/r$RPORT/log"
    for _ in $(seq 50); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
    RPID=$(cat "$TMP/r$RPORT/pid")
    local url=redis://127.0.0.1:$RPORT key
    key=$(FLEET_REDIS_URL=$url "$bin/fleetctl" tenant add bench --admin 2>/dev/null |
        grep -o 'fk_[A-Za-z0-9_-]*' | head -1) || true
    [[ -n $key ]] || die "fleetctl tenant add gave no API key"
    env -i PATH="$PATH" FLEET_REDIS_URL="$url" FLEET_LISTEN="127.0.0.1:$gport" FLEET_MODELS=echo \
        "$bin/fleet-gateway" >"$TMP/g.log" 2>&1 &
    GPID=$!
    for _ in $(seq 50); do curl -sf "http://127.0.0.1:$gport/readyz" >/dev/null && break; sleep 0.1; done
    redis-cli -p "$RPORT" config resetstat >/dev/null
    local c0 m0 g0 c1 m1 g1 out
    c0=$(redis_cpu) m0=$(redis_mem) g0=$(proc_cpu "$GPID")
    "$bin/fleet-bench" --url "http://127.0.0.1:$gport" --api-key "$key" --connections "$CONNS" \
        --requests "$N" --input "$INPUT" submit >"$TMP/bench.out" 2>&1 &
    local bpid=$! b=0
    # fleet-bench's own CPU, read just before it exits (it is reaped by wait).
    while kill -0 "$bpid" 2>/dev/null; do
        [[ -r /proc/$bpid/stat ]] && b=$(proc_cpu "$bpid" 2>/dev/null || echo "$b")
        sleep 0.05
    done
    wait "$bpid" || die "fleet-bench failed: $(tail -3 "$TMP/bench.out")"
    c1=$(redis_cpu) m1=$(redis_mem) g1=$(proc_cpu "$GPID")
    out=$(grep -E 'requests/s' "$TMP/bench.out" | head -1 | sed 's/^ *//')
    echo "== $1: $out"
    echo "   per submit: Redis CPU $(per "$c0" "$c1") us, gateway CPU $(per "$g0" "$g1") us," \
        "fleet-bench CPU >= $(per 0 "$b") us, Redis memory $(( (m1 - m0) / N )) B"
    redis-cli -p "$RPORT" info commandstats | tr -d '\r' | grep '^cmdstat_' |
        awk -F'[:=,]' -v n="$N" '$3 / n >= 0.01 {printf "   %-22s calls %5.2f  us %6.2f\n", substr($1, 9), $3 / n, $5 / n}' |
        sort -k5 -nr
    stop
}

for ((round = 1; round <= ROUNDS; round++)); do
    for b in $BUILDS; do one "$b"; done
done
