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

# Starts a throwaway redis-server on loopback port $1 with its files in directory $2 (no
# persistence, daemonized, redis.pid and redis.log there; further arguments are passed
# on) and waits until it answers; dies otherwise. Stop it with redis-cli SHUTDOWN NOSAVE.
start_redis() { # PORT DIR [redis-server options...]
    local port=$1 dir=$2
    shift 2
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
        --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --dir "$dir" "$@" ||
        die "redis-server did not start on port $port"
    for _ in $(seq 50); do redis-cli -p "$port" PING >/dev/null 2>&1 && return; sleep 0.1; done
    die "redis-server did not answer on port $port ($dir/redis.log)"
}
