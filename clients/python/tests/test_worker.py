"""fleet.worker against a live fleet: the handler API (outputs, ctx.fail, Retryable, errors,
progress, bytes), registration, heartbeats and metrics reports, and that the library's
script texts and key names are the ones the C gateway and worker use (checked in the
Redis they wrote)."""
import json
import os
import subprocess
import sys
import threading
import time

import httpx
import pytest
import redis
import redis.cluster

from conftest import FleetStack, free_port, wait_for
from fleet.worker import OutputRefused, Retryable, Worker, msgpack, scripts
from fleet.worker.keys import Keys, PROTOCOL_VERSION


@pytest.fixture(scope="module")
def stack():
    """The conftest stack (C echo and sleep workers), its gateway accepting every registered
    model (no FLEET_MODELS allowlist), as a Python worker's registration needs."""
    s = FleetStack(gateway_env={"FLEET_MODELS": ""})
    yield s
    s.stop()


@pytest.fixture(scope="module")
def rds(stack):
    r = redis.Redis.from_url(stack.redis_url)
    yield r
    r.close()


@pytest.fixture(scope="module")
def api(stack):
    c = httpx.Client(base_url=stack.url, timeout=30,
                     headers={"Authorization": "Bearer " + stack.api_key})
    yield c
    c.close()


def submit(api, model, inp, **kw):
    r = api.post("/v1/jobs", json=dict(model=model, input=inp, **kw))
    assert r.status_code == 202, r.text
    return r.json()["id"]


def wait_job(api, jid, statuses=("succeeded", "failed", "cancelled"), timeout_s=30):
    got = {}

    def done():
        got["j"] = api.get(f"/v1/jobs/{jid}").json()
        return got["j"]["status"] in statuses
    wait_for(done, timeout_s, f"job {jid} in {statuses}")
    return got["j"]


class Running:
    """A fleet.worker.Worker serving on a thread of the test process."""

    def __init__(self, stack, model, handler, **kw):
        kw.setdefault("max_delay_ms", 0)
        kw.setdefault("drain_timeout_s", 2)
        self.w = Worker(model, handler, redis_url=stack.redis_url, **kw)
        self.t = threading.Thread(target=self.w.serve, kwargs={"install_signals": False},
                                  daemon=True)

    def __enter__(self):
        self.t.start()
        return self.w

    def __exit__(self, *exc):
        self.w.stop()
        self.t.join(15)
        assert not self.t.is_alive(), "the worker did not stop"


def model_accepted(api, model):
    r = api.post("/v1/jobs", json={"model": model, "input": 0}, headers={"Prefer": "wait=0"})
    if r.status_code == 202:
        return r.json()["id"]
    assert r.status_code == 422, r.text
    return None


def test_registers_its_model_heartbeats_and_reports_metrics(stack, rds, api):
    ids = []
    with Running(stack, "py-reg", lambda xs, ctx: xs, name="py-reg-1", max_batch=4) as w:
        # A model the gateway does not list (FLEET_MODELS): accepted once registered.
        wait_for(lambda: rds.hexists("{fleet}:worker:py-reg-1", "model"), 10, "heartbeat")
        h = {k.decode(): v.decode() for k, v in rds.hgetall("{fleet}:worker:py-reg-1").items()}
        assert h["model"] == "py-reg" and h["protocol"] == str(PROTOCOL_VERSION), h
        assert h["max_batch"] == "4" and h["pid"] == str(os.getpid()), h
        assert 0 < rds.ttl("{fleet}:worker:py-reg-1") <= 30
        assert rds.zscore("{fleet}:workers", "py-reg-1") is not None
        assert b"worker py-reg-1 on" in rds.hget("{fleet}:models", "py-reg")

        def accepted():
            jid = model_accepted(api, "py-reg")
            if jid:
                ids.append(jid)
            return bool(jid)
        wait_for(accepted, 10, "the gateway to accept the registered model")
        assert wait_job(api, ids[0])["status"] == "succeeded"
        assert w.name == "py-reg-1"
    # Deregistered on the way out; the model's record stays, and the metrics report landed.
    assert not rds.exists("{fleet}:worker:py-reg-1")
    assert rds.zscore("{fleet}:workers", "py-reg-1") is None
    assert rds.hexists("{fleet}:models", "py-reg")
    m = {k.decode(): int(v) for k, v in rds.hgetall("{fleet}:metrics:py-reg").items()}
    assert m["batch:count"] == 1 and m["run:count"] == 1 and m["wait:count"] == 1, m
    assert m["batch:1"] == 1, m
    assert 0 < rds.ttl("{fleet}:metrics:py-reg") <= 604800


