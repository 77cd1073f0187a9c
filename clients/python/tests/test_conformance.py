"""One conformance suite, run against the C worker (fleet-worker's built-in echo and sleep)
and the Python worker (tests/py_models.py: the same models written with fleet.worker): each
case is one test body parametrised over both (issue 15, "The worker library").

Every stack runs the gateway with API keys on; jobs go in and come out through HTTP, as a
client sees them, and Redis is read where the protocol is what is checked (counters, the
dead-letter stream, pending entries).
"""
import os
import signal
import sys
import time

import httpx
import pytest
import redis

from conftest import wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
WORKERS = ["c", "python"]


def start(stack, impl, model, env=None):
    """Starts a worker of `impl` for `model` on the stack (names start "worker" so that
    the stack checks its exit status)."""
    e = {"FLEET_MAX_DELAY_MS": "0", "FLEET_DRAIN_TIMEOUT": "2"}
    e.update(env or {})
    if impl == "c":
        return stack.start_worker(model, env=e)
    return stack.start_process(f"worker-py-{model}", [sys.executable, "-u",
                               os.path.join(HERE, "py_models.py"), model], e)


def live_workers(stack, r, model):
    n = 0
    for name in r.zrange("{fleet}:workers", 0, -1):
        if r.hget(b"{fleet}:worker:" + name, "model") == model.encode():
            n += 1
    return n


class Api:
    def __init__(self, stack, key=None):
        self.h = httpx.Client(base_url=stack.url, timeout=30,
                              headers={"Authorization": "Bearer " + (key or stack.api_key)})

    def submit(self, model, inp, **kw):
        r = self.h.post("/v1/jobs", json=dict(model=model, input=inp, **kw))
        assert r.status_code == 202, r.text
        return r.json()["id"]

    def job(self, jid):
        r = self.h.get(f"/v1/jobs/{jid}")
        assert r.status_code == 200, r.text
        return r.json()

    def wait(self, jid, timeout_s=30, statuses=("succeeded", "failed", "cancelled")):
        got = {}

        def done():
            got["j"] = self.job(jid)
            return got["j"]["status"] in statuses
        wait_for(done, timeout_s, f"job {jid} to reach {statuses}")
        return got["j"]

    def result(self, jid):
        r = self.h.get(f"/v1/jobs/{jid}/result")
        assert r.status_code == 200, r.text
        return r.json()


def stats(r, model):
    h = r.hgetall("{fleet}:stats")
    return {k.decode().split(":", 1)[1]: int(v) for k, v in h.items()
            if k.decode().startswith(model + ":")}


def registered(stack):
    """The stack with echo and sleep registered, so that the gateway takes their jobs
    before a worker of either kind has announced itself."""
    for m in ("echo", "sleep"):
        stack.fleetctl("model", "add", m)
    return stack


@pytest.fixture
def stack(make_fleet_stack):
    return registered(make_fleet_stack(workers=[]))


@pytest.fixture
def rds(stack):
    r = redis.Redis.from_url(stack.redis_url)
    yield r
    r.close()


def ready(stack, rds, model, n=1):
    wait_for(lambda: live_workers(stack, rds, model) >= n, 20, f"{n} {model} worker(s)")


@pytest.mark.parametrize("impl", WORKERS)
def test_results_and_progress(stack, rds, impl):
    start(stack, impl, "echo")
    start(stack, impl, "sleep")
    ready(stack, rds, "echo")
    ready(stack, rds, "sleep")
    api = Api(stack)
    inputs = [{"text": "héllo", "n": [1, 2.5, None, True], "deep": {"a": "b"}}, "plain", 42]
    ids = [api.submit("echo", x) for x in inputs]
    for jid, x in zip(ids, inputs):
        assert api.wait(jid)["status"] == "succeeded"
        assert api.result(jid) == x
    jid = api.submit("sleep", {"ms": 600, "steps": 3})
    j = api.wait(jid)
    assert j["status"] == "succeeded", j
    assert api.result(jid) == {"slept_ms": 600, "steps": 3}
    assert j["progress"]["done"] == 3 and j["progress"]["total"] == 3, j
    assert j["progress"]["message"] == "step 3 of 3"
    jid = api.submit("sleep", {"ms": 10, "fail": "bad page 3"})
    j = api.wait(jid)
    assert j["status"] == "failed" and "bad page 3" in j["error"], j
    s = stats(rds, "sleep")
    assert s.get("succeeded") == 1 and s.get("failed") == 1, s


