#!/usr/bin/env bash
# redis-acl.sh: renders deploy/redis-users.acl (fleet's Redis users) for one Redis.
#
#   deploy/redis-acl.sh > users.acl            an ACL file: redis-server --aclfile users.acl
#   deploy/redis-acl.sh --setuser | redis-cli --user fleet-admin --askpass
#                                              ACL SETUSER commands, for a running Redis (or
#                                              the rules for a managed Redis' console); the
#                                              default user comes last, so the connection that
#                                              sends them may still be it
#   deploy/redis-acl.sh [--setuser] FILE       another template than deploy/redis-users.acl
#
# Environment (a password is any string; only its SHA-256 is written out):
#   FLEET_ACL_ADMIN_PASSWORD     fleet-admin (operators: everything)        required
#   FLEET_ACL_GATEWAY_PASSWORD   fleet-gateway                              required
#   FLEET_ACL_WORKER_PASSWORD    fleet-worker                               required
#   FLEET_ACL_CTL_PASSWORD       fleet-ctl (fleetctl)                       required
#   FLEET_ACL_REPLICA_PASSWORD   fleet-replica (masteruser of replicas)     optional
#   FLEET_ACL_SENTINEL_PASSWORD  fleet-sentinel (Sentinel's auth-user)      optional
#   FLEET_PREFIX                   the fleet's key prefix (default fleet)
# A user whose optional password is unset is left out. Exit 2 on a missing required
# password, a bad prefix or a placeholder the template does not explain.
set -euo pipefail

mode=aclfile
if [[ "${1:-}" == "--setuser" ]]; then
  mode=setuser
  shift
fi
template="${1:-$(dirname "${BASH_SOURCE[0]}")/redis-users.acl}"
if [[ $# -gt 1 || ! -r "$template" ]]; then
  echo "usage: redis-acl.sh [--setuser] [TEMPLATE]  (cannot read ${template})" >&2
  exit 2
fi

prefix="${FLEET_PREFIX:-fleet}"
# As fleet checks FLEET_PREFIX (shared/src/keys.c); none of these characters is special
# in a Redis key pattern.
if ! [[ "$prefix" =~ ^[A-Za-z0-9_.-]{1,32}$ ]]; then
  echo "redis-acl.sh: FLEET_PREFIX must be 1-32 characters of A-Z a-z 0-9 _ . -" >&2
  exit 2
fi

# NAME=sha256 lines for awk; the passwords themselves never reach a file or a command line.
hashes=""
for name in ADMIN GATEWAY WORKER CTL REPLICA SENTINEL; do
  var="FLEET_ACL_${name}_PASSWORD"
  pw="${!var:-}"
  if [[ -z "$pw" ]]; then
    case "$name" in
      REPLICA | SENTINEL) continue ;;
    esac
    echo "redis-acl.sh: $var is not set (the password of that Redis user)" >&2
    exit 2
  fi
  hashes+="${name}=$(printf '%s' "$pw" | sha256sum | cut -d' ' -f1)"$'\n'
done

HASHES="$hashes" PREFIX="$prefix" MODE="$mode" awk '
  BEGIN {
    n = split(ENVIRON["HASHES"], lines, "\n")
    for (i = 1; i <= n; i++)
      if (lines[i] != "") { split(lines[i], kv, "="); hash[kv[1]] = kv[2] }
    bad = 0
    nbuf = 0
  }
  function emit(line,   name, ph, out) {
    if (line == "") return
    while (match(line, /@[A-Z_]+_PASSWORD@/)) {
      ph = substr(line, RSTART + 1, RLENGTH - 11)
      if (!(ph in hash)) {
        if (ph == "REPLICA" || ph == "SENTINEL") return
        printf "redis-acl.sh: unknown placeholder @%s_PASSWORD@\n", ph > "/dev/stderr"
        bad = 1
        return
      }
      line = substr(line, 1, RSTART - 1) "#" hash[ph] substr(line, RSTART + RLENGTH)
    }
    if (line ~ /@[A-Za-z_]*@/) {
      printf "redis-acl.sh: a placeholder is left in: %s\n", line > "/dev/stderr"
      bad = 1
      return
    }
    gsub(/\{fleet\}/, "{" ENVIRON["PREFIX"] "}", line)
    gsub(/\{fleet:/, "{" ENVIRON["PREFIX"] ":", line)
    if (ENVIRON["MODE"] == "setuser") {
      out = "ACL SETUSER " substr(line, 6)
      split(line, w, " ")
      if (w[2] == "default") { last = out; return }
      buf[++nbuf] = out
    } else {
      buf[++nbuf] = line
    }
  }
  /^[ \t]*#/ || /^[ \t]*$/ { next }
  /^[ \t]/ { gsub(/^[ \t]+|[ \t]+$/, ""); cur = cur " " $0; next }
  /^user / { emit(cur); cur = $0; sub(/[ \t]+$/, "", cur); next }
  { printf "redis-acl.sh: line %d is neither a user line nor indented: %s\n", NR, $0 > "/dev/stderr"; bad = 1 }
  END {
    emit(cur)
    if (last != "") buf[++nbuf] = last
    # All or nothing: a file with some users missing would lock a program out.
    if (bad) exit 2
    for (i = 1; i <= nbuf; i++) print buf[i]
  }
' "$template"