def test_outputs_fail_one_and_bytes(stack, rds, api):
    def handler(inputs, ctx):
        out = []
        for i, x in enumerate(inputs):
            if x == "bad":
                ctx.fail(i, "bad input %d" % i)
                out.append(None)
            elif x == "bytes":
                out.append(b"\x00\xffraw")
            elif x == "set":
                out.append({1, 2})  # not serialisable: that job fails
            else:
                out.append({"got": x, "attempt": ctx.attempts[i], "id": ctx.job_ids[i]})
        return out
    rds.hsetnx("{fleet}:models", "py-out", "{}")
    rds.publish("{fleet}:events", "models py-out")
    wait_for(lambda: model_accepted(api, "py-out") is not None, 10, "model accepted")
    ids = [submit(api, "py-out", x) for x in ("good", "bad", "bytes", "set")]
    with Running(stack, "py-out", handler, max_batch=8):
        jobs = [wait_job(api, jid) for jid in ids]
    assert jobs[0]["status"] == "succeeded"
    assert api.get(f"/v1/jobs/{ids[0]}/result").json() == {"got": "good", "attempt": 1,
                                                           "id": ids[0]}
    assert jobs[1]["status"] == "failed" and "bad input" in jobs[1]["error"], jobs[1]
    assert jobs[2]["status"] == "succeeded"
    assert msgpack.unpackb(rds.get("{fleet}:job:%s:result" % ids[2])) == b"\x00\xffraw"
    assert jobs[3]["status"] == "failed" and "not serialisable" in jobs[3]["error"], jobs[3]


def test_exception_fails_the_batch_and_wrong_count_fails(stack, rds, api):
    calls = []

    def handler(inputs, ctx):
        calls.append(len(inputs))
        if inputs[0] == "raise":
            raise ValueError("the model broke")
        return []  # one output per input is required
    rds.hsetnx("{fleet}:models", "py-err", "{}")
    rds.publish("{fleet}:events", "models py-err")
    wait_for(lambda: model_accepted(api, "py-err") is not None, 10, "model accepted")
    a = submit(api, "py-err", "raise")
    with Running(stack, "py-err", handler, max_batch=1):
        j = wait_job(api, a)
        assert j["status"] == "failed" and j["error"] == "the model broke", j
        b = submit(api, "py-err", "count")
        j = wait_job(api, b)
        assert j["status"] == "failed" and "0 outputs for 1 inputs" in j["error"], j


def test_retryable_requeues_with_backoff_then_dead_letters(stack, rds, api):
    seen = []

    def handler(inputs, ctx):
        seen.append((ctx.job_ids[0], ctx.attempts[0]))
        raise Retryable("GPU busy")
    rds.hsetnx("{fleet}:models", "py-retry", "{}")
    rds.publish("{fleet}:events", "models py-retry")
    wait_for(lambda: model_accepted(api, "py-retry") is not None, 10, "model accepted")
    jid = submit(api, "py-retry", 1, max_attempts=3)
    with Running(stack, "py-retry", handler, max_batch=1, retry_base_ms=50, retry_max_ms=80):
        j = wait_job(api, jid)
    assert j["status"] == "failed" and "GPU busy" in j["error"], j
    assert [a for i, a in seen if i == jid] == [1, 2, 3], seen
    assert [e for e in rds.xrange("{fleet}:dlq") if e[1].get(b"job") == jid.encode()]