@pytest.mark.parametrize("impl", WORKERS)
def test_cancel_while_running(stack, rds, impl):
    start(stack, impl, "sleep")
    ready(stack, rds, "sleep")
    api = Api(stack)
    jid = api.submit("sleep", {"ms": 60000, "steps": 600})
    api.wait(jid, statuses=("running",))
    r = api.h.delete(f"/v1/jobs/{jid}")
    assert r.status_code in (200, 202), r.text
    j = api.wait(jid, timeout_s=10)
    assert j["status"] == "cancelled", j
    assert stats(rds, "sleep").get("cancelled") == 1
    # The worker is free again: the next job runs.
    jid = api.submit("sleep", {"ms": 10})
    assert api.wait(jid)["status"] == "succeeded"


@pytest.mark.parametrize("impl", WORKERS)
def test_kill_9_mid_job_is_taken_over(stack, rds, impl):
    lease = {"FLEET_LEASE_MS": "1500"}
    victim = start(stack, impl, "sleep", lease)
    ready(stack, rds, "sleep")
    api = Api(stack)
    jid = api.submit("sleep", {"ms": 4000, "steps": 4})
    api.wait(jid, statuses=("running",))
    os.kill(victim.pid, signal.SIGKILL)
    victim.p.wait()
    stack.procs.remove(victim)  # killed on purpose: not a crash for the stack's check
    victim.stop()
    start(stack, impl, "sleep", lease)
    j = api.wait(jid, timeout_s=40)
    assert j["status"] == "succeeded", j
    assert j["attempts"] == 2, j
    s = stats(rds, "sleep")
    # No double effect: one job submitted, one ended, nothing counted twice.
    assert s.get("submitted") == 1 and s.get("succeeded") == 1, s
    assert s.get("running", 0) == 0 and s.get("queued", 0) == 0, s
    assert rds.xpending("{fleet}:stream:sleep", "workers")["pending"] == 0


@pytest.mark.parametrize("impl", WORKERS)
def test_retries_then_dead_letter(stack, rds, impl):
    start(stack, impl, "sleep", {"FLEET_RETRY_BASE_MS": "50", "FLEET_RETRY_MAX_MS": "100"})
    ready(stack, rds, "sleep")
    api = Api(stack)
    ok = api.submit("sleep", {"ms": 10, "fail": "GPU busy", "retryable": True,
                              "fail_attempts": 2})
    dead = api.submit("sleep", {"ms": 10, "fail": "GPU gone", "retryable": True},
                      max_attempts=2)
    j = api.wait(ok)
    assert j["status"] == "succeeded" and j["attempts"] == 3, j
    j = api.wait(dead)
    assert j["status"] == "failed" and "GPU gone" in j["error"], j
    entries = rds.xrange("{fleet}:dlq")
    assert [e for e in entries if e[1].get(b"job") == dead.encode()], entries
    s = stats(rds, "sleep")
    assert s.get("retried") == 3, s


@pytest.mark.parametrize("impl", WORKERS)
def test_sigterm_drains_then_hands_back(stack, rds, impl):
    w = start(stack, impl, "sleep", {"FLEET_DRAIN_TIMEOUT": "3", "FLEET_MAX_BATCH": "1"})
    ready(stack, rds, "sleep")
    api = Api(stack)
    short = api.submit("sleep", {"ms": 300})
    api.wait(short, statuses=("running",))
    w.signal(signal.SIGTERM)
    assert w.p.wait(20) == 0
    assert api.job(short)["status"] == "succeeded"  # finished within the drain time
    w2 = start(stack, impl, "sleep", {"FLEET_DRAIN_TIMEOUT": "3", "FLEET_MAX_BATCH": "1"})
    ready(stack, rds, "sleep")
    long = api.submit("sleep", {"ms": 60000, "steps": 600})
    api.wait(long, statuses=("running",))
    w2.signal(signal.SIGTERM)
    assert w2.p.wait(20) == 0
    j = api.job(long)
    assert j["status"] == "queued", j  # handed back: the attempt does not count
    assert stats(rds, "sleep").get("handed_back") == 1
    assert live_workers(stack, rds, "sleep") == 0  # deregistered


