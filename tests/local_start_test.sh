#!/usr/bin/env bash
# local_start_test.sh SOURCE_DIR: the README's first command, for real. `./deploy/local.sh`
# (deps already installed by the test command) builds the release tree into build/,
# starts Redis with AOF, the gateway and the echo and sleep workers; a job submitted with
# curl succeeds; `status` lists them; a second run restarts the fleet processes and reuses
# its Redis; `stop` ends every process it started, Redis included. Its state goes to a
# temporary directory (FLEET_LOCAL_STATE), on free ports (FLEET_LOCAL_REDIS_PORT,
# FLEET_LISTEN), so a local fleet a developer runs is not touched. Registered in
# tests/CMakeLists.txt as local_start.
set -euo pipefail
src=$1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fleet-local-start-XXXXXX")
export FLEET_LOCAL_STATE="$tmp/state"
die() { echo "local_start_test: $*" >&2; exit 1; }
. "$src/bench/lib.sh" # free_port
export FLEET_LOCAL_REDIS_PORT FLEET_LISTEN
FLEET_LOCAL_REDIS_PORT=$(free_port)
FLEET_LISTEN=127.0.0.1:$(free_port)
url=http://$FLEET_LISTEN
local_sh() { "$src/deploy/local.sh" "$@" >>"$tmp/local.log" 2>&1; }
cleanup() {
  local_sh stop || true
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "local_start_test: $*" >&2
  tail -n 40 "$tmp/local.log" >&2 || true
  for f in "$FLEET_LOCAL_STATE"/logs/*.log; do
    [[ -f "$f" ]] && { echo "--- $f" >&2; tail -n 10 "$f" >&2; }
  done
  exit 1
}

local_sh || fail "local.sh (start) failed"
grep -q "started redis-server on port $FLEET_LOCAL_REDIS_PORT" "$tmp/local.log" ||
  fail "local.sh did not start its Redis"
id=$(curl -sf -X POST "$url/v1/jobs" -H 'Content-Type: application/json' \
  -d '{"model": "echo", "input": {"hello": "local"}}' | sed -n 's/.*"id":"\([0-9A-Z]*\)".*/\1/p')
[[ -n "$id" ]] || fail "the submit was not accepted"
state=""
for _ in $(seq 100); do
  state=$(curl -sf "$url/v1/jobs/$id" | sed -n 's/.*"status":"\([a-z]*\)".*/\1/p')
  [[ "$state" == succeeded ]] && break
  sleep 0.1
done
[[ "$state" == succeeded ]] || fail "the echo job is '$state', not succeeded"
[[ "$(curl -sf "$url/v1/jobs/$id/result")" == '{"hello":"local"}' ]] ||
  fail "the result is not the input"

# The classify worker, on the example image the printed usage names.
out=$(curl -sf -X POST "$url/v1/jobs" -H 'Prefer: wait=20' -F model=classify \
      -F "file=@$src/examples/classify/sneaker.png") || fail "the classify submit failed"
grep -q '"label":"Sneaker"' <<<"$out" || fail "the sneaker was not classified as one: $out"
grep -q 'file=@examples/classify/sneaker.png' "$tmp/local.log" ||
  fail "local.sh does not print how to classify an image"

"$src/deploy/local.sh" status >"$tmp/status.log" 2>&1 || fail "local.sh status failed"
for name in redis-server gateway worker-echo worker-sleep worker-classify; do
  grep -q "$name: running" "$tmp/status.log" ||
    fail "status does not say $name runs: $(cat "$tmp/status.log")"
done

# Again: the fleet processes restart, the same Redis is reused (its data kept).
gw_before=$(cat "$FLEET_LOCAL_STATE/run/gateway.pid")
local_sh || fail "local.sh (second start) failed"
grep -q "reusing redis-server on port $FLEET_LOCAL_REDIS_PORT" "$tmp/local.log" ||
  fail "the second start did not reuse its Redis"
[[ "$(cat "$FLEET_LOCAL_STATE/run/gateway.pid")" != "$gw_before" ]] ||
  fail "the second start did not restart the gateway"
curl -sf "$url/v1/jobs/$id" | grep -q '"status":"succeeded"' ||
  fail "the job is gone after the second start"

pids=$(cat "$FLEET_LOCAL_STATE"/run/*.pid "$FLEET_LOCAL_STATE/redis/redis.pid")
local_sh stop || fail "local.sh stop failed"
for p in $pids; do
  kill -0 "$p" 2>/dev/null && fail "pid $p still runs after stop"
done
curl -s -o /dev/null "$url/healthz" && fail "the gateway still answers after stop"
echo "local_start_test: ok"
