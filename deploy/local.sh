#!/usr/bin/env bash
# local.sh: a whole fleet on this machine, for trying it out.
#
#   ./deploy/local.sh          install deps, build (release) into build/, start Redis (AOF),
#                              fleet-gateway, an echo, a sleep and a classify worker
#   ./deploy/local.sh stop     stop them all (by pidfile)
#   ./deploy/local.sh status   show what runs
#
# Running it again restarts the fleet processes (Redis keeps running and keeps its data).
# State lives in .fleet-local/ (redis/ data, logs/, run/ pidfiles).
#
# Environment:
#   FLEET_LISTEN             gateway address            (default 127.0.0.1:8080)
#   FLEET_LOCAL_REDIS_PORT   port of the local Redis    (default 6379, or the next free
#                            one if another Redis holds 6379; remembered in .fleet-local)
#   FLEET_PREFIX             key prefix                 (passed through when set)
#   FLEET_LOCAL_STATE        where the state lives      (default .fleet-local)
#   FLEET_EMBED_MODEL        a sentence-transformers model directory (all-MiniLM-L6-v2;
#                            docs/models.md says how to get it): also start an embed
#                            worker on it (--backend auto: the GPU when there is one)
set -euo pipefail
SELF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
cd "$(dirname "$SELF")/.."
ROOT=$(pwd)

STATE="${FLEET_LOCAL_STATE:-$ROOT/.fleet-local}"
LOGS="$STATE/logs"
RUN="$STATE/run"
REDIS_DIR="$STATE/redis"
REDIS_PORTFILE="$REDIS_DIR/port"
# The port: FLEET_LOCAL_REDIS_PORT, else the one a previous run chose, else 6379.
if [[ -n "${FLEET_LOCAL_REDIS_PORT:-}" ]]; then
  REDIS_PORT=$FLEET_LOCAL_REDIS_PORT
elif [[ -s "$REDIS_PORTFILE" ]]; then
  REDIS_PORT=$(cat "$REDIS_PORTFILE")
else
  REDIS_PORT=6379
fi
REDIS_PIDFILE="$REDIS_DIR/redis.pid"
LISTEN="${FLEET_LISTEN:-127.0.0.1:8080}"
LISTEN_PORT="${LISTEN##*:}"
LISTEN_HOST="${LISTEN%:*}"
case "$LISTEN_HOST" in
  "" | 0.0.0.0 | "*" | "[::]") URL_HOST=127.0.0.1 ;;
  *) URL_HOST="$LISTEN_HOST" ;;
esac
URL="http://$URL_HOST:$LISTEN_PORT"
# name:binary:args, one per fleet process
PROCS=(
  "gateway:fleet-gateway:"
  "worker-echo:fleet-worker:--model echo"
  "worker-sleep:fleet-worker:--model sleep"
  "worker-classify:fleet-worker:--model classify"
)
# What stop looks for: also the embed worker of an earlier run with FLEET_EMBED_MODEL.
STOP_PROCS=("${PROCS[@]}" "worker-embed:fleet-worker:")
EMBED_MODEL="${FLEET_EMBED_MODEL:-}"
if [[ -n "$EMBED_MODEL" ]]; then
  [[ "$EMBED_MODEL" =~ [[:space:]] ]] &&
    { printf 'local.sh: FLEET_EMBED_MODEL must not contain spaces\n' >&2; exit 2; }
  [[ -f "$EMBED_MODEL/config.json" ]] ||
    { printf 'local.sh: FLEET_EMBED_MODEL=%s has no config.json (docs/models.md)\n' "$EMBED_MODEL" >&2; exit 2; }
  EMBED_MODEL=$(cd "$EMBED_MODEL" && pwd)
  PROCS+=("worker-embed:fleet-worker:--model embed --model-args $EMBED_MODEL")
fi

say() { printf 'local.sh: %s\n' "$*"; }
die() { printf 'local.sh: %s\n' "$*" >&2; exit 1; }

