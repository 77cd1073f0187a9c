# bench/lib.sh: shell helpers the benchmark scripts share (sourced, never run). The caller
# defines die().

# A loopback port nothing listens on (a short race with other processes is acceptable).
free_port() {
    local p
    for _ in $(seq 100); do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
    done
    die "no free port found"
}
