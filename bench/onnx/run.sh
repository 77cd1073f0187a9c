#!/usr/bin/env bash
# bench/onnx/run.sh: fleet's CPU backends against ONNX Runtime on the same model, the same
# weights, the same inputs' shapes, the same thread counts, on this machine, in one run
# (docs/benchmarks.md, "fleet against ONNX Runtime on the CPU"). Prints figures; fails only
# when the two sides do not compute the same numbers.
#
#   bench/onnx/run.sh BUILD_DIR
#
# BUILD_DIR is a build of this checkout (Release for figures) holding bin/fleet-embed-bench,
# bin/fleet-embed-cpu.so and bin/fleet-classify-bench:
#   cmake -S . -B build-rel -DCMAKE_BUILD_TYPE=Release -DFLEET_TESTS=OFF
#   cmake --build build-rel --target fleet-embed-bench fleet-embed-cpu fleet-classify-bench
#
# What it does:
#  1. installs onnxruntime-node (pinned in bench/onnx/package.json; its CPU library ships in
#     the package, nothing else is downloaded) with `npm ci` when node_modules is missing
#     or older than package-lock.json;
#  2. writes the MiniLM-shaped random embed model (fleet-embed-bench --write-model: 6 layers,
#     hidden 384, 12 heads, vocabulary 30522) into a temporary directory and exports it
#     twice (export.mjs): "ort" as plain ONNX operators (opset 17, what PyTorch's exporter
#     writes; ONNX Runtime's optimiser fuses what it recognises) and "ort-fused" with ONNX
#     Runtime's own BERT operators (Attention, SkipLayerNormalization, BiasGelu, as its
#     transformers optimiser writes them); exports models/classify/model.safetensors;
#  3. checks that both sides compute the same numbers on the same inputs (check.mjs): the
#     vectors of 8 of fleet's sequences (lengths 128 down to 16, padded with a mask on the
#     ONNX side) within 1e-4, the probabilities of 64 images within 1e-5; exits 1 if not;
#  4. for each thread count: fleet (OPENBLAS_NUM_THREADS = FLEET_CPU_THREADS = N) and ONNX
#     Runtime (intraOpNumThreads N, interOpNumThreads 1, sequential, every graph
#     optimisation) one after the other, each batch size warmed up then timed for about
#     ONNX_SECONDS (median of the runs);
#  5. prints one table per model: items/s of each side, fleet / the faster ONNX Runtime, and
#     cpu% (CPU time over wall time, 100 per busy core: what the threads really did).
#
# fleet runs with OPENBLAS_CORETYPE unset (env -u): this machine's environment may set it,
# and a forced core type slows OpenBLAS here by about a third. The header prints the
# variable as found, OpenBLAS's configuration and the core it picked, and nproc.
#
# Settings (environment):
#   ONNX_SECONDS (3)                  timing per batch size, side and thread count
#   ONNX_THREADS ("1 2")              the thread counts
#   ONNX_EMBED_BATCHES (1,8,64)       embed batch sizes, ONNX_TOKENS (128) ids a sequence
#   ONNX_CLASSIFY_BATCHES (1,8,64,256)
#   ONNX_KEEP (0)                     1 keeps the temporary directory (models, outputs)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

die() { echo "bench/onnx/run.sh: $*" >&2; exit 1; }