# pid_matches PID BINARY: true when PID is alive, runs BINARY and was started by local.sh
# for this state directory: its environment holds LOCAL_SH_RUN=$RUN. A stale pidfile
# whose pid was reused, by another program or by another fleet-gateway (a test's, a
# second checkout's), is never signalled.
pid_matches() {
  local pid=$1 bin=$2
  pid_runs "$pid" "$bin" || return 1
  tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qxF -- "LOCAL_SH_RUN=$RUN"
}

# pid_runs PID BINARY: true when PID is alive and runs BINARY.
pid_runs() {
  local pid=$1 bin=$2
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$bin"
}

# STOP_MARGIN_S: what a process may take past its drain timeout to exit: a worker hands
# back the jobs still running (a script call each) and closes; a gateway closes its
# connections.
STOP_MARGIN_S=10

# drain_timeout PID BINARY: the seconds the process may drain on SIGTERM (a worker finishes
# its batch, a gateway its requests): its --drain-timeout option, else the
# FLEET_DRAIN_TIMEOUT it was started with, else the binary's default as its --help says
# (fleet-worker 25, fleet-gateway 10 when there is no binary to ask).
drain_timeout() {
  local pid=$1 bin=$2 v=""
  v=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null |
    sed -n -e '/^--drain-timeout$/{n;p;q;}' -e 's/^--drain-timeout=//p' | head -n 1) || true
  [[ "$v" =~ ^[0-9]+$ ]] ||
    v=$(tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | sed -n 's/^FLEET_DRAIN_TIMEOUT=//p' |
      head -n 1) || true
  [[ "$v" =~ ^[0-9]+$ ]] ||
    v=$("$ROOT/build/bin/$bin" --help 2>/dev/null |
      sed -n 's/^ *--drain-timeout .*default: \([0-9][0-9]*\).*/\1/p' | head -n 1) || true
  if ! [[ "$v" =~ ^[0-9]+$ ]]; then
    if [[ "$bin" == fleet-worker ]]; then v=25; else v=10; fi
  fi
  echo "$v"
}