def test_progress_is_throttled_but_the_last_step_written(stack, rds, api):
    writes = []

    def handler(inputs, ctx):
        for i in range(len(inputs)):
            for s in range(1, 51):
                ctx.progress(i, s, 50, "page %d" % s)
                time.sleep(0.002)
                writes.append(rds.hget("{fleet}:job:%s" % ctx.job_ids[i], "progress_done"))
        return inputs
    rds.hsetnx("{fleet}:models", "py-prog", "{}")
    rds.publish("{fleet}:events", "models py-prog")
    wait_for(lambda: model_accepted(api, "py-prog") is not None, 10, "model accepted")
    jid = submit(api, "py-prog", "x")
    with Running(stack, "py-prog", handler, progress_interval_ms=10000):
        j = wait_job(api, jid)
    assert j["status"] == "succeeded"
    assert j["progress"] == {"percent": 100, "message": "page 50", "done": 50, "total": 50}, j
    # Written at the first step, then not again (the interval is 10 s) until the last.
    assert writes[-50:] == [b"1"] * 49 + [b"50"], writes


def test_every_script_text_is_the_builds():
    """Each script of shared/scripts/scripts.def, assembled by the library, is byte for
    byte what embed.cmake generated for the C programs of the build under test."""
    from conftest import bin_dir
    path = os.path.join(bin_dir(), "..", "shared", "scripts_embedded.c")
    with open(path) as f:
        generated = f.read()
    import re
    found = re.findall(r"fleet_script_src_(\w+)\[\] = \{([^}]*)\}", generated)
    with open(os.path.join(scripts.SCRIPTS_DIR, "scripts.def")) as f:
        listed = re.findall(r"^FLEET_SCRIPT\((\w+),", f.read(), re.M)
    assert sorted(n for n, _ in found) == sorted(listed) and len(listed) > 20
    for name, body in found:
        c_text = bytes(int(x, 16) for x in body.split(",") if x.strip())[:-1]  # no NUL
        assert scripts.Script(name).source == c_text, name


def test_scripts_and_keys_are_the_c_programs(stack, rds, api):
    """The C gateway and worker (echo, sleep) of the stack ran jobs: every script text
    the library would send is already in Redis' cache under the same SHA-1, and the keys
    the C programs wrote are where Keys names them."""
    rds.script_flush()  # what the Python workers of the other cases loaded goes
    jid = submit(api, "echo", {"k": "v"})
    assert wait_job(api, jid)["status"] == "succeeded"
    sl = submit(api, "sleep", {"ms": 1500, "steps": 1})
    wait_job(api, sl, statuses=("running",))
    k = Keys("fleet")
    names = ["submit", "claim", "finish", "feed", "promote", "get", "renew"]
    wait_for(lambda: all(rds.script_exists(*[scripts.get(n).sha for n in names])), 10,
             "the C programs' scripts")
    assert rds.hget(k.job(sl), "status") == b"running"
    assert rds.type(k.entries("sleep")) == b"hash"  # the running job's entry
    assert wait_job(api, sl)["status"] == "succeeded"
    assert rds.type(k.job(jid)) == b"hash"
    assert rds.type(k.result(jid)) == b"string"
    assert rds.hget(k.gone(jid), jid).split()[2] == b"succeeded"
    assert rds.type(k.stream("echo")) == b"stream"
    assert rds.hexists(k.queues(), "echo:seq")
    assert rds.hexists(k.stats(), "echo:succeeded")
    assert rds.hexists(k.models(), "echo")
    c_workers = [n.decode() for n in rds.zrange(k.workers(), 0, -1)]
    assert c_workers and all(rds.type(k.worker(n)) == b"hash" for n in c_workers)
    chans = {c.decode() for c in rds.pubsub_channels()}
    assert k.events() in chans
    assert {k.control(n) for n in c_workers} <= chans
    assert k.job_prefix() + jid == k.job(jid)
    assert k.gone_prefix() + jid[:7] == k.gone(jid)


