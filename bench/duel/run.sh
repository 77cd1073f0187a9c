#!/usr/bin/env bash
# bench/duel/run.sh: fleet vs BullMQ on one Redis (docs/benchmarks.md, "fleet vs BullMQ
# (the duel)"). Installs the pinned BullMQ into bench/duel/node_modules (a tool of this
# benchmark, never a dependency of fleet), builds fleet in release mode, starts one
# throwaway redis-server on loopback without persistence, and runs bench/duel/duel.mjs:
# both systems side by side, interleaved, several rounds, figures per round and medians.
# Prints figures; never passes or fails on them.
#
#   bench/duel/run.sh                       # 3 rounds, defaults below
#   bench/duel/run.sh --rounds 1            # or DUEL_ROUNDS=1
#   BENCH_BUILD=0 bench/duel/run.sh         # reuse the build as it is
#   DUEL_COMMIT=35f7631 bench/duel/run.sh   # fleet as of that commit (a baseline)
#
# Settings (environment):
#   DUEL_ROUNDS (3)            rounds; each runs every phase for both systems
#   DUEL_JOBS (20000)          jobs of the lifecycle phase (Redis CPU and memory per job,
#                              submit throughput)
#   DUEL_DRAIN_JOBS (50000)    jobs one worker drains in the drain phase
#   DUEL_LATENCY_JOBS (2000)   jobs of the lone client, one at a time
#   DUEL_LOAD_RATE (500), DUEL_LOAD_SECS (5)   the open-loop latency run
#   DUEL_INFLIGHT (64)         submits in flight (fleet-bench connections, queue.add lanes)
#   DUEL_FLEET_WORKER_ARGS     extra fleet-worker arguments (default none: its defaults)
#   BENCH_BUILD (1)            0 reuses the build directory as it is
#   BENCH_BUILD_DIR            release build directory (default build-duel, or
#                              build-duel-<commit> with DUEL_COMMIT)
#   DUEL_COMMIT                build fleet from this commit (git archive) instead of the
#                              working tree
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

die() { echo "bench/duel/run.sh: $*" >&2; exit 1; }

