"""fleet.Client against a live gateway (conftest.py starts Redis, the gateway with API
keys on, echo and sleep workers). Each case checks what the gateway did, not only what the
client returned."""
from __future__ import annotations

import signal
import threading

import httpx
import pytest
import redis

import fleet
from conftest import Recorder, RecordingTransport, wait_for

NO_RETRY = fleet.RetryPolicy(max_retries=0)


def client(stack, rec=None, **kw):
    t = RecordingTransport(rec) if rec is not None else None
    return fleet.Client(stack.url, stack.api_key, transport=t, **kw)


def test_submit_and_wait_returns_the_result(fleet_stack):
    with client(fleet_stack) as c:
        assert c.submit_and_wait("echo", {"hello": "world"}, timeout=30) == {"hello": "world"}


def test_the_sync_client_sets_tcp_nodelay(fleet_stack):
    """Without TCP_NODELAY a POST's body waits for the gateway's delayed ACK of its headers
    (40 ms a submit). Checked on the client's own connection, found in /proc/self/fd."""
    import os
    import socket
    port = int(fleet_stack.url.rsplit(":", 1)[1])
    with fleet.Client(fleet_stack.url, fleet_stack.api_key) as c:
        c.submit("echo", {})
        found = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                s = socket.socket(fileno=os.dup(int(fd)))
            except OSError:
                continue
            try:
                if s.family == socket.AF_INET and s.getpeername()[1] == port:
                    found.append(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            except OSError:
                pass
            finally:
                s.close()
    assert found and all(found), found


def test_job_status_wait_result(fleet_stack):
    with client(fleet_stack) as c:
        job = c.submit("echo", {"n": 1}, priority="high", metadata={"team": "docs"}, ttl_s=600)
        assert isinstance(job, fleet.Job) and len(job.id) == 26
        assert job.submitted["status"] == "queued"
        assert job.wait(30) == {"n": 1}
        st = job.status()
        assert st["status"] == "succeeded" and st["priority"] == "high"
        assert st["metadata"] == {"team": "docs"} and st["ttl_s"] == 600
        assert c.status(job.id) == st
        assert job.result() == {"n": 1} == c.result(job.id)
        assert c.result(job.id, msgpack=True) == b"\x81\xa1n\x01"  # as stored


def test_wait_long_polls_in_rounds(fleet_stack):
    rec = Recorder()
    with client(fleet_stack, rec, max_wait_s=1) as c:
        job = c.submit("sleep", {"ms": 2500, "steps": 5})
        done = c.wait(job.id, timeout=30)
        assert done["status"] == "succeeded" and done["result"]["slept_ms"] == 2500
    gets = rec.sent("GET", f"/v1/jobs/{job.id}")
    # every read asked the gateway to hold it (never a bare poll), in rounds of max_wait_s,
    # and each round but the last was answered with the job still running
    assert len(gets) >= 2
    assert all(g[2].get("prefer") == "wait=1" for g in gets)
    assert all(g[4].get("preference-applied") == "wait=1" for g in gets)


def test_a_gateway_with_a_lower_max_wait_is_followed(make_fleet_stack):
    s = make_fleet_stack(gateway_env={"FLEET_MAX_WAIT_S": "1"})
    rec = Recorder()
    with fleet.Client(s.url, s.api_key, transport=RecordingTransport(rec)) as c:
        assert c.submit_and_wait("sleep", {"ms": 2500}, timeout=30)["slept_ms"] == 2500
        assert c.max_wait_s == 1
        assert len(list(c.list())) == 1  # the refused submit made nothing
    posts, gets = rec.sent("POST"), rec.sent("GET", "/v1/jobs/")
    assert [(p[2]["prefer"], p[3]) for p in posts] == [("wait=30", 400), ("wait=1", 202)]
    assert posts[0][2]["idempotency-key"] == posts[1][2]["idempotency-key"]
    assert gets and all(g[2]["prefer"] == "wait=1" for g in gets)

    async def main():
        async with fleet.AsyncClient(s.url, s.api_key) as ac:
            job = await ac.submit("sleep", {"ms": 1500})
            assert (await ac.wait(job.id, 30))["status"] == "succeeded"
            assert ac.max_wait_s == 1
    import asyncio
    asyncio.run(main())


def test_wait_timeout_raises_with_the_job(fleet_stack):
    with client(fleet_stack) as c:
        job = c.submit("sleep", {"ms": 20000})
        with pytest.raises(fleet.WaitTimeout) as ei:
            job.wait(timeout=1)
        assert ei.value.job["id"] == job.id and ei.value.job["status"] in ("queued", "running")
        assert isinstance(ei.value, TimeoutError)
        job.cancel()


def test_events_iterate_the_sse_stream(fleet_stack):
    with client(fleet_stack) as c:
        job = c.submit("sleep", {"ms": 600, "steps": 3})
        events = list(job.events())
    names = [e.event for e in events]
    assert names[0] == "state" and names[-1] == "final"
    assert all(e.data["id"] == job.id for e in events)
    assert events[-1].data["status"] == "succeeded"
    assert [e.id for e in events] == [str(i) for i in range(1, len(events) + 1)]
    assert "progress" in names or "status" in names


def test_outputs_are_read_in_order_page_by_page(fleet_stack):
    rec = Recorder()
    with client(fleet_stack, rec) as c:
        job = c.submit("sleep", {"ms": 100, "steps": 5, "emit": True})
        job.wait(30)
        assert [o["output"] for o in c.outputs(job.id)] == [
            {"step": i, "of": 5} for i in range(1, 6)]
        del rec.calls[:]
        assert [o["index"] for o in c.outputs(job.id, 2, page=2)] == [2, 3, 4]
        # pages of two from index 2 (2-3, then 4), and no third read after the last
        assert [call[1].endswith("/outputs") for call in rec.calls] == [True, True]
        assert [o["index"] for o in job.outputs(4)] == [4]
        assert list(c.outputs(job.id, 5)) == []
        with pytest.raises(fleet.NotFound):
            list(c.outputs("01M95MCDEBH49W67X8F9DKTGNB"))


def test_events_of_an_unknown_job_raise_not_found(fleet_stack):
    with client(fleet_stack) as c:
        with pytest.raises(fleet.NotFound):
            list(c.events("0" * 26))


def test_cancel_and_retry(fleet_stack):
    with client(fleet_stack) as c:
        job = c.submit("sleep", {"ms": 30000, "steps": 300})
        wait_for(lambda: job.status()["status"] == "running", what="the job to run")
        ans = job.cancel()
        assert ans["id"] == job.id
        with pytest.raises(fleet.JobCancelled) as ei:
            job.wait(30)
        assert ei.value.job["status"] == "cancelled"
        with pytest.raises(fleet.JobCancelled) as ei:  # 409 job-cancelled
            job.result()
        assert ei.value.status == 409 and ei.value.slug == "job-cancelled"
        with pytest.raises(fleet.Conflict) as ei:  # already finished
            c.cancel(job.id)
        assert ei.value.slug == "job-finished"

        failing = c.submit("sleep", {"ms": 10, "fail": "bad page 3"}, max_attempts=1)
        with pytest.raises(fleet.JobFailed) as ei:
            failing.wait(30)
        assert "bad page 3" in ei.value.error
        again = c.retry(failing.id)
        assert again.id == failing.id and isinstance(again, fleet.Job)
        with pytest.raises(fleet.JobFailed):
            again.wait(30)
        ok = c.submit("echo", {})
        ok.wait(30)
        with pytest.raises(fleet.Conflict) as ei:
            c.retry(ok.id)
        assert ei.value.slug == "job-not-retryable"


def test_list_iterates_every_page(fleet_stack):
    rec = Recorder()
    with client(fleet_stack, rec) as c:
        ids = [c.submit("echo", {"i": i}, metadata={"t": "list"}).id for i in range(5)]
        for i in ids:
            c.wait(i, 30)
        got = [j["id"] for j in c.list(model="echo", limit=2)]
        assert [i for i in got if i in ids] == ids[::-1]  # newest first, each once
        assert len(got) == len(set(got))
        assert len(rec.sent("GET", "/v1/jobs")) - len(rec.sent("GET", "/v1/jobs/")) >= 3
        assert all(j["status"] == "succeeded" for j in c.list(status=["succeeded"], limit=100))


def test_submit_batch(fleet_stack):
    with client(fleet_stack) as c:
        ans = c.submit_batch([{"model": "echo", "input": {"b": 1}},
                              {"model": "nope", "input": {}},
                              {"model": "echo", "input": {"b": 2}}])
        assert ans["accepted"] == 2 and ans["refused"] == 1
        assert ans["jobs"][1]["error"]["type"] == "urn:fleet:problem:unknown-model"
        assert c.wait(ans["jobs"][2]["id"], 30)["result"] == {"b": 2}


def test_multipart_files_reach_the_model(fleet_stack, tmp_path):
    p = tmp_path / "notes.txt"
    p.write_bytes(b"three words here")
    with client(fleet_stack) as c, open(p, "rb") as f:
        job = c.submit("echo", {"lang": "fr"},
                       files=[("a.pdf", b"%PDF-1.4", "application/pdf"), f, str(p)],
                       priority="low")
        out = job.wait(30)
        assert c.status(job.id)["priority"] == "low"
    assert out["lang"] == "fr"
    names = [(x["name"], x["content_type"], x["size"]) for x in out["files"]]
    assert names == [("a.pdf", "application/pdf", 8),
                     ("notes.txt", "application/octet-stream", 16),
                     ("notes.txt", "application/octet-stream", 16)]


def _msgpack_str(s: str) -> bytes:
    b = s.encode()
    assert len(b) < 32
    return bytes([0xA0 | len(b)]) + b


def test_a_file_result_downloads_as_a_file(fleet_stack):
    # echo returns its input; a msgpack input that is a file map (content_type + bin
    # bytes + filename) makes a file result (docs/api.md, "Submit")
    inp = (b"\x83" + _msgpack_str("content_type") + _msgpack_str("text/csv")
           + _msgpack_str("bytes") + b"\xc4\x05a,b\n1" + _msgpack_str("filename")
           + _msgpack_str("out.csv"))
    body = b"\x82" + _msgpack_str("model") + _msgpack_str("echo") + _msgpack_str("input") + inp
    r = httpx.post(fleet_stack.url + "/v1/jobs", content=body,
                   headers={"Authorization": f"Bearer {fleet_stack.api_key}",
                            "Content-Type": "application/msgpack"})
    assert r.status_code == 202, r.text
    with client(fleet_stack) as c:
        jid = r.json()["id"]
        assert c.wait(jid, 30)["result"]["bytes"] == "YSxiCjE="  # the JSON: base64
        res = c.result(jid)
        job = fleet.Job(c, {"id": jid})
        assert job.wait(30) == res  # Job.wait gives the file too
    assert isinstance(res, fleet.FileResult)
    assert res.content == b"a,b\n1" and res.filename == "out.csv"
    assert res.content_type.startswith("text/csv")


def test_purge_deletes_a_finished_job(fleet_stack):
    with client(fleet_stack, retry=NO_RETRY) as c:
        job = c.submit("echo", {"p": 1})
        job.wait(30)
        assert c.purge(job.id) == {"id": job.id, "status": "succeeded", "deleted": True}
        with pytest.raises(fleet.NotFound):
            job.status()
        running = c.submit("sleep", {"ms": 30000})
        with pytest.raises(fleet.Conflict) as ei:
            c.purge(running.id)
        assert ei.value.slug == "job-not-finished"
        running.cancel()


def test_sse_parser_follows_the_event_stream_format():
    p = fleet._http.SSEParser()
    lines = ["retry: 2000", "", ": ping", "id: 7", "event: progress", 'data: {"a":', "data: 1}",
             "", "data:plain", "data", "", "event: x", "id: 8", "", "data: {bad json\r", ""]
    evs = [e for e in map(p.feed, lines) if e is not None]
    assert p.retry_ms == 2000
    assert [(e.event, e.data, e.id) for e in evs] == [
        ("progress", {"a": 1}, "7"), ("message", "plain\n", "7"), ("message", "{bad json", "8")]


def test_errors_are_typed_by_problem_type(fleet_stack):
    with client(fleet_stack, retry=NO_RETRY) as c:
        with pytest.raises(fleet.NotFound) as ei:
            c.status("0" * 26)
        e = ei.value
        assert e.status == 404 and e.slug == "job-not-found" and e.request_id.startswith("req_")
        assert e.problem["status"] == 404 and e.problem["request_id"] == e.request_id
        with pytest.raises(fleet.BadRequest) as ei:
            c.status("not-an-id")
        assert ei.value.slug == "invalid-id"
        with pytest.raises(fleet.UnknownModel) as ei:
            c.submit("nope", {})
        assert isinstance(ei.value, fleet.Invalid) and "echo" in ei.value.detail
        with pytest.raises(fleet.Invalid) as ei:
            c.submit("echo", {}, ttl_s=5)
        assert ei.value.slug == "invalid-job"
        c.submit("echo", {"a": 1}, idempotency_key="k-1")
        with pytest.raises(fleet.IdempotencyKeyReused):
            c.submit("echo", {"a": 2}, idempotency_key="k-1")
        idle = c.submit("idle", {})  # no worker serves it: it stays queued
        with pytest.raises(fleet.NotReady) as ei:
            idle.result()
        assert ei.value.status == 425 and ei.value.retry_after == 1
        idle.cancel()
        with pytest.raises(fleet.WebhookRefused):
            c.submit("echo", {}, webhook="ftp://127.0.0.1/x")
    with fleet.Client(fleet_stack.url, "fk_wrong", retry=NO_RETRY) as bad:
        with pytest.raises(fleet.Unauthorized):
            bad.status("0" * 26)
    with fleet.Client(fleet_stack.url, fleet_stack.api_key, retry=NO_RETRY) as c:
        with pytest.raises(fleet.Forbidden):
            list(c.list(tenant="ops"))


def test_an_expired_job_is_gone(fleet_stack):
    with client(fleet_stack) as c:
        job = c.submit("echo", {"x": 1})
        job.wait(30)
        # what Redis does at the end of ttl_s: the job's keys go, its tombstone stays
        r = redis.Redis.from_url(fleet_stack.redis_url)
        keys = [k for k in r.scan_iter(match=f"*{job.id}*") if b":gone:" not in k]
        assert keys and r.delete(*keys) == len(keys)
        with pytest.raises(fleet.Gone) as ei:
            job.status()
        assert ei.value.status == 410 and ei.value.job_status == "succeeded"
        assert ei.value.expired_at
        with pytest.raises(fleet.Gone):
            job.result()


def test_quota_and_rate_limits(fleet_stack):
    small = fleet_stack.fleetctl_json("tenant", "add", "small", "--max-active", "1")["api_key"]
    slow = fleet_stack.fleetctl_json("tenant", "add", "slow", "--rate", "0.01")["api_key"]
    with fleet.Client(fleet_stack.url, small, retry=NO_RETRY) as c:
        first = c.submit("idle", {})
        with pytest.raises(fleet.QuotaExceeded) as ei:
            c.submit("idle", {})
        assert ei.value.status == 429 and ei.value.retry_after and ei.value.retry_after >= 1
        first.cancel()
    with fleet.Client(fleet_stack.url, slow, retry=NO_RETRY) as c:
        c.submit("echo", {})
        with pytest.raises(fleet.RateLimited) as ei:
            c.submit("echo", {})
        assert not isinstance(ei.value, fleet.QuotaExceeded)


class Delays(fleet.RetryPolicy):
    """Records each wait the policy chose and the Retry-After it was given."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.chosen = []

    def delay(self, req, attempt, started, resp=None, exc=None):
        d = super().delay(req, attempt, started, resp=resp, exc=exc)
        ra = fleet._http.retry_after_s(resp) if resp is not None else None
        self.chosen.append((d, ra))
        return d


def test_a_full_queue_is_waited_out_honouring_retry_after(make_fleet_stack):
    s = make_fleet_stack(gateway_env={"FLEET_MAX_QUEUE": "1"}, workers=[])
    rec = Recorder()
    pol = Delays(max_retries=20, max_retry_s=60)
    with fleet.Client(s.url, s.api_key, retry=NO_RETRY) as c:
        first = c.submit("idle", {})
        with pytest.raises(fleet.QueueFull) as ei:
            c.submit("idle", {})
        assert ei.value.status == 503 and ei.value.retry_after >= 1
    with fleet.Client(s.url, s.api_key, retry=pol, transport=RecordingTransport(rec)) as c:
        out = {}
        t = threading.Thread(target=lambda: out.setdefault("job", c.submit("idle", {"n": 2})))
        t.start()
        wait_for(lambda: len(rec.sent("POST")) >= 1, what="a refused submit")
        c.cancel(first.id)  # frees the queue: the next attempt is accepted
        t.join(60)
        job = out["job"]
    posts = rec.sent("POST")
    assert [p[3] for p in posts[:-1]] == [503] * (len(posts) - 1) and posts[-1][3] == 202
    assert len({p[2]["idempotency-key"] for p in posts}) == 1
    waits = [d for d in pol.chosen if d[0] is not None]
    assert waits and all(d >= ra for d, ra in waits)
    with fleet.Client(s.url, s.api_key) as c:
        assert [j["id"] for j in c.list(status="queued")] == [job.id]


def test_a_submit_retried_after_a_503_makes_one_job(make_fleet_stack):
    """Redis stops answering while the submit is on its way: the gateway answers 503 after
    FLEET_REDIS_TIMEOUT_MS, although Redis runs the submit once it resumes. The retry
    carries the same Idempotency-Key, so it gets that job back instead of a second one."""
    s = make_fleet_stack(gateway_env={"FLEET_REDIS_TIMEOUT_MS": "300"})
    rec = Recorder()
    with fleet.Client(s.url, s.api_key, transport=RecordingTransport(rec),
                      retry=fleet.RetryPolicy(max_retries=10, max_retry_s=60)) as c:
        list(c.list())  # the key is read and cached before Redis stops
        s.redis.signal(signal.SIGSTOP)
        try:
            out = {}
            t = threading.Thread(target=lambda: out.setdefault(
                "job", c.submit("echo", {"once": True}, metadata={"m": "503"})))
            t.start()
            wait_for(lambda: s.metric('fleet_http_requests_total{route="/v1/jobs",'
                                      'method="POST",code="503"') >= 1, what="a 503")
        finally:
            s.redis.signal(signal.SIGCONT)
        t.join(60)
        jobs = list(c.list())
        assert [j["id"] for j in jobs] == [out["job"].id]
        posts = rec.sent("POST")
        assert posts[0][3] == 503 and posts[-1][3] == 202
        assert len({p[2]["idempotency-key"] for p in posts}) == 1
        # the first attempt was stored: the retry was answered from it
        assert posts[-1][4].get("idempotent-replayed") == "true"


def test_a_connection_failure_is_retried_with_the_same_key(fleet_stack):
    rec = Recorder(fail_first=1)
    with client(fleet_stack, rec) as c:
        job = c.submit("echo", {"socket": "retry"}, metadata={"m": "socket"})
        posts = rec.sent("POST")
        assert [p[3] for p in posts] == [None, 202]
        assert posts[0][2]["idempotency-key"] == posts[1][2]["idempotency-key"]
        assert job.wait(30) == {"socket": "retry"}
    rec = Recorder(fail_first=1)
    with client(fleet_stack, rec, retry=NO_RETRY) as c:
        with pytest.raises(fleet.TransportError):
            c.status(job.id)
    # a cancel, a retry or a batch that may have been done is not sent again: a second
    # cancel of a job the first one ended would answer 409
    with client(fleet_stack) as c:
        running = c.submit("sleep", {"ms": 30000})
    for call in ("cancel", "retry", "batch"):
        rec = Recorder(fail_first=1)
        with client(fleet_stack, rec) as c:
            with pytest.raises(fleet.TransportError):
                if call == "batch":
                    c.submit_batch([{"model": "echo", "input": {}}])
                else:
                    getattr(c, call)(running.id)
        assert len(rec.calls) == 1
    with client(fleet_stack) as c:
        c.cancel(running.id)


def test_example_submit_files(fleet_stack, tmp_path):
    """examples/python/submit_files.py as a user runs it: several files, one job, one
    line per file."""
    import json
    import os
    import subprocess
    import sys
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..")
    (tmp_path / "a.txt").write_bytes(b"one two three")
    (tmp_path / "b.csv").write_bytes(b"x,y\n")
    env = dict(os.environ, FLEET_API_KEY=fleet_stack.api_key,
               PYTHONPATH=os.path.join(root, "clients", "python"))
    r = subprocess.run([sys.executable, os.path.join(root, "examples", "python", "submit_files.py"),
                        "--url", fleet_stack.url, "echo", str(tmp_path / "a.txt"),
                        str(tmp_path / "b.csv")], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [(x["file"], x["result"]["size"], x["result"]["content_type"]) for x in lines] == \
        [("a.txt", 13, "text/plain"), ("b.csv", 4, "text/csv")]


def test_docs_examples_run(fleet_stack):
    """Each python block of docs/python.md's "Client" section runs as written."""
    import os
    import re
    import subprocess
    import sys
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..")
    with open(os.path.join(root, "docs", "python.md"), encoding="utf-8") as f:
        doc = f.read()
    section = doc.split("\n## Client\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 3
    env = dict(os.environ, FLEET_URL=fleet_stack.url, FLEET_API_KEY=fleet_stack.api_key,
               PYTHONPATH=os.path.join(root, "clients", "python"))
    # the receiver of "Webhooks" gets a real delivery
    blocks[2] = blocks[2].replace("SECRET", repr(fleet_stack.tenant_webhook_secret)) + """
import http.server, threading, fleet, os
srv = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
srv.timeout = 30
t = threading.Thread(target=srv.handle_request)
t.start()
with fleet.Client(os.environ["FLEET_URL"], os.environ["FLEET_API_KEY"]) as c:
    job = c.submit("echo", {}, webhook=f"http://127.0.0.1:{srv.server_address[1]}/hook")
    job.wait(30)
t.join()
print("job", job.id)
"""
    outs = []
    for code in blocks:
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, f"{code}\n{r.stderr}"
        outs.append(r.stdout)
    assert "{'text': 'hello'}" in outs[0] and "failed: bad page 3" in outs[0]
    assert "{'slept_ms': 300, 'steps': 3}" in outs[0]
    assert "[('a.txt', 7), ('b.txt', 5)]" in outs[0]
    assert "[{'n': 0}, {'n': 1}, {'n': 2}]" in outs[1] and "final" in outs[1]
    job_id = outs[2].split("job ", 1)[1].strip()
    assert f"job.succeeded {job_id}" in outs[2]


def test_example_submit_files_with_the_python_wordstats_worker(fleet_stack, tmp_path):
    """The same example against a model written in Python (examples/python/
    wordstats_worker.py, served by fleet.worker): per-file statistics."""
    import json
    import os
    import subprocess
    import sys
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..")
    w = fleet_stack.start_process("worker-py-wordstats", [
        sys.executable, "-u", os.path.join(root, "examples", "python", "wordstats_worker.py")])
    fleet_stack.fleetctl("model", "add", "wordstats")  # accepted before the worker is up
    wait_for(lambda: "wordstats" in [m["name"] for m in httpx.get(
        fleet_stack.url + "/v1/models", headers={"Authorization": "Bearer " + fleet_stack.api_key}
    ).json()["models"]], what="the gateway to accept wordstats")
    (tmp_path / "a.txt").write_text("the cat sat\non the mat\n")
    (tmp_path / "b.txt").write_text("one\ftwo two\n")
    env = dict(os.environ, FLEET_API_KEY=fleet_stack.api_key,
               PYTHONPATH=os.path.join(root, "clients", "python"))
    r = subprocess.run([sys.executable, os.path.join(root, "examples", "python", "submit_files.py"),
                        "--url", fleet_stack.url, "--timeout", "30", "wordstats",
                        str(tmp_path / "a.txt"), str(tmp_path / "b.txt")],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr + w.log()[-2000:]
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [(x["file"], x["result"]["words"], x["result"]["pages"]) for x in lines] == \
        [("a.txt", 6, 1), ("b.txt", 3, 2)]
    assert lines[0]["result"]["top"][0] == ["the", 2]