def test_emit_stores_partial_outputs_in_order_within_the_limits(stack, rds, api):
    got = []

    def handler(inputs, ctx):
        for i, x in enumerate(inputs):
            r = [ctx.emit(i, {"page": 1}), ctx.emit(i, b"page 2")]
            try:
                ctx.emit(i, "one too many")
            except OutputRefused as e:
                r.append(str(e))
            try:
                ctx.emit(i, {1, 2})
            except OutputRefused as e:
                r.append(str(e))
            got.append(r)
        return inputs
    rds.hsetnx("{fleet}:models", "py-emit", "{}")
    rds.publish("{fleet}:events", "models py-emit")
    wait_for(lambda: model_accepted(api, "py-emit") is not None, 10, "model accepted")
    jid = submit(api, "py-emit", "doc")
    with Running(stack, "py-emit", handler, max_batch=1, max_outputs=2):
        assert wait_job(api, jid)["status"] == "succeeded"
    mine = [r for r in got if len(r) == 4]
    assert mine and mine[-1][:2] == [True, True], got
    assert "already has 2 outputs" in mine[-1][2] and "not serialisable" in mine[-1][3], got
    stored = rds.lrange(Keys("fleet").outputs(jid), 0, -1)
    assert [msgpack.unpackb(e.split(b" ", 1)[1]) for e in stored] == [{"page": 1}, b"page 2"]
    assert all(e.startswith(b"1 ") for e in stored)  # the attempt that emitted them
    assert rds.hget(Keys("fleet").job(jid), "out_n") == b"2"


