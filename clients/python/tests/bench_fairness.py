"""How close fair share between tenants stays when jobs spread over shards (docs/scaling.md,
"Fair share over shards").

    FLEET_BIN_DIR=build-xxx/bin /usr/bin/python3 clients/python/tests/bench_fairness.py \
        [big] [small] [shards...]

For each shard count (default 1 and 3): a fresh conftest stack (one Redis, the shard table
made by fleetctl shards init), no worker; tenant `tenant` queues `big` echo jobs, then
tenant `small` queues `small` (POST /v1/jobs/batch: the gateway spreads each batch's jobs
over the shards); then one C worker (max_batch 8) drains them all. Fair share (feed.lua)
takes one job per tenant in turn on each shard, so the small tenant's jobs should start
early, not behind the big backlog. Prints after how many started jobs the small tenant's
first, median and last job started (jobs started in the same claim share a position).
"""
import os
import sys
import time

import httpx
import redis

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import FleetStack  # noqa: E402


def queue(c, n):
    ids = []
    for at in range(0, n, 1000):
        jobs = [{"model": "echo", "input": {"t": "x"}} for _ in range(min(1000, n - at))]
        r = c.post("/v1/jobs/batch", json={"jobs": jobs})
        assert r.status_code == 200 and r.json()["refused"] == 0, r.text[:300]
        ids += [j["id"] for j in r.json()["jobs"]]
    return ids


def run(big, small, shards):
    s = FleetStack(workers=[], shards=shards)
    try:
        small_key = s.fleetctl_json("tenant", "add", "small")["api_key"]
        client = {k: httpx.Client(base_url=s.url, timeout=60,
                                  headers={"Authorization": "Bearer " + k})
                  for k in (s.api_key, small_key)}
        big_ids = queue(client[s.api_key], big)
        small_ids = queue(client[small_key], small)
        s.start_worker("echo", env={"FLEET_MAX_BATCH": "8"})
        r = redis.Redis.from_url(s.redis_url)
        stats = ["{fleet}:stats"] + ["{fleet:%d}:stats" % k for k in range(1, shards)]
        deadline = time.monotonic() + 300
        while sum(int(r.hget(k, "echo:succeeded") or 0) for k in stats) < big + small:
            assert time.monotonic() < deadline, "the jobs did not finish"
            time.sleep(0.1)
        started = {}
        for key, ids in ((s.api_key, big_ids), (small_key, small_ids)):
            for i in ids:
                j = client[key].get("/v1/jobs/" + i).json()
                started[i] = j["started_at"]
        order = sorted(started.values())
        # a job's position: how many jobs started strictly before it
        pos = sorted(order.index(started[i]) for i in small_ids)
        spread = {}
        for i in small_ids:
            spread[i[0]] = spread.get(i[0], 0) + 1
        print("shards %d: %d big + %d small jobs; the small tenant's jobs per shard %s; they "
              "started after %d (first), %d (median), %d (last) started jobs"
              % (shards, big, small, dict(sorted(spread.items())), pos[0], pos[len(pos) // 2],
                 pos[-1]))
    finally:
        s.stop()


if __name__ == "__main__":
    big = int(sys.argv[1]) if len(sys.argv) > 1 else 900
    small = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    counts = [int(a) for a in sys.argv[3:]] or [1, 3]
    for n in counts:
        run(big, small, n)