@pytest.mark.parametrize("impl", WORKERS)
def test_fair_share_between_tenants(make_fleet_stack, impl):
    # A small ready target, so that the stream holds few jobs ahead of the wait lists.
    stack = registered(make_fleet_stack(workers=[], gateway_env={"FLEET_READY_TARGET": "2"}))
    other = stack.fleetctl_json("tenant", "add", "other")["api_key"]
    a, b = Api(stack), Api(stack, other)
    # Tenant a queues a backlog before any worker runs; b's few jobs come after it.
    backlog = [a.submit("sleep", {"ms": 30}) for _ in range(24)]
    few = [b.submit("sleep", {"ms": 30}) for _ in range(3)]
    start(stack, impl, "sleep", {"FLEET_MAX_BATCH": "2", "FLEET_READY_TARGET": "2"})
    for jid in few:
        b.wait(jid)
    done_a = sum(1 for jid in backlog if a.job(jid)["status"] == "succeeded")
    # Interleaved one tenant at a time: b's 3 jobs are done long before a's 24.
    assert done_a <= 12, done_a
    for jid in backlog:
        a.wait(jid)


@pytest.mark.parametrize("impl", WORKERS)
def test_a_job_longer_than_its_lease_keeps_it(stack, rds, impl):
    """Renewal while the model runs: with a second worker ready to take over, a job of
    three leases runs once, on its first worker."""
    lease = {"FLEET_LEASE_MS": "1000"}
    start(stack, impl, "sleep", lease)
    ready(stack, rds, "sleep")
    api = Api(stack)
    jid = api.submit("sleep", {"ms": 3500, "steps": 2})
    first = api.wait(jid, statuses=("running",))["worker"]
    start(stack, impl, "sleep", lease)
    ready(stack, rds, "sleep", 2)
    j = api.wait(jid, timeout_s=30)
    assert j["status"] == "succeeded" and j["attempts"] == 1 and j["worker"] == first, j
    s = stats(rds, "sleep")
    assert s.get("succeeded") == 1 and not s.get("retried"), s


@pytest.mark.parametrize("impl", WORKERS)
def test_redis_restart_without_persistence(stack, rds, impl):
    """Redis comes back empty on the same port: the worker reconnects, makes its consumer
    group and registers its model again, and takes new jobs."""
    start(stack, impl, "echo")
    ready(stack, rds, "echo")
    port = stack.redis_url.rsplit(":", 1)[1]
    old = stack.redis
    stack.procs.remove(old)
    old.stop()
    new = stack.start_process("redis", ["redis-server", "--port", port, "--bind", "127.0.0.1",
                                        "--save", "", "--appendonly", "no", "--dir", stack.dir])
    stack.procs.insert(0, stack.procs.pop())  # stopped last, after the gateway and workers
    stack.redis = new
    r2 = redis.Redis.from_url(stack.redis_url)

    def up():
        try:
            return r2.ping()
        except redis.exceptions.ConnectionError:
            return False
    wait_for(up, 20, "the new redis-server")
    key = stack.fleetctl_json("tenant", "add", "after")["api_key"]
    wait_for(lambda: r2.hexists("{fleet}:models", "echo"), 30, "the model registered again")
    api = Api(stack, key)
    got = {}

    def submitted():
        r = api.h.post("/v1/jobs", json={"model": "echo", "input": {"after": "restart"}})
        got["r"] = r
        return r.status_code == 202
    wait_for(submitted, 30, "the gateway to take jobs again")
    jid = got["r"].json()["id"]
    assert api.wait(jid, timeout_s=30)["status"] == "succeeded"
    assert api.result(jid) == {"after": "restart"}
    r2.close()