def test_wordstats_example_worker_and_client(stack, rds, api, tmp_path):
    """examples/python: the worker serves "wordstats"; the client script sends two files in
    one job and prints their statistics; each page was emitted as a partial output."""
    ex = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                      "examples", "python")
    stack.start_process("worker-py-wordstats", [sys.executable, "-u",
                        os.path.join(ex, "wordstats_worker.py")])
    a = tmp_path / "a.txt"
    a.write_text("the cat sat\non the mat\n\fthe end\n")
    b = tmp_path / "b.txt"
    b.write_text("".join("line %d of élan, l'été\n" % n for n in range(5)))
    wait_for(lambda: rds.hexists("{fleet}:models", "wordstats"), 20, "wordstats registered")
    env = dict(os.environ, FLEET_API_KEY=stack.api_key)
    out = subprocess.run([sys.executable, os.path.join(ex, "wordstats_client.py"), "--url",
                          stack.url, "--page-lines", "2", str(a), str(b)], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    files = [json.loads(line) for line in out.stdout.splitlines()]
    assert [f["name"] for f in files] == ["a.txt", "b.txt"]
    assert files[0]["pages"] == 2 and files[0]["words"] == 8 and files[0]["unique"] == 6
    assert files[0]["top"][0] == ["the", 3]
    assert files[1]["pages"] == 3 and files[1]["lines"] == 5
    assert ["élan", 5] in files[1]["top"] and ["l'été", 5] in files[1]["top"], files[1]
    # Each page was emitted while the job ran: 2 + 3 partial outputs, in order.
    jid = [j["id"] for j in api.get("/v1/jobs", params={"model": "wordstats"}).json()["jobs"]]
    assert len(jid) == 1, jid
    pages = [msgpack.unpackb(e.split(b" ", 1)[1])
             for e in rds.lrange(Keys("fleet").outputs(jid[0]), 0, -1)]
    assert [(p["file"], p["page"]) for p in pages] == \
        [("a.txt", 1), ("a.txt", 2), ("b.txt", 1), ("b.txt", 2), ("b.txt", 3)]
    assert pages[0]["words"] == 6 and pages[1]["top"] == [["the", 1], ["end", 1]]


def test_timeout_stops_the_job_at_its_next_check(stack, rds, api):
    def handler(inputs, ctx):
        while not ctx.cancelled(0):
            time.sleep(0.02)
        return inputs  # ignored: the job was told to stop
    rds.hsetnx("{fleet}:models", "py-slow", "{}")
    rds.publish("{fleet}:events", "models py-slow")
    wait_for(lambda: model_accepted(api, "py-slow") is not None, 10, "model accepted")
    jid = submit(api, "py-slow", "x", timeout_s=1)
    with Running(stack, "py-slow", handler, max_batch=1, timeout_s=1):
        j = wait_job(api, jid)
    assert j["status"] == "failed", j
    assert j["error"] == "the job ran longer than its timeout_s of 1 seconds", j


def test_docs_worker_example_runs(stack, rds, api, tmp_path):
    """docs/python.md's worker block, run as written: a worker process for model "upper"."""
    doc = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "docs",
                       "python.md")
    with open(doc, encoding="utf-8") as f:
        text = f.read()
    section = text[text.index("\n## Worker\n"):]
    block = section[section.index("```python\n") + 10:]
    block = block[:block.index("```\n")]
    script = tmp_path / "worker.py"
    script.write_text(block)
    stack.start_process("worker-py-doc", [sys.executable, "-u", str(script)],
                        {"PYTHONPATH": os.path.join(os.path.dirname(__file__), "..")})
    wait_for(lambda: rds.hexists("{fleet}:models", "upper"), 20, "model upper registered")
    wait_for(lambda: model_accepted(api, "upper") is not None, 10, "model accepted")
    ok = submit(api, "upper", "hello big world")
    bad = submit(api, "upper", {"not": "text"})
    assert wait_job(api, ok)["status"] == "succeeded"
    assert api.get(f"/v1/jobs/{ok}/result").json() == {"words": 3}
    stored = rds.lrange(Keys("fleet").outputs(ok), 0, -1)
    assert [msgpack.unpackb(e.split(b" ", 1)[1])["upper"] for e in stored] == \
        ["HELLO", "BIG", "WORLD"]
    j = wait_job(api, bad)
    assert j["status"] == "failed" and j["error"] == "input must be a text", j
    j = wait_job(api, ok)
    assert j["progress"]["message"] == "word 3 of 3", j


def test_claims_nothing_while_redis_may_evict(stack, rds, api, caplog):
    """An evicting maxmemory-policy would delete jobs of a full Redis: the worker claims
    nothing until the policy is noeviction (unless allow_eviction)."""
    rds.hsetnx("{fleet}:models", "py-evict", "{}")
    rds.publish("{fleet}:events", "models py-evict")
    wait_for(lambda: model_accepted(api, "py-evict") is not None, 10, "model accepted")
    jid = submit(api, "py-evict", "x")
    rds.config_set("maxmemory-policy", "allkeys-lru")
    try:
        with Running(stack, "py-evict", lambda xs, ctx: xs):
            wait_for(lambda: "claiming nothing" in caplog.text, 10, "the policy error")
            assert api.get(f"/v1/jobs/{jid}").json()["status"] == "queued"
            rds.config_set("maxmemory-policy", "noeviction")
            assert wait_job(api, jid)["status"] == "succeeded"
    finally:
        rds.config_set("maxmemory-policy", "noeviction")


def test_a_long_error_is_cut_as_the_c_worker_cuts_it(stack, rds, api):
    """An error message is cut to 511 bytes (the C model ABI's 512 with its NUL) on a
    UTF-8 boundary: 'é' is two bytes, so 300 of them keep 255."""
    def handler(inputs, ctx):
        raise RuntimeError("é" * 300)
    rds.hsetnx("{fleet}:models", "py-long", "{}")
    rds.publish("{fleet}:events", "models py-long")
    wait_for(lambda: model_accepted(api, "py-long") is not None, 10, "model accepted")
    jid = submit(api, "py-long", "x")
    with Running(stack, "py-long", handler):
        j = wait_job(api, jid)
    assert j["status"] == "failed" and j["error"] == "é" * 255, j


