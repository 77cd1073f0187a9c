#!/usr/bin/env bash
# containers.sh: builds fleet's gateway and CPU worker images with podman from a locally
# made Debian 12 base, then smoke-tests them for real: Redis, the gateway and an echo
# worker in containers on one network, a job submitted with curl from this machine that
# must succeed with the right result; everything it started is removed at the end.
#
#   sudo deploy/containers.sh            build (reusing what is cached) and smoke-test
#   sudo deploy/containers.sh --head     the same from the committed tree (git archive HEAD)
#                                        instead of the working tree
#   sudo deploy/containers.sh --keep     leave the smoke test's containers running
#   sudo deploy/containers.sh --gpu      also check deploy/Containerfile.worker-gpu without
#                                        NVIDIA's images: bases made from this machine's
#                                        CUDA toolkit and cuDNN (about 4.5 GB, removed after)
#   sudo deploy/containers.sh --down     remove the containers a --keep run left, and exit
#   sudo deploy/containers.sh --clean    remove those, the images, the Debian base and the
#                                        cache (the next run makes them again), and exit
#
# It takes a minute or two (the first run about three: packages, the base, the build
# stages), so it is not part of ./tests/run.sh's default run: FLEET_TEST_CONTAINERS=1
# ./tests/run.sh runs it at the end. Idempotent: podman, buildah, mmdebstrap, skopeo and runc
# are installed only when missing, the Debian base is made once and kept, and podman's
# layer cache makes a rebuild of unchanged sources quick. Needs root (rootful podman).
# docs/containers.md says what the images hold and how the images build elsewhere.
#
# Environment:
#   FLEET_CONTAINERS_CACHE   where the base's rootfs tar and containers.conf live
#                            (default /var/tmp/fleet-containers; outside the repository)
#   FLEET_CONTAINERS_PORT    host port of the smoke test's gateway (127.0.0.1 only;
#                            default: the first free one from 28080)
#   FLEET_CONTAINERS_TAG     tag of the images built (default dev)
#   FLEET_DEBIAN_MIRROR      Debian mirror for the base (default http://deb.debian.org/debian)
#   FLEET_DEBIAN_SECURITY    its security suite's (default http://deb.debian.org/debian-security)
#   FLEET_CUDA_HOME          the CUDA toolkit --gpu copies (default: where /usr/local/cuda
#                            points)
#
# Exit status: 0 PASS, 1 FAIL (the reason and the containers' logs are printed), 2 misuse.
set -euo pipefail
SELF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
cd "$(dirname "$SELF")/.."
ROOT=$(pwd)

CACHE="${FLEET_CONTAINERS_CACHE:-/var/tmp/fleet-containers}"
PORT="${FLEET_CONTAINERS_PORT:-}"
TAG="${FLEET_CONTAINERS_TAG:-dev}"
MIRROR="${FLEET_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY="${FLEET_DEBIAN_SECURITY:-http://deb.debian.org/debian-security}"
BASE_IMAGE=localhost/debian:bookworm-slim
GATEWAY_IMAGE=localhost/fleet-gateway:$TAG
WORKER_IMAGE=localhost/fleet-worker:$TAG
REDIS_IMAGE=localhost/fleet-redis:$TAG
# podman-compose runs deploy/compose.yaml; jq reads the API's answers
PACKAGES=(podman buildah mmdebstrap skopeo runc podman-compose jq)
# The smoke test's names carry the pid, so two runs never meet; --clean finds a --keep
# run's by the label.
RUN_ID="fleet-smoke-$$"
SMOKE_LABEL=fleet.containers-smoke=1

KEEP=0
HEAD=0
CLEAN=0
DOWN=0
GPU=0
for arg in "$@"; do
  case "$arg" in
    --keep) KEEP=1 ;;
    --head) HEAD=1 ;;
    --clean) CLEAN=1 ;;
    --down) DOWN=1 ;;
    --gpu) GPU=1 ;;
    -h | --help)
      awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$SELF"
      exit 0
      ;;
    *)
      printf 'containers.sh: unknown argument %s (see --help)\n' "$arg" >&2
      exit 2
      ;;
  esac
done
port_in_use() { [[ -n "$(ss -Htln "sport = :$1" 2>/dev/null)" ]]; }
if [[ -z "$PORT" ]]; then
  for PORT in $(seq 28080 28180); do port_in_use "$PORT" || break; done
fi
if ! [[ "$PORT" =~ ^[0-9]+$ ]] || ((PORT < 1 || PORT > 65535)); then
  printf 'containers.sh: FLEET_CONTAINERS_PORT=%s is not a port\n' "$PORT" >&2
  exit 2
fi

