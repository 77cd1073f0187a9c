#!/bin/sh
# start-sentinel.sh: writes this pod's sentinel.conf and runs redis-server --sentinel. It
# monitors the primary the other sentinels name now; with none answering, the Redis pod
# that says it is a master (ROLE), else fleet-redis-0.
set -eu
me="$(hostname).fleet-sentinel"
primary=""
for i in 0 1 2; do
  peer="fleet-sentinel-$i.fleet-sentinel"
  [ "$peer" = "$me" ] && continue
  answer=$(REDISCLI_AUTH="$REDIS_PASSWORD" timeout 2 redis-cli -h "$peer" -p 26379 --raw \
    SENTINEL get-master-addr-by-name fleet 2>/dev/null | head -n 1) || true
  case "$answer" in
    "" | *ERR* | *IDONTKNOW*) ;;
    *) primary="$answer"; break ;;
  esac
done
if [ -z "$primary" ]; then
  for i in 0 1 2; do
    host="fleet-redis-$i.fleet-redis"
    role=$(REDISCLI_AUTH="$REDIS_PASSWORD" timeout 2 redis-cli -h "$host" --raw ROLE \
      2>/dev/null | head -n 1) || true
    if [ "$role" = master ]; then
      primary="$host"
      break
    fi
  done
fi
primary="${primary:-fleet-redis-0.fleet-redis}"
# Sentinel exits when the monitored name does not resolve: at the StatefulSets' first
# start the Redis pod may not have an address yet, so wait for it (up to a minute, then
# let Kubernetes restart this pod).
tries=0
until getent hosts "$primary" >/dev/null; do
  tries=$((tries + 1))
  if [ "$tries" -ge 60 ]; then
    echo "start-sentinel: $primary does not resolve" >&2
    exit 1
  fi
  sleep 1
done
conf=/conf/sentinel.conf
cat >"$conf" <<CONF
port 26379
bind * -::*
protected-mode no
# The Sentinels ask the same password of every client (fleet's processes send it as
# FLEET_REDIS_SENTINEL_PASSWORD) and send it to each other.
requirepass "$REDIS_PASSWORD"
sentinel sentinel-pass "$REDIS_PASSWORD"
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip $me
sentinel announce-port 26379
sentinel monitor fleet $primary 6379 2
sentinel auth-pass fleet "$REDIS_PASSWORD"
sentinel down-after-milliseconds fleet 5000
sentinel failover-timeout fleet 60000
sentinel parallel-syncs fleet 1
CONF
echo "start-sentinel: $me monitors $primary"
exec redis-server "$conf" --sentinel