def test_finds_its_redis_through_sentinel(stack, rds, api, tmp_path):
    """With sentinels the worker asks them for the primary (the stack's Redis here, with a
    replica, watched by a sentinel under the name "fleetpy") and ignores redis_url's host:
    a job of its model succeeds although redis_url names a port nothing listens on."""
    server = os.environ.get("FLEET_TEST_REDIS_SERVER", "redis-server")
    primary_port = int(stack.redis_url.rsplit(":", 1)[1])
    replica_port, sentinel_port = free_port(), free_port()
    stack.start_process("replica", [server, "--port", str(replica_port), "--bind", "127.0.0.1",
                                    "--save", "", "--dir", str(tmp_path),
                                    "--replicaof", "127.0.0.1", str(primary_port)])
    conf = tmp_path / "sentinel.conf"
    conf.write_text("port %d\nbind 127.0.0.1\ndir %s\n"
                    "sentinel monitor fleetpy 127.0.0.1 %d 1\n" % (sentinel_port, tmp_path,
                                                                   primary_port))
    stack.start_process("sentinel", [server, str(conf), "--sentinel"])
    s = redis.Redis(port=sentinel_port)
    wait_for(lambda: _sentinel_names(s, primary_port), 20, "the sentinel names the primary")
    rds.hsetnx("{fleet}:models", "py-sentinel", "{}")
    rds.publish("{fleet}:events", "models py-sentinel")
    wait_for(lambda: model_accepted(api, "py-sentinel") is not None, 10, "model accepted")
    jid = submit(api, "py-sentinel", "via sentinel")
    dead = "redis://127.0.0.1:%d" % free_port()
    w = Worker("py-sentinel", lambda inputs, ctx: inputs, redis_url=dead,
               sentinels="127.0.0.1:%d" % sentinel_port, sentinel_master="fleetpy",
               name="py-sentinel-1", max_delay_ms=0, drain_timeout_s=2)
    t = threading.Thread(target=w.serve, kwargs={"install_signals": False}, daemon=True)
    t.start()
    try:
        j = wait_job(api, jid)
        assert j["status"] == "succeeded" and j["worker"] == "py-sentinel-1", j
    finally:
        w.stop()
        t.join(15)
    assert not t.is_alive()
    s.close()
    with pytest.raises(ValueError):
        Worker("py-sentinel", lambda i, c: i, redis_url=dead, sentinels="nohostport",
               sentinel_master="fleetpy")


def _sentinel_names(s, port):
    try:
        addr = s.execute_command("SENTINEL", "get-master-addr-by-name", "fleetpy")
    except redis.RedisError:
        return False
    return addr is not None and int(addr[1]) == port


