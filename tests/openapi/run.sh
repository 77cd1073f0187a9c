#!/usr/bin/env bash
# run.sh BIN_DIR SOURCE_DIR: runs openapi_test.mjs (ctest's openapi_test). Its npm packages
# come from `npm ci` here, which tests/run.sh does; without them (or without node) the test
# fails under CI and is skipped (exit 77) when run by hand.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
missing=""
if ! command -v node >/dev/null 2>&1; then
  missing="node is not installed (deploy/install-deps.sh installs it)"
elif [[ ! -d "$here/node_modules/@apidevtools/swagger-parser" || ! -d "$here/node_modules/ajv-formats" ]]; then
  missing="tests/openapi/node_modules lacks its packages (npm ci in tests/openapi; tests/run.sh does it)"
fi
if [[ -n "$missing" ]]; then
  if [[ -n "${CI:-}" ]]; then
    echo "openapi_test: FAILED: $missing" >&2
    exit 1
  fi
  echo "openapi_test: skipped: $missing"
  exit 77
fi
exec node "$here/openapi_test.mjs" "$@"
