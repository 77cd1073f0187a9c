#!/usr/bin/env bash
# run.sh: THE test command. Installs dependencies (if missing), builds fleet with
# -Werror under AddressSanitizer + UndefinedBehaviorSanitizer into build-test/, and runs
# every test with ctest. Exits with ctest's code. Works from any directory.
# Extra arguments go to ctest, e.g.  ./tests/run.sh -R integration_lifecycle -V
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

./deploy/install-deps.sh

cmake -S . -B build-test \
  -DFLEET_TESTS=ON -DFLEET_SANITIZE=ON -DFLEET_WERROR=ON -DCMAKE_BUILD_TYPE=Debug
cmake --build build-test -j"$(nproc)"

# The tests, and every fleet binary they start (which inherits the environment), stop at
# the first sanitizer report. Each integration case starts its own redis-server, gateway
# and workers on free loopback ports, so tests run in parallel.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

set +e
ctest --test-dir build-test --output-on-failure -j2 --timeout 120 "$@"
rc=$?
set -e
exit "$rc"