def test_runs_as_the_least_privilege_worker_user(stack, rds, api, caplog):
    """The Redis user deploy/redis-users.acl gives workers (rendered by deploy/redis-acl.sh)
    is enough for the library: claim, progress, emit, finish, heartbeat, metrics,
    deregistering; nothing it sends is refused."""
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..")
    env = dict(os.environ, FLEET_ACL_ADMIN_PASSWORD="a", FLEET_ACL_GATEWAY_PASSWORD="g",
               FLEET_ACL_WORKER_PASSWORD="w-pw", FLEET_ACL_CTL_PASSWORD="c", FLEET_PREFIX="fleet")
    out = subprocess.run([os.path.join(root, "deploy", "redis-acl.sh"), "--setuser"], env=env,
                         capture_output=True, text=True, timeout=30, check=True).stdout
    line = [x for x in out.splitlines() if x.startswith("ACL SETUSER fleet-worker ")]
    assert len(line) == 1, out
    rds.execute_command(*line[0].split())  # only this user: the stack's others stay as they are
    rds.hsetnx("{fleet}:models", "py-acl", "{}")
    rds.publish("{fleet}:events", "models py-acl")
    wait_for(lambda: model_accepted(api, "py-acl") is not None, 10, "model accepted")
    jid = submit(api, "py-acl", "x")

    def handler(inputs, ctx):
        for i in range(len(inputs)):
            assert ctx.emit(i, {"part": 1})
            ctx.progress(i, 1, 1, "done")
        return inputs
    url = stack.redis_url.replace("redis://", "redis://fleet-worker:w-pw@")
    w = Worker("py-acl", handler, redis_url=url, name="py-acl-1", max_delay_ms=0,
               drain_timeout_s=2)
    t = threading.Thread(target=w.serve, kwargs={"install_signals": False}, daemon=True)
    t.start()
    try:
        j = wait_job(api, jid)
        assert j["status"] == "succeeded" and j["progress"]["message"] == "done", j
        assert rds.llen("{fleet}:job:%s:outputs" % jid) == 1
        wait_for(lambda: rds.exists("{fleet}:worker:py-acl-1"), 10, "heartbeat")
    finally:
        w.stop()
        t.join(15)
    assert not t.is_alive()
    assert not rds.exists("{fleet}:worker:py-acl-1")
    assert rds.hexists("{fleet}:metrics:py-acl", "batch:count")
    for refusal in ("NOPERM", "no permissions", "can't run this command"):
        assert refusal not in caplog.text, caplog.text


def test_serves_every_shard_of_the_table(make_fleet_stack):
    """A fleet of three shards (fleetctl shards init 3): the gateway spreads jobs over them
    (an id's first character names its shard), the worker finishes every one on its shard;
    a shard added while it runs is served once the worker reads the table again."""
    s = make_fleet_stack(shards=3, workers=[], gateway_env={"FLEET_MODELS": ""})
    r = redis.Redis.from_url(s.redis_url)
    api = httpx.Client(base_url=s.url, timeout=30, headers={"Authorization": "Bearer " + s.api_key})
    try:
        with Running(s, "py-shards", lambda xs, ctx: [{"got": x} for x in xs],
                     name="py-shards-1", max_batch=4):
            first = []
            wait_for(lambda: (first.append(model_accepted(api, "py-shards")) or first[-1]), 10,
                     "the gateway to accept the registered model")
            ids = [i for i in first if i] + [submit(api, "py-shards", n) for n in range(40)]
            assert {i[0] for i in ids} == {"0", "1", "2"}, ids
            for jid in ids:
                j = wait_job(api, jid)
                assert j["status"] == "succeeded", j
            for n in range(3):
                tag = "{fleet}" if n == 0 else "{fleet:%d}" % n
                done = int(r.hget(tag + ":stats", "py-shards:succeeded") or 0)
                assert done == sum(1 for i in ids if i[0] == str(n)) and done > 0, (n, done)
                assert r.hget(tag + ":job:" + [i for i in ids if i[0] == str(n)][0],
                              "worker") == b"py-shards-1"

            s.fleetctl("shards", "add")
            on3 = []

            def one_on_shard_3():
                jid = submit(api, "py-shards", "late")
                on3.append(jid)
                return jid[0] == "3"
            wait_for(one_on_shard_3, 20, "a job on shard 3")
            for jid in on3:
                assert wait_job(api, jid)["status"] == "succeeded"
            assert r.xinfo_groups("{fleet:3}:stream:py-shards")[0]["name"] == b"workers"
    finally:
        api.close()
        r.close()