# stop_pidfiles FILE:BINARY...: SIGTERM to each process at once (they drain side by side),
# then, for each, as long as its drain timeout plus STOP_MARGIN_S for a graceful exit (a
# worker finishes its jobs or hands them back, so none stays `running` on a dead worker
# until its lease ends), then SIGKILL. A pidfile whose pid runs something else is only
# removed.
stop_pidfiles() {
  local spec file bin pid grace i
  local -a files=() bins=() pids=() deadlines=()
  for spec in "$@"; do
    file=${spec%%:*}
    bin=${spec#*:}
    [[ -f "$file" ]] || continue
    pid=$(cat "$file" 2>/dev/null || true)
    if pid_matches "$pid" "$bin"; then
      grace=$(($(drain_timeout "$pid" "$bin") + STOP_MARGIN_S))
      kill -TERM "$pid" 2>/dev/null || true
      files+=("$file") bins+=("$bin") pids+=("$pid") deadlines+=($((SECONDS + grace)))
      say "stopping $(basename "$file" .pid) (pid $pid): waiting up to $grace s for its drain"
    else
      # A live process of that name not started here (or by a local.sh from before
      # LOCAL_SH_RUN): said, never signalled.
      if [[ "$pid" =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$bin"; then
        say "pid $pid in $(basename "$file") runs $bin but was not started by this local.sh: not stopping it"
      fi
      rm -f "$file"
    fi
  done
  for i in "${!pids[@]}"; do
    pid=${pids[$i]}
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadlines[i])); do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      say "${bins[$i]} (pid $pid) did not exit within its drain timeout + $STOP_MARGIN_S s of SIGTERM; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    say "stopped $(basename "${files[$i]}" .pid) (pid $pid)"
    rm -f "${files[$i]}"
  done
}

stop_fleet() {
  local entry name bin
  local -a workers=()
  # workers first, so that they hand their jobs back while Redis and the gateway still
  # run (a worker's drain ends with its handbacks); then the gateway
  for entry in "${STOP_PROCS[@]}"; do
    name=${entry%%:*}
    bin=$(cut -d: -f2 <<<"$entry")
    [[ "$bin" == fleet-worker ]] && workers+=("$RUN/$name.pid:$bin")
  done
  stop_pidfiles "${workers[@]}"
  stop_pidfiles "$RUN/gateway.pid:fleet-gateway"
}

redis_answers() { redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }

# True when the Redis on REDIS_PORT is the one this script started for this state
# directory: its pid is in our pidfile, it serves the port, and its data directory is
# ours. (Redis rewrites its environment for its process title, so LOCAL_SH_RUN cannot
# mark it as pid_matches marks the fleet processes.)
redis_is_ours() {
  [[ -f "$REDIS_PIDFILE" ]] || return 1
  local pid served dir
  pid=$(cat "$REDIS_PIDFILE" 2>/dev/null || true)
  pid_runs "$pid" redis-server || return 1
  served=$(redis-cli -p "$REDIS_PORT" info server 2>/dev/null | tr -d '\r' |
    sed -n 's/^process_id://p')
  [[ "$served" == "$pid" ]] || return 1
  dir=$(redis-cli -p "$REDIS_PORT" config get dir 2>/dev/null | sed -n 2p)
  [[ "$dir" == "$(cd "$REDIS_DIR" 2>/dev/null && pwd -P)" ]]
}

stop_redis() {
  if redis_is_ours; then
    local pid
    pid=$(cat "$REDIS_PIDFILE")
    # SHUTDOWN (not SAVE: persistence is the AOF) flushes the AOF and exits.
    redis-cli -p "$REDIS_PORT" shutdown >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    say "stopped redis-server (pid $pid)"
  fi
}

start_redis() {
  mkdir -p "$REDIS_DIR" "$LOGS"
  if redis_answers; then
    if redis_is_ours; then
      say "reusing redis-server on port $REDIS_PORT (pid $(cat "$REDIS_PIDFILE"))"
      return 0
    fi
    if [[ -n "${FLEET_LOCAL_REDIS_PORT:-}" ]]; then
      die "another Redis already answers on port $REDIS_PORT (not started by local.sh); stop it, or choose another FLEET_LOCAL_REDIS_PORT"
    fi
    # Debian's redis-server package runs a system Redis on 6379: leave it alone and
    # use the next port on which nothing answers.
    local p
    for p in $(seq $((REDIS_PORT + 1)) $((REDIS_PORT + 20))); do
      if ! redis-cli -p "$p" ping >/dev/null 2>&1; then
        say "port $REDIS_PORT belongs to another Redis; using port $p for ours"
        REDIS_PORT=$p
        break
      fi
    done
    redis_answers && die "no free port for our Redis near $REDIS_PORT; set FLEET_LOCAL_REDIS_PORT"
  fi
  echo "$REDIS_PORT" >"$REDIS_PORTFILE"
  # noeviction: a full Redis refuses writes (fleet answers 503 redis-full) instead of
  # deleting jobs and API keys to make room (docs/reliability.md, "A sick Redis").
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 \
    --dir "$REDIS_DIR" --pidfile "$REDIS_PIDFILE" --daemonize yes \
    --appendonly yes --appendfsync everysec --save "" \
    --maxmemory-policy noeviction \
    --logfile "$LOGS/redis.log"
  for ((i = 0; i < 100; i++)); do
    redis_answers && redis_is_ours && break
    sleep 0.1
  done
  redis_is_ours || { tail -n 20 "$LOGS/redis.log" >&2 || true; die "redis-server did not start on port $REDIS_PORT"; }
  say "started redis-server on port $REDIS_PORT (AOF on, appendfsync everysec, maxmemory-policy noeviction, data in ${REDIS_DIR#"$ROOT"/})"
}

build() {
  cmake -S . -B build -DFLEET_TESTS=OFF -DFLEET_SANITIZE=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build -j"$(nproc)"
  local b
  for b in fleet-gateway fleet-worker; do
    [[ -x "build/bin/$b" ]] || die "build/bin/$b was not built"
  done
  # The embed model's backends are modules that fleet-worker opens from its own directory
  # (docs/models.md, "Backend modules"): fleet-embed-cpu.so always, fleet-embed-cuda.so
  # where the build found nvcc.
  [[ -f build/bin/fleet-embed-cpu.so ]] || die "build/bin/fleet-embed-cpu.so was not built"
  [[ -f build/bin/fleet-classify-cpu.so ]] || die "build/bin/fleet-classify-cpu.so was not built"
}

# webhook_secret prints the local fleet's webhook secret (whsec_ + 32 random bytes in
# base64), made on first use: FLEET_WEBHOOK_SECRET when set, else .fleet-local/webhook_secret.
webhook_secret() {
  if [[ -n "${FLEET_WEBHOOK_SECRET:-}" ]]; then
    printf '%s' "$FLEET_WEBHOOK_SECRET"
    return
  fi
  local f="$STATE/webhook_secret"
  if [[ ! -s "$f" ]]; then
    (umask 077 && printf 'whsec_%s' "$(head -c 32 /dev/urandom | base64 -w0)" >"$f")
  fi
  cat "$f"
}

start_one() {
  local name=$1 bin=$2 args=$3
  local -a argv
  read -r -a argv <<<"$args"
  local -a envs=("FLEET_REDIS_URL=redis://127.0.0.1:$REDIS_PORT" "LOCAL_SH_RUN=$RUN")
  if [[ "$bin" == fleet-gateway ]]; then
    # Webhooks: a secret made once and kept in .fleet-local/, and receivers on this
    # machine allowed (the SSRF guard refuses loopback otherwise).
    # API keys are off here (local development); FLEET_AUTH=on ./deploy/local.sh turns them on.
    envs+=("FLEET_LISTEN=$LISTEN" "FLEET_AUTH=${FLEET_AUTH:-off}" "FLEET_WEBHOOK_SECRET=$(webhook_secret)"
           "FLEET_WEBHOOK_ALLOW=${FLEET_WEBHOOK_ALLOW:-127.0.0.0/8,::1/128}")
  fi
  # nohup: the process survives this shell and its terminal.
  env "${envs[@]}" nohup "$ROOT/build/bin/$bin" "${argv[@]}" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
  say "started $name (pid $!): build/bin/$bin ${args}"
}

print_tails() {
  local f
  for f in "$LOGS"/*.log; do
    [[ -f "$f" ]] || continue
    printf '\n--- %s (last 30 lines) ---\n' "${f#"$ROOT"/}" >&2
    tail -n 30 "$f" >&2 || true
  done
}

wait_ready() {
  local deadline=$((SECONDS + 20)) gw_pid
  gw_pid=$(cat "$RUN/gateway.pid")
  while ((SECONDS < deadline)); do
    if ! pid_matches "$gw_pid" fleet-gateway; then
      print_tails
      die "fleet-gateway exited during startup (logs above)"
    fi
    if curl -fsS --max-time 2 "$URL/readyz" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.2
  done
  print_tails
  die "fleet-gateway did not answer $URL/readyz within 20 s (logs above)"
}

start() {
  ./deploy/install-deps.sh
  build
  mkdir -p "$LOGS" "$RUN" "$REDIS_DIR"
  stop_fleet
  if curl -fsS --max-time 2 -o /dev/null "$URL/healthz" 2>/dev/null; then
    die "something else already answers on $URL; stop it or set FLEET_LISTEN=127.0.0.1:8081"
  fi
  start_redis
  local entry name bin args
  for entry in "${PROCS[@]}"; do
    name=${entry%%:*}
    bin=$(cut -d: -f2 <<<"$entry")
    args=$(cut -d: -f3- <<<"$entry")
    start_one "$name" "$bin" "$args"
  done
  wait_ready
  sleep 0.3
  for entry in "${PROCS[@]}"; do
    name=${entry%%:*}
    bin=$(cut -d: -f2 <<<"$entry")
    if ! pid_matches "$(cat "$RUN/$name.pid")" "$bin"; then
      print_tails
      die "$name exited right after starting (logs above)"
    fi
  done

  cat <<EOT

fleet is running at $URL  (Redis: redis://127.0.0.1:$REDIS_PORT, AOF in ${REDIS_DIR#"$ROOT"/})
API keys: ${FLEET_AUTH:-off}. Off is for local development only; with FLEET_AUTH=on every /v1
request needs Authorization: Bearer <key>, and build/bin/fleetctl tenant add NAME makes one.

Try it (a sleep job of 3 s in 3 steps; poll its status, then fetch the result):

  id=\$(curl -s -X POST $URL/v1/jobs -H 'Content-Type: application/json' \\
        -d '{"model":"sleep","input":{"ms":3000,"steps":3}}' | sed -n 's/.*"id": *"\\([^"]*\\)".*/\\1/p')
  curl -s $URL/v1/jobs/\$id            # status, progress
  curl -s $URL/v1/jobs/\$id/result     # 425 until it is done, then {"slept_ms":3000,"steps":3}

EOT
  if [[ -x build/bin/fleetctl ]]; then
    cat <<EOT
Or with the CLI:

  build/bin/fleetctl --url $URL submit echo '{"hello":"world"}'
  build/bin/fleetctl --url $URL wait <id>

EOT
  fi
  cat <<EOT
Wait for the result in one call, or follow a job live:

  curl -s -X POST $URL/v1/jobs -H 'Content-Type: application/json' -H 'Prefer: wait=30' \\
       -d '{"model":"echo","input":{"hello":"world"}}'
  curl -N $URL/v1/jobs/<id>/events

Classify an image (a 28x28 garment, light on black; examples/classify/ has four):

  curl -s -X POST $URL/v1/jobs -H 'Prefer: wait=10' \\
       -F model=classify -F file=@examples/classify/sneaker.png

Webhooks are signed with the secret in ${STATE#"$ROOT"/}/webhook_secret (docs/webhooks.md).
EOT
  if [[ -n "$EMBED_MODEL" ]]; then
    cat <<EOT

Sentence embeddings ($EMBED_MODEL):

  curl -s -X POST $URL/v1/jobs -H 'Content-Type: application/json' -H 'Prefer: wait=30' \\
       -d '{"model":"embed","input":{"texts":["hello world","fleet embeds texts"]}}'

EOT
  else
    cat <<EOT

Sentence embeddings: FLEET_EMBED_MODEL=/path/to/all-MiniLM-L6-v2 ./deploy/local.sh also
starts an embed worker (docs/models.md says how to get the model).

EOT
  fi
  cat <<EOT


Logs:  ${LOGS#"$ROOT"/}/  (gateway.log, worker-*.log, redis.log)
Stop:  ./deploy/local.sh stop
EOT
}

status() {
  local entry name bin pid
  for entry in "${PROCS[@]}"; do
    name=${entry%%:*}
    bin=$(cut -d: -f2 <<<"$entry")
    pid=$(cat "$RUN/$name.pid" 2>/dev/null || true)
    if pid_matches "$pid" "$bin"; then
      say "$name: running (pid $pid)"
    else
      say "$name: not running"
    fi
  done
  if redis_is_ours; then
    say "redis-server: running on port $REDIS_PORT (pid $(cat "$REDIS_PIDFILE"))"
  else
    say "redis-server: not running (ours) on port $REDIS_PORT"
  fi
}

case "${1:-start}" in
  start) start ;;
  stop)
    stop_fleet
    stop_redis
    ;;
  status) status ;;
  -h | --help | help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$SELF" ;;
  *) die "unknown command '$1' (use: start, stop, status)" ;;
esac
