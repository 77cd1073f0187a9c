#!/usr/bin/env bash
# bench/redis_cost.sh: what a job costs Redis, phase by phase, for one release build.
#
#   bench/redis_cost.sh BUILD_DIR [JOBS]      # e.g. bench/redis_cost.sh build-bench 20000
#   PERF=1 bench/redis_cost.sh BUILD_DIR      # also perf-records redis-server per phase
#   TENANT_ARGS="--max-finished 1000000" bench/redis_cost.sh BUILD_DIR   # the tenant's limits
#   ACL=1 bench/redis_cost.sh BUILD_DIR       # Redis with deploy/redis-users.acl, each program
#                                             # as its own user (docs/security.md)
#
# Starts a throwaway redis-server (no persistence, noeviction) and the build's gateway (API
# keys on, one admin tenant) on free loopback ports, then:
#   1. submit: JOBS submits of a 200-byte JSON input over 64 connections (fleet-bench), no
#      worker: Redis CPU (INFO cpu) and used_memory per job, and INFO commandstats per job;
#   2. drain: one echo worker with its defaults runs them all: jobs/s, Redis CPU per job and
#      commandstats per job; then used_memory per finished job.
# With PERF=1 the profiles are /tmp/perf.submit and /tmp/perf.drain (read them with
# `perf report -i FILE --no-children --sort sym -g none`). Figures move from run to run on
# a shared machine: compare two builds by running them alternately, several times.
set -u
cd "$(dirname "$0")/.."
die() { echo "redis_cost: $*" >&2; exit 1; }
. bench/lib.sh
[ $# -ge 1 ] || die "usage: bench/redis_cost.sh BUILD_DIR [JOBS]"
B=$1/bin
N=${2:-20000}
[ -x "$B/fleet-gateway" ] || die "no $B/fleet-gateway: build a release tree first"
RP=$(free_port)
GP=$(free_port)
D=$(mktemp -d)
GW= WK= PF=
cleanup() {
    [ -n "$PF" ] && kill -INT "$PF" 2>/dev/null
    [ -n "$WK" ] && kill "$WK" 2>/dev/null
    [ -n "$GW" ] && kill "$GW" 2>/dev/null
    $R shutdown nosave >/dev/null 2>&1
    rm -rf "$D"
}
trap cleanup EXIT
R="redis-cli -p $RP"
ACL_ARGS=() U_GW= U_WK= U_CTL=
if [ -n "${ACL:-}" ]; then
    FLEET_ACL_ADMIN_PASSWORD=adminpw FLEET_ACL_GATEWAY_PASSWORD=gwpw \
        FLEET_ACL_WORKER_PASSWORD=wkpw FLEET_ACL_CTL_PASSWORD=ctlpw \
        deploy/redis-acl.sh >"$D/users.acl" || die "deploy/redis-acl.sh failed"
    ACL_ARGS=(--aclfile "$D/users.acl")
    U_GW=fleet-gateway:gwpw@ U_WK=fleet-worker:wkpw@ U_CTL=fleet-ctl:ctlpw@
    R="$R --no-auth-warning --user fleet-admin --pass adminpw"
fi
redis-server --port "$RP" --save '' --appendonly no --maxmemory-policy noeviction \
    --dir "$D" --daemonize yes --logfile "$D/redis.log" "${ACL_ARGS[@]}" ||
    die "redis-server did not start"
for _ in $(seq 50); do $R ping >/dev/null 2>&1 && break; sleep 0.1; done
# shellcheck disable=SC2086 # TENANT_ARGS is a list of options
KEY=$(FLEET_REDIS_URL=redis://${U_CTL}127.0.0.1:$RP "$B/fleetctl" tenant add bench --admin ${TENANT_ARGS:-} |
    awk '/api key/{print $3}')
[ -n "$KEY" ] || die "fleetctl tenant add gave no key"
env -i PATH="$PATH" FLEET_REDIS_URL=redis://${U_GW}127.0.0.1:$RP FLEET_LISTEN=127.0.0.1:$GP \
    FLEET_MODELS=echo "$B/fleet-gateway" >"$D/gateway.log" 2>&1 &
GW=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$GP/readyz" >/dev/null && break; sleep 0.1; done
INPUT="{\"text\":\"$(head -c 186 /dev/zero | tr '\0' x)\"}"
RPID=$(pgrep -f "redis-server.*:$RP")

cpu() { $R info cpu | awk -F: '/used_cpu_(sys|user):/{s+=$2} END{printf "%.6f", s}'; }
mem() { $R info memory | awk -F: '/^used_memory:/{print $2+0}'; }
per_job() { echo "($1)*1000000/$N" | bc -l | cut -c1-6; }
stats() {
    $R info commandstats | tr -d '\r' | grep -v '^#' |
        awk -F'[:=,]' -v n="$N" '{printf "  %-28s calls/job %6.2f  us/job %6.2f\n",$1,$3/n,$5/n}' |
        sort -k5 -nr | head -20
}
perf_start() { [ -n "${PERF:-}" ] && { perf record -F 2000 -g -p "$RPID" -o "$1" 2>/dev/null & PF=$!; sleep 0.2; }; }
perf_stop() { [ -n "$PF" ] && { kill -INT "$PF"; wait "$PF"; PF=; }; }

$R config resetstat >/dev/null
c0=$(cpu)
m0=$(mem)
perf_start /tmp/perf.submit
"$B/fleet-bench" --url "http://127.0.0.1:$GP" --api-key "$KEY" --connections 64 --requests "$N" \
    --input "$INPUT" submit 2>&1 | grep -E 'requests/s' | head -1
c1=$(cpu)
m1=$(mem)
perf_stop
echo "submit: cpu/job $(per_job "$c1-$c0") us  mem/job $(((m1 - m0) / N)) B"
stats

$R config resetstat >/dev/null
perf_start /tmp/perf.drain
env -i PATH="$PATH" FLEET_REDIS_URL=redis://${U_WK}127.0.0.1:$RP "$B/fleet-worker" --model echo \
    >"$D/worker.log" 2>&1 &
WK=$!
t0=$(date +%s.%N)
while :; do
    v=$($R hget '{fleet}:stats' echo:succeeded)
    [ "${v:-0}" -ge "$N" ] && break
    sleep 0.01
done
t1=$(date +%s.%N)
c2=$(cpu)
perf_stop
echo "drain: $(echo "$N/($t1-$t0)" | bc -l | cut -c1-7) jobs/s  cpu/job $(per_job "$c2-$c1") us (incl idle)"
stats
sleep 0.5
[ -n "${ACL:-}" ] && echo "ACL LOG entries (refusals): $($R acl log | grep -c '^reason$')"
echo "finished: mem/job $((($(mem) - m0) / N)) B"
