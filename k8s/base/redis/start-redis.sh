#!/bin/sh
# start-redis.sh: writes this pod's redis.conf and runs redis-server. The primary is the
# one the sentinels name now (after a failover it is no longer pod 0); with no sentinel
# answering (the first start of the StatefulSet), pod 0 is the primary and the others
# replicate from it.
set -eu
pod="$(hostname)"
me="$pod.fleet-redis"
ordinal="${pod##*-}"
primary=""
for i in 0 1 2; do
  answer=$(REDISCLI_AUTH="$REDIS_PASSWORD" timeout 2 redis-cli -h "fleet-sentinel-$i.fleet-sentinel" \
    -p 26379 --raw SENTINEL get-master-addr-by-name fleet 2>/dev/null | head -n 1) || true
  case "$answer" in
    "" | *ERR* | *IDONTKNOW*) ;;
    *) primary="$answer"; break ;;
  esac
done
if [ -z "$primary" ] && [ "$ordinal" != 0 ]; then
  primary="fleet-redis-0.fleet-redis"
fi
conf=/conf/redis.conf
cat >"$conf" <<CONF
port 6379
bind * -::*
# A password is required on every connection (requirepass); replicas log in with it too.
protected-mode no
requirepass "$REDIS_PASSWORD"
masterauth "$REDIS_PASSWORD"
dir /data
# AOF on the PVC, fsync every second: a crash loses at most the last second of writes.
appendonly yes
appendfsync everysec
save ""
# fleet keeps every job with a TTL: an evicting policy would delete jobs and API keys.
maxmemory ${REDIS_MAXMEMORY:-1536mb}
maxmemory-policy noeviction
# The sentinels and the other pods know this instance by its stable DNS name.
replica-announce-ip $me
replica-announce-port 6379
CONF
if [ -n "$primary" ] && [ "$primary" != "$me" ]; then
  echo "replicaof $primary 6379" >>"$conf"
  echo "start-redis: $me replicates from $primary"
else
  echo "start-redis: $me starts as the primary"
fi
exec redis-server "$conf"
