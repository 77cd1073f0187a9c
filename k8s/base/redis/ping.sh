#!/bin/sh
# ping.sh [live]: the Redis pod's probe. Ready: PONG. Alive (with "live"): PONG or LOADING,
# so a long AOF load at start does not get the pod restarted in a loop.
answer=$(REDISCLI_AUTH="$REDIS_PASSWORD" timeout 3 redis-cli --raw PING 2>&1) || true
case "$answer" in
  PONG) exit 0 ;;
  LOADING*) [ "${1:-}" = live ] && exit 0 ;;
esac
echo "redis PING: $answer"
exit 1
