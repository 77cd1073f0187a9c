#!/usr/bin/env bash
# bench/shards.sh: what shards cost and buy (docs/scaling.md). For one release build, the
# lifecycle of the duel (bench/duel: JOBS submits of a 200-byte input with 64 in flight
# from fleet-bench, no worker; then echo workers drain them) on:
#   - one Redis, no shard table (the default; the figure the duel reports for fleet);
#   - a loopback Redis Cluster of MASTERS masters, with 1, 2, ... shards (one per master,
#     as a gateway on a cluster places them).
# For each: submit and drain jobs/s, and Redis CPU per job (used_cpu_sys + used_cpu_user
# of INFO cpu, over submit and drain) on each master and in total.
#
#   bench/shards.sh BUILD_DIR [JOBS]          # e.g. bench/shards.sh build-rel 20000
#   SHARDS="1 3" bench/shards.sh build-rel    # only these shard counts on the cluster
#
# Settings (environment):
#   SHARDS ("1 2 3")     shard counts to run on the cluster (each <= MASTERS; "": no
#                        cluster, the one-Redis run alone)
#   MASTERS (3)          masters of the cluster
#   REPLICAS (0)         replicas per master (their own CPU is not counted; the masters'
#                        includes feeding them). FLEET_REDIS_WAIT_REPLICAS=1 with REPLICAS=1
#                        and SKIP_SINGLE=1: submits wait for a replica, as in production
#   WORKERS (1)          fleet-worker --model echo processes that drain (each serves every
#                        shard)
#   ROUNDS (1)           the whole sequence again (figures move run to run on a shared
#                        machine: compare within a round)
#   SKIP_SINGLE (0)      1: no one-Redis run
#   STATS (0)            1: also INFO commandstats per job, summed over the masters
# Prints figures; never passes or fails on them.
set -u
cd "$(dirname "$0")/.." || exit 1
die() { echo "bench/shards.sh: $*" >&2; exit 1; }
. bench/lib.sh
# Ports below the kernel's ephemeral range (32768 on): a port a client connection used a
# moment ago lingers in TIME-WAIT there, and redis-server cannot bind it.
free_port() {
    local p
    for _ in $(seq 100); do
        p=$((20000 + RANDOM % 12000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null &&
            ! ss -tan "sport = :$p" 2>/dev/null | grep -q ":$p "; then
            echo "$p"
            return
        fi
    done
    die "no free port found"
}
[ $# -ge 1 ] || die "usage: bench/shards.sh BUILD_DIR [JOBS]"
B=$1/bin
N=${2:-20000}
SHARDS=${SHARDS-1 2 3}
MASTERS=${MASTERS:-3}
REPLICAS=${REPLICAS:-0}
WORKERS=${WORKERS:-1}
ROUNDS=${ROUNDS:-1}
for b in fleet-gateway fleet-worker fleet-bench fleetctl; do
    [ -x "$B/$b" ] || die "no $B/$b: build a release tree first (cmake -DCMAKE_BUILD_TYPE=Release)"
done
for s in $SHARDS; do
    [ "$s" -ge 1 ] && [ "$s" -le "$MASTERS" ] || die "SHARDS: $s is not in 1..$MASTERS"
done
command -v redis-server >/dev/null || die "redis-server is not installed"

D=$(mktemp -d "${TMPDIR:-/tmp}/fleet-shards.XXXXXX")
PIDS=()
cleanup() {
    set +e
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    sleep 0.3
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    rm -rf "$D"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

INPUT="{\"text\":\"$(head -c 186 /dev/zero | tr '\0' x)\"}"

# Starts a throwaway redis-server (no persistence, noeviction) on port $1, directory $2,
# with the extra arguments after.
redis_up() {
    local port=$1 dir=$2
    shift 2
    mkdir -p "$dir"
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        --maxmemory-policy noeviction --dir "$dir" --logfile "$dir/redis.log" \
        --daemonize no "$@" >/dev/null 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && return; sleep 0.1; done
    die "redis-server on port $port did not start"
}

cpu_of() { redis-cli -p "$1" info cpu | awk -F: '/used_cpu_(sys|user):/{s+=$2} END{printf "%.6f", s}'; }
us_per_job() { echo "($2-$1)*1000000/$N" | bc -l | awk '{printf "%.1f", $1}'; }

# The fleet on the Redis the environment names (FLEET_REDIS_URL, FLEET_REDIS_CLUSTER, ...)
# through one lifecycle; $1 names the run, $2.. the master ports whose CPU is counted.
# Prints one line of figures.
lifecycle() {
    local name=$1
    shift
    local ports=("$@")
    local gp key gw
    gp=$(free_port)
    env FLEET_LISTEN=127.0.0.1:$gp FLEET_MODELS=echo "$B/fleet-gateway" >"$D/gateway-$name.log" 2>&1 &
    gw=$!
    PIDS+=("$gw")
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$gp/readyz" >/dev/null && break; sleep 0.1; done
    curl -sf "http://127.0.0.1:$gp/readyz" >/dev/null || {
        tail -20 "$D/gateway-$name.log" >&2
        die "$name: the gateway is not ready"
    }
    key=$("$B/fleetctl" --json tenant add bench --admin 2>>"$D/fleetctl.log" |
        sed -n 's/.*"api_key": *"\([^"]*\)".*/\1/p')
    [ -n "$key" ] || die "$name: fleetctl tenant add printed no api_key (see $D/fleetctl.log)"
    local table
    table=$(redis_cli_any get '{fleet}:shards')
    sleep 0.3
    local c0=() c1=() c2=() i
    for i in "${!ports[@]}"; do redis-cli -p "${ports[i]}" config resetstat >/dev/null; done
    for i in "${!ports[@]}"; do c0[i]=$(cpu_of "${ports[i]}"); done
    local out
    out=$("$B/fleet-bench" --url "http://127.0.0.1:$gp" --api-key "$key" --connections 64 \
        --requests "$N" --input "$INPUT" submit 2>&1)
    local m secs acc
    m=$(echo "$out" | grep -oE 'responses: [0-9]+ in [0-9.]+ s = [0-9]+ requests/s \(202: [0-9]+' | head -1)
    secs=$(echo "$m" | awk '{print $4}')
    acc=$(echo "$m" | sed 's/.*(202: //')
    [ "${acc:-0}" = "$N" ] || { echo "$out" >&2; die "$name: $acc of $N submits accepted"; }
    for i in "${!ports[@]}"; do c1[i]=$(cpu_of "${ports[i]}"); done
    local wpids=() w
    for w in $(seq "$WORKERS"); do
        "$B/fleet-worker" --model echo >"$D/worker-$name-$w.log" 2>&1 &
        wpids+=($!)
        PIDS+=($!)
    done
    local t0 t1 done_n
    t0=$(date +%s.%N)
    while :; do
        done_n=$(finished "$table")
        [ "$done_n" -ge "$N" ] && break
        for w in "${wpids[@]}"; do kill -0 "$w" 2>/dev/null || die "$name: a worker died (see $D)"; done
        sleep 0.02
    done
    t1=$(date +%s.%N)
    for i in "${!ports[@]}"; do c2[i]=$(cpu_of "${ports[i]}"); done
    for w in "${wpids[@]}"; do kill "$w" 2>/dev/null; wait "$w" 2>/dev/null; done
    kill "$gw" 2>/dev/null
    wait "$gw" 2>/dev/null
    local per="" total=0 sub=0 u
    for i in "${!ports[@]}"; do
        u=$(us_per_job "${c0[i]}" "${c2[i]}")
        per="$per $u"
        total=$(echo "$total+$u" | bc -l)
        sub=$(echo "$sub+$(us_per_job "${c0[i]}" "${c1[i]}")" | bc -l)
    done
    printf '%-11s submit %6.0f jobs/s  drain %6.0f jobs/s  Redis CPU us/job: total %5.1f (submit %4.1f)  per master:%s\n' \
        "$name" "$(echo "$N/$secs" | bc -l)" "$(echo "$N/($t1-$t0)" | bc -l)" "$total" "$sub" "$per"
    [ -n "$table" ] && echo "               table: $table"
    if [ "${STATS:-0}" = 1 ]; then
        # INFO commandstats summed over the masters, per job (both phases)
        for i in "${!ports[@]}"; do redis-cli -p "${ports[i]}" info commandstats; done | tr -d '\r' |
            grep '^cmdstat_' | awk -F'[:=,]' -v n="$N" '{c[$1]+=$3; u[$1]+=$5}
                END {for (k in c) printf "               %-26s calls/job %6.2f  us/job %6.2f\n", k, c[k]/n, u[k]/n}' |
            sort -k5 -nr | head -12
    fi
}

# Jobs of the echo model in a final state, summed over the shards of the table ($1; empty:
# shard 0 alone), read from each shard's stats hash ({fleet}:stats, {fleet:N}:stats).
finished() {
    local table=$1 tags=("{fleet}") e s=0 v
    if [ -n "$table" ]; then
        tags=()
        for e in $table; do
            case $e in 0:*) tags+=("{fleet}") ;; *) tags+=("{fleet:$(echo "$e" | cut -d: -f2)}") ;; esac
        done
    fi
    for e in "${tags[@]}"; do
        for v in $(redis_cli_any hmget "$e:stats" echo:succeeded echo:failed echo:cancelled); do
            s=$((s + v))
        done
    done
    echo "$s"
}

# ------------------------------------------------------------------ one Redis --------------
echo "== machine: $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo) (nproc $(nproc)), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== fleet binaries of $B; $(redis-server --version | awk '{print $3}') (no persistence)"
echo "== $N jobs a run: submit with 64 in flight (no worker), then $WORKERS echo worker(s) drain; Redis CPU over both"
for round in $(seq "$ROUNDS"); do
    [ "$ROUNDS" -gt 1 ] && echo "-- round $round"
    if [ "${SKIP_SINGLE:-0}" != 1 ]; then
        RP=$(free_port)
        redis_up "$RP" "$D/single-$round"
        redis_cli_any() { redis-cli -p "$RP" "$@"; }
        FLEET_REDIS_URL=redis://127.0.0.1:$RP lifecycle "one-redis" "$RP"
        redis-cli -p "$RP" shutdown nosave >/dev/null 2>&1
    fi

    # -------------------------------------------------------------- the cluster -----------
    [ -n "${SHARDS// /}" ] || continue
    NODES=$((MASTERS * (1 + REPLICAS)))
    PORTS=() ADDRS=()
    for i in $(seq "$NODES"); do
        p=$(free_port)
        bus=$(free_port)
        redis_up "$p" "$D/cluster-$round-$i" --cluster-enabled yes --cluster-config-file nodes.conf \
            --cluster-node-timeout 5000 --cluster-port "$bus"
        PORTS+=("$p")
        ADDRS+=("127.0.0.1:$p")
    done
    redis-cli --cluster create "${ADDRS[@]}" --cluster-replicas "$REPLICAS" \
        --cluster-yes >"$D/cluster-create.log" 2>&1 || { cat "$D/cluster-create.log" >&2; die "redis-cli --cluster create failed"; }
    for _ in $(seq 300); do
        ok=1
        for p in "${PORTS[@]}"; do
            redis-cli -p "$p" cluster info | grep -q 'cluster_state:ok' || ok=0
            # a replica in sync (with FLEET_REDIS_WAIT_REPLICAS a submit waits for one)
            if redis-cli -p "$p" role | head -1 | grep -q slave; then
                redis-cli -p "$p" info replication | tr -d '\r' | grep -q '^master_link_status:up' || ok=0
            fi
        done
        [ $ok = 1 ] && break
        sleep 0.1
    done
    [ $ok = 1 ] || die "the cluster did not reach cluster_state:ok with its replicas in sync"
    MPORTS=()
    for p in "${PORTS[@]}"; do
        redis-cli -p "$p" role | head -1 | grep -q master && MPORTS+=("$p")
    done
    SEEDS=$(printf '127.0.0.1:%s,' "${PORTS[@]}")
    SEEDS=${SEEDS%,}
    # The master of the control tag "{fleet}": the one that does not answer MOVED.
    CP=
    for p in "${MPORTS[@]}"; do
        redis-cli -p "$p" get '{fleet}:shards' | grep -q MOVED || CP=$p
    done
    [ -n "$CP" ] || die "no master takes {fleet}"
    redis_cli_any() { redis-cli -c -p "$CP" "$@"; }
    for s in $SHARDS; do
        for p in "${MPORTS[@]}"; do redis-cli -p "$p" flushall >/dev/null; done
        FLEET_REDIS_URL=redis://127.0.0.1:$CP FLEET_REDIS_CLUSTER=$SEEDS FLEET_SHARDS=$s \
            lifecycle "cluster-$s" "${MPORTS[@]}"
    done
    for p in "${PORTS[@]}"; do redis-cli -p "$p" shutdown nosave >/dev/null 2>&1; done
done
