#!/bin/sh
# ping.sh PORT [live]: the probe of a Redis (6379) or Sentinel (26379) pod, with the
# password both require. Ready: PONG. Alive (with "live"): PONG or LOADING, so a long AOF
# load at start does not get the pod restarted in a loop.
answer=$(REDISCLI_AUTH="$REDIS_PASSWORD" timeout 3 redis-cli -p "$1" --raw PING 2>&1) || true
case "$answer" in
  PONG) exit 0 ;;
  LOADING*) [ "${2:-}" = live ] && exit 0 ;;
esac
echo "PING on port $1: $answer"
exit 1