while (($#)); do
    case $1 in
    --rounds) [[ $# -ge 2 ]] || die "--rounds needs a number"; DUEL_ROUNDS=$2; shift 2 ;;
    --rounds=*) DUEL_ROUNDS=${1#--rounds=}; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
    esac
done
export DUEL_ROUNDS=${DUEL_ROUNDS:-3}
for v in DUEL_ROUNDS DUEL_JOBS DUEL_DRAIN_JOBS DUEL_LATENCY_JOBS DUEL_LOAD_RATE DUEL_LOAD_SECS \
    DUEL_INFLIGHT; do
    [[ -z ${!v:-} || ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a whole number above 0 (got '${!v}')"
done

if [[ -n ${DUEL_COMMIT:-} ]]; then
    REV=$(git -C "$ROOT" rev-parse --short "$DUEL_COMMIT^{commit}" 2>/dev/null) ||
        die "DUEL_COMMIT=$DUEL_COMMIT is not a commit of $ROOT"
    BUILD=${BENCH_BUILD_DIR:-$ROOT/build-duel-$REV}
else
    BUILD=${BENCH_BUILD_DIR:-$ROOT/build-duel}
fi
BIN=$BUILD/bin

# ------------------------------------------------------------------ cleanup ----------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/fleet-duel.XXXXXX")
PIDS_FILE=$TMP/pids
: >"$PIDS_FILE"
REDIS_PID=
DUEL_PID=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e # a process already gone must not cut the clean-up short
    # duel.mjs ends what it started; what it could not (killed itself) is in PIDS_FILE.
    [[ -n $DUEL_PID ]] && kill -TERM "$DUEL_PID" 2>/dev/null
    [[ -n $DUEL_PID ]] && wait "$DUEL_PID" 2>/dev/null
    local pid
    while read -r pid; do
        [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null
    done <"$PIDS_FILE"
    sleep 0.2
    while read -r pid; do
        [[ -n $pid ]] && kill -KILL "$pid" 2>/dev/null
    done <"$PIDS_FILE"
    if [[ -n $REDIS_PID ]]; then
        kill -TERM "$REDIS_PID" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$REDIS_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$REDIS_PID" 2>/dev/null
        wait "$REDIS_PID" 2>/dev/null
    fi
    # The processes' logs stay after a failure (or with DUEL_KEEP_LOGS=1), for a look.
    if [[ $rc != 0 || ${DUEL_KEEP_LOGS:-0} != 0 ]]; then
        echo "(the processes' logs are in $TMP)" >&2
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ tools ------------------
command -v node >/dev/null || die "node is not installed (Node.js 18 or later)"
command -v npm >/dev/null || die "npm is not installed"
command -v redis-server >/dev/null || die "redis-server is not installed (Debian: redis-server)"
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)' ||
    die "node $(node --version) is too old: the duel needs Node.js 18 or later"

# BullMQ and ioredis, the versions package.json pins, as package-lock.json records them.
installed_ok() {
    node -e '
        const fs = require("fs"), want = require("./package.json").dependencies;
        for (const [name, v] of Object.entries(want)) {
            const p = `node_modules/${name}/package.json`;
            if (!fs.existsSync(p) || JSON.parse(fs.readFileSync(p)).version !== v) process.exit(1);
        }' 2>/dev/null
}
if ! (cd "$HERE" && installed_ok); then
    echo "== installing BullMQ into bench/duel/node_modules (npm ci)"
    (cd "$HERE" && npm ci --no-audit --no-fund >"$TMP/npm.log" 2>&1) || {
        tail -30 "$TMP/npm.log" >&2
        die "npm ci failed in $HERE (above: npm's output). The duel needs the npm registry" \
            "once, or a bench/duel/node_modules installed by 'npm ci' there."
    }
    (cd "$HERE" && installed_ok) || die "npm ci did not install the versions of bench/duel/package.json"
fi

# ------------------------------------------------------------------ build ------------------
if [[ ${BENCH_BUILD:-1} != 0 ]]; then
    SRC=$ROOT
    if [[ -n ${DUEL_COMMIT:-} ]]; then
        SRC=$TMP/src
        mkdir -p "$SRC"
        git -C "$ROOT" archive "$REV" | tar -x -C "$SRC" || die "git archive $REV failed"
        # The cache remembers its source directory: a new export needs a new cache.
        rm -f "$BUILD/CMakeCache.txt"
    fi
    echo "== building fleet (release) in $BUILD${DUEL_COMMIT:+ from commit $REV}"
    cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DFLEET_TESTS=OFF >"$TMP/cmake.log" 2>&1 ||
        { tail -40 "$TMP/cmake.log" >&2; die "cmake configure failed"; }
    cmake --build "$BUILD" -j "$(nproc)" --target fleet-gateway fleet-worker fleet-bench fleetctl \
        >>"$TMP/cmake.log" 2>&1 || { tail -40 "$TMP/cmake.log" >&2; die "build failed"; }
fi
for b in fleet-gateway fleet-worker fleet-bench fleetctl; do
    [[ -x $BIN/$b ]] || die "$BIN/$b was not built (BENCH_BUILD=0 needs an earlier build there)"
done

# ------------------------------------------------------------------ Redis ------------------
. "$HERE/../lib.sh"
RPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --maxmemory-policy noeviction --dir "$TMP" \
    --logfile "$TMP/redis.log" --daemonize no >>"$TMP/redis.log" 2>&1 &
REDIS_PID=$!
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$RPORT") 2>/dev/null && break
    kill -0 "$REDIS_PID" 2>/dev/null || { cat "$TMP/redis.log" >&2; die "redis-server did not start"; }
    sleep 0.1
done

# ------------------------------------------------------------------ machine ----------------
echo "== machine"
echo "date:     $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "cpu:      $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo) (nproc $(nproc))"
echo "memory:   $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
echo "load:     $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min) before the duel"
echo "kernel:   $(uname -sr)"
echo "redis:    $(redis-server --version | awk '{print $3}') (--save '' --appendonly no)"
echo "node:     $(node --version)"
if [[ -n ${DUEL_COMMIT:-} ]]; then
    echo "fleet:    commit $REV, built in $BUILD"
else
    echo "fleet:    commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' + local changes'), built in $BUILD"
fi
echo

# ------------------------------------------------------------------ duel -------------------
DUEL_BIN=$BIN DUEL_TMP=$TMP DUEL_PIDS=$PIDS_FILE DUEL_REDIS_PORT=$RPORT DUEL_REDIS_PID=$REDIS_PID \
    DUEL_CLK_TCK=$(getconf CLK_TCK) node "$HERE/duel.mjs" &
DUEL_PID=$!
wait "$DUEL_PID"
DUEL_PID=