T0=$SECONDS
STEP_T0=$SECONDS
TIMINGS=()
say() { printf 'containers.sh: %s\n' "$*"; }
# step NAME: ends the previous step's timing and starts NAME's.
step() {
  finish_step
  STEP_NAME=$1
  STEP_T0=$SECONDS
  say "== $STEP_NAME"
}
STEP_NAME=""
finish_step() {
  [[ -n "$STEP_NAME" ]] && TIMINGS+=("$(printf '%-40s %4d s' "$STEP_NAME" $((SECONDS - STEP_T0)))")
  STEP_NAME=""
}
print_timings() {
  finish_step
  local t
  for t in "${TIMINGS[@]}"; do printf '  %s\n' "$t"; done
  printf '  %-40s %4d s\n' "total" $((SECONDS - T0))
}
# logged NAME COMMAND...: runs COMMAND with its output in $CACHE/logs/NAME.log (a build's
# hundreds of lines); on failure shows the last 60 lines and returns its status.
logged() {
  local name=$1 rc=0
  shift
  mkdir -p "$CACHE/logs"
  "$@" >"$CACHE/logs/$name.log" 2>&1 || rc=$?
  if ((rc)); then
    printf '\n--- the last 60 lines of %s ---\n' "$CACHE/logs/$name.log" >&2
    tail -n 60 "$CACHE/logs/$name.log" >&2
  fi
  return "$rc"
}
fail() {
  printf 'containers.sh: FAIL: %s\n' "$*" >&2
  show_logs
  print_timings >&2
  printf 'containers.sh: FAIL\n' >&2
  exit 1
}

if [[ $(id -u) -ne 0 ]]; then
  printf 'containers.sh: run as root (rootful podman): sudo %s\n' "${SELF#"$ROOT"/}" >&2
  exit 2
fi

