"""How fast a Python worker drains echo jobs next to the C worker (docs/python.md, "Worker").

    FLEET_BIN_DIR=build-xxx/bin /usr/bin/python3 clients/python/tests/bench_drain.py [jobs] [shards]

Starts the conftest stack without workers, queues `jobs` echo jobs (200-byte input,
POST /v1/jobs/batch) with no worker running, then starts one worker and times until the
stats hashes count them all succeeded; once per worker kind, each on a fresh stack. With
`shards` > 1 the fleet is spread over that many shards (fleetctl shards init), the batch
submit spreading the jobs over them.
"""
import os
import sys
import time

import httpx
import redis

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import FleetStack  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def run(kind, n, batch, shards=1):
    s = FleetStack(workers=[], shards=shards)
    try:
        s.fleetctl("model", "add", "echo")  # jobs are queued before the worker starts
        c = httpx.Client(base_url=s.url, timeout=60,
                         headers={"Authorization": "Bearer " + s.api_key})
        for at in range(0, n, 1000):
            jobs = [{"model": "echo", "input": {"t": "x" * 190}} for _ in range(min(1000, n - at))]
            r = c.post("/v1/jobs/batch", json={"jobs": jobs})
            assert r.status_code == 200 and r.json()["refused"] == 0, r.text[:300]
        r = redis.Redis.from_url(s.redis_url)
        env = {"FLEET_MAX_BATCH": str(batch), "FLEET_MAX_DELAY_MS": "0"}
        t0 = time.monotonic()
        if kind == "c":
            s.start_worker("echo", env=env)
        else:
            s.start_process("worker-py-echo", [sys.executable, os.path.join(HERE, "py_models.py"),
                                               "echo"], env)
        stats = ["{fleet}:stats"] + ["{fleet:%d}:stats" % k for k in range(1, shards)]
        while sum(int(r.hget(k, "echo:succeeded") or 0) for k in stats) < n:
            time.sleep(0.05)
        dt = time.monotonic() - t0
        print("%-6s max_batch %-3d shards %d: %d jobs in %.2f s: %.0f jobs/s"
              % (kind, batch, shards, n, dt, n / dt))
    finally:
        s.stop()


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    shards = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    for kind, batch in (("c", 8), ("python", 8), ("c", 32), ("python", 32)):
        run(kind, n, batch, shards)
