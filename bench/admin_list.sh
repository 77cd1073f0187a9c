#!/usr/bin/env bash
# bench/admin_list.sh: what a page of an admin's list of every tenant's jobs costs Redis
# (docs/api.md, "Listing"), against one tenant's list. Starts a throwaway redis-server (no
# persistence) and a fleet-gateway from BUILD_DIR/bin on loopback (API keys on, one admin
# key), writes T tenants with 100 finished jobs each into Redis (their index entries'
# ids interleaved, so every page merges all tenants), then pages 40 times through the
# first 5 pages of 20 (GET /v1/jobs?limit=20, each next_cursor passed back) and prints
# Redis's time per script call (INFO commandstats, EVALSHA usec_per_call); then the same
# with tenant=t0. Prints figures; never passes or fails on them.
#
#   bench/admin_list.sh BUILD_DIR [T...]      # default T: 1 10 100 1000
set -euo pipefail
die() { echo "admin_list: $*" >&2; exit 1; }
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
[[ $# -ge 1 ]] || die "usage: bench/admin_list.sh BUILD_DIR [T...]"
bin=$1/bin
shift
[[ -x $bin/fleet-gateway ]] || die "no $bin/fleet-gateway (build it first)"
counts=("$@")
[[ ${#counts[@]} -gt 0 ]] || counts=(1 10 100 1000)
key=fk_admin_list_bench

one() { # T
  local t=$1 dir port gwp gw
  dir=$(mktemp -d)
  port=$(free_port)
  gwp=$(free_port)
  start_redis "$port" "$dir"
  local r=(redis-cli -p "$port")
  "${r[@]}" EVAL "
    local T, N = tonumber(ARGV[1]), 100
    for i = 0, T - 1 do
      local t = 't' .. i
      redis.call('SADD', '{m}:tenants', t)
      for j = 1, N do
        local id, ms = 'J' .. i .. '_' .. j, 1000000 + j * T + i
        redis.call('XADD', '{m}:tenant:' .. t .. ':submits', ms .. '-0', 'j', id)
        redis.call('HSET', '{m}:job:' .. id, 'status', 'succeeded', 'model', 'echo',
          'tenant', t, 'created_ms', ms, 'finished_ms', ms + 1)
      end
    end
    return T * N" 0 "$t" >/dev/null
  "${r[@]}" HSET "{m}:apikey:$(printf %s "$key" | sha256sum | cut -d' ' -f1)" \
    tenant ops role admin >/dev/null
  "${r[@]}" HSET "{m}:tenant:ops" name ops created_ms 1 >/dev/null
  FLEET_REDIS_URL="redis://127.0.0.1:$port" FLEET_PREFIX=m FLEET_AUTH=on \
    FLEET_LISTEN="127.0.0.1:$gwp" FLEET_MODELS=echo ASAN_OPTIONS=detect_leaks=0 \
    "$bin/fleet-gateway" >"$dir/gateway.log" 2>&1 &
  gw=$!
  for _ in $(seq 100); do curl -sf "localhost:$gwp/readyz" >/dev/null && break; sleep 0.1; done
  pages() { # extra query
    "${r[@]}" CONFIG RESETSTAT >/dev/null
    for _ in $(seq 40); do
      local c="" out
      for _ in 1 2 3 4 5; do
        out=$(curl -s -H "Authorization: Bearer $key" \
          "localhost:$gwp/v1/jobs?limit=20$1${c:+&cursor=$c}")
        c=$(printf %s "$out" | python3 -c \
          'import json,sys; print(json.load(sys.stdin)["next_cursor"] or "")')
      done
    done
    "${r[@]}" INFO commandstats | tr -d '\r' |
      sed -n 's/^cmdstat_evalsha:calls=\([0-9]*\),.*usec_per_call=\([0-9.]*\).*/\2 us per call (\1 calls)/p'
  }
  printf 'T=%-5s every tenant: %s\n' "$t" "$(pages '')"
  printf 'T=%-5s tenant=t0:    %s\n' "$t" "$(pages '&tenant=t0')"
  kill "$gw"
  wait "$gw" 2>/dev/null || true
  kill "$(cat "$dir/redis.pid")"
  rm -rf "$dir"
}
for t in "${counts[@]}"; do one "$t"; done