def test_serves_every_shard_on_a_cluster(make_fleet_stack):
    """On a Redis Cluster of three masters the gateway writes a table of one shard per
    master; the worker (cluster=, redis-py's RedisCluster) finishes jobs on all three,
    registers and heartbeats on the control tag's master."""
    s = make_fleet_stack(cluster_masters=3, workers=[], gateway_env={"FLEET_MODELS": ""})
    host, port = s.cluster.split(",")[0].split(":")
    rc = redis.cluster.RedisCluster(host=host, port=int(port))
    api = httpx.Client(base_url=s.url, timeout=30, headers={"Authorization": "Bearer " + s.api_key})
    try:
        table = rc.get("{fleet}:shards").decode()
        tags = ["{fleet}"] + ["{fleet:%s}" % e.split(":")[1] for e in table.split()[1:]]
        assert len(tags) == 3, table
        masters = {rc.get_node_from_key(t).name for t in tags}
        assert len(masters) == 3, (table, masters)
        with Running(s, "py-cluster", lambda xs, ctx: [{"got": x} for x in xs],
                     name="py-cluster-1", max_batch=4, cluster=s.cluster):
            first = []
            wait_for(lambda: (first.append(model_accepted(api, "py-cluster")) or first[-1]), 10,
                     "the gateway to accept the registered model")
            ids = [i for i in first if i] + [submit(api, "py-cluster", n) for n in range(30)]
            assert {i[0] for i in ids} == {"0", "1", "2"}, ids
            for jid in ids:
                assert wait_job(api, jid)["status"] == "succeeded"
            for n, tag in enumerate(tags):
                done = int(rc.hget(tag + ":stats", "py-cluster:succeeded") or 0)
                assert done == sum(1 for i in ids if i[0] == str(n)) and done > 0, (n, done)
            assert rc.hget("{fleet}:worker:py-cluster-1", "model") == b"py-cluster"
        assert not rc.exists("{fleet}:worker:py-cluster-1")
    finally:
        api.close()
        rc.close()


def test_no_shard_starves_behind_another_shards_backlog(make_fleet_stack):
    """A backlog on shard 0 (queued while shards 1 and 2 drained) does not hold back the few
    jobs on shards 1 and 2: each turn starts at the next shard, so they run among the
    backlog's first batches."""
    s = make_fleet_stack(shards=3, workers=[], gateway_env={"FLEET_MODELS": ""})
    s.fleetctl("model", "add", "py-fair")
    api = httpx.Client(base_url=s.url, timeout=30, headers={"Authorization": "Bearer " + s.api_key})
    try:
        s.fleetctl("shards", "drain", "1")
        s.fleetctl("shards", "drain", "2")
        run = []  # submits in a row that landed on shard 0: the gateway has the new table

        def on_zero():
            run.append(submit(api, "py-fair", "backlog")[0] == "0")
            return len(run) >= 5 and all(run[-5:])
        wait_for(on_zero, 10, "the gateway to put new jobs on shard 0 only")
        backlog = [submit(api, "py-fair", "backlog") for _ in range(100)]
        assert {i[0] for i in backlog} == {"0"}
        s.fleetctl("shards", "activate", "1")
        s.fleetctl("shards", "activate", "2")
        few = []

        def elsewhere():
            jid = submit(api, "py-fair", "few")
            if jid[0] != "0":
                few.append(jid)
            return len(few) >= 4
        wait_for(elsewhere, 10, "jobs on shards 1 and 2")
        order, sizes = [], []

        def handler(xs, ctx):
            order.extend(ctx.job_ids)
            sizes.append(len(xs))
            time.sleep(0.01)
            return xs
        with Running(s, "py-fair", handler, name="py-fair-1", max_batch=2):
            for jid in few:
                assert wait_job(api, jid)["status"] == "succeeded"
        # The backlog had 100+ jobs; the others ran within its first batches.
        last = max(order.index(j) for j in few)
        assert last < 30, (last, len(order))
        assert max(sizes) <= 2, sizes  # a batch never holds more than max_batch
    finally:
        api.close()
