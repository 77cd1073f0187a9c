#!/usr/bin/env bash
# check.sh SOURCE_DIR: ctest's k8s_manifests. Renders k8s/ and every overlay with
# `kubectl kustomize`, lints them with yamllint, validates every object against the npm
# schemas and fleet's contract checks, then breaks copies in a temporary directory to show
# each check refuses what it should (check.mjs --self-test). kubectl and yamllint come from
# deploy/install-deps.sh, the npm packages from `npm ci` here (tests/run.sh does both);
# without them the test fails under CI and is skipped (exit 77) when run by hand.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=${1:-$(cd "$here/../.." && pwd)}
missing=""
for tool in kubectl yamllint node; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    missing="$tool is not installed (deploy/install-deps.sh installs it)"
    break
  fi
done
if [[ -z "$missing" ]]; then
  for pkg in kubernetes-models @kubernetes-models/keda @kubernetes-models/prometheus-operator yaml; do
    if [[ ! -d "$here/node_modules/$pkg" ]]; then
      missing="tests/k8s/node_modules lacks $pkg (npm ci in tests/k8s; tests/run.sh does it)"
      break
    fi
  done
fi
if [[ -n "$missing" ]]; then
  if [[ -n "${CI:-}" ]]; then
    echo "k8s_manifests: FAILED: $missing" >&2
    exit 1
  fi
  echo "k8s_manifests: skipped: $missing"
  exit 77
fi
exec node "$here/check.mjs" "$src" --self-test
