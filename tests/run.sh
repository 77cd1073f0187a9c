#!/usr/bin/env bash
# run.sh: THE test command. Installs dependencies (if missing), builds fleet with
# -Werror under AddressSanitizer + UndefinedBehaviorSanitizer into build-test/, and runs
# every test with ctest; then builds the libFuzzer targets with clang into build-fuzz/
# and runs each for a bounded time (tests/fuzz/README.md). Fails when ctest fails or a
# fuzzer finds a crash, leak, timeout or excess memory. Works from any directory.
# Extra arguments go to ctest, e.g.  ./tests/run.sh -R integration_lifecycle -V
#
#   FLEET_FUZZ_SECONDS=N   seconds per fuzz target (default 20; 0 skips fuzzing). With
#                          ctest arguments the fuzzers run only when this is set.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

./deploy/install-deps.sh

# npm test tools: each test folder with a package-lock.json (tests/dashboard: playwright-core,
# tests/package-lock.json for tools shared by several) gets its node_modules with `npm ci`,
# skipped while the node_modules/.package-lock.json that npm ci writes is newer than the
# lock file.
for lock in tests/package-lock.json tests/*/package-lock.json; do
  [[ -f "$lock" ]] || continue
  dir=$(dirname "$lock")
  if [[ ! "$dir/node_modules/.package-lock.json" -nt "$lock" ]]; then
    echo "run.sh: npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
done

cmake -S . -B build-test \
  -DFLEET_TESTS=ON -DFLEET_SANITIZE=ON -DFLEET_WERROR=ON -DCMAKE_BUILD_TYPE=Debug
cmake --build build-test -j"$(nproc)"

# The tests, and every fleet binary they start (which inherits the environment), stop at
# the first sanitizer report. Each integration case starts its own redis-server, gateway
# and workers on free loopback ports, so tests run in parallel.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

ctest_log=$(mktemp /tmp/fleet-ctest-XXXXXX)
trap 'rm -f "$ctest_log"' EXIT
set +e
ctest --test-dir build-test --output-on-failure --no-tests=error -j2 --timeout 120 "$@" 2>&1 |
  tee "$ctest_log"
rc=${PIPESTATUS[0]}
set -e

# ------------------------------------------------------------------ Valkey -----------
# A smoke pass of the integration tests on Valkey 8 (FLEET_TEST_REDIS_SERVER picks the
# server program every test starts): the lifecycle, claims and leases, retries and the
# dead-letter stream, tenants, webhooks, the CLI, chaos and a Sentinel failover (about 75 s
# on 2 cores). It fails the run when it fails. With ctest arguments it runs only when
# FLEET_VALKEY=1 is set; FLEET_VALKEY=0 skips it.
valkey_tests='^integration_(lifecycle|claim|retry|tenant|webhook|cli|chaos|failover)_test$'
valkey_failed=0
if [[ "${FLEET_VALKEY:-}" == 0 || ($# -gt 0 && "${FLEET_VALKEY:-}" != 1) ]]; then
  echo "valkey: skipped (FLEET_VALKEY=0, or ctest arguments given without FLEET_VALKEY=1)"
elif ! command -v valkey-server >/dev/null 2>&1; then
  echo "valkey: FAILED: valkey-server is not installed (deploy/install-deps.sh installs it)"
  valkey_failed=1
else
  echo "valkey: the smoke pass on $(valkey-server --version | cut -d' ' -f1-3)"
  if ! FLEET_TEST_REDIS_SERVER=valkey-server ctest --test-dir build-test --output-on-failure \
       --no-tests=error -j2 --timeout 120 -R "$valkey_tests"; then
    valkey_failed=1
  fi
fi

# ------------------------------------------------------------------ fuzzing ----------
# Each target runs on a copy of its seed corpus in a temporary directory (the repository
# stays clean); a crash's input is kept in build-fuzz/crashes/<target>/.
fuzz_seconds=${FLEET_FUZZ_SECONDS:-20}
fuzz_failed=0
run_fuzzers() {
  if [[ $# -gt 0 && -z "${FLEET_FUZZ_SECONDS:-}" ]]; then
    echo "fuzz: skipped (ctest arguments given; set FLEET_FUZZ_SECONDS=N to fuzz as well)"
    return
  fi
  if [[ "$fuzz_seconds" == 0 ]]; then
    echo "fuzz: skipped (FLEET_FUZZ_SECONDS=0)"
    return
  fi
  if ! command -v clang >/dev/null 2>&1; then
    echo "fuzz: FAILED: clang is not installed, so the libFuzzer targets cannot be built" \
         "(deploy/install-deps.sh installs clang and libclang-rt-14-dev)"
    fuzz_failed=1
    return
  fi
  echo "fuzz: building the libFuzzer targets (clang) into build-fuzz/"
  # No -Werror: clang warns about things gcc does not, and the gcc build above is the
  # one that keeps the code warning-free.
  mkdir -p build-fuzz
  if ! cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DFLEET_FUZZ=ON -DFLEET_WERROR=OFF \
         -DCMAKE_BUILD_TYPE=RelWithDebInfo >build-fuzz/build.log 2>&1 ||
     ! cmake --build build-fuzz -j"$(nproc)" >>build-fuzz/build.log 2>&1; then
    tail -n 40 build-fuzz/build.log
    echo "fuzz: FAILED: the fuzz targets do not build (build-fuzz/build.log)"
    fuzz_failed=1
    return
  fi
  local work
  work=$(mktemp -d /tmp/fleet-fuzz-XXXXXX)
  local bin t dict seeds log runs cov ft corp eps frc ran=0
  local want
  want=$(find tests/fuzz -maxdepth 1 -name 'fuzz_*.c' | wc -l)
  for bin in build-fuzz/tests/fuzz/fuzz_*; do
    [[ -f "$bin" && -x "$bin" ]] || continue
    t=$(basename "$bin")
    ran=$((ran + 1))
    mkdir -p "$work/$t/corpus" "$work/$t/artifacts"
    seeds=0
    if [[ -d "tests/fuzz/corpus/$t" ]]; then
      cp tests/fuzz/corpus/"$t"/* "$work/$t/corpus/"
      seeds=$(find "tests/fuzz/corpus/$t" -type f | wc -l)
    fi
    dict=()
    [[ -f "tests/fuzz/${t#fuzz_}.dict" ]] && dict=("-dict=tests/fuzz/${t#fuzz_}.dict")
    log="$work/$t/log"
    set +e
    # no abort_on_error here: libFuzzer saves the input and exits on its own
    ASAN_OPTIONS=detect_leaks=1 "$bin" -max_total_time="$fuzz_seconds" -timeout=5 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$work/$t/artifacts/" "${dict[@]}" \
      "$work/$t/corpus" >"$log" 2>&1
    frc=$?
    set -e
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    read -r cov ft corp < <(grep -E '^#[0-9]+.*cov: ' "$log" | tail -n 1 |
      sed -E 's/.*cov: ([0-9]+) ft: ([0-9]+) corp: ([0-9]+).*/\1 \2 \3/') || true
    if [[ $frc -ne 0 || -n "$(ls -A "$work/$t/artifacts")" ]]; then
      echo "---- $t: last lines of its log"
      tail -n 60 "$log"
      mkdir -p "build-fuzz/crashes/$t"
      cp "$work/$t/artifacts/"* "build-fuzz/crashes/$t/" 2>/dev/null || true
      echo "fuzz: $t: FAILED (exit $frc) after ${runs:-?} runs; reproduce with:" \
           "build-fuzz/tests/fuzz/$t build-fuzz/crashes/$t/<file>"
      fuzz_failed=1
    else
      echo "fuzz: $t: ok: ${runs:-?} runs in ${fuzz_seconds} s (${eps:-?}/s)," \
           "coverage ${cov:-?} edges, ${ft:-?} features, corpus ${seeds} seeds -> ${corp:-?} inputs"
    fi
  done
  rm -rf "$work"
  if [[ $ran -ne $want ]]; then
    echo "fuzz: FAILED: $ran fuzz targets ran, tests/fuzz has $want"
    fuzz_failed=1
  fi
}
run_fuzzers "$@"

# ------------------------------------------------------------------ containers -------
# The container images (deploy/containers.sh: podman builds of the gateway and CPU worker
# images from a locally made Debian base, a job through them, the compose file; a minute
# or two, more the first time), only when FLEET_TEST_CONTAINERS=1. Needs root (or sudo).
if [[ "${FLEET_TEST_CONTAINERS:-0}" == 1 ]]; then
  containers_cmd=(./deploy/containers.sh)
  [[ $(id -u) -eq 0 ]] || containers_cmd=(sudo ./deploy/containers.sh)
  if ! "${containers_cmd[@]}"; then
    echo "run.sh: deploy/containers.sh failed (above)"
    rc=1
  fi
fi

# The last line is ctest's own summary, as test runners end.
grep -E '^[0-9]+% tests passed' "$ctest_log" | tail -n 1 || true
if [[ $valkey_failed -ne 0 ]]; then
  echo "run.sh: the Valkey smoke pass failed (above)"
  rc=1
fi
if [[ $rc -eq 0 && $fuzz_failed -ne 0 ]]; then
  echo "run.sh: a fuzz target failed (above)"
  rc=1
fi
exit "$rc"