case ${1:-} in
-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
'') die "usage: bench/onnx/run.sh BUILD_DIR (see --help)" ;;
esac
[[ $# -eq 1 ]] || die "usage: bench/onnx/run.sh BUILD_DIR (see --help)"
BIN=$(cd "$1" 2>/dev/null && pwd)/bin || die "$1: no such build directory"
for b in fleet-embed-bench fleet-embed-cpu.so fleet-classify-bench; do
    [[ -e $BIN/$b ]] || die "$BIN/$b is missing: build the targets named in --help"
done
SECONDS_EACH=${ONNX_SECONDS:-3}
THREADS=${ONNX_THREADS:-1 2}
EMBED_BATCHES=${ONNX_EMBED_BATCHES:-1,8,64}
CLASSIFY_BATCHES=${ONNX_CLASSIFY_BATCHES:-1,8,64,256}
TOKENS=${ONNX_TOKENS:-128}
[[ $SECONDS_EACH =~ ^[0-9]+$ ]] || die "ONNX_SECONDS must be a whole number (got '$SECONDS_EACH')"
[[ $TOKENS =~ ^[0-9]+$ ]] || die "ONNX_TOKENS must be a whole number (got '$TOKENS')"
for t in $THREADS; do [[ $t =~ ^[1-9][0-9]*$ ]] || die "ONNX_THREADS: '$t' is not a thread count"; done
for l in "$EMBED_BATCHES" "$CLASSIFY_BATCHES"; do
    [[ $l =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || die "batch sizes are a list like 1,8,64 (got '$l')"
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/fleet-onnx.XXXXXX")
cleanup() {
    local rc=$?
    if [[ ${ONNX_KEEP:-0} != 0 || $rc != 0 ]]; then
        echo "(models and outputs are in $TMP)" >&2
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ ONNX Runtime -----------
command -v node >/dev/null || die "node is not installed (Node.js 18 or later)"
command -v npm >/dev/null || die "npm is not installed"
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)' ||
    die "node $(node --version) is too old: onnxruntime-node needs Node.js 18 or later"
# npm ci writes node_modules/.package-lock.json: older than the lock file means stale.
if [[ ! -f $HERE/node_modules/.package-lock.json || $HERE/package-lock.json -nt $HERE/node_modules/.package-lock.json ]]; then
    echo "== installing onnxruntime-node into bench/onnx/node_modules (npm ci)"
    # The package's install step would fetch CUDA libraries; the CPU one is in the package.
    (cd "$HERE" && ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund >"$TMP/npm.log" 2>&1) || {
        tail -30 "$TMP/npm.log" >&2
        die "npm ci failed in $HERE (above: npm's output): it needs the npm registry once"
    }
fi
ORT_VERSION=$(node -p 'require("'"$HERE"'/node_modules/onnxruntime-node/package.json").version')

# ------------------------------------------------------------------ header -----------------
CORETYPE_FOUND=${OPENBLAS_CORETYPE-}
fleet() { env -u OPENBLAS_CORETYPE "$@"; }
ort() { env -u OPENBLAS_CORETYPE node "$@"; }
echo "== fleet against ONNX Runtime on the CPU, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1), nproc $(nproc)," \
    "$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), load average" \
    "$(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine shows as cpu% below 100 a thread)"
echo "fleet: checkout $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), built in $BIN (a build of it);" \
    "worker/embed/bert_cpu.c at $(git -C "$ROOT" log -1 --format=%h -- worker/embed/bert_cpu.c 2>/dev/null || echo '?')$(
        git -C "$ROOT" diff --quiet HEAD -- worker/embed/bert_cpu.c 2>/dev/null || echo ' (modified in the working tree)'),"\
    "worker/classify/cnn_cpu.c at $(git -C "$ROOT" log -1 --format=%h -- worker/classify/cnn_cpu.c 2>/dev/null || echo '?')$(
        git -C "$ROOT" diff --quiet HEAD -- worker/classify/cnn_cpu.c 2>/dev/null || echo ' (modified in the working tree)')"
echo "ONNX Runtime: onnxruntime-node $ORT_VERSION (its own CPU library), node $(node --version);" \
    "intraOpNumThreads N, interOpNumThreads 1, sequential, graphOptimizationLevel all"
echo "OpenBLAS: OPENBLAS_CORETYPE=${CORETYPE_FOUND:-unset} in this environment, unset for every run" \
    "(env -u OPENBLAS_CORETYPE); OPENBLAS_NUM_THREADS = FLEET_CPU_THREADS = the thread count"
echo "threads: $THREADS; embed batches $EMBED_BATCHES x $TOKENS tokens; classify batches" \
    "$CLASSIFY_BATCHES; about $SECONDS_EACH s a batch size, the median of the runs"

# ------------------------------------------------------------------ models -----------------
WEIGHTS=$ROOT/models/classify/model.safetensors
fleet "$BIN/fleet-embed-bench" --write-model "$TMP/minilm" >"$TMP/write.log" 2>&1 ||
    { cat "$TMP/write.log" >&2; die "fleet-embed-bench --write-model failed"; }
for k in embed embed-fused; do
    node "$HERE/export.mjs" "$k" "$TMP/minilm" "$TMP/$k.onnx" >/dev/null
done
node "$HERE/export.mjs" classify "$WEIGHTS" "$TMP/classify.onnx" >/dev/null
echo "models: MiniLM-shaped random F32 weights (tests/lib/bert_gen.c) and $WEIGHTS, exported" \
    "by bench/onnx/export.mjs"

# ------------------------------------------------------------------ same numbers -----------
echo "== the same numbers"
OPENBLAS_NUM_THREADS=1 FLEET_CPU_THREADS=1 fleet "$BIN/fleet-embed-bench" --model-dir "$TMP/minilm" \
    --batches 8 --tokens "$TOKENS" --seconds 0 --dump "$TMP/embed.json" >"$TMP/dump-embed.log" 2>&1 ||
    { cat "$TMP/dump-embed.log" >&2; die "fleet-embed-bench --dump failed"; }
grep '^openblas:' "$TMP/dump-embed.log" || true
FLEET_CPU_THREADS=1 fleet "$BIN/fleet-classify-bench" --weights "$WEIGHTS" --batches 64 --seconds 0 \
    --dump "$TMP/classify.json" >"$TMP/dump-classify.log" 2>&1 ||
    { cat "$TMP/dump-classify.log" >&2; die "fleet-classify-bench --dump failed"; }
ok=1
for k in embed embed-fused; do
    echo -n "$k.onnx: "
    node "$HERE/check.mjs" embed "$TMP/$k.onnx" "$TMP/embed.json" || ok=0
done
echo -n "classify.onnx: "
node "$HERE/check.mjs" classify "$TMP/classify.onnx" "$TMP/classify.json" || ok=0
[[ $ok == 1 ]] || die "fleet and ONNX Runtime disagree (above): no figures, they would compare different models"

# ------------------------------------------------------------------ timing -----------------
# One side after the other at each thread count; each run's own lines go to a file named
# SIDE-MODEL-THREADS for the tables.
for t in $THREADS; do
    echo "== $t thread(s)"
    run() { # run NAME COMMAND...: prints the result lines as they come, keeps them
        local name=$1
        shift
        "$@" 2>"$TMP/$name.err" | tee "$TMP/$name.out" | grep -E '^(cpu|ort) ' | sed "s/^/$name  /" ||
            { cat "$TMP/$name.err" >&2; die "$name failed"; }
    }
    run "fleet-embed-$t" env -u OPENBLAS_CORETYPE OPENBLAS_NUM_THREADS="$t" FLEET_CPU_THREADS="$t" \
        "$BIN/fleet-embed-bench" --model-dir "$TMP/minilm" --batches "$EMBED_BATCHES" --tokens "$TOKENS" \
        --seconds "$SECONDS_EACH"
    run "ort-embed-$t" ort "$HERE/bench.mjs" embed "$TMP/embed.onnx" --threads "$t" \
        --batches "$EMBED_BATCHES" --tokens "$TOKENS" --seconds "$SECONDS_EACH"
    run "ortf-embed-$t" ort "$HERE/bench.mjs" embed "$TMP/embed-fused.onnx" --threads "$t" \
        --batches "$EMBED_BATCHES" --tokens "$TOKENS" --seconds "$SECONDS_EACH"
    run "fleet-classify-$t" env -u OPENBLAS_CORETYPE OPENBLAS_NUM_THREADS="$t" FLEET_CPU_THREADS="$t" \
        "$BIN/fleet-classify-bench" --weights "$WEIGHTS" --batches "$CLASSIFY_BATCHES" \
        --seconds "$SECONDS_EACH"
    run "ort-classify-$t" ort "$HERE/bench.mjs" classify "$TMP/classify.onnx" --threads "$t" \
        --batches "$CLASSIFY_BATCHES" --seconds "$SECONDS_EACH"
done

# ------------------------------------------------------------------ tables -----------------
# rate FILE BATCH FIELD: the figure of that batch size's line (embed lines have a tokens
# column, so items/s is field 4 there and 3 for classify; cpu% is the last field).
rate() { awk -v b="$2" -v f="$3" '($1 == "cpu" || $1 == "ort") && $2 == b { print (f == "last" ? $NF : $f) }' "$TMP/$1.out"; }
echo
echo "== embed, sentences/s ($TOKENS tokens a sentence; fleet / the faster ONNX Runtime graph)"
printf '%7s %6s %9s %9s %10s %8s   %s\n' threads batch fleet ort ort-fused ratio "cpu% fleet/ort/ort-fused"
for t in $THREADS; do
    for b in ${EMBED_BATCHES//,/ }; do
        f=$(rate "fleet-embed-$t" "$b" 4) o=$(rate "ort-embed-$t" "$b" 4) of=$(rate "ortf-embed-$t" "$b" 4)
        awk -v t="$t" -v b="$b" -v f="$f" -v o="$o" -v of="$of" \
            -v c="$(rate "fleet-embed-$t" "$b" last)/$(rate "ort-embed-$t" "$b" last)/$(rate "ortf-embed-$t" "$b" last)" \
            'BEGIN { best = o > of ? o : of; printf "%7s %6s %9.1f %9.1f %10.1f %7.2fx   %s\n", t, b, f, o, of, f / best, c }'
    done
done
echo
echo "== classify, images/s (fleet / ONNX Runtime)"
printf '%7s %6s %9s %9s %8s   %s\n' threads batch fleet ort ratio "cpu% fleet/ort"
for t in $THREADS; do
    for b in ${CLASSIFY_BATCHES//,/ }; do
        f=$(rate "fleet-classify-$t" "$b" 3) o=$(rate "ort-classify-$t" "$b" 3)
        awk -v t="$t" -v b="$b" -v f="$f" -v o="$o" \
            -v c="$(rate "fleet-classify-$t" "$b" last)/$(rate "ort-classify-$t" "$b" last)" \
            'BEGIN { printf "%7s %6s %9.0f %9.0f %7.2fx   %s\n", t, b, f, o, f / o, c }'
    done
done
