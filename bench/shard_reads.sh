#!/usr/bin/env bash
# bench/shard_reads.sh: what the gateway's reads that span jobs cost Redis with S shards
# (docs/api.md "Listing", docs/metrics.md "Over several shards"). Starts a throwaway
# redis-server (no persistence) and a fleet-gateway from BUILD_DIR/bin on loopback (API
# keys on: a tenant key and an admin key, made by fleetctl tenant add), writes a table of
# S shards with fleetctl shards init when S > 1, submits J echo jobs of the tenant through the gateway (no worker: they
# stay queued, spread over the shards by the gateway), then reads, each after CONFIG
# RESETSTAT, and prints Redis's time per request (INFO commandstats: the sum of every
# command's usec, and the calls) for:
#   list    40 walks of the first 5 pages of 20 of the tenant's list (cursor passed back)
#   admin   the same for the admin's list of every tenant's jobs
#   stats   100 GET /v1/stats with the admin key
#   metrics 100 GET /metrics
# Prints figures; never passes or fails on them.
#
#   bench/shard_reads.sh BUILD_DIR [J] [S...]      # default J 300, S: 1 3
set -euo pipefail
die() { echo "shard_reads: $*" >&2; exit 1; }
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
[[ $# -ge 1 ]] || die "usage: bench/shard_reads.sh BUILD_DIR [J] [S...]"
bin=$1/bin
jobs=${2:-300}
shift $(( $# >= 2 ? 2 : 1 ))
[[ -x $bin/fleet-gateway && -x $bin/fleetctl ]] || die "no $bin/fleet-gateway or fleetctl (build them first)"
counts=("$@")
[[ ${#counts[@]} -gt 0 ]] || counts=(1 3)
tkey= akey=

# Redis's time (usec) and calls since the last RESETSTAT, over every command but INFO and
# CONFIG (the bench's own).
redis_cost() { # redis-cli...
  "$@" INFO commandstats | tr -d '\r' | awk -F'[:=,]' '
    /^cmdstat_/ && $1 != "cmdstat_info" && $1 != "cmdstat_config" { calls += $3; usec += $5 }
    END { printf "%d %d\n", usec, calls }'
}

one() { # S
  local s=$1 dir port gwp gw
  dir=$(mktemp -d)
  port=$(free_port)
  gwp=$(free_port)
  start_redis "$port" "$dir"
  local r=(redis-cli -p "$port") ctl=("$bin/fleetctl" --redis-url "redis://127.0.0.1:$port" --prefix m)
  # The shard table and the two keys through fleetctl, which spells the keys as fleet does.
  if [[ $s -gt 1 ]]; then
    "${ctl[@]}" shards init "$s" >/dev/null || die "fleetctl shards init $s failed"
  fi
  tkey=$("${ctl[@]}" tenant add t0 | awk '/api key/{print $3}')
  akey=$("${ctl[@]}" tenant add ops --admin | awk '/api key/{print $3}')
  [[ -n $tkey && -n $akey ]] || die "fleetctl tenant add gave no key"
  FLEET_REDIS_URL="redis://127.0.0.1:$port" FLEET_PREFIX=m FLEET_AUTH=on \
    FLEET_LISTEN="127.0.0.1:$gwp" FLEET_MODELS=echo ASAN_OPTIONS=detect_leaks=0 \
    "$bin/fleet-gateway" >"$dir/gateway.log" 2>&1 &
  gw=$!
  for _ in $(seq 100); do curl -sf "localhost:$gwp/readyz" >/dev/null && break; sleep 0.1; done
  for _ in $(seq "$jobs"); do
    curl -sf -o /dev/null -H "Authorization: Bearer $tkey" -H 'Content-Type: application/json' \
      -d '{"model":"echo","input":{"x":1}}' "localhost:$gwp/v1/jobs"
  done
  walks() { # key
    "${r[@]}" CONFIG RESETSTAT >/dev/null
    for _ in $(seq 40); do
      local c="" out
      for _ in 1 2 3 4 5; do
        out=$(curl -s -H "Authorization: Bearer $1" \
          "localhost:$gwp/v1/jobs?limit=20${c:+&cursor=$c}")
        c=$(printf %s "$out" | sed -n 's/.*"next_cursor": *"\([^"]*\)".*/\1/p')
        [[ -n $c ]] || break
      done
    done
    redis_cost "${r[@]}" | awk '{ printf "%.1f us, %.1f calls per page", $1 / 200, $2 / 200 }'
  }
  many() { # key path
    "${r[@]}" CONFIG RESETSTAT >/dev/null
    for _ in $(seq 100); do curl -s -o /dev/null -H "Authorization: Bearer $1" "localhost:$gwp$2"; done
    redis_cost "${r[@]}" | awk '{ printf "%.1f us, %.1f calls per request", $1 / 100, $2 / 100 }'
  }
  echo "shards $s, $jobs jobs: list $(walks $tkey); admin list $(walks $akey);" \
    "stats $(many $akey /v1/stats); metrics $(many $akey /metrics)"
  kill "$gw"
  wait "$gw" 2>/dev/null || true
  "${r[@]}" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
  rm -rf "$dir"
}

for s in "${counts[@]}"; do one "$s"; done
