#!/usr/bin/env bash
# bench/replicas.sh: what FLEET_REDIS_WAIT_REPLICAS costs a submit, in one run.
#
#   bench/replicas.sh BUILD_DIR [REQUESTS] [ROUNDS]   # e.g. bench/replicas.sh build-rel 20000 3
#
# Starts a primary and one replica (redis-server, no persistence, loopback), then, ROUNDS
# times and alternately, the build's gateway with FLEET_REDIS_WAIT_REPLICAS=0 and =1 on
# that primary, and measures with fleet-bench: REQUESTS submits over 64 connections
# (throughput, p50/p99) and 2,000 over one connection (a lone client's latency). Prints
# one line per run; never passes or fails on the figures (docs/reliability.md).
set -u
cd "$(dirname "$0")/.."
die() { echo "replicas: $*" >&2; exit 1; }
. bench/lib.sh
[ $# -ge 1 ] || die "usage: bench/replicas.sh BUILD_DIR [REQUESTS] [ROUNDS]"
B=$1/bin
N=${2:-20000}
ROUNDS=${3:-3}
[ -x "$B/fleet-gateway" ] && [ -x "$B/fleet-bench" ] || die "build $1 first (fleet-gateway, fleet-bench)"
P=$(free_port)
S=$(free_port)
D=$(mktemp -d)
GW=
cleanup() {
    [ -n "$GW" ] && kill "$GW" 2>/dev/null
    redis-cli -p "$S" shutdown nosave >/dev/null 2>&1
    redis-cli -p "$P" shutdown nosave >/dev/null 2>&1
    rm -rf "$D"
}
trap cleanup EXIT
for port in "$P" "$S"; do
    mkdir -p "$D/$port"
    redis-server --port "$port" --save '' --appendonly no --maxmemory-policy noeviction \
        --repl-diskless-sync-delay 0 --dir "$D/$port" --daemonize yes \
        --logfile "$D/$port/redis.log" || die "redis-server did not start"
    for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
done
redis-cli -p "$S" replicaof 127.0.0.1 "$P" >/dev/null
# Streaming to the replica starts with its first acknowledgement after the sync.
for _ in $(seq 100); do
    redis-cli -p "$P" set probe 1 >/dev/null
    [ "$(redis-cli -p "$P" wait 1 100)" = 1 ] && break
    sleep 0.1
done
[ "$(redis-cli -p "$P" wait 1 100)" = 1 ] || die "the replica does not acknowledge writes"
INPUT="{\"text\":\"$(head -c 186 /dev/zero | tr '\0' x)\"}"
echo "submit, 200-byte input, one replica on loopback; $N requests over 64 connections,"
echo "2000 over one connection; $(nproc) cores, $(redis-server --version | awk '{print $3}')"
run() { # $1 = FLEET_REDIS_WAIT_REPLICAS
    local gp
    gp=$(free_port)
    redis-cli -p "$P" flushall >/dev/null
    env -i PATH="$PATH" FLEET_REDIS_URL="redis://127.0.0.1:$P" FLEET_LISTEN="127.0.0.1:$gp" \
        FLEET_AUTH=off FLEET_MODELS=echo FLEET_REDIS_WAIT_REPLICAS="$1" \
        "$B/fleet-gateway" >"$D/gateway.log" 2>&1 &
    GW=$!
    for _ in $(seq 50); do curl -sf "http://127.0.0.1:$gp/readyz" >/dev/null && break; sleep 0.1; done
    local many one
    many=$("$B/fleet-bench" --url "http://127.0.0.1:$gp" --connections 64 --requests "$N" \
        --input "$INPUT" submit 2>&1)
    one=$("$B/fleet-bench" --url "http://127.0.0.1:$gp" --connections 1 --requests 2000 \
        --input "$INPUT" submit 2>&1)
    kill "$GW"
    wait "$GW" 2>/dev/null
    GW=
    printf 'WAIT_REPLICAS=%s  64 conns: %s  %s | 1 conn: %s\n' "$1" \
        "$(echo "$many" | grep -m1 -oE '[0-9.]+ requests/s')" \
        "$(echo "$many" | grep -m1 -oE 'p50 [0-9.]+ ms, p90 [0-9.]+ ms, p99 [0-9.]+ ms')" \
        "$(echo "$one" | grep -m1 -oE 'p50 [0-9.]+ ms, p90 [0-9.]+ ms, p99 [0-9.]+ ms')"
    echo "$many" | grep -q "responses other than 202: 0" || echo "  (64 conns: some answers were not 202)"
}
for _ in $(seq "$ROUNDS"); do
    run 0
    run 1
done
