#!/usr/bin/env bash
# fetch-debs.sh: downloads (does not install) the Debian packages that tests/gpu/run.sh
# needs on a GPU machine whose image lacks them and cannot reach a package registry:
# jansson and OpenBLAS (what the models' backends link besides CUDA), zlib (the classify
# model's PNG decoder, configured and compiled with them) and pkgconf. Run it on a Debian
# 12 machine in the repository root; the files land in .gpu-debs/ (git-ignored), which
# travels with the working tree to the GPU machine, where run.sh unpacks them into a
# private sysroot (never into /).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
mkdir -p .gpu-debs
cd .gpu-debs
apt-get download libjansson4 libjansson-dev libopenblas0-pthread libopenblas-pthread-dev \
  libopenblas-dev libopenblas0 libgfortran5 zlib1g zlib1g-dev pkgconf pkgconf-bin libpkgconf3
ls -l