# --- packages ------------------------------------------------------------------------------
install_packages() {
  local p missing=()
  for p in "${PACKAGES[@]}"; do
    [[ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" == installed ]] ||
      missing+=("$p")
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    say "${PACKAGES[*]}: installed"
    return
  fi
  say "installing ${missing[*]}"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

# --- podman's settings ---------------------------------------------------------------------
# Two workarounds this kind of VM needs: crun fails here ("cgroups in hybrid mode not
# supported"), so runc; and the VM withholds CAP_SYS_RESOURCE, so a container may not raise
# its own limits ("setrlimit RLIMIT_NOFILE: Operation not permitted"): explicit ulimits.
# cgroupfs and a file events log: there is no systemd to manage scopes or a journal.
write_containers_conf() {
  mkdir -p "$CACHE"
  local want
  want=$(printf '%s\n' '# written by deploy/containers.sh' \
    '[containers]' 'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]' \
    '[engine]' 'runtime = "runc"' 'cgroup_manager = "cgroupfs"' 'events_logger = "file"')
  if [[ "$(cat "$CACHE/containers.conf" 2>/dev/null || true)" != "$want" ]]; then
    printf '%s\n' "$want" >"$CACHE/containers.conf"
  fi
  export CONTAINERS_CONF="$CACHE/containers.conf"
}

# --- the Debian base -------------------------------------------------------------------------
# No registry answers here, so the public debian:bookworm-slim cannot be pulled: mmdebstrap
# makes the same Debian 12 (minbase: essential packages and apt) from the Debian mirror,
# once; the tar is kept in the cache and imported again should the image be gone.
make_base() {
  if podman image exists "$BASE_IMAGE"; then
    say "reusing $BASE_IMAGE"
    return
  fi
  if [[ ! -s "$CACHE/rootfs.tar" ]]; then
    say "making the Debian 12 base with mmdebstrap ($MIRROR)"
    rm -f "$CACHE/rootfs.tar.part"
    logged mmdebstrap mmdebstrap --variant=minbase --format=tar bookworm "$CACHE/rootfs.tar.part" \
      "deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main" \
      "deb $SECURITY bookworm-security main" || fail "mmdebstrap failed"
    mv "$CACHE/rootfs.tar.part" "$CACHE/rootfs.tar"
  fi
  podman import --message "Debian 12 minbase made by deploy/containers.sh with mmdebstrap" \
    "$CACHE/rootfs.tar" "$BASE_IMAGE" >/dev/null
  say "imported $CACHE/rootfs.tar as $BASE_IMAGE"
}

# --- the images ------------------------------------------------------------------------------
SRC="$ROOT"
SRC_TMP=""
prepare_source() {
  if ((HEAD)); then
    SRC_TMP=$(mktemp -d /var/tmp/fleet-containers-src.XXXXXX)
    git -C "$ROOT" archive HEAD | tar -x -C "$SRC_TMP"
    SRC="$SRC_TMP"
    say "building from the committed tree ($(git -C "$ROOT" rev-parse --short HEAD))"
  else
    say "building from the working tree"
  fi
}

build_image() {
  local file=$1 image=$2 version revision
  version=$(sed -n 's/^project(fleet VERSION \([0-9.]*\).*/\1/p' "$SRC/CMakeLists.txt")
  revision=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
  if ((!HEAD)) && [[ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
    revision="$revision-dirty"
  fi
  # --format docker: OCI image configs have no HEALTHCHECK (podman would drop it).
  podman build --format docker --layers \
    --build-arg "BASE=$BASE_IMAGE" --build-arg "VERSION=${version:-unknown}" \
    --build-arg "REVISION=$revision" --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    -f "$SRC/$file" -t "$image" "$SRC"
}

# Redis for the smoke test: Debian's redis-server on the same base (the compose file uses
# the public redis image by default; this one takes the same command line, with /data).
build_redis_image() {
  podman build --format docker --layers --build-arg "BASE=$BASE_IMAGE" -t "$REDIS_IMAGE" -f - "$CACHE" <<'EOF'
ARG BASE
FROM ${BASE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o redis -g redis /data
USER redis
WORKDIR /data
CMD ["redis-server"]
EOF
}

# --- the smoke test --------------------------------------------------------------------------
NET="$RUN_ID"
C_REDIS="$RUN_ID-redis"
C_GATEWAY="$RUN_ID-gateway"
C_WORKER="$RUN_ID-worker-echo"
C_EMBED="$RUN_ID-worker-embed"
C_PLUGIN="$RUN_ID-worker-bytes"
PLUGIN_IMAGE=localhost/fleet-worker-bytes:$TAG
BUILD_IMAGE=localhost/fleet-worker-build:$TAG
MODEL_DIR=""
STARTED=0

show_logs() {
  ((STARTED)) || return 0
  local c
  for c in "$C_REDIS" "$C_GATEWAY" "$C_WORKER" "$C_EMBED" "$C_PLUGIN"; do
    podman container exists "$c" 2>/dev/null || continue
    printf '\n--- podman logs %s (last 30 lines) ---\n' "$c" >&2
    podman logs --tail 30 "$c" >&2 2>&1 || true
  done
}

remove_smoke() {
  local -a filter=(--filter "label=$SMOKE_LABEL") ids nets
  # this run's (by its id), or, with no argument (--down, --clean), every run's
  [[ -n "${1:-}" ]] && filter+=(--filter "label=fleet.containers-run=$1")
  mapfile -t ids < <(podman ps -a -q "${filter[@]}" 2>/dev/null)
  if ((${#ids[@]})); then podman rm -f -t 40 "${ids[@]}" >/dev/null 2>&1 || true; fi
  mapfile -t nets < <(podman network ls -q "${filter[@]}" 2>/dev/null)
  if ((${#nets[@]})); then podman network rm -f "${nets[@]}" >/dev/null 2>&1 || true; fi
}

cleanup() {
  local rc=$?
  if ((STARTED && !KEEP)); then remove_smoke "$RUN_ID"; fi
  compose_down
  ((GPU)) && gpu_cleanup
  [[ -n "$SRC_TMP" ]] && rm -rf "$SRC_TMP"
  [[ -n "$MODEL_DIR" ]] && ((!KEEP)) && rm -rf "$MODEL_DIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

URL="http://127.0.0.1:$PORT"

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# canon_json: stdin's JSON with sorted keys on one line; fails on anything not JSON.
canon_json() { jq -cS . 2>/dev/null; }

# prun: podman run, without the noise of a machine with no systemd and no syslog: the
# errors podman logs for an image with a HEALTHCHECK whose timer it cannot start (the
# check is run by hand below: podman healthcheck run), and conmon's "failed to connect to
# syslog" when a container exits.
prun() { podman run "$@" 2> >(grep -v -e 'unable to get systemd connection' -e 'failed to connect to syslog' >&2); }

# http METHOD PATH [curl args...]: prints the body, then a line with the status.
http() {
  local method=$1 path=$2
  shift 2
  curl -sS --max-time 10 -X "$method" -w '\n%{http_code}' \
    -H "Authorization: Bearer $API_KEY" "$@" "$URL$path"
}

# make_tiny_model: a tiny BERT model directory for the embed worker (2 layers, hidden 32,
# random weights: the tests' own model, tests/lib/bert_gen.c), written by a generator
# compiled in the CPU worker's build stage (which has the compiler and the sources), so
# nothing but podman is needed here. No real model's weights are available on this machine.
make_tiny_model() {
  logged build-worker-stage podman build --format docker --layers --target build \
    --build-arg "BASE=$BASE_IMAGE" -f "$SRC/deploy/Containerfile.worker" -t "$BUILD_IMAGE" "$SRC" ||
    fail "building the worker's build stage failed"
  MODEL_DIR=$(mktemp -d /var/tmp/fleet-containers-model.XXXXXX)
  podman run --rm -v "$MODEL_DIR:/out" "$BUILD_IMAGE" sh -c '
    cat >/tmp/gen.c <<EOF
#include <stdio.h>
#include "bert_gen.h"
int main(int argc, char **argv) {
    static const bert_gen_shape tiny = {.hidden = 32, .layers = 2, .heads = 4, .inter = 64,
                                        .vocab = 100, .max_pos = 64, .max_seq_length = 64};
    char err[512] = "";
    if (argc != 2 || bert_gen_write(argv[1], &tiny, false, "", err, sizeof err) != 0) {
        fprintf(stderr, "gen: %s\\n", err);
        return 1;
    }
    return 0;
}
EOF
    cc -std=c11 -D_GNU_SOURCE -I tests/lib -I shared/include -o /tmp/gen /tmp/gen.c \
      tests/lib/bert_gen.c -lm && /tmp/gen /out' || fail "writing the tiny embed model failed"
  chmod -R a+rX "$MODEL_DIR"
}

smoke() {
  local labels=(--label "$SMOKE_LABEL" --label "fleet.containers-run=$RUN_ID")
  STARTED=1
  if port_in_use "$PORT"; then
    fail "something already answers on $URL; choose another FLEET_CONTAINERS_PORT"
  fi
  podman network create "${labels[@]}" "$NET" >/dev/null

  # Redis as fleet wants it (docs/redis.md): AOF, everysec, noeviction. protected-mode
  # off: the gateway and the worker connect from other addresses of the network, not
  # loopback, and nothing outside the network reaches it (no port is published).
  prun -d "${labels[@]}" --name "$C_REDIS" --network "$NET" --network-alias redis \
    "$REDIS_IMAGE" redis-server --protected-mode no --appendonly yes --appendfsync everysec \
    --maxmemory-policy noeviction --save "" --dir /data >/dev/null
  local deadline=$((SECONDS + 30))
  until podman exec "$C_REDIS" redis-cli ping 2>/dev/null | grep -q PONG; do
    ((SECONDS < deadline)) || fail "redis did not answer PING within 30 s"
    sleep 0.2
  done
  say "redis answers (AOF $(podman exec "$C_REDIS" redis-cli config get appendonly | tail -n 1))"

  # The gateway with API keys on (its default), the key made by the image's own fleetctl.
  local redis_url=redis://redis:6379
  API_KEY=$(prun --rm "${labels[@]}" --network "$NET" --entrypoint fleetctl \
    -e FLEET_REDIS_URL=$redis_url "$GATEWAY_IMAGE" tenant add smoke --admin --json |
    sed -n 's/.*"api_key": *"\([^"]*\)".*/\1/p')
  [[ -n "$API_KEY" ]] || fail "fleetctl tenant add (in $GATEWAY_IMAGE) printed no API key"
  say "tenant smoke made with the gateway image's fleetctl"

  prun -d --read-only "${labels[@]}" --name "$C_GATEWAY" --network "$NET" \
    -p "127.0.0.1:$PORT:8080" -e FLEET_REDIS_URL=$redis_url "$GATEWAY_IMAGE" >/dev/null
  deadline=$((SECONDS + 30))
  until curl -fsS --max-time 2 -o /dev/null "$URL/readyz" 2>/dev/null; do
    [[ "$(podman inspect -f '{{.State.Running}}' "$C_GATEWAY" 2>/dev/null)" == true ]] ||
      fail "the gateway container exited"
    ((SECONDS < deadline)) || fail "the gateway did not answer $URL/readyz within 30 s"
    sleep 0.2
  done
  say "gateway ready on $URL"

  prun -d --read-only "${labels[@]}" --name "$C_WORKER" --network "$NET" \
    -e FLEET_REDIS_URL=$redis_url -e FLEET_WORKER_NAME=smoke-echo "$WORKER_IMAGE" --model echo >/dev/null

  # The images' own promises: a non-root numeric user, and the gateway's HEALTHCHECK. (The
  # fleet containers run with --read-only, as Kubernetes' readOnlyRootFilesystem would.)
  local uid
  for c in "$C_GATEWAY" "$C_WORKER"; do
    uid=$(podman exec "$c" id -u)
    [[ "$uid" == 10001 ]] || fail "$c runs as uid $uid, not 10001"
  done
  # (podman runs health checks on a timer only under systemd; `healthcheck run` runs one)
  podman healthcheck run "$C_GATEWAY" >/dev/null 2>&1 || fail "the gateway's HEALTHCHECK failed"
  say "both run as uid 10001 on a read-only root filesystem; the gateway's HEALTHCHECK passes"

  # The job, from this machine, through the published port.
  local input='{"hello":"containers","n":[1,2,3]}' out code id status=""
  out=$(http POST /v1/jobs -H 'Content-Type: application/json' \
    -d "{\"model\":\"echo\",\"input\":$input}") || fail "POST /v1/jobs: curl failed"
  code=${out##*$'\n'}
  [[ "$code" == 202 || "$code" == 201 || "$code" == 200 ]] ||
    fail "POST /v1/jobs answered $code: ${out%$'\n'*}"
  id=$(sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' <<<"${out%$'\n'*}" | head -n 1)
  [[ -n "$id" ]] || fail "POST /v1/jobs answered no id: ${out%$'\n'*}"
  say "submitted job $id (HTTP $code)"
  local t_submit
  t_submit=$(now_ms)
  deadline=$((SECONDS + 60))
  while :; do
    out=$(http GET "/v1/jobs/$id") || fail "GET /v1/jobs/$id: curl failed"
    status=$(sed -n 's/.*"status": *"\([^"]*\)".*/\1/p' <<<"${out%$'\n'*}" | head -n 1)
    case "$status" in
      succeeded) break ;;
      failed | cancelled | expired) fail "job $id ended $status: ${out%$'\n'*}" ;;
    esac
    ((SECONDS < deadline)) || fail "job $id still '$status' after 60 s"
    sleep 0.2
  done
  out=$(http GET "/v1/jobs/$id/result") || fail "GET /v1/jobs/$id/result: curl failed"
  code=${out##*$'\n'}
  local result=${out%$'\n'*}
  [[ "$code" == 200 ]] || fail "GET /v1/jobs/$id/result answered $code: $result"
  # echo's output is its input; compared as JSON (keys sorted), not as text
  local want got
  want=$(canon_json <<<"$input") || fail "the test's own input is not JSON: $input"
  got=$(canon_json <<<"$result") || fail "job $id's result is not JSON: $result"
  [[ "$got" == "$want" ]] || fail "job $id's result is $result, not its input $input"
  say "job $id succeeded $(($(now_ms) - t_submit)) ms after its submit; its result is its input"

  # A worker stops cleanly on SIGTERM (its drain): exit status 0, within the grace.
  podman stop -t 40 "$C_WORKER" >/dev/null
  local wrc
  wrc=$(podman inspect -f '{{.State.ExitCode}}' "$C_WORKER")
  [[ "$wrc" == 0 ]] || fail "the worker exited $wrc on SIGTERM, not 0"
  say "the worker drained and exited 0 on SIGTERM"

  # The embed model on the CPU worker image: its OpenBLAS module loads and embeds.
  make_tiny_model
  prun -d --read-only "${labels[@]}" --name "$C_EMBED" --network "$NET" -v "$MODEL_DIR:/models/model:ro" \
    -e FLEET_REDIS_URL=$redis_url -e FLEET_CPU_THREADS=2 "$WORKER_IMAGE" \
    --model embed --model-args /models/model >/dev/null
  deadline=$((SECONDS + 30))
  until [[ "$(http GET /v1/models | sed '$d' |
    jq -r '.models[] | select(.name == "embed") | "\(.workers) \(.backend)"' 2>/dev/null)" == "1 cpu" ]]; do
    [[ "$(podman inspect -f '{{.State.Running}}' "$C_EMBED" 2>/dev/null)" == true ]] ||
      fail "the embed worker exited"
    ((SECONDS < deadline)) || fail "GET /v1/models shows no live embed worker on the CPU after 30 s"
    sleep 0.2
  done
  out=$(http POST /v1/jobs -H 'Content-Type: application/json' -H 'Prefer: wait=30' \
    -d '{"model":"embed","input":{"texts":["hello world","fleet embeds texts"]}}') ||
    fail "POST /v1/jobs (embed): curl failed"
  result=$(sed '$d' <<<"$out")
  [[ "$(jq -r .status <<<"$result")" == succeeded ]] || fail "the embed job did not succeed: $result"
  [[ "$(jq -c '[.result.dim, (.result.embeddings | length), (.result.embeddings | map(length))]' \
    <<<"$result")" == '[32,2,[32,32]]' ]] ||
    fail "the embed job's result is not 2 vectors of 32: $(jq -c .result <<<"$result" | head -c 300)"
  say "an embed job succeeded on the CPU worker image: 2 texts, 2 vectors of 32 (the tiny model)"

  # A plug-in built FROM the worker image with its fleet-plugin.pc (docs/containers.md
  # shows this Containerfile): examples/plugin/bytes.c, which answers {"bytes": N}.
  logged build-plugin podman build --format docker --layers --build-arg "WORKER=$WORKER_IMAGE" \
    -t "$PLUGIN_IMAGE" -f - "$SRC/examples/plugin" <<'EOF' || fail "building a plug-in FROM $WORKER_IMAGE failed"
ARG WORKER
FROM ${WORKER} AS build
USER root
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gcc libc6-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
COPY bytes.c /tmp/
RUN cc -shared -fPIC -O2 $(pkg-config --cflags fleet-plugin) -o /tmp/libfleet_model_bytes.so /tmp/bytes.c

FROM ${WORKER}
COPY --from=build /tmp/libfleet_model_bytes.so /plugins/
CMD ["--model-plugin", "/plugins/libfleet_model_bytes.so"]
EOF
  prun -d --read-only "${labels[@]}" --name "$C_PLUGIN" --network "$NET" -e FLEET_REDIS_URL=$redis_url \
    "$PLUGIN_IMAGE" >/dev/null
  deadline=$((SECONDS + 30))
  until [[ "$(http GET /v1/models | sed '$d' |
    jq -r '.models[] | select(.name == "bytes") | .workers' 2>/dev/null)" == 1 ]]; do
    [[ "$(podman inspect -f '{{.State.Running}}' "$C_PLUGIN" 2>/dev/null)" == true ]] ||
      fail "the plug-in worker exited"
    ((SECONDS < deadline)) || fail "GET /v1/models shows no live bytes worker after 30 s"
    sleep 0.2
  done
  # {"text": "hello"} is 12 bytes of msgpack: fixmap, fixstr "text", fixstr "hello"
  out=$(http POST /v1/jobs -H 'Content-Type: application/json' -H 'Prefer: wait=30' \
    -d '{"model":"bytes","input":{"text":"hello"}}') || fail "POST /v1/jobs (bytes): curl failed"
  result=$(sed '$d' <<<"$out")
  [[ "$(jq -c '[.status, .result.bytes]' <<<"$result")" == '["succeeded",12]' ]] ||
    fail "the plug-in's job did not answer {\"bytes\": 12}: $result"
  say "a plug-in built FROM the worker image ran its job: {\"bytes\": 12}"
}

# --- deploy/compose.yaml, for real --------------------------------------------------------
# The same images through podman-compose: Redis (with the compose file's AOF command line),
# the gateway and the echo and sleep workers; a job for each worker must succeed. Then
# `down` and the project's volume removed.
COMPOSE_PROJECT="$RUN_ID-compose"
COMPOSE_UP=0
COMPOSE_LOG=""
compose() {
  FLEET_GATEWAY_IMAGE=$GATEWAY_IMAGE FLEET_WORKER_IMAGE=$WORKER_IMAGE \
    FLEET_REDIS_IMAGE=$REDIS_IMAGE FLEET_HTTP_PORT=$COMPOSE_PORT FLEET_AUTH=off \
    podman-compose -f "$SRC/deploy/compose.yaml" -p "$COMPOSE_PROJECT" "$@" >>"$COMPOSE_LOG" 2>&1
}
compose_down() {
  ((COMPOSE_UP)) || return 0
  compose down || true
  podman volume rm -f "${COMPOSE_PROJECT}_redis-data" >/dev/null 2>&1 || true
  podman network rm -f "${COMPOSE_PROJECT}_default" >/dev/null 2>&1 || true
  COMPOSE_UP=0
}
compose_check() {
  COMPOSE_LOG=$(mktemp /tmp/fleet-containers-compose.XXXXXX)
  COMPOSE_PORT=$((PORT + 1))
  while port_in_use "$COMPOSE_PORT"; do COMPOSE_PORT=$((COMPOSE_PORT + 1)); done
  COMPOSE_UP=1
  compose up -d || { cat "$COMPOSE_LOG" >&2; fail "podman-compose up failed"; }
  local url="http://127.0.0.1:$COMPOSE_PORT" deadline=$((SECONDS + 30)) m out status
  until curl -fsS --max-time 2 -o /dev/null "$url/readyz" 2>/dev/null; do
    ((SECONDS < deadline)) || { compose logs >/dev/null 2>&1; cat "$COMPOSE_LOG" >&2;
      fail "the compose gateway did not answer $url/readyz within 30 s"; }
    sleep 0.2
  done
  for m in 'echo:{"hello":"compose"}' 'sleep:{"ms":200,"steps":2}'; do
    out=$(curl -sS --max-time 40 -X POST "$url/v1/jobs" -H 'Content-Type: application/json' \
      -H 'Prefer: wait=30' -d "{\"model\":\"${m%%:*}\",\"input\":${m#*:}}") ||
      fail "compose: POST /v1/jobs (${m%%:*}) failed"
    status=$(jq -r .status <<<"$out" 2>/dev/null || true)
    [[ "$status" == succeeded ]] || fail "compose: the ${m%%:*} job did not succeed: $out"
    say "compose: the ${m%%:*} job succeeded: result $(jq -c .result <<<"$out")"
  done
  [[ "$(podman exec "${COMPOSE_PROJECT}_redis_1" redis-cli config get appendonly | tail -n 1)" == yes ]] ||
    fail "compose: Redis runs without AOF"
  compose_down
  rm -f "$COMPOSE_LOG"
  say "compose: down, its volume removed"
}

# --- the GPU image, without NVIDIA's images ---------------------------------------------------
# NVIDIA's CUDA images cannot be pulled here. Stand-ins: the Debian base plus this machine's
# CUDA toolkit (nvcc, headers, libraries) and cuDNN as CUDA_DEVEL, and the Debian base plus
# only the CUDA runtime, cuBLAS and cuDNN libraries as CUDA_RUNTIME, laid out as NVIDIA's
# images are (/usr/local/cuda, nvcc on PATH, the libraries known to ldconfig). The real
# Containerfile.worker-gpu builds on them: nvcc compiles the CUDA backend, cuDNN must be
# found, and the runtime image must resolve every library of the module and get as far as
# asking the CUDA driver for a GPU. Everything made here is removed after (unless --keep).
CUDA_DEVEL_IMAGE=localhost/fleet-cuda-devel:$TAG
CUDA_RUNTIME_IMAGE=localhost/fleet-cuda-runtime:$TAG
GPU_IMAGE=localhost/fleet-worker-gpu:$TAG
GPU_DANGLING_BEFORE=""
gpu_cleanup() {
  ((KEEP)) && return 0
  podman rmi -f "$GPU_IMAGE" "$CUDA_DEVEL_IMAGE" "$CUDA_RUNTIME_IMAGE" >/dev/null 2>&1 || true
  # and the untagged build stage this check left (about 3.5 GB), no other dangling image
  local id
  for id in $(comm -13 <(printf '%s\n' "$GPU_DANGLING_BEFORE") \
    <(podman images -q --no-trunc --filter dangling=true | sort -u)); do
    podman rmi -f "$id" >/dev/null 2>&1 || true
  done
}
gpu_check() {
  GPU_DANGLING_BEFORE=$(podman images -q --no-trunc --filter dangling=true | sort -u)
  local cuda="${FLEET_CUDA_HOME:-$(readlink -f /usr/local/cuda 2>/dev/null || true)}"
  [[ -x "$cuda/bin/nvcc" ]] || fail "--gpu: no CUDA toolkit at ${cuda:-/usr/local/cuda} (set FLEET_CUDA_HOME)"
  local libdir=$cuda/lib64
  [[ -d "$libdir" ]] || libdir=$cuda/lib
  # cuDNN: inside the toolkit's tree (as on this machine), else Debian packages' files.
  local -a cudnn_dev=() cudnn_rt=()
  if compgen -G "$libdir/libcudnn.so.9*" >/dev/null; then
    say "cuDNN: in $libdir"
  else
    local pkg
    for pkg in $(dpkg-query -W -f='${Package}\n' 'libcudnn9*' 2>/dev/null); do
      while read -r f; do
        [[ -f "$f" ]] || continue
        cudnn_dev+=("$f")
        [[ "$f" == *.so.* ]] && cudnn_rt+=("$f")
      done < <(dpkg -L "$pkg")
    done
    ((${#cudnn_rt[@]})) || fail "--gpu: no cuDNN 9 in $libdir nor in a libcudnn9 package"
    say "cuDNN: from the packages' files (${#cudnn_dev[@]} files)"
  fi
  local avail
  avail=$(df -Pk /var/lib/containers 2>/dev/null | awk 'NR == 2 { print int($4 / 1048576) }')
  ((${avail:-0} >= 12)) || fail "--gpu: needs about 12 GB free under /var/lib/containers (${avail:-?} GB)"
  local c f
  local setup='ln -sfn '"$cuda"' /usr/local/cuda && echo '"$libdir"' >/etc/ld.so.conf.d/fleet-cuda.conf && ldconfig'
  if ! podman image exists "$CUDA_DEVEL_IMAGE"; then
    c=$(buildah from "$BASE_IMAGE")
    buildah copy "$c" "$cuda" "$cuda" >/dev/null
    for f in "${cudnn_dev[@]}"; do buildah copy "$c" "$f" "$f" >/dev/null; done
    buildah run "$c" -- sh -c "$setup"
    buildah config --env PATH=/usr/local/cuda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$c"
    buildah commit -q "$c" "$CUDA_DEVEL_IMAGE" >/dev/null
    buildah rm "$c" >/dev/null
  fi
  if ! podman image exists "$CUDA_RUNTIME_IMAGE"; then
    c=$(buildah from "$BASE_IMAGE")
    buildah run "$c" -- mkdir -p "$libdir"
    for f in "$libdir"/libcudart.so.* "$libdir"/libcublas.so.* "$libdir"/libcublasLt.so.* \
             "$libdir"/libcudnn*.so.* "${cudnn_rt[@]}"; do
      [[ -e "$f" ]] && buildah copy "$c" "$f" "$f" >/dev/null
    done
    buildah run "$c" -- sh -c "$setup"
    buildah commit -q "$c" "$CUDA_RUNTIME_IMAGE" >/dev/null
    buildah rm "$c" >/dev/null
  fi
  say "CUDA bases: $CUDA_DEVEL_IMAGE ($(podman image inspect -f '{{.Size}}' "$CUDA_DEVEL_IMAGE" | numfmt --to=si)), $CUDA_RUNTIME_IMAGE ($(podman image inspect -f '{{.Size}}' "$CUDA_RUNTIME_IMAGE" | numfmt --to=si))"
  logged build-worker-gpu podman build --format docker --layers --build-arg "CUDA_DEVEL=$CUDA_DEVEL_IMAGE" \
    --build-arg "CUDA_RUNTIME=$CUDA_RUNTIME_IMAGE" -f "$SRC/deploy/Containerfile.worker-gpu" \
    -t "$GPU_IMAGE" "$SRC" || fail "building $GPU_IMAGE failed"
  say "built $GPU_IMAGE ($(podman image inspect -f '{{.Size}}' "$GPU_IMAGE" | numfmt --to=si)): nvcc compiled the CUDA backend, cuDNN found"
  local missing
  missing=$(prun --rm --entrypoint sh "$GPU_IMAGE" -c \
    'ldd /usr/local/bin/fleet-worker /usr/local/lib/fleet/*.so | grep "not found"' || true)
  [[ -z "$missing" ]] || fail "$GPU_IMAGE lacks libraries: $missing"
  # With no GPU the embed worker (the image's FLEET_BACKEND=cuda) must load the module
  # (cuDNN, cuBLAS, the runtime) and stop at the CUDA driver: exit 1, "cuda: no GPU
  # available".
  [[ -n "$MODEL_DIR" ]] || make_tiny_model
  local out
  out=$(timeout 60 podman run --rm -v "$MODEL_DIR:/models/model:ro" \
    -e FLEET_REDIS_URL=redis://127.0.0.1:1 -e FLEET_MODEL=embed \
    -e FLEET_MODEL_ARGS=/models/model "$GPU_IMAGE" 2>&1 || true)
  if [[ -e /dev/nvidiactl ]]; then
    say "this machine has an NVIDIA driver; running the image on its GPU needs the NVIDIA container toolkit (not checked here): $out"
  else
    grep -q 'cuda: no GPU available' <<<"$out" ||
      fail "$GPU_IMAGE's embed worker did not reach the CUDA driver: $out"
    say "its worker loads the CUDA module and stops at the missing driver, as it should: $(jq -r .error <<<"$out" 2>/dev/null | tail -n 1)"
  fi
  gpu_cleanup
}

# --- main ------------------------------------------------------------------------------------
if ((DOWN || CLEAN)); then
  write_containers_conf
  remove_smoke ""
  # and the tiny embed models those runs left for their embed workers
  rm -rf /var/tmp/fleet-containers-model.*
  if ((DOWN)); then
    say "removed the containers of earlier --keep runs"
    exit 0
  fi
  podman rmi -f "$GATEWAY_IMAGE" "$WORKER_IMAGE" "$REDIS_IMAGE" "$PLUGIN_IMAGE" "$BUILD_IMAGE" \
    "$BASE_IMAGE" >/dev/null 2>&1 || true
  podman image prune -f >/dev/null 2>&1 || true
  rm -rf "$CACHE"
  say "removed the smoke containers, the images, the base and $CACHE"
  exit 0
fi

step "packages"
install_packages
command -v curl >/dev/null || fail "curl is needed on this machine"
step "containers.conf, the Debian base"
write_containers_conf
make_base
step "build $GATEWAY_IMAGE"
prepare_source
logged build-gateway build_image deploy/Containerfile.gateway "$GATEWAY_IMAGE" || fail "building $GATEWAY_IMAGE failed"
step "build $WORKER_IMAGE"
logged build-worker build_image deploy/Containerfile.worker "$WORKER_IMAGE" || fail "building $WORKER_IMAGE failed"
step "build $REDIS_IMAGE"
logged build-redis build_redis_image || fail "building $REDIS_IMAGE failed"
step "smoke test"
smoke
step "deploy/compose.yaml (podman-compose)"
compose_check
if ((GPU)); then
  step "deploy/Containerfile.worker-gpu (--gpu)"
  gpu_check
fi
finish_step

printf '\n'
podman images --format '{{.Repository}}:{{.Tag}} {{.Size}}' |
  grep -E "^($GATEWAY_IMAGE|$WORKER_IMAGE|$REDIS_IMAGE|$BASE_IMAGE) " | sed 's/^/  /'
print_timings
if ((KEEP)); then
  say "--keep: the containers still run (network $NET; gateway on $URL, API key $API_KEY);"
  say "remove them with: sudo ${SELF#"$ROOT"/} --down"
fi
say "PASS"
