#!/bin/sh
# install_test.sh BUILD_DIR SOURCE_DIR CC: `cmake --install` into a temporary prefix puts
# the binaries in bin/, the plug-in ABI header in include/fleet/ and fleet-plugin.pc in
# lib/pkgconfig/; the example plug-in (examples/plugin/bytes.c) then builds with nothing
# but `pkg-config --cflags fleet-plugin`, and the installed fleet-worker loads it (it
# reads the plug-in's model name, and refuses a --model that is not it, before any
# Redis is needed). Registered in tests/CMakeLists.txt as install_plugin.
set -eu
build=$1 src=$2 cc=$3
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fleet-install-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "install_test: $*" >&2; exit 1; }

cmake --install "$build" --prefix "$tmp/prefix" >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log" >&2; fail "cmake --install failed"; }
for f in bin/fleet-gateway bin/fleet-worker bin/fleetctl; do
    [ -x "$tmp/prefix/$f" ] || fail "$f was not installed"
done
[ -f "$tmp/prefix/include/fleet/model.h" ] || fail "include/fleet/model.h was not installed"
[ -f "$tmp/prefix/lib/pkgconfig/fleet-plugin.pc" ] || fail "fleet-plugin.pc was not installed"

# Only the installed tree: the pkg-config file and the header it points at.
cflags=$(PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig" PKG_CONFIG_LIBDIR="$tmp/prefix/lib/pkgconfig" \
         pkg-config --cflags fleet-plugin) || fail "pkg-config --cflags fleet-plugin failed"
inc=${cflags#-I}
inc=${inc%% *}
[ -d "$inc" ] && [ "$(cd "$inc" && pwd -P)" = "$(cd "$tmp/prefix/include/fleet" && pwd -P)" ] ||
    fail "cflags '$cflags' do not name the installed include/fleet"
cp "$src/examples/plugin/bytes.c" "$tmp/bytes.c" # away from worker/, so only the install can serve model.h
# shellcheck disable=SC2086 # cflags is a list of words
"$cc" -std=c11 -Wall -Wextra -Werror -shared -fPIC $cflags -o "$tmp/libbytes.so" "$tmp/bytes.c" ||
    fail "the example plug-in does not build with pkg-config --cflags fleet-plugin"

# The installed worker opens the plug-in and checks its model name against --model:
# exit 2 with "the plug-in's model is bytes" shows it loaded and read fleet_model_v1.
set +e
out=$("$tmp/prefix/bin/fleet-worker" --model-plugin "$tmp/libbytes.so" --model echo 2>&1)
rc=$?
set -e
[ "$rc" -eq 2 ] || fail "fleet-worker --model-plugin exited $rc, not 2: $out"
case "$out" in *"plug-in's model is bytes"*) ;; *) fail "fleet-worker did not load the plug-in: $out" ;; esac
echo "install_test: installed, built the plug-in with pkg-config --cflags ($cflags), fleet-worker loaded it"
