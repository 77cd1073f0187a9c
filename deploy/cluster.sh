#!/usr/bin/env bash
# cluster.sh: a fleet on a Redis Cluster on this machine, for trying shards
# (docs/scaling.md).
#
#   ./deploy/cluster.sh          build (release) into build/, start a Redis Cluster of 3
#                                masters and 3 replicas on loopback (AOF on), fleet-gateway
#                                (which writes the shard table: one shard per master; API
#                                keys off, a submit waits for one replica), an echo worker
#                                and a sleep worker
#   ./deploy/cluster.sh stop     stop them all (fleet first, then the Redis nodes)
#   ./deploy/cluster.sh status   what runs, the cluster's masters and the shard table
#
# Running it again restarts the fleet processes; the Redis nodes keep running and keep
# their data (a node that was stopped comes back with its nodes.conf and AOF).
# State lives in .fleet-cluster/ (node-<port>/ data, logs/, run/ pidfiles).
# Requires redis-server and redis-cli 7 (Debian: redis-server, redis-tools).
#
# Environment:
#   FLEET_LISTEN               gateway address                  (default 127.0.0.1:8080)
#   FLEET_CLUSTER_PORT         first node's port; the nodes use 6 ports from it, their
#                              cluster buses those + 10000      (default 7000)
#   FLEET_CLUSTER_STATE        where the state lives            (default .fleet-cluster)
#   FLEET_SHARDS               shards the gateway makes when the table is absent
#                              (default: one per master)
#   FLEET_AUTH                 API keys on the gateway          (default off: local trial)
#   FLEET_REDIS_WAIT_REPLICAS  replicas a submit waits for      (default 1)
#   FLEET_CLUSTER_BIN          run the fleet binaries of this directory, built already
#                              (default: build into build/ and run build/bin)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
STATE="${FLEET_CLUSTER_STATE:-$ROOT/.fleet-cluster}"
LOGS=$STATE/logs
RUN=$STATE/run
BASE=${FLEET_CLUSTER_PORT:-7000}
MASTERS=3
REPLICAS=1
NODES=$((MASTERS * (1 + REPLICAS)))
LISTEN=${FLEET_LISTEN:-127.0.0.1:8080}
URL="http://127.0.0.1:${LISTEN##*:}"
BIN=${FLEET_CLUSTER_BIN:-}
BUILD=1
[[ -n "$BIN" ]] && BUILD=0 || BIN=$ROOT/build/bin
PORTS=() ADDRS=()
for ((i = 0; i < NODES; i++)); do PORTS+=($((BASE + i))) ADDRS+=("127.0.0.1:$((BASE + i))"); done
SEEDS=$(printf '127.0.0.1:%s,' "${PORTS[@]}")
SEEDS=${SEEDS%,}
# name:binary:args, one per fleet process
PROCS=("gateway:fleet-gateway:" "worker-echo:fleet-worker:--model echo"
  "worker-sleep:fleet-worker:--model sleep")

say() { printf 'cluster.sh: %s\n' "$*"; }
die() { printf 'cluster.sh: %s\n' "$*" >&2; exit 1; }

[[ "$BASE" =~ ^[0-9]+$ ]] && ((BASE >= 1024 && BASE + NODES <= 55535)) ||
  die "FLEET_CLUSTER_PORT=$BASE: a port from 1024 to $((55535 - NODES)) (the buses are +10000)"
for tool in redis-server redis-cli; do
  command -v "$tool" >/dev/null || die "$tool is not installed (Debian: redis-server redis-tools)"
done

# The fleet's environment: every node as a seed; the URL's host is unused on a cluster.
fleet_env() {
  export FLEET_REDIS_URL="redis://127.0.0.1:$BASE" FLEET_REDIS_CLUSTER="$SEEDS"
}

# pid_is PIDFILE BINARY: the pid in the file is alive and runs BINARY.
pid_is() {
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2"
}

node_up() { redis-cli -p "$1" ping 2>/dev/null | grep -q PONG; }

start_nodes() {
  local p dir
  mkdir -p "$LOGS" "$RUN"
  for p in "${PORTS[@]}"; do
    dir=$STATE/node-$p
    mkdir -p "$dir"
    if node_up "$p"; then
      [[ "$(redis-cli -p "$p" config get dir | sed -n 2p)" == "$(cd "$dir" && pwd -P)" ]] ||
        die "port $p is held by another Redis (not $dir): set FLEET_CLUSTER_PORT"
      continue
    fi
    redis-server --port "$p" --bind 127.0.0.1 --dir "$dir" --daemonize yes \
      --pidfile "$RUN/redis-$p.pid" --logfile "$LOGS/redis-$p.log" \
      --appendonly yes --appendfsync everysec --maxmemory-policy noeviction \
      --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000 ||
      die "redis-server on port $p did not start ($LOGS/redis-$p.log)"
  done
  for p in "${PORTS[@]}"; do
    for _ in $(seq 50); do node_up "$p" && break; sleep 0.1; done
    node_up "$p" || die "redis-server on port $p does not answer ($LOGS/redis-$p.log)"
  done
  # A new cluster is joined once; a restarted one finds itself again from nodes.conf.
  if ! redis-cli -p "$BASE" cluster info | grep -q 'cluster_slots_assigned:16384'; then
    say "creating the cluster: $MASTERS masters, $REPLICAS replica each"
    redis-cli --cluster create "${ADDRS[@]}" \
      --cluster-replicas "$REPLICAS" --cluster-yes >"$LOGS/cluster-create.log" 2>&1 ||
      die "redis-cli --cluster create failed ($LOGS/cluster-create.log)"
  fi
  # ok everywhere, and every replica in sync with its master: a submit waits for a replica
  # (WAIT), and a replica that never synced may not take over from a dead master
  local ok
  for _ in $(seq 600); do
    ok=1
    for p in "${PORTS[@]}"; do
      redis-cli -p "$p" cluster info | grep -q 'cluster_state:ok' || ok=0
      if redis-cli -p "$p" role | head -1 | grep -q slave; then
        redis-cli -p "$p" info replication | tr -d '\r' |
          grep -q '^master_link_status:up' || ok=0
      fi
    done
    ((ok)) && return
    sleep 0.1
  done
  die "the cluster is not ok, or a replica not in sync: redis-cli -p $BASE cluster nodes"
}

