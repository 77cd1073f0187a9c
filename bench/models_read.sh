#!/usr/bin/env bash
# bench/models_read.sh: what a gateway's read of the models costs Redis, and how soon a
# gateway accepts a model after `fleetctl model add` (docs/api.md, "Models"). Starts a
# throwaway redis-server (no persistence) and a fleet-gateway from BUILD_DIR/bin on
# loopback (FLEET_AUTH=off, no FLEET_MODELS), then:
#   - 20 times: `fleetctl model add m<i>` and at once one submit for m<i>: how many of
#     those first submits were accepted (the events channel told the gateway in time);
#   - with 20 registered models and 0, 10 and 100 live workers (heartbeat hashes written
#     by hand), 200 GET /v1/models (each runs the models script, the same read a gateway
#     makes with the counters): Redis' INFO commandstats for EVALSHA, whose usec_per_call
#     is one read; then 2,000 reads without the counters (ARGV 2 "0", the read a gateway
#     makes for its copy of the models), sent by redis-benchmark.
# Prints figures; never passes or fails on them.
#
#   bench/models_read.sh build-rel
set -euo pipefail
BUILD=${1:?usage: bench/models_read.sh BUILD_DIR}
BIN=$(cd "$BUILD/bin" && pwd)
source "$(dirname "$0")/lib.sh"
RP=$(free_port)
GP=$(free_port)
TMP=$(mktemp -d)
trap 'kill $GW 2>/dev/null || true; kill "$(cat "$TMP/r.pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$TMP"' EXIT
redis-server --port "$RP" --bind 127.0.0.1 --save '' --daemonize yes --pidfile "$TMP/r.pid" \
    --logfile "$TMP/r.log"
R() { redis-cli -p "$RP" "$@"; }
until R ping >/dev/null 2>&1; do sleep 0.05; done
env -i PATH="$PATH" FLEET_REDIS_URL="redis://127.0.0.1:$RP" FLEET_LISTEN="127.0.0.1:$GP" \
    FLEET_AUTH=off "$BIN/fleet-gateway" >"$TMP/gateway.log" 2>&1 &
GW=$!
until curl -sf "http://127.0.0.1:$GP/readyz" >/dev/null; do sleep 0.05; done
CTL=("$BIN/fleetctl" --redis-url "redis://127.0.0.1:$RP")
first_ok=0
for i in $(seq 1 20); do
    "${CTL[@]}" model add "m$i" >/dev/null
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$GP/v1/jobs" \
        -H 'Content-Type: application/json' -d "{\"model\":\"m$i\",\"input\":{}}")
    [ "$code" = 202 ] && first_ok=$((first_ok + 1))
done
echo "first submit right after 'fleetctl model add' accepted: $first_ok of 20"
for n in 0 10 100; do
    R del '{fleet}:workers' >/dev/null
    for w in $(seq 1 "$n"); do
        R zadd '{fleet}:workers' 1 "w$w" >/dev/null
        R hset "{fleet}:worker:w$w" model "m$((w % 20 + 1))" backend cpu max_batch 32 busy 0 >/dev/null
        R expire "{fleet}:worker:w$w" 600 >/dev/null
    done
    R config resetstat >/dev/null
    for _ in $(seq 1 200); do curl -s -o /dev/null "http://127.0.0.1:$GP/v1/models"; done
    echo "live workers $n, registered models 20, with counters: $(R info commandstats | grep cmdstat_evalsha | tr -d '\r')"
    sha=$(R script load "$(cat "$(dirname "$0")/../shared/scripts/models.lua")")
    R config resetstat >/dev/null
    redis-benchmark -p "$RP" -n 2000 -c 1 -q evalsha "$sha" 3 '{fleet}:workers' '{fleet}:stats' \
        '{fleet}:models' '{fleet}:worker:' 0 >/dev/null
    echo "live workers $n, registered models 20, no counters:   $(R info commandstats | grep cmdstat_evalsha | tr -d '\r')"
done
