#!/usr/bin/env bash
# install-deps.sh: installs what fleet needs to build, test and run locally on Debian 12.
# Idempotent: when every package is already installed it touches nothing (no apt-get).
# Run as root, or as a user with sudo.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config
  libhiredis-dev libevent-dev libevhtp-dev libmsgpack-dev libcurl4-openssl-dev
  libjansson-dev libssl-dev
  # the embed model's CPU backend (worker/embed/bert_cpu.c): OpenBLAS's sgemm
  libopenblas-dev
  # the classify model's PNG decoder (worker/classify/png.c) inflates with zlib
  zlib1g-dev
  # worker/embed/gen_unicode.py reads /usr/share/unicode/UnicodeData.txt (only to
  # regenerate worker/embed/unicode_tables.c; the build does not need it)
  unicode-data
  redis-server redis-tools curl ca-certificates
  # the fuzz targets (tests/fuzz): clang, its libFuzzer and sanitizer runtimes, and
  # llvm-symbolizer for readable crash reports
  clang libclang-rt-14-dev llvm
  # the dashboard's browser test (tests/dashboard): Debian's chromium, driven from node by
  # npm playwright-core (tests/run.sh installs it with npm ci)
  chromium nodejs
  # promtool, which checks GET /metrics in tests/integration/metrics_test.c: Debian ships
  # it in the prometheus package (whose server systemd starts as a service on :9090, where
  # there is a systemd; the tests use only promtool)
  prometheus
  # the Kubernetes manifests' lint (tests/k8s)
  yamllint
  # the Python client and worker library (clients/python), tested with Debian's
  # /usr/bin/python3: httpx for HTTP, redis-py for the worker, pytest
  python3 python3-httpx python3-redis python3-pytest
  # the classify model's accuracy tests read Fashion-MNIST's test images from Debian's
  # package (/usr/share/datasets/fashion-mnist/); the model's weights are in the repository
  dataset-fashion-mnist
)
# Valkey 8, which the tests run a pass against besides Redis 7 (tests/run.sh), is in
# bookworm-backports: its packages come from that suite, added to apt's sources if missing.
BACKPORTS=(valkey-server valkey-tools)
# `kubectl kustomize` renders k8s/ in tests/k8s. Machines with Google Cloud's kubectl have
# a current kustomize; elsewhere Debian's kubernetes-client provides kubectl.
if ! command -v kubectl >/dev/null 2>&1; then
  PACKAGES+=(kubernetes-client)
fi
# npm comes inside some builds of the nodejs package (NodeSource's); Debian's nodejs needs
# Debian's npm beside it.
if ! command -v npm >/dev/null 2>&1; then
  PACKAGES+=(npm)
fi

missing=()
for p in "${PACKAGES[@]}" "${BACKPORTS[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  if [[ "$status" != "installed" ]]; then
    missing+=("$p")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all $((${#PACKAGES[@]} + ${#BACKPORTS[@]})) packages already installed"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "install-deps: not root and no sudo; install these as root: ${missing[*]}" >&2
    exit 1
  fi
fi

backports_list=/etc/apt/sources.list.d/fleet-bookworm-backports.sources
if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  printf '%s\n' 'Types: deb' 'URIs: http://deb.debian.org/debian' 'Suites: bookworm-backports' \
    'Components: main' 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' |
    "${SUDO[@]}" tee "$backports_list" >/dev/null
fi
"${SUDO[@]}" apt-get update
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y --no-install-recommends "${PACKAGES[@]}"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y --no-install-recommends -t bookworm-backports "${BACKPORTS[@]}"