stop_fleet() {
  local entry name bin pf
  for entry in "${PROCS[@]}"; do
    name=${entry%%:*}
    bin=$(cut -d: -f2 <<<"$entry")
    pf=$RUN/$name.pid
    if pid_is "$pf" "$bin"; then
      kill -TERM "$(cat "$pf")"
      for _ in $(seq 400); do kill -0 "$(cat "$pf")" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$(cat "$pf")" 2>/dev/null || true
      say "stopped $name"
    fi
    rm -f "$pf"
  done
}

stop_nodes() {
  local p
  for p in "${PORTS[@]}"; do
    if pid_is "$RUN/redis-$p.pid" redis-server; then
      redis-cli -p "$p" shutdown >/dev/null 2>&1 || true
      say "stopped redis node $p"
    fi
  done
}

start_fleet() {
  local entry name bin args pid
  fleet_env
  for entry in "${PROCS[@]}"; do
    name=${entry%%:*}
    bin=$(cut -d: -f2 <<<"$entry")
    args=${entry#*:*:}
    # shellcheck disable=SC2086 # args is a list of options
    if [[ $name == gateway ]]; then
      # API keys off and WAIT for one replica, as a local trial (FLEET_AUTH=on turns keys on)
      FLEET_LISTEN=$LISTEN FLEET_AUTH=${FLEET_AUTH:-off} \
        FLEET_REDIS_WAIT_REPLICAS=${FLEET_REDIS_WAIT_REPLICAS:-1} \
        "$BIN/$bin" $args >>"$LOGS/$name.log" 2>&1 &
    else
      "$BIN/$bin" $args >>"$LOGS/$name.log" 2>&1 &
    fi
    pid=$!
    echo "$pid" >"$RUN/$name.pid"
    say "started $name (pid $pid, log $LOGS/$name.log)"
    if [[ $name == gateway ]]; then
      for _ in $(seq 100); do curl -sf "$URL/readyz" >/dev/null && break; sleep 0.1; done
      curl -sf "$URL/readyz" >/dev/null || die "the gateway is not ready ($LOGS/gateway.log)"
    fi
  done
}

status() {
  local p entry name bin
  for p in "${PORTS[@]}"; do
    if node_up "$p"; then
      printf '  redis %s  %s\n' "$p" "$(redis-cli -p "$p" role | head -1)"
    else
      printf '  redis %s  down\n' "$p"
    fi
  done
  for entry in "${PROCS[@]}"; do
    name=${entry%%:*}
    bin=$(cut -d: -f2 <<<"$entry")
    if pid_is "$RUN/$name.pid" "$bin"; then
      printf '  %-13s pid %s\n' "$name" "$(cat "$RUN/$name.pid")"
    else
      printf '  %-13s down\n' "$name"
    fi
  done
  if [[ -x $BIN/fleetctl ]] && node_up "$BASE"; then
    fleet_env
    "$BIN/fleetctl" shards show 2>&1 | sed 's/^/  /' || true
  fi
}

case "${1:-start}" in
stop)
  stop_fleet
  stop_nodes
  ;;
status) status ;;
start)
  command -v cmake >/dev/null || die "cmake is not installed (./deploy/install-deps.sh)"
  mkdir -p "$LOGS" "$RUN"
  if ((BUILD)); then
    say "building (release) into build/"
    cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DFLEET_TESTS=OFF >"$LOGS/build.log" 2>&1 &&
      cmake --build build -j "$(nproc)" --target fleet-gateway fleet-worker fleetctl \
        >>"$LOGS/build.log" 2>&1 || die "the build failed ($LOGS/build.log)"
  fi
  for b in fleet-gateway fleet-worker fleetctl; do
    [[ -x $BIN/$b ]] || die "no $BIN/$b"
  done
  start_nodes
  stop_fleet
  start_fleet
  status
  cat <<EOF

Try it:
  curl -s -X POST $URL/v1/jobs -H 'Content-Type: application/json' \\
       -d '{"model": "echo", "input": {"hello": "shards"}}'
  FLEET_REDIS_CLUSTER=$SEEDS build/bin/fleetctl shards show
  for p in ${PORTS[*]}; do redis-cli -p \$p dbsize; done
Stop it: ./deploy/cluster.sh stop
EOF
  ;;
*) die "usage: deploy/cluster.sh [start|stop|status]" ;;
esac
