#!/usr/bin/env bash
# local_stop_test.sh SOURCE_DIR: `./deploy/local.sh stop` lets a draining worker finish.
# A stand-in fleet-worker (a script of that name, so local.sh's pidfile check takes it)
# drains for 18 s on SIGTERM, longer than the 15 s stop used to give any process, within
# the worker's default drain timeout (25 s): stop must wait for it to exit by itself. A
# second stand-in started with FLEET_DRAIN_TIMEOUT=1 never exits: stop gives it its own
# drain timeout + the margin and then kills it. local.sh's state goes to a temporary
# directory (FLEET_LOCAL_STATE); no Redis, gateway or build is involved. Registered in
# tests/CMakeLists.txt as local_stop.
set -euo pipefail
src=$1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fleet-local-stop-XXXXXX")
pids=()
cleanup() { # each stand-in leads its own process group: its sleeps go with it
  for p in "${pids[@]}"; do kill -KILL -- "-$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "local_stop_test: $*" >&2; [[ -f "$tmp/stop.log" ]] && cat "$tmp/stop.log" >&2; exit 1; }

mkdir -p "$tmp/bin" "$tmp/state/run"
# The stand-in: on SIGTERM it "drains" for FAKE_DRAIN_S, then says so and exits 0.
cat >"$tmp/bin/fleet-worker" <<'EOS'
#!/usr/bin/env bash
trap 'sleep "$FAKE_DRAIN_S"; echo drained >"$FAKE_MARKER"; exit 0' TERM
echo started >"$FAKE_MARKER.started"
while :; do sleep 0.2; done
EOS
chmod +x "$tmp/bin/fleet-worker"
cp "$tmp/bin/fleet-worker" "$tmp/bin/fleet-gateway"

start_fake() { # NAME DRAIN_S [ENV...]
  local name=$1 drain=$2
  shift 2
  setsid env -u FLEET_DRAIN_TIMEOUT LOCAL_SH_RUN="$tmp/state/run" "$@" FAKE_DRAIN_S="$drain" \
    FAKE_MARKER="$tmp/$name" \
    "$tmp/bin/${FAKE_BIN:-fleet-worker}" >>"$tmp/fakes.log" 2>&1 </dev/null &
  pids+=($!)
  disown $! # local.sh kills one of them: no job-control report of it
  echo $! >"$tmp/state/run/$name.pid"
  for _ in $(seq 100); do [[ -f "$tmp/$name.started" ]] && return 0; sleep 0.1; done
  fail "the stand-in $name did not start"
}

start_fake worker-echo 18
start_fake worker-sleep 1000 FLEET_DRAIN_TIMEOUT=1
# gateway.pid names a live fleet-gateway that local.sh did not start for this state
# directory (a stale pidfile whose pid a test's gateway reused): left alone.
FAKE_BIN=fleet-gateway start_fake gateway 0 LOCAL_SH_RUN=/elsewhere/run
FLEET_LOCAL_STATE="$tmp/state" "$src/deploy/local.sh" stop >"$tmp/stop.log" 2>&1 ||
  fail "local.sh stop failed"

# The draining one exited by itself, after its drain: not killed.
[[ "$(cat "$tmp/worker-echo" 2>/dev/null)" == drained ]] ||
  fail "the worker draining for 18 s was killed before it finished (no drain marker)"
kill -0 "${pids[0]}" 2>/dev/null && fail "the draining worker still runs after stop"
grep -q "pid ${pids[0]}) did not exit" "$tmp/stop.log" && fail "stop reported killing the draining worker"
# The stuck one was killed once its own drain timeout (1 s) + the margin ran out.
kill -0 "${pids[1]}" 2>/dev/null && fail "the stuck worker still runs after stop"
[[ -f "$tmp/worker-sleep" ]] && fail "the stuck worker says it drained"
grep -q "pid ${pids[1]}) did not exit within its drain timeout" "$tmp/stop.log" ||
  fail "stop did not say it killed the stuck worker"
# The gateway started for another state directory was not signalled.
[[ -f "$tmp/gateway" ]] && fail "stop signalled a fleet-gateway it did not start"
kill -0 "${pids[2]}" 2>/dev/null || fail "the other fleet-gateway is gone"
# Both pidfiles are gone.
[[ -e "$tmp/state/run/worker-echo.pid" || -e "$tmp/state/run/worker-sleep.pid" ]] &&
  fail "pidfiles left behind"
echo "local_stop_test: ok"
